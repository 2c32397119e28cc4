"""Options shared by several commands, and the helpers that turn them into core calls.

Enumerated options are enums (Typer shows and checks their choices); selection strings
('2:4', 'mean') go to spec.ViewSpec.build, the one parser. Only this layer knows flag
names: hints.py words the core's remedies as flags.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..backends.types import Device, DeviceMap, Dtype
from ..errors import InputError, UsageError
from ..spec import Agg, Annotate, ExportView, ImageFormat, Indices, StackName, TokenWindow, ViewSpec, parse_head
from .help import IMAGE_PANEL, MODEL_PANEL, OUTPUT_PANEL, SCRATCH_PANEL, SELECT_PANEL, VIEW_PANEL

if TYPE_CHECKING:
    from ..backends.types import Backend, Inputs
    from ..inputs import Sentence

T = TypeVar("T")


class OutputFormat(str, Enum):
    """What show and render print."""

    TABLE = "table"
    HEAT = "heat"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    NPZ = "npz"
    HTML = "html"


FORMAT_HELP = (
    "table: heat tables (a heatmap when the input is too wide for one); heat: always the compact heatmap; "
    "json: one attnviz/2 document; jsonl: one per line, one line per sentence; "
    "csv: one row per (sentence, stack, layer, head, query, key); npz: numpy arrays, every sentence (redirect it); "
    "html: an interactive page, every layer unless --layer narrows it (redirect it: > page.html)."
)

TextsArg = Annotated[
    list[str],
    typer.Argument(
        metavar="TEXT",
        help="One or more sentences, or - to read standard input (one sentence per line).",
        show_default=False,
    ),
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
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto: CUDA when present.", rich_help_panel=MODEL_PANEL)]
DtypeOpt = Annotated[
    Dtype,
    typer.Option("--dtype", help="The model's dtype; weights always come out float32.", rich_help_panel=MODEL_PANEL),
]
DeviceMapOpt = Annotated[
    DeviceMap | None,
    typer.Option(
        "--device-map",
        help="auto: spread a transformers model too big for one device over the GPUs and the CPU "
        "(needs accelerate: pip install 'attnviz[big]'); leave --device out.",
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
AllowMissing = Annotated[
    bool,
    typer.Option(
        "--allow-missing",
        help="Run a checkpoint that leaves some of the model's weights random (missing or unexpected keys).",
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


def _seed_range(value: int) -> int:
    if not 0 <= value < 2**63:  # torch seeds are signed 64-bit
        raise typer.BadParameter("a seed is a whole number from 0 to 2**63 - 1")
    return value


Seed = Annotated[
    int,
    typer.Option(
        metavar="N", callback=_seed_range, help="Seed for the projection weights.", rich_help_panel=SCRATCH_PANEL
    ),
]
Causal = Annotated[
    bool, typer.Option("--causal", help="Mask future tokens (decoder-style).", rich_help_panel=SCRATCH_PANEL)
]
Weights = Annotated[
    str | None,
    typer.Option(
        metavar="FILE", help="safetensors file with the scratch model's weights.", rich_help_panel=SCRATCH_PANEL
    ),
]

# ---------------------------------------------------------------- the view (show, export, render)

Layer = Annotated[
    str | None,
    typer.Option(
        "--layer",
        "-l",
        metavar="N|A:B|last|all",
        help="The model's layer numbers: N, -1, A:B (B excluded), lists, 'last' or 'all'.",
        show_default=False,
        rich_help_panel=SELECT_PANEL,
    ),
]
HEAD_HELP = "Heads: N, A:B (B excluded), lists, 'all', or every head combined: 'mean' / 'max'."
Head = Annotated[
    str, typer.Option("--head", metavar="N|A:B|all|mean|max", help=HEAD_HELP, rich_help_panel=SELECT_PANEL)
]
HeadOrOverview = Annotated[  # show and render: no --head means the layer at a glance
    str | None,
    typer.Option(
        "--head",
        metavar="N|A:B|all|mean|max",
        help=HEAD_HELP + " Default: a table shows the layer at a glance (mean map, one line per head); data holds all.",
        show_default=False,
        rich_help_panel=SELECT_PANEL,
    ),
]
StackOpt = Annotated[
    StackName | None,
    typer.Option("--stack", help="One stack (default: every stack).", show_default=False, rich_help_panel=SELECT_PANEL),
]
AggOpt = Annotated[
    Agg,
    typer.Option(
        "--agg",
        help="Combine the chosen heads (mean, max), or roll out across layers: identity added, rows renormalised, "
        "layers multiplied.",
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
TokenWindowOpt = Annotated[
    str | None,
    typer.Option("--tokens", metavar="A:B", help="Show only tokens A:B (end exclusive).", rich_help_panel=VIEW_PANEL),
]
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
Format = Annotated[OutputFormat, typer.Option("--format", "-f", help=FORMAT_HELP, rich_help_panel=OUTPUT_PANEL)]
FormatOrNone = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format", "-f", help=FORMAT_HELP + " Default: table.", show_default=False, rich_help_panel=OUTPUT_PANEL
    ),
]
Digits = Annotated[
    int,
    typer.Option(min=0, max=6, metavar="N", help="Decimal places in tables and bars.", rich_help_panel=OUTPUT_PANEL),
]

# ---------------------------------------------------------------- images (export, render)

ViewOpt = Annotated[
    ExportView,
    typer.Option(
        "--view",
        help="head: one image per map; layer: a grid of the heads, one image per layer; model: layers × heads in one.",
        rich_help_panel=IMAGE_PANEL,
    ),
]
ViewOrNone = Annotated[
    ExportView | None,
    typer.Option(
        "--view",
        help="With --image: head (one image per map), layer (a grid of the heads), model (layers × heads). "
        "Default: head.",
        show_default=False,
        rich_help_panel=IMAGE_PANEL,
    ),
]
ImageOpt = Annotated[ImageFormat, typer.Option("--image", help="The image format.", rich_help_panel=IMAGE_PANEL)]
ImageOrNone = Annotated[
    ImageFormat | None,
    typer.Option(
        "--image",
        help="Write images of this format (to --out) instead of printing.",
        show_default=False,
        rich_help_panel=IMAGE_PANEL,
    ),
]
Cmap = Annotated[str, typer.Option(metavar="NAME", help="A matplotlib colour map.", rich_help_panel=IMAGE_PANEL)]
Dpi = Annotated[
    int,
    typer.Option(
        min=10, max=1200, metavar="N", help="Pixels per inch (PNG size; SVG/PDF images).", rich_help_panel=IMAGE_PANEL
    ),
]
Vmax = Annotated[
    str,
    typer.Option(
        metavar="auto|X",
        help="Top of the colour scale: a number (the same for every map) or auto (the largest weight shown).",
        rich_help_panel=VIEW_PANEL,
    ),
]
VmaxOrNone = Annotated[
    str | None,
    typer.Option(
        "--vmax",
        metavar="auto|X",
        help="Top of the colour scale: a number or auto (the largest weight shown). "
        "Default: auto in the terminal, 1 in images.",
        show_default=False,
        rich_help_panel=VIEW_PANEL,
    ),
]
Caption = Annotated[
    bool, typer.Option("--caption", help="Write the sentence under each image.", rich_help_panel=IMAGE_PANEL)
]
FigSize = Annotated[
    str | None,
    typer.Option(
        metavar="W,H",
        help="Figure size in inches (default: from the number of tokens); cells shrink to fit.",
        show_default=False,
        rich_help_panel=IMAGE_PANEL,
    ),
]
FontSize = Annotated[
    float | None,
    typer.Option(
        metavar="PT",
        help="Token label size in points (default: from the cell size).",
        show_default=False,
        rich_help_panel=IMAGE_PANEL,
    ),
]
MaxPixels = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Longest side of an image in pixels: cells shrink and labels thin out to stay within it.",
        rich_help_panel=IMAGE_PANEL,
    ),
]
AnnotateOpt = Annotated[
    Annotate,
    typer.Option(
        "--annotate", help="Values in the cells: auto = single maps up to 16 tokens.", rich_help_panel=IMAGE_PANEL
    ),
]
ManifestOpt = Annotated[
    str | None,
    typer.Option(
        "--manifest",
        metavar="-",
        help="'-' also prints each manifest line to stdout (DIR/manifest.jsonl is always kept).",
        rich_help_panel=IMAGE_PANEL,
    ),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Redraw images that are already complete.", rich_help_panel=IMAGE_PANEL)
]
Jobs = Annotated[
    int,
    typer.Option(
        min=0,
        metavar="N",
        help="Drawing processes: 0 = one per core, 1 = no extra process.",
        rich_help_panel=IMAGE_PANEL,
    ),
]


def view_spec(
    *,
    stack: StackName | None,
    layer: str | None,
    head: str,
    agg: Agg = Agg.NONE,
    words: bool = False,
    hide_special: bool = False,
    renormalize: bool = False,
    tokens: str | None = None,
    query: str | None = None,
) -> ViewSpec:
    """The view flags as one ViewSpec; each unreadable value is a usage error naming its flag."""

    def parsed(flag: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except UsageError as exc:
            raise UsageError(f"{flag}: {exc.message}", hint=exc.hint) from None

    if renormalize and not hide_special:
        raise UsageError("--renormalize only applies with --hide-special", hint="add --hide-special")
    heads, head_agg = parsed("--head", lambda: parse_head(head))
    if head_agg is not None and agg in (Agg.MEAN, Agg.MAX) and agg.value != head_agg.value:
        raise UsageError(f"--head {head_agg.value} and --agg {agg.value} combine heads two ways", hint="drop one")
    return ViewSpec.build(
        stack=stack,
        layer=None if layer is None else parsed("--layer", lambda: Indices.parse(layer, "layer")),
        head=head if head_agg is not None else heads,
        agg=agg,
        words=words,
        hide_special=hide_special,
        renormalize=renormalize,
        tokens=None if tokens is None else parsed("--tokens", lambda: TokenWindow.parse(tokens)),
        query=query,
    )


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
    from ..backends.types import LoadOptions

    defaults = LoadOptions()
    for flag, name in SCRATCH_ONLY.items():
        if model != "scratch" and name in options and options[name] != getattr(defaults, name):
            raise UsageError(f"{flag} is for --model scratch, not {model}", hint=f"drop {flag}")


def load_model(model: str, **options: Any) -> Backend:
    """The backend for --model, loaded once per process; `options` are LoadOptions fields."""
    from ..backends.registry import cached
    from ..backends.types import LoadOptions

    check_scratch_flags(model, **options)
    return cached(model, LoadOptions(**options))


def read_sentences_arg(text: str) -> list[Sentence]:
    """One TEXT argument (explain): the rules of read_texts."""
    return read_texts([text])


def read_texts(texts: list[str]) -> list[Sentence]:
    """Several TEXT arguments, or '-' alone for stdin; a bad line stops the command."""
    sentences = sentences_from(texts, None, "no sentence given", 'give one: attnviz show "I have a dream"')
    for sentence in sentences:
        if sentence.error:
            raise InputError(sentence.error)
    return sentences


def sentences_from(texts: list[str], input_file: str | None, nothing: str, example: str) -> list[Sentence]:
    """Sentences given as arguments, as '-' (stdin) or with --input FILE (export, heads).

    `nothing` and `example` make the usage error for none at all.
    """
    from ..inputs import from_arguments, read_sentences

    if texts and input_file is not None:
        raise UsageError("give sentences or --input FILE, not both")
    if "-" in texts and len(texts) > 1:
        raise UsageError("'-' reads the sentences from standard input: give it alone", hint="drop the other sentences")
    if input_file is not None or texts == ["-"]:
        path = input_file or "-"
        if path == "-" and sys.stdin is not None and sys.stdin.isatty():
            say("reading", "sentences from the terminal, one per line; end with Ctrl-D")
        return read_sentences(path)
    if not texts:
        raise UsageError(nothing, hint=example)
    if len(texts) == 1 and not texts[0].strip():
        raise InputError("the text is empty", hint="give a sentence, or - to read standard input")
    if not all(t.strip() for t in texts):
        raise InputError("a sentence is empty", hint="give non-empty sentences, or --input FILE")
    return from_arguments(texts)


def make_inputs(
    sentences: list[Sentence], backend: Backend, pair: str | None, target: str | None, source: str | None
) -> list[Inputs]:
    """Inputs for the model; checks that it has a use for --pair/--target/--source (else UsageError)."""
    from ..api import check_fits
    from ..inputs import to_inputs

    inputs = to_inputs(sentences, backend.info.family, pair=pair, target=target, source=source)
    check_fits(backend, inputs)
    return inputs


def write_stdout(data: str) -> None:
    """Data goes to stdout in one write; talk goes to stderr elsewhere."""
    sys.stdout.write(data)
    sys.stdout.flush()


def say(kind: str, text: str) -> None:
    """One line of talk on stderr: 'warning: …', 'error: …'."""
    sys.stderr.write(f"{kind}: {text}\n")
