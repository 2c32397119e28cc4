"""Heatmap images (PNG, SVG, PDF): one warm matplotlib figure per layout, redrawn fast.

A *sheet* is one figure layout: a grid of heatmap panels with token labels, panel
titles, a colourbar and a title line. Everything but the cells, the cell values and
the title is the same for every head of a sentence, so a sheet draws that once and
keeps it as a pixel background. Each PNG then costs a copy of the background, the
cells painted as an image array, cached glyph bitmaps for the values, one title and
a fast PNG encode. SVG and PDF go through matplotlib's own artists on the same figure.
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
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, fontManager, get_font
from matplotlib.patheffects import Normal
from matplotlib.text import Text
from matplotlib.textpath import TextToPath

from ..errors import Fix, OutputError, UsageError
from ..spec import ImageFormat

if TYPE_CHECKING:
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
    """The token with characters no installed font can draw written as U+XXXX (no empty boxes)."""
    known = _known_chars()
    out = []
    for ch in token:
        if ord(ch) in known or unicodedata.category(ch).startswith("Z"):
            out.append(ch)
        else:
            out.append(f"U+{ord(ch):04X}")
    return "".join(out)


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
        return (0.42 if annotate else 0.26 if n <= 40 else 0.16), annotate
    return (0.42 if annotate else 0.2 if n <= 16 else 0.12), annotate


def _metrics(layout: Layout, style: Style, cell: float, annotate: bool) -> _Metrics:
    """Label size, rotation and thinning for cells of `cell` inches."""
    tick = style.fontsize or (9.0 if cell >= 0.26 else 8.0 if cell >= 0.2 else 6.5)
    line = _text_inches("Ag", tick)[1]
    step = max(1, math.ceil(line * 1.15 / cell))  # labels need a line each: thin them out when cells are smaller
    labels = tuple(printable_label(t) for t in layout.key[::step])
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
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if _text_inches(candidate, size)[0] <= room:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _text_inches(word, size)[0] > room and len(word) > 1:
                cut = next(i for i in range(len(word) - 1, 0, -1) if _text_inches(word[:i], size)[0] <= room or i == 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _scale_ticks(vmax: float) -> tuple[list[float], list[str]]:
    """Colourbar ticks from 0 to vmax, and their labels ('0', '0.25', '1', '3e-05')."""
    from matplotlib.ticker import MaxNLocator

    ticks = [float(t) for t in MaxNLocator(5).tick_values(0.0, vmax) if -1e-12 <= t <= vmax * (1 + 1e-9)]
    return ticks, [f"{t:.3g}" for t in ticks]


class Sheet:
    """One figure layout, drawn once; `render` makes each image of it."""

    TITLE_SIZE = 11.0
    LABEL_SIZE = 9.0
    PANEL_TITLE_SIZE = 8.0
    CAPTION_SIZE = 8.0
    PAD = 0.12  # inches at the figure edges
    MIN_WIDTH = 5.0  # inches a caption may widen a small figure to, before it wraps

    def __init__(self, layout: Layout, style: Style) -> None:
        if style.vmax is None:
            raise ValueError("a sheet needs a resolved colour scale (Style.scaled_to)")
        self.layout, self.style = layout, style
        self.vmax: float = style.vmax
        self.cmap: Colormap = colormaps[style.cmap]
        self.norm = Normalize(0.0, style.vmax)
        q_all = tuple(printable_label(t) for t in layout.query)
        k_all = tuple(printable_label(t) for t in layout.key)
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
        right = 0.18 + 0.16 + _fits(tuple(tick_labels), 8) + 0.1 + _text_inches("Ag", 8)[1] + 0.12 + self.PAD
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
            # the title (centred over the grid) and a caption may widen a figure, within the limit
            if not style.figsize:
                title_w = 1.05 * _text_inches(self._widest_title(), self.TITLE_SIZE)[0] + 2 * self.PAD
                width = min(max(width, title_w), limit)
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
        q_labels, k_labels = q_all[:: m.step], k_all[:: m.step]
        panel_w, panel_h = nk * m.cell, nq * m.cell
        y_ticks_w = _fits(q_labels, m.tick_size)

        # --- the figure, laid out exactly (no tight_layout: we know every size)
        fig = Figure(figsize=(width, height), dpi=style.dpi)
        self.fig, self.canvas = fig, FigureCanvasAgg(fig)
        self.axes: list[Any] = []
        self.images: list[Any] = []
        for r in range(layout.rows):
            for c in range(layout.cols):
                x0 = left + c * (panel_w + hgap)
                y0 = bottom + (layout.rows - 1 - r) * (panel_h + vgap)
                ax = fig.add_axes((x0 / width, y0 / height, panel_w / width, panel_h / height))
                image = ax.imshow(
                    np.zeros((nq, nk), np.float32),
                    cmap=self.cmap,
                    norm=self.norm,
                    interpolation="nearest",
                    aspect="auto",
                    extent=(-0.5, nk - 0.5, nq - 0.5, -0.5),
                )
                for spine in ax.spines.values():
                    spine.set_visible(False)  # cells are painted over the axes area; a frame would be cut
                if layout.k_cut is not None:  # sentence A | sentence B
                    ax.axvline(layout.k_cut - 0.5, color=PAIR_LINE, linewidth=PAIR_LINE_PT)
                if layout.q_cut is not None:
                    ax.axhline(layout.q_cut - 0.5, color=PAIR_LINE, linewidth=PAIR_LINE_PT)
                ax.set_xlim(-0.5, nk - 0.5)
                ax.set_ylim(nq - 0.5, -0.5)
                ax.tick_params(length=2, pad=1.5, labelsize=m.tick_size)
                # only the outer panels carry ticks: thousands of inner ticks cost seconds and show nothing
                if r == layout.rows - 1:
                    ax.set_xticks(range(0, nk, m.step))
                    ax.set_xticklabels(k_labels, rotation=90 if m.rotate_x else 0, fontproperties=_props(m.tick_size))
                else:
                    ax.set_xticks([])
                if c == 0:
                    ax.set_yticks(range(0, nq, m.step))
                    ax.set_yticklabels(q_labels, fontproperties=_props(m.tick_size))
                else:
                    ax.set_yticks([])
                i = r * layout.cols + c
                if layout.panel_titles and layout.panel_titles[i]:
                    ax.set_title(layout.panel_titles[i], fontsize=self.PANEL_TITLE_SIZE, pad=3)
                self.axes.append(ax)
                self.images.append(image)
        for r, name in enumerate(layout.row_titles):
            ax = self.axes[r * layout.cols]
            ax.text(
                -(y_ticks_w + 0.14) / panel_w,
                0.5,
                name,
                transform=ax.transAxes,
                ha="right",
                va="center",
                fontsize=self.LABEL_SIZE,
            )
        grid_left, grid_bottom = left / width, bottom / height
        grid_top = (bottom + grid_h) / height
        fig.text(
            (left + grid_w / 2) / width,
            (self.PAD + len(lines) * caption_h) / height,
            "key",
            ha="center",
            va="bottom",
            fontsize=self.LABEL_SIZE,
        )
        fig.text(self.PAD / width, (bottom + grid_h / 2) / height, "query", rotation=90, va="center", ha="left")
        if lines:
            fig.text(
                self.PAD / width,
                self.PAD / height,
                "\n".join(lines),
                fontproperties=_props(self.CAPTION_SIZE),
                color="0.35",
                linespacing=1.3,
                va="bottom",
            )
        cbar_h = min(grid_h, max(1.0, grid_h))
        cax = fig.add_axes(((left + grid_w + 0.18) / width, grid_bottom, 0.16 / width, cbar_h / height))
        colorbar = fig.colorbar(ScalarMappable(self.norm, self.cmap), cax=cax)
        colorbar.set_ticks(ticks, labels=tick_labels)
        colorbar.ax.tick_params(labelsize=8, length=2)
        colorbar.outline.set_visible(False)
        colorbar.set_label(COLORBAR_LABEL, fontsize=8, labelpad=4)
        self.title: Text = fig.text(
            centre / width, 1 - self.PAD / height, "", ha="center", va="top", fontsize=self.TITLE_SIZE
        )
        self.grid_box = (grid_left, grid_bottom, grid_top)
        self.texts: list[list[Text]] | None = None  # value annotations, made for vector formats only
        self._svg: list[str | tuple[str, int]] | None = None  # the SVG split where images differ; [] = none
        self._pdf: PdfTemplate | Literal[False] | None = None  # the PDF template; False: none fits
        self._pdf_chars: frozenset[str] = frozenset()
        self._background: np.ndarray | None = None  # (H, W, 3) everything that never changes
        self._scanlines = np.zeros((0, 0), np.uint8)  # (H, 1 + 3W): PNG rows, the image lives inside
        self._image = np.zeros((0, 0, 3), np.uint8)  # (H, W, 3) view into the scanlines
        self._lut = np.zeros((256, 3), np.uint8)
        self._ink = np.zeros(256)
        self._patches: dict[tuple[str, int], np.ndarray] = {}
        self._title_anchor = (0, 0)
        self._title_rows = (0, 0)
        self._cells: list[tuple[int, int, int, int, tuple[np.ndarray, np.ndarray]]] = []

    def _caption(self, m: _Metrics) -> str:
        """The lines under the figure: the layout's (sentence, notes), and what the size limit did."""
        lines = [self.layout.caption] if self.layout.caption else []
        if m.step > 1:
            nth = {2: "2nd", 3: "3rd"}.get(m.step, f"{m.step}th")
            lines.append(f"every {nth} token labelled, to keep the image within {self.style.max_pixels} pixels")
        return "\n".join(lines)

    def _widest_title(self) -> str:
        # titles name model, stack, layer and head: the plan says the longest; else room for a typical one
        return self.layout.widest_title or "all-MiniLM-L6-v2 · encoder · layer 10 · head 10"

    # ------------------------------------------------------------ raster path

    def _prepare_raster(self) -> None:
        for image in self.images:
            image.set_visible(False)
        self.canvas.draw()
        self._background = np.asarray(self.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)
        height = self._background.shape[0]
        nq, nk = len(self.layout.query), len(self.layout.key)
        for ax in self.axes:
            x0, y0, x1, y1 = ax.get_window_extent().extents
            top, bottom = height - y1, height - y0
            r0, r1 = math.ceil(top - 0.5), math.ceil(bottom - 0.5)
            c0, c1 = math.ceil(x0 - 0.5), math.ceil(x1 - 0.5)
            # pixel centre → cell index, as nearest-neighbour imshow maps them
            rows = np.clip(((np.arange(r0, r1) + 0.5 - top) / (bottom - top) * nq).astype(np.intp), 0, nq - 1)
            cols = np.clip(((np.arange(c0, c1) + 0.5 - x0) / (x1 - x0) * nk).astype(np.intp), 0, nk - 1)
            # rows/cols rise monotonically: cells become pixels by two np.repeat (memcpy speed)
            reps = (np.bincount(rows, minlength=nq), np.bincount(cols, minlength=nk))
            self._cells.append((r0, r1, c0, c1, reps))
        self._prepare_colours()
        # the title band is the only part outside the cells that changes between images
        x_mid, y_top = self.title.get_position()
        self._title_anchor = (int(round(x_mid * self._background.shape[1])), int(round((1 - y_top) * height)))
        self._title_rows = (0, self._title_anchor[1] + int(self.style.dpi * 0.5))

    def _prepare_colours(self) -> None:
        lut = (self.cmap(np.linspace(0.0, 1.0, 256)) * 255).round().astype(np.uint8)  # (256, 4)
        self._lut = lut[:, :3]
        # white values on dark cells, black on light ones (Rec. 709 luminance)
        luminance = lut[:, :3].astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32) / 255
        self._ink = np.where(luminance < 0.5, 255.0, 0.0)

    def _paint(self, image: np.ndarray, weights: np.ndarray, title: str) -> None:
        assert self._background is not None
        t0, t1 = self._title_rows
        image[t0:t1] = self._background[t0:t1]
        scale = 255.0 / self.vmax
        for panel, (r0, r1, c0, c1, (row_reps, col_reps)) in enumerate(self._cells):
            w = weights[panel]  # (q, k)
            index = np.clip(w * scale + 0.5, 0, 255).astype(np.intp)  # (q, k) → colour index
            wide = np.repeat(self._lut[index], col_reps, axis=1)  # (q, C, 3)
            image[r0:r1, c0:c1] = np.repeat(wide, row_reps, axis=0)  # (R, C, 3)
            self._paint_pair_lines(image, (r0, r1, c0, c1), row_reps, col_reps)
            if self.m.annotate:
                self._annotate(image, index, w, (r0, r1, c0, c1))
        mask = _glyphs(title, self.TITLE_SIZE, self.style.dpi)
        h, w = mask.shape
        x, y = self._title_anchor[0] - w // 2, self._title_anchor[1]
        x, y = max(0, x), max(0, y)
        region = image[y : y + h, x : x + w]
        a = mask[: region.shape[0], : region.shape[1], None]
        region[...] = (region * (1.0 - a) + 0.5).astype(np.uint8)  # black text on the white band

    def _paint_pair_lines(
        self, image: np.ndarray, box: tuple[int, int, int, int], row_reps: np.ndarray, col_reps: np.ndarray
    ) -> None:
        """The A|B lines of a pair over the painted cells (the background's lines lie under them)."""
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
        size = self._value_size()
        for i in range(nq):
            for j in range(nk):
                key = (_value_text(float(w[i, j])), int(index[i, j]))
                patch = self._patches.get(key)
                if patch is None:
                    # a cell is one flat colour, so text-on-colour is cached per (text, colour)
                    mask = _glyphs(key[0], size, self.style.dpi)[..., None]  # (h, w, 1)
                    patch = (self._lut[key[1]] * (1.0 - mask) + self._ink[key[1]] * mask + 0.5).astype(np.uint8)
                    self._patches[key] = patch
                h, wd = patch.shape[:2]
                y = int(r0 + (i + 0.5) * ch - h / 2 + 0.5)
                x = int(c0 + (j + 0.5) * cw - wd / 2 + 0.5)
                if h == 0 or y < r0 or x < c0 or y + h > r1 or x + wd > c1:
                    continue  # never spill into a neighbour cell
                image[y : y + h, x : x + wd] = patch

    def _value_size(self) -> float:
        return 7.5 if self.m.cell >= 0.4 else 6.0

    def render_png(self, weights: np.ndarray, title: str) -> bytes:
        """The PNG bytes of one image: weights (panels, q, k), and its title."""
        if self._background is None:
            self._prepare_raster()
            assert self._background is not None
            height, width, _ = self._background.shape
            # PNG scanlines: a filter byte (0 = none) then RGB; the background fills the rest once
            self._scanlines = np.zeros((height, 1 + width * 3), np.uint8)
            self._image = self._scanlines[:, 1:].reshape(height, width, 3)
            self._image[...] = self._background
        self._paint(self._image, weights, printable_label(title))
        return encode_png(self._scanlines, self._image.shape[1], self._image.shape[0], self.style.dpi)

    # ------------------------------------------------------------ vector path

    def render_vector(self, weights: np.ndarray, title: str) -> bytes:
        """SVG or PDF bytes through matplotlib's own artists (text stays text-sharp)."""
        nq, nk = len(self.layout.query), len(self.layout.key)
        if self.texts is None:
            for image in self.images:
                image.set_interpolation("none")  # the cells go in as one small image each, scaled without blur
            self.texts = []
            for ax in self.axes:
                if self.m.annotate:
                    texts = [
                        ax.text(j, i, "", ha="center", va="center", fontsize=self._value_size())
                        for i in range(nq)
                        for j in range(nk)
                    ]
                else:
                    texts = []
                self.texts.append(texts)
        for panel, (image, texts) in enumerate(zip(self.images, self.texts)):
            w = weights[panel]
            image.set_visible(True)
            image.set_data(w)
            for t, value in zip(texts, w.reshape(-1).tolist()):
                t.set_text(_value_text(value))
                t.set_color(_contrast(self.cmap, float(self.norm(value))))
        self.title.set_text(title)
        return self._save_vector()

    def _save_vector(self) -> bytes:
        out = io.BytesIO()
        metadata = {"Date": None} if self.style.fmt == "svg" else {"CreationDate": None}
        families = list(_label_families())
        cff = _cff_chars() if self.style.fmt == "pdf" else frozenset()
        for text in self.fig.findobj(Text):
            text.set_fontfamily(families)  # an SVG names them all, for its viewers
            # glyphs of CFF fonts go in a PDF as outlines: matplotlib would embed those fonts as broken Type 42
            text.set_path_effects([Normal()] if any(ord(ch) in cff for ch in text.get_text()) else [])
        # text stays text: TrueType (Type 42) fonts in a PDF, <text> elements in an SVG; for our figures only
        with rc_context({"pdf.fonttype": 42, "svg.fonttype": "none", "font.family": families}):
            self.fig.savefig(out, format=self.style.fmt, dpi=self.style.dpi, metadata=metadata)
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
        from .pdf_template import CHARSET, TITLE_INK, VALUE_INK, PdfTemplate

        panels, nq, nk = weights.shape
        title = _elide(self._widest_title(), self.TITLE_SIZE, self.title_room)
        chars = set(title) | set(CHARSET) | set("".join(_value_text(i / 100) for i in range(101)))
        if not {ord(ch) for ch in chars} <= _charmap("DejaVu Sans"):
            return None  # a title in another font: the template would switch fonts mid-line
        self._prepare_colours()
        self.render_vector(weights, title)  # makes the value texts
        assert self.texts is not None
        for texts in self.texts:
            for text in texts:
                text.set_text(".00")
                text.set_color(VALUE_INK)
        self.title.set_color(TITLE_INK)
        # an invisible line with every character an image may need puts them all in the font subset
        spare = self.fig.text(0, 0, "".join(sorted(chars)), alpha=0.0, fontsize=1)
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
        self.render_vector(weights, self._SVG_TITLE)  # makes the value texts
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

    def pixel_size(self) -> tuple[int, int]:
        """(width, height) of a PNG of this sheet."""
        w, h = self.fig.canvas.get_width_height()
        return int(w), int(h)


def encode_png(scanlines: np.ndarray, width: int, height: int, dpi: int) -> bytes:
    """A PNG from ready RGB scanlines (filter byte 0 each), zlib level 1.

    Filter "none" with a fast zlib level is ~2.5x faster than Pillow's encoder on
    heatmaps (large flat areas compress well anyway) for files ~15% larger.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ppm = round(dpi / 0.0254)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),  # 8-bit RGB
            chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)),  # the dpi, for papers
            chunk(b"IDAT", zlib.compress(scanlines.tobytes(), PNG_COMPRESS_LEVEL)),
            chunk(b"IEND", b""),
        )
    )


def _contrast(cmap: Colormap, x: float) -> str:
    r, g, b, _ = cmap(x)
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def _value_text(value: float) -> str:
    """Two decimals without the leading zero (".42"), the usual way in attention figures."""
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


@lru_cache(maxsize=2048)
def _glyphs(text: str, size: float, dpi: int) -> np.ndarray:
    """Alpha mask (0..1) of a short text, rasterised by the same FreeType as matplotlib's Agg."""
    font = get_font([findfont(FontProperties(family=family)) for family in _label_families()])  # per-glyph fallback
    font.set_size(size, dpi)
    font.set_text(text, 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    return np.asarray(font.get_image(), dtype=np.float32) / 255.0


# ---------------------------------------------------------------- a warm cache of sheets


class Painter:
    """Keeps recent sheets warm (one per layout and style) and closes the rest."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._sheets: OrderedDict[tuple[Layout, Style], Sheet] = OrderedDict()

    def sheet(self, layout: Layout, style: Style) -> Sheet:
        key = (layout, style)
        sheet = self._sheets.get(key)
        if sheet is None:
            sheet = self._sheets[key] = Sheet(layout, style)
            while len(self._sheets) > self.keep:
                self._sheets.popitem(last=False)
        self._sheets.move_to_end(key)
        return sheet

    def render(self, layout: Layout, style: Style, weights: np.ndarray, title: str) -> bytes:
        return self.sheet(layout, style).render(weights, title)
