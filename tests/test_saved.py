"""Saved results: JSON, JSONL and NPZ out and back in, bit for bit; attnviz/1 files still read;
broken files say what is wrong."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from attnviz import extract, load, saved
from attnviz.errors import SavedFileError
from attnviz.result import AttentionResult, Origin
from attnviz.spec import Combine, ViewSpec
from attnviz.views import apply


@pytest.fixture(scope="module")
def two() -> list[AttentionResult]:
    from dataclasses import replace

    a = extract("I have a dream", device="cpu")
    b = extract("Unbelievable things happen", pair="So it seems", device="cpu")
    return [replace(a, index=0, line=3), replace(b, index=1, line=5)]


def same(a: AttentionResult, b: AttentionResult) -> None:
    assert (a.model, a.text, a.inputs, a.precision, a.notes, a.index, a.line) == (
        b.model,
        b.text,
        b.inputs,
        b.precision,
        b.notes,
        b.index,
        b.line,
    )
    for x, y in zip(a.stacks, b.stacks, strict=True):
        assert x.weights.dtype == y.weights.dtype and x.weights.tobytes() == y.weights.tobytes()
        assert (x.name, x.query, x.key, x.causal, x.layer_axis, x.head_axis, x.kind, x.notes) == (
            y.name,
            y.query,
            y.key,
            y.causal,
            y.layer_axis,
            y.head_axis,
            y.kind,
            y.notes,
        )


def test_every_format_round_trips_bit_for_bit(tmp_path, two):
    (tmp_path / "one.json").write_text(saved.to_json(two[0]), encoding="utf-8")
    (tmp_path / "many.jsonl").write_text("".join(saved.jsonl_line(r) for r in two), encoding="utf-8")
    (tmp_path / "many.npz").write_bytes(saved.to_npz(two))
    same(load(tmp_path / "one.json")[0], two[0])
    for name in ("many.jsonl", "many.npz"):
        back = load(tmp_path / name)
        assert len(back) == 2
        for a, b in zip(back, two):
            same(a, b)


def test_viewed_results_keep_their_provenance(two):
    for spec in (
        ViewSpec.build(agg="rollout"),
        ViewSpec.build(head="0:3", agg="max", words=True),
        ViewSpec.build(hide_special=True, layer="2,4"),
    ):
        shown = apply(two[1], spec)
        same(load_bytes(saved.to_npz([shown]))[0], shown)
        same(AttentionResult.from_json(json.loads(saved.to_json(shown))), shown)
    rolled = apply(two[0], ViewSpec.build(agg="rollout"))
    assert rolled.stacks[0].layer_axis == (Origin(tuple(range(6)), Combine.ROLLOUT),)


def load_bytes(data: bytes) -> list[AttentionResult]:
    """saved.load on standard input holding `data`."""
    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        return load("-")
    finally:
        sys.stdin = stdin


def test_standard_input_is_read_off_its_content(two):
    assert len(load_bytes(saved.to_npz(two))) == 2
    assert [r.line for r in load_bytes("".join(saved.jsonl_line(r) for r in two).encode())] == [3, 5]
    pretty = json.dumps(two[0].to_json(), indent=2).encode()
    same(load_bytes(pretty)[0], two[0])


def test_npz_is_plain_numpy_with_the_documented_names(tmp_path, two):
    path = tmp_path / "a.npz"
    path.write_bytes(saved.to_npz(two))
    with np.load(path, allow_pickle=False) as data:
        assert str(data["schema"]) == "attnviz/2" and int(data["count"]) == 2
        assert data["1/encoder/attention"].dtype == np.float32
        assert data["1/encoder/attention"].shape == (
            6,
            12,
            len(data["1/encoder/query_tokens"]),
            len(data["1/encoder/key_tokens"]),
        )
        meta = json.loads(str(data["0/meta"]))
        assert meta["text"] == "I have a dream" and "attention" not in meta["stacks"][0]


def test_csv_rows_carry_index_line_and_exact_weights(two):
    rows = saved.to_csv(two).splitlines()
    assert rows[0] == "index,line,stack,layer,head,query_index,query,key_index,key,weight"
    first = rows[1].split(",")
    assert first[:5] == ["0", "3", "encoder", "0", "0"]
    assert np.float32(float(first[-1])) == two[0].stacks[0].weights[0, 0, 0, 0]


def v1_json(result: AttentionResult) -> dict:
    """A document as attnviz 0.1 wrote it."""
    s = result.stacks[0]
    return {
        "schema": "attnviz/1",
        "model": result.model,
        "text": result.text,
        "precision": "float32",
        "stacks": [
            {
                "name": s.name,
                "causal": False,
                "layers": ["rollout"],
                "heads": ["mean"],
                "query_tokens": list(s.query.texts),
                "key_tokens": list(s.key.texts),
                "attention": s.weights[:1, :1].tolist(),
                "notes": ["rollout over 6 layers"],
            }
        ],
    }


def test_attnviz_1_files_still_read(tmp_path, two):
    doc = v1_json(two[0])
    r = AttentionResult.from_json(doc)
    assert (
        r.stacks[0].layer_axis == (Origin((), Combine.ROLLOUT),) and r.stacks[0].layer_label(0) == "rollout of layers"
    )
    assert r.stacks[0].head_label(0) == "mean of heads"
    s = two[0].stacks[0]
    np.savez(
        tmp_path / "v1.npz",
        **{
            "schema": np.asarray("attnviz/1"),
            "model": np.asarray(two[0].model),
            "text": np.asarray(two[0].text),
            "precision": np.asarray("float32"),
            "encoder/attention": s.weights,
            "encoder/query_tokens": np.asarray(s.query.texts),
            "encoder/key_tokens": np.asarray(s.key.texts),
            "encoder/layers": np.arange(6),
            "encoder/heads": np.arange(12),
            "encoder/causal": np.asarray(False),
            "encoder/notes": np.asarray([], dtype=np.str_),
        },
    )
    (back,) = load(tmp_path / "v1.npz")
    assert back.stacks[0].weights.tobytes() == s.weights.tobytes() and back.stacks[0].query.texts == s.query.texts


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"{not json", "line 1 is not JSON"),
        (b'{"schema": "attnviz/2"}\n{"x": 1}\n', "line 1 is not an attnviz result: missing or malformed field"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"PK\x03\x04broken", "is not a readable attnviz .npz"),
        (b'{"schema": "attnviz/9"}', "is not an attnviz result: schema 'attnviz/9'"),
    ],
)
def test_broken_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(SavedFileError, match=message):
        load(path)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(SavedFileError, match="no such file"):
        load(tmp_path / "nope.json")
    with pytest.raises(SavedFileError, match="is a folder"):
        load(tmp_path)


def test_a_file_with_tampered_numbers_is_refused(tmp_path, two):
    doc = two[0].to_json()
    doc["stacks"][0]["attention"][0][0][0][0] = 5.0
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SavedFileError, match="rows sum to 1 only within"):
        load(path)


def test_attnviz_1_files_keep_the_models_numbers(tmp_path, two):
    s = two[0].stacks[0]
    base = v1_json(two[0])
    full = {
        **base,
        "stacks": [
            {
                **base["stacks"][0],
                "layers": list(range(6)),
                "heads": list(range(12)),
                "attention": s.weights.tolist(),
                "notes": [],
            }
        ],
    }
    (back,) = [AttentionResult.from_json(full)]
    assert (back.stacks[0].model_layers, back.stacks[0].model_heads) == (6, 12)
    np.testing.assert_allclose(views_rollout(back).stacks[0].weights.sum(-1), 1.0, atol=1e-5)  # rollout works
    one = {
        **base,
        "stacks": [
            {
                **base["stacks"][0],
                "layers": [5],
                "heads": list(range(12)),
                "attention": s.weights[5:].tolist(),
                "notes": [],
            }
        ],
    }
    picked = apply(AttentionResult.from_json(one), ViewSpec.build(layer="5", head="3"))
    assert picked.stacks[0].weights[0, 0].tobytes() == s.weights[5, 3].tobytes()
    rolled_head = {**base, "stacks": [{**base["stacks"][0], "heads": ["head 3"]}]}
    with pytest.raises(ValueError, match="cannot be read back exactly"):
        AttentionResult.from_json(rolled_head)


def views_rollout(result: AttentionResult) -> AttentionResult:
    from attnviz import views

    return views.rollout(result)


def test_empty_axes_are_refused():
    doc = {
        "schema": "attnviz/2",
        "model": "m",
        "text": "t",
        "stacks": [
            {
                "name": "encoder",
                "kind": "probability",
                "layers": [],
                "heads": [],
                "query": {"tokens": ["a"]},
                "key": {"tokens": ["a"]},
                "attention": [],
            }
        ],
    }
    with pytest.raises(ValueError, match="no layer or no head"):
        AttentionResult.from_json(doc)
