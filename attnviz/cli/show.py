"""`attnviz show`: attention of one or more sentences, as heat tables, heatmaps, bars or data."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from .app import app
from .options import (
    VIEW_PANEL,
    Agg,
    BatchSize,
    Causal,
    Device,
    DModel,
    Dtype,
    Head,
    Heads,
    HideSpecial,
    Layer,
    Layers,
    Model,
    Pair,
    Renormalize,
    Seed,
    Source,
    StackOpt,
    Target,
    TextArg,
    TokenWindow,
    Truncate,
    TrustRemoteCode,
    Weights,
    Words,
    check_view_flags,
    load_model,
    make_inputs,
    read_sentences_arg,
    write_stdout,
)

if TYPE_CHECKING:
    from ..result import AttentionResult

FORMATS = ("table", "heat", "json", "jsonl", "csv", "npz")
OUTPUT_PANEL = "Output"
FORMAT_HELP = (
    "table: heat tables (a heatmap when the input is too wide for one); heat: always the compact heatmap; "
    "json: one attnviz/1 document; jsonl: one per line, one line per sentence; "
    "csv: one row per (stack, layer, head, query, key); npz: numpy arrays (redirect it to a file)."
)

Query = Annotated[
    str | None,
    typer.Option(
        "--query",
        "-q",
        metavar="TOKEN|INDEX",
        help="One query token's weights over the keys, as bars, one block per head. "
        "TOKEN (its text, first match) or INDEX (as shown, after --words/--hide-special/--tokens).",
        rich_help_panel=VIEW_PANEL,
    ),
]
Format = Annotated[
    str, typer.Option("--format", "-f", metavar="FORMAT", help=FORMAT_HELP, rich_help_panel=OUTPUT_PANEL)
]
Digits = Annotated[
    int,
    typer.Option(min=0, max=6, metavar="N", help="Decimal places in tables and bars.", rich_help_panel=OUTPUT_PANEL),
]


def _check_flags(fmt: str, head: str, agg: str, hide_special: bool, renormalize: bool) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")
    check_view_flags(head, agg, hide_special, renormalize)
    if fmt == "npz" and sys.stdout.isatty():
        raise UsageError(
            "npz is binary and stdout is a terminal", hint="redirect it to a file: ... --format npz > a.npz"
        )


def _print_terminal(shown: list[AttentionResult], fmt: str, digits: int, query: str | None) -> None:
    from rich.console import Console
    from rich.text import Text

    from ..render import bars, table

    console = Console()  # colour only on a terminal (or FORCE_COLOR); NO_COLOR respected
    for n, result in enumerate(shown):
        if len(shown) > 1:
            if n:
                console.print()
            console.print(Text(f"» {result.text}", style="bold reverse", no_wrap=True, overflow="ellipsis"))
        console.print(bars.render(result, digits) if query is not None else table.render(result, digits, fmt))


@app.command()
def show(
    text: TextArg,
    model: Model = "minilm",
    layer: Layer = "last",
    head: Head = "all",
    stack: StackOpt = None,
    agg: Agg = "none",
    hide_special: HideSpecial = False,
    renormalize: Renormalize = False,
    words: Words = False,
    tokens: TokenWindow = None,
    query: Query = None,
    fmt: Format = "table",
    digits: Digits = 2,
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
    """Show attention weights: every head of the last layer as heat tables, or data for pipelines."""
    _check_flags(fmt, head, agg, hide_special, renormalize)  # before reading stdin: a typo should not wait
    texts = read_sentences_arg(text)
    if fmt in ("json", "npz") and len(texts) > 1:
        raise UsageError(
            f"{len(texts)} sentences on standard input but --format {fmt} holds one", hint="use --format jsonl or csv"
        )
    from ..api import run_batch
    from ..views import query_view, view

    backend = load_model(
        model,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        layers=layers,
        d_model=d_model,
        heads=heads,
        seed=seed,
        causal=causal,
        weights=weights,
    )
    inputs = make_inputs(texts, backend, pair, target, source)
    results = run_batch(backend, inputs, batch_size=batch_size, truncate=truncate)
    for r in results:  # talk goes to stderr, so a pipe still gets clean data
        for warning in r.warnings:
            sys.stderr.write(f"warning: {warning}{f' ({r.text[:40]!r})' if len(results) > 1 else ''}\n")
    shown = [view(r, layer, head, stack, agg, hide_special, renormalize, words, tokens) for r in results]
    if query is not None:
        shown = [query_view(r, query) for r in shown]
    if fmt in ("table", "heat"):
        _print_terminal(shown, fmt, digits, query)
        return
    from ..render import data

    if fmt == "json":
        write_stdout(data.to_json(shown[0]) + "\n")
    elif fmt == "jsonl":
        write_stdout(data.to_jsonl(shown))
    elif fmt == "csv":
        write_stdout(data.to_csv(shown))
    else:
        sys.stdout.buffer.write(data.to_npz(shown[0]))
        sys.stdout.buffer.flush()
