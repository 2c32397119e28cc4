"""Token strings and their metadata from a `tokenizers.Encoding`, padding removed.

Both backends tokenize with Hugging Face `tokenizers` (our MiniLM path uses it
directly, the transformers path through its fast tokenizers), so one helper turns
an encoding into the `Tokens` a Stack carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..result import Tokens


def tokens_from_encoding(enc: Any, texts: Sequence[str] = ()) -> tuple[Tokens, list[int]]:
    """(Tokens without padding, positions of the kept tokens in the padded sequence).

    `texts` are the strings that were encoded (sentence A, then B): each token then carries
    the characters it came from, so an [UNK] can say what it replaced.
    """
    keep = [i for i, m in enumerate(enc.attention_mask) if m]
    seq_ids = enc.sequence_ids
    segments: list[int] = []
    current = 0
    for i in keep:
        # specials take the segment of what came before: [CLS]→A, the [SEP] after A→A
        current = seq_ids[i] if seq_ids[i] is not None else current
        segments.append(current)
    tokens = Tokens(
        texts=tuple(enc.tokens[i] for i in keep),
        special=tuple(bool(enc.special_tokens_mask[i]) for i in keep),
        word_ids=tuple(_word_id(enc, i) for i in keep),
        segments=tuple(segments) if any(segments) else (),
        offsets=tuple((int(enc.offsets[i][0]), int(enc.offsets[i][1])) for i in keep),
        sources=_sources(enc, keep, segments, texts) if texts else (),
    )
    return tokens, keep


def _sources(enc: Any, keep: list[int], segments: list[int], texts: Sequence[str]) -> tuple[str | None, ...]:
    """The characters behind each kept token; None for specials."""
    out: list[str | None] = []
    for i, segment in zip(keep, segments):
        start, end = enc.offsets[i]
        special = enc.special_tokens_mask[i] or segment >= len(texts)
        out.append(None if special else texts[segment][start:end])
    return tuple(out)


def _word_id(enc: Any, i: int) -> int | None:
    """Word index of token i; views merge *consecutive* pieces sharing one (pairs restart at 0)."""
    return None if enc.special_tokens_mask[i] else enc.word_ids[i]


def truncation_notes(*encodings: Any) -> tuple[str, ...]:
    """One note per sequence the tokenizer cut (its overflow is what was dropped)."""
    return tuple(
        f"{what} truncated to {sum(enc.attention_mask)} tokens (the model's maximum)"
        for what, enc in zip(("input", "target"), encodings)
        if enc is not None and enc.overflowing
    )
