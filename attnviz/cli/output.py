"""Printing results: the one path `show` and `render` share, so both print the same bytes.

Terminal formats are rich renderables on stdout (colour only on a terminal); data
formats are written whole to stdout; notes about the input (truncation) go to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import UsageError
from .options import OutputFormat, say, write_stdout

if TYPE_CHECKING:
    from ..result import AttentionResult
    from ..spec import ViewSpec


def viewed(result: AttentionResult, spec: ViewSpec, name_it: bool) -> AttentionResult:
    """The view of one result; with several, an error says which one failed."""
    from ..errors import AttnvizError
    from ..views import apply

    try:
        return apply(result, spec)
    except AttnvizError as exc:
        if not name_it:
            raise
        where = f"line {result.line}" if result.line is not None else f"result {result.index + 1}"
        raise type(exc)(f"{where}: {exc.message}", exc.hint, fix=exc.fix, **exc.details) from None


def check_format(fmt: OutputFormat) -> None:
    """Refuse binary output on a terminal before any work is done."""
    if fmt is OutputFormat.NPZ and sys.stdout.isatty():
        raise UsageError(
            "npz is binary and stdout is a terminal", hint="redirect it to a file: ... --format npz > a.npz"
        )
    if fmt is OutputFormat.HTML and sys.stdout.isatty():
        raise UsageError(
            "html is a page for a browser and stdout is a terminal",
            hint="redirect it to a file: ... --format html > page.html",
        )


def check_count(fmt: OutputFormat, count: int, what: str) -> None:
    if fmt is OutputFormat.JSON and count > 1:
        raise UsageError(f"{count} {what} but --format json holds one", hint="use --format jsonl, csv or npz")


def print_notes(results: Sequence[AttentionResult]) -> None:
    """Notes about each input (e.g. truncation) as warnings on stderr: a pipe still gets clean data."""
    for r in results:
        for note in r.notes:
            say("warning", f"{note}{f' ({r.text[:40]!r})' if len(results) > 1 else ''}")


def print_results(
    results: Sequence[AttentionResult], spec: ViewSpec, fmt: OutputFormat, digits: int, glance: bool = False
) -> None:
    """Apply the view to each result and print it in `fmt`.

    `glance` (no --head given): a table of plain heads is drawn as the layer at a glance.
    """
    print_notes(results)
    if fmt is OutputFormat.HTML:  # a page to explore holds every layer unless --layer narrows it
        from ..spec import ALL

        spec = spec.with_layers(ALL)
    shown = [viewed(r, spec, len(results) > 1) for r in results]
    if fmt in (OutputFormat.TABLE, OutputFormat.HEAT):
        _refuse_signed(shown)
        overview = glance and fmt is OutputFormat.TABLE and spec.combine is None and not spec.rollout
        _print_terminal(shown, fmt, digits, bars=spec.query is not None, overview=overview)
        return
    from .. import saved

    if fmt is OutputFormat.JSON:
        write_stdout(saved.to_json(shown[0]) + "\n")
    elif fmt is OutputFormat.JSONL:
        write_stdout("".join(saved.jsonl_line(r) for r in shown))
    elif fmt is OutputFormat.CSV:
        write_stdout(saved.to_csv(shown))
    elif fmt is OutputFormat.HTML:
        from ..render.html import page

        write_stdout(page(shown))
    else:
        sys.stdout.buffer.write(saved.to_npz(shown))
        sys.stdout.buffer.flush()


def _refuse_signed(results: Sequence[AttentionResult]) -> None:
    """The terminal's colour scale starts at 0: a signed map would be drawn wrong, so it is not drawn."""
    from ..result import MapKind

    if any(s.kind is MapKind.SIGNED for r in results for s in r.stacks):
        raise UsageError(
            "this result holds signed maps, which the heat tables cannot draw (their scale starts at 0)",
            hint="print them as data: --format json, jsonl, csv or npz",
        )


def _print_terminal(shown: list[AttentionResult], fmt: OutputFormat, digits: int, bars: bool, overview: bool) -> None:
    from rich.text import Text

    from ..render import bars as bar_view
    from ..render import overview as glance
    from ..render import table
    from .console import print_trimmed, sentence_heading, stdout_console

    console = stdout_console()
    for n, result in enumerate(shown):
        if len(shown) > 1:
            if n:
                print_trimmed(console, Text(""))
            print_trimmed(console, sentence_heading(result.text))
        if bars:
            print_trimmed(console, bar_view.render(result, digits))
        elif overview:
            print_trimmed(console, glance.render(result, digits))
        else:
            print_trimmed(console, table.render(result, digits, fmt.value))
