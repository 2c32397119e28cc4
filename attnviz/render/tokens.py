"""`attnviz tokens` and `attnviz info` as tables: what the model sees, and what it is."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ..backends.types import ModelInfo
from ..result import Tokens
from ..tokentext import printable


def token_records(tokens: Tokens) -> list[dict[str, Any]]:
    """Every column of the tokens table, one dict per token."""
    return [
        {
            "index": i,
            "token": tok,
            "special": tokens.is_special(i),
            "word": tokens.word_ids[i] if tokens.word_ids else None,
            "segment": tokens.segments[i] if tokens.segments else 0,
            "offsets": list(tokens.offsets[i]) if tokens.offsets else None,
            "from_text": tokens.sources[i] if tokens.sources else None,
        }
        for i, tok in enumerate(tokens.texts)
    ]


def tokens_table(name: str, tokens: Tokens) -> Table:
    """One row per token: index, text, special flag, word index, segment, and the text it came from."""
    table = Table(title=f"{name} · {len(tokens)} tokens", title_justify="left")
    for column in ("#", "token", "special", "word", "segment", "from text"):
        table.add_column(column, justify="right" if column in ("#", "word", "segment") else "left")
    for row in token_records(tokens):
        source = row["from_text"]
        table.add_row(
            str(row["index"]),
            printable(row["token"]),
            "yes" if row["special"] else "",
            "" if row["word"] is None else str(row["word"]),
            str(row["segment"]),
            "" if source is None else repr(source) if source != source.strip() else printable(source),
        )
    return table


def info_table(meta: ModelInfo) -> Table:
    """Family, stacks, layers, heads, width, vocabulary, maximum length, path and extras."""
    table = Table(show_header=False, title=meta.name, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("family", meta.family),
        ("backend", meta.backend),
        ("stacks", ", ".join(meta.stacks)),
        ("layers", ", ".join(f"{k} {v}" for k, v in meta.layers.items())),
        ("heads", str(meta.heads)),
        ("d_model", str(meta.d_model)),
        ("vocabulary", str(meta.vocab_size) if meta.vocab_size else "open"),
        ("max positions", str(meta.max_positions) if meta.max_positions else "unbounded"),
    ]
    rows += [("path", meta.path)] if meta.path else []
    rows += [(k, str(v)) for k, v in meta.extra.items()]
    for key, value in rows:
        table.add_row(key, value)
    return table
