"""Writing images from the command line (export, render --image): a progress bar on stderr,
failures reported as they happen, one summary line at the end."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AttnvizError, Fix, InputError, OutputError, UsageError
from ..limits import MAX_TOTAL_PIXELS
from ..spec import ALL, Annotate, ExportView, ImageFormat, ViewSpec
from .options import write_stdout

if TYPE_CHECKING:
    from ..export.run import Outcome, Reporter, Summary
    from ..inputs import Sentence
    from ..render.image import Style
    from ..result import AttentionResult

# what the run-total count takes for an image: its cells at the smallest size a figure gives them
# (render/image.py: 0.12 inch a token) and an inch of labels and title, so it never counts more
# pixels than are drawn; each side at most the image limit (Style.max_pixels)
_CELL_INCHES = 0.12
_MARGIN_INCHES = 1.0


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


def _image_pixels(rows: int, cols: int, nq: int, nk: int, style: Style) -> int:
    """The fewest pixels an image of rows x cols maps of nq x nk tokens holds (see _CELL_INCHES)."""
    if style.figsize is not None:
        w, h = style.figsize
    else:
        w, h = cols * nk * _CELL_INCHES + _MARGIN_INCHES, rows * nq * _CELL_INCHES + _MARGIN_INCHES
    side = style.max_pixels
    return min(side, round(w * style.dpi)) * min(side, round(h * style.dpi))


def result_pixels(result: AttentionResult, spec: ViewSpec, view: ExportView, style: Style) -> int:
    """At least how many pixels the images of one result hold, for a view (export.plan's layouts)."""
    from ..export.plan import grid_columns
    from ..views import apply

    total = 0
    for s in apply(result, spec).stacks:
        nq, nk = len(s.query.texts), len(s.key.texts)
        if view is ExportView.HEAD:
            total += s.layers * s.heads * _image_pixels(1, 1, nq, nk, style)
        elif view is ExportView.LAYER:
            cols = grid_columns(s.heads)
            total += s.layers * _image_pixels(math.ceil(s.heads / cols), cols, nq, nk, style)
        else:
            total += _image_pixels(s.layers, s.heads, nq, nk, style)
    return total


def _pixels_text(n: int) -> str:
    return f"{n / 1e9:,.1f} gigapixels" if n >= 10**8 else f"{n / 1e6:,.1f} megapixels"


def within_pixels(
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    spec: ViewSpec,
    view: ExportView,
    style: Style,
    limit: int,
) -> Callable[[list[Sentence]], Iterator[Outcome]]:
    """The outcomes, counting the pixels of each sentence's images before they are drawn: the run
    stops with an OutputError before the sentence that would take it over `limit` (the images of the
    sentences before it are complete and listed)."""

    def counted(todo: list[Sentence]) -> Iterator[Outcome]:
        total = 0
        for sentence, inputs, result in outcomes(todo):
            if not isinstance(result, AttnvizError):
                try:
                    pixels = result_pixels(result, spec, view, style)
                except AttnvizError:
                    pixels = 0  # a view this result cannot give: the run reports it as this sentence's failure
                if total + pixels > limit:
                    raise OutputError(
                        f"{sentence.where}: the images of this run would hold at least "
                        f"{_pixels_text(total + pixels)}, more than the limit of {_pixels_text(limit)} "
                        f"({limit:,} pixels); the images before it are complete",
                        hint="draw fewer or smaller images, or allow more pixels",
                        fix=Fix.MORE_PIXELS,
                    )
                total += pixels
            yield sentence, inputs, result

    return counted


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
    max_total_pixels: int = MAX_TOTAL_PIXELS,
) -> None:
    """Export the images of each sentence's outcome (from a model or a saved file).

    `source` names where the outcomes come from (export.run.plan_key): with it, a re-run whose
    images are all complete never calls `outcomes`, so no model loads. The images of one run
    hold at most `max_total_pixels` (within_pixels).
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
        lambda reporter, echo: export(
            sentences,
            within_pixels(outcomes, options.spec, view, style, max_total_pixels),
            out,
            options,
            reporter,
            echo=echo,
            source=source,
        ),
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
