"""Views: pure functions that pick and combine attention maps.

Each takes an AttentionResult or a Stack and returns the same kind of thing, with the
provenance of every map and a note for whatever a reader must know (hidden tokens,
merged words). Nothing here draws or prints. `apply(result, spec)` is the one pipeline
the CLI, export and saved-file rendering share; the functions below are its steps and
the Python API:

    >>> views.rollout(result)                       # every self-attention stack
    >>> views.select(result, layer=[0, 5], head="mean")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import numpy as np

from .errors import Fix, SelectionError
from .result import AttentionResult, MapKind, Origin, Stack, Tokens, axis_label
from .spec import ALL, LAST, Combine, Indices, TokenWindow, ViewSpec, parse_head

R = TypeVar("R", AttentionResult, Stack)
Selection = str | int | Sequence[int] | range | Indices


def _each(x: R, step: Callable[[Stack], Stack]) -> R:
    """Apply a per-stack step to a stack, or to every stack of a result."""
    if isinstance(x, Stack):
        return step(x)
    return replace(x, stacks=tuple(step(s) for s in x.stacks))


def _with_note(stack: Stack, note: str) -> tuple[str, ...]:
    return stack.notes if note in stack.notes else (*stack.notes, note)


# ---------------------------------------------------------------- layers and heads


def positions(indices: Indices, axis: Sequence[Origin], total: int | None, what: str) -> list[int]:
    """Where on `axis` the model's layers/heads named by `indices` are, in axis order.

    Numbers are model numbers (negative: from the model's end); 'all' and 'last' are
    about what the axis holds. SelectionError for a number the model lacks or the
    axis does not hold.
    """
    n = len(axis)
    if indices.is_all:
        return list(range(n))
    if indices.last:
        return [n - 1]
    held = {o.single: i for i, o in enumerate(axis) if o.single is not None}
    # the model's count; a file that does not record it (attnviz/1) is checked by what it holds
    count = total if total is not None else max(held, default=-1) + 1
    wanted: list[int] = []
    for part in indices.parts:
        if isinstance(part, int):
            if total is not None and not -count <= part < count:
                raise SelectionError(f"{what} {part} does not exist: this model has {count} {what}s (0..{count - 1})")
            wanted.append(part % count)
            continue
        start, stop = part
        if total is not None and any(b is not None and not -count <= b <= count for b in part):
            shown = f"{'' if start is None else start}:{'' if stop is None else stop}"
            raise SelectionError(f"{what} range {shown} is outside 0..{count}: this model has {count} {what}s")
        picked = range(count)[slice(start, stop)]
        if not picked:
            raise SelectionError(f"{what} range {indices.text} picks no {what}")
        wanted.extend(picked)
    for m in wanted:
        if m not in held:
            raise SelectionError(
                f"{what} {m} is not in this result: it holds {axis_label(axis, total, what)}",
                fix=Fix.SAVE_ALL_LAYERS,
            )
    return sorted({held[m] for m in wanted})


def _combine_heads(stack: Stack, hi: list[int], combine: Combine) -> tuple[np.ndarray, Origin, MapKind]:
    """Heads at positions `hi` made one map per layer: (L, 1, q, k), its origin, its kind."""
    chosen = [stack.head_axis[i] for i in hi]
    if len(chosen) == 1 and chosen[0].combine is combine:  # already so: combining again changes nothing
        return stack.weights[:, hi], chosen[0], stack.kind
    if any(o.single is None for o in chosen):
        combined = ", ".join(stack.head_label(i) for i in hi)
        raise SelectionError(f"the heads here are already combined ({combined}); they cannot be combined again")
    w = stack.weights[:, hi]  # (L, H', q, k)
    merged = w.mean(axis=1, keepdims=True) if combine is Combine.MEAN else w.max(axis=1, keepdims=True)
    # a mean of distributions is one; the max of several is not
    kind = (
        MapKind.WEIGHTS if combine is Combine.MAX and len(hi) > 1 and stack.kind is MapKind.PROBABILITY else stack.kind
    )
    ids = tuple(o.ids[0] for o in chosen)
    return merged.astype(np.float32), Origin(ids, combine), kind


def select_stack(stack: Stack, layers: Indices = LAST, heads: Indices = ALL, combine: Combine | None = None) -> Stack:
    """Keep the chosen layers; keep the chosen heads, or make them one map (mean / max)."""
    li = positions(layers, stack.layer_axis, stack.model_layers, "layer")
    hi = positions(heads, stack.head_axis, stack.model_heads, "head")
    layer_axis = tuple(stack.layer_axis[i] for i in li)
    # keeping every layer (head) in order keeps the array itself: views never write into weights
    every_layer, every_head = li == list(range(stack.layers)), hi == list(range(stack.heads))
    part = (
        stack if every_layer else replace(stack, weights=np.ascontiguousarray(stack.weights[li]), layer_axis=layer_axis)
    )
    if combine is None:
        if every_head:
            return part
        return replace(
            part, weights=np.ascontiguousarray(part.weights[:, hi]), head_axis=tuple(stack.head_axis[i] for i in hi)
        )
    w, origin, kind = _combine_heads(part, hi, combine)
    return replace(part, weights=np.ascontiguousarray(w), head_axis=(origin,), kind=kind)


def select(x: R, layer: Selection = "last", head: Selection = "all", stack: str | None = None) -> R:
    """The chosen layers and heads ('mean' / 'max' combine them) of a stack, or of a result's stacks."""
    layers = Indices.parse(layer, "layer")
    heads, combine = parse_head(head)
    if isinstance(x, AttentionResult) and stack is not None:
        x = replace(x, stacks=(x.stack(stack),))
    return _each(x, lambda s: select_stack(s, layers, heads, combine))


# ---------------------------------------------------------------- rollout


ROLLOUT_NOTE = "rollout: identity added to each layer (the residual path), rows renormalised, layers multiplied"


def rollout_stack(stack: Stack, heads: Indices = ALL, combine: Combine | None = None) -> Stack:
    """Attention rollout (Abnar & Zuidema 2020) across every layer of a self-attention stack.

    Per layer: the chosen heads combined (mean unless `combine` is max; one head as
    itself), the identity added for the residual path, rows renormalised; then the
    layers multiplied bottom-up. Rows of the result sum to 1.
    """
    if stack.name == "cross" or len(stack.query) != len(stack.key):
        raise SelectionError("rollout needs self-attention (query tokens = key tokens)", fix=Fix.PICK_STACK)
    L = stack.model_layers
    if L is None or tuple(o.single for o in stack.layer_axis) != tuple(range(L)):
        raise SelectionError(
            f"rollout multiplies every layer of the model, and this result holds {stack.layers_label()}",
            fix=Fix.SAVE_ALL_LAYERS,
        )
    if stack.token_view:
        raise SelectionError(
            "rollout needs the model's own token maps, and these tokens were already changed "
            "(merged words, hidden special tokens, a token window or one query)",
            fix=Fix.SAVE_ALL_LAYERS,
        )
    max_of_heads = all(o.combine is Combine.MAX for o in stack.head_axis)  # rows are renormalised below anyway
    if stack.kind is not MapKind.PROBABILITY and not (stack.kind is MapKind.WEIGHTS and max_of_heads):
        raise SelectionError(f"rollout needs attention probabilities, and these maps are {stack.kind.value}")
    hi = positions(heads, stack.head_axis, stack.model_heads, "head")
    if len(hi) == 1 and combine is None:
        per_layer, origin = stack.weights[:, hi[0]], stack.head_axis[hi[0]]  # (L, T, T)
    else:
        w, origin, _ = _combine_heads(stack, hi, combine or Combine.MEAN)
        per_layer = w[:, 0]  # (L, T, T)
    T = per_layer.shape[-1]
    joint = np.eye(T, dtype=np.float64)
    for layer in per_layer.astype(np.float64):
        a = layer + np.eye(T)  # the residual connection carries each token onward
        a /= a.sum(axis=-1, keepdims=True)
        joint = a @ joint  # (T, T): how this layer's outputs draw on the input tokens
    return replace(
        stack,
        weights=joint.astype(np.float32)[None, None],  # (1, 1, T, T)
        layer_axis=(Origin(tuple(range(L)), Combine.ROLLOUT),),
        head_axis=(origin,),
        kind=MapKind.PROBABILITY,
        notes=_with_note(stack, ROLLOUT_NOTE),
    )


def rollout_stacks(result: AttentionResult, stack: str | None = None) -> tuple[Stack, ...]:
    """The stacks rollout can use: the named one if it is self-attention, else every stack but cross."""
    usable = tuple(s for s in result.stacks if s.name != "cross")
    choices = " or ".join(s.name for s in usable)
    if stack is None:
        if not usable:
            raise SelectionError(
                "rollout needs self-attention, and this result has only cross-attention", fix=Fix.NO_ROLLOUT
            )
        return usable
    picked = result.stack(stack)
    if picked.name == "cross":
        raise SelectionError(
            "rollout needs self-attention: the cross stack has none",
            fix=Fix.PICK_STACK if usable else Fix.NO_ROLLOUT,
            stacks=choices,
        )
    return (picked,)


def rollout(x: R, head: Selection = "all") -> R:
    """Rollout of a stack, or of every self-attention stack of a result ('max' rolls out the max of heads)."""
    heads, combine = parse_head(head)
    if isinstance(x, Stack):
        return rollout_stack(x, heads, combine)
    return replace(x, stacks=tuple(rollout_stack(s, heads, combine) for s in rollout_stacks(x)))


# ---------------------------------------------------------------- tokens


def _need(tokens: Tokens, field: str, what: str) -> None:
    if len(tokens) and not getattr(tokens, field):
        raise SelectionError(f"this result does not record {what} (files saved by attnviz 0.1 do not)")


def hide_special_stack(stack: Stack, renormalize: bool = False) -> Stack:
    """Drop [CLS]/[SEP]/<s>/</s>/BOS rows and columns; optionally renormalise rows to 1."""
    for tokens in (stack.query, stack.key):
        _need(tokens, "special", "which tokens are special")
    q_keep = [i for i in range(len(stack.query)) if not stack.query.is_special(i)]
    k_keep = [i for i in range(len(stack.key)) if not stack.key.is_special(i)]
    if not q_keep or not k_keep:
        raise SelectionError("every token is special: nothing would be left to show", fix=Fix.KEEP_SPECIALS)
    if len(q_keep) == len(stack.query) and len(k_keep) == len(stack.key):
        return stack  # no special tokens here (GPT-2, the scratch model): nothing to hide, nothing to say
    w = stack.weights[:, :, q_keep][:, :, :, k_keep]
    kind = stack.kind
    if renormalize:
        if kind is MapKind.SIGNED:
            raise SelectionError("signed maps cannot be renormalised into distributions")
        w = w / np.maximum(w.sum(axis=-1, keepdims=True), np.finfo(np.float32).tiny)
        note, kind = "special tokens hidden; rows renormalised to sum to 1", MapKind.PROBABILITY
    else:
        note = "special tokens hidden: rows no longer sum to 1"
        if kind is MapKind.PROBABILITY and len(k_keep) < len(stack.key):
            kind = MapKind.WEIGHTS
    return replace(
        stack,
        query=stack.query.take(q_keep),
        key=stack.key.take(k_keep),
        weights=np.ascontiguousarray(w, dtype=np.float32),
        kind=kind,
        token_view=True,
        notes=_with_note(stack, note),
    )


def hide_special(x: R, renormalize: bool = False) -> R:
    return _each(x, lambda s: hide_special_stack(s, renormalize))


def word_groups(tokens: Tokens) -> list[list[int]]:
    """Runs of consecutive pieces that share a word id; specials and id-less tokens stand alone,
    and a word never joins given pieces with generated ones (each word is one or the other)."""
    groups: list[list[int]] = []
    previous: tuple[int, int, bool] | None = None
    for i in range(len(tokens)):
        word = tokens.word_ids[i] if tokens.word_ids else None
        # word ids restart in sentence B: a word is its (segment, id)
        key = None if word is None else (tokens.segments[i] if tokens.segments else 0, word, tokens.is_generated(i))
        if key is not None and key == previous and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
        previous = key
    return groups


def _join_pieces(pieces: list[str]) -> str:
    return pieces[0] + "".join(p.removeprefix("##") for p in pieces[1:])


def _merged_tokens(tokens: Tokens, groups: list[list[int]]) -> Tokens:
    return Tokens(
        texts=tuple(_join_pieces([tokens.texts[i] for i in g]) for g in groups),
        special=tuple(tokens.is_special(g[0]) for g in groups) if tokens.special else (),
        word_ids=tuple(tokens.word_ids[g[0]] for g in groups) if tokens.word_ids else (),
        segments=tuple(tokens.segments[g[0]] for g in groups) if tokens.segments else (),
        offsets=tuple((tokens.offsets[g[0]][0], tokens.offsets[g[-1]][1]) for g in groups) if tokens.offsets else (),
        generated=tuple(tokens.is_generated(g[0]) for g in groups) if tokens.generated else (),
    )


def merge_words_stack(stack: Stack) -> Stack:
    """Word pieces → words: keys summed over a word's pieces, queries averaged (rows keep their sums)."""
    for tokens in (stack.query, stack.key):
        _need(tokens, "word_ids", "which pieces make up a word")
    q_groups, k_groups = word_groups(stack.query), word_groups(stack.key)
    w = np.stack([stack.weights[..., g].sum(axis=-1) for g in k_groups], axis=-1)  # (L, H, q, words)
    w = np.stack([w[:, :, g].mean(axis=2) for g in q_groups], axis=2)  # (L, H, words, words)
    return replace(
        stack,
        query=_merged_tokens(stack.query, q_groups),
        key=_merged_tokens(stack.key, k_groups),
        weights=np.ascontiguousarray(w, dtype=np.float32),
        token_view=True,
        notes=_with_note(stack, "word pieces merged into words: keys summed, queries averaged"),
    )


def merge_words(x: R) -> R:
    return _each(x, merge_words_stack)


def token_window_stack(stack: Stack, window: TokenWindow) -> Stack:
    """Rows and columns start:stop of a self-attention stack; keys start:stop of a cross stack."""
    n = len(stack.key)
    if window.start >= n:
        raise SelectionError(f"token window {window} starts past the end: there are {n} tokens (0..{n - 1})")
    k_keep = list(range(window.start, min(window.stop if window.stop is not None else n, n)))
    q_keep = k_keep if stack.name != "cross" else list(range(len(stack.query)))
    rows = stack.weights[:, :, q_keep]  # (L, H, q', k)
    w = np.ascontiguousarray(rows[:, :, :, k_keep])
    kind, note = stack.kind, f"tokens {k_keep[0]}:{k_keep[-1] + 1} only"
    # rows lose what the cut keys held (causal rows before the window's end lose nothing)
    lost = rows.sum(axis=-1, dtype=np.float64) - w.sum(axis=-1, dtype=np.float64)
    if kind is MapKind.PROBABILITY and lost.size and float(lost.max()) > 1e-6:
        kind, note = MapKind.WEIGHTS, note + ": rows no longer sum to 1"
    return replace(
        stack,
        query=stack.query.take(q_keep),
        key=stack.key.take(k_keep),
        weights=w,
        kind=kind,
        token_view=True,
        notes=_with_note(stack, note),
    )


def token_window(x: R, window: str | tuple[int, int | None] | TokenWindow) -> R:
    parsed = TokenWindow.parse(window)
    return _each(x, lambda s: token_window_stack(s, parsed))


def query_index(tokens: Tokens, spec: str) -> int:
    """A query token by index ('3', '-1') or by its text ('dream', first match, case-insensitive)."""
    n = len(tokens)
    try:
        index = int(spec)
    except ValueError:
        wanted = spec.strip().lower()
        for i, text in enumerate(tokens.texts):
            if text.lower().removeprefix("##").lstrip("Ġ▁") == wanted or text.lower() == wanted:
                return i
        raise SelectionError(
            f"no query token {spec!r}", hint=f"tokens: {' '.join(tokens.texts[:30])}{' …' if n > 30 else ''}"
        ) from None
    if not -n <= index < n:
        raise SelectionError(f"query {index} does not exist: there are {n} query tokens (0..{n - 1})")
    return index % n


def query_row_stack(stack: Stack, token: str) -> Stack:
    """One query token's row (by index as shown, or by text): weights [L, H, 1, k]."""
    i = query_index(stack.query, token)
    rows = np.ascontiguousarray(stack.weights[:, :, i : i + 1])  # (L, H, 1, k)
    return replace(stack, query=stack.query.take([i]), weights=rows, token_view=True)


def query_row(x: R, token: str | int) -> R:
    return _each(x, lambda s: query_row_stack(s, str(token)))


# ---------------------------------------------------------------- the pipeline


def apply(result: AttentionResult, spec: ViewSpec) -> AttentionResult:
    """The view `spec` describes, in its order (see ViewSpec).

    Layers and heads (or rollout, which needs every layer) are taken on the full
    matrices first; word pieces merge, specials hide and a token window cuts after,
    since each would change what rollout multiplies. Rollout always multiplies every
    layer: a layer choice other than 'all' is noted as ignored.
    """
    stack = None if spec.stack is None else spec.stack.value
    stacks = []
    picked = (
        rollout_stacks(result, stack) if spec.rollout else result.stacks if stack is None else (result.stack(stack),)
    )
    for s in picked:
        try:
            stacks.append(_apply_stack(s, spec))
        except SelectionError as exc:
            if len(result.stacks) == 1:
                raise
            raise SelectionError(f"{s.name}: {exc.message}", exc.hint, fix=exc.fix, **exc.details) from None
    return replace(result, stacks=tuple(stacks))


def _apply_stack(s: Stack, spec: ViewSpec) -> Stack:
    """One stack through the spec's steps, in apply()'s order."""
    if spec.rollout:
        s = rollout_stack(s, spec.heads, spec.combine)
        if spec.layers is not None and not spec.layers.is_all:
            ignored = f"rollout uses every layer; the layer choice ({spec.layers.text}) is ignored"
            s = replace(s, notes=_with_note(s, ignored))
    else:
        s = select_stack(s, spec.layers or LAST, spec.heads, spec.combine)
    if spec.words:
        s = merge_words_stack(s)
    if spec.hide_special:
        s = hide_special_stack(s, spec.renormalize)
    if spec.tokens is not None:
        s = token_window_stack(s, spec.tokens)
    if spec.query is not None:
        s = query_row_stack(s, spec.query)
    return s
