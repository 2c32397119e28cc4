"""`attnviz tokens`: how the model splits a sentence."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from ..backends.types import Device
from .options import (
    DeviceOpt,
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


class TokensFormat(str, Enum):
    TABLE = "table"
    JSON = "json"


def tokens(
    text: TextArg,
    model: Model = "minilm",
    pair: Pair = None,
    target: Target = None,
    source: Source = None,
    fmt: Annotated[TokensFormat, typer.Option("--format", "-f", help="A table, or one JSON line per sentence.")] = (
        TokensFormat.TABLE
    ),
    device: DeviceOpt = Device.AUTO,
    trust_remote_code: TrustRemoteCode = False,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
) -> None:
    """Print the tokens the model sees, with their indices."""
    from ..api import check_text

    backend = load_model(
        model, device=device, trust_remote_code=trust_remote_code, d_model=d_model, heads=heads, seed=seed
    )
    for inputs in make_inputs(read_sentences_arg(text), backend, pair, target, source):
        check_text(inputs.text)
        sequences = backend.tokenize(inputs)
        if fmt is TokensFormat.JSON:
            doc = {name: list(toks.texts) for name, toks in sequences.items()}
            write_stdout(json.dumps({"text": inputs.text, **doc}, ensure_ascii=False) + "\n")
            continue
        from rich.console import Console

        from ..render.tokens import tokens_table

        for name, toks in sequences.items():
            Console().print(tokens_table(name, toks))
