"""Many inputs through one backend: batches of similar length, results in input order, bounded memory.

A padded batch runs at the length of its longest input, so every shorter one wastes the
difference (in tokens for the feed-forward layers, in T² for each attention map). Sorted
into batches by token count, bench/bench_pipeline.py's 1,000 mixed sentences run on 1.01x
their real tokens and 1.02x their T² instead of 3.1x and 7.3x in input order. Results must
still come out in input order, so:

- inputs are read a window at a time (WINDOW_BATCHES batches, at most WINDOW_TEXT bytes
  of text): however many there are, only a window of them is held;
- the window is sorted by token count (the backend's fast tokenizer; text bytes when it
  has none) and cut into batches, which run in the order of their earliest input; a batch
  of long inputs holds fewer of them (BATCH_CELLS), as its maps grow with B·T²;
- each result goes out as soon as every result before it has; results that must wait
  keep their weights in memory up to WAITING_BYTES, and beyond that in a temporary file
  until their turn (Waiting), so memory stays bounded whatever the lengths.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from typing import IO, Any

from .backends.types import Inputs
from .result import AttentionResult

WINDOW_BATCHES = 64  # batches per window: 1,024 inputs in batches of 16
WINDOW_TEXT = 4 << 20  # bytes of input text a window may hold
WAITING_BYTES = 4 << 20  # weights of waiting results kept in memory; the rest wait on disk
COUNT_CHARS = 1 << 16  # a text is counted on its first this many characters: enough to sort by
# padded query × key cells of one map, summed over a batch: 16 inputs of 32 tokens, 1 of 128 (a
# batch's attention is B·heads·T² floats per layer, and all its results are held at once)
BATCH_CELLS = 16 * 32 * 32

RunChunk = Callable[[list[Inputs]], list[AttentionResult]]


Counter = Callable[[list[Inputs]], list[int]]


def in_order(
    inputs: Iterable[Inputs],
    run: RunChunk,
    batch_size: int,
    count: Counter | None = None,
    check: Callable[[list[Inputs]], None] = lambda window: None,
    sort: bool = True,
) -> Iterator[AttentionResult]:
    """`run`'s results for `inputs`, in input order, run in length-sorted batches of at most `batch_size`.

    `count` gives each input's length in tokens (None: sort by text bytes, with no cap on
    a batch's cells); `check` sees each window before any of it runs. Without `sort`, the
    inputs run as they come, `batch_size` at a time (each batch is its own window).
    """
    size = max(1, batch_size)
    pending = iter(inputs)
    while window := (_window(pending, size) if sort else list(islice(pending, size))):
        check(window)
        yield from _window_in_order(window, run, size, count) if sort else run(window)


def _text_bytes(x: Inputs) -> int:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in (x.text, *x.extras().values()))


def _window(inputs: Iterator[Inputs], size: int) -> list[Inputs]:
    """The next inputs to sort together: one batch, then more up to WINDOW_BATCHES batches or WINDOW_TEXT bytes."""
    window = list(islice(inputs, size))
    if size == 1 or len(window) < size:  # nothing to sort (no padding), or the inputs have run out
        return window
    text = sum(map(_text_bytes, window))
    while len(window) < size * WINDOW_BATCHES and text < WINDOW_TEXT:
        x = next(inputs, None)
        if x is None:
            break
        window.append(x)
        text += _text_bytes(x)
    return window


def batches(lengths: Sequence[int], size: int, cells: int | None = BATCH_CELLS) -> list[list[int]]:
    """Positions cut into batches sorted by length: at most `size` each, and at most `cells` padded
    T² (count × longest²) unless one input alone has more; in the order of their earliest position."""
    out: list[list[int]] = []
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batch and (len(batch) == size or (cells and (len(batch) + 1) * lengths[i] ** 2 > cells)):
            out.append(batch)
            batch = []
        batch.append(i)
    if batch:
        out.append(batch)
    return sorted(out, key=min)


def _window_in_order(
    window: list[Inputs], run: RunChunk, size: int, count: Counter | None
) -> Iterator[AttentionResult]:
    """The window's results in its order: batches cut from it sorted by length, the batch holding
    the earliest input not yet run going first, so results go out as soon as those before them."""
    if len(window) == 1:
        yield from run(window)
        return
    lengths = count(window) if count is not None else [_text_bytes(x) for x in window]
    waiting = Waiting()
    out = 0
    try:
        for batch in batches(lengths, size, BATCH_CELLS if count is not None else None):
            for i, result in zip(batch, run([window[i] for i in batch])):
                waiting.put(i, result)
            while out in waiting:
                yield waiting.pop(out)
                out += 1
    finally:
        waiting.close()


class Waiting:
    """Results waiting for their turn: in memory up to `budget` bytes of weights, the weights of the
    rest in a temporary file (the rest of each result, tokens and all, is small and stays)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = WAITING_BYTES if budget is None else budget
        self.held: dict[int, AttentionResult] = {}
        self.held_bytes = 0
        # on disk: the result without weights, and (offset, shape) of each stack's weights in `file`
        self.spilled: dict[int, tuple[AttentionResult, list[tuple[int, tuple[int, ...]]]]] = {}
        self.file: IO[bytes] | None = None

    def __contains__(self, i: int) -> bool:
        return i in self.held or i in self.spilled

    def put(self, i: int, result: AttentionResult) -> None:
        import numpy as np

        size = sum(s.weights.nbytes for s in result.stacks)
        if self.held_bytes + size <= self.budget or not size:
            self.held[i] = result
            self.held_bytes += size
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="attnviz-waiting-")
        self.file.seek(0, 2)
        places = []
        for s in result.stacks:
            places.append((self.file.tell(), s.weights.shape))
            self.file.write(np.ascontiguousarray(s.weights, dtype=np.float32).data.cast("B"))
        empty = np.empty((1, 1, 0, 0), np.float32)  # a stand-in until the weights come back
        light = replace(result, stacks=tuple(replace(s, weights=empty) for s in result.stacks))
        self.spilled[i] = (light, places)

    def pop(self, i: int) -> AttentionResult:
        import numpy as np

        if i in self.held:
            result = self.held.pop(i)
            self.held_bytes -= sum(s.weights.nbytes for s in result.stacks)
            return result
        light, places = self.spilled.pop(i)
        assert self.file is not None
        stacks = []
        for s, (offset, shape) in zip(light.stacks, places):
            weights = np.empty(shape, dtype=np.float32)
            self.file.seek(offset)
            if self.file.readinto(weights.data.cast("B")) != weights.nbytes:  # type: ignore[attr-defined]
                raise OSError("a temporary file of waiting results came back short")
            stacks.append(replace(s, weights=weights))
        if not self.spilled:  # every spilled result went out: the file starts over
            self.file.seek(0)
            self.file.truncate()
        return replace(light, stacks=tuple(stacks))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# ---------------------------------------------------------------- token counts to sort by


def token_counter(backend: Any, max_tokens: int | None) -> Counter | None:
    """Counts of each input's tokens (sentence, pair), from the backend's fast tokenizer when it
    has one (the numpy MiniLM's tokenizers.Tokenizer, or a transformers fast tokenizer): one
    batched call for a window, ~0.1 ms an input. None when it has none (text bytes stand in)."""
    cap = COUNT_CHARS if not max_tokens else min(COUNT_CHARS, max_tokens * 64)  # long texts: their start

    def texts(window: Sequence[Inputs]) -> list[str]:
        return [" ".join(x.texts())[:cap] for x in window]

    tokenizer = getattr(backend, "tokenizer", None)
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover (tokenizers is a dependency)
        return None
    if isinstance(tokenizer, Tokenizer):
        return lambda window: [len(e.ids) for e in tokenizer.encode_batch(texts(window), add_special_tokens=False)]
    if isinstance(getattr(tokenizer, "backend_tokenizer", None), Tokenizer) and callable(tokenizer):

        def fast(window: list[Inputs]) -> list[int]:
            ids = tokenizer(texts(window), add_special_tokens=False, padding=False, truncation=False)["input_ids"]
            return [len(i) for i in ids]

        return fast
    return None
