"""The induction probe: random tokens from the model's vocabulary, repeated twice.

An induction head, at the second copy of a token, attends to the token that followed
its first copy. Random tokens leave nothing else to go on, so the heads that still
find the next token are the induction heads (Olsson et al. 2022). The probe is text,
so every backend runs it the usual way: words that the tokenizer keeps whole, joined
by spaces behind one lead word (so every copy's first token has its space mark too),
checked after tokenizing that the two copies really are equal token for token.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import InputError
from .result import Tokens
from .tokentext import surface

DEFAULT_LENGTH = 50  # tokens in each copy, when the model has room for them
_SPACE_MARKS = ("Ġ", "▁")


@dataclass(frozen=True)
class Probe:
    text: str
    length: int  # words in each copy


def candidates(vocabulary: Sequence[str], whole: bool = True) -> list[str]:
    """Words from the vocabulary, letters only. `whole`: two or more letters, each a token
    that starts a word; otherwise any piece (small vocabularies have few whole words)."""
    marked = [t for t in vocabulary if t.startswith(_SPACE_MARKS)]
    pool = (marked if whole else []) or [t for t in vocabulary if not t.startswith("##")]
    words = {surface(t) for t in pool}
    return sorted(w for w in words if w.isalpha() and (len(w) >= 2 or not whole))


def build(vocabulary: Sequence[str], length: int, seed: int) -> Probe:
    """`length` distinct random words (seeded) behind one lead word, the sequence written twice."""
    words = candidates(vocabulary)
    if len(words) < length + 1:
        words = candidates(vocabulary, whole=False)
    if len(words) < length + 1:
        raise InputError(
            f"the vocabulary has {len(words)} words made of letters; the probe needs {length + 1}",
            hint="ask for a shorter probe with --probe-length",
        )
    lead, *chosen = random.Random(seed).sample(words, length + 1)
    return Probe(" ".join([lead, *chosen, *chosen]), length)


def second_copy(tokens: Tokens) -> slice | None:
    """Positions of the second copy in the probe's tokens, or None when the copies differ."""
    plain = [i for i in range(len(tokens)) if not tokens.is_special(i)]
    texts = [tokens.texts[i] for i in plain]
    for lead in range(1, len(texts)):  # the lead word is one token or a few
        rest = len(texts) - lead
        half = rest // 2
        if rest % 2 or half < 2:
            continue
        if texts[lead : lead + half] == texts[lead + half :]:
            return slice(plain[lead + half], plain[-1] + 1)
    return None


def fitted(
    vocabulary: Sequence[str], count: Callable[[str], int], limit: int | None, length: int | None, seed: int
) -> Probe:
    """The probe with `length` words, or (not given) the most up to 50 whose tokens fit `limit`.

    Words can be several tokens each, so the length is found by tokenizing (`count`).
    """
    n = length or DEFAULT_LENGTH
    for _ in range(8):
        probe = build(vocabulary, n, seed)
        tokens = count(probe.text)
        if limit is None or tokens <= limit:
            return probe
        if length is not None or n <= 2:
            break
        n = max(2, min(n - 1, n * limit // tokens - 1))
    raise InputError(
        f"the probe is {tokens} tokens long; the model takes at most {limit}",
        hint="ask for a shorter probe with --probe-length",
    )
