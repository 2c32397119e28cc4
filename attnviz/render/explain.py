"""The attention lesson: an Explanation as a sequence of rich renderables (never printed here)."""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ..explain import Explanation, Step, root
from . import term
from .bars import bar

SMALL = 16  # value tables are shown for up to this many tokens; beyond that, shapes only
CELL = 7  # characters per value column, padding included ("-12.34" + gap)
INDENT = 2
FIELD = 9  # the opening's labels ("weights  ") and the indent of their continuation lines


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _fmt(v: float, digits: int) -> str:
    if math.isinf(v):
        return "−∞" if v < 0 else "∞"
    text = f"{v:.{digits}f}"
    return "0." + "0" * digits if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _cell_style(v: float, scale: float, unit: bool) -> Style:
    """The colour scale of `attnviz show` (term.cell_style): weights 0 → scale; signed values −scale → scale, 0 mid."""
    if math.isinf(v):
        return Style(color="grey50")
    t = v / scale if unit else 0.5 + 0.5 * v / scale
    return term.cell_style(t)


def _label(text: str, limit: int = 12) -> str:
    """`text` cut to `limit` terminal cells (with …); CJK characters count two."""
    return term.fit(text, limit).rstrip()


def heat_table(
    values: np.ndarray,
    rows: tuple[str, ...],
    columns: tuple[str, ...],
    width: int,
    digits: int = 2,
    unit: bool = False,
    corner: str = "",
) -> Table:
    """A compact heat table; columns beyond the width are cut with a '… +N' column."""
    label_width = max([cell_len(_label(r)) for r in rows] + [cell_len(corner)]) + 2
    fit = max(2, (width - INDENT - label_width - 8) // CELL)
    shown = min(len(columns), fit)
    finite = values[np.isfinite(values)]
    # weights: brightest = the largest shown, as in `show`; signed values: symmetric around 0
    scale = term.scale_top(finite) if unit else term.scale_top(np.abs(finite))
    table = Table(box=None, padding=(0, 0, 0, 1), show_edge=False, pad_edge=False)
    # Text everywhere, never str: a token like "[CLS]" must not be read as rich markup
    table.add_column(Text(corner), style="bold", no_wrap=True)
    for c in columns[:shown]:
        table.add_column(Text(_label(c, CELL - 1)), justify="right", no_wrap=True, min_width=CELL - 1)
    if shown < len(columns):
        table.add_column(Text(f"… +{len(columns) - shown}"), style="dim", no_wrap=True)
    for r, label in enumerate(rows):
        cells: list[RenderableType] = [
            Text(f"{_fmt(float(v), digits):>{CELL - 1}}", style=_cell_style(float(v), scale, unit))
            for v in values[r, :shown]
        ]
        if shown < len(columns):
            cells.append(Text(""))
        table.add_row(Text(_label(label)), *cells)
    return table


class Lesson:
    """Builds the lesson top to bottom: numbered headings, prose, shapes, tables."""

    def __init__(self, e: Explanation, width: int, digits: int) -> None:
        self.e, self.width, self.digits = e, width, digits
        self.parts: list[RenderableType] = []
        self.number = 0
        self.numbers: dict[str, int] = {}  # step key → its heading number, for cross-references
        self.small = len(e.query) <= SMALL and len(e.key) <= SMALL

    def heading(self, title: str, right: str = "") -> None:
        self.number += 1
        text = Text.assemble((f" {self.number}. {title} ", "bold"), (f" {right} " if right else "", "cyan"))
        self.parts.append(Text(""))
        self.parts.append(Rule(text, align="left", style="dim"))

    def say(self, *chunks: str | tuple[str, str], indent: int = INDENT) -> None:
        self.parts.append(Padding(Text.assemble(*chunks), (0, 0, 0, indent), expand=False))

    def field(self, label: str, *chunks: str | tuple[str, str]) -> None:
        """An opening line: 'text     I · have · a · dream'; an empty label continues the one above."""
        if label:
            self.say(f"{label:<{FIELD}}", *chunks)
        else:
            self.say(*chunks, indent=INDENT + FIELD)

    def table(self, step: Step, caption: str, unit: bool = False, corner: str = "") -> None:
        if not self.small:
            return
        values = step.head_values
        cut = len(step.columns) > max(2, (self.width - INDENT - 14 - 8) // CELL)
        note = f"{caption} (first columns of {len(step.columns)})" if cut else caption
        self.say((note, "italic"))
        table = heat_table(values, step.rows, step.columns, self.width, self.digits, unit, corner)
        self.parts.append(Padding(table, (0, 0, 0, INDENT), expand=False))

    def chain(self, name: str, step: Step, ops: tuple[str, ...], axes: tuple[str, ...]) -> None:
        """A shape chain: `Q (1, 4, 512) ─view→ (1, 4, 8, 64) ─transpose(1, 2)→ (1, 8, 4, 64)`, axes below."""
        shapes = [_shape(s) for s in step.shapes]
        top = Text(f"{name} ", style="bold")
        bottom = Text(" " * len(top))
        for i, (shape, ax) in enumerate(zip(shapes, axes)):
            w = max(len(shape), len(ax))
            top.append(shape.ljust(w), style="bold cyan")
            bottom.append(ax.ljust(w), style="dim")
            if i < len(ops):
                arrow = f" ─{ops[i]}→ "
                top.append(arrow)
                bottom.append(" " * len(arrow))
        self.parts.append(Padding(Group(top, bottom), (0, 0, 0, INDENT), expand=False))


def render(e: Explanation, width: int = 80, digits: int = 2, color: bool = False) -> RenderableType:
    """The whole lesson for one layer and head, sized for a terminal `width` columns wide (`color`: add a key)."""
    L = Lesson(e, width, digits)
    h, d, d_k = e.heads, e.d_model, e.d_k
    cross = e.source is not None
    _opening(L, e, color)

    x = e.step("x")
    L.heading("Input X: one row per token", _shape(x.shapes[-1]))
    L.say(("X", "bold"), f" = {e.x_note}. Axes (B, T, d_model).")
    L.table(x, "X")

    L.heading("Queries, keys, values: three linear maps" + (" (K, V of the source X_s)" if cross else " of X"))
    for name, key, weight in (("Q", "q", "W_Q"), ("K", "k", "W_K"), ("V", "v", "W_V")):
        s = e.step(key)
        source = "X" if key == "q" or not cross else "X_s"
        formula = f"{name} = {source}·{weight} + b"
        L.say(
            (f"{formula:<{17 if cross else 15}}", "bold"),
            "   ",
            (f"{_shape(s.shapes[-1]):<12}", "bold cyan"),
            f" {weight}: ({d}, {d})",
        )
    L.say("What a token looks for (Q), what it offers to be found by (K), what it passes on (V).")

    L.heading("Split into heads", f"h = {h}, d_k = {d_k}")
    L.chain(
        "Q", e.step("q_heads"), ("view", "transpose(1, 2)"), ("[B, T, d_model]", "[B, T, h, d_k]", "[B, h, T, d_k]")
    )
    L.say(
        f"view cuts each {d}-wide row into {h} pieces of {d_k}; transpose brings heads forward so each head is "
        f"its own (T, d_k) matrix. K and V split the same way. Head {e.head} owns columns "
        f"{e.head * d_k}–{(e.head + 1) * d_k - 1}."
    )
    L.table(e.step("q_heads"), f"Q, head {e.head}")
    L.table(e.step("k_heads"), f"K, head {e.head}")

    s = e.step("scores")
    L.heading("Raw scores S = Q·Kᵀ", _shape(s.shapes[-1]))
    L.say(
        f"(B, h, Tq, d_k) @ (B, h, d_k, Tk): row = query, column = key; each entry is a dot product of {d_k} numbers."
    )
    L.table(s, f"S, head {e.head}", corner="query \\ key")

    s = e.step("scaled")
    L.heading(f"Scale by √d_k = {root(d_k)}", _shape(s.shapes[-1]))
    L.say(
        f"A sum of {d_k} products spreads out like {root(d_k)} (for numbers of unit size); dividing by it keeps "
        "the softmax from picking one key outright."
    )
    L.table(s, f"S / {math.sqrt(d_k):.4g}, head {e.head}", corner="query \\ key")

    s = e.step("masked")
    L.heading("Mask", "none" if e.mask is None else _shape(s.shapes[-1]))
    L.say(s.note + ".")
    if e.mask is not None:
        L.table(s, f"masked scores, head {e.head}", corner="query \\ key")

    s = e.step("weights")
    L.heading("Softmax over the keys: attention weights A", _shape(s.shapes[-1]))
    L.say("exp, then divide by the row's sum: each row is now a distribution over the keys (it sums to 1).")
    L.table(s, f"A, head {e.head}", unit=True, corner="query \\ key")

    s = e.step("mixed")
    L.heading("Weighted sum of values Z = A·V", _shape(s.shapes[-1]))
    L.numbers["mixed"] = L.number
    L.say("(B, h, Tq, Tk) @ (B, h, Tk, d_k): each query's row of Z blends the value rows by its weights.")
    L.table(e.step("v_heads"), f"V, head {e.head}")
    L.table(s, f"Z, head {e.head}")

    s = e.step("concat")
    L.heading("Concatenate the heads")
    L.chain("Z", s, ("transpose(1, 2)", "reshape"), ("[B, h, T, d_k]", "[B, T, h, d_k]", "[B, T, d_model]"))
    L.say(f"The {h} heads' {d_k}-wide results sit side by side again; {s.note}.")

    s = e.step("output")
    L.heading("Output map O = concat·W_O + b", _shape(s.shapes[-1]))
    L.say(f"One more ({d}, {d}) linear map mixes the heads: this is the layer's attention output.")
    L.table(s, "O")

    _pooling(L, e)
    _checks(L, e)
    return Group(*L.parts)


def _opening(L: Lesson, e: Explanation, color: bool) -> None:
    """Title, tokens, sizes, where the weights came from (random ones first of all), what the tables show."""
    h, d, d_k = e.heads, e.d_model, e.d_k
    Tq, Tk = len(e.query), len(e.key)
    where = f"layer {e.layer} of {e.layers}" if e.layers > 1 or e.model != "scratch" else "one attention layer"
    L.parts.append(Text.assemble(("Attention, step by step", "bold underline"), f" · {e.model} · {where}"))
    L.field("text", (" · ".join(e.query.texts), "bold"), f"  ({Tq} tokens)")
    specials = _specials(e)
    if specials:
        L.field("", (f"{specials}: special tokens the tokenizer adds", "dim"))
    if e.source is not None:
        L.field("source", (" · ".join(e.key.texts), "bold"), f"  ({Tk} tokens: the keys and values)")
    L.field("sizes", f"B = 1 sentence, T = {Tq} tokens, d_model = {d}, h = {h} heads")
    L.field("", f"d_k = d_model / h = {d} / {h} = {d_k} numbers per head")
    _weights(L, e)
    if L.small:
        L.say(("Tables show head ", "dim"), (str(e.head), "bold"), (" (pick another with --head N).", "dim"))
        if color:
            L.say(
                ("Shading as in attnviz show: dark = low, bright = high; where values can be negative, ", "dim"),
                ("the middle shade is 0.", "dim"),
            )
    else:
        L.say((f"More than {SMALL} tokens: shapes only; --format json gives every value.", "dim"))


def _specials(e: Explanation) -> str:
    """'[CLS], [SEP]': the special tokens among the queries, each named once."""
    names = dict.fromkeys(t for i, t in enumerate(e.query.texts) if e.query.is_special(i))
    return ", ".join(names)


def _weights(L: Lesson, e: Explanation) -> None:
    """Say where W_Q, W_K, W_V, W_O came from; random ones mean the patterns carry no meaning."""
    w = e.weights
    if w.random:
        L.field("weights", (f"random (seed {w.seed}), not trained", "bold yellow"))
        L.field(
            "",
            "The numbers below show the mechanics (shapes, scaling, softmax), nothing learned: "
            "which token attends to which means nothing about language here. For trained weights: "
            "--model minilm --layer N, or your own with --weights FILE.",
        )
    elif w.source == "file":
        L.field("weights", ("loaded from ", "bold"), (str(w.file), "bold"), " (--weights)")
    else:
        L.field("weights", (f"trained: layer {e.layer} of {e.model}", "bold"))
        L.field(
            "",
            "W_Q, W_K, W_V, W_O are the checkpoint's own, copied into attnviz's MultiHeadAttention, "
            "so which token attends to which is what the model learned.",
        )


def _pooling(L: Lesson, e: Explanation) -> None:
    p = e.pooling
    Tk = len(e.key)
    z = f"z({_label(p.token)})"  # the query's output row; v(…) names a key's value row the same way
    L.heading(f"Attention as pooling: query {p.token!r}", f"head {e.head}")
    L.say(
        f"Row {p.query} of A (counting from 0) weighs the {Tk} keys; the query's output row {z} is their "
        "weighted sum of value vectors. --query TOKEN picks another query."
    )
    if Tk > 48:
        L.say(("(too many keys to draw; see --format json)", "dim"))
        return
    L.parts.append(Padding(_bars(e, L.width, L.digits), (0, 0, 0, INDENT), expand=False))
    terms = [f"{float(w):.{L.digits}f}·v({_label(t, 8)})" for t, w in zip(e.key.texts, p.weights)]
    shown = " + ".join(terms[:6]) + (f" + … ({Tk - 6} more)" if Tk > 6 else "")
    L.say((z, "bold"), " = ", shown)
    if L.small:
        values = np.vstack([p.values, p.output[None], e.step("mixed").head_values[p.query][None]])
        rows = (*(f"v({t})" for t in e.key.texts), "Σ wⱼ·vⱼ", z)
        columns = e.step("mixed").columns
        table = heat_table(values, rows, columns, L.width, L.digits)
        L.say(
            (f"value rows, their weighted sum, and {z} = row {p.query} of Z from step {L.numbers['mixed']}", "italic")
        )
        L.parts.append(Padding(table, (0, 0, 0, INDENT), expand=False))
    L.say(f"Σ wⱼ·vⱼ equals {z} to within {p.max_difference:.1e}.")


def _bars(e: Explanation, width: int, digits: int) -> Text:
    """One line per key: token, a bar as long as its weight (a full bar = 1), the weight; coloured as in `show`."""
    weights = e.pooling.weights
    label_width = max(cell_len(_label(t)) for t in e.key.texts)
    bar_width = max(10, min(40, width - INDENT - label_width - 12))
    top = term.scale_top(weights)
    lines = Text()
    for j, (tok, w) in enumerate(zip(e.key.texts, weights)):
        if j:
            lines.append("\n")
        lines.append(term.fit(tok, label_width) + " ", style="dim" if e.key.is_special(j) else "bold")
        lines.append(bar(float(w), bar_width), style=term.fg_style(0.25 + 0.75 * float(w) / top))
        lines.append(f" {float(w):.{digits}f}")
    return lines


def _checks(L: Lesson, e: Explanation) -> None:
    L.heading("Checks", "largest difference |Δ|")
    against = " and transformers' own attention weights" if e.weights.source == "pretrained" else ""
    L.say(f"The steps above, done one at a time, must match the module's own forward pass{against}:")
    for c in e.checks:
        mark = ("✓", "bold green") if c.ok else ("✗", "bold red")
        L.say(mark, (f" {c.max_difference:.1e}  ", "bold"), c.what, (f" (≤ {c.tolerance:.0e})", "dim"))
