"""`explain`: the step-by-step computation as data, the lesson it renders, and the command."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from consoles import draw
from harness import run

from attnviz.api import run_batch
from attnviz.backends.registry import cached
from attnviz.backends.types import Device, Inputs, LoadOptions
from attnviz.errors import ModelError, SelectionError
from attnviz.explain import explain
from attnviz.render.explain import render

CPU = LoadOptions(device=Device.CPU)
SMALL = LoadOptions(device=Device.CPU, d_model=64, heads=4)


def text_of(lesson, width: int) -> str:
    return draw(render(lesson, width=width), width)


def test_classic_example_shapes_follow_the_textbook():
    e = explain("I have a dream", options=CPU)
    assert e.query.texts == ("I", "have", "a", "dream") and (e.d_model, e.heads, e.d_k) == (512, 8, 64)
    assert e.step("x").shapes == ((1, 4, 512),)
    for name in ("q", "k", "v"):
        assert e.step(name).values.shape == (1, 4, 512)
        assert e.step(f"{name}_heads").shapes == ((1, 4, 512), (1, 4, 8, 64), (1, 8, 4, 64))
    for name in ("scores", "scaled", "masked", "weights"):
        assert e.step(name).values.shape == (1, 8, 4, 4)
    assert e.step("mixed").values.shape == (1, 8, 4, 64)
    assert e.step("concat").shapes == ((1, 8, 4, 64), (1, 4, 8, 64), (1, 4, 512))
    assert e.step("output").values.shape == (1, 4, 512)
    # scaling really divides by √64, and softmax rows are distributions
    np.testing.assert_allclose(e.step("scaled").values * 8, e.step("scores").values, rtol=1e-6)
    np.testing.assert_allclose(e.step("weights").values.sum(-1), 1.0, atol=1e-6)
    assert all(c.ok for c in e.checks) and len(e.checks) == 2


def test_explained_weights_are_the_ones_show_reports():
    e = explain("I have a dream", options=CPU)
    (shown,) = run_batch(cached("scratch", CPU), [Inputs("I have a dream")])
    np.testing.assert_array_equal(e.step("weights").values[0], shown.stack("encoder").weights[0])


def test_head_slices_are_the_chosen_heads_columns():
    e = explain("I have a dream", head=3, options=CPU)
    q = e.step("q").values[0]  # (4, 512)
    np.testing.assert_array_equal(e.step("q").head_values, q[:, 192:256])
    np.testing.assert_array_equal(e.step("q_heads").head_values, q[:, 192:256])  # split = same numbers
    np.testing.assert_array_equal(e.step("concat").head_values, e.step("mixed").values[0, 3])
    assert e.step("weights").head_values.shape == (4, 4)


def test_pooling_is_the_weighted_sum_of_value_rows():
    e = explain("I have a dream", query="have", head=1, options=CPU)
    p = e.pooling
    assert (p.query, p.token) == (1, "have")
    np.testing.assert_array_equal(p.weights, e.step("weights").values[0, 1, 1])
    manual = (p.weights[:, None].astype(np.float64) * p.values).sum(0)
    np.testing.assert_allclose(p.output, manual, atol=1e-6)
    np.testing.assert_allclose(p.output, e.step("mixed").values[0, 1, 1], atol=1e-5)
    assert p.max_difference < 1e-5
    assert explain("I have a dream", options=CPU).pooling.token == "dream"  # default: the last token


def test_causal_mask_is_minus_infinity_then_exact_zero():
    e = explain("I have a dream", options=LoadOptions(device=Device.CPU, causal=True))
    masked = e.step("masked").values[0]  # (8, 4, 4)
    upper = np.triu(np.ones((4, 4), dtype=bool), k=1)
    assert np.isneginf(masked[:, upper]).all() and np.isfinite(masked[:, ~upper]).all()
    assert (e.step("weights").values[0][:, upper] == 0).all()
    assert e.causal and e.mask is not None and e.mask.tolist() == (~upper).tolist()
    doc = e.to_json()
    masked_json = next(s for s in doc["steps"] if s["name"] == "masked")["values"]
    assert masked_json[0][0][0] == [pytest.approx(masked[0, 0, 0]), None, None, None]
    json.dumps(doc, allow_nan=False)  # strict JSON: no Infinity/NaN tokens


def test_cross_attention_takes_keys_from_the_source():
    e = explain("I have a dream", source="J'ai un rêve", options=SMALL)
    assert e.key.texts == ("J'ai", "un", "rêve")
    assert e.step("scores").values.shape == (1, 4, 4, 3)
    assert e.step("k_heads").shapes == ((1, 3, 64), (1, 3, 4, 16), (1, 4, 3, 16))
    assert "source" in e.x_note and all(c.ok for c in e.checks)
    assert e.to_json()["source"] == "J'ai un rêve"


def test_a_later_scratch_layer_reads_the_residual_stream():
    options = LoadOptions(device=Device.CPU, d_model=64, heads=4, layers=3)
    e = explain("I have a dream", layer=-1, options=options)
    assert (e.layer, e.layers) == (2, 3)
    (shown,) = run_batch(cached("scratch", options), [Inputs("I have a dream")])
    np.testing.assert_array_equal(e.step("weights").values[0], shown.stacks[0].weights[2])
    with pytest.raises(SelectionError, match="layer 3 does not exist: this model has 3 layers"):
        explain("I have a dream", layer=3, options=options)


def test_minilm_layer_is_checked_against_transformers():
    e = explain("I have a dream", "minilm", layer=2, head=5)
    assert e.model == "all-MiniLM-L6-v2" and (e.layer, e.layers, e.heads, e.d_k) == (2, 6, 12, 32)
    assert e.query.texts == ("[CLS]", "i", "have", "a", "dream", "[SEP]")
    assert e.step("q_heads").shapes == ((1, 6, 384), (1, 6, 12, 32), (1, 12, 6, 32))
    (reference,) = [c for c in e.checks if "transformers" in c.what]
    assert reference.ok and reference.max_difference < 1e-5
    # and it is the same attention our native MiniLM path reports for that layer
    (native,) = run_batch(cached("minilm", CPU), [Inputs("I have a dream")])
    np.testing.assert_allclose(e.step("weights").values[0], native.stacks[0].weights[2], atol=1e-5)


def test_bert_folders_work_and_other_families_are_refused(tiny_model):
    e = explain("I have a dream", str(tiny_model("bert")), layer=-1)
    assert all(c.ok for c in e.checks) and e.query.texts[0] == "[CLS]"
    with pytest.raises(ModelError, match="BERT-family"):
        explain("I have a dream", str(tiny_model("gpt2")))
    with pytest.raises(SelectionError, match="a cross-attention source text is for the scratch model"):
        explain("I have a dream", "minilm", source="x")


def test_lesson_text_at_80_and_120_columns():
    e = explain("I have a dream", options=CPU)
    for width in (80, 120):
        out = text_of(e, width)
        assert max(len(line) for line in out.splitlines()) <= width
        assert re.search(r"\(1, 4, 512\)\s+─view→ \(1, 4, 8, 64\)\s+─transpose\(1, 2\)→ \(1, 8, 4, 64\)", out)
        for heading in ("Input X", "Split into heads", "Raw scores", "Scale by √d_k = √64 = 8", "Mask", "Softmax"):
            assert heading in out
        for heading in ("Weighted sum", "Concatenate", "Output map", "Attention as pooling: query 'dream'"):
            assert heading in out
        assert "✗" not in out and out.count("✓") == 2
    wide, narrow = text_of(e, 120), text_of(e, 80)
    assert "… +50" in wide and "… +55" in narrow  # more columns of Q's head slice where there is room


def test_lesson_keeps_bracket_tokens_and_drops_tables_for_long_inputs():
    e = explain("I have a dream", "minilm", layer=0)
    out = text_of(e, 100)
    assert "[CLS]" in out and "v([SEP])" in out  # not swallowed as rich markup
    assert "query \\ key" in out  # short inputs get value tables
    assert "our weights = transformers' (layer 0, all heads)" in out
    long = explain(" ".join(["word"] * 20), options=SMALL)
    out = text_of(long, 80)
    assert "shapes only" in out and "query \\ key" not in out


def test_cli_explain_default_is_the_classic_scratch_example():
    out = run("explain", "I have a dream")
    assert out.code == 0, out.stderr
    assert "scratch" in out.stdout.splitlines()[0]
    assert "(1, 4, 8, 64)" in out.stdout and "(1, 8, 4, 64)" in out.stdout and out.stderr == ""


def test_cli_explain_json_holds_every_tensor():
    out = run("explain", "I have a dream", "--format", "json", "--causal", "--head", "2")
    assert out.code == 0, out.stderr
    doc = out.json()
    assert doc["schema"] == "attnviz-explain/1" and doc["head"] == 2 and doc["causal"]
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == [
        "x", "q", "k", "v", "q_heads", "k_heads", "v_heads",
        "scores", "scaled", "masked", "weights", "mixed", "concat", "output",
    ]  # fmt: skip
    for s in steps.values():
        assert list(np.asarray(s["values"], dtype=object).shape) == s["shapes"][-1]
    weights = np.asarray(steps["weights"]["values"])
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert doc["pooling"]["token"] == "dream" and all(c["ok"] for c in doc["checks"])


@pytest.mark.parametrize(
    "args, code, message, hint",
    [
        (["--head", "8"], 1, "error: head 8 does not exist: this model has 8 heads (0..7)", None),
        (["--query", "nope"], 1, "error: no query token 'nope'", "hint: tokens: I have a dream"),
        (["--format", "xml"], 2, "error: Invalid value for '--format'", "hint: see 'attnviz explain --help'"),
        (["--model", "minilm", "--causal"], 2, "error: --causal is for --model scratch, not minilm",
         "hint: drop --causal"),
        (["--d-model", "100"], 2, "error: d_model 100 is not divisible by 8 heads",
         "hint: each head gets d_model / heads dimensions, e.g. --d-model 512 --heads 8"),
    ],
)  # fmt: skip
def test_cli_explain_errors_are_one_line(args, code, message, hint):
    out = run("explain", "I have a dream", *args)
    assert out.code == code and out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith(message) and lines[1:] == ([hint] if hint else [])


def test_explain_help_names_the_default():
    # that it stays light (imports no torch) is checked with the other --help probes in test_cli.py
    out = run("explain", "--help", env={"COLUMNS": "200"})
    assert out.code == 0, out.stderr
    assert "Without --model it runs the scratch model (d_model 512, 8 heads)" in out.stdout
