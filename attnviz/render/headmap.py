"""The head map: layers × heads cells coloured by role and shaded by score, as PNG/SVG/PDF bytes."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..heads import ROLES, HeadScore
from .heads import CODES, COLOURS

WHITE = np.ones(3)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _cell_colour(h: HeadScore) -> np.ndarray:
    """The role's colour, mixed towards white as its score falls (full colour at a score of 1)."""
    base = np.array(COLOURS[h.role]) / 255
    strength = 0.35 + 0.65 * min(max(h.score or 0.0, 0.0), 1.0)
    return WHITE + (base - WHITE) * strength


def draw(heads: Sequence[HeadScore], title: str, fmt: str, notes: Sequence[str] = (), dpi: int = 100) -> bytes:
    """One panel per stack; each cell's code names its role, its shade its score."""
    stacks = list(dict.fromkeys(h.stack for h in heads))
    panels = []
    for name in stacks:
        mine = [h for h in heads if h.stack == name]
        layers = sorted({h.layer for h in mine})
        numbers = sorted({h.head for h in mine})
        panels.append((name, layers, numbers, {(h.layer, h.head): h for h in mine}))
    cell = 0.42  # inches
    widths = [max(len(p[2]) * cell, 1.5) for p in panels]
    height = max(len(p[1]) for p in panels) * cell
    legend_rows = 2
    fig_w = max(sum(widths) + 0.9 * len(panels) + 0.4, 6.4)
    wrapped = [line for note in notes for line in textwrap.wrap(note, int(fig_w * 12))]
    top, bottom = 0.7, 0.55 + 0.25 * legend_rows + 0.18 * len(wrapped)
    fig_h = height + top + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    fig.text(0.5, 1 - 0.3 / fig_h, textwrap.shorten(title, int(fig_w * 11)), ha="center", va="center", fontsize=11)
    left = (fig_w - sum(widths) - 0.9 * (len(panels) - 1)) / 2
    for (name, layers, numbers, cells), w in zip(panels, widths):
        ax = fig.add_axes((left / fig_w, bottom / fig_h, len(numbers) * cell / fig_w, len(layers) * cell / fig_h))
        left += w + 0.9
        rgb = np.ones((len(layers), len(numbers), 3))
        for (layer, head), h in cells.items():
            rgb[layers.index(layer), numbers.index(head)] = _cell_colour(h)
        ax.imshow(rgb, aspect="auto", interpolation="nearest")
        for (layer, head), h in cells.items():
            r, c = layers.index(layer), numbers.index(head)
            dark = float(np.dot(rgb[r, c], (0.2126, 0.7152, 0.0722))) < 0.5
            ax.text(c, r, CODES[h.role], ha="center", va="center", fontsize=7, color="white" if dark else "black")
        step = max(1, len(numbers) // 16)
        ax.set_xticks(range(0, len(numbers), step), [str(n) for n in numbers[::step]], fontsize=7)
        ax.set_yticks(range(len(layers)), [str(n) for n in layers], fontsize=7)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        if len(panels) > 1:
            ax.set_title(name, fontsize=9)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    handles = [Patch(facecolor=_hex(COLOURS[r]), label=f"{CODES[r]} {r}") for r in ROLES]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=5,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, (0.12 + 0.18 * len(wrapped)) / fig_h),
    )
    for i, line in enumerate(wrapped):
        fig.text(0.02, (0.1 + 0.18 * (len(wrapped) - 1 - i)) / fig_h, line, fontsize=7, style="italic")
    fig.text(0.98, (0.1 + 0.18 * len(wrapped)) / fig_h + 0.0, "shade: paler = weaker score", fontsize=6, ha="right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata={"Software": None} if fmt == "png" else None)
    return buffer.getvalue()
