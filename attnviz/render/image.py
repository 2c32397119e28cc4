"""Heatmap images (PNG, SVG, PDF): one measured layout per sentence and view, redrawn fast.

A *sheet* is one figure layout: a grid of heatmap panels with token labels, panel
titles, a colourbar and a title line, measured once as boxes, texts and tick marks in
inches. Everything but the cells, the cell values and the title is the same for every
image of a sentence. A PNG sheet paints that once into a pixel canvas, each distinct
text rasterised once by matplotlib's own text engine and stamped wherever it occurs
(72 panels of a model grid repeat the same labels), and each image then costs its
cells, its title and a PNG encode that sends rows repeating the row above as ready-made
deflate runs. SVG and PDF build one matplotlib figure from the same parts (one axes
holds every panel as an image) and fill a template of it per image.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import math
import re
import struct
import unicodedata
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from xml.sax.saxutils import escape

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, fontManager, get_font
from matplotlib.patheffects import Normal
from matplotlib.text import Text
from matplotlib.textpath import TextToPath

from ..errors import Fix, OutputError, UsageError
from ..spec import ImageFormat

if TYPE_CHECKING:
    from matplotlib.image import AxesImage

    from .pdf_template import PdfTemplate

FORMATS = tuple(f.value for f in ImageFormat)
ANNOTATE_MAX_TOKENS = 16  # single heatmaps up to this many tokens a side show their values
MAX_PIXELS = 10_000  # the longest side by default (--max-pixels): bigger images no viewer shows whole
HARD_MAX_PIXELS = 32_000  # Agg refuses 2**16 a side, and such images are unusable anyway
MIN_CELL_PIXELS = 1  # below one pixel per token a map cannot be drawn at all
# fonts that draw what DejaVu Sans cannot (CJK, Devanagari), used glyph by glyph when installed:
# by the `fonts` extra (FONT_PACKAGES) or by the system (e.g. Debian's fonts-noto-cjk)
FALLBACK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "Noto Sans Devanagari",
)
# the distributions of `pip install 'attnviz[fonts]'` (Noto, OFL-1.1): module name → its font files
FONT_PACKAGES = ("noto_cjk_sans_otc", "fontpkg_noto_sans_devanagari")
COLORBAR_LABEL = "attention weight"
PAIR_LINE, PAIR_LINE_PT = "white", 1.5  # the line between sentence A and B
PNG_COMPRESS_LEVEL = 1  # zlib level 1: several times faster than matplotlib's level 6, files ~30% larger


@dataclass(frozen=True)
class Style:
    """How images look and which file format they take."""

    fmt: str = "png"
    cmap: str = "viridis"
    dpi: int = 100
    vmax: float | None = 1.0  # the colour scale runs 0..vmax; None: auto (the largest weight of the sentence)
    annotate: str = "auto"  # auto (small single heatmaps) | on | off
    caption: bool = False  # the sentence under the figure
    figsize: tuple[float, float] | None = None  # inches; None: from the number of tokens
    fontsize: float | None = None  # token labels, in points; None: from the cell size
    max_pixels: int = MAX_PIXELS  # the longest side: cells shrink and labels thin out to stay within it

    def check(self) -> Style:
        """Raise UsageError for a format, colour map, dpi, scale or size matplotlib cannot use."""
        if self.fmt not in FORMATS:
            raise UsageError(f"unknown image format {self.fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")
        if self.cmap not in colormaps:
            close = [n for n in colormaps if n.lower().startswith(self.cmap.lower()[:3])][:6]
            raise UsageError(
                f"unknown colour map {self.cmap!r}", hint=f"try: {', '.join(close or ['viridis', 'Blues'])}"
            )
        if not 10 <= self.dpi <= 1200:
            raise UsageError(f"a dpi of {self.dpi} is outside 10..1200")
        if self.vmax is not None and not (self.vmax > 0 and math.isfinite(self.vmax)):
            raise UsageError(f"the top of the colour scale must be a number above 0, not {self.vmax}")
        if self.annotate not in ("auto", "on", "off"):
            raise UsageError(f"unknown annotate setting {self.annotate!r}", hint="choose auto, on or off")
        if not 100 <= self.max_pixels <= HARD_MAX_PIXELS:
            raise UsageError(f"--max-pixels {self.max_pixels} is outside 100..{HARD_MAX_PIXELS}")
        if self.fontsize is not None and not 2 <= self.fontsize <= 72:
            raise UsageError(f"a font size of {self.fontsize} points is outside 2..72")
        if self.figsize is not None:
            w, h = self.figsize
            if not (0.5 <= w <= 200 and 0.5 <= h <= 200):
                raise UsageError(f"a figure size of {w}x{h} inches is outside 0.5..200 a side")
            if max(w, h) * self.dpi > self.max_pixels:
                raise UsageError(
                    f"a {w}x{h} inch figure at {self.dpi} dpi is {w * self.dpi:.0f}x{h * self.dpi:.0f} pixels, "
                    f"over --max-pixels {self.max_pixels}",
                    hint="lower --dpi, or raise --max-pixels",
                )
        return self

    def scaled_to(self, weights: np.ndarray) -> Style:
        """This style with an auto scale resolved: the top is the largest weight drawn (1 when none is above 0)."""
        if self.vmax is not None:
            return self
        top = float(weights.max()) if weights.size else 0.0
        return replace(self, vmax=top if top > 0 and math.isfinite(top) else 1.0)


@dataclass(frozen=True)
class Layout:
    """What stays the same across the images of one sentence and view."""

    rows: int
    cols: int
    query: tuple[str, ...]
    key: tuple[str, ...]
    panel_titles: tuple[str, ...] = ()  # one per panel, row-major ("" for none)
    row_titles: tuple[str, ...] = ()  # one per row, left of the grid ("layer 3")
    caption: str = ""  # notes from the views, under the figure
    widest_title: str = ""  # the longest title any image of this layout gets: the figure makes room for it
    q_cut: int | None = None  # first query token of sentence B (pairs): a line is drawn above it
    k_cut: int | None = None  # first key token of sentence B: a line left of it

    @property
    def panels(self) -> int:
        return self.rows * self.cols


# ---------------------------------------------------------------- text and fonts


@lru_cache(maxsize=1)
def _register_packaged_fonts() -> None:
    """Add the fonts of the `fonts` extra to matplotlib's font manager (once, on first drawing)."""
    for name in FONT_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue  # not installed: those glyphs fall back to U+XXXX
        for path in sorted(Path(spec.origin).parent.rglob("*")):
            if path.suffix.lower() in (".ttf", ".ttc", ".otf"):
                fontManager.addfont(str(path))


@lru_cache(maxsize=1)
def _label_families() -> tuple[str, ...]:
    """DejaVu Sans, then each installed fallback font that draws characters the ones before it do not."""
    _register_packaged_fonts()
    installed = {f.name for f in fontManager.ttflist}
    families, chars = ["DejaVu Sans"], set(_charmap("DejaVu Sans"))
    for name in FALLBACK_FONTS:
        if name in installed and not _charmap(name) <= chars:
            families.append(name)
            chars |= _charmap(name)
    return tuple(families)


@lru_cache(maxsize=16)
def _charmap(family: str) -> frozenset[int]:
    return frozenset(get_font(findfont(FontProperties(family=family))).get_charmap())


@lru_cache(maxsize=1)
def _known_chars() -> frozenset[int]:
    return frozenset().union(*(_charmap(family) for family in _label_families()))


def printable_label(token: str) -> str:
    """The token with characters no installed font can draw written as U+XXXX (no empty boxes);
    several in a row are set apart by spaces: 'U+1230 U+120B'."""
    known = _known_chars()
    out = []
    escaped = False
    for ch in token:
        if ord(ch) in known or unicodedata.category(ch).startswith("Z"):
            out.append(ch)
            escaped = False
        else:
            out.append(f"{' ' if escaped else ''}U+{ord(ch):04X}")
            escaped = True
    return "".join(out)


MAX_LABEL_CHARS = 24  # a token label longer than this ends in '…' (a 5,000-letter "word" is still one cell)


def tick_label(token: str) -> str:
    """A token as its tick label: drawable (printable_label), and at most MAX_LABEL_CHARS long."""
    label = printable_label(token)
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def fonts_extra_installed() -> bool:
    """Whether every font package of the `fonts` extra is installed."""
    return all(importlib.util.find_spec(name) is not None for name in FONT_PACKAGES)


def missing_glyphs(tokens: tuple[str, ...]) -> str:
    """Characters of these tokens no installed font can draw (empty when all can be)."""
    known = _known_chars()
    return "".join(sorted({ch for t in tokens for ch in t if ord(ch) not in known and not ch.isspace()}))


@lru_cache(maxsize=1)
def _cff_chars() -> frozenset[int]:
    """Characters whose font has PostScript (CFF) outlines, which matplotlib cannot embed in a PDF as Type 42."""
    claimed: set[int] = set()
    cff: set[int] = set()
    for family in _label_families():
        font = get_font(findfont(FontProperties(family=family)))
        chars = _charmap(family) - claimed
        claimed |= chars
        maxp: dict[str, Any] = dict(font.get_sfnt_table("maxp") or {})
        if maxp.get("version") == (0, 0x5000):  # maxp 0.5: CFF outlines
            cff |= chars
    return frozenset(cff)


def _props(size: float) -> FontProperties:
    return FontProperties(family=list(_label_families()), size=size)


@lru_cache(maxsize=4096)
def _text_inches(text: str, size: float) -> tuple[float, float]:
    """Width and height of a line of text, in inches."""
    if not text:
        return 0.0, 0.0
    w, h, _ = TextToPath().get_text_width_height_descent(text, _props(size), False)
    return w / 72, max(h, size) / 72


def _text_points(text: str, size: float) -> float:
    """Width of a line of text, in points."""
    return _text_inches(text, size)[0] * 72


def _fits(labels: tuple[str, ...], size: float) -> float:
    return max((_text_inches(t, size)[0] for t in labels), default=0.0)


# ---------------------------------------------------------------- the sheet


@dataclass(frozen=True)
class _Metrics:
    cell: float  # inches per token
    tick_size: float  # points
    annotate: bool
    rotate_x: bool
    step: int = 1  # every step-th token carries a label (long inputs in a bounded image)


def _default_cell(layout: Layout, style: Style) -> tuple[float, bool]:
    """Inches per token before any size limit, and whether the cells show their values."""
    n = max(len(layout.query), len(layout.key))
    single = layout.panels == 1
    annotate = style.annotate == "on" or (style.annotate == "auto" and single and n <= ANNOTATE_MAX_TOKENS)
    if single:
        cell = 0.42 if annotate else 0.26 if n <= 40 else 0.16
    else:
        cell = 0.42 if annotate else 0.2 if n <= 16 else 0.12
    if style.fontsize:  # labels of the size asked for need a line each: the cells grow to give it (_metrics)
        cell = max(cell, _text_inches("Ag", style.fontsize)[1] * 1.16)
    return cell, annotate


def _metrics(layout: Layout, style: Style, cell: float, annotate: bool) -> _Metrics:
    """Label size, rotation and thinning for cells of `cell` inches."""
    tick = style.fontsize or (9.0 if cell >= 0.26 else 8.0 if cell >= 0.2 else 6.5)
    line = _text_inches("Ag", tick)[1]
    step = max(1, math.ceil(line * 1.15 / cell))  # labels need a line each: thin them out when cells are smaller
    labels = tuple(tick_label(t) for t in layout.key[::step])
    rotate = step > 1 or _fits(labels, tick) > cell * 0.85
    return _Metrics(cell, tick, annotate and cell >= 0.3, rotate, step)


def _elide(text: str, size: float, room: float) -> str:
    """The text, shortened with '…' until it is at most `room` inches wide: the first ' · ' part (a model
    name or path) loses its start first, then the end goes."""
    if _text_inches(text, size)[0] <= room:
        return text
    head, sep, tail = text.partition(" · ")
    if sep:
        for cut in range(1, len(head) + 1):
            shorter = f"…{head[cut:]}{sep}{tail}"
            if _text_inches(shorter, size)[0] <= room:
                return shorter
    for cut in range(len(text) - 1, 0, -1):
        shorter = text[:cut].rstrip() + "…"
        if _text_inches(shorter, size)[0] <= room:
            return shorter
    return "…"


def _wrap(text: str, size: float, room: float) -> list[str]:
    """Lines of at most `room` inches: words kept whole where they fit, long words broken."""
    space = _text_inches("a a", size)[0] - 2 * _text_inches("a", size)[0]
    lines: list[str] = []
    for paragraph in text.splitlines():
        line, wide = "", 0.0
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            # a line's width is about the sum of its words': measure the whole line only near the edge
            guess = wide + space + _text_inches(word, size)[0] if line else _text_inches(word, size)[0]
            if guess <= room * 0.97 or (guess <= room * 1.03 and _text_inches(candidate, size)[0] <= room):
                line, wide = candidate, guess
                continue
            if line:
                lines.append(line)
            while _text_inches(word, size)[0] > room and len(word) > 1:
                cut = next(i for i in range(len(word) - 1, 0, -1) if _text_inches(word[:i], size)[0] <= room or i == 1)
                lines.append(word[:cut])
                word = word[cut:]
            line, wide = word, _text_inches(word, size)[0]
        lines.append(line)
    return lines


def _scale_ticks(vmax: float) -> tuple[list[float], list[str]]:
    """Colourbar ticks from 0 to vmax, and their labels ('0', '0.25', '1', '3e-05'). The top is always
    labelled (an auto scale ends at the largest weight, 0.987, not at a round number): a round tick
    closer to it than half a step gives way."""
    from matplotlib.ticker import MaxNLocator

    ticks = [float(t) for t in MaxNLocator(5).tick_values(0.0, vmax) if -1e-12 <= t <= vmax * (1 + 1e-9)]
    if len(ticks) > 1 and abs(ticks[-1] - vmax) > vmax * 1e-9:
        step = ticks[1] - ticks[0]
        ticks = [t for t in ticks if vmax - t >= step / 2] + [vmax]
    return ticks, [f"{t:.3g}" for t in ticks]


TICK_PT, TICK_PAD_PT, TICK_WIDTH_PT = 2.0, 1.5, 0.8  # token ticks: length, gap to the label, line width
CBAR_TICK_PAD_PT, CBAR_LABEL_PAD_PT = 3.5, 4.0  # colour bar: tick to its label, tick labels to the bar's label


@dataclass(frozen=True)
class _Text:
    """One line of text of a sheet, placed the way matplotlib places a Text: the anchor (x, y) in
    inches from the figure's bottom-left corner, the text aligned to it by ha/va, turned 0 or 90°."""

    text: str
    x: float
    y: float
    size: float  # points
    ha: str = "center"
    va: str = "center"
    rotation: int = 0
    grey: float = 0.0  # the ink: 0 black .. 1 white


class Sheet:
    """One figure layout, measured once; `render` makes each image of it.

    The layout is a list of parts in inches: panel boxes, texts (token labels, titles, notes,
    the colour bar's ticks), tick marks and a colour bar. PNGs paint those parts into a pixel
    canvas once (each distinct text rasterised once by matplotlib's own text engine, then
    stamped wherever it occurs) and each image paints its cells and title over it. SVG and PDF
    build one matplotlib figure from the same parts: a single grid axes holding every panel as
    an image, and plain texts, so no figure of many axes is built for any view.
    """

    TITLE_SIZE = 11.0
    LABEL_SIZE = 9.0
    PANEL_TITLE_SIZE = 8.0
    CAPTION_SIZE = 8.0
    SCALE_SIZE = 8.0  # the colour bar's tick labels and its label
    PAD = 0.12  # inches at the figure edges
    MIN_WIDTH = 5.0  # inches a title or caption may widen a small figure to, before it is shortened or wraps

    def __init__(self, layout: Layout, style: Style, spare: np.ndarray | None = None) -> None:
        """`spare`: a flat uint8 buffer this sheet may paint its PNG canvas in (a released sheet's), when
        it is big enough: a fresh canvas of a large grid costs more in page faults than in painting."""
        if style.vmax is None:
            raise ValueError("a sheet needs a resolved colour scale (Style.scaled_to)")
        self.layout, self.style = layout, style
        self.vmax: float = style.vmax
        self.cmap: Colormap = colormaps[style.cmap]
        self.norm = Normalize(0.0, style.vmax)
        q_all = tuple(tick_label(t) for t in layout.query)
        k_all = tuple(tick_label(t) for t in layout.key)
        nq, nk = len(q_all), len(k_all)
        grid = layout.panels > 1

        # --- sizes in inches, from the text they must hold; the cell size is what gives way
        label_h = _text_inches("Ag", self.LABEL_SIZE)[1]
        title_h = _text_inches("Ag", self.TITLE_SIZE)[1]
        caption_h = _text_inches("Ag", self.CAPTION_SIZE)[1] * 1.3
        ptitle_h = _text_inches("Ag", self.PANEL_TITLE_SIZE)[1] if any(layout.panel_titles) else 0.0
        row_title_w = _fits(layout.row_titles, self.LABEL_SIZE) + 0.1 if layout.row_titles else 0.0
        hgap = 0.15 if grid else 0.0
        vgap = ptitle_h + 0.12 if grid else 0.0
        ticks, tick_labels = _scale_ticks(style.vmax)
        scale_w = _fits(tuple(tick_labels), self.SCALE_SIZE)
        scale_h = _text_inches("Ag", self.SCALE_SIZE)[1]
        right = 0.18 + 0.16 + scale_w + 0.1 + scale_h + 0.12 + self.PAD
        top = self.PAD + title_h + 0.12 + ptitle_h
        limit = style.max_pixels / style.dpi  # inches on the longest side

        def margins(m: _Metrics, caption_lines: int) -> tuple[float, float]:
            """(left, bottom) around the grid for these labels."""
            y_ticks_w = _fits(q_all[:: m.step], m.tick_size)
            tick_h = _text_inches("Ag", m.tick_size)[1]
            x_ticks_h = _fits(k_all[:: m.step], m.tick_size) if m.rotate_x else tick_h
            left = self.PAD + label_h + 0.08 + row_title_w + y_ticks_w + 0.1
            bottom = self.PAD + caption_lines * caption_h + label_h + 0.06 + x_ticks_h + 0.1
            return left, bottom

        cell, annotate = _default_cell(layout, style)
        across, down = layout.cols * nk, layout.rows * nq  # tokens along the grid's width and height
        gaps_w, gaps_h = (layout.cols - 1) * hgap, (layout.rows - 1) * vgap
        caption_lines = 0
        m = _metrics(layout, style, cell, annotate)
        for _ in range(3):  # labels depend on the cell and the cell on the labels' room: settle in a few rounds
            left, bottom = margins(m, caption_lines)
            if style.figsize is not None:
                room_w, room_h = style.figsize[0] - left - right - gaps_w, style.figsize[1] - top - bottom - gaps_h
                cell = min(room_w / across, room_h / down)
            else:
                cell = min(_default_cell(layout, style)[0], (limit - left - right - gaps_w) / across)
                cell = min(cell, (limit - top - bottom - gaps_h) / down)
            if cell * style.dpi < MIN_CELL_PIXELS:
                maps = f"{layout.panels} maps of {nq}x{nk} tokens" if layout.panels > 1 else f"{nq}x{nk} tokens"
                if style.figsize is not None:
                    raise OutputError(
                        f"a {style.figsize[0]:g}x{style.figsize[1]:g}-inch figure has no room for {maps} "
                        f"beside their labels at {style.dpi} dpi",
                        hint="give a bigger figure size, or size it from the tokens",
                        fix=Fix.BIGGER_FIGURE,
                    )
                raise OutputError(
                    f"{maps} do not fit {style.max_pixels} pixels a side, even at one pixel a token",
                    hint="draw fewer tokens (a token window), fewer maps per image, or allow bigger images",
                    fix=Fix.SMALLER_IMAGE,
                )
            m = _metrics(layout, style, cell, annotate)
            grid_w = layout.cols * nk * cell + gaps_w
            grid_h = layout.rows * nq * cell + gaps_h
            width = style.figsize[0] if style.figsize else left + grid_w + right
            # the title (centred over the grid) and a caption may widen a small figure up to MIN_WIDTH;
            # a longer title is shortened with '…' (render), so a long model path never stretches the image
            if not style.figsize:
                title_w = min(1.05 * _text_inches(self._widest_title(), self.TITLE_SIZE)[0], self.MIN_WIDTH)
                width = min(max(width, title_w + 2 * self.PAD), limit)
            caption = self._caption(m)
            if caption and not style.figsize:
                wide = max(_text_inches(line, self.CAPTION_SIZE)[0] for line in caption.splitlines())
                width = min(max(width, min(1.02 * wide, self.MIN_WIDTH) + 2 * self.PAD), limit)
            caption = "\n".join(printable_label(line) for line in caption.splitlines())
            lines = _wrap(caption, self.CAPTION_SIZE, (width - 2 * self.PAD) / 1.05) if caption else []
            if len(lines) == caption_lines:
                break
            caption_lines = len(lines)
        self.m = m
        self.caption_lines = lines
        height = style.figsize[1] if style.figsize else top + grid_h + bottom
        if max(width, height) > limit * 1.0001:
            raise OutputError(
                f"the image would be {width * style.dpi:.0f}x{height * style.dpi:.0f} pixels, over {style.max_pixels}",
                hint="draw fewer tokens (a token window), fewer maps per image, or allow bigger images",
                fix=Fix.SMALLER_IMAGE,
            )
        # the title is centred over the grid when there is room, else over the figure
        centre = left + grid_w / 2
        self.title_room = (width - 2 * self.PAD) / 1.05  # 5% slack for hinting, which path widths do not see
        half = min(_text_inches(self._widest_title(), self.TITLE_SIZE)[0], self.title_room) * 1.05 / 2
        if min(centre, width - centre) - self.PAD < half:
            centre = width / 2
        self.size = (width, height)
        self.grid = (left, bottom, grid_w, grid_h)
        self.title_at = (centre, height - self.PAD)  # the title's top centre

        # --- the parts, in inches from the bottom-left corner
        panel_w, panel_h = nk * m.cell, nq * m.cell
        self.boxes = [
            (left + c * (panel_w + hgap), bottom + (layout.rows - 1 - r) * (panel_h + vgap), panel_w, panel_h)
            for r in range(layout.rows)
            for c in range(layout.cols)
        ]  # (x0, y0, w, h) of each panel, row-major
        q_labels, k_labels = q_all[:: m.step], k_all[:: m.step]
        tick, gap = TICK_PT / 72, (TICK_PT + TICK_PAD_PT) / 72
        texts: list[_Text] = []
        marks: list[tuple[float, float, float, float]] = []  # tick marks (x0, y0, x1, y1)
        for p, (x0, y0, w, h) in enumerate(self.boxes):
            r, c = divmod(p, layout.cols)
            # only the outer panels carry token labels: the inner ones would repeat them
            if r == layout.rows - 1:
                for j, label in zip(range(0, nk, m.step), k_labels):
                    x = x0 + (j + 0.5) * m.cell
                    marks.append((x, y0 - tick, x, y0))
                    texts.append(_Text(label, x, y0 - gap, m.tick_size, "center", "top", 90 if m.rotate_x else 0))
            if c == 0:
                for i, label in zip(range(0, nq, m.step), q_labels):
                    y = y0 + h - (i + 0.5) * m.cell
                    marks.append((x0 - tick, y, x0, y))
                    texts.append(_Text(label, x0 - gap, y, m.tick_size, "right", "center_baseline"))
            if layout.panel_titles and layout.panel_titles[p]:
                texts.append(
                    _Text(
                        layout.panel_titles[p], x0 + w / 2, y0 + h + 3 / 72, self.PANEL_TITLE_SIZE, "center", "baseline"
                    )
                )
        y_ticks_w = _fits(q_labels, m.tick_size)
        for r, name in enumerate(layout.row_titles):
            x0, y0, _, h = self.boxes[r * layout.cols]
            texts.append(_Text(name, x0 - (y_ticks_w + 0.14), y0 + h / 2, self.LABEL_SIZE, "right", "center"))
        caption_at = self.PAD + len(lines) * caption_h
        texts.append(_Text("key", left + grid_w / 2, caption_at, self.LABEL_SIZE, "center", "bottom"))
        texts.append(_Text("query", self.PAD, bottom + grid_h / 2, self.LABEL_SIZE, "left", "center", 90))
        for n, line in enumerate(lines):
            y = self.PAD + (len(lines) - 1 - n) * caption_h
            texts.append(_Text(line, self.PAD, y, self.CAPTION_SIZE, "left", "bottom", grey=0.35))
        self.colorbar = (left + grid_w + 0.18, bottom, 0.16, grid_h)
        cx, cy, cw, ch = self.colorbar
        at = cx + cw + (TICK_PT + CBAR_TICK_PAD_PT) / 72
        for value, label in zip(ticks, tick_labels):
            y = cy + ch * value / style.vmax
            marks.append((cx + cw, y, cx + cw + tick, y))
            texts.append(_Text(label, at, y, self.SCALE_SIZE, "left", "center_baseline"))
        at += scale_w + CBAR_LABEL_PAD_PT / 72
        texts.append(_Text(COLORBAR_LABEL, at, cy + ch / 2, self.SCALE_SIZE, "left", "center", 90))
        self.labels = texts
        self.marks = marks

        # --- the matplotlib figure (SVG, PDF), made on first use
        self.fig: Figure | None = None
        self.images: list[AxesImage] = []
        self.texts: list[list[Text]] | None = None  # value annotations, made for vector formats only
        self._svg: list[str | tuple[str, int]] | None = None  # the SVG split where images differ; [] = none
        self._pdf: PdfTemplate | Literal[False] | None = None  # the PDF template; False: none fits
        self._pdf_chars: frozenset[str] = frozenset()
        # --- the pixel canvas (PNG), made on first use
        self._spare = spare
        self._buffer: np.ndarray | None = None  # flat: the scanlines live at its start
        self._scanlines: np.ndarray | None = None  # (H, 1 + 3W): PNG rows (filter byte, RGB), the image inside
        self._image = np.zeros((0, 0, 3), np.uint8)  # (H, W, 3) view into the scanlines
        self._background = np.zeros((0, 0, 3), np.uint8)  # the title band as drawn without a title
        self._title_rows = (0, 0)
        self._span = (0, 0)  # scanline bytes of the panels' columns, where rows repeat (encode_png)
        self._lut = np.zeros((256, 3), np.uint8)
        self._ink = np.zeros(256)
        self._patches: dict[tuple[str, int], tuple[np.ndarray, int, int]] = {}  # value on colour, anchor
        self._cells: list[tuple[int, int, int, int, tuple[np.ndarray, np.ndarray]]] = []

    def _caption(self, m: _Metrics) -> str:
        """The lines under the figure: the layout's (sentence, notes), and what the size limit did."""
        lines = [self.layout.caption] if self.layout.caption else []
        if m.step > 1:
            nth = {2: "2nd", 3: "3rd"}.get(m.step, f"{m.step}th")
            if self.style.figsize:
                w, h = self.style.figsize
                lines.append(f"every {nth} token labelled, to fit the {w:g}x{h:g}-inch figure")
            else:
                lines.append(f"every {nth} token labelled, to keep the image within {self.style.max_pixels} pixels")
        return "\n".join(lines)

    def _widest_title(self) -> str:
        # titles name model, stack, layer and head: the plan says the longest; else room for a typical one
        return self.layout.widest_title or "all-MiniLM-L6-v2 · encoder · layer 10 · head 10"

    def pixel_size(self) -> tuple[int, int]:
        """(width, height) of a PNG of this sheet (whole pixels, as matplotlib truncates them)."""
        width, height = self.size
        return int(width * self.style.dpi), int(height * self.style.dpi)

    def nbytes(self) -> int:
        """Bytes this sheet keeps for its pixel canvas."""
        return 0 if self._buffer is None else self._buffer.nbytes + self._background.nbytes

    def release(self) -> np.ndarray | None:
        """Let go of the pixel canvas (the sheet paints a new one if used again); its flat buffer, for another."""
        buffer, self._buffer = self._buffer, None
        self._scanlines, self._image, self._cells, self._spare = None, np.zeros((0, 0, 3), np.uint8), [], None
        return buffer

    # ------------------------------------------------------------ raster path

    def _box_pixels(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int, float, float]:
        """(r0, r1, c0, c1) of the pixels whose centres lie in a box given in inches, and its top and
        bottom edge in pixels (rows grow downwards), as Agg fills an axes area."""
        dpi, height = self.style.dpi, self.pixel_size()[1]
        x0, y0, w, h = box
        top, bottom = height - (y0 + h) * dpi, height - y0 * dpi
        r0, r1 = math.ceil(top - 0.5), math.ceil(bottom - 0.5)
        c0, c1 = math.ceil(x0 * dpi - 0.5), math.ceil((x0 + w) * dpi - 0.5)
        return r0, r1, c0, c1, top, bottom

    def _prepare_raster(self) -> None:
        width, height = self.pixel_size()
        dpi = self.style.dpi
        nq, nk = len(self.layout.query), len(self.layout.key)
        self._prepare_colours()
        # PNG scanlines: a filter byte (0 = none) then RGB; everything but cells and title is painted once
        size = height * (1 + width * 3)
        if self._spare is not None and self._spare.size >= size:
            buffer = self._spare  # already in memory: no page faults
        else:
            buffer = np.empty(size, np.uint8)
        self._spare, self._buffer = None, buffer
        scanlines = buffer[:size].reshape(height, 1 + width * 3)
        scanlines.fill(255)
        scanlines[:, 0] = 0
        image = scanlines[:, 1:].reshape(height, width, 3)
        # the colour bar: one colour-map step per band, as matplotlib's colorbar draws it
        r0, r1, c0, c1, top, bottom = self._box_pixels(self.colorbar)
        rise = (bottom - (np.arange(r0, r1) + 0.5)) / (bottom - top)  # 0 at the bottom .. 1 at the top
        image[r0:r1, c0:c1] = self._lut[np.clip((rise * 256).astype(np.intp), 0, 255)][:, None, :]
        # tick marks: lines of TICK_WIDTH_PT snapped to whole pixels, as Agg snaps them
        line = max(1, round(TICK_WIDTH_PT * dpi / 72))
        for x0, y0, x1, y1 in self.marks:
            if x0 == x1:  # a vertical mark
                col = round(x0 * dpi) - (line - 1) // 2
                image[round(height - y1 * dpi) : round(height - y0 * dpi), max(0, col) : col + line] = 0
            else:
                row = round(height - y0 * dpi) - (line - 1) // 2
                image[max(0, row) : row + line, round(x0 * dpi) : round(x1 * dpi)] = 0
        for text in self.labels:
            self._stamp(image, text)
        for box in self.boxes:
            r0, r1, c0, c1, top, bottom = self._box_pixels(box)
            x0, x1 = box[0] * dpi, (box[0] + box[2]) * dpi
            # pixel centre → cell index, as nearest-neighbour imshow maps them
            rows = np.clip(((np.arange(r0, r1) + 0.5 - top) / (bottom - top) * nq).astype(np.intp), 0, nq - 1)
            cols = np.clip(((np.arange(c0, c1) + 0.5 - x0) / (x1 - x0) * nk).astype(np.intp), 0, nk - 1)
            # rows/cols rise monotonically: cells become pixels by two np.repeat (memcpy speed)
            reps = (np.bincount(rows, minlength=nq), np.bincount(cols, minlength=nk))
            self._cells.append((r0, r1, c0, c1, reps))
        # the title band is the only part outside the cells that changes between images
        title_top = height - round(self.title_at[1] * dpi)
        self._title_rows = (0, min(height, title_top + int(dpi * 0.5)))
        self._background = image[: self._title_rows[1]].copy()
        # the panels' columns: rows repeat there for the height of a cell (encode_png)
        self._span = (1 + 3 * min(c[2] for c in self._cells), 1 + 3 * max(c[3] for c in self._cells))
        self._scanlines, self._image = scanlines, image

    def _stamp(self, image: np.ndarray, text: _Text) -> None:
        """Paint one text where matplotlib would draw it (the anchor rounded to a whole pixel)."""
        if not text.text:
            return
        alpha, ax, ay = _stamp(text.text, text.size, text.rotation, text.ha, text.va, self.style.dpi)
        dpi = self.style.dpi
        height, width = image.shape[:2]
        x = round(text.x * dpi) - ax
        y = height - round(text.y * dpi) - ay
        h, w = alpha.shape
        top, left = max(0, y), max(0, x)
        bottom, right = min(height, y + h), min(width, x + w)
        if bottom <= top or right <= left:
            return
        a = alpha[top - y : bottom - y, left - x : right - x, None].astype(np.uint16)  # (h, w, 1) 0..255
        region = image[top:bottom, left:right]
        ink = round(255 * text.grey)
        region[...] = ((region * (255 - a) + ink * a + 127) // 255).astype(np.uint8)

    def _prepare_colours(self) -> None:
        lut = (self.cmap(np.linspace(0.0, 1.0, 256)) * 255).round().astype(np.uint8)  # (256, 4)
        self._lut = lut[:, :3]
        # white values on dark cells, black on light ones (Rec. 709 luminance)
        luminance = lut[:, :3].astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32) / 255
        self._ink = np.where(luminance < 0.5, 255.0, 0.0)

    def _paint(self, image: np.ndarray, weights: np.ndarray, title: str) -> None:
        t0, t1 = self._title_rows
        image[t0:t1] = self._background
        scale = 255.0 / self.vmax
        for panel, (r0, r1, c0, c1, (row_reps, col_reps)) in enumerate(self._cells):
            w = weights[panel]  # (q, k)
            index = np.clip(w * scale + 0.5, 0, 255).astype(np.intp)  # (q, k) → colour index
            wide = np.repeat(self._lut[index], col_reps, axis=1)  # (q, C, 3)
            image[r0:r1, c0:c1] = np.repeat(wide, row_reps, axis=0)  # (R, C, 3)
            self._paint_pair_lines(image, (r0, r1, c0, c1), row_reps, col_reps)
            if self.m.annotate:
                self._annotate(image, index, w, (r0, r1, c0, c1))
        self._stamp(image, _Text(title, *self.title_at, self.TITLE_SIZE, "center", "top"))

    def _paint_pair_lines(
        self, image: np.ndarray, box: tuple[int, int, int, int], row_reps: np.ndarray, col_reps: np.ndarray
    ) -> None:
        """The A|B lines of a pair over the painted cells."""
        r0, r1, c0, c1 = box
        half = max(1, round(PAIR_LINE_PT * self.style.dpi / 72 / 2))
        if self.layout.k_cut is not None:
            x = c0 + int(col_reps[: self.layout.k_cut].sum())
            image[r0:r1, max(c0, x - half) : min(c1, x + half)] = 255
        if self.layout.q_cut is not None:
            y = r0 + int(row_reps[: self.layout.q_cut].sum())
            image[max(r0, y - half) : min(r1, y + half), c0:c1] = 255

    def _annotate(self, image: np.ndarray, index: np.ndarray, w: np.ndarray, box: tuple[int, int, int, int]) -> None:
        r0, r1, c0, c1 = box
        nq, nk = w.shape
        ch, cw = (r1 - r0) / nq, (c1 - c0) / nk
        size, dpi = self._value_size(), self.style.dpi
        for i in range(nq):
            for j in range(nk):
                key = (_value_text(float(w[i, j])), int(index[i, j]))
                found = self._patches.get(key)
                if found is None:
                    # a cell is one flat colour, so text-on-colour is cached per (text, colour)
                    alpha, ax, ay = _stamp(key[0], size, 0, "center", "center", dpi)
                    mask = alpha[..., None] / 255.0  # (h, w, 1)
                    patch = (self._lut[key[1]] * (1.0 - mask) + self._ink[key[1]] * mask + 0.5).astype(np.uint8)
                    found = self._patches[key] = (patch, ax, ay)
                patch, ax, ay = found
                h, wd = patch.shape[:2]
                y = round(r0 + (i + 0.5) * ch) - ay  # the text centred on the cell, as matplotlib aligns it
                x = round(c0 + (j + 0.5) * cw) - ax
                if h == 0 or y < r0 or x < c0 or y + h > r1 or x + wd > c1:
                    continue  # never spill into a neighbour cell
                image[y : y + h, x : x + wd] = patch

    def _value_size(self) -> float:
        return 7.5 if self.m.cell >= 0.4 else 6.0

    def render_png(self, weights: np.ndarray, title: str) -> bytes:
        """The PNG bytes of one image: weights (panels, q, k), and its title."""
        if self._scanlines is None:
            self._prepare_raster()
            assert self._scanlines is not None
        self._paint(self._image, weights, printable_label(title))
        height, width = self._image.shape[:2]
        return encode_png(self._scanlines, width, height, self.style.dpi, span=self._span)

    # ------------------------------------------------------------ vector path

    def _figure(self) -> Figure:
        """The matplotlib figure of this sheet: one axes holds every panel's image, texts are plain texts."""
        if self.fig is not None:
            return self.fig
        from matplotlib.collections import LineCollection
        from matplotlib.image import AxesImage

        width, height = self.size
        left, bottom, grid_w, grid_h = self.grid
        nq, nk = len(self.layout.query), len(self.layout.key)
        fig = Figure(figsize=(width, height), dpi=self.style.dpi)
        FigureCanvasAgg(fig)
        fig.suppressComposite = True  # panels stay one image each (matplotlib would resample them into one)
        ax = fig.add_axes((left / width, bottom / height, grid_w / width, grid_h / height))
        ax.set_axis_off()
        ax.set_xlim(0, grid_w)  # data units: inches from the grid's top-left corner
        ax.set_ylim(grid_h, 0)
        top = bottom + grid_h
        pair: list[list[tuple[float, float]]] = []
        for x0, y0, w, h in self.boxes:
            gx, gy = x0 - left, top - (y0 + h)
            image = AxesImage(
                ax,
                cmap=self.cmap,
                norm=self.norm,
                interpolation="nearest",
                origin="upper",
                extent=(gx, gx + w, gy + h, gy),
            )
            image.set_data(np.zeros((nq, nk), np.float32))
            ax.add_image(image)
            self.images.append(image)
            if self.layout.k_cut is not None:  # sentence A | sentence B
                x = gx + self.layout.k_cut * self.m.cell
                pair.append([(x, gy), (x, gy + h)])
            if self.layout.q_cut is not None:
                y = gy + self.layout.q_cut * self.m.cell
                pair.append([(gx, y), (gx + w, y)])
        if pair:
            ax.add_collection(LineCollection(pair, colors=PAIR_LINE, linewidths=PAIR_LINE_PT), autolim=False)
        marks = [[(x0, y0), (x1, y1)] for x0, y0, x1, y1 in self.marks]
        fig.add_artist(LineCollection(marks, colors="black", linewidths=TICK_WIDTH_PT, transform=fig.dpi_scale_trans))
        cx, cy, cw, ch = self.colorbar
        # the colour bar: one small image of the colour map's 256 steps (matplotlib's colorbar rasterises
        # its mesh through a canvas the size of the figure in SVG and PDF); ticks and labels are the sheet's
        cax = fig.add_axes((cx / width, cy / height, cw / width, ch / height))
        cax.set_axis_off()
        steps = (np.arange(255, -1, -1, dtype=np.float32)[:, None] + 0.5) * (self.vmax / 256)  # (256, 1) top first
        cax.imshow(steps, cmap=self.cmap, norm=self.norm, interpolation="none", aspect="auto", extent=(0, 1, 0, 1))
        for t in self.labels:
            fig.text(
                t.x / width,
                t.y / height,
                t.text,
                fontproperties=_props(t.size),
                ha=t.ha,
                va=t.va,
                rotation=t.rotation,
                color=str(t.grey),
            )
        x, y = self.title_at
        self.title: Text = fig.text(x / width, y / height, "", ha="center", va="top", fontsize=self.TITLE_SIZE)
        self.grid_axes = ax
        self.fig = fig
        return fig

    def render_vector(self, weights: np.ndarray, title: str) -> bytes:
        """SVG or PDF bytes through matplotlib's own artists (text stays text-sharp)."""
        self._set_vector(weights, title)
        return self._save_vector()

    def _set_vector(self, weights: np.ndarray, title: str) -> None:
        """The figure's cells, values and title set for one image."""
        self._figure()
        nq, nk = len(self.layout.query), len(self.layout.key)
        if self.texts is None:
            for image in self.images:
                image.set_interpolation("none")  # the cells go in as one small image each, scaled without blur
            self.texts = []
            left, bottom, _, grid_h = self.grid
            cell = self.m.cell
            for x0, y0, _, h in self.boxes:
                gx, gy = x0 - left, bottom + grid_h - (y0 + h)
                if self.m.annotate:
                    texts = [
                        self.grid_axes.text(
                            gx + (j + 0.5) * cell,
                            gy + (i + 0.5) * cell,
                            "",
                            ha="center",
                            va="center",
                            fontsize=self._value_size(),
                        )
                        for i in range(nq)
                        for j in range(nk)
                    ]
                else:
                    texts = []
                self.texts.append(texts)
        for panel, (image, texts) in enumerate(zip(self.images, self.texts)):
            w = weights[panel]
            image.set_data(w)
            for t, value in zip(texts, w.reshape(-1).tolist()):
                t.set_text(_value_text(value))
                t.set_color(_contrast(self.cmap, float(self.norm(value))))
        self.title.set_text(title)

    def _save_vector(self) -> bytes:
        fig = self._figure()
        out = io.BytesIO()
        metadata = {"Date": None} if self.style.fmt == "svg" else {"CreationDate": None}
        families = list(_label_families())
        cff = _cff_chars() if self.style.fmt == "pdf" else frozenset()
        for text in fig.findobj(Text):
            text.set_fontfamily(families)  # an SVG names them all, for its viewers
            # glyphs of CFF fonts go in a PDF as outlines: matplotlib would embed those fonts as broken Type 42
            text.set_path_effects([Normal()] if any(ord(ch) in cff for ch in text.get_text()) else [])
        # text stays text: TrueType (Type 42) fonts in a PDF, <text> elements in an SVG; for our figures only
        with rc_context({"pdf.fonttype": 42, "svg.fonttype": "none", "font.family": families}):
            fig.savefig(out, format=self.style.fmt, dpi=self.style.dpi, metadata=metadata)
        return out.getvalue()

    # ------------------------------------------------------------ PDF path

    def render_pdf(self, weights: np.ndarray, title: str) -> bytes:
        """PDF bytes from a template of this sheet (render/pdf_template.py); a figure the template
        cannot describe, or a title with characters it lacks, is drawn whole."""
        if self._pdf is None:
            self._pdf = self._pdf_template(weights) or False
        if not self._pdf or not self._pdf.can_set(title, self._pdf_chars):
            return self.render_vector(weights, title)
        index = np.clip(weights * (255.0 / self.vmax) + 0.5, 0, 255).astype(np.intp)  # (panels, q, k)
        cells = [self._lut[panel] for panel in index]  # (q, k, 3) each
        if self.m.annotate:
            values = [_value_text(v) for v in weights.reshape(-1).tolist()]
            inks = [bool(self._ink[i]) for i in index.reshape(-1).tolist()]
        else:
            values, inks = [], []
        return self._pdf.fill(cells, values, inks, title)

    def _pdf_template(self, weights: np.ndarray) -> PdfTemplate | None:
        from .pdf_template import CHARSET, SPARE_INK, TITLE_INK, VALUE_INK, PdfTemplate

        panels, nq, nk = weights.shape
        title = _elide(self._widest_title(), self.TITLE_SIZE, self.title_room)
        chars = set(title) | set(CHARSET) | set("".join(_value_text(i / 100) for i in range(101)))
        if not {ord(ch) for ch in chars} <= _charmap("DejaVu Sans"):
            return None  # a title in another font: the template would switch fonts mid-line
        self._prepare_colours()
        self._set_vector(weights, title)  # makes the value texts
        assert self.texts is not None
        for texts in self.texts:
            for text in texts:
                text.set_text(".00")
                text.set_color(VALUE_INK)
        self.title.set_color(TITLE_INK)
        # a line with every character an image may need puts them all in the font subset (cut from each page)
        spare = self._figure().text(0, 0, "".join(sorted(chars)), color=SPARE_INK, fontsize=1)
        try:
            pdf = self._save_vector()
        finally:
            spare.remove()
            self.title.set_color("black")
        count = panels * nq * nk if self.m.annotate else 0
        try:
            template = PdfTemplate(pdf, panels, (nq, nk), count, _text_points, ".00", title)
        except ValueError:
            return None
        self._pdf_chars = frozenset(chars)
        return template

    # ------------------------------------------------------------ SVG path

    _SVG_INK = "#010203"  # marks the value texts in the template
    _SVG_TITLE = "lplplpl"  # the metrics matplotlib gives any line without taller glyphs

    def render_svg(self, weights: np.ndarray, title: str) -> bytes:
        """SVG bytes: matplotlib draws the figure once as a template; each image fills in what differs.

        What differs is the cells (one PNG per panel, scaled pixelated), the values and their colours,
        and the title. The template is checked when made; a figure it cannot describe is drawn whole.
        """
        if self._svg is None:
            self._svg = self._svg_template(weights)
        if not self._svg or any(ord(ch) > 0x2FFF for ch in title):  # tall glyphs (CJK) shift the title: draw it
            return self.render_vector(weights, title)
        scale = 255.0 / self.vmax
        index = np.clip(weights * scale + 0.5, 0, 255).astype(np.intp)  # (panels, q, k) → colour index
        values = weights.reshape(-1).tolist()
        inks = index.reshape(-1)
        out = []
        for part in self._svg:
            if isinstance(part, str):
                out.append(part)
            elif part[0] == "cells":
                rgb = self._lut[index[part[1]]]  # (q, k, 3)
                scanlines = np.concatenate([np.zeros((rgb.shape[0], 1), np.uint8), rgb.reshape(rgb.shape[0], -1)], 1)
                png = encode_png(scanlines, rgb.shape[1], rgb.shape[0], self.style.dpi)
                out.append(base64.b64encode(png).decode("ascii"))
            elif part[0] == "ink":
                out.append("#ffffff" if self._ink[inks[part[1]]] else "#000000")
            elif part[0] == "value":
                out.append(_value_text(values[part[1]]))
            else:
                out.append(escape(title))
        return "".join(out).encode("utf-8")

    def _svg_template(self, weights: np.ndarray) -> list[str | tuple[str, int]]:
        panels, nq, nk = weights.shape
        self._prepare_colours()
        self._set_vector(weights, self._SVG_TITLE)  # makes the value texts
        assert self.texts is not None
        count = panels * nq * nk if self.m.annotate else 0
        width = len(str(count))
        for panel, texts in enumerate(self.texts):
            for i, text in enumerate(texts):
                text.set_text(f"9{panel * nq * nk + i:0{width}d}")  # digits: the metrics of a value
                text.set_color(self._SVG_INK)
        svg = self._save_vector().decode("utf-8")
        pattern = re.compile(
            r'(?P<cells><image xlink:href="data:image/png;base64,\s*)[^"]*'
            rf'|(?P<ink>fill: ){self._SVG_INK}(?P<tail>"[^>]*>)9(?P<value>\d{{{width}}})</text>'
            rf"|>(?P<title>{self._SVG_TITLE})<"
        )
        parts: list[str | tuple[str, int]] = []
        at, cells, values, titles = 0, 0, [], 0
        for match in pattern.finditer(svg):
            if match["cells"] is not None:
                if cells == panels:
                    parts.append(svg[at : match.end()])  # the colour bar: it stays
                    at = match.end()
                    continue
                parts += [svg[at : match.end("cells")], ("cells", cells)]
                cells += 1
            elif match["ink"] is not None:
                k = int(match["value"])
                parts += [svg[at : match.end("ink")], ("ink", k), match["tail"], ("value", k), "</text>"]
                values.append(k)
            else:
                parts += [svg[at : match.start("title") - 1], ">", ("title", 0), "<"]
                titles += 1
            at = match.end()
        parts.append(svg[at:])
        if cells != panels or sorted(values) != list(range(count)) or titles != 1:
            return []  # the template does not describe this figure: draw each image whole
        return parts

    def render(self, weights: np.ndarray, title: str) -> bytes:
        """One image's bytes in the style's format; a title too wide for the figure is shortened with '…'."""
        nq, nk = len(self.layout.query), len(self.layout.key)
        if weights.shape != (self.layout.panels, nq, nk):
            raise ValueError(f"weights {weights.shape} do not fit a {self.layout.panels}x{nq}x{nk} sheet")
        title = _elide(title, self.TITLE_SIZE, self.title_room)
        if self.style.fmt == "png":
            return self.render_png(weights, title)
        if self.style.fmt == "svg":
            return self.render_svg(weights, title)
        return self.render_pdf(weights, title)


def encode_png(scanlines: np.ndarray, width: int, height: int, dpi: int, span: tuple[int, int] | None = None) -> bytes:
    """A PNG from ready RGB scanlines (filter byte 0 each, left as 0 here), zlib level 1.

    Filter "none" with a fast zlib level is ~2.5x faster than Pillow's encoder on heatmaps
    (large flat areas compress well anyway). With `span` (start, end) in scanline bytes, a
    row whose bytes in the span repeat the row above goes as an "Up" row (its difference to
    the row above): the bytes outside the span through zlib, the zeros inside it as a ready-made
    deflate run. A heatmap repeats each cell row for many pixel rows, so most of a large one
    never passes through zlib.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if span is None or height < 2 or not 1 <= span[0] < span[1] <= scanlines.shape[1]:
        idat = zlib.compress(scanlines.tobytes(), PNG_COMPRESS_LEVEL)
    else:
        idat = _deflate_rows(scanlines, *span)
    ppm = round(dpi / 0.0254)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),  # 8-bit RGB
            chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)),  # the dpi, for papers
            chunk(b"IDAT", idat),
            chunk(b"IEND", b""),
        )
    )


_ADLER = 65521  # the modulus of zlib's Adler-32 checksum
_UP = 2  # PNG filter type "Up": each byte minus the byte above it
_SHORT_SPAN = 8192  # bytes: below this an Up row's span goes through zlib (measured: ~1 ns a byte vs ~5 µs a flush)
_PLAIN, _BLANK, _INKED = 0, 1, 2  # rows sent as they are; repeating the row above; repeating it in the span


def _deflate_rows(rows: np.ndarray, start: int, end: int) -> bytes:
    """The zlib stream of PNG scanlines (H, 1 + 3W); rows whose bytes [start, end) repeat the row
    above go as Up rows.

    One deflate stream is made of pieces: zlib's compressor for rows that differ and for the bytes
    outside the span of rows that repeat, and cached deflate runs of zeros for the span. Each piece
    ends on a full flush (byte-aligned, no reference to earlier data), so the pieces join into one
    valid stream; the Adler-32 checksum of zeros is computed in closed form.
    """
    height, length = rows.shape
    same = np.zeros(height, bool)  # row i repeats row i - 1 in the span
    for a in range(1, height, 512):  # in blocks: the comparison's temporary stays small
        b = min(height, a + 512)
        same[a:b] = (rows[a:b, start:end] == rows[a - 1 : b - 1, start:end]).all(axis=1)
    # the Up-filtered bytes outside the span, for every row: filter byte and head, then tail
    heads = np.empty((height, start), np.uint8)
    heads[:, 0] = _UP
    heads[0, 1:] = 0
    np.subtract(rows[1:, 1:start], rows[:-1, 1:start], out=heads[1:, 1:])
    tails = np.zeros((height, length - end), np.uint8)
    np.subtract(rows[1:, end:], rows[:-1, end:], out=tails[1:])
    inked = heads[:, 1:].any(axis=1) | tails.any(axis=1)
    kinds = np.where(same, np.where(inked, _INKED, _BLANK), _PLAIN)
    comp = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, -15)  # raw deflate: header and checksum are ours
    parts: list[bytes] = []
    adler = 1
    pending = False  # the compressor holds data that must be flushed before a ready-made piece
    starts = np.flatnonzero(np.diff(kinds, prepend=-1)).tolist()  # where runs of one kind begin
    for a, b in zip(starts, [*starts[1:], height]):
        kind = int(kinds[a])
        if kind == _PLAIN:  # filter byte 0: the rows as they are
            block = rows[a:b].data
            parts.append(comp.compress(block))
            adler = zlib.adler32(block, adler)
            pending = True
            continue
        if kind == _INKED and end - start < _SHORT_SPAN:  # zlib runs through a short span faster than a flush
            block = np.subtract(rows[a:b], rows[a - 1 : b - 1])
            block[:, 0] = _UP
            parts.append(comp.compress(block.data))
            adler = zlib.adler32(block.data, adler)
            pending = True
            continue
        if pending:  # a ready-made piece follows
            parts.append(comp.flush(zlib.Z_FULL_FLUSH))
            pending = False
        if kind == _BLANK:  # b - a rows of the filter byte and zeros: one ready-made piece
            parts.append(_zero_rows(b - a, length))
            adler = _adler_up_rows(adler, b - a, length - 1)
            continue
        zeros = _zeros(end - start)
        for head, tail in zip(heads[a:b], tails[a:b]):
            parts += (comp.compress(head.data), comp.flush(zlib.Z_FULL_FLUSH), zeros, comp.compress(tail.data))
            adler = zlib.adler32(tail.data, _adler_zeros(zlib.adler32(head.data, adler), end - start))
        pending = True
    parts.append(comp.flush())
    return b"\x78\x01" + b"".join(parts) + struct.pack(">I", adler)  # zlib header: deflate, 32K window, level 1


def _adler_zeros(adler: int, n: int) -> int:
    """Adler-32 after n more zero bytes: the sum stays, the sum of sums grows by n times it."""
    a = adler & 0xFFFF
    b = ((adler >> 16) + n * a) % _ADLER
    return (b << 16) | a


def _adler_up_rows(adler: int, k: int, n: int) -> int:
    """Adler-32 after k rows of the Up filter byte and n zeros: row i adds 2 to the sum, and
    (n + 1) times the new sum to the sum of sums."""
    a0, b0 = adler & 0xFFFF, adler >> 16
    a = (a0 + _UP * k) % _ADLER
    b = (b0 + (n + 1) * (k * a0 + k * (k + 1))) % _ADLER  # Σ_i (a0 + 2i) = k·a0 + k(k+1)
    return (b << 16) | a


@lru_cache(maxsize=64)
def _zeros(n: int) -> bytes:
    """n zero bytes as raw deflate ending on a full flush: a piece that joins any such stream."""
    comp = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return comp.compress(bytes(n)) + comp.flush(zlib.Z_FULL_FLUSH)


@lru_cache(maxsize=256)
def _zero_rows(k: int, length: int) -> bytes:
    """k scanlines of `length` bytes that repeat the row above (filter Up, all zeros), as a deflate piece."""
    comp = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    row = bytes([_UP]) + bytes(length - 1)
    return comp.compress(row * k) + comp.flush(zlib.Z_FULL_FLUSH)


def _contrast(cmap: Colormap, x: float) -> str:
    r, g, b, _ = cmap(x)
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def _value_text(value: float) -> str:
    """Two decimals without the leading zero (".42"), the usual way in attention figures."""
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


@lru_cache(maxsize=4096)
def _stamp(text: str, size: float, rotation: int, ha: str, va: str, dpi: int) -> tuple[np.ndarray, int, int]:
    """One text as matplotlib's Agg draws it, anchored at a whole pixel: its coverage (h, w) as uint8
    and the anchor's column and row in it. Each distinct label is drawn once and stamped everywhere."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.transforms import IdentityTransform

    t = Text(0, 0, text, fontproperties=_props(size), rotation=rotation, ha=ha, va=va)
    t.set_figure(_scratch_figure(dpi))
    t.set_transform(IdentityTransform())  # the position is in pixels
    box = t.get_window_extent(RendererAgg(1, 1, dpi))  # around the anchor (0, 0), y up
    pad = 2  # antialiasing may reach past the layout box
    x0, y0 = math.floor(box.x0) - pad, math.floor(box.y0) - pad
    w, h = math.ceil(box.x1) + pad - x0, math.ceil(box.y1) + pad - y0
    renderer = RendererAgg(w, h, dpi)  # transparent: the alpha channel is the text's coverage
    t.set_position((-x0, -y0))
    t.draw(renderer)
    alpha = np.asarray(renderer.buffer_rgba())[..., 3]  # (h, w) 0..255
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if not len(rows):
        return np.zeros((0, 0), np.uint8), 0, 0
    top, left = int(rows[0]), int(cols[0])
    return alpha[top : rows[-1] + 1, left : cols[-1] + 1].copy(), -x0 - left, h + y0 - top  # cut to the ink


@lru_cache(maxsize=8)
def _scratch_figure(dpi: int) -> Figure:
    """A figure that lends texts its dpi while they are measured and drawn alone."""
    return Figure(dpi=dpi)


# ---------------------------------------------------------------- a warm cache of sheets


class Painter:
    """Keeps recent sheets warm (one per layout and style) and lets the rest go.

    A sheet holds its pixel canvas between images; a grid of many panels is a large one
    (a --view model canvas at 60 tokens is ~120 MB), so beyond `keep` sheets the oldest
    also go while the canvases together hold more than `budget` bytes.
    """

    def __init__(self, keep: int = 4, budget: int = 256 << 20) -> None:
        self.keep, self.budget = keep, budget
        self._sheets: OrderedDict[tuple[Layout, Style], Sheet] = OrderedDict()
        self._spare: np.ndarray | None = None  # the canvas of the last sheet let go, for the next new one

    def sheet(self, layout: Layout, style: Style) -> Sheet:
        key = (layout, style)
        sheet = self._sheets.get(key)
        if sheet is None:
            spare, self._spare = (self._spare, None) if style.fmt == "png" else (None, self._spare)
            sheet = self._sheets[key] = Sheet(layout, style, spare=spare)
        self._sheets.move_to_end(key)
        return sheet

    def render(self, layout: Layout, style: Style, weights: np.ndarray, title: str) -> bytes:
        data = self.sheet(layout, style).render(weights, title)
        while len(self._sheets) > 1 and (
            len(self._sheets) > self.keep or sum(s.nbytes() for s in self._sheets.values()) > self.budget
        ):
            _, old = self._sheets.popitem(last=False)  # the least recently used; never the one just drawn
            buffer = old.release()
            if (
                buffer is not None
                and buffer.nbytes <= self.budget
                and (self._spare is None or buffer.nbytes > self._spare.nbytes)
            ):
                self._spare = buffer
        return data
