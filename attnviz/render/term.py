"""Terminal drawing helpers shared by the table, heatmap and bar renderers.

A perceptual colour scale (viridis, truecolor; rich falls back to 256/16 colours on
its own), text that stays readable on every shade, cell-width fitting, and a
side-by-side layout that never exceeds the console width.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text

if TYPE_CHECKING:
    from ..result import AttentionResult, Stack

# viridis sampled at 11 even stops (matplotlib's values, rounded): perceptually uniform,
# readable for the common colour-vision deficiencies, dark = low and bright = high
VIRIDIS = (
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
)
MARK = "◂"  # after the strongest value of a row: findable without colour
SHADES = "·░▒▓█"  # colourless heatmap ramp, low → high
EIGHTHS = " ▏▎▍▌▋▊▉█"  # bar ends at 1/8 cell resolution


def rgb(t: float) -> tuple[int, int, int]:
    """The scale's colour at t in [0, 1] (clamped), linear between the stops."""
    t = min(max(t, 0.0), 1.0) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    f = t - i
    a, b = VIRIDIS[i], VIRIDIS[i + 1]
    return (round(a[0] + (b[0] - a[0]) * f), round(a[1] + (b[1] - a[1]) * f), round(a[2] + (b[2] - a[2]) * f))


def _luminance(c: tuple[int, int, int]) -> float:
    def lin(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])


def text_on(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with the background `bg`."""
    # 0.179 is where black and white text have equal WCAG contrast on the background
    return (0, 0, 0) if _luminance(bg) > 0.179 else (255, 255, 255)


def cell_style(t: float, bold: bool = False) -> Style:
    """Background from the scale, black or white text, whichever contrasts more."""
    bg = rgb(t)
    return Style(color=Color.from_rgb(*text_on(bg)), bgcolor=Color.from_rgb(*bg), bold=bold)


def fg_style(t: float) -> Style:
    return Style(color=Color.from_rgb(*rgb(t)))


def has_color(console: Console) -> bool:
    return console.color_system is not None and not console.no_color


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` cut to `width` cells (with …) and padded to exactly `width` cells."""
    text = "".join(ch if ch.isprintable() else "�" for ch in text)
    if width <= 0:
        return ""
    if cell_len(text) > width:
        cut = set_cell_size(text, width - 1)
        if cut.endswith(" ") and not text[: len(cut)].endswith(" "):
            cut = cut[:-1]  # rich padded where a wide character did not fit: the … goes right after
        text = cut + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def scale_top(weights: np.ndarray, fixed: float | None = None) -> float:
    """The value the brightest colour stands for: `fixed` (--vmax N), else the largest weight shown
    (1 when none is above 0)."""
    if fixed is not None:
        return fixed
    top = float(weights.max()) if weights.size else 0.0
    return top if top > 0 and math.isfinite(top) else 1.0


def ramp(vmax: float, digits: int, color: bool) -> Text:
    """'weight 0.00 ▕gradient▏ 0.62' in colour, '0.00 ·░▒▓█ 0.62' without (the heatmap's shades)."""
    text = Text("weight ")
    text.append(f"{0:.{digits}f} ")
    if color:
        for i in range(16):
            text.append(" ", style=cell_style(i / 15))
    else:
        text.append(SHADES)
    text.append(f" {vmax:.{digits}f}")
    return text


def wrap_items(items: Sequence[Text | str], width: int, sep: str = " · ") -> list[Text]:
    """Short legend items joined by `sep`, a new line where the next would not fit."""
    pieces: list[Text] = []
    for item in items:
        if isinstance(item, str):  # a long sentence wraps at its spaces
            pieces += [Text(part) for part in textwrap.wrap(item, max(width, 1)) or [""]]
        else:
            pieces.append(item)
    lines: list[Text] = []
    line = Text()
    for piece in pieces:
        if line.cell_len and line.cell_len + len(sep) + piece.cell_len > width:
            lines.append(line)
            line = Text()
        if line.cell_len:
            line.append(sep)
        line.append_text(piece)
    if line.cell_len:
        lines.append(line)
    return [ln if ln.cell_len <= width else ln[:width] for ln in lines]


def note_lines(notes: Sequence[str], width: int) -> list[Text]:
    """'note: …' lines, wrapped (never cut) to the width, continuation lines indented."""
    lines: list[Text] = []
    for note in notes:
        wrapped = textwrap.wrap(f"note: {note}", max(width, 12), subsequent_indent="      ") or [""]
        lines += [Text(fit(part, width).rstrip(), style="italic") for part in wrapped]
    return lines


def pad_line(line: Text, width: int) -> Text:
    out = line.copy()
    if out.cell_len < width:
        out.append(" " * (width - out.cell_len))
    elif out.cell_len > width:
        out.truncate(width)
    return out


def block_width(block: Sequence[Text]) -> int:
    return max((line.cell_len for line in block), default=0)


def side_by_side(blocks: Sequence[Sequence[Text]], width: int, gap: int = 3) -> list[Text]:
    """Blocks of lines laid left to right, wrapping to a new row when the next would not fit."""
    rows: list[list[Sequence[Text]]] = []
    used = 0
    for block in blocks:
        w = block_width(block)
        if rows and used + gap + w <= width:
            rows[-1].append(block)
            used += gap + w
        else:
            rows.append([block])
            used = w
    lines: list[Text] = []
    for r, row in enumerate(rows):
        if r:
            lines.append(Text(""))
        widths = [block_width(b) for b in row]
        for i in range(max(len(b) for b in row)):
            line = Text()
            for j, block in enumerate(row):
                part = block[i] if i < len(block) else Text("")
                if j:
                    line.append(" " * gap)
                line.append_text(pad_line(part, widths[j]) if j < len(row) - 1 else part)
            if line.cell_len > width:
                line.truncate(width)
            lines.append(line)
    return lines


class StackLines:
    """Each stack of a result as the lines `draw(stack, width, color)` makes, a blank line
    between stacks, every line cropped to the console it is printed on."""

    def __init__(self, result: AttentionResult, draw: Callable[[Stack, int, bool], list[Text]]) -> None:
        self.result, self.draw = result, draw

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for n, stack in enumerate(self.result.stacks):
            if n:
                yield Text("")
            for line in self.draw(stack, options.max_width, has_color(console)):
                line.no_wrap, line.overflow = True, "crop"
                yield line
