"""Options shared by several commands, and the helpers that turn them into core calls.

Enumerated options are enums (Typer shows and checks their choices); selection strings
('2:4', 'mean') go to spec.ViewSpec.build, the one parser. Only this layer knows flag
names: hints.py words the core's remedies as flags.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..backends.types import MAX_GENERATE, Device, DeviceMap, Dtype
from ..errors import InputError, UsageError
from ..limits import MAX_LAYERS, MAX_LINE_BYTES
from ..spec import Agg, Annotate, ExportView, ImageFormat, Indices, StackName, TokenWindow, ViewSpec, parse_head
from ..threads import cores
from .help import IMAGE_PANEL, INPUT_PANEL, MODEL_PANEL, OUTPUT_PANEL, SCRATCH_PANEL, SELECT_PANEL, VIEW_PANEL

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
Generate = Annotated[
    int | None,
    typer.Option(
        "--generate",
        min=1,
        max=MAX_GENERATE,
        metavar="N",
        help="Decoders: continue the text by N tokens (greedy: the most likely token each step, stopping at "
        "end-of-sequence), then show attention over text + continuation; generated tokens are marked ⁺.",
        show_default=False,
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
MaxLineBytes = Annotated[
    int,
    typer.Option(
        "--max-line-bytes",
        min=1,
        metavar="N",
        help="Longest input line, in bytes: a longer one fails with its line number before anything is tokenised "
        "(with --truncate only its first N bytes are read).",
        rich_help_panel=INPUT_PANEL,
    ),
]
MaxParams = Annotated[
    int | None,
    typer.Option(
        "--max-params",
        min=1,
        metavar="N",
        help="Refuse a model with more parameters than N, counted from its config before anything is loaded. "
        "Default: as many float32 weights as this machine's memory holds.",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
    ),
]
MaxLayers = Annotated[
    int,
    typer.Option(
        "--max-layers",
        min=1,
        metavar="N",
        help="Refuse a model (or scratch model) with more layers than N, before it is built.",
        rich_help_panel=MODEL_PANEL,
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(min=1, max=65536, metavar="N", help="Sentences per forward pass.", rich_help_panel=MODEL_PANEL),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="Threads for the model's arithmetic (torch, and numpy's BLAS for the embedded model). "
        "Default: 1 for models under 100M parameters (faster on a busy machine), else one per core; "
        "OMP_NUM_THREADS is kept when set.",
        show_default=False,
        rich_help_panel=MODEL_PANEL,
    ),
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
Compress = Annotated[
    bool,
    typer.Option(
        "--compress",
        help="Deflate the npz members (numpy.savez_compressed's way): ~8% smaller at ~30x the time.",
        rich_help_panel=OUTPUT_PANEL,
    ),
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


def _cap_jobs(value: int) -> int:
    """More drawing processes than cores only fight over them: use the cores, and say so."""
    n = cores()
    if value > n:
        say("warning", f"--jobs {value} is more than the {n} core{'s' if n != 1 else ''} here: using {n}")
        return n
    return value


Jobs = Annotated[
    int,
    typer.Option(
        min=0,
        metavar="N",
        callback=_cap_jobs,
        help="Drawing processes: 0 = one per core once the images left would take seconds here (small runs "
        "draw in this process), N = that many from the start, 1 = no extra process; at most one per core.",
        rich_help_panel=IMAGE_PANEL,
    ),
]
MaxTotalPixels = Annotated[
    int,
    typer.Option(
        "--max-total-pixels",
        min=1,
        metavar="N",
        help="Pixels all the images of one run may hold together, counted before each sentence is drawn: "
        "the run stops with an error before going over.",
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


def load_model(model: str, max_params: int | None = None, max_layers: int = MAX_LAYERS, **options: Any) -> Backend:
    """The backend for --model, loaded once per process; `options` are LoadOptions fields, and the
    model must be within --max-params and --max-layers (checked before anything is built)."""
    from ..backends.registry import cached
    from ..backends.types import LoadOptions
    from ..limits import Limits
    from ..threads import apply

    check_scratch_flags(model, **options)
    backend = cached(model, LoadOptions(**options), Limits(max_params, max_layers))
    apply(backend)  # torch's threads for this model's size, or --threads N
    return backend


def read_sentences_arg(text: str, max_line_bytes: int = MAX_LINE_BYTES) -> list[Sentence]:
    """One TEXT argument (explain): the rules of read_texts."""
    return read_texts([text], max_line_bytes)


def read_texts(texts: list[str], max_line_bytes: int = MAX_LINE_BYTES, truncate: bool | None = None) -> list[Sentence]:
    """Several TEXT arguments, or '-' alone for stdin; a bad line stops the command (and the reading).

    `truncate` is the command's --truncate (None: it has none): with it, a line over
    `max_line_bytes` is cut to its start instead of failing.
    """
    sentences = []
    for sentence in _sentences(texts, None, "no sentence given", 'give one: attnviz show "I have a dream"',
                               max_line_bytes, truncate):  # fmt: skip
        if sentence.error:
            raise InputError(sentence.error, fix=sentence.fix, or_truncate=_or_truncate(truncate))
        sentences.append(sentence)
    return sentences


def _or_truncate(truncate: bool | None) -> str:
    return "" if truncate is None else ", or pass --truncate to read only its start"


def sentences_from(
    texts: list[str],
    input_file: str | None,
    nothing: str,
    example: str,
    max_line_bytes: int = MAX_LINE_BYTES,
    truncate: bool | None = None,
) -> list[Sentence]:
    """Sentences given as arguments, as '-' (stdin) or with --input FILE (export, heads), read
    whole; lines that cannot be used are kept with their error, for the batch to report.

    `nothing` and `example` make the usage error for none at all.
    """
    return list(_sentences(texts, input_file, nothing, example, max_line_bytes, truncate))


def _sentences(
    texts: list[str],
    input_file: str | None,
    nothing: str,
    example: str,
    max_line_bytes: int,
    truncate: bool | None,
) -> Iterator[Sentence]:
    """The sentences as they are read; a kept line's note (only its start read) is a warning as it passes."""
    from ..inputs import from_arguments, read_sentences

    if texts and input_file is not None:
        raise UsageError("give sentences or --input FILE, not both")
    if "-" in texts and len(texts) > 1:
        raise UsageError("'-' reads the sentences from standard input: give it alone", hint="drop the other sentences")
    if input_file is not None or texts == ["-"]:
        path = input_file or "-"
        if path == "-" and sys.stdin is not None and sys.stdin.isatty():
            say("reading", "sentences from the terminal, one per line; end with Ctrl-D")
        sentences: Iterable[Sentence] = read_sentences(path, max_line_bytes, keep_start=bool(truncate))
    else:
        if not texts:
            raise UsageError(nothing, hint=example)
        if len(texts) == 1 and not texts[0].strip():
            raise InputError("the text is empty", hint="give a sentence, or - to read standard input")
        if not all(t.strip() for t in texts):
            raise InputError("a sentence is empty", hint="give non-empty sentences, or --input FILE")
        sentences = from_arguments(texts, max_line_bytes, keep_start=bool(truncate))
    for sentence in sentences:
        if sentence.note:
            say("warning", sentence.note)
        yield sentence


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
    """Data goes to stdout, every byte of it in bounded writes (sink.py); talk goes to stderr elsewhere."""
    from .sink import write_text

    write_text(data)


def say(kind: str, text: str) -> None:
    """One line of talk on stderr: 'warning: …', 'error: …'; control characters (a file name's ESC)
    shown as pictures, so a message never drives the terminal."""
    from ..tokentext import printable

    sys.stderr.write(f"{kind}: {printable(text)}\n")
