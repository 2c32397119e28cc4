"""Views: pure functions that pick and combine attention weights.

They take an AttentionResult (or a Stack) and return a new one; nothing here
draws or prints. Layer and head specs are parsed here so every command and the
Python API share one meaning of "--layer 2:4" or "--head mean".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .errors import SelectionError, UsageError
from .result import HEAD_AGGREGATES, AttentionResult, Stack, Tokens, head_label


def parse_index_spec(spec: str, count: int, what: str) -> list[int]:
    """'all', 'last', 'N', '-1', 'A:B' (end exclusive) or comma lists of those → sorted indices."""
    spec = spec.strip().lower()
    valid = f"valid {what}s: 0..{count - 1} (or -1 for the last), 'all', 'last', 'A:B' (B excluded)"
    if what == "head":
        valid += ", or 'mean' / 'max' to combine them"
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
            raise UsageError(f"cannot read {what} {part!r}", hint=valid) from None
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


def _with_note(stack: Stack, note: str) -> tuple[str, ...]:
    return stack.notes if note in stack.notes else (*stack.notes, note)


def rollout(stack: Stack, head: str = "mean") -> Stack:
    """Attention rollout (Abnar & Zuidema 2020) across every layer of a self-attention stack.

    Per layer: heads combined ('mean', 'max' or one head), identity added for the
    residual path, rows renormalised; then the layers multiplied bottom-up. Rows of
    the result still sum to 1.
    """
    if len(stack.query) != len(stack.key) or stack.name == "cross":
        raise SelectionError("rollout needs self-attention (query = key tokens)", hint="use --stack encoder or decoder")
    h = head.strip().lower()
    if h in HEAD_AGGREGATES:
        per_layer = stack.weights.mean(axis=1) if h == "mean" else stack.weights.max(axis=1)  # (L, T, T)
    else:
        heads = parse_index_spec(h, stack.heads, "head")
        per_layer = stack.weights[:, heads].mean(axis=1)  # (L, T, T)
    T = per_layer.shape[-1]
    joint = np.eye(T, dtype=np.float64)
    for layer in per_layer.astype(np.float64):
        a = layer + np.eye(T)  # the residual connection carries each token onward
        a /= a.sum(axis=-1, keepdims=True)
        joint = a @ joint  # (T, T): how layer l's outputs draw on the input tokens
    # 'mean' | 'max' | 'head 3' | 'mean of heads 0,2'; the note words it with result.head_label
    label = h if h in HEAD_AGGREGATES else f"head {h}" if len(heads) == 1 else f"mean of heads {h}"
    return replace(
        stack,
        weights=joint.astype(np.float32)[None, None],  # (1, 1, T, T)
        layer_ids=("rollout",),
        head_ids=(label,),
        notes=_with_note(stack, f"rollout over {stack.layers} layers ({head_label(label)}, identity added)"),
    )


def hide_special(stack: Stack, renormalize: bool = False) -> Stack:
    """Drop [CLS]/[SEP]/<s>/</s>/BOS rows and columns; optionally renormalise rows to 1."""
    q_keep = [i for i in range(len(stack.query)) if not stack.query.is_special(i)]
    k_keep = [i for i in range(len(stack.key)) if not stack.key.is_special(i)]
    if not q_keep or not k_keep:
        raise SelectionError("every token is special: nothing would be left to show", hint="drop --hide-special")
    w = stack.weights[:, :, q_keep][:, :, :, k_keep]
    if renormalize:
        w = w / np.maximum(w.sum(axis=-1, keepdims=True), np.finfo(np.float32).tiny)
        note = "special tokens hidden; rows renormalised to sum to 1"
    else:
        note = "special tokens hidden: rows no longer sum to 1 (use --renormalize)"
    return replace(
        stack,
        query=stack.query.take(q_keep),
        key=stack.key.take(k_keep),
        weights=np.ascontiguousarray(w, dtype=np.float32),
        notes=_with_note(stack, note),
    )


def _word_groups(tokens: Tokens) -> list[list[int]]:
    """Runs of consecutive pieces that share a word id; specials and id-less tokens stand alone."""
    groups: list[list[int]] = []
    previous: int | None = None
    for i in range(len(tokens)):
        word = tokens.word_ids[i] if tokens.word_ids else None
        if word is not None and word == previous and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
        previous = word
    return groups


def _join_pieces(pieces: list[str]) -> str:
    return pieces[0] + "".join(p.removeprefix("##") for p in pieces[1:])


def _merged_tokens(tokens: Tokens, groups: list[list[int]]) -> Tokens:
    return Tokens(
        texts=tuple(_join_pieces([tokens.texts[i] for i in g]) for g in groups),
        special=tuple(tokens.is_special(g[0]) for g in groups) if tokens.special else (),
        word_ids=tuple(tokens.word_ids[g[0]] for g in groups) if tokens.word_ids else (),
        segments=tuple(tokens.segments[g[0]] for g in groups) if tokens.segments else (),
    )


def merge_words(stack: Stack) -> Stack:
    """Word pieces → words: keys summed over a word's pieces, queries averaged (rows keep summing to 1)."""
    q_groups, k_groups = _word_groups(stack.query), _word_groups(stack.key)
    w = np.stack([stack.weights[..., g].sum(axis=-1) for g in k_groups], axis=-1)  # (L, H, q, words)
    w = np.stack([w[:, :, g].mean(axis=2) for g in q_groups], axis=2)  # (L, H, words, words)
    return replace(
        stack,
        query=_merged_tokens(stack.query, q_groups),
        key=_merged_tokens(stack.key, k_groups),
        weights=np.ascontiguousarray(w, dtype=np.float32),
        notes=_with_note(stack, "word pieces merged: keys summed, queries averaged"),
    )


def token_window(stack: Stack, spec: str) -> Stack:
    """Rows and columns A:B (end exclusive) of a self-attention stack; keys A:B of a cross stack."""

    def bounds(n: int) -> list[int]:
        lo, sep, hi = spec.partition(":")
        try:
            start = int(lo) if lo.strip() else 0
            stop = int(hi) if hi.strip() else n
        except ValueError:
            raise UsageError(f"cannot read --tokens {spec!r}", hint="write A:B, e.g. 0:20") from None
        if not sep or not 0 <= start < stop:
            raise UsageError(f"cannot read --tokens {spec!r}", hint="write A:B with A < B, e.g. 0:20")
        if start >= n:
            raise SelectionError(f"--tokens {spec} starts past the end: there are {n} tokens (0..{n - 1})")
        return list(range(start, min(stop, n)))

    k_keep = bounds(len(stack.key))
    q_keep = k_keep if stack.name != "cross" else list(range(len(stack.query)))
    w = stack.weights[:, :, q_keep][:, :, :, k_keep]
    return replace(
        stack,
        query=stack.query.take(q_keep),
        key=stack.key.take(k_keep),
        weights=np.ascontiguousarray(w),
        notes=_with_note(stack, f"tokens {k_keep[0]}:{k_keep[-1] + 1} only: rows may not sum to 1"),
    )


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


AGGREGATES = ("none", "mean", "max", "rollout")
ROLLOUT_LAYER_NOTE = "rollout uses every layer; --layer is ignored"


def rollout_stacks(result: AttentionResult, stack: str | None) -> tuple[Stack, ...]:
    """The stacks rollout can use: the named one if it is self-attention, else every stack but cross."""
    usable = tuple(s for s in result.stacks if s.name != "cross")
    if usable:
        hint = f"use --stack {' or '.join(s.name for s in usable)}, or leave --stack out"
    else:
        hint = "this model has only a cross stack: use --agg none, mean or max"
    if stack is None or stack == "all":
        if not usable:
            raise SelectionError("rollout needs self-attention, and this model has only cross-attention", hint=hint)
        return usable
    picked = result.stack(stack)
    if picked.name == "cross":
        raise SelectionError("rollout needs self-attention: the cross stack has none", hint=hint)
    return (picked,)


def view(
    result: AttentionResult,
    layer: str = "last",
    head: str = "all",
    stack: str | None = None,
    agg: str = "none",
    hide_specials: bool = False,
    renormalize: bool = False,
    words: bool = False,
    tokens: str | None = None,
) -> AttentionResult:
    """The one view pipeline `show` and `export` share.

    Order matters: layers/heads (or rollout, which needs every layer) are taken on
    the full matrices first; then word pieces merge, specials hide, and a token
    window cuts — each of which would otherwise change what rollout multiplies.

    Rollout needs self-attention: with no stack named it takes every stack but
    `cross`; naming `cross`, or a model with only a cross stack, is a SelectionError.
    Rollout always multiplies every layer, so `layer` is not used; since the defaults
    ('last' for show, 'all' for export) cannot be told from a user's choice, any other
    layer spec adds the note "rollout uses every layer; --layer is ignored".
    """
    if agg not in AGGREGATES:
        raise UsageError(f"unknown --agg {agg!r}", hint=f"choose one of: {', '.join(AGGREGATES)}")
    if agg in HEAD_AGGREGATES:
        head = agg
    stacks = []
    for s in rollout_stacks(result, stack) if agg == "rollout" else pick_stacks(result, stack):
        if agg == "rollout":
            s = rollout(s, "mean" if head == "all" else head)
            if layer.strip().lower() not in ("last", "all"):
                s = replace(s, notes=_with_note(s, ROLLOUT_LAYER_NOTE))
        else:
            s = select_stack(s, layer, head)
        if words:
            s = merge_words(s)
        if hide_specials:
            s = hide_special(s, renormalize)
        if tokens:
            s = token_window(s, tokens)
        stacks.append(s)
    return replace(result, stacks=tuple(stacks))


def query_view(result: AttentionResult, spec: str) -> AttentionResult:
    """Only one query token's row (by index or text, see query_index) in every stack: [L, H, 1, k]."""
    stacks = []
    for s in result.stacks:
        i = query_index(s.query, spec)
        stacks.append(
            replace(
                s,
                query=s.query.take([i]),
                weights=np.ascontiguousarray(s.weights[:, :, i : i + 1]),  # (L, H, 1, k)
            )
        )
    return replace(result, stacks=tuple(stacks))
