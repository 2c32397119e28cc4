"""Every --format parses back (json.loads, csv reader, numpy.load) to the same float32 numbers."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from harness import run

from attnviz import ViewSpec, extract, views
from attnviz.saved import CSV_COLUMNS, to_npz


@pytest.fixture(scope="module")
def dream():
    return extract("I have a dream", device="cpu")


def test_json_has_the_api_numbers(dream):
    out = run("show", "I have a dream", "--format", "json", "--head", "mean", "--device", "cpu")
    assert out.code == 0 and out.stderr == ""
    stack = out.json()["stacks"][0]
    expected = views.select(dream, head="mean").stacks[0].weights
    assert np.array_equal(np.asarray(stack["attention"], dtype=np.float32), expected)
    assert stack["layers"] == [5] and stack["heads"] == [{"combine": "mean", "of": list(range(12))}]
    assert stack["kind"] == "probability"


def test_jsonl_one_line_per_sentence_with_views_applied():
    out = run("show", "-", "--format", "jsonl", "--hide-special", "--device", "cpu", stdin="I have a dream\nso do I\n")
    assert out.code == 0, out.stderr
    docs = out.jsonl()
    assert [(d["text"], d["index"], d["line"]) for d in docs] == [("I have a dream", 0, 1), ("so do I", 1, 2)]
    for doc in docs:
        stack = doc["stacks"][0]
        assert "[CLS]" not in stack["query"]["tokens"] and "[SEP]" not in stack["key"]["tokens"]
        assert stack["query"]["special"] == [False] * len(stack["query"]["tokens"])
        assert stack["notes"] == ["special tokens hidden: rows no longer sum to 1"]
        assert stack["kind"] == "weights"
        spec = ViewSpec.build(hide_special=True)
        expected = views.apply(extract(doc["text"], device="cpu"), spec).stacks[0].weights
        # batched with padding: equal to the one-sentence run within float32 rounding
        assert np.allclose(np.asarray(stack["attention"], dtype=np.float32), expected, atol=1e-6)


def test_csv_rows_carry_tokens_and_exact_weights(dream):
    out = run("show", "I have a dream", "--format", "csv", "--layer", "4:6", "--head", "0,3", "--device", "cpu")
    assert out.code == 0 and out.stderr == ""
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert ",".join(CSV_COLUMNS) == "index,line,stack,layer,head,query_index,query,key_index,key,weight"
    s = views.select(dream, layer="4:6", head="0,3").stacks[0]
    layers = [o.single for o in s.layer_axis]
    heads = [o.single for o in s.head_axis]
    assert (layers, heads) == ([4, 5], [0, 3])
    assert len(rows) == 2 * 2 * 6 * 6
    got = np.full_like(s.weights, np.nan)
    for row in rows:
        li, hi = layers.index(int(row["layer"])), heads.index(int(row["head"]))
        qi, ki = int(row["query_index"]), int(row["key_index"])
        assert (row["query"], row["key"]) == (s.query.texts[qi], s.key.texts[ki])
        assert (row["index"], row["line"], row["stack"]) == ("0", "", "encoder")
        got[li, hi, qi, ki] = np.float32(float(row["weight"]))
    assert np.array_equal(got, s.weights)  # every cell written once, exactly


def test_csv_quotes_tokens_with_commas_and_counts_sentences():
    out = run("show", "-", "--format", "csv", "--head", "max", "--device", "cpu", stdin='a, "b"\nc\n')
    assert out.code == 0, out.stderr
    header, *rows = list(csv.reader(io.StringIO(out.stdout)))
    assert all(len(r) == len(header) for r in rows)
    assert {(r[0], r[1]) for r in rows} == {("0", "1"), ("1", "2")}  # index, line
    assert {r[6] for r in rows if r[0] == "0"} >= {",", '"'}  # query tokens, quoted as CSV
    assert {r[4] for r in rows} == {"max"}


def test_npz_loads_with_the_documented_names(tmp_path, dream):
    out = run("show", "I have a dream", "--format", "npz", "--layer", "all", "--device", "cpu")
    assert out.code == 0 and out.stderr == ""
    path = tmp_path / "dream.npz"
    path.write_bytes(out.stdout_bytes)
    with np.load(path) as z:  # no pickles: allow_pickle stays False
        assert set(z.files) == {
            "schema", "count", "0/meta", "0/encoder/attention", "0/encoder/query_tokens", "0/encoder/key_tokens",
        }  # fmt: skip
        assert str(z["schema"]) == "attnviz/2" and int(z["count"]) == 1
        meta = json.loads(str(z["0/meta"]))
        assert (meta["schema"], meta["text"], meta["index"], meta["line"]) == ("attnviz/2", "I have a dream", 0, None)
        (stack,) = meta["stacks"]
        assert "attention" not in stack and stack["layers"] == list(range(6)) and stack["heads"] == list(range(12))
        assert stack["query"]["tokens"] == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]
        weights = z["0/encoder/attention"]
        assert weights.dtype == np.float32 and np.array_equal(weights, dream.stacks[0].weights)
        assert z["0/encoder/query_tokens"].tolist() == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]
        assert z["0/encoder/key_tokens"].tolist() == stack["key"]["tokens"]


def test_npz_of_rollout_records_what_was_combined(dream):
    rolled = views.rollout(dream)
    with np.load(io.BytesIO(to_npz([rolled]))) as z:
        (stack,) = json.loads(str(z["0/meta"]))["stacks"]
        attention = z["0/encoder/attention"]
    assert stack["layers"] == [{"combine": "rollout", "of": list(range(6))}]
    assert stack["heads"] == [{"combine": "mean", "of": list(range(12))}]
    assert stack["notes"] == list(rolled.stacks[0].notes) and len(stack["notes"]) == 1
    assert attention.shape == (1, 1, 6, 6) and np.array_equal(attention, rolled.stacks[0].weights)
    assert np.allclose(attention.sum(axis=-1), 1.0, atol=1e-5)


def test_encoder_decoder_stacks_all_come_back(tiny_model):
    folder = str(tiny_model("bart"))
    out = run("show", "I have a dream", "--model", folder, "--format", "npz", "--device", "cpu")
    assert out.code == 0, out.stderr
    result = views.select(extract("I have a dream", model=folder, device="cpu"))
    with np.load(io.BytesIO(out.stdout_bytes)) as z:
        meta = json.loads(str(z["0/meta"]))
        assert [s["name"] for s in meta["stacks"]] == ["encoder", "decoder", "cross"]
        for s in result.stacks:
            assert np.array_equal(z[f"0/{s.name}/attention"], s.weights)
    assert [s["causal"] for s in meta["stacks"]] == [False, True, False]


def test_json_refuses_many_sentences():
    out = run("show", "-", "--format", "json", stdin="one\ntwo\n")
    assert out.code == 2 and out.stdout_bytes == b""
    assert out.stderr.splitlines() == [
        "error: 2 sentences on standard input but --format json holds one",
        "hint: use --format jsonl, csv or npz",
    ]


def test_npz_holds_many_sentences():
    out = run("show", "-", "--format", "npz", "--head", "mean", "--device", "cpu", stdin="one\ntwo\n")
    assert out.code == 0, out.stderr
    with np.load(io.BytesIO(out.stdout_bytes)) as z:
        assert int(z["count"]) == 2
        metas = [json.loads(str(z[f"{i}/meta"])) for i in range(2)]
        assert [(m["text"], m["index"], m["line"]) for m in metas] == [("one", 0, 1), ("two", 1, 2)]
        for i, text in enumerate(("one", "two")):
            expected = views.select(extract(text, device="cpu"), head="mean").stacks[0].weights
            assert np.allclose(z[f"{i}/encoder/attention"], expected, atol=1e-6)


def test_a_csv_whose_view_fails_prints_nothing_not_a_lone_header():
    out = run("show", "I have a dream", "--format", "csv", "--query", "nosuch")
    assert out.code == 1 and out.stdout == "" and "no query token 'nosuch'" in out.stderr
