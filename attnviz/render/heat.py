"""Compact heatmaps for inputs too long for a table.

In colour, each terminal line holds two query rows: '▀' with the upper row's colour
as foreground and the lower row's as background; one column per key token. Without
colour, one query row per line in shade characters (·░▒▓█). When the keys still do
not fit, neighbouring tokens share a cell (its maximum: a strong link stays visible).
Token indices run along both axes; a numbered legend names them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from rich.cells import cell_len
from rich.color import Color
from rich.style import Style
from rich.text import Text

from ..result import Tokens
from .term import SHADES, fit, rgb

LEGEND_TOKEN_CELLS = 16


def _groups(n: int, size: int, cut: int | None) -> list[list[int]]:
    """0..n-1 in runs of `size`, never straddling `cut` (the first token of sentence B)."""
    parts = [(0, n)] if cut is None else [(0, cut), (cut, n)]
    return [list(range(s, min(s + size, stop))) for start, stop in parts for s in range(start, stop, size)]


def _pool(w: np.ndarray, q_groups: list[list[int]], k_groups: list[list[int]]) -> np.ndarray:
    """w (q, k) → (len(q_groups), len(k_groups)), each cell the max of its block."""
    cols = np.stack([w[:, g].max(axis=1) for g in k_groups], axis=1)  # (q, gk)
    return np.stack([cols[g].max(axis=0) for g in q_groups], axis=0)  # (gq, gk)


LEVELS = 255  # colours per heatmap: plenty for the eye, and the styles are cached


def _level(t: float) -> int:
    return round(min(max(float(t), 0.0), 1.0) * LEVELS)


@cache
def _half(top: int, bottom: int) -> Style:
    """'▀' styles: upper half in the foreground colour, lower half (level ≥ 0) in the background."""
    return Style(
        color=Color.from_rgb(*rgb(top / LEVELS)),
        bgcolor=Color.from_rgb(*rgb(bottom / LEVELS)) if bottom >= 0 else None,
    )


def cell_size(stack_q: int, stack_k: int, width: int, cut: int | None = None) -> int:
    """Tokens per heatmap cell (each axis) so that `stack_k` keys fit in `width` columns.

    `cut` is the first key of sentence B: cells never straddle it, so a pair can need
    one cell more than `stack_k / size` (besides the boundary column itself).
    """
    axis = len(str(max(stack_q - 1, 0))) + 2  # query index, a space, the boundary column
    room = max(1, width - axis)
    size = max(1, math.ceil(stack_k / room))
    while size < stack_k and cut is not None and math.ceil(cut / size) + math.ceil((stack_k - cut) / size) > room:
        size += 1
    return size


def heat_block(
    w: np.ndarray,  # (q, k)
    query: Tokens,
    key: Tokens,
    vmax: float,
    width: int,
    color: bool,
    title: str = "",
) -> list[Text]:
    """One heatmap, at most `width` cells wide, with index axes."""
    q, k = w.shape
    qb = query.pair_start
    kb = key.pair_start
    size = cell_size(q, k, width, kb)
    q_groups, k_groups = _groups(q, size, qb), _groups(k, size, kb)
    cells = _pool(w, q_groups, k_groups) / vmax  # (gq, gk) in [0, 1]
    k_cut = next((j for j, g in enumerate(k_groups) if kb is not None and g[0] == kb), None)
    q_cut = next((i for i, g in enumerate(q_groups) if qb is not None and g[0] == qb), None)
    aw = len(str(max(q - 1, 0)))
    ncols = len(k_groups) + (1 if k_cut is not None else 0)

    def pos(j: int) -> int:  # display column of key group j
        return j + (1 if k_cut is not None and j >= k_cut else 0)

    lines: list[Text] = []
    if title:
        lines.append(Text(fit(title, aw + 1 + ncols).rstrip(), style="bold"))
    axis = [" "] * ncols
    free = 0
    for j, g in enumerate(k_groups):
        label = str(g[0])
        p = pos(j)
        if (j % 10 == 0 or j == k_cut) and p >= free and p + len(label) <= ncols:
            axis[p : p + len(label)] = list(label)
            free = p + len(label) + 1
    if k_cut is not None and axis[k_cut] == " ":
        axis[k_cut] = "│"
    lines.append(Text(" " * (aw + 1) + "".join(axis).rstrip(), style="dim"))

    def rule() -> Text:
        chars = ["─"] * ncols
        if k_cut is not None:
            chars[k_cut] = "┼"
        return Text(" " * (aw + 1) + "".join(chars), style="dim")

    def row_line(first: int, top: np.ndarray, bottom: np.ndarray | None) -> Text:
        line = Text()
        line.append(str(q_groups[first][0]).rjust(aw) + " ", style="dim")
        for j in range(len(k_groups)):
            if j == k_cut:
                line.append("│", style="dim")
            if not color:
                line.append(SHADES[min(len(SHADES) - 1, int(top[j] * len(SHADES)))])
                continue
            line.append("▀", style=_half(_level(top[j]), _level(bottom[j]) if bottom is not None else -1))
        return line

    segments = [(0, len(q_groups))] if q_cut is None else [(0, q_cut), (q_cut, len(q_groups))]
    for s, (start, stop) in enumerate(segments):
        if s:
            lines.append(rule())
        step = 2 if color else 1
        for i in range(start, stop, step):
            bottom = cells[i + 1] if color and i + 1 < stop else None
            lines.append(row_line(i, cells[i], bottom))
    return lines


def pooled_note(q: int, k: int, width: int, cut: int | None = None) -> str:
    """What one heatmap cell stands for, when it stands for more than one token pair."""
    size = cell_size(q, k, width, cut)
    return f"each heatmap cell is the max over {size}×{size} tokens" if size > 1 else ""


def token_legend(tokens: Tokens, width: int, label: str = "tokens") -> list[Text]:
    """'tokens: 0 [CLS]  1 i  2 have …' wrapped to `width`, '│' where sentence B starts."""
    cut = tokens.pair_start
    entries = []
    for i, text in enumerate(tokens.labels):
        shown = fit(text, LEGEND_TOKEN_CELLS).rstrip() or "␣"
        entries.append(("│ " if i == cut else "") + f"{i} {shown}")
    lines: list[Text] = []
    line = Text()
    line.append(f"{label}:", style="bold")
    for entry in entries:
        piece = "  " + entry
        if line.cell_len + cell_len(piece) > width and line.cell_len > 0:
            lines.append(line)
            line = Text(" " + entry[: max(1, width - 1)])
            continue
        line.append(piece)
    lines.append(line)
    return [ln if ln.cell_len <= width else ln[:width] for ln in lines]


def same_tokens(a: Tokens, b: Sequence[str] | Tokens) -> bool:
    texts = b.texts if isinstance(b, Tokens) else tuple(b)
    return a.texts == texts
