"""Tiny random transformers models of each family, saved with save_pretrained.

Tests load them through the same path a user's model folder takes (`--model DIR`),
with no network. Tokenizers are trained here on a few sentences.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "I have a dream",
    "the quick brown fox jumps over the lazy dog",
    "attention is all you need",
    "Я мечтаю о будущем",
    "我有一个梦想",
    "so do I, said the cat",
] * 4


def _bpe_tokenizer(bos: bool, eos: bool):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    single = " ".join(([("<s>")] if bos else []) + ["$A"] + (["</s>"] if eos else []))
    pair = single + " " + " ".join(["$B:1"] + (["</s>:1"] if eos else []))
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=64,
    )


def save_tiny(family: str, folder: Path) -> Path:
    """Build a seeded tiny model of `family` (bert, gpt2, llama, bart, t5) into folder."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if family == "bert":
        from attnviz.backends.registry import minilm_folder

        tokenizer = tf.AutoTokenizer.from_pretrained(str(minilm_folder()))
        config = tf.BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        model = tf.BertModel(config)
    else:
        tokenizer = _bpe_tokenizer(bos=family in ("llama", "bart"), eos=family in ("bart", "t5"))
        v = len(tokenizer)
        pad, bos, eos = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
        ids = dict(pad_token_id=pad, bos_token_id=bos, eos_token_id=eos)
        if family == "gpt2":
            config = tf.GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=64, **ids)
            model = tf.GPT2LMHeadModel(config)
        elif family == "llama":
            config = tf.LlamaConfig(
                vocab_size=v,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
                **ids,
            )
            model = tf.LlamaForCausalLM(config)
        elif family == "bart":
            config = tf.BartConfig(
                vocab_size=v,
                d_model=32,
                encoder_layers=2,
                decoder_layers=3,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_position_embeddings=64,
                decoder_start_token_id=eos,
                forced_eos_token_id=eos,
                **ids,
            )
            model = tf.BartForConditionalGeneration(config)
        elif family == "t5":
            config = tf.T5Config(
                vocab_size=v,
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_decoder_layers=2,
                num_heads=4,
                decoder_start_token_id=pad,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            model = tf.T5ForConditionalGeneration(config)
        else:
            raise ValueError(family)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
