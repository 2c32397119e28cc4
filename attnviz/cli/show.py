"""`attnviz show`: attention of one or more sentences, as tables or data."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from .app import app
from .options import (
    BatchSize,
    Causal,
    Device,
    DModel,
    Dtype,
    Head,
    Heads,
    Layer,
    Layers,
    Model,
    ModelArgs,
    Pair,
    Seed,
    Source,
    StackOpt,
    Target,
    TextArg,
    Truncate,
    TrustRemoteCode,
    Weights,
    make_inputs,
    read_texts,
    write_stdout,
)

FORMATS = ("table", "json", "jsonl")


@app.command()
def show(
    text: TextArg,
    model: Model = "minilm",
    layer: Layer = "last",
    head: Head = "all",
    stack: StackOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.")] = "table",
    digits: Annotated[int, typer.Option(min=0, max=6, help="Decimal places in tables.")] = 2,
    pair: Pair = None,
    target: Target = None,
    source: Source = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    batch_size: BatchSize = 16,
    layers: Layers = 1,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
    causal: Causal = False,
    weights: Weights = None,
) -> None:
    """Show attention weights: heat tables in the terminal, or JSON for pipelines."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")
    texts = read_texts(text)
    if fmt == "json" and len(texts) > 1:
        raise UsageError(
            f"{len(texts)} sentences on standard input but --format json prints one document", hint="use --format jsonl"
        )
    args = ModelArgs(model, device, dtype, trust_remote_code, layers, d_model, heads, seed, causal, weights)
    from ..api import run_batch
    from ..views import select

    results = run_batch(args.load(), make_inputs(texts, pair, target, source), batch_size=batch_size, truncate=truncate)
    selected = [select(r, layer, head, stack) for r in results]
    if fmt == "json":
        from ..render.data import to_json

        write_stdout(to_json(selected[0]) + "\n")
    elif fmt == "jsonl":
        from ..render.data import to_jsonl

        write_stdout(to_jsonl(selected))
    else:
        from rich.console import Console

        from ..render.table import render

        console = Console()
        for r in selected:
            console.print(render(r, digits))
