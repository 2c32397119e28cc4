"""Writing images from the command line (export, render --image): a progress bar on stderr,
failures reported as they happen, one summary line at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, UsageError
from ..spec import ALL, Annotate, ExportView, ImageFormat, ViewSpec
from .options import write_stdout

if TYPE_CHECKING:
    from ..export.run import Outcome, Reporter, Summary
    from ..inputs import Sentence
    from ..render.image import Style


def image_style(
    image: ImageFormat,
    *,
    cmap: str,
    dpi: int,
    vmax: str,
    annotate: Annotate,
    caption: bool,
    figsize: str | None,
    fontsize: float | None,
    max_pixels: int,
) -> Style:
    """The images' Style from the command line's flags, checked (UsageError for what cannot be drawn)."""
    from ..render.image import Style
    from ..spec import parse_figsize, parse_vmax

    return Style(
        image.value,
        cmap,
        dpi,
        parse_vmax(vmax),
        annotate.value,
        caption=caption,
        figsize=parse_figsize(figsize),
        fontsize=fontsize,
        max_pixels=max_pixels,
    ).check()


def _reporter() -> Reporter:
    """A rich progress bar on stderr (when it is a terminal) plus messages for failures."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..export.run import Reporter

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
                disable=not console.is_terminal,
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


def _check_manifest(manifest: str | None) -> None:
    if manifest not in (None, "-"):
        raise UsageError(
            f"--manifest {manifest!r}: only '-' is understood", hint="the file is always DIR/manifest.jsonl"
        )


def _run(
    write: Callable[[Reporter, Callable[[str], None] | None], Summary],
    manifest: str | None,
    describe: Callable[[Summary], str],
    hint: str | None,
) -> None:
    """Run an export with a progress bar, then one summary line; failed sentences make it exit 1."""
    reporter: Any = _reporter()
    started = time.perf_counter()
    try:
        summary = write(reporter, write_stdout if manifest == "-" else None)
    finally:
        reporter.stop()
    sys.stderr.write(f"{describe(summary)}, in {time.perf_counter() - started:.1f} s\n")
    if summary.failed:
        n = len(summary.failed)
        raise InputError(
            f"{n} of {summary.sentences} sentence{'s' if summary.sentences != 1 else ''} failed (see above); "
            "the others were exported",
            hint=hint,
        )


def export_images(
    sentences: list[Sentence],
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    out: Path,
    spec: ViewSpec,
    *,
    view: ExportView,
    style: Style,
    manifest: str | None,
    overwrite: bool,
    jobs: int,
    source: str | None = None,
) -> None:
    """Export the images of each sentence's outcome (from a model or a saved file).

    `source` names where the outcomes come from (export.run.plan_key): with it, a re-run whose
    images are all complete never calls `outcomes`, so no model loads.
    """
    from ..export.run import ExportOptions, export

    _check_manifest(manifest)
    options = ExportOptions(
        style=style,
        view=view,
        spec=spec.with_layers(ALL),
        overwrite=overwrite,
        jobs=jobs,
    )

    def describe(summary: Summary) -> str:
        skipped = f", {summary.skipped} already complete" if summary.skipped else ""
        return f"{summary.written} image{'' if summary.written == 1 else 's'} written to {out}{skipped}"

    _run(
        lambda reporter, echo: export(sentences, outcomes, out, options, reporter, echo=echo, source=source),
        manifest,
        describe,
        hint="fix or remove those sentences and run again: complete images are skipped",
    )


def export_pages(
    sentences: list[Sentence],
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    out: Path,
    spec: ViewSpec,
    manifest: str | None,
) -> None:
    """export --image html: a page per sentence and index.html, with the same progress and summary."""
    from ..export.pages import INDEX
    from ..export.pages import export_pages as write_pages

    _check_manifest(manifest)
    _run(
        lambda reporter, echo: write_pages(sentences, outcomes, out, spec, reporter, echo=echo),
        manifest,
        lambda summary: (
            f"{summary.written} page{'' if summary.written == 1 else 's'} written to {out} (open {out / INDEX})"
        ),
        hint=None,
    )
