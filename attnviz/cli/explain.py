"""`attnviz explain`: one attention layer, computed and shown step by step."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..errors import UsageError
from ..limits import MAX_LAYERS, MAX_LINE_BYTES
from .help import LESSON_PANEL
from .options import (
    Causal,
    DModel,
    Heads,
    Layers,
    MaxLayers,
    MaxLineBytes,
    MaxParams,
    Seed,
    Source,
    Weights,
    check_scratch_flags,
    read_sentences_arg,
    write_stdout,
)


class ExplainFormat(str, Enum):
    TABLE = "table"  # the lesson
    JSON = "json"  # every tensor


EXAMPLES = """
# the classic example: 4 tokens, 512 wide, 8 heads, random weights
attnviz explain "I have a dream"
# a layer of the trained MiniLM, checked against transformers
attnviz explain "I have a dream" --model minilm --layer 2
# every tensor of the walk as JSON
attnviz explain "I have a dream" --format json > steps.json
"""


def explain(
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT", help="The sentence to walk through (a few words read best), or - for one line on stdin."
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="scratch (default: 512 wide, 8 heads — the classic example), minilm, or a BERT model folder.",
        ),
    ] = "scratch",
    layer: Annotated[
        int,
        typer.Option("--layer", "-l", help="Which layer to walk (0-based, -1 = last).", rich_help_panel=LESSON_PANEL),
    ] = 0,
    head: Annotated[
        int, typer.Option("--head", help="Which head the value tables show.", rich_help_panel=LESSON_PANEL)
    ] = 0,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            "-q",
            help="Query token for the pooling view: index or text (default: the last word, not [SEP]).",
            rich_help_panel=LESSON_PANEL,
        ),
    ] = None,
    fmt: Annotated[
        ExplainFormat, typer.Option("--format", "-f", help="table (the lesson) or json (every tensor).")
    ] = ExplainFormat.TABLE,
    digits: Annotated[int, typer.Option(min=0, max=6, help="Decimal places in tables.")] = 2,
    source: Source = None,
    layers: Layers = 1,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
    causal: Causal = False,
    weights: Weights = None,
    max_line_bytes: MaxLineBytes = MAX_LINE_BYTES,
    max_params: MaxParams = None,
    max_layers: MaxLayers = MAX_LAYERS,
) -> None:
    """Walk one attention layer step by step: X, Q/K/V, head split, scores, √d_k, mask, softmax, weighted sum, output.

    Without --model it runs the scratch model (d_model 512, 8 heads), so "I have a dream"
    shows (1, 4, 512) → (1, 4, 8, 64) → (1, 8, 4, 64). With --model minilm --layer N it
    transplants that layer of the embedded model and checks the weights against transformers.
    """
    check_scratch_flags(model, layers=layers, d_model=d_model, heads=heads, seed=seed, causal=causal, weights=weights)
    if model != "scratch" and source is not None:
        raise UsageError("--source (cross-attention) is for --model scratch", hint="add --model scratch")
    from ..backends.types import Device, LoadOptions
    from ..explain import explain as walk

    options = LoadOptions(
        device=Device.CPU, layers=layers, d_model=d_model, heads=heads, seed=seed, causal=causal, weights=weights
    )
    texts = read_sentences_arg(text, max_line_bytes)
    if len(texts) > 1:
        raise UsageError(f"{len(texts)} sentences on standard input; explain walks one", hint="pipe in a single line")
    from ..limits import Limits

    limits = Limits(max_params, max_layers)
    lesson = walk(
        texts[0].text, model, layer=layer, head=head, query=query, source=source, options=options, limits=limits
    )
    if fmt is ExplainFormat.JSON:
        from ..saved import dumps  # lazy: numpy stays out of --help

        write_stdout(dumps(lesson.to_json()) + "\n")
        return
    from ..render.explain import render
    from ..render.term import has_color
    from .console import print_trimmed, stdout_console

    console = stdout_console()
    print_trimmed(console, render(lesson, width=console.width, digits=digits, color=has_color(console)))
