"""AttentionResult validation by map kind, and the attnviz/2 JSON document in and out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnviz.result import AttentionResult, MapKind, Origin, Stack, Tokens
from attnviz.spec import Combine


def _stack(weights: np.ndarray, n: int = 3, kind: MapKind = MapKind.PROBABILITY) -> Stack:
    toks = Tokens(tuple("abcdefgh"[:n]))
    return Stack("encoder", toks, toks, weights, kind=kind)


def test_a_result_round_trips_through_its_json_document():
    w = np.random.default_rng(0).random((2, 3, 3, 3), dtype=np.float32)
    w /= w.sum(axis=-1, keepdims=True)
    toks = Tokens(
        ("a", "b", "c"),
        special=(True, False, True),
        word_ids=(None, 0, None),
        segments=(0, 0, 1),
        offsets=((0, 0), (0, 1), (0, 0)),
    )
    s = Stack(
        "encoder",
        toks,
        toks,
        w,
        layer_axis=(Origin((4,)), Origin((5,))),
        head_axis=(Origin((0,)), Origin((1, 2), Combine.MEAN), Origin((3,))),
        model_layers=6,
        model_heads=12,
        notes=("a note",),
    )
    r = AttentionResult("m", "a b c", (s,), {"pair": "x"}, notes=("input truncated",), index=3, line=9).validate()
    doc = json.loads(json.dumps(r.to_json()))
    assert doc["schema"] == "attnviz/2" and (doc["index"], doc["line"], doc["pair"]) == (3, 9, "x")
    (sd,) = doc["stacks"]
    assert sd["layers"] == [4, 5] and sd["heads"] == [0, {"combine": "mean", "of": [1, 2]}, 3]
    assert sd["query"]["tokens"] == ["a", "b", "c"] and sd["query"]["word_ids"] == [None, 0, None]
    back = AttentionResult.from_json(doc)
    assert back.stacks[0].weights.tobytes() == w.tobytes()  # bit for bit
    b = back.stacks[0]
    assert (b.query, b.layer_axis, b.head_axis, b.kind, b.model_layers, b.model_heads, b.notes) == (
        s.query,
        s.layer_axis,
        s.head_axis,
        s.kind,
        6,
        12,
        ("a note",),
    )
    assert (back.inputs, back.notes, back.index, back.line) == ({"pair": "x"}, ("input truncated",), 3, 9)


@pytest.mark.parametrize(
    "weights, kind, message",
    [
        (np.full((1, 1, 3, 3), 0.5, dtype=np.float32), MapKind.PROBABILITY, "rows sum to 1"),
        (np.full((1, 1, 3, 2), 0.5, dtype=np.float32), MapKind.PROBABILITY, "for 3 query and 3 key tokens"),
        (np.full((1, 1, 3, 3), 1 / 3, dtype=np.float64), MapKind.PROBABILITY, "must be float32"),
        (np.full((1, 1, 3, 3), np.nan, dtype=np.float32), MapKind.SIGNED, "NaN"),
        (np.full((1, 1, 3, 3), -0.1, dtype=np.float32), MapKind.WEIGHTS, "cannot hold negative"),
    ],
)
def test_validation_rejects_broken_stacks(weights, kind, message):
    with pytest.raises(ValueError, match=message):
        AttentionResult("m", "t", (_stack(weights, kind=kind),)).validate()


def test_weights_and_signed_maps_make_no_row_sum_claim():
    AttentionResult("m", "t", (_stack(np.full((1, 1, 3, 3), 0.5, np.float32), kind=MapKind.WEIGHTS),)).validate()
    signed = AttentionResult("m", "t", (_stack(np.full((1, 1, 3, 3), -0.5, np.float32), kind=MapKind.SIGNED),))
    back = AttentionResult.from_json(json.loads(json.dumps(signed.validate().to_json())))
    assert back.stacks[0].kind is MapKind.SIGNED and float(back.stacks[0].weights.min()) == -0.5


def test_tokens_metadata_must_align():
    with pytest.raises(ValueError, match="special has 1 entries for 2 tokens"):
        Tokens(("a", "b"), special=(True,))


def test_provenance_must_match_the_weights():
    with pytest.raises(ValueError, match="provenance does not match"):
        Stack(
            "encoder",
            Tokens(("a",)),
            Tokens(("a",)),
            np.ones((1, 1, 1, 1), np.float32),
            layer_axis=(Origin((0,)), Origin((1,))),
        ).validate()
    with pytest.raises(ValueError, match="exactly one model index"):
        Origin((0, 1))


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "not a JSON object"),
        ({"schema": "other/1"}, "schema 'other/1'"),
        ({"schema": "attnviz/2", "model": "m"}, "missing or malformed field"),
    ],
)
def test_from_json_says_what_is_wrong(doc, message):
    with pytest.raises(ValueError, match=message):
        AttentionResult.from_json(doc)
