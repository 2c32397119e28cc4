"""Every --format parses back (json.loads, csv reader, numpy.load) to the same float32 numbers."""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from attnviz import extract
from attnviz.cli import main
from attnviz.render import data
from attnviz.views import view


def cli(*args: str, stdin: str | None = None) -> tuple[int, bytes, str]:
    """Run `attnviz ARGS` in this process: (exit code, stdout bytes, stderr text)."""
    with CliRunner().isolation(input=stdin) as (out, err, *_):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        sys.stdout.flush()  # the isolation's text wrappers buffer
        sys.stderr.flush()
    return code, out.getvalue(), err.getvalue().decode()


@pytest.fixture(scope="module")
def dream():
    return extract("I have a dream", device="cpu")


def test_json_has_the_api_numbers(dream):
    code, out, err = cli("show", "I have a dream", "--format", "json", "--head", "mean", "--device", "cpu")
    assert code == 0 and err == ""
    stack = json.loads(out)["stacks"][0]
    expected = view(dream, head="mean").stacks[0].weights
    assert np.array_equal(np.asarray(stack["attention"], dtype=np.float32), expected)
    assert stack["heads"] == ["mean"]


def test_jsonl_one_line_per_sentence_with_views_applied():
    code, out, _ = cli("show", "-", "--format", "jsonl", "--hide-special", stdin="I have a dream\nso do I\n")
    assert code == 0
    docs = [json.loads(line) for line in out.decode().splitlines()]
    assert [d["text"] for d in docs] == ["I have a dream", "so do I"]
    for doc in docs:
        stack = doc["stacks"][0]
        assert "[CLS]" not in stack["query_tokens"]
        assert stack["notes"] == ["special tokens hidden: rows no longer sum to 1 (use --renormalize)"]
        expected = view(extract(doc["text"], device="cpu"), hide_specials=True).stacks[0].weights
        # batched with padding: equal to the one-sentence run within float32 rounding
        assert np.allclose(np.asarray(stack["attention"], dtype=np.float32), expected, atol=1e-6)


def test_csv_rows_carry_tokens_and_exact_weights(dream):
    code, out, err = cli("show", "I have a dream", "--format", "csv", "--layer", "4:6", "--head", "0,3")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert tuple(rows[0]) == data.CSV_COLUMNS
    s = view(dream, layer="4:6", head="0,3").stacks[0]
    assert len(rows) == 2 * 2 * 6 * 6
    got = np.zeros_like(s.weights)
    for row in rows:
        li, hi = s.layer_ids.index(int(row["layer"])), s.head_ids.index(int(row["head"]))
        qi, ki = int(row["query_index"]), int(row["key_index"])
        assert (row["query"], row["key"]) == (s.query.texts[qi], s.key.texts[ki])
        assert row["stack"] == "encoder" and row["sentence"] == "0"
        got[li, hi, qi, ki] = np.float32(float(row["weight"]))
    assert np.array_equal(got, s.weights)


def test_csv_quotes_tokens_with_commas_and_counts_sentences():
    code, out, _ = cli("show", "-", "--format", "csv", "--head", "max", stdin='a, "b"\nc\n')
    assert code == 0
    rows = list(csv.reader(io.StringIO(out.decode())))[1:]
    assert {r[0] for r in rows} == {"0", "1"}
    assert {r[5] for r in rows if r[0] == "0"} >= {",", '"'}


def test_npz_loads_with_the_documented_names(tmp_path, dream):
    code, out, err = cli("show", "I have a dream", "--format", "npz", "--layer", "all")
    assert code == 0 and err == ""
    path = tmp_path / "dream.npz"
    path.write_bytes(out)
    with np.load(path) as z:
        assert set(z.files) == {
            "schema", "model", "text", "precision",
            "encoder/attention", "encoder/query_tokens", "encoder/key_tokens",
            "encoder/layers", "encoder/heads", "encoder/causal", "encoder/notes",
        }  # fmt: skip
        assert str(z["schema"]) == "attnviz/1" and str(z["text"]) == "I have a dream"
        weights = z["encoder/attention"]
        assert weights.dtype == np.float32 and np.array_equal(weights, dream.stacks[0].weights)
        assert z["encoder/query_tokens"].tolist() == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]
        assert z["encoder/layers"].tolist() == [0, 1, 2, 3, 4, 5] and z["encoder/heads"].dtype == np.int64
        assert not bool(z["encoder/causal"]) and z["encoder/notes"].shape == (0,)


def test_npz_of_rollout_names_string_ids_and_notes(dream):
    arrays = data.npz_arrays(view(dream, agg="rollout"))
    z = np.load(io.BytesIO(data.to_npz(view(dream, agg="rollout"))))
    assert z["encoder/layers"].tolist() == ["rollout"] and z["encoder/heads"].tolist() == ["mean"]
    assert z["encoder/notes"].tolist() == list(arrays["encoder/notes"])
    assert np.allclose(z["encoder/attention"].sum(axis=-1), 1.0, atol=1e-5)


def test_encoder_decoder_stacks_all_come_back(tiny_model):
    folder = str(tiny_model("bart"))
    code, out, _ = cli("show", "I have a dream", "--model", folder, "--format", "npz", "--device", "cpu")
    assert code == 0
    z = np.load(io.BytesIO(out))
    result = view(extract("I have a dream", model=folder, device="cpu"))
    for s in result.stacks:
        assert np.array_equal(z[f"{s.name}/attention"], s.weights)
    assert z["decoder/causal"].item() is True


@pytest.mark.parametrize("fmt", ["json", "npz"])
def test_one_document_formats_refuse_many_sentences(fmt):
    code, out, err = cli("show", "-", "--format", fmt, stdin="one\ntwo\n")
    assert code == 2 and out == b""
    assert f"error: 2 sentences on standard input but --format {fmt} holds one" in err
