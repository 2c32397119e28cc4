"""AttentionResult: the one currency between backends, views and renderers.

A result holds the model's name, the input texts and one or more stacks:
`encoder` (self-attention), `decoder` (causal self-attention) and `cross`
(decoder queries over encoder keys). Each stack's weights are float32 shaped
[layers, heads, q, k] and every row is a probability distribution over keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SelectionError

SCHEMA = "attnviz/1"
STACK_NAMES = ("encoder", "decoder", "cross")
# rows sum to 1 within this, by the precision the model ran in (bf16 keeps ~3 digits)
ROW_SUM_TOLERANCE = {"float32": 1e-4, "float16": 4e-3, "bfloat16": 3e-2}


@dataclass(frozen=True)
class Tokens:
    """One side of an attention matrix: token strings plus what views need to know."""

    texts: tuple[str, ...]
    special: tuple[bool, ...] = ()  # [CLS], [SEP], <s>, BOS ...; empty = none special
    word_ids: tuple[int | None, ...] = ()  # word index per token (None for specials)
    segments: tuple[int, ...] = ()  # 0 = sentence A, 1 = sentence B (pairs)

    def __post_init__(self) -> None:
        n = len(self.texts)
        for name in ("special", "word_ids", "segments"):
            value = getattr(self, name)
            if value and len(value) != n:
                raise ValueError(f"Tokens.{name} has {len(value)} entries for {n} tokens")

    def __len__(self) -> int:
        return len(self.texts)

    def is_special(self, i: int) -> bool:
        return bool(self.special) and self.special[i]

    def take(self, index: list[int]) -> Tokens:
        """The tokens at `index`, in that order, metadata kept aligned."""
        return Tokens(
            texts=tuple(self.texts[i] for i in index),
            special=tuple(self.special[i] for i in index) if self.special else (),
            word_ids=tuple(self.word_ids[i] for i in index) if self.word_ids else (),
            segments=tuple(self.segments[i] for i in index) if self.segments else (),
        )


@dataclass(frozen=True)
class Stack:
    """One kind of attention in a model, every layer and head of it."""

    name: str  # encoder | decoder | cross
    query: Tokens
    key: Tokens
    weights: np.ndarray  # float32 [layers, heads, q, k]
    causal: bool = False
    layer_ids: tuple[int | str, ...] = ()  # which model layers the first axis holds, or "rollout"
    head_ids: tuple[int | str, ...] = ()  # which heads the second axis holds, or "mean"/"max"
    notes: tuple[str, ...] = ()  # what views did that a reader must know ("rows no longer sum to 1")

    def __post_init__(self) -> None:
        if not self.layer_ids:
            object.__setattr__(self, "layer_ids", tuple(range(self.weights.shape[0])))
        if not self.head_ids:
            object.__setattr__(self, "head_ids", tuple(range(self.weights.shape[1])))

    @property
    def layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def heads(self) -> int:
        return int(self.weights.shape[1])

    def validate(self, precision: str = "float32") -> None:
        """Raise ValueError unless shapes agree, values are finite and rows sum to 1."""
        w = self.weights
        if self.name not in STACK_NAMES:
            raise ValueError(f"unknown stack name {self.name!r}")
        if w.dtype != np.float32 or w.ndim != 4:
            raise ValueError(f"{self.name}: weights must be float32 [L, H, q, k], got {w.dtype} {w.shape}")
        if w.shape[2:] != (len(self.query), len(self.key)):
            raise ValueError(
                f"{self.name}: weights are {w.shape[2]}x{w.shape[3]} for "
                f"{len(self.query)} query and {len(self.key)} key tokens"
            )
        if len(self.layer_ids) != w.shape[0] or len(self.head_ids) != w.shape[1]:
            raise ValueError(f"{self.name}: layer/head ids do not match the weights' shape")
        if not np.isfinite(w).all():
            raise ValueError(f"{self.name}: weights contain NaN or infinity")
        if w.size:
            worst = float(np.abs(w.sum(axis=-1, dtype=np.float64) - 1.0).max())
            if worst > ROW_SUM_TOLERANCE[precision]:
                raise ValueError(f"{self.name}: rows sum to 1 only within {worst:.2e}")


@dataclass(frozen=True)
class AttentionResult:
    """Everything attnviz knows about one input's attention in one model."""

    model: str
    text: str
    stacks: tuple[Stack, ...]
    inputs: dict[str, str] = field(default_factory=dict)  # pair / target / source texts
    precision: str = "float32"  # the dtype the model ran in; weights are float32 regardless
    warnings: tuple[str, ...] = ()  # for the user's stderr, e.g. "input truncated to 512 tokens"

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
        raise SelectionError(
            f"this model has no {name!r} stack",
            hint=f"available: {', '.join(self.stack_names)}",
        )

    def to_json(self) -> dict[str, Any]:
        """The attnviz/1 JSON document (see README, 'JSON schema')."""
        doc: dict[str, Any] = {"schema": SCHEMA, "model": self.model, "text": self.text}
        doc.update(self.inputs)
        doc["precision"] = self.precision
        doc["stacks"] = [
            {
                "name": s.name,
                "causal": s.causal,
                "layers": list(s.layer_ids),
                "heads": list(s.head_ids),
                "query_tokens": list(s.query.texts),
                "key_tokens": list(s.key.texts),
                "attention": s.weights.tolist(),
                **({"notes": list(s.notes)} if s.notes else {}),
            }
            for s in self.stacks
        ]
        return doc


# head ids views give to a head axis they combined (views and batch use this one tuple)
HEAD_AGGREGATES = ("mean", "max")


def layer_label(layer_id: int | str) -> str:
    """'layer 3' for a model layer; a string id ('rollout') names itself."""
    return layer_id if isinstance(layer_id, str) else f"layer {layer_id}"


def head_label(head_id: int | str) -> str:
    """'head 3'; 'mean of heads' for a combined axis; any other string ('head 0' of a rollout) as it is."""
    if isinstance(head_id, str):
        return f"{head_id} of heads" if head_id in HEAD_AGGREGATES else head_id
    return f"head {head_id}"


def view_label(layer_id: int | str | None = None, head_id: int | str | None = None) -> str:
    """'layer 3 · head 2', 'rollout · mean of heads', or just the one part given."""
    parts = [] if layer_id is None else [layer_label(layer_id)]
    if head_id is not None:
        parts.append(head_label(head_id))
    return " · ".join(parts)
