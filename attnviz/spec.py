"""ViewSpec: the one typed description of what to show, and the one parser of its strings.

The CLI, the Python API and saved-file rendering all build a ViewSpec; views.apply()
is the only thing that reads it. Strings such as '2:4', 'all', 'last', '-1' or 'mean'
are parsed here and nowhere else; unreadable ones are UsageErrors (exit 2).

Layer and head numbers are the *model's* numbers: on a result that holds only some
layers (a saved `--layer 5`), `5` still means model layer 5 and `2` is an error
that says what the result holds. Negative numbers count from the model's end.
'all' is everything the result holds and 'last' its last layer or head.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import UsageError


class Agg(str, Enum):
    """How a view combines heads: not at all, mean or max over the chosen heads, or rollout across layers."""

    NONE = "none"
    MEAN = "mean"
    MAX = "max"
    ROLLOUT = "rollout"


class Combine(str, Enum):
    """How several layers or heads became one map (recorded in a stack's provenance)."""

    MEAN = "mean"
    MAX = "max"
    ROLLOUT = "rollout"  # layers only: identity added, rows renormalised, maps multiplied


class StackName(str, Enum):
    ENCODER = "encoder"
    DECODER = "decoder"
    CROSS = "cross"


class ExportView(str, Enum):
    """How export lays maps out: one image per map, per layer (a grid of heads) or per stack."""

    HEAD = "head"
    LAYER = "layer"
    MODEL = "model"


class ImageFormat(str, Enum):
    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


class Annotate(str, Enum):
    """Values written in heatmap cells: auto (single maps up to 16 tokens a side), on, off."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


IndexPart = int | tuple[int | None, int | None]  # a number, or a range A:B (end exclusive, None = open)


@dataclass(frozen=True)
class Indices:
    """A parsed layer or head selection; views resolve it against what a stack holds."""

    parts: tuple[IndexPart, ...] = ()  # empty with `last` False: everything
    last: bool = False
    text: str = "all"  # as the user wrote it, for messages

    @property
    def is_all(self) -> bool:
        return not self.parts and not self.last

    @classmethod
    def parse(cls, value: str | int | Sequence[int] | range | Indices, what: str = "layer") -> Indices:
        """'all', 'last', 'N', '-1', 'A:B' (B excluded), 'A:', ':B', comma lists — or ints and sequences."""
        if isinstance(value, Indices):
            return value
        if isinstance(value, bool):
            raise UsageError(f"cannot read {what} {value!r}", hint=_valid(what))
        if isinstance(value, numbers.Integral):  # int, numpy integers
            return cls((int(value),), text=str(int(value)))
        if isinstance(value, range):
            if value.step != 1:
                raise UsageError(f"cannot read {what} {value!r}: only ranges with step 1", hint=_valid(what))
            return cls(((value.start, value.stop),), text=f"{value.start}:{value.stop}")
        if not isinstance(value, str):
            picked = tuple(value)  # type: ignore[arg-type]
            if not picked or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in picked):
                raise UsageError(f"cannot read {what} {value!r}", hint=_valid(what))
            picked = tuple(int(i) for i in picked)
            return cls(picked, text=",".join(str(i) for i in picked))
        text = value.strip().lower()
        if text == "all":
            return cls(text="all")
        if text == "last":
            return cls(last=True, text="last")
        parts: list[IndexPart] = []
        for part in text.split(","):
            part = part.strip()
            try:
                if ":" in part:
                    lo, hi = part.split(":", 1)
                    start = int(lo) if lo.strip() else None
                    stop = int(hi) if hi.strip() else None
                    if start is not None and stop is not None and (start >= 0) == (stop >= 0) and start >= stop:
                        raise UsageError(f"{what} range {part!r} is empty: A:B needs A < B", hint=_valid(what))
                    parts.append((start, stop))
                else:
                    parts.append(int(part))
            except ValueError:
                raise UsageError(f"cannot read {what} {part!r}", hint=_valid(what)) from None
        return cls(tuple(parts), text=text)


def _choices(kind: type[Enum]) -> str:
    return ", ".join(str(member.value) for member in kind)


ALL = Indices()
LAST = Indices(last=True, text="last")


def _valid(what: str) -> str:
    extra = ", or 'mean' / 'max' to combine them" if what == "head" else ""
    return f"valid {what}s: N, -1 (the last), A:B (B excluded), comma lists, 'all' or 'last'{extra}"


def parse_head(value: str | int | Sequence[int] | range | Indices) -> tuple[Indices, Combine | None]:
    """A head selection, where 'mean' and 'max' mean: every head, combined so."""
    if isinstance(value, str) and value.strip().lower() in (Combine.MEAN.value, Combine.MAX.value):
        return ALL, Combine(value.strip().lower())
    return Indices.parse(value, "head"), None


@dataclass(frozen=True)
class TokenWindow:
    """Token positions start:stop (stop excluded, None = to the end), as shown after word merge."""

    start: int = 0
    stop: int | None = None

    @classmethod
    def parse(cls, value: str | tuple[int, int | None] | TokenWindow) -> TokenWindow:
        if isinstance(value, TokenWindow):
            return value
        if isinstance(value, tuple):
            start, stop = value
        else:
            lo, sep, hi = value.partition(":")
            try:
                start = int(lo) if lo.strip() else 0
                stop = int(hi) if hi.strip() else None
            except ValueError:
                raise UsageError(f"cannot read token window {value!r}", hint="write A:B, e.g. 0:20") from None
            if not sep:
                raise UsageError(f"cannot read token window {value!r}", hint="write A:B, e.g. 0:20")
        if start < 0 or (stop is not None and stop <= start):
            shown = f"{start}:{'' if stop is None else stop}"
            raise UsageError(f"token window {shown} is empty or negative", hint="write A:B with 0 ≤ A < B, e.g. 0:20")
        return cls(start, stop)

    def __str__(self) -> str:
        return f"{self.start}:{'' if self.stop is None else self.stop}"


@dataclass(frozen=True)
class ViewSpec:
    """What to show of a result. views.apply() takes, in this order: the stack, layers and
    heads (combined, or rolled out across layers), word merge, hidden specials, the token
    window, and one query row."""

    stack: StackName | None = None  # None: every stack (rollout: every self-attention stack)
    layers: Indices | None = None  # None: not chosen (views take the last layer)
    heads: Indices = field(default=ALL)
    combine: Combine | None = None  # heads made one map by mean or max (rollout: mean unless max)
    rollout: bool = False
    words: bool = False
    hide_special: bool = False
    renormalize: bool = False
    tokens: TokenWindow | None = None
    query: str | None = None  # one query row: its index as shown, or its text

    def __post_init__(self) -> None:
        if self.renormalize and not self.hide_special:
            raise UsageError("renormalising rows only applies when special tokens are hidden")
        if self.combine is Combine.ROLLOUT:
            raise UsageError("rollout combines layers, not heads: set rollout=True")

    @classmethod
    def build(
        cls,
        *,
        stack: str | StackName | None = None,
        layer: str | int | Sequence[int] | range | Indices | None = None,
        head: str | int | Sequence[int] | range | Indices = "all",
        agg: str | Agg = Agg.NONE,
        words: bool = False,
        hide_special: bool = False,
        renormalize: bool = False,
        tokens: str | tuple[int, int | None] | TokenWindow | None = None,
        query: str | int | None = None,
    ) -> ViewSpec:
        """A spec from loose values (CLI strings, ints, sequences); UsageError for what cannot be read.

        `agg` and a head of 'mean'/'max' say the same thing two ways; `--head max --agg
        rollout` rolls out the max over heads, and chosen heads are averaged.
        """
        try:
            agg = Agg(agg)
        except ValueError:
            raise UsageError(f"unknown aggregation {agg!r}", hint=f"choose one of: {_choices(Agg)}") from None
        try:
            picked_stack = None if stack is None or stack == "all" else StackName(stack)
        except ValueError:
            raise UsageError(f"unknown stack {stack!r}", hint=f"choose one of: {_choices(StackName)}") from None
        heads, combine = parse_head(head)
        if agg in (Agg.MEAN, Agg.MAX):
            if combine is not None and combine.value != agg.value:
                raise UsageError(f"heads combined by {combine.value} and by {agg.value} at once: choose one")
            combine = Combine(agg.value)
        return cls(
            stack=picked_stack,
            layers=None if layer is None else Indices.parse(layer, "layer"),
            heads=heads,
            combine=combine,
            rollout=agg is Agg.ROLLOUT,
            words=words,
            hide_special=hide_special,
            renormalize=renormalize,
            tokens=None if tokens is None else TokenWindow.parse(tokens),
            query=None if query is None else str(query),
        )

    def with_layers(self, layers: Indices) -> ViewSpec:
        """This spec with a layer default filled in (export shows every layer unless told)."""
        return self if self.layers is not None else replace(self, layers=layers)


def parse_vmax(value: str | float | None) -> float | None:
    """The top of a colour scale: a number above 0, or 'auto' (None: the largest weight shown)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        top = float(value)
    except ValueError:
        raise UsageError(f"cannot read --vmax {value!r}", hint="give a number above 0, or auto") from None
    if not (top > 0 and top < float("inf")):
        raise UsageError(f"--vmax {value} is not above 0", hint="give a number above 0, or auto")
    if not 1e-30 <= top <= 1e30:  # beyond, weight / top overflows or vanishes in float32
        raise UsageError(f"--vmax {value} is outside 1e-30..1e30", hint="give a number in that range, or auto")
    return top


def parse_figsize(value: str | tuple[float, float] | None) -> tuple[float, float] | None:
    """A figure size in inches from 'W,H' or 'WxH' (None: sized from the tokens)."""
    if value is None or isinstance(value, tuple):
        return value
    parts = value.lower().replace("x", ",").split(",")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"cannot read --figsize {value!r}", hint="give width and height in inches, e.g. 8,6") from None
    if not (0 < w < float("inf") and 0 < h < float("inf")):
        raise UsageError(f"--figsize {value} needs a width and height above 0")
    return w, h
