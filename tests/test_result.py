"""AttentionResult validation and the attnviz/1 JSON document."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnviz.result import AttentionResult, Stack, Tokens


def _stack(weights: np.ndarray, n: int = 3) -> Stack:
    toks = Tokens(tuple("abcdefgh"[:n]))
    return Stack("encoder", toks, toks, weights)


def test_valid_result_round_trips_through_json():
    w = np.full((2, 3, 3, 3), 1 / 3, dtype=np.float32)
    r = AttentionResult("m", "a b c", (_stack(w),)).validate()
    doc = json.loads(json.dumps(r.to_json()))
    assert doc["schema"] == "attnviz/1"
    (s,) = doc["stacks"]
    assert s["query_tokens"] == ["a", "b", "c"] and s["layers"] == [0, 1] and s["heads"] == [0, 1, 2]
    assert np.array_equal(np.asarray(s["attention"], dtype=np.float32), w)


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.full((1, 1, 3, 3), 0.5, dtype=np.float32), "rows sum to 1"),
        (np.full((1, 1, 3, 2), 0.5, dtype=np.float32), "for 3 query and 3 key tokens"),
        (np.full((1, 1, 3, 3), 1 / 3, dtype=np.float64), "must be float32"),
        (np.full((1, 1, 3, 3), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_validation_rejects_broken_stacks(weights, message):
    with pytest.raises(ValueError, match=message):
        AttentionResult("m", "t", (_stack(weights),)).validate()


def test_tokens_metadata_must_align():
    with pytest.raises(ValueError, match="special has 1 entries for 2 tokens"):
        Tokens(("a", "b"), special=(True,))
