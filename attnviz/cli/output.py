"""Printing results: the one path `show` and `render` share, so both print the same bytes.

Results are printed one by one as they come, so memory does not grow with their number.
Terminal formats are rich renderables on stdout (colour only on a terminal); data formats
(json, jsonl, csv, npz) are written a piece at a time through a ByteSink (sink.py: bounded
writes, every byte or an error); the html page needs every result at once. Notes about the
input (truncation) go to stderr. One input's npz is written while the model runs, a layer
at a time (`stream_npz`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..errors import AttnvizError, OutputError, UsageError
from .options import OutputFormat, say, write_stdout
from .sink import ByteSink, stdout_sink

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..backends.types import Backend, Capture, Inputs
    from ..inputs import Sentence
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


def print_notes(results: Sequence[AttentionResult], several: bool | None = None) -> None:
    """Notes about each input (e.g. truncation) as warnings on stderr: a pipe still gets clean data.

    `several`: the run has more than one input, so each note quotes its text (None: more than one here).
    """
    several = len(results) > 1 if several is None else several
    for r in results:
        for note in r.notes:
            say("warning", f"{note}{f' ({r.text[:40]!r})' if several else ''}")


def check_compress(fmt: OutputFormat, compress: bool) -> None:
    """--compress deflates an npz: refuse it for any other format, rather than ignore it."""
    if compress and fmt is not OutputFormat.NPZ:
        raise UsageError(
            f"--compress deflates npz output; --format {fmt.value} is not compressed",
            hint="drop --compress, or use --format npz",
        )


def check_vmax(fmt: OutputFormat, vmax: float | None) -> None:
    """--vmax N sets the colours of tables: refuse it where no colour is drawn, rather than ignore it."""
    if vmax is not None and fmt not in (OutputFormat.TABLE, OutputFormat.HEAT):
        raise UsageError(
            f"--vmax sets the colour scale of tables and images; --format {fmt.value} has none",
            hint="drop --vmax, or use --format table or heat",
        )


def print_results(
    results: Iterable[AttentionResult],
    spec: ViewSpec,
    fmt: OutputFormat,
    digits: int,
    glance: bool = False,
    vmax: float | None = None,
    several: bool | None = None,
    compress: bool = False,
) -> None:
    """Apply the view to each result and print it in `fmt`, each as it comes.

    `glance` (no --head given): a table of plain heads is drawn as the layer at a glance;
    `vmax`: the top of the tables' colour scale (None: the largest weight shown);
    `several`: whether the run has more than one input, so that messages say which (None:
    count `results`, which must then be a sequence); `compress`: deflate an npz.
    """
    if several is None:
        results = results if isinstance(results, Sequence) else list(results)
        several = len(results) > 1
    if fmt is OutputFormat.HTML:  # a page to explore holds every layer unless --layer narrows it
        from ..spec import ALL

        spec = spec.with_layers(ALL)

    def shown() -> Iterator[AttentionResult]:
        for r in results:
            print_notes([r], several)
            yield viewed(r, spec, bool(several))

    if fmt in (OutputFormat.TABLE, OutputFormat.HEAT):
        overview = glance and fmt is OutputFormat.TABLE and spec.combine is None and not spec.rollout
        _print_terminal(
            shown(), fmt, digits, bars=spec.query is not None, overview=overview, vmax=vmax, several=several
        )
    elif fmt is OutputFormat.HTML:
        from ..render.html import page

        write_stdout(page(list(shown())))
    else:
        write_data(shown(), fmt, compress)


def write_data(results: Iterable[AttentionResult], fmt: OutputFormat, compress: bool = False) -> None:
    """json, jsonl, csv or npz on stdout, each result written as it comes, a piece at a time.

    When a result fails midway (an input too long, a view that does not apply), what was
    written before it still goes out, whole; then the error stops the command.
    """
    from .. import saved

    sink = stdout_sink()
    try:
        if fmt in (OutputFormat.JSON, OutputFormat.JSONL):  # json holds one result: the same line
            _write(sink, saved.jsonl_chunks(results))
        elif fmt is OutputFormat.CSV:
            _write(sink, (text.encode("utf-8", "surrogateescape") for text in saved.csv_chunks(results)))
        else:
            saved.write_npz(results, sink, compress)
    except AttnvizError as exc:
        if not isinstance(exc, OutputError):
            with contextlib.suppress(OSError, AttnvizError):
                sink.flush()
        raise
    sink.flush()


def _write(sink: ByteSink, pieces: Iterable[bytes]) -> None:
    for piece in pieces:
        sink.write(piece)


def streams(fmt: OutputFormat, count: int, spec: ViewSpec) -> bool:
    """Whether `stream_npz` writes this: one input's npz (rollout multiplies every layer, so it waits for them)."""
    return fmt is OutputFormat.NPZ and count == 1 and not spec.rollout


def _layer_local(spec: ViewSpec) -> bool:
    """Whether the view leaves a captured layer as it is (no head combined or picked again, no token step)."""
    return (
        spec.combine is None
        and spec.heads.is_all
        and not (spec.words or spec.hide_special)
        and spec.tokens is None
        and spec.query is None
    )


def stream_npz(
    backend: Backend,
    inputs: Inputs,
    sentence: Sentence,
    spec: ViewSpec,
    capture: Capture,
    truncate: bool,
    compress: bool = False,
) -> None:
    """One input's attention as an .npz on stdout, written layer by layer as the model makes them.

    `capture` already keeps the view's layers, and every other step of a view (heads,
    words, hidden specials, a token window, a query) works on each layer alone, so each
    layer is checked, viewed and written, then let go. A backend that cannot hand layers
    over one by one runs whole, and its result is written the same way.
    """
    from dataclasses import replace

    from .. import saved
    from ..api import _checked, check_fits, check_text, run_batch
    from ..backends.types import LayerStreaming
    from ..errors import SelectionError
    from ..spec import ALL

    check_text(inputs.text)
    check_fits(backend, [inputs])
    wanted = None if spec.stack is None else spec.stack.value
    stacks = backend.info.stacks
    if wanted is not None and wanted not in stacks:  # as views.apply says it
        raise SelectionError(f"there is no {wanted!r} stack here (there is {', '.join(stacks)})")
    each = replace(spec, stack=None, layers=ALL)
    noted = False
    stream = saved.NpzStream(stdout_sink(), compress)

    def take(part: AttentionResult) -> None:
        nonlocal noted
        part = _checked(sentence.tag(part))
        (stack,) = part.stacks
        if wanted is not None and stack.name != wanted:
            return
        if not noted:
            print_notes([part])
            noted = True
        layers, _ = capture.pick(stack.model_layers or stack.layers, stack.model_heads or stack.heads)
        stream.add(part if _layer_local(each) else viewed(part, each, False), len(layers))

    try:
        if isinstance(backend, LayerStreaming):
            backend.stream(inputs, take, truncate, capture)
        else:
            for result in run_batch(backend, [inputs], truncate=truncate, capture=capture):
                for part in _layers_of(result):
                    take(part)
        stream.close()
    except BaseException:
        stream.abort()
        raise


def _layers_of(result: AttentionResult) -> Iterator[AttentionResult]:
    """A whole result as the parts a streaming backend hands over: one stack of one layer each."""
    from dataclasses import replace

    for stack in result.stacks:
        for li in range(stack.layers):
            one = replace(stack, weights=stack.weights[li : li + 1], layer_axis=stack.layer_axis[li : li + 1])
            yield replace(result, stacks=(one,))


def _refuse_signed(result: AttentionResult) -> None:
    """The terminal's colour scale starts at 0: a signed map would be drawn wrong, so it is not drawn."""
    from ..result import MapKind

    if any(s.kind is MapKind.SIGNED for s in result.stacks):
        raise UsageError(
            "this result holds signed maps, which the heat tables cannot draw (their scale starts at 0)",
            hint="print them as data: --format json, jsonl, csv or npz",
        )


def _print_terminal(
    shown: Iterable[AttentionResult],
    fmt: OutputFormat,
    digits: int,
    bars: bool,
    overview: bool,
    vmax: float | None,
    several: bool,
) -> None:
    from rich.text import Text

    from ..render import bars as bar_view
    from ..render import overview as glance
    from ..render import table
    from .console import print_trimmed, sentence_heading, stdout_console

    console = stdout_console()
    for n, result in enumerate(shown):
        _refuse_signed(result)
        if several:
            if n:
                print_trimmed(console, Text(""))
            print_trimmed(console, sentence_heading(result.text))
        if bars:
            print_trimmed(console, bar_view.render(result, digits, vmax))
        elif overview:
            print_trimmed(console, glance.render(result, digits, vmax))
        else:
            print_trimmed(console, table.render(result, digits, fmt.value, vmax))
