"""`attnviz tokens`: how the model splits a sentence."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import UsageError
from .app import app
from .options import (
    Device,
    DModel,
    Heads,
    Model,
    Pair,
    Seed,
    Source,
    Target,
    TextArg,
    TrustRemoteCode,
    load_model,
    make_inputs,
    read_sentences_arg,
    write_stdout,
)


@app.command()
def tokens(
    text: TextArg,
    model: Model = "minilm",
    pair: Pair = None,
    target: Target = None,
    source: Source = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    device: Device = "auto",
    trust_remote_code: TrustRemoteCode = False,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
) -> None:
    """Print the tokens the model sees, with their indices."""
    if fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {fmt!r}", hint="choose table or json")
    from ..api import check_text

    backend = load_model(
        model, device=device, trust_remote_code=trust_remote_code, d_model=d_model, heads=heads, seed=seed
    )
    for inputs in make_inputs(read_sentences_arg(text), backend, pair, target, source):
        check_text(inputs.text)
        sequences = backend.tokenize(inputs)
        if fmt == "json":
            doc = {name: list(toks.texts) for name, toks in sequences.items()}
            write_stdout(json.dumps({"text": inputs.text, **doc}, ensure_ascii=False) + "\n")
            continue
        from rich.console import Console
        from rich.table import Table

        for name, toks in sequences.items():
            table = Table(title=f"{name} · {len(toks)} tokens", title_justify="left")
            for column in ("#", "token", "special", "word", "segment"):
                table.add_column(column, justify="right" if column in ("#", "word", "segment") else "left")
            for i, tok in enumerate(toks.texts):
                word = toks.word_ids[i] if toks.word_ids else None
                seg = toks.segments[i] if toks.segments else 0
                table.add_row(
                    str(i), tok, "yes" if toks.is_special(i) else "", "" if word is None else str(word), str(seg)
                )
            Console().print(table)
