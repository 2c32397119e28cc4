"""Which images a viewed result makes: their layout, title, file name and manifest record.

Everything here reads the stacks' provenance (which model layers and heads each map
came from, how they were combined); nothing parses a label.

    head   one image per map (layer × head, or each combined map)
    layer  one image per layer: its heads in a grid
    model  one image per stack: layers × heads
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SelectionError
from ..result import AttentionResult, MapKind, Origin, Stack
from ..saved import dumps
from ..spec import ExportView

if TYPE_CHECKING:
    from ..render.image import Layout, Style


@dataclass(frozen=True)
class Item:
    """One image to make: its weights (panels, q, k), title, file name and manifest record."""

    weights: np.ndarray
    title: str
    name: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """Images sharing one layout: what a drawing process gets in one go."""

    layout: Layout
    style: Style
    items: tuple[Item, ...]


def grid_columns(heads: int) -> int:
    """Columns of a layer grid: the smallest divisor ≥ √heads (wider than tall), at most 8."""
    for d in range(math.ceil(math.sqrt(heads)), min(heads, 8) + 1):
        if heads % d == 0:
            return d
    return heads


def _ids(origins: Sequence[Origin]) -> list[int]:
    """The model numbers a set of maps draws on, in order, each once."""
    return sorted({i for o in origins for i in o.ids})


def _single(origins: Sequence[Origin]) -> int | None:
    """The one model number, when the maps are exactly one uncombined layer/head."""
    return origins[0].single if len(origins) == 1 else None


def _suffix(origin: Origin, letter: str) -> str:
    """'L05' / 'H03' for one model layer/head; 'rollout' / 'mean' / 'max' for a combined one."""
    if origin.single is not None:
        return f"{letter}{origin.single:02d}"
    assert origin.combine is not None
    return origin.combine.value


def record(stack: Stack, layers: Sequence[Origin], heads: Sequence[Origin]) -> dict[str, Any]:
    """Manifest fields of an image drawing these maps; each field has one type in every view.

    `layers` / `heads` list the model numbers drawn on; `layer` / `head` are that one
    number when the image is exactly one uncombined layer / head, else null; `agg` is
    how heads were combined (mean / max) or null; `rollout` says whether layers were.
    """
    combines = {o.combine for o in heads}
    agg = next(iter(combines)).value if len(combines) == 1 and None not in combines else None  # type: ignore[union-attr]
    return {
        "stack": stack.name,
        "layer": _single(layers),
        "layers": _ids(layers),
        "head": _single(heads),
        "heads": _ids(heads),
        "agg": agg,
        "rollout": any(o.combine is not None for o in layers),
    }


def content_key(result: AttentionResult) -> str:
    """What makes a viewed result's maps what they are, beyond its texts, for file names.

    The model, a scratch source text, a generated continuation, and per stack what views did to the numbers:
    its kind, whether tokens were changed, its notes, and its combined layers/heads.
    Which single layer or head an image shows is in the name already.
    """
    parts: list[object] = [result.model, result.inputs.get("source"), result.continuation]
    for s in result.stacks:
        combined = [(o.combine.value, o.ids) for o in (*s.layer_axis, *s.head_axis) if o.combine is not None]
        parts.append([s.name, s.kind.value, s.token_view, list(s.notes), combined])
    return dumps(parts)  # U+2028 and kin escaped, like every JSON text export makes


def look(style: Style) -> str:
    """A short key for how images are drawn (colour map, scale, sizes, caption, …): manifest lines
    carry it, so a re-run with another look redraws an image instead of keeping the old one."""
    return hashlib.sha1(repr(style).encode()).hexdigest()[:12]


def plan(result: AttentionResult, stem: str, base: dict[str, Any], view: ExportView, style: Style) -> list[Task]:
    """The images of one viewed result, grouped by layout; `base` starts every manifest record."""
    from ..render.image import Layout

    tasks = []
    drawn_as = look(style)
    for s in result.stacks:
        if s.kind is MapKind.SIGNED:
            raise SelectionError(f"the {s.name} maps are signed, and heatmap images draw 0..vmax only")
        q, k = s.query.labels, s.key.labels  # what a reader should see: byte-level BPE decoded
        cuts = (s.query.pair_start, s.key.pair_start)
        said = [result.text, *(f"{k}: {v}" for k, v in result.inputs.items())] if style.caption else []
        caption = "\n".join((*said, *result.notes, *s.notes))
        scaled = style.scaled_to(s.weights)  # --vmax auto: this stack's largest weight, shared by its images

        def item(
            weights: np.ndarray,
            title: str,
            suffix: str,
            layers: Sequence[Origin],
            heads: Sequence[Origin],
            s: Stack = s,
        ) -> Item:
            name = f"{stem}-{s.name}-{suffix}.{style.fmt}"
            fields = {**base, **record(s, layers, heads), "file": name, "look": drawn_as}
            return Item(
                np.ascontiguousarray(weights, dtype=np.float32), f"{result.model} · {s.name} · {title}", name, fields
            )

        if view is ExportView.HEAD:
            layout = Layout(1, 1, q, k, caption=caption, q_cut=cuts[0], k_cut=cuts[1])
            items = [
                item(
                    s.weights[li, hi][None],
                    f"{s.layer_label(li)} · {s.head_label(hi)}",
                    f"{_suffix(lo, 'L')}-{_suffix(ho, 'H')}",
                    [lo],
                    [ho],
                )
                for li, lo in enumerate(s.layer_axis)
                for hi, ho in enumerate(s.head_axis)
            ]
        elif view is ExportView.LAYER:
            cols = grid_columns(s.heads)
            # one panel (heads combined): the image's title names it already
            titles = tuple(s.head_label(hi) for hi in range(s.heads)) if s.heads > 1 else ()
            layout = Layout(
                math.ceil(s.heads / cols),
                cols,
                q,
                k,
                panel_titles=titles,
                caption=caption,
                q_cut=cuts[0],
                k_cut=cuts[1],
            )
            items = [
                item(s.weights[li], f"{s.layer_label(li)} · {s.heads_label()}", _suffix(lo, "L"), [lo], s.head_axis)
                for li, lo in enumerate(s.layer_axis)
            ]
        else:
            titles = tuple(s.head_label(hi) if li == 0 else "" for li in range(s.layers) for hi in range(s.heads))
            rows = tuple(s.layer_label(li) for li in range(s.layers))
            layout = Layout(
                s.layers,
                s.heads,
                q,
                k,
                panel_titles=titles,
                row_titles=rows,
                caption=caption,
                q_cut=cuts[0],
                k_cut=cuts[1],
            )
            weights = s.weights.reshape(s.layers * s.heads, len(q), len(k))  # (L*H, q, k), row-major panels
            title = f"{s.layers_label()} × {s.heads_label()}"
            items = [item(weights, title, "model", s.layer_axis, s.head_axis)]
        widest = max((i.title for i in items), key=len, default="")
        tasks.append(Task(replace(layout, widest_title=widest), scaled, tuple(items)))
    return tasks
