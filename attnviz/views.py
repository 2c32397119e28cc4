"""Views: pure functions that pick and combine attention weights.

They take an AttentionResult (or a Stack) and return a new one; nothing here
draws or prints. Layer and head specs are parsed here so every command and the
Python API share one meaning of "--layer 2:4" or "--head mean".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .errors import SelectionError
from .result import AttentionResult, Stack

HEAD_AGGREGATES = ("mean", "max")


def parse_index_spec(spec: str, count: int, what: str) -> list[int]:
    """'all', 'last', 'N', '-1', 'A:B' (end exclusive) or comma lists of those → sorted indices."""
    spec = spec.strip().lower()
    valid = f"valid {what}s: 0..{count - 1} (or -1 for the last), 'all', 'last', 'A:B'"
    if spec == "all":
        return list(range(count))
    if spec == "last":
        return [count - 1]
    picked: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                lo, hi = part.split(":", 1)
                start = int(lo) if lo else 0
                stop = int(hi) if hi else count
                if not (0 <= start < stop <= count):
                    raise SelectionError(f"{what} range {part!r} is outside 0..{count}", hint=valid)
                picked.extend(range(start, stop))
                continue
            index = int(part)
        except ValueError:
            raise SelectionError(f"cannot read {what} {part!r}", hint=valid) from None
        if not -count <= index < count:
            raise SelectionError(f"{what} {index} does not exist: this model has {count} {what}s (0..{count - 1})")
        picked.append(index % count)
    return sorted(set(picked))


def select_stack(stack: Stack, layer: str = "last", head: str = "all") -> Stack:
    """Keep the chosen layers; keep chosen heads or aggregate them ('mean' / 'max')."""
    layers = parse_index_spec(layer, stack.layers, "layer")
    w = stack.weights[layers]  # (L', H, q, k)
    layer_ids = tuple(stack.layer_ids[i] for i in layers)
    h = head.strip().lower()
    if h in HEAD_AGGREGATES:
        agg = w.mean(axis=1, keepdims=True) if h == "mean" else w.max(axis=1, keepdims=True)  # (L', 1, q, k)
        return replace(stack, weights=agg.astype(np.float32), layer_ids=layer_ids, head_ids=(h,))
    heads = parse_index_spec(head, stack.heads, "head")
    return replace(
        stack,
        weights=np.ascontiguousarray(w[:, heads]),
        layer_ids=layer_ids,
        head_ids=tuple(stack.head_ids[i] for i in heads),
    )


def pick_stacks(result: AttentionResult, stack: str | None) -> tuple[Stack, ...]:
    """One named stack, or all of them when `stack` is None / 'all'."""
    if stack is None or stack == "all":
        return result.stacks
    return (result.stack(stack),)


def select(
    result: AttentionResult, layer: str = "last", head: str = "all", stack: str | None = None
) -> AttentionResult:
    """The result with only the chosen stacks, layers and heads."""
    return replace(result, stacks=tuple(select_stack(s, layer, head) for s in pick_stacks(result, stack)))
