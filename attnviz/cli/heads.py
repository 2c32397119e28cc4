"""`attnviz heads`: measure every head (entropy, distance, sinks, templates) and name its role.

Sentences stream through the model batch by batch and into running means, so a file of
any length takes the memory of one batch. Saved results (.json/.jsonl/.npz) are measured
without a model; `--probe induction` builds its own input.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..backends.types import Backend, Device, Dtype
from ..errors import InputError, UsageError
from ..limits import MAX_LAYERS, MAX_LINE_BYTES
from ..spec import ALL, ImageFormat, StackName, ViewSpec
from .help import INPUT_PANEL, PROBE_PANEL
from .options import (
    OUTPUT_PANEL,
    SELECT_PANEL,
    AllowMissing,
    BatchSize,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    Head,
    Layer,
    MaxLayers,
    MaxLineBytes,
    MaxParams,
    Model,
    Pair,
    StackOpt,
    Target,
    Truncate,
    TrustRemoteCode,
    load_model,
    say,
    sentences_from,
    view_spec,
    write_stdout,
)

if TYPE_CHECKING:
    from ..heads import Corpus, HeadScore
    from ..inputs import Sentence

SAVED_SUFFIXES = (".json", ".jsonl", ".npz")


class HeadsFormat(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class ProbeKind(str, Enum):
    INDUCTION = "induction"


# spelled out for --help, which must not import numpy (attnviz.heads does); a test keeps them equal
SORTS = "role, entropy, entropy_normalized, distance, max, sink, special, punctuation, self, previous, next, " + (
    "duplicate, induction, layer"
)
ROLE_NAMES = "self, previous, next, sink, special, punctuation, duplicate, induction, broad, mixed"

TextOrFile = Annotated[
    str | None,
    typer.Argument(
        metavar="TEXT|FILE",
        help="A sentence; - for sentences on stdin; or a .json/.jsonl/.npz that attnviz wrote.",
        show_default=False,
    ),
]


EXAMPLES = """
# the role of every head over a file of sentences
attnviz heads --input sample_inputs/classic.txt
# find induction heads with a repeated random sequence
attnviz heads --probe induction --role induction
# the 5 most previous-token-like heads, as JSON
attnviz heads "I have a dream" --sort previous --top 5 --format json
"""


def heads(
    text: TextOrFile = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="FILE",
            help="Sentences, one per line (- for stdin); metrics are averaged.",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = None,
    probe: Annotated[
        ProbeKind | None,
        typer.Option(
            "--probe",
            help="induction: random words from the vocabulary written twice; heads measured on the second copy.",
            show_default=False,
            rich_help_panel=PROBE_PANEL,
        ),
    ] = None,
    probe_length: Annotated[
        int | None,
        typer.Option(
            min=2,
            metavar="N",
            help="Words in each copy (default 50, fewer when the model is shorter).",
            show_default=False,
            rich_help_panel=PROBE_PANEL,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, metavar="N", help="Seed for the probe's words.", rich_help_panel=PROBE_PANEL)
    ] = 0,
    sort: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help=f"Order of the list: {SORTS}. Default: role in the table, layer in json/csv.",
            show_default=False,
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    reverse: Annotated[
        bool, typer.Option("--reverse", help="Turn the order round (lowest first).", rich_help_panel=OUTPUT_PANEL)
    ] = False,
    top: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="List N heads (0: all). Default: 20 in the table, all in json/csv.",
            show_default=False,
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(metavar="ROLE", help=f"List only heads of this role: {ROLE_NAMES}.", rich_help_panel=SELECT_PANEL),
    ] = None,
    role_threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="X",
            help="A score at least X names the head's role.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = 0.5,
    broad_threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="X",
            help="Otherwise a normalised entropy at least X makes it broad (else mixed).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = 0.8,
    fmt: Annotated[
        HeadsFormat,
        typer.Option(
            "--format",
            "-f",
            help="table: grid and ranked list; json: attnviz-heads/1; csv: one row per head.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = HeadsFormat.TABLE,
    image: Annotated[
        ImageFormat | None,
        typer.Option(
            "--image",
            help="Write the layers × heads role map as an image (to --out) instead of printing.",
            show_default=False,
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="With --image: the file (default attnviz-heads.EXT).",
            show_default=False,
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    model: Model = "minilm",
    layer: Layer = None,
    head: Head = "all",
    stack: StackOpt = None,
    pair: Pair = None,
    target: Target = None,
    device: DeviceOpt = Device.AUTO,
    dtype: DtypeOpt = Dtype.FLOAT32,
    device_map: DeviceMapOpt = None,
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_missing: AllowMissing = False,
    batch_size: BatchSize = 16,
    max_line_bytes: MaxLineBytes = MAX_LINE_BYTES,
    max_params: MaxParams = None,
    max_layers: MaxLayers = MAX_LAYERS,
) -> None:
    """Measure every head (entropy, distance, sinks, previous-token, induction …) and name its role.

    Every layer by default; over many sentences the metrics are averaged per head.
    """
    from ..heads import ROLES, SORT_KEYS, Corpus, Thresholds, rank

    spec = _spec(stack, layer, head)
    as_table = fmt is HeadsFormat.TABLE and image is None
    sort = sort or ("role" if as_table else "layer")
    if sort not in SORT_KEYS:
        raise UsageError(f"--sort: cannot sort by {sort!r}", hint=f"choose one of: {SORTS}")
    if role is not None and role not in ROLES:
        raise UsageError(f"--role: unknown role {role!r}", hint=f"choose one of: {ROLE_NAMES}")
    if out is not None and image is None:
        raise UsageError("--out names the image file: it goes with --image", hint="add --image png")
    if image is not None and fmt is not HeadsFormat.TABLE:
        raise UsageError("--format prints to stdout and --image writes a file: choose one")
    if probe is None and probe_length is not None:
        raise UsageError("--probe-length goes with --probe induction")
    thresholds = Thresholds(role_threshold, broad_threshold)
    corpus = Corpus()
    notes: list[str] = []
    failed = 0

    def load_backend() -> Backend:
        return load_model(
            model,
            device=device,
            dtype=dtype,
            device_map=device_map,
            trust_remote_code=trust_remote_code,
            allow_missing=allow_missing,
            max_params=max_params,
            max_layers=max_layers,
        )

    if probe is not None:
        if text is not None or input_file is not None:
            raise UsageError("--probe makes its own input: give no sentence or --input")
        backend = load_backend()
        notes.append(_run_probe(backend, corpus, spec, probe_length, seed))
        name = backend.info.name
    elif text is not None and " " not in text and Path(text).suffix.lower() in SAVED_SUFFIXES:
        from ..saved import load  # a file name, not a sentence: 'missing.json' is an error, not two tokens

        if input_file is not None or model != "minilm" or pair is not None or target is not None:
            raise UsageError(
                f"{text} is a saved result: it is measured as it is, without a model or inputs",
                hint="drop --input/--model/--pair/--target",
            )
        for result in load(text):
            _add(corpus, result, spec)
        name = corpus.model or text
    else:
        sentences = sentences_from(
            [text] if text is not None else [],
            input_file,
            "nothing to measure",
            'give a sentence (attnviz heads "I have a dream"), --input FILE or --probe',
            max_line_bytes,
            truncate,
        )
        backend = load_backend()
        failed = _run_sentences(backend, sentences, corpus, spec, batch_size, truncate, pair, target)
        name = backend.info.name
    everything = corpus.heads(thresholds)
    listed = rank(everything, sort, reverse, role, (20 if as_table else None) if top is None else top)
    if image is not None:
        _write_image(everything, name, corpus.sentences, image, out, notes)
    elif fmt is HeadsFormat.JSON:
        _print_json(everything, listed, name, corpus.sentences, thresholds, notes)
    elif fmt is HeadsFormat.CSV:
        _print_csv(listed)
    else:
        _print_table(everything, listed, name, corpus.sentences, notes, role)
    if failed:
        raise InputError(
            f"{failed} of {failed + corpus.sentences} sentences failed (see above); the others were measured"
        )


def _spec(stack: StackName | None, layer: str | None, head: str) -> ViewSpec:
    spec = view_spec(stack=stack, layer=layer, head=head)
    if spec.combine is not None:
        raise UsageError(
            f"--head {spec.combine.value} combines heads; the metrics are per head", hint="choose heads: N, A:B, all"
        )
    return spec.with_layers(ALL)


def _add(corpus: Corpus, result: Any, spec: ViewSpec, rows: dict[str, slice] | None = None) -> None:
    from .output import viewed

    corpus.add(viewed(result, spec, name_it=result.line is not None), rows)


def _run_sentences(
    backend: Any,
    sentences: list[Sentence],
    corpus: Corpus,
    spec: ViewSpec,
    batch_size: int,
    truncate: bool,
    pair: str | None,
    target: str | None,
) -> int:
    """Measure each sentence as its batch arrives; a bad line is reported and skipped. → failures."""
    from ..errors import AttnvizError
    from ..export.run import from_model

    outcomes = from_model(lambda: backend, batch_size=batch_size, truncate=truncate, pair=pair, target=target)
    good = [s for s in sentences if not s.error]
    failed = len(sentences) - len(good)
    for s in sentences:
        if s.error:
            say("error", s.error)
    with _progress(len(good)) as advance:
        for sentence, _, result in outcomes(good):
            if isinstance(result, AttnvizError):
                if len(sentences) == 1:
                    raise result
                say("error", f"{sentence.where}: {result.message}")
                failed += 1
            else:
                for note in result.notes:
                    say("warning", f"{sentence.where}: {note}" if len(sentences) > 1 else note)
                _add(corpus, result, spec)
            advance()
    if not corpus.sentences:
        raise InputError("no sentence could be measured (see above)")
    return failed


def _run_probe(backend: Any, corpus: Corpus, spec: ViewSpec, length: int | None, seed: int) -> str:
    """Run the induction probe; the note that says what was measured."""
    from ..api import run_batch
    from ..backends.types import Inputs
    from ..probe import fitted, second_copy

    def count(text: str) -> int:
        try:
            return max(len(tokens) for tokens in backend.tokenize(Inputs(text)).values())
        except InputError as exc:  # longer than the model takes: the length says by how much
            return int(exc.details.get("tokens", 1 << 30))

    probe = fitted(backend.vocabulary(), count, backend.info.max_positions, length, seed)
    result = run_batch(backend, [Inputs(probe.text)])[0]
    rows = {}
    for s in result.stacks:
        found = second_copy(s.query)
        if found is None:
            raise InputError(f"the probe's two copies did not tokenize alike in {s.name}", hint="try another --seed")
        rows[s.name] = found
    _add(corpus, result, spec, rows)
    return (
        f"probe: {probe.length} random words (seed {seed}) written twice; each head measured on the second copy's rows"
    )


class _progress:
    """A transient progress bar on stderr for inputs of many sentences (only on a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.total > 1 and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]heads"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sentences"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            task = self.bar.add_task("heads", total=self.total)
            self.bar.start()
            return lambda: self.bar.advance(task)
        return lambda: None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _title(name: str, sentences: int, count: int) -> str:
    return f"{name} · {sentences} sentence{'s' if sentences != 1 else ''} · {count} heads"


def _print_table(
    everything: list[HeadScore], listed: list[HeadScore], name: str, sentences: int, notes: list[str], role: str | None
) -> None:
    from ..heads import METRICS
    from ..render.heads import render
    from .console import print_trimmed, stdout_console

    if len(listed) < len(everything):
        which = f" (role {role})" if role else ""
        notes = [
            *notes,
            f"{len(listed)} of {len(everything)} heads listed{which}; --top 0 lists all, --sort KEY orders",
        ]
    console = stdout_console()
    title = _title(name, sentences, len(everything))
    print_trimmed(console, render(everything, listed, title, console.width, METRICS, notes))


def _print_json(
    everything: list[HeadScore],
    listed: list[HeadScore],
    name: str,
    sentences: int,
    thresholds: Any,
    notes: list[str],
) -> None:

    doc = {
        "schema": "attnviz-heads/1",
        "model": name,
        "sentences": sentences,
        "thresholds": {"role": thresholds.role, "broad": thresholds.broad},
        "notes": notes,
        "heads": [h.to_json() for h in listed],
    }
    from ..saved import dumps  # lazy: numpy stays out of --help

    write_stdout(dumps(doc) + "\n")


def _print_csv(listed: list[HeadScore]) -> None:
    import csv
    import io

    from ..heads import METRICS

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["stack", "layer", "head", "role", "score", "count", *METRICS, *(f"{m}_std" for m in METRICS)])
    for h in listed:
        writer.writerow(
            [h.stack, h.layer, h.head, h.role, _cell(h.score), h.count]
            + [_cell(h.metrics[m]) for m in METRICS]
            + [_cell(h.std[m]) for m in METRICS]
        )
    write_stdout(buffer.getvalue())


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def _write_image(
    everything: list[HeadScore], name: str, sentences: int, image: ImageFormat, out: Path | None, notes: list[str]
) -> None:
    from ..export.files import write_atomic
    from ..render.headmap import draw

    path = out or Path(f"attnviz-heads.{image.value}")
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder", hint="give a file name, e.g. heads.png")
    if not path.parent.is_dir():
        raise InputError(f"no folder {path.parent} to write {path.name} into")
    data = draw(everything, _title(name, sentences, len(everything)), image.value, notes)
    write_atomic(path, data)
    sys.stderr.write(f"wrote {path}\n")
