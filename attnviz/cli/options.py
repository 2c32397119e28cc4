"""Options shared by several commands, and the helpers that turn them into core calls."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError, UsageError

if TYPE_CHECKING:
    from ..inputs import Sentence
    from ..models import Backend, Inputs

MODEL_PANEL = "Model"
SELECT_PANEL = "Selection"
SCRATCH_PANEL = "Scratch model (--model scratch)"

TextArg = Annotated[
    str, typer.Argument(metavar="TEXT", help="The sentence, or - to read standard input (one sentence per line).")
]
Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help="minilm (embedded default), scratch, a model folder, or a hub id.",
        rich_help_panel=MODEL_PANEL,
    ),
]
Device = Annotated[
    str, typer.Option(metavar="DEVICE", help="auto (CUDA when present), cpu, cuda or mps.", rich_help_panel=MODEL_PANEL)
]
Dtype = Annotated[
    str,
    typer.Option(
        metavar="DTYPE",
        help="float32, float16 or bfloat16 for the model; weights always come out float32.",
        rich_help_panel=MODEL_PANEL,
    ),
]
Pair = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT", help="Second sentence of a pair (encoders: [CLS] A [SEP] B [SEP]).", rich_help_panel=MODEL_PANEL
    ),
]
Target = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT",
        help="Decoder input for encoder-decoder models (default: the text itself).",
        rich_help_panel=MODEL_PANEL,
    ),
]
Source = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT",
        help="Scratch model: cross-attention, queries from TEXT, keys/values from SOURCE.",
        rich_help_panel=SCRATCH_PANEL,
    ),
]
Truncate = Annotated[
    bool,
    typer.Option(
        "--truncate",
        help="Cut inputs longer than the model's maximum (with a warning) instead of failing.",
        rich_help_panel=MODEL_PANEL,
    ),
]
TrustRemoteCode = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Allow a model folder's own Python code to run. Off unless you trust it.",
        rich_help_panel=MODEL_PANEL,
    ),
]
BatchSize = Annotated[
    int, typer.Option(min=1, metavar="N", help="Sentences per forward pass.", rich_help_panel=MODEL_PANEL)
]
Layers = Annotated[
    int, typer.Option("--layers", min=1, metavar="N", help="Attention layers.", rich_help_panel=SCRATCH_PANEL)
]
DModel = Annotated[
    int, typer.Option("--d-model", min=1, metavar="N", help="Model width.", rich_help_panel=SCRATCH_PANEL)
]
Heads = Annotated[
    int,
    typer.Option(
        "--heads", min=1, metavar="N", help="Attention heads (must divide --d-model).", rich_help_panel=SCRATCH_PANEL
    ),
]
Seed = Annotated[int, typer.Option(metavar="N", help="Seed for the projection weights.", rich_help_panel=SCRATCH_PANEL)]
Causal = Annotated[
    bool, typer.Option("--causal", help="Mask future tokens (decoder-style).", rich_help_panel=SCRATCH_PANEL)
]
Weights = Annotated[
    str | None,
    typer.Option(
        metavar="FILE", help="safetensors file with the scratch model's weights.", rich_help_panel=SCRATCH_PANEL
    ),
]
Layer = Annotated[
    str,
    typer.Option(
        "--layer", "-l", metavar="LAYER", help="N, -1, A:B (B excluded), 'last' or 'all'.", rich_help_panel=SELECT_PANEL
    ),
]
Head = Annotated[
    str,
    typer.Option(
        "--head",
        metavar="HEAD",
        help="N, A:B (B excluded), 'all', or aggregate over heads: 'mean' / 'max'.",
        rich_help_panel=SELECT_PANEL,
    ),
]
StackOpt = Annotated[
    str | None,
    typer.Option(
        "--stack",
        metavar="STACK",
        help="encoder, decoder or cross (default: every stack).",
        rich_help_panel=SELECT_PANEL,
    ),
]


SCRATCH_ONLY = {
    "--layers": "layers",
    "--d-model": "d_model",
    "--heads": "heads",
    "--seed": "seed",
    "--causal": "causal",
    "--weights": "weights",
}


def check_scratch_flags(model: str, **options: Any) -> None:
    """Scratch-only flags on another model are a usage error, not silently ignored."""
    from ..models import LoadOptions

    defaults = LoadOptions()
    for flag, name in SCRATCH_ONLY.items():
        if model != "scratch" and name in options and options[name] != getattr(defaults, name):
            raise UsageError(f"{flag} is for --model scratch, not {model}", hint=f"drop {flag}")


def load_model(model: str, **options: Any) -> Backend:
    """The backend for --model, loaded once per process; `options` are LoadOptions fields."""
    from ..api import cached_backend
    from ..models import LoadOptions

    check_scratch_flags(model, **options)
    return cached_backend(model, LoadOptions(**options))


def read_sentences_arg(text: str) -> list[Sentence]:
    """TEXT itself, or for '-' the sentences on stdin: the rules of `export --input` (tabs, #, BOM)."""
    from ..inputs import Sentence, read_sentences

    if text != "-":
        return [Sentence(0, 1, text)]
    sentences = read_sentences("-")
    for sentence in sentences:
        if sentence.error:  # show/tokens/explain print one result: a bad line stops them
            raise InputError(sentence.error)
    return sentences


def make_inputs(
    sentences: list[Sentence], backend: Backend, pair: str | None, target: str | None, source: str | None
) -> list[Inputs]:
    """Inputs for the model; checks that it has a use for --pair/--target/--source (else UsageError)."""
    from ..api import check_fits
    from ..inputs import to_inputs

    inputs = to_inputs(sentences, backend.info.family, pair=pair, target=target, source=source)
    check_fits(backend, inputs)
    return inputs


def check_view_flags(head: str, agg: str, hide_special: bool, renormalize: bool) -> None:
    """View flags that contradict each other (show and export share them)."""
    if renormalize and not hide_special:
        raise UsageError("--renormalize only applies with --hide-special", hint="add --hide-special")
    if agg in ("mean", "max") and head.strip().lower() not in ("all", agg):
        raise UsageError(f"--agg {agg} combines every head; it cannot go with --head {head}", hint="drop one of them")


def write_stdout(data: str) -> None:
    """Data goes to stdout in one write; talk goes to stderr elsewhere."""
    sys.stdout.write(data)
    sys.stdout.flush()


VIEW_PANEL = "View"
Agg = Annotated[
    str,
    typer.Option(
        "--agg",
        metavar="AGG",
        help="none, mean / max over heads, or rollout: identity added, rows renormalised, layers multiplied.",
        rich_help_panel=VIEW_PANEL,
    ),
]
HideSpecial = Annotated[
    bool,
    typer.Option("--hide-special", help="Hide [CLS]/[SEP]/<s>/</s>/BOS rows and columns.", rich_help_panel=VIEW_PANEL),
]
Renormalize = Annotated[
    bool,
    typer.Option(
        "--renormalize", help="With --hide-special: rescale rows to sum to 1 again.", rich_help_panel=VIEW_PANEL
    ),
]
Words = Annotated[
    bool,
    typer.Option(
        "--words",
        help="Merge word pieces into words: weights summed over a word's key pieces, averaged over its query pieces.",
        rich_help_panel=VIEW_PANEL,
    ),
]
TokenWindow = Annotated[
    str | None,
    typer.Option("--tokens", metavar="A:B", help="Show only tokens A:B (end exclusive).", rich_help_panel=VIEW_PANEL),
]
