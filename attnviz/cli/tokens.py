"""`attnviz tokens`: how the model splits a sentence."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..backends.types import Device
from ..limits import MAX_LAYERS, MAX_LINE_BYTES
from .options import (
    AllowMissing,
    DeviceOpt,
    DModel,
    Heads,
    MaxLayers,
    MaxLineBytes,
    MaxParams,
    Model,
    Pair,
    Seed,
    Source,
    Target,
    TextsArg,
    TrustRemoteCode,
    check_scratch_flags,
    make_inputs,
    read_texts,
    write_stdout,
)


class TokensFormat(str, Enum):
    TABLE = "table"
    JSON = "json"


EXAMPLES = """
# the tokens MiniLM sees, with special, word and segment columns
attnviz tokens "I have a dream"
# a sentence pair, as JSON with every column
attnviz tokens "I have a dream" --pair "so do I" --format json
"""


def tokens(
    texts: TextsArg,
    model: Model = "minilm",
    pair: Pair = None,
    target: Target = None,
    source: Source = None,
    fmt: Annotated[
        TokensFormat,
        typer.Option("--format", "-f", help="table, or json: one line per sentence with every column of the table."),
    ] = TokensFormat.TABLE,
    device: DeviceOpt = Device.AUTO,
    trust_remote_code: TrustRemoteCode = False,
    allow_missing: AllowMissing = False,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
    max_line_bytes: MaxLineBytes = MAX_LINE_BYTES,
    max_params: MaxParams = None,
    max_layers: MaxLayers = MAX_LAYERS,
) -> None:
    """Print the tokens the model sees, with their indices."""
    from ..api import check_text
    from ..backends.registry import load_tokenizer
    from ..backends.types import LoadOptions
    from ..limits import Limits

    check_scratch_flags(model, d_model=d_model, heads=heads, seed=seed)
    options = LoadOptions(
        device=device,
        trust_remote_code=trust_remote_code,
        allow_missing=allow_missing,
        d_model=d_model,
        heads=heads,
        seed=seed,
    )
    # the embedded model's: its tokenizer alone, no torch
    backend = load_tokenizer(model, options, Limits(max_params, max_layers))
    from ..render.tokens import token_records, tokens_table
    from .console import print_trimmed, sentence_heading, stdout_console

    sentences = make_inputs(read_texts(texts, max_line_bytes), backend, pair, target, source)
    for inputs in sentences:
        check_text(inputs.text)
    # each sentence's tokens are printed as they are made: memory holds one sentence's, not the file's
    tokenized = ((inputs, backend.tokenize(inputs)) for inputs in sentences)
    if fmt is TokensFormat.JSON:
        from ..saved import dumps  # lazy: numpy stays out of --help

        for inputs, sequences in tokenized:
            doc = {name: token_records(toks) for name, toks in sequences.items()}
            write_stdout(dumps({"text": inputs.text, **inputs.extras(), **doc}) + "\n")
        return
    console = stdout_console()
    for inputs, sequences in tokenized:
        if len(sentences) > 1:
            print_trimmed(console, sentence_heading(inputs.text))
        for name, toks in sequences.items():
            print_trimmed(console, tokens_table(name, toks))
