"""`--query`: one query token's weights over the keys as horizontal bars, one block per head.

Bars share one scale across the blocks (the longest bar is the largest weight shown),
so heads compare at a glance. Long inputs show each head's strongest keys only, in
token order, and say how much weight the rest carry.
"""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text

from ..result import AttentionResult, Stack
from .term import EIGHTHS, MARK, StackLines, fg_style, fit, note_lines, scale_top, side_by_side

BAR_CELLS = 16
LABEL_CELLS = 10
MAX_KEYS = 24  # more keys than this: show the strongest TOP_KEYS of each head
TOP_KEYS = 16


def bar(fraction: float, cells: int) -> str:
    """A bar `fraction` of `cells` long, in eighths of a cell."""
    eighths = round(min(max(fraction, 0.0), 1.0) * cells * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(cells)


def bars_block(
    row: np.ndarray,  # (k,) one query's weights
    stack: Stack,
    vmax: float,
    digits: int,
    title: str,
    color: bool,
) -> list[Text]:
    """Title, then one line per key: token, bar, value (◂ on the strongest)."""
    k = row.shape[0]
    keep = list(range(k))
    if k > MAX_KEYS:
        keep = sorted(np.argsort(-row, kind="stable")[:TOP_KEYS].tolist())
    lw = max(1, min(max((cell_len(stack.key.labels[j]) for j in keep), default=1), LABEL_CELLS))
    vw = len(f"{1:.{digits}f}")
    strongest = int(np.argmax(row))
    cut = stack.key.pair_start
    lines = [Text(title, style="bold")]
    previous = -1
    for j in keep:
        if cut is not None and previous < cut <= j:
            lines.append(Text("┄" * (lw + 2 + BAR_CELLS + vw), style="dim"))  # sentence A | sentence B
        if previous >= 0 and j > previous + 1 and k > MAX_KEYS:
            lines.append(Text(fit("⋮", lw), style="dim"))
        top = j == strongest
        v = float(row[j])
        line = Text()
        line.append(fit(stack.key.labels[j], lw) + " ", style="dim" if stack.key.is_special(j) else "")
        line.append(bar(v / vmax, BAR_CELLS), style=fg_style(0.25 + 0.75 * v / vmax) if color else "")
        line.append(" " + f"{v:.{digits}f}".rjust(vw) + (MARK if top else ""), style="bold" if top else "")
        lines.append(line)
        previous = j
    if len(keep) < k:
        rest = float(row.sum() - row[keep].sum())
        lines.append(Text(f"{k - len(keep)} more keys share {rest:.{digits}f}", style="dim"))
    return lines


def _title(stack: Stack, li: int, hi: int) -> str:
    """'head 2', with its layer first where the stack holds several (or a rollout)."""
    head = stack.head_label(hi)
    return f"{stack.layer_label(li)} · {head}" if stack.layers > 1 else head


def stack_bar_lines(stack: Stack, width: int, color: bool, digits: int = 2, vmax: float | None = None) -> list[Text]:
    """Bars of every (layer, head) of a stack that holds exactly one query row; a full bar is vmax
    (None: the largest weight shown)."""
    vmax = scale_top(stack.weights, vmax)
    q = stack.query.labels[0]
    lines = [
        Text(
            fit(f"{stack.name} · {stack.layers_label()} · query {q!r}: its weight on each key", width).rstrip(),
            style="bold",
        )
    ]
    blocks = [
        bars_block(stack.weights[li, hi, 0], stack, vmax, digits, _title(stack, li, hi), color)
        for li in range(stack.layers)
        for hi in range(stack.heads)
    ]
    lines += side_by_side(blocks, width)
    lines.append(Text(""))
    lines.append(Text(f"full bar = {vmax:.{digits}f} · {MARK} strongest key"))
    lines += note_lines(stack.notes, width)
    return lines


def render(result: AttentionResult, digits: int = 2, vmax: float | None = None) -> RenderableType:
    """Bars for a result whose stacks each hold one query row (see views.query_view)."""
    return StackLines(result, lambda stack, width, color: stack_bar_lines(stack, width, color, digits, vmax))
