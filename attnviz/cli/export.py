"""`attnviz export`: heatmap images (PNG/SVG/PDF) for one sentence or a whole file."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError, UsageError
from .app import app
from .options import (
    BatchSize,
    Device,
    Dtype,
    Head,
    HideSpecial,
    Layer,
    Model,
    Pair,
    Renormalize,
    StackOpt,
    Target,
    TokenWindow,
    Truncate,
    TrustRemoteCode,
    Words,
    check_view_flags,
    load_model,
    write_stdout,
)

if TYPE_CHECKING:
    from ..batch import Reporter
    from ..inputs import Sentence

IMAGE_PANEL = "Images"
VIEW_HELP = (
    "head: one image per layer × head; layer: a grid of every head, one image per layer; "
    "model: layers × heads in one image; mean: one image averaged over the chosen layers and heads; "
    "rollout: attention rollout across all layers."
)


def _reporter(quiet: bool) -> Reporter:
    """A rich progress bar on stderr (when it is a terminal) plus messages for failures."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..batch import Reporter

    console = Console(stderr=True)

    class Bar(Reporter):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("[bold]export"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("images"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                disable=quiet or not console.is_terminal,
            )
            self.task = self.progress.add_task("export", total=None)
            self.progress.start()

        def total(self, images: int) -> None:
            self.progress.update(self.task, total=images)

        def done(self, written: int, skipped: int) -> None:
            self.progress.advance(self.task, written + skipped)

        def failed(self, sentence: Sentence, message: str) -> None:
            console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)

        def note(self, message: str) -> None:
            console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

        def stop(self) -> None:
            self.progress.stop()

    return Bar()


@app.command()
def export(
    texts: Annotated[
        list[str] | None, typer.Argument(help="Sentences to draw (or use --input FILE).", show_default=False)
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the images and manifest.jsonl (created).")
    ] = Path("attnviz-images"),
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input", "-i", help="File with one sentence per line (- for stdin); a tab starts the pair/target."
        ),
    ] = None,
    view: Annotated[str, typer.Option("--view", help=VIEW_HELP, rich_help_panel=IMAGE_PANEL)] = "head",
    image: Annotated[str, typer.Option("--image", help="png, svg or pdf.", rich_help_panel=IMAGE_PANEL)] = "png",
    cmap: Annotated[str, typer.Option(help="A matplotlib colour map.", rich_help_panel=IMAGE_PANEL)] = "viridis",
    dpi: Annotated[
        int, typer.Option(help="Pixels per inch (PNG size; SVG/PDF images).", rich_help_panel=IMAGE_PANEL)
    ] = 100,
    vmax: Annotated[
        float, typer.Option(help="Top of the colour scale (the same for every image).", rich_help_panel=IMAGE_PANEL)
    ] = 1.0,
    annotate: Annotated[
        str,
        typer.Option(
            help="Values in the cells: auto (single maps up to 16 tokens), on, off.", rich_help_panel=IMAGE_PANEL
        ),
    ] = "auto",
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest", help="'-' also prints each manifest line to stdout (DIR/manifest.jsonl is always kept)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Redraw images that are already complete.")] = False,
    jobs: Annotated[int, typer.Option(min=0, help="Drawing processes: 0 = one per core, 1 = no extra process.")] = 0,
    model: Model = "minilm",
    layer: Layer = "all",
    head: Head = "all",
    stack: StackOpt = None,
    hide_special: HideSpecial = False,
    renormalize: Renormalize = False,
    words: Words = False,
    tokens: TokenWindow = None,
    pair: Pair = None,
    target: Target = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    batch_size: BatchSize = 16,
) -> None:
    """Draw attention heatmaps (PNG, SVG, PDF) for sentences or a whole file, with a manifest."""
    from ..batch import ExportOptions
    from ..batch import export as run_export
    from ..inputs import Sentence, read_sentences

    if manifest not in (None, "-"):
        raise UsageError(
            f"--manifest {manifest!r}: only '-' is understood", hint="the file is always DIR/manifest.jsonl"
        )
    if texts and input_file:
        raise UsageError("give sentences or --input FILE, not both")
    if input_file is not None or texts == ["-"]:
        sentences = read_sentences(input_file or "-")
    elif texts:
        sentences = [Sentence(i, i + 1, t) for i, t in enumerate(texts) if t.strip()]
        if len(sentences) != len(texts):
            raise InputError("a sentence is empty", hint="give non-empty sentences, or --input FILE")
    else:
        raise UsageError("nothing to draw", hint='give a sentence (attnviz export "I have a dream") or --input FILE')
    options = ExportOptions(
        view=view,
        layer=layer,
        head=head,
        stack=stack,
        hide_special=hide_special,
        renormalize=renormalize,
        words=words,
        tokens=tokens,
        fmt=image,
        cmap=cmap,
        dpi=dpi,
        vmax=vmax,
        annotate=annotate,
        overwrite=overwrite,
        batch_size=batch_size,
        truncate=truncate,
        jobs=jobs,
        pair=pair,
        target=target,
    )
    options.check()
    check_view_flags(head, "none", hide_special, renormalize)
    load = functools.partial(load_model, model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    reporter: Any = _reporter(quiet=False)
    started = time.perf_counter()
    try:
        summary = run_export(sentences, load, out, options, reporter, echo=write_stdout if manifest == "-" else None)
    finally:
        reporter.stop()
    seconds = time.perf_counter() - started
    skipped = f", {summary.skipped} already complete" if summary.skipped else ""
    images = "image" if summary.written == 1 else "images"
    sys.stderr.write(f"{summary.written} {images} written to {out}{skipped}, in {seconds:.1f} s\n")
    if summary.failed:
        n = len(summary.failed)
        raise InputError(
            f"{n} of {summary.sentences} sentence{'s' if summary.sentences != 1 else ''} failed (see above); "
            "the others were exported",
            hint="fix or remove those lines and run again: complete images are skipped",
        )
