"""Head analysis: what each attention head does, measured on its maps (numpy only).

For one head's map α, shaped [q, k] with T query rows, every metric is a number:

- entropy       mean over rows of −Σⱼ αᵢⱼ ln αᵢⱼ, in nats (Clark et al. 2019)
- entropy_normalized  the same, each row divided by ln(keys the row can see); rows that
                see one key (a causal row 0) have no spread to measure and are left out
- distance      mean over rows of Σⱼ αᵢⱼ |i − j| (Vig & Belinkov 2019)
- max           mean over rows of maxⱼ αᵢⱼ: how confident the head is (Voita et al. 2019)
- sink          mean over rows of αᵢ₀, the weight on position 0 (Xiao et al. 2023)
- special       mean over rows of the weight on special tokens ([CLS], [SEP], <s> …)
- punctuation   the same for tokens made only of punctuation (specials excluded)
- self, previous, next, duplicate, induction
                template scores Σ(α ⊙ D) / Σα, TransformerLens's `detect_head` "mul"
                measure without BOS or diagonal exclusion, for D = the identity, the
                sub-diagonal, the super-diagonal, "an earlier copy of my token" and
                "the token after an earlier copy of my token"

self/previous/next/sink compare query and key positions, duplicate/induction compare
their tokens by position too; a cross stack's queries and keys are two sequences, so
there these are None (null in JSON). A head's role is the highest of the template
scores if it reaches `Thresholds.role`, else `broad` when its normalised entropy
reaches `Thresholds.broad`, else `mixed`.

Over many sentences a `Corpus` keeps running means and variances per head (Welford),
so memory does not grow with the number of sentences.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import SelectionError
from .result import AttentionResult, MapKind, Stack, Tokens
from .tokentext import surface

METRICS = (
    "entropy",
    "entropy_normalized",
    "distance",
    "max",
    "sink",
    "special",
    "punctuation",
    "self",
    "previous",
    "next",
    "duplicate",
    "induction",
)
# the scores a role can come from, in the order that breaks ties
ROLE_METRICS = ("self", "previous", "next", "sink", "special", "punctuation", "duplicate", "induction")
ROLES = (*ROLE_METRICS, "broad", "mixed")
# these compare positions of the query and key sequences: undefined when those differ (cross)
POSITIONAL = frozenset({"self", "previous", "next", "sink", "duplicate", "induction"})


@dataclass(frozen=True)
class Thresholds:
    """When a score names a head's role, and when a head counts as broad."""

    role: float = 0.5  # a template/sink/special/punctuation score at least this names the role
    broad: float = 0.8  # else a normalised entropy at least this makes the head `broad`

    def __post_init__(self) -> None:
        for name in ("role", "broad"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise SelectionError(f"the {name} threshold must be between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class HeadScore:
    """One head's metrics: means over the sentences measured (None where undefined)."""

    stack: str
    layer: int  # the model's layer and head numbers
    head: int
    metrics: dict[str, float | None]
    std: dict[str, float | None]  # standard deviation over sentences (0 for one sentence)
    count: int  # sentences measured
    role: str
    score: float | None  # the value that decided the role (for `mixed`: its highest role score)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def role_of(metrics: Mapping[str, float | None], thresholds: Thresholds = Thresholds()) -> tuple[str, float | None]:
    """(role, the score that decided it) from one head's metrics."""
    best, best_score = None, -math.inf
    for name in ROLE_METRICS:  # strict > keeps the earlier name on a tie
        value = metrics.get(name)
        if value is not None and value > best_score:
            best, best_score = name, value
    if best is not None and best_score >= thresholds.role:
        return best, best_score
    spread = metrics.get("entropy_normalized")
    if spread is not None and spread >= thresholds.broad:
        return "broad", spread
    return "mixed", (best_score if best is not None else None)


# ---------------------------------------------------------------- tokens


def is_punctuation(token: str) -> bool:
    """A token made only of punctuation characters (Unicode categories P*)."""
    text = surface(token)
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def _masks(tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """(special, punctuation) as boolean [k] masks; punctuation leaves specials out."""
    special = np.array([tokens.is_special(j) for j in range(len(tokens))], dtype=bool)
    punct = np.array([is_punctuation(t) for t in tokens.texts], dtype=bool) & ~special
    return special, punct


def templates(tokens: Sequence[str]) -> dict[str, np.ndarray]:
    """The template matrices D, shaped [T, T], for a self-attention map over `tokens`."""
    T = len(tokens)
    ids = np.unique(np.array(tokens, dtype=object), return_inverse=True)[1].reshape(T) if T else np.zeros(0, int)
    same = ids[:, None] == ids[None, :]  # same[i, j]: token j equals token i
    earlier = np.tril(np.ones((T, T), dtype=bool), k=-1)  # j < i
    induction = np.zeros((T, T), dtype=bool)
    # D[i, j] = 1 when token j−1 equals token i and j−1 < i: look at what followed my earlier copy
    induction[:, 1:] = (same & earlier)[:, :-1]
    return {
        "self": np.eye(T, dtype=bool),
        "previous": np.eye(T, k=-1, dtype=bool),
        "next": np.eye(T, k=1, dtype=bool),
        "duplicate": same & earlier,
        "induction": induction,
    }


# ---------------------------------------------------------------- one stack


def _check(stack: Stack) -> None:
    """Metrics are for single heads' probability maps, on the tokens the model saw."""
    if stack.kind is not MapKind.PROBABILITY:
        raise SelectionError(
            f"{stack.name}: head metrics need attention probabilities, but this stack holds {stack.kind.value} "
            f"({'; '.join(stack.notes) or 'rows that do not sum to 1'})"
        )
    for what, axis, label in (
        ("layer", stack.layer_axis, stack.layer_label),
        ("head", stack.head_axis, stack.head_label),
    ):
        combined = next((i for i, o in enumerate(axis) if o.single is None), None)
        if combined is not None:
            raise SelectionError(
                f"{stack.name}: head metrics are per {what}, but this stack holds {label(combined)}",
                hint="measure the maps as the model gave them, before mean, max or rollout",
            )


def stack_metrics(stack: Stack, rows: slice | None = None) -> dict[str, np.ndarray]:
    """Every metric of every head of one stack, each a float64 [layers, heads] (NaN: undefined).

    `rows` limits the query rows measured (the induction probe measures the second copy only);
    positions and templates stay those of the whole sequence.
    """
    _check(stack)
    L, H, Q, K = stack.weights.shape
    keep = np.arange(Q)[rows if rows is not None else slice(None)]  # the query positions measured
    if not len(keep):
        raise SelectionError(f"{stack.name}: no query rows to measure")
    a = stack.weights[:, :, keep].astype(np.float64)  # (L, H, q, k); float64 so sums of 512 terms keep 1e-6
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)  # 0 ln 0 = 0
    per_row = -plogp.sum(-1)  # (L, H, q)
    out["entropy"] = per_row.mean(-1)
    # keys each row can see: all of them, or i + 1 for causal self-attention
    visible = keep + 1 if stack.causal and Q == K else np.full(len(keep), K)
    spread = visible > 1
    out["entropy_normalized"] = (
        (per_row[..., spread] / np.log(visible[spread])).mean(-1) if spread.any() else np.full((L, H), np.nan)
    )
    out["distance"] = (a * np.abs(keep[:, None] - np.arange(K)[None, :])).sum(-1).mean(-1)
    out["max"] = a.max(-1).mean(-1)
    special, punct = _masks(stack.key)
    out["special"] = a[..., special].sum(-1).mean(-1)
    out["punctuation"] = a[..., punct].sum(-1).mean(-1)
    if stack.name == "cross":
        for name in POSITIONAL:
            out[name] = np.full((L, H), np.nan)
        return {m: out[m] for m in METRICS}
    out["sink"] = a[..., 0].mean(-1)
    total = a.sum((-1, -2))  # (L, H)
    for name, D in templates(stack.query.texts).items():
        out[name] = (a * D[keep]).sum((-1, -2)) / total
    return {m: out[m] for m in METRICS}


# ---------------------------------------------------------------- many sentences


@dataclass
class _Running:
    """Count, mean and sum of squared deviations per head (Welford), NaN-aware."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> _Running:
        return cls(np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape))

    def add(self, x: np.ndarray) -> None:
        seen = ~np.isnan(x)
        self.count += seen
        delta = np.where(seen, x - self.mean, 0.0)
        self.mean += np.where(seen, delta / np.maximum(self.count, 1), 0.0)
        self.m2 += np.where(seen, delta * (np.where(seen, x, 0.0) - self.mean), 0.0)


@dataclass
class _StackTally:
    layers: tuple[int, ...]  # model numbers
    heads: tuple[int, ...]
    sentences: int = 0
    running: dict[str, _Running] = field(default_factory=dict)


class Corpus:
    """Head metrics averaged over sentences as they come; memory stays one tally per head."""

    def __init__(self) -> None:
        self.sentences = 0
        self.model: str | None = None
        self._stacks: dict[str, _StackTally] = {}

    def add(self, item: AttentionResult | Stack, rows: Mapping[str, slice] | None = None) -> None:
        """Measure one sentence's result (or one stack) and fold it into the means.

        `rows` limits the query rows measured, per stack name (see `stack_metrics`).
        """
        stacks = item.stacks if isinstance(item, AttentionResult) else (item,)
        if isinstance(item, AttentionResult):
            if self.model is not None and item.model != self.model:
                raise SelectionError(f"results of two models ({self.model}, {item.model}) cannot be averaged")
            self.model = item.model
        for stack in stacks:
            metrics = stack_metrics(stack, (rows or {}).get(stack.name))
            layers = tuple(o.ids[0] for o in stack.layer_axis)
            heads = tuple(o.ids[0] for o in stack.head_axis)
            tally = self._stacks.get(stack.name)
            if tally is None:
                shape = (len(layers), len(heads))
                tally = _StackTally(layers, heads, running={m: _Running.zeros(shape) for m in METRICS})
                self._stacks[stack.name] = tally
            elif (tally.layers, tally.heads) != (layers, heads):
                raise SelectionError(
                    f"{stack.name}: this result holds other layers or heads than the ones before "
                    f"({stack.layers_label()}, {stack.heads_label()})"
                )
            for name, values in metrics.items():
                tally.running[name].add(values)
            tally.sentences += 1
        self.sentences += 1

    def heads(self, thresholds: Thresholds = Thresholds()) -> list[HeadScore]:
        """Every head's means, standard deviations and role, in stack, layer, head order."""
        out = []
        for name, tally in self._stacks.items():
            for li, layer in enumerate(tally.layers):
                for hi, head in enumerate(tally.heads):
                    means: dict[str, float | None] = {}
                    stds: dict[str, float | None] = {}
                    for metric, run in tally.running.items():
                        n = int(run.count[li, hi])
                        means[metric] = float(run.mean[li, hi]) if n else None
                        stds[metric] = math.sqrt(max(run.m2[li, hi], 0.0) / n) if n else None
                    role, score = role_of(means, thresholds)
                    out.append(HeadScore(name, layer, head, means, stds, tally.sentences, role, score))
        return out


def measure(
    item: AttentionResult | Stack | Iterable[AttentionResult], thresholds: Thresholds = Thresholds()
) -> list[HeadScore]:
    """Metrics and role of every head of a result, a stack, or many results (averaged)."""
    corpus = Corpus()
    for one in [item] if isinstance(item, AttentionResult | Stack) else item:
        corpus.add(one)
    if not corpus.sentences:
        raise SelectionError("nothing to measure: no results were given")
    return corpus.heads(thresholds)


# ---------------------------------------------------------------- ranking

SORT_KEYS = ("role", *METRICS, "layer")


def rank(
    heads: Iterable[HeadScore],
    sort: str = "role",
    reverse: bool = False,
    role: str | None = None,
    top: int | None = None,
) -> list[HeadScore]:
    """Heads filtered to `role`, ordered by `sort`, the first `top` of them (None or 0: all).

    `role`: heads with a named role first, then broad, then mixed, each by its score, highest
    first; a metric: highest first; `layer`: the model's order. `reverse` turns the order
    round (lowest entropy first, say). Heads without a value for the key always come last.
    """
    if sort not in SORT_KEYS:
        raise SelectionError(f"cannot sort by {sort!r}", hint=f"choose one of: {', '.join(SORT_KEYS)}")
    if role is not None and role not in ROLES:
        raise SelectionError(f"unknown role {role!r}", hint=f"choose one of: {', '.join(ROLES)}")
    if top is not None and top < 0:
        raise SelectionError(f"the number of heads to list must be 0 (all) or more, got {top}")
    picked = [h for h in heads if role is None or h.role == role]

    def value(h: HeadScore) -> tuple[float, float] | None:
        if sort == "layer":
            return (0.0, 0.0)  # sorted() is stable: the model's order
        if sort == "role":
            group = 0 if h.role in ROLE_METRICS else 1 if h.role == "broad" else 2
            return None if h.score is None else (-group, h.score)
        v = h.metrics[sort]
        return None if v is None else (0.0, v)

    known = [h for h in picked if value(h) is not None]
    ordered = sorted(known, key=lambda h: value(h) or (0.0, 0.0), reverse=sort != "layer")
    if reverse:
        ordered.reverse()
    ordered += [h for h in picked if value(h) is None]
    return ordered[:top] if top else ordered
