"""`attnviz heads` in the terminal: a layers × heads grid coloured by role, and a ranked table.

Each role has a two-letter code, so the grid reads without colour too (pipes, NO_COLOR).
Both parts fit the console width: the grid splits its heads into blocks, the table
drops the raw entropy column (kept in JSON/CSV) below 100 columns.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from rich.color import Color
from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ..heads import ROLES, HeadScore
from .term import text_on, wrap_items

CODES = {
    "self": "se",
    "previous": "pr",
    "next": "nx",
    "sink": "si",
    "special": "sp",
    "punctuation": "pu",
    "duplicate": "du",
    "induction": "in",
    "broad": "br",
    "mixed": "··",
}
# Okabe–Ito's colour-blind-safe palette for the named roles, greys for broad and mixed
COLOURS = {
    "self": (230, 159, 0),
    "previous": (86, 180, 233),
    "next": (0, 158, 115),
    "sink": (240, 228, 66),
    "special": (0, 114, 178),
    "punctuation": (213, 94, 0),
    "duplicate": (204, 121, 167),
    "induction": (160, 82, 45),
    "broad": (150, 150, 150),
    "mixed": (70, 70, 70),
}
COLUMNS = {  # metric → table heading
    "entropy": "ent",
    "entropy_normalized": "spread",
    "distance": "dist",
    "max": "max",
    "sink": "sink",
    "special": "spec",
    "punctuation": "punc",
    "self": "self",
    "previous": "prev",
    "next": "next",
    "duplicate": "dup",
    "induction": "ind",
}
KEY = (
    "spread = entropy / ln(keys seen) · dist = mean |i−j| · max = mean top weight · sink = weight on "
    "position 0 · spec, punc = weight on special, punctuation tokens · self, prev, next, dup, ind = template "
    "scores · bold = what named the role"
)
STACK_CODES = {"encoder": "enc", "decoder": "dec", "cross": "crs"}


def role_style(role: str) -> Style:
    bg = COLOURS[role]
    return Style(color=Color.from_rgb(*text_on(bg)), bgcolor=Color.from_rgb(*bg))


def legend(width: int) -> list[Text]:
    items = [Text(CODES[r], style=role_style(r)) + Text(f" {r}") for r in ROLES]
    return wrap_items(items, width, sep="  ")


def grid(heads: Sequence[HeadScore], width: int) -> list[Text]:
    """One block per stack: a row per layer, a two-letter role cell per head."""
    lines: list[Text] = []
    stacks = list(dict.fromkeys(h.stack for h in heads))
    for name in stacks:
        mine = [h for h in heads if h.stack == name]
        layers = sorted({h.layer for h in mine})
        numbers = sorted({h.head for h in mine})
        cell = {(h.layer, h.head): h for h in mine}
        label = max(len(f"layer {layers[-1]}"), 5) + 1
        per_block = max(1, (width - label) // 3)
        if len(stacks) > 1:
            lines.append(Text(name, style="bold"))
        for start in range(0, len(numbers), per_block):
            block = numbers[start : start + per_block]
            header = Text("head".ljust(label))
            for n in block:
                header.append(f"{n:>2} ")
            lines.append(Text(header.plain.rstrip(), style="dim"))
            for layer in layers:
                row = Text(f"layer {layer}".ljust(label))
                for n in block:
                    h = cell.get((layer, n))
                    row.append(CODES[h.role] if h else "  ", style=role_style(h.role) if h else "")
                    row.append(" ")
                row.rstrip()
                lines.append(row)
        lines.append(Text(""))
    return lines


def _value(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    if metric in ("entropy", "distance") and abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ranking(heads: Sequence[HeadScore], width: int, metrics: Sequence[str]) -> Table:
    """The ranked heads, one row each; the value that decided the role in bold."""
    shown = [m for m in metrics if m != "entropy" or width >= 100]
    several = len({h.stack for h in heads}) > 1
    table = Table(box=None, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False, header_style="bold")
    if several:
        table.add_column("stk")
    table.add_column("layer", justify="right")
    table.add_column("head", justify="right")
    table.add_column("role")
    for m in shown:
        table.add_column(COLUMNS[m], justify="right")
    for h in heads:
        row: list[Text | str] = [STACK_CODES.get(h.stack, h.stack)] if several else []
        row += [str(h.layer), str(h.head), Text(h.role)]
        for m in shown:
            decided = m == h.role or (m == "entropy_normalized" and h.role == "broad")
            row.append(Text(_value(h.metrics[m], m), style="bold" if decided else ""))
        table.add_row(*row)
    return table


def render(
    everything: Sequence[HeadScore],
    listed: Sequence[HeadScore],
    title: str,
    width: int,
    metrics: Sequence[str],
    notes: Sequence[str] = (),
) -> RenderableType:
    """Title, grid of every head, legend, then the ranked (filtered, cut) heads and notes."""
    parts: list[RenderableType] = [Text(title, style="bold"), Text("")]
    parts += grid(everything, width)
    parts += legend(width)
    parts.append(Text(""))
    if listed:
        parts.append(ranking(listed, width, metrics))
        parts += [line.copy() for line in wrap_items([Text(part, style="dim") for part in KEY.split(" · ")], width)]
    for note in notes:
        parts += [Text(line, style="italic") for line in textwrap.wrap(note, max(width, 20))]
    return Group(*parts)
