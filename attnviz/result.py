"""AttentionResult: the one currency between backends, views, renderers and saved files.

A result holds the model's name, the input texts and one or more stacks: `encoder`
(self-attention), `decoder` (causal self-attention) and `cross` (decoder queries over
encoder keys). Each stack's weights are float32 shaped [layers, heads, q, k], and each
index of the layer and head axes carries its provenance (an `Origin`): which of the
model's layers or heads it came from, and how they were combined. Labels for display
are made from that provenance and never parsed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import numpy as np

from .errors import SelectionError
from .spec import Combine, StackName
from .tokentext import label

STACK_NAMES = tuple(s.value for s in StackName)
# rows sum to 1 within this, by the precision the model ran in (bf16 keeps ~3 digits)
ROW_SUM_TOLERANCE = {"float32": 1e-4, "float16": 4e-3, "bfloat16": 3e-2}


class MapKind(str, Enum):
    """What the numbers of a stack are."""

    PROBABILITY = "probability"  # every row is a distribution over the keys: ≥ 0, sums to 1
    WEIGHTS = "weights"  # ≥ 0, rows need not sum to 1 (keys hidden, a token window, max of heads)
    SIGNED = "signed"  # any sign: differences, attributions


@dataclass(frozen=True)
class Origin:
    """Where one index of a layer or head axis came from.

    `ids` are the model's layer (or head) numbers the map draws on; `combine` says how
    several were made one (None: the map *is* model layer/head ids[0]). An empty `ids`
    with a `combine` means the numbers were not recorded (files from attnviz 0.1).
    """

    ids: tuple[int, ...]
    combine: Combine | None = None

    def __post_init__(self) -> None:
        if self.combine is None and len(self.ids) != 1:
            raise ValueError(f"an uncombined origin is exactly one model index, got {self.ids}")

    @property
    def single(self) -> int | None:
        """The model index when this is one layer/head as it is, else None."""
        return self.ids[0] if self.combine is None else None


def origins(ids: Sequence[int]) -> tuple[Origin, ...]:
    """One uncombined origin per model index."""
    return tuple(Origin((int(i),)) for i in ids)


def span(ids: Sequence[int]) -> str:
    """'0–5' for a run of three or more, else '0,2' — compact model numbers for labels."""
    ids = list(ids)
    if len(ids) > 2 and ids == list(range(ids[0], ids[0] + len(ids))):
        return f"{ids[0]}–{ids[-1]}"
    return ",".join(str(i) for i in ids)


def _combined(origin: Origin, noun: str, total: int | None) -> str:
    verb = origin.combine.value if origin.combine else ""
    if not origin.ids:
        return f"{verb} of {noun}s"
    if total is not None and origin.ids == tuple(range(total)):
        return f"{verb} of all {total} {noun}s"
    return f"{verb} of {noun}{'s' if len(origin.ids) > 1 else ''} {span(origin.ids)}"


def layer_label(origin: Origin, total: int | None = None) -> str:
    """'layer 3', 'rollout of layers 0–5' — for titles; never parsed back."""
    if origin.single is not None:
        return f"layer {origin.single}"
    return _combined(origin, "layer", total)


def head_label(origin: Origin, total: int | None = None) -> str:
    """'head 3', 'mean of all 12 heads', 'max of heads 0–2' — for titles; never parsed back."""
    if origin.single is not None:
        return f"head {origin.single}"
    return _combined(origin, "head", total)


def axis_label(axis: Sequence[Origin], total: int | None, what: str) -> str:
    """What a layer or head axis holds: 'layer 5', 'layers 0–5', 'rollout of all 6 layers'."""
    singles = [o.single for o in axis if o.single is not None]
    if len(singles) == len(axis) and len(singles) > 1:
        return f"{what}s {span(sorted(singles))}"
    label = layer_label if what == "layer" else head_label
    return ", ".join(label(o, total) for o in axis)


@dataclass(frozen=True)
class Tokens:
    """One side of an attention matrix: token strings plus what views need to know.

    Metadata tuples are empty when unknown (files from attnviz 0.1), else one entry
    per token. Offsets are character spans into the text the token came from (the
    pair's own text for sentence B tokens, the continuation for generated tokens);
    specials get (0, 0). `generated` is empty unless the model continued the text.
    """

    texts: tuple[str, ...]
    special: tuple[bool, ...] = ()  # [CLS], [SEP], <s>, BOS ...
    word_ids: tuple[int | None, ...] = ()  # word index per token (None for specials)
    segments: tuple[int, ...] = ()  # 0 = sentence A, 1 = sentence B (pairs); empty = all A
    offsets: tuple[tuple[int, int], ...] = ()  # (start, end) characters
    sources: tuple[str | None, ...] = ()  # the characters behind each token (None: specials); empty: unknown
    generated: tuple[bool, ...] = ()  # True for tokens the model generated (a decoder continuing the text)

    def __post_init__(self) -> None:
        n = len(self.texts)
        for name in ("special", "word_ids", "segments", "offsets", "sources", "generated"):
            value = getattr(self, name)
            if value and len(value) != n:
                raise ValueError(f"Tokens.{name} has {len(value)} entries for {n} tokens")

    def __len__(self) -> int:
        return len(self.texts)

    def is_special(self, i: int) -> bool:
        return bool(self.special) and self.special[i]

    def is_generated(self, i: int) -> bool:
        return bool(self.generated) and self.generated[i]

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """The tokens as a reader should see them (tokentext.label): 'Ġdream' → 'dream', an
        unknown token with what it replaced, '[UNK:☃]', a generated one marked, 'dream⁺'."""
        sources = self.sources or (None,) * len(self.texts)
        generated = self.generated or (False,) * len(self.texts)
        return tuple(label(t, source, new) for t, source, new in zip(self.texts, sources, generated))

    @property
    def pair_start(self) -> int | None:
        """Index of the first token of sentence B, or None for a single sentence."""
        for i in range(1, len(self.segments)):
            if self.segments[i] != self.segments[i - 1]:
                return i
        return None

    def take(self, index: Sequence[int]) -> Tokens:
        """The tokens at `index`, in that order, metadata kept aligned."""
        return Tokens(
            texts=tuple(self.texts[i] for i in index),
            special=tuple(self.special[i] for i in index) if self.special else (),
            word_ids=tuple(self.word_ids[i] for i in index) if self.word_ids else (),
            segments=tuple(self.segments[i] for i in index) if self.segments else (),
            offsets=tuple(self.offsets[i] for i in index) if self.offsets else (),
            sources=tuple(self.sources[i] for i in index) if self.sources else (),
            generated=tuple(self.generated[i] for i in index) if self.generated else (),
        )


@dataclass(frozen=True, eq=False)  # eq by identity: == on numpy arrays has no single answer
class Stack:
    """One kind of attention in a model: maps shaped [layers, heads, q, k] and where they came from."""

    name: str  # encoder | decoder | cross
    query: Tokens
    key: Tokens
    weights: np.ndarray  # float32 [layers, heads, q, k]
    causal: bool = False
    layer_axis: tuple[Origin, ...] = ()  # one per index of axis 0; default: model layers 0..L-1
    head_axis: tuple[Origin, ...] = ()  # one per index of axis 1; default: model heads 0..H-1
    kind: MapKind = MapKind.PROBABILITY
    model_layers: int | None = None  # how many layers/heads the model has (default: the axes' sizes)
    model_heads: int | None = None
    token_view: bool = False  # tokens changed by a view (words merged, specials hidden, a window, one query)
    notes: tuple[str, ...] = ()  # what views did that a reader must know

    def __post_init__(self) -> None:
        L, H = self.weights.shape[:2]
        if not self.layer_axis:
            object.__setattr__(self, "layer_axis", origins(range(L)))
            if self.model_layers is None:
                object.__setattr__(self, "model_layers", L)
        if not self.head_axis:
            object.__setattr__(self, "head_axis", origins(range(H)))
            if self.model_heads is None:
                object.__setattr__(self, "model_heads", H)

    @property
    def layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def heads(self) -> int:
        return int(self.weights.shape[1])

    def layer_label(self, li: int) -> str:
        return layer_label(self.layer_axis[li], self.model_layers)

    def head_label(self, hi: int) -> str:
        return head_label(self.head_axis[hi], self.model_heads)

    def layers_label(self) -> str:
        """Every layer the stack holds, in one label ('layers 0–5')."""
        return axis_label(self.layer_axis, self.model_layers, "layer")

    def heads_label(self) -> str:
        return axis_label(self.head_axis, self.model_heads, "head")

    def validate(self, precision: str = "float32") -> None:
        """Raise ValueError unless shapes, provenance and values agree with the stack's kind."""
        w = self.weights
        if self.name not in STACK_NAMES:
            raise ValueError(f"unknown stack name {self.name!r}")
        if w.dtype != np.float32 or w.ndim != 4:
            raise ValueError(f"{self.name}: weights must be float32 [L, H, q, k], got {w.dtype} {w.shape}")
        if not w.shape[0] or not w.shape[1]:
            raise ValueError(f"{self.name}: weights hold no layer or no head ({w.shape})")
        if w.shape[2:] != (len(self.query), len(self.key)):
            raise ValueError(
                f"{self.name}: weights are {w.shape[2]}x{w.shape[3]} for "
                f"{len(self.query)} query and {len(self.key)} key tokens"
            )
        if len(self.layer_axis) != w.shape[0] or len(self.head_axis) != w.shape[1]:
            raise ValueError(f"{self.name}: layer/head provenance does not match the weights' shape")
        for what, axis, count in (
            ("layer", self.layer_axis, self.model_layers),
            ("head", self.head_axis, self.model_heads),
        ):
            if len(set(axis)) != len(axis):
                raise ValueError(f"{self.name}: a {what} appears twice")
            if count is not None and not (max((max(o.ids, default=-1) for o in axis), default=-1) < count <= MAX_AXIS):
                raise ValueError(f"{self.name}: the model's {what} count {count} does not fit the {what}s it names")
        if not np.isfinite(w).all():
            li, hi = (int(x) for x in np.argwhere(~np.isfinite(w))[0][:2])
            raise ValueError(f"{self.name} {self.layer_label(li)}, {self.head_label(hi)} holds NaN or infinity")
        if self.kind is MapKind.SIGNED or not w.size:
            return
        if float(w.min()) < 0:
            raise ValueError(f"{self.name}: {self.kind.value} maps cannot hold negative numbers")
        if self.kind is MapKind.PROBABILITY:
            worst = float(np.abs(w.sum(axis=-1, dtype=np.float64) - 1.0).max())
            if worst > ROW_SUM_TOLERANCE.get(precision, 1e-4):
                raise ValueError(f"{self.name}: rows sum to 1 only within {worst:.2e}")


@dataclass(frozen=True, eq=False)
class AttentionResult:
    """Everything attnviz knows about one input's attention in one model."""

    model: str
    text: str
    stacks: tuple[Stack, ...]
    inputs: dict[str, str] = field(default_factory=dict)  # pair / target / source texts
    precision: str = "float32"  # the dtype the model ran in; weights are float32 regardless
    notes: tuple[str, ...] = ()  # about the input, e.g. "input truncated to 512 tokens (…)"
    index: int = 0  # 0-based position among the inputs of one run
    line: int | None = None  # 1-based line of the input file it came from (None: given as an argument)
    continuation: str | None = None  # what a decoder generated after `text` (its tokens are marked generated)

    def validate(self) -> AttentionResult:
        """Check every stack once (see Stack.validate); returns self for chaining."""
        if not self.stacks:
            raise ValueError("an AttentionResult needs at least one stack")
        names = [s.name for s in self.stacks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stacks: {names}")
        for stack in self.stacks:
            stack.validate(self.precision)
        return self

    @property
    def stack_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stacks)

    def stack(self, name: str) -> Stack:
        for s in self.stacks:
            if s.name == name:
                return s
        raise SelectionError(f"there is no {name!r} stack here (there is {', '.join(self.stack_names)})")

    def to_json(self) -> dict[str, Any]:
        """The attnviz/2 JSON document (see README, 'JSON schema'); weights as nested lists."""
        doc: dict[str, Any] = {"schema": SCHEMA, "model": self.model, "text": self.text, **self.inputs}
        if self.continuation is not None:
            doc["continuation"] = self.continuation
        doc.update(index=self.index, line=self.line, precision=self.precision)
        if self.notes:
            doc["notes"] = list(self.notes)
        doc["stacks"] = [_stack_to_json(s) for s in self.stacks]
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> AttentionResult:
        """A result from an attnviz/2 or attnviz/1 JSON document; ValueError if it is not one."""
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        schema = doc.get("schema")
        if schema not in (SCHEMA, SCHEMA_V1):
            raise ValueError(f"schema {schema!r} is not {SCHEMA} or {SCHEMA_V1}")
        try:
            result = cls(
                model=str(doc["model"]),
                text=str(doc["text"]),
                stacks=tuple(_stack_from_json(s, schema, str(doc.get("precision"))) for s in doc["stacks"]),
                inputs={k: str(doc[k]) for k in INPUT_NAMES if doc.get(k) is not None},
                precision=str(doc.get("precision", "float32")),
                notes=tuple(str(n) for n in doc.get("notes", ())),
                continuation=None if doc.get("continuation") is None else str(doc["continuation"]),
                index=int(doc.get("index", 0)),
                line=None if doc.get("line") is None else int(doc["line"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"missing or malformed field {exc}") from None
        return result.validate()

    def _repr_html_(self) -> str:
        """The interactive viewer, for Jupyter, JupyterLab, VS Code and Colab notebooks."""
        from .render.html import notebook  # the one upward import: presentation, loaded on first display

        return notebook(self)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{s.name} {list(s.weights.shape)}" for s in self.stacks)
        return f"AttentionResult(model={self.model!r}, text={self.text!r}, {shapes})"


# ---------------------------------------------------------------- JSON documents

SCHEMA = "attnviz/2"
MAX_AXIS = 1_000_000  # layers or heads a model may have: far beyond any real one, and a saved file's count is checked
SCHEMA_V1 = "attnviz/1"  # still read: no token metadata, provenance as 'mean' / 'rollout' strings
INPUT_NAMES = ("pair", "target", "source")


def _origin_to_json(origin: Origin) -> int | dict[str, Any]:
    if origin.single is not None:
        return origin.single
    assert origin.combine is not None
    return {"combine": origin.combine.value, "of": list(origin.ids)}


def _origin_from_json(value: Any, schema: str) -> Origin:
    if isinstance(value, bool):
        raise ValueError(f"a layer or head is a number or an object, not {value!r}")
    if isinstance(value, int):
        return Origin((value,))
    if isinstance(value, dict):
        return Origin(tuple(int(i) for i in value["of"]), Combine(value["combine"]))
    if schema == SCHEMA_V1 and value in ("mean", "max", "rollout"):
        return Origin((), Combine(value))  # attnviz/1 did not record which heads or layers
    if schema == SCHEMA_V1:
        raise ValueError(f"attnviz/1 wrote rollouts of chosen heads as {value!r}, which cannot be read back exactly")
    raise ValueError(f"cannot read layer or head {value!r}")


def _tokens_to_json(tokens: Tokens) -> dict[str, Any]:
    doc: dict[str, Any] = {"tokens": list(tokens.texts)}
    for name in ("special", "word_ids", "segments", "sources", "generated"):
        if getattr(tokens, name):
            doc[name] = list(getattr(tokens, name))
    if tokens.offsets:
        doc["offsets"] = [list(o) for o in tokens.offsets]
    return doc


def _tokens_from_json(doc: dict[str, Any]) -> Tokens:
    return Tokens(
        texts=tuple(str(t) for t in doc["tokens"]),
        special=tuple(bool(s) for s in doc.get("special", ())),
        word_ids=tuple(None if w is None else int(w) for w in doc.get("word_ids", ())),
        segments=tuple(int(s) for s in doc.get("segments", ())),
        offsets=tuple((int(a), int(b)) for a, b in doc.get("offsets", ())),
        sources=tuple(None if t is None else str(t) for t in doc.get("sources", ())),
        generated=tuple(_flag(g) for g in doc.get("generated", ())),
    )


def _flag(value: Any) -> bool:
    """A JSON true or false; anything else is not a flag (a 0 or "no" would be read as one)."""
    if not isinstance(value, bool):
        raise TypeError(f"a generated flag is true or false, not {value!r}")
    return value


def _stack_to_json(s: Stack) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": s.name,
        "causal": s.causal,
        "kind": s.kind.value,
        "model_layers": s.model_layers,
        "model_heads": s.model_heads,
        "layers": [_origin_to_json(o) for o in s.layer_axis],
        "heads": [_origin_to_json(o) for o in s.head_axis],
        "query": _tokens_to_json(s.query),
        "key": _tokens_to_json(s.key),
        "attention": s.weights.tolist(),  # float32 → the shortest float64 repr, which reads back exactly
    }
    if s.token_view:
        doc["token_view"] = True
    if s.notes:
        doc["notes"] = list(s.notes)
    return doc


def _stack_from_json(doc: dict[str, Any], schema: str, precision: str) -> Stack:
    if schema == SCHEMA_V1:
        query, key = Tokens(tuple(doc["query_tokens"])), Tokens(tuple(doc["key_tokens"]))
    else:
        query, key = _tokens_from_json(doc["query"]), _tokens_from_json(doc["key"])
    with np.errstate(over="ignore"):  # numbers past float32 become inf, which validation names
        weights = np.asarray(doc["attention"], dtype=np.float32)
    if weights.ndim != 4:  # an empty axis flattens the nested lists: rebuild the shape
        weights = weights.reshape(len(doc["layers"]), len(doc["heads"]), len(query), len(key))
    if schema == SCHEMA_V1:  # no kind recorded: read it off the numbers
        sums = weights.sum(axis=-1, dtype=np.float64)
        tolerance = ROW_SUM_TOLERANCE.get(precision, 1e-4)
        kind = MapKind.PROBABILITY if np.allclose(sums, 1.0, atol=tolerance) else MapKind.WEIGHTS
    else:
        kind = MapKind(doc["kind"])
    layer_axis = tuple(_origin_from_json(o, schema) for o in doc["layers"])
    head_axis = tuple(_origin_from_json(o, schema) for o in doc["heads"])
    model_layers, model_heads = doc.get("model_layers"), doc.get("model_heads")
    if schema == SCHEMA_V1:  # not recorded; an axis holding 0..n-1 as they are held them all
        model_layers = len(layer_axis) if [o.single for o in layer_axis] == list(range(len(layer_axis))) else None
        model_heads = len(head_axis) if [o.single for o in head_axis] == list(range(len(head_axis))) else None
    return Stack(
        name=str(doc["name"]),
        query=query,
        key=key,
        weights=weights,
        causal=bool(doc.get("causal", False)),
        layer_axis=layer_axis,
        head_axis=head_axis,
        kind=kind,
        model_layers=None if model_layers is None else int(model_layers),
        model_heads=None if model_heads is None else int(model_heads),
        token_view=bool(doc.get("token_view", False)),
        notes=tuple(str(n) for n in doc.get("notes", ())),
    )
