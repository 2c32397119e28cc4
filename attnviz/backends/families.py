"""What attnviz knows about particular transformers architectures, keyed by `config.model_type`.

Most families need nothing: with eager attention each layer gives softmax weights shaped
(B, h, q, k). The table below lists the ones that differ, what attnviz does about it, and
why. hf.py asks the functions under it; nothing here loads a model or runs one.

    refuse    the one line attnviz exits with: the family has no token-by-token map to show
    scores    stacks whose layers return pre-softmax scores (the mask already added): attnviz
              applies the softmax the model applies next, so the weights are the ones it uses
    band      stacks returned as a band around the diagonal, (B, h, q, 2w + 1) (Longformer's
              sliding window, no global tokens): rebuilt into (B, h, q, k) with zeros outside
    blocks    stacks returned per block, (B, n, h, b, 3b) (LongT5's local attention, each block
              of b queries over its own and both neighbouring blocks): rebuilt the same way
    streams   stacks whose queries are the main stream followed by ngram predicting streams
              (ProphetNet's cross-attention): attnviz keeps the main stream, as its decoder stack does
    unbatched padding changes the numbers (a convolution or trigram reads padded positions):
              such models run one input at a time
    sink      rows sum to less than 1: the rest goes to learned sink logits, not to a token
    offset    learned positions start after the pad id (RoBERTa): pad_token_id + 1 fewer tokens fit
    load      config values the model is built with (BigBird: dense attention; FSMT: its causal mask)
    encoder   bidirectional though transformers lists it among causal language models
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch stays out of `attnviz --help`
    from torch import Tensor

    from ..result import AttentionResult

SINK_NOTE = "rows sum to less than 1: the rest of each row goes to the model's attention sink"
HUGE = 1_000_000  # tokenizers without a limit say 1e30 (transformers' VERY_LARGE_INTEGER)


@dataclass(frozen=True)
class Family:
    """How attnviz treats one model_type; the defaults are "as transformers gives it"."""

    why: str = ""
    refuse: str | None = None
    refuse_when: Callable[[Any], bool] | None = None  # None: always (when `refuse` is set)
    scores: tuple[str, ...] = ()
    band: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    unbatched: bool = False
    sink: bool = False
    offset: bool = False
    positions: str | None = None  # the config field holding the input's position limit, if not the usual
    target_positions: str | None = None  # the decoder's own limit, where it has one (LED: 1,024 vs 16,384)
    load: dict[str, Any] = field(default_factory=dict)
    encoder: bool = False


PLAIN = Family()
_OFFSET = Family(why="learned positions start at pad_token_id + 1", offset=True)
_BIGBIRD = Family(
    why="block-sparse attention above (5 + 2·random blocks)·block tokens; full attention up to there, "
    "which is what BigBird runs itself for such inputs (and its block-sparse weights are not given "
    "exactly: their rows do not sum to 1)",
    load={"attention_type": "original_full"},
)
_PROPHETNET = Family(
    why="returns encoder and cross scores before the softmax; the decoder shows its main stream",
    scores=("encoder", "cross"),
    streams=("cross",),
)

FAMILIES: dict[str, Family] = {
    # positions after the pad id
    **dict.fromkeys(
        "roberta xlm-roberta xlm-roberta-xl camembert data2vec-text roberta-prelayernorm ibert mpnet luke esm "
        "markuplm layoutlmv3 lilt".split(),
        _OFFSET,
    ),
    "xmod": replace(
        _OFFSET,
        refuse="X-MOD runs a language adapter chosen per input, and its config names no default language",
        refuse_when=lambda c: getattr(c, "default_language", None) is None,
    ),
    # local windows and blocks: rebuilt into token-by-token maps
    "longformer": Family(
        why="sliding-window attention, returned as a band; run without global tokens",
        band=("encoder",),
        offset=True,
    ),
    "led": Family(
        why="Longformer's sliding window in the encoder; run without global tokens",
        band=("encoder",),
        positions="max_encoder_position_embeddings",
        target_positions="max_decoder_position_embeddings",
    ),
    "longt5": Family(
        why="block-local encoder attention, returned per block",
        blocks=("encoder",),
        refuse="LongT5 with transient-global attention also attends to summaries of whole blocks, "
        "which are not tokens: its weights do not form a token-by-token map",
        refuse_when=lambda c: getattr(c, "encoder_attention_type", "local") != "local",
    ),
    "pegasus_x": Family(
        refuse="PEGASUS-X's encoder attends to learned global tokens that are not part of the input "
        "and to staggered blocks: its weights do not form a token-by-token map"
    ),
    "big_bird": _BIGBIRD,
    "bigbird_pegasus": _BIGBIRD,
    # pooling or downsampling between layers
    "funnel": Family(
        refuse="Funnel Transformer pools its sequence between blocks, so later layers attend from "
        "pooled positions, not tokens: its layers do not share one token-by-token map",
        refuse_when=lambda c: len(getattr(c, "block_sizes", ())) > 1,
    ),
    "canine": Family(
        refuse="CANINE downsamples characters between its layers: its layers do not share one token-by-token map"
    ),
    "rwkv": Family(
        refuse="RWKV is a recurrent network: what it calls attention is a running state, not weights over "
        "tokens, so it gives no attention weights"
    ),
    # approximations that give no token-by-token weights
    "mra": Family(refuse="MRA approximates attention block by block and gives no attention weights"),
    "yoso": Family(refuse="YOSO approximates attention by hashing and gives no attention weights"),
    # pre-softmax scores
    "squeezebert": Family(why="returns the scores before its softmax", scores=("encoder",)),
    "prophetnet": _PROPHETNET,
    "xlm-prophetnet": _PROPHETNET,
    # padding changes the result
    "convbert": Family(why="its convolution heads read padded positions", unbatched=True),
    "mobilebert": Family(why="its trigram embeddings read the padded position after the last token", unbatched=True),
    "nystromformer": Family(
        why="exact softmax attention when num_landmarks == segment_means_seq_len; its convolution "
        "over the values reads padded positions",
        unbatched=True,
        refuse="this Nyströmformer approximates attention through landmarks: its weights are "
        "tokens × landmarks, not a token-by-token map",
        refuse_when=lambda c: getattr(c, "num_landmarks", None) != getattr(c, "segment_means_seq_len", None),
    ),
    # other
    "gpt_oss": Family(why="attention sinks take part of every row", sink=True),
    "xlnet": Family(why="bidirectional unless given a permutation mask", encoder=True),
    "fsmt": Family(why="builds no causal mask when use_cache is on", load={"use_cache": False}),
}


def family(config: Any) -> Family:
    """The table's entry for a config (PLAIN for families that need nothing)."""
    return FAMILIES.get(getattr(config, "model_type", ""), PLAIN)


def refusal(config: Any) -> str | None:
    """Why attnviz cannot show this model's attention, or None."""
    entry = family(config)
    if entry.refuse is None or (entry.refuse_when is not None and not entry.refuse_when(config)):
        return None
    return entry.refuse


def for_loading(config: Any) -> Any:
    """The config to build the model from: a copy with the table's `load` values, if it has any."""
    entry = family(config)
    if not entry.load:
        return config
    loaded = copy.deepcopy(config)
    for key, value in entry.load.items():
        setattr(loaded, key, value)
    return loaded


def is_bidirectional(config: Any) -> bool:
    """True for models transformers lists as causal LMs that attend both ways as attnviz runs them."""
    return family(config).encoder or bool(getattr(config, "use_bidirectional_attention", False))


def unbatched(config: Any) -> bool:
    """True when padding inside a batch would change a sentence's weights."""
    return family(config).unbatched


def max_positions(config: Any, tokenizer: Any) -> int | None:
    """The most tokens one input may have: the model's position limit and the tokenizer's, whichever is less.

    RoBERTa-style embeddings number positions from pad_token_id + 1, so a 514-row table holds
    512 tokens; BigBird checkpoints that use block-sparse attention run dense (see the table)
    only up to (5 + 2·num_random_blocks)·block_size tokens.
    """
    entry = family(config)
    limits = []
    fields = (entry.positions,) if entry.positions else ("max_position_embeddings", "n_positions", "n_ctx")
    for name in fields:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            if entry.offset:
                value -= int(getattr(config, "pad_token_id", None) or 0) + 1
            limits.append(value)
            break
    if getattr(config, "attention_type", None) == "block_sparse":
        limits.append((5 + 2 * int(config.num_random_blocks)) * int(config.block_size))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < HUGE:
        limits.append(tokenizer_limit)
    return min(limits) if limits else None


def max_target_positions(config: Any, tokenizer: Any) -> int | None:
    """The most tokens the decoder of an encoder-decoder reads (its start token included), where it has a
    limit of its own; else the input's (max_positions)."""
    value = getattr(config, family(config).target_positions or "", None)
    if isinstance(value, int) and value > 0:
        return value
    return max_positions(config, tokenizer)


def to_weights(config: Any, stack: str, layer: Tensor) -> Tensor:
    """One layer of one stack as the model gave it → attention weights (B, h, q, k).

    Band and block layouts become maps over as many keys as there are queries (the
    forward pass's padded length, which the caller cuts to each input's tokens).
    """
    entry = family(config)
    if stack in entry.streams:  # (B, h, (1 + ngram)·q, k): the main stream comes first
        layer = layer[:, :, : layer.shape[2] // (1 + int(config.ngram))]
    if stack in entry.scores:
        return layer.softmax(dim=-1)  # the very op the model applies next, in its dtype
    if stack in entry.band:
        return _from_band(layer)
    if stack in entry.blocks:
        return _from_blocks(layer)
    return layer


def mark(config: Any, result: AttentionResult) -> AttentionResult:
    """A result as its family needs it marked: the rows of a sink model are weights, not distributions."""
    if not family(config).sink:
        return result
    from ..result import MapKind

    stacks = tuple(replace(s, kind=MapKind.WEIGHTS, notes=(*s.notes, SINK_NOTE)) for s in result.stacks)
    return replace(result, stacks=stacks)


def _from_band(band: Tensor) -> Tensor:
    """(B, h, q, 2w + 1), column c of row i being key i + c - w → (B, h, q, q)."""
    import torch

    B, H, Q, C = band.shape
    w = (C - 1) // 2
    if C != 2 * w + 1:
        raise ValueError(f"a sliding-window band has an odd width, not {C}")
    rows = torch.arange(Q, device=band.device)[:, None]  # (q, 1)
    cols = rows + torch.arange(C, device=band.device)[None, :]  # (q, 2w + 1): key + w
    dense = band.new_zeros(B, H, Q, Q + 2 * w)  # w spare columns each side for keys out of range
    dense[:, :, rows, cols] = band
    return dense[..., w : w + Q]  # (B, h, q, q)


def _from_blocks(blocks: Tensor) -> Tensor:
    """(B, n, h, b, 3b), row i of block j over keys of blocks j-1, j, j+1 → (B, h, n·b, n·b)."""
    import torch

    B, n, H, b, C = blocks.shape
    if C != 3 * b:
        raise ValueError(f"local blocks of {b} queries should see {3 * b} keys, not {C}")
    start = torch.arange(n, device=blocks.device) * b  # first query of each block
    rows = (start[:, None] + torch.arange(b, device=blocks.device))[:, :, None]  # (n, b, 1)
    cols = (start[:, None] + torch.arange(C, device=blocks.device))[:, None, :]  # (n, 1, 3b): key + b
    dense = blocks.new_zeros(B, H, n * b, n * b + 2 * b)  # one spare block each side
    dense[:, :, rows, cols] = blocks.transpose(1, 2)  # (B, h, n, b, 3b)
    return dense[..., b : b + n * b]  # (B, h, n·b, n·b)
