"""A zoo of tiny transformers architectures, built from configs and saved with save_pretrained.

Each family is a model_type, the tokenizer kind that suits it and the config keys that make
it tiny (2 layers, width 32, 4 heads, 64 positions) while keeping what makes the family
itself: GQA / MQA, sliding windows, softcapping, ALiBi, rotary, local + global attention,
pooling. Tokenizers are trained offline on tests/tiny_models.CORPUS, one per kind:

    wordpiece  [CLS] A [SEP] B [SEP]   (BERT and its kin)
    roberta    <s> A </s></s> B </s>   pad id 1, so positions start at 2 like roberta-base
    causal     <s> A                   (LLaMA-style decoders)
    gpt2       A                       (GPT-2-style decoders)
    seq2seq    <s> A </s>              (BART-style encoder-decoders)
    t5         A </s>                  (T5-style encoder-decoders)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tiny_models import CORPUS, _bpe_tokenizer

W, FF, HEADS, POS = 32, 64, 4, 64  # width, feed-forward, heads, positions of every tiny model


@dataclass(frozen=True)
class Family:
    """One architecture: its config's model_type, tokenizer kind and tiny config keys."""

    name: str  # the test id; one model_type may appear twice (longt5 local / tglobal)
    model_type: str
    tokenizer: str
    config: dict[str, Any] = field(default_factory=dict)
    trait: str = ""  # what this family adds to the zoo


@cache
def tokenizer(kind: str) -> Any:
    """A trained tokenizer of one kind (see the module docstring); cached per kind."""
    if kind == "wordpiece":
        return _wordpiece_tokenizer()
    if kind == "roberta":
        return _roberta_tokenizer()
    bos, eos = {"causal": (True, False), "gpt2": (False, False), "seq2seq": (True, True), "t5": (False, True)}[kind]
    return _bpe_tokenizer(bos=bos, eos=eos)


def _wordpiece_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=POS,
    )


def _roberta_tokenizer(model_max_length: int = POS) -> Any:
    """Byte-level BPE with roberta-base's special ids: <s>=0, <pad>=1, </s>=2, <unk>=3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=alphabet)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )


# Config keys shared by families whose configs use the same names.
_BERT = dict(hidden_size=W, num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=FF)
_ENC = dict(_BERT, max_position_embeddings=POS)
_ROBERTA = dict(_BERT, max_position_embeddings=POS + 2)  # positions start after the pad id (1)
_GQA = dict(_ENC, num_key_value_heads=2)
_GPT2 = dict(n_embd=W, n_layer=2, n_head=HEADS, n_positions=POS)
_BART = dict(
    d_model=W,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=HEADS,
    decoder_attention_heads=HEADS,
    encoder_ffn_dim=FF,
    decoder_ffn_dim=FF,
    max_position_embeddings=POS,
)
_LED = {k: v for k, v in _BART.items() if k != "max_position_embeddings"}
_T5 = dict(d_model=W, d_kv=8, d_ff=FF, num_layers=2, num_decoder_layers=2, num_heads=HEADS)
_PROPHETNET = dict(
    hidden_size=W,
    encoder_ffn_dim=FF,
    decoder_ffn_dim=FF,
    num_encoder_layers=2,
    num_decoder_layers=2,
    num_encoder_attention_heads=HEADS,
    num_decoder_attention_heads=HEADS,
    max_position_embeddings=POS,
)


def _family(model_type: str, tokenizer: str, trait: str = "", name: str = "", **config: Any) -> Family:
    return Family(name or model_type, model_type, tokenizer, config, trait)


F = _family
FAMILIES: tuple[Family, ...] = (
    # encoders
    F("bert", "wordpiece", **_ENC),
    F("roberta", "roberta", "positions start after the pad id", **_ROBERTA),
    F("xlm-roberta", "roberta", **_ROBERTA),
    F("camembert", "roberta", **_ROBERTA),
    F("data2vec-text", "roberta", **_ROBERTA),
    F("electra", "wordpiece", **_ENC, embedding_size=16),
    F("albert", "wordpiece", "layers share weights", **_ENC, embedding_size=16),
    F("distilbert", "wordpiece", dim=W, n_layers=2, n_heads=HEADS, hidden_dim=FF, max_position_embeddings=POS),
    F("deberta", "wordpiece", "disentangled attention", **_ENC, relative_attention=True, pos_att_type=["c2p", "p2c"]),
    F("deberta-v2", "wordpiece", "position buckets", **_ENC, relative_attention=True, position_buckets=16,
      pos_att_type=["c2p", "p2c"]),
    F("roformer", "wordpiece", "rotary encoder", **_ENC, embedding_size=W),
    F("modernbert", "wordpiece", "local + global layers", **_ENC, global_attn_every_n_layers=2, local_attention=4),
    F("convbert", "wordpiece", "convolution heads: pad-sensitive", **_ENC, embedding_size=W),
    F("mobilebert", "wordpiece", "trigram embeddings: pad-sensitive", **_ENC, embedding_size=16, true_hidden_size=W,
      intra_bottleneck_size=W, num_feedforward_networks=1),
    F("squeezebert", "wordpiece", "returns scores, not weights", **_ENC, embedding_size=W, q_groups=1, k_groups=1,
      v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1),
    F("big_bird", "wordpiece", "block-sparse above 56 tokens", **_ENC, block_size=8, num_random_blocks=1),
    F("nystromformer", "wordpiece", "convolution over values: pad-sensitive", **_ENC, num_landmarks=POS,
      segment_means_seq_len=POS, conv_kernel_size=3),
    F("nystromformer", "wordpiece", "approximate: tokens × landmarks", "nystromformer-landmarks", **_ENC,
      num_landmarks=4, segment_means_seq_len=POS),
    F("mra", "wordpiece", "approximate attention: no weights", **_ENC),
    F("yoso", "wordpiece", "hashed attention: no weights", **_ENC),
    F("longformer", "roberta", "sliding window (+ global tokens)", **_ROBERTA, attention_window=4),
    F("funnel", "wordpiece", "pooling between blocks", architectures=["FunnelModel"], block_sizes=[1, 1],
      num_decoder_layers=1, d_model=W, n_head=HEADS, d_head=8, d_inner=FF),
    # decoders
    F("gpt2", "gpt2", **_GPT2),
    F("gpt_neo", "gpt2", "local-window layers", hidden_size=W, num_layers=2, num_heads=HEADS,
      max_position_embeddings=POS, attention_types=[[["global", "local"], 1]], window_size=4),
    F("gptj", "gpt2", "partial rotary", **_GPT2, rotary_dim=4),
    F("codegen", "gpt2", **_GPT2, n_ctx=POS, rotary_dim=4),
    F("gpt_neox", "gpt2", "rotary", **_ENC),
    F("gpt_bigcode", "gpt2", "MQA", **_GPT2, multi_query=True),
    F("opt", "causal", hidden_size=W, num_hidden_layers=2, num_attention_heads=HEADS, ffn_dim=FF,
      word_embed_proj_dim=W, max_position_embeddings=POS),
    F("bloom", "causal", "ALiBi", hidden_size=W, n_layer=2, n_head=HEADS),
    F("mpt", "gpt2", "ALiBi", d_model=W, n_heads=HEADS, n_layers=2, max_seq_len=POS, attn_config={"alibi": True}),
    F("falcon", "causal", "MQA", **_ENC, multi_query=True),
    F("llama", "causal", "GQA, rotary", **_GQA),
    F("mistral", "causal", "GQA, sliding window", **_GQA, sliding_window=4),
    F("mixtral", "causal", "mixture of experts", **_GQA, num_local_experts=2, sliding_window=None),
    F("qwen2", "causal", "GQA, rotary", **_GQA),
    F("qwen3", "causal", "MQA, q/k norms", **_ENC, num_key_value_heads=1, head_dim=8),
    F("phi", "causal", "partial rotary", **_ENC, partial_rotary_factor=0.5),
    F("phi3", "causal", **_GQA),
    F("gemma", "causal", "MQA", **_ENC, num_key_value_heads=1, head_dim=8),
    F("gemma2", "causal", "softcapping, sliding window", **_GQA, head_dim=8, sliding_window=4,
      attn_logit_softcapping=5.0, query_pre_attn_scalar=8),
    F("gemma3_text", "causal", "sliding + full layers", **_GQA, head_dim=8, sliding_window=4,
      layer_types=["sliding_attention", "full_attention"]),
    F("starcoder2", "gpt2", "sliding window", **_GQA, sliding_window=4),
    F("stablelm", "causal", **_GQA),
    F("olmo2", "causal", **_GQA),
    F("cohere", "causal", **_GQA),
    F("gpt_oss", "causal", "attention sinks", **_GQA, head_dim=8, num_local_experts=2, num_experts_per_tok=1,
      sliding_window=4),
    F("xglm", "causal", d_model=W, num_layers=2, attention_heads=HEADS, ffn_dim=FF, max_position_embeddings=POS),
    F("biogpt", "causal", **_ENC),
    F("xlnet", "gpt2", "a causal LM that attends both ways", d_model=W, n_layer=2, n_head=HEADS, d_inner=FF),
    # encoder-decoders
    F("bart", "seq2seq", **_BART),
    F("mbart", "seq2seq", **_BART),
    F("marian", "seq2seq", "sinusoidal positions", **_BART),
    F("pegasus", "seq2seq", **_BART),
    F("m2m_100", "seq2seq", **_BART),
    F("blenderbot", "seq2seq", **_BART),
    F("blenderbot-small", "seq2seq", **_BART),
    F("plbart", "seq2seq", **_BART),
    F("fsmt", "seq2seq", "causal mask only without a cache", **_BART, langs=["en", "de"]),
    F("bigbird_pegasus", "seq2seq", "block-sparse encoder above 56 tokens", **_BART, block_size=8,
      num_random_blocks=1),
    F("t5", "t5", "relative position buckets", **_T5),
    F("mt5", "t5", **_T5),
    F("umt5", "t5", **_T5),
    F("switch_transformers", "t5", "mixture of experts", **_T5, num_experts=2, num_sparse_encoder_layers=1,
      num_sparse_decoder_layers=1),
    F("led", "seq2seq", "Longformer's window in the encoder", **_LED, max_encoder_position_embeddings=POS,
      max_decoder_position_embeddings=POS, attention_window=4),
    F("longt5", "t5", "block-local encoder", **_T5, local_radius=2, encoder_attention_type="local"),
    F("longt5", "t5", "transient-global encoder", "longt5-tglobal", **_T5, local_radius=2, global_block_size=2,
      encoder_attention_type="transient-global"),
    F("prophetnet", "seq2seq", "returns scores; ngram streams", **_PROPHETNET, ngram=2),
    F("pegasus_x", "seq2seq", "block-local encoder + global tokens", **_BART, block_size=4, num_global_tokens=2),
)  # fmt: skip

BY_NAME = {f.name: f for f in FAMILIES}


def build(
    family: Family, folder: Path, noise: float = 0.0, model_max_length: int | None = None, **overrides: Any
) -> Path:
    """Build a seeded tiny model of `family` (config keys overridden by `overrides`) into folder.

    `noise` adds seeded Gaussian noise to every weight, as training leaves them (pad rows of
    embeddings no longer zero, larger weights): effects of padding then show. `model_max_length`
    saves the tokenizer with that limit.
    """
    import copy

    import torch
    import transformers as tf

    tok = tokenizer(family.tokenizer)
    if model_max_length is not None:
        tok = copy.deepcopy(tok)
        tok.model_max_length = model_max_length
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    keys: dict[str, Any] = dict(vocab_size=len(tok), **{k: v for k, v in ids.items() if v is not None})
    if family.tokenizer in ("seq2seq", "t5"):
        keys["decoder_start_token_id"] = tok.eos_token_id if family.tokenizer == "seq2seq" else tok.pad_token_id
    if family.model_type == "fsmt":  # two vocabularies, here one tokenizer's
        keys.update(src_vocab_size=len(tok), tgt_vocab_size=len(tok))
    keys.update(family.config)
    keys.update(overrides)
    config = tf.AutoConfig.for_model(family.model_type, **keys)
    torch.manual_seed(0)
    model = tf.AutoModel.from_config(config, attn_implementation="eager")
    if noise:
        with torch.no_grad():
            for weights in model.parameters():
                weights.add_(torch.randn_like(weights) * noise)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
