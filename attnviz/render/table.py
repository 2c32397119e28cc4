"""Heat tables: rows are query tokens, columns key tokens, each cell shaded by its weight.

`render(result)` returns one renderable that picks its layout when it is printed,
from the console's width: one full-size table per matrix when it fits, else compact
tables (no leading zero, shorter headers), else the half-block heatmap of heat.py.
Many matrices (every head of a layer) are laid out as a grid that wraps to the width.
Rich never gets the chance to wrap a table: every line is built to fit.
"""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text

from ..result import AttentionResult, Stack, Tokens
from . import heat
from .term import (
    MARK,
    StackLines,
    cell_style,
    fit,
    note_lines,
    ramp,
    scale_top,
    side_by_side,
    wrap_items,
)

FULL_HEADER_CELLS = 10  # a full-size table widens a column for a key token up to this
FULL_LABEL_CELLS = 14
COMPACT_LABEL_CELLS = 8
TIGHT = 2  # the densest table (see _column_widths); 0 and 1 are full and compact (bool works)
HEAT_TILE_CELLS = 36  # the narrowest heatmap worth tiling side by side
STYLES = ("table", "heat")


def format_value(v: float, digits: int, compact: bool) -> str:
    """'0.50' (full) or '.50' (compact; '1' for a weight that rounds to 1)."""
    s = f"{v:.{digits}f}"
    if compact and digits:
        if s.startswith("0."):
            s = s[1:]
        elif s.startswith("1."):
            s = s[:-1]  # '1.0' keeps the width of '.99'
            s = s.rstrip(".")
    return s


def _value_cells(digits: int, compact: bool) -> int:
    return 1 if digits == 0 else digits + (1 if compact else 2)


def _column_widths(key: Tokens, digits: int, compact: int, spare: int = 0) -> list[int]:
    """Cells per key column: the value cell, widened for a header up to FULL_HEADER_CELLS (full
    layout) and always for a whole special token; `spare` cells then go evenly to headers still cut.

    `compact` is a density: 0 full, 1 compact, TIGHT drops the blank before each value (the
    marker slot on its left still parts them), so 15-token maps keep their numbers at 80 columns.
    """
    cell = _value_cells(digits, bool(compact)) + (1 if compact >= TIGHT else 2)  # [a space,] value, marker slot
    wanted = [cell_len(t) + 1 for t in key.labels]  # a blank on the left of each header
    cap = cell if compact else FULL_HEADER_CELLS + 1
    widths = [max(cell, want if key.is_special(j) else min(want, cap)) for j, want in enumerate(wanted)]
    while spare > 0:  # one cell at a time to every header still cut: the shortest get whole first
        short = [j for j in range(len(widths)) if widths[j] < wanted[j]]
        if not short:
            break
        for j in short[:spare]:
            widths[j] += 1
        spare -= min(spare, len(short))
    return widths


def _label_width(query: Tokens, compact: int, spare: int = 0) -> int:
    """Cells of the query label column: the longest label, up to a cap that `spare` cells raise."""
    cap = COMPACT_LABEL_CELLS if compact else FULL_LABEL_CELLS
    longest = max((cell_len(t) for t in query.labels), default=1)
    special = max((cell_len(t) for i, t in enumerate(query.labels) if query.is_special(i)), default=1)
    return max(1, special, min(longest, cap + max(spare, 0)))


def _spare(query: Tokens, key: Tokens, digits: int, compact: int, width: int) -> tuple[int, int]:
    """Cells beyond the table's narrowest form: first to the cut headers (cut harder), then the labels."""
    spare = max(0, width - table_width(query, key, digits, compact))
    header_extra = min(
        spare, sum(_column_widths(key, digits, compact, spare)) - sum(_column_widths(key, digits, compact))
    )
    return spare - header_extra, header_extra


def table_width(query: Tokens, key: Tokens, digits: int, compact: int) -> int:
    """Cells one table takes at its narrowest, label column and sentence boundary included."""
    cut = key.pair_start
    return _label_width(query, compact) + 1 + sum(_column_widths(key, digits, compact)) + (cut is not None)


def table_block(
    w: np.ndarray,  # (q, k)
    query: Tokens,
    key: Tokens,
    vmax: float,
    digits: int = 2,
    compact: int = 0,
    title: str = "",
    width: int = 0,
) -> list[Text]:
    """One heat table as lines of text; the strongest cell of each row bold and marked ◂.

    Labels cut at first take the cells a `width` wider than the narrowest table leaves.
    """
    label_spare, header_spare = _spare(query, key, digits, compact, width)
    widths = _column_widths(key, digits, compact, header_spare)
    lw = _label_width(query, compact, label_spare)
    kb = key.pair_start
    qb = query.pair_start
    lines: list[Text] = []
    if title:
        lines.append(Text(fit(title, lw + 1 + sum(widths) + (kb is not None)).rstrip(), style="bold"))
    header = Text(" " * (lw + 1))
    room = True  # whether the previous header left a blank before this one
    for j, (tok, cw) in enumerate(zip(key.labels, widths)):
        if j == kb:
            header.append("│", style="dim")
            room = True
        # a compact header may fill its marker slot; a tight table has no blank to spare
        header.append(_header_cell(tok, cw, key.is_special(j), room, spill=compact == 1))
        room = header.plain.endswith(" ")
    lines.append(header)
    for i, tok in enumerate(query.labels):
        if i == qb:
            rule = Text("─" * (lw + 1), style="dim")
            for j, cw in enumerate(widths):
                rule.append(("┼" if j == kb else "") + "─" * cw, style="dim")
            lines.append(rule)
        row = w[i]
        strongest = int(np.argmax(row)) if row.size else -1
        line = Text()
        line.append(fit(tok, lw) + " ", style="dim" if query.is_special(i) else "")
        for j, cw in enumerate(widths):
            if j == kb:
                line.append("│", style="dim")
            top = j == strongest
            value = format_value(float(row[j]), digits, bool(compact))
            line.append(
                value.rjust(cw - 1) + (MARK if top else " "),
                style=cell_style(float(row[j]) / vmax, bold=top),
            )
        lines.append(line)
    return lines


def _header_cell(tok: str, cw: int, special: bool, room: bool, spill: bool) -> Text:
    """A key token right-aligned over its values, never touching the header on its left.

    `room`: the previous header left this column's first cell blank. With `spill` (compact
    tables) a header may also fill its marker slot, which takes the next header's room.
    """
    style = "dim bold" if special else "bold"
    left = 0 if room else 1  # a blank of its own when the previous header took the shared one
    if cell_len(tok) > cw - 1 - left and spill:
        return Text(" " * left + fit(tok, cw - left), style=style)
    fits = cw - 1 - left  # cells before the marker slot
    shown = fit(tok, fits).rstrip() if cell_len(tok) > fits else tok
    return Text(" " * (cw - 1 - cell_len(shown)) + shown + " ", style=style)


def _heading(stack: Stack, li: int | None, hi: int | None) -> str:
    """'encoder · layer 5 · head 2': the stack, then the layer and head when given."""
    parts = [stack.name]
    if li is not None:
        parts.append(stack.layer_label(li))
    if hi is not None:
        parts.append(stack.head_label(hi))
    return " · ".join(parts)


def _layout(stack: Stack, width: int, digits: int, style: str) -> str:
    """'full', 'compact', 'tight' or 'heat': the most readable layout whose one block fits `width`."""
    if style == "heat":
        return "heat"
    single = stack.layers * stack.heads == 1
    if single and table_width(stack.query, stack.key, digits, compact=False) <= width:
        return "full"
    if table_width(stack.query, stack.key, digits, compact=True) <= width:
        return "compact"
    if table_width(stack.query, stack.key, digits, compact=TIGHT) <= width:
        return "tight"
    return "heat"


def stack_lines(
    stack: Stack, width: int, color: bool, digits: int = 2, style: str = "table", vmax: float | None = None
) -> list[Text]:
    """Headings, tables or heatmaps (a grid when there are many), legend and notes of one stack;
    colours run 0..vmax (None: the largest weight shown)."""
    vmax = scale_top(stack.weights, vmax)
    layout = _layout(stack, width, digits, style)
    by_layer = stack.heads == 1 and stack.layers > 1
    tile = heat_tile_width(stack.layers if by_layer else stack.heads, width)

    def block(li: int, hi: int, title: str) -> list[Text]:
        w = stack.weights[li, hi]  # (q, k)
        if layout == "heat":
            return heat.heat_block(w, stack.query, stack.key, vmax, tile, color, title)
        alone = stack.layers * stack.heads == 1  # one table: its labels may use the whole width
        density = {"full": 0, "compact": 1, "tight": TIGHT}[layout]
        return table_block(w, stack.query, stack.key, vmax, digits, density, title, width if alone else 0)

    lines: list[Text] = []
    if stack.layers * stack.heads == 1:
        lines.append(Text(fit(_heading(stack, 0, 0), width).rstrip(), style="bold"))
        lines += block(0, 0, "")
    elif by_layer:
        lines.append(Text(fit(f"{_heading(stack, None, 0)} · {stack.layers} layers", width).rstrip(), style="bold"))
        lines += side_by_side([block(li, 0, stack.layer_label(li)) for li in range(stack.layers)], width)
    else:
        for li in range(stack.layers):
            if li:
                lines.append(Text(""))
            heading = f"{_heading(stack, li, None)} · {stack.heads} heads"
            lines.append(Text(fit(heading, width).rstrip(), style="bold"))
            blocks = [block(li, hi, stack.head_label(hi)) for hi in range(stack.heads)]
            lines += side_by_side(blocks, width)
    lines.append(Text(""))
    lines += _legend_lines(stack, layout, style, vmax, width, tile, color, digits)
    return lines


def heat_tile_width(blocks: int, width: int, gap: int = 3) -> int:
    """Cells for each of `blocks` heatmaps: as many side by side as stay HEAT_TILE_CELLS wide, so
    a long input's twelve heads tile a wide terminal instead of stacking twelve full-width maps."""
    per_row = min(blocks, max(1, (width + gap) // (HEAT_TILE_CELLS + gap)))
    return width if per_row == 1 else (width - gap * (per_row - 1)) // per_row


def _legend_lines(
    stack: Stack, layout: str, style: str, vmax: float, width: int, tile: int, color: bool, digits: int
) -> list[Text]:
    q, k = stack.weights.shape[2:]
    items: list[Text | str] = []
    if layout == "heat":
        items.append(ramp(vmax, digits, color))
        items.append("rows: query tokens, columns: key tokens")
        pooled = heat.pooled_note(q, k, tile, stack.key.pair_start)
        if pooled:
            items.append(pooled)
        if style == "table":
            items.append(f"{k} keys are too many for a table {width} columns wide: --tokens A:B shows a window")
    else:
        if color:
            items.append(ramp(vmax, digits, color))
        items += [f"{MARK} strongest key in each row", "rows: query tokens, columns: key tokens"]
    lines = wrap_items(items, width)
    if layout == "heat":
        if heat.same_tokens(stack.query, stack.key):
            lines += heat.token_legend(stack.query, width, "tokens")
        else:
            lines += heat.token_legend(stack.query, width, "queries")
            lines += heat.token_legend(stack.key, width, "keys")
    return lines + note_lines(stack.notes, width)


def render(result: AttentionResult, digits: int = 2, style: str = "table", vmax: float | None = None) -> RenderableType:
    """The result's stacks as heat tables ('table': heatmaps when too wide) or heatmaps ('heat')."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    return StackLines(result, lambda stack, width, color: stack_lines(stack, width, color, digits, style, vmax))
