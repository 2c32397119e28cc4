"""The default `show`: one screen that says what every head of a layer does.

Twelve full heat tables do not fit a screen, and most of their cells say "[CLS]". A
reader first wants the layer at a glance: the mean map, and per head its role, its
strongest link between real words, and how much of it goes to special tokens. Both fit
80 × 50 for a short sentence; `--head all` draws every head in full.
"""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text

from ..result import AttentionResult, Origin, Stack, Tokens
from . import heat
from .table import TIGHT, stack_lines, table_block, table_width
from .term import (
    MARK,
    StackLines,
    block_width,
    fg_style,
    fit,
    note_lines,
    ramp,
    scale_top,
    side_by_side,
    wrap_items,
)

LINK_TOKEN_CELLS = 10  # a token in the links column is cut to this
MEAN_HEAT_CELLS = 64  # a long input's mean heatmap: wide enough to read, short enough to leave room
GAP = 4  # cells between the mean map and the head list


def _real(tokens: Tokens) -> list[int]:
    """Indices of the tokens that are not special."""
    return [i for i in range(len(tokens)) if not tokens.is_special(i)]


def strongest_link(w: np.ndarray, rows: list[int], cols: list[int]) -> tuple[int, int] | None:
    """(query, key) of the largest weight among real query `rows` and key `cols`, if there are any."""
    if not rows or not cols:
        return None
    sub = w[np.ix_(rows, cols)]
    i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
    return rows[int(i)], cols[int(j)]


def special_share(w: np.ndarray, rows: list[int], special: list[int]) -> float | None:
    """Mean weight the real query `rows` give to the `special` keys; None without either."""
    if not special or not rows:
        return None
    return float(w[np.ix_(rows, special)].sum(axis=1).mean())


def _head_number(origin: Origin, hi: int) -> str:
    return str(origin.single) if origin.single is not None else str(hi)


def head_lines(stack: Stack, li: int, digits: int, color: bool) -> list[Text]:
    """One line per head: number, strongest link between real tokens, its weight, share on specials."""
    rows, cols = _real(stack.query), _real(stack.key)
    special = [j for j in range(len(stack.key)) if stack.key.is_special(j)]
    shares = [special_share(stack.weights[li, hi], rows, special) for hi in range(stack.heads)]
    show_share = any(s is not None for s in shares)
    links = []
    for hi in range(stack.heads):
        w = stack.weights[li, hi]
        found = strongest_link(w, rows, cols)
        if found is None:
            links.append(("", "", 0.0))
        else:
            links.append((stack.query.labels[found[0]], stack.key.labels[found[1]], float(w[found])))
    qw = max([cell_len(fit(q, LINK_TOKEN_CELLS).rstrip()) for q, _, _ in links] + [5])
    kw = max([cell_len(fit(k, LINK_TOKEN_CELLS).rstrip()) for _, k, _ in links] + [3])
    header = Text("head", style="bold")
    header.append("  " + "query".rjust(qw) + " → " + "key".ljust(kw) + "  " + "weight", style="bold")
    if show_share:
        header.append("  specials", style="bold")
    lines = [header]
    for hi, (query, key, v) in enumerate(links):
        line = Text(_head_number(stack.head_axis[hi], hi).rjust(4))
        if query:
            line.append("  " + fit(query, qw, right=True) + " → " + fit(key, kw))
            line.append("  " + f"{v:.{digits}f}".rjust(6), style=fg_style(v) if color else "")
        else:
            line.append("  " + "(no real tokens)".ljust(qw + kw + 3) + "  " + " " * 6)
        share = shares[hi]
        if show_share and share is not None:
            line.append(f"{share:>10.0%}")
        lines.append(line)
    return lines


def mean_block(
    stack: Stack, w: np.ndarray, vmax: float, room: int, width: int, color: bool, digits: int
) -> tuple[list[Text], bool]:
    """The mean map `w` of a layer's heads: a heat table, beside the heads (`room`) if one fits
    there, else across the `width`; a heatmap (True) when no table fits."""
    title = f"mean of {stack.heads} heads"
    for cells, compact in ((room, 0), (room, 1), (width, 0), (width, 1), (width, TIGHT)):
        if table_width(stack.query, stack.key, digits, compact) <= cells:
            return table_block(w, stack.query, stack.key, vmax, digits, compact, title, cells), False
    return heat.heat_block(w, stack.query, stack.key, vmax, min(width, MEAN_HEAT_CELLS), color, title), True


def overview_lines(stack: Stack, width: int, color: bool, digits: int = 2, vmax: float | None = None) -> list[Text]:
    """Per layer of the stack: heading, mean map beside the head list, legend, notes."""
    if stack.heads == 1:  # nothing to summarise: the one map in full
        return stack_lines(stack, width, color, digits, vmax=vmax)
    lines: list[Text] = []
    for li in range(stack.layers):
        if li:
            lines.append(Text(""))
        heading = f"{stack.name} · {stack.layer_label(li)} · {stack.heads} heads at a glance"
        lines.append(Text(fit(heading, width).rstrip(), style="bold"))
        heads = [Text(""), *head_lines(stack, li, digits, color)]  # the blank meets the mean's title
        mean = stack.weights[li].mean(axis=0)  # (H, q, k) → (q, k)
        top = scale_top(mean[None, None], vmax)
        block, pooled = mean_block(stack, mean, top, width - GAP - block_width(heads), width, color, digits)
        lines += side_by_side([block, heads], width, GAP)
        lines.append(Text(""))
        lines += _legend(stack, top, pooled, width, color, digits)
    return lines + note_lines(stack.notes, width)


def _legend(stack: Stack, vmax: float, pooled: bool, width: int, color: bool, digits: int) -> list[Text]:
    items: list[Text | str] = []
    if color:
        items.append(ramp(vmax, digits, color))
    if not pooled:
        items.append(f"{MARK} strongest key in each row")
    items += [
        "rows: query tokens, columns: key tokens",
        "links: the strongest weight between two real tokens of each head",
        "every head in full: --head all · one head: --head N · another layer: --layer N",
    ]
    lines = wrap_items(items, width)
    if pooled:
        lines += heat.token_legend(
            stack.query, width, "tokens" if heat.same_tokens(stack.query, stack.key) else "queries"
        )
    return lines


def render(result: AttentionResult, digits: int = 2, vmax: float | None = None) -> RenderableType:
    """The result's stacks at a glance: mean map and one line per head (see the module doc)."""
    return StackLines(result, lambda stack, width, color: overview_lines(stack, width, color, digits, vmax))
