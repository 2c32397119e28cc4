"""The console every command prints its tables through, and printing without trailing spaces.

rich pads tables, rules and wrapped text to the full width. On a terminal that is
invisible; on a pipe it leaves trailing spaces that break `diff`, golden files and
`grep ' $'`. `print_trimmed` cuts them line by line; in colour a space with a background
is a drawn cell, so it stays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.segment import Segment
    from rich.text import Text


MIN_WIDTH = 40  # narrower (COLUMNS=0, a tiny pane) would draw nothing readable: draw at this width
MAX_WIDTH = 1000  # wider (COLUMNS=1000000000) only pads lines: rich would build them, gigabytes of blanks


def stdout_console() -> Console:
    """A rich Console on stdout: colour only on a terminal (or FORCE_COLOR), NO_COLOR respected."""
    from rich.console import Console

    console = Console()
    if MIN_WIDTH <= console.width <= MAX_WIDTH:
        return console
    return Console(width=min(max(console.width, MIN_WIDTH), MAX_WIDTH))


def sentence_heading(text: str) -> Text:
    """The line that opens one sentence's output when a command prints several."""
    from rich.text import Text

    from ..tokentext import printable

    return Text(f"» {printable(text)}", style="bold reverse", no_wrap=True, overflow="ellipsis")


def print_trimmed(console: Console, renderable: RenderableType) -> None:
    """Print `renderable` with no line ending in a space: rich pads wrapped text and tables to the width."""
    from rich.segment import Segment, Segments

    from ..render.term import has_color

    keep_background = has_color(console)
    out: list[Segment] = []
    for line in console.render_lines(renderable, console.options, pad=False):
        out += _rstrip(line, keep_background)
        out.append(Segment.line())
    console.print(Segments(out), end="")


def _rstrip(line: list[Segment], keep_background: bool) -> list[Segment]:
    """The line without trailing spaces; in colour, a space with a background colour is drawn, so it stays."""
    from rich.segment import Segment

    line = list(line)
    while line:
        last = line[-1]
        if last.control or (keep_background and last.style is not None and last.style.bgcolor is not None):
            break
        text = last.text.rstrip(" ")
        if text:
            line[-1] = Segment(text, last.style)
            break
        line.pop()
    return line
