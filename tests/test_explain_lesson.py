"""`explain` reads as a lesson: where the weights came from, the default query, one colour scale, clean pipes."""

from __future__ import annotations

import re

import pytest
from consoles import draw
from harness import run, run_subprocess

from attnviz.backends.scratch import ScratchModel, save_weights
from attnviz.backends.types import Device, LoadOptions
from attnviz.explain import default_query, explain
from attnviz.render import term
from attnviz.render.explain import render
from attnviz.result import Tokens

CPU = LoadOptions(device=Device.CPU)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RANDOM_NOTICE = "random (seed 0), not trained"


def opening(stdout: str, lines: int = 14) -> str:
    """The lesson's first lines, before step 1: where the notice must be."""
    head = stdout.split(" 1. Input X", 1)[0]
    return "\n".join(head.splitlines()[:lines])


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("weights") / "mine.safetensors"
    save_weights(ScratchModel(64, 4, 1).reset(seed=5), path)
    return str(path)


# ---------------------------------------------------------------- where the weights came from


def test_scratch_lesson_says_its_weights_are_random_and_what_that_means():
    out = run("explain", "I have a dream", env={"COLUMNS": "80"})
    assert out.code == 0, out.stderr
    top = " ".join(opening(out.stdout).split())  # words, whatever the wrapping
    assert f"weights {RANDOM_NOTICE}" in top
    assert "show the mechanics (shapes, scaling, softmax), nothing learned" in top
    assert "which token attends to which means nothing about language here" in top
    assert "For trained weights: --model minilm --layer N, or your own with --weights FILE." in top


def test_the_seed_is_the_one_given():
    out = run("explain", "I have a dream", "--seed", "7")
    assert "random (seed 7), not trained" in opening(out.stdout)


def test_minilm_lesson_says_its_weights_are_trained_not_random():
    out = run("explain", "I have a dream", "--model", "minilm", "--layer", "2", env={"COLUMNS": "80"})
    assert out.code == 0, out.stderr
    top = " ".join(opening(out.stdout).split())
    assert "weights trained: layer 2 of all-MiniLM-L6-v2" in top
    assert "what the model learned" in top
    assert "random" not in out.stdout and "nothing learned" not in out.stdout
    assert "[CLS], [SEP]: special tokens the tokenizer adds" in top


def test_a_weights_file_is_named_as_loaded(weights_file):
    out = run("explain", "I have a dream", "--weights", weights_file, env={"COLUMNS": "200"})
    assert out.code == 0, out.stderr
    assert f"weights  loaded from {weights_file} (--weights)" in opening(out.stdout)
    assert "not trained" not in out.stdout and "nothing learned" not in out.stdout


def test_json_says_whether_the_weights_are_random(weights_file):
    scratch = run("explain", "I have a dream", "--format", "json", "--seed", "3").json()
    assert scratch["weights"] == {"random": True, "source": "random", "seed": 3, "file": None}
    minilm = run("explain", "I have a dream", "--model", "minilm", "--format", "json").json()
    assert minilm["weights"] == {"random": False, "source": "pretrained", "seed": None, "file": None}
    loaded = run("explain", "I have a dream", "--weights", weights_file, "--format", "json").json()
    assert loaded["weights"] == {"random": False, "source": "file", "seed": None, "file": weights_file}
    assert {"schema", "model", "x", "steps", "pooling", "checks"} <= set(scratch)  # the old fields stay


# ---------------------------------------------------------------- the default query


def test_default_query_is_the_last_word_not_a_special_token():
    e = explain("I have a dream", "minilm", layer=2)
    assert e.query.texts[-1] == "[SEP]"
    assert (e.pooling.query, e.pooling.token) == (4, "dream")
    assert explain("I have a dream", options=CPU).pooling.token == "dream"  # scratch: no specials, the last token
    assert explain("I have a dream .", options=CPU).pooling.token == "."
    doc = run("explain", "I have a dream", "--model", "minilm", "--format", "json").json()
    assert doc["pooling"]["token"] == "dream" and doc["pooling"]["query"] == 4


def test_default_query_falls_back_to_the_last_token_when_all_are_special():
    assert default_query(Tokens(("[CLS]", "[SEP]"), special=(True, True))) == 1
    assert default_query(Tokens(("[CLS]", "a", "b", "[SEP]", "[PAD]"), special=(True, False, False, True, True))) == 2


def test_pooling_names_the_query_row_cleanly_for_any_token():
    e = explain("I have a dream", "minilm", layer=2, query="0")
    out = draw(render(e, width=100), 100)
    assert "Attention as pooling: query '[CLS]'" in out
    assert "z([CLS]) = " in out and "Σ wⱼ·vⱼ equals z([CLS])" in out
    assert "[[" not in out and "]]" not in out
    dream = draw(render(explain("I have a dream", "minilm", layer=2), width=100), 100)
    assert re.search(r"^  z\(dream\) +-?\d", dream, re.MULTILINE)  # the table row beside Σ wⱼ·vⱼ


# ---------------------------------------------------------------- one colour scale


def test_tables_and_bars_use_the_colour_scale_of_show():
    e = explain("I have a dream", options=CPU)
    out = draw(render(e, width=100, color=True), 100, color=True)
    brightest, darkest = term.rgb(1.0), term.rgb(0.0)
    assert "48;2;{};{};{}".format(*brightest) in out  # a background from the viridis scale
    assert "48;2;{};{};{}".format(*darkest) in out
    backgrounds = {tuple(map(int, m)) for m in re.findall(r"48;2;(\d+);(\d+);(\d+)", out)}
    on_scale = [term.rgb(i / 20000) for i in range(20001)]

    def near(c: tuple[int, ...]) -> bool:
        return any(max(abs(a - b) for a, b in zip(c, s)) <= 1 for s in on_scale)

    assert all(near(c) for c in backgrounds)  # every shaded cell is a colour of that one scale
    bars = {tuple(map(int, m)) for m in re.findall(r"38;2;(\d+);(\d+);(\d+)m[█▏▎▍▌▋▊▉]", out)}
    assert len(bars) >= 3 and all(near(c) for c in bars)  # the pooling bars too
    assert "Shading as in attnviz show: dark = low, bright = high" in ANSI.sub("", out)
    assert "Shading" not in draw(render(e, width=100), 100)  # no key to colours nobody sees


def test_softmax_table_is_scaled_like_show_brightest_at_the_largest_weight():
    e = explain("I have a dream", options=CPU)
    a = e.step("weights").head_values
    out = draw(render(e, width=100, color=True), 100, color=True)
    top = f"{a.max():.2f}"
    assert re.search(r"48;2;253;231;37m +" + re.escape(top), out)


# ---------------------------------------------------------------- clean pipes


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--causal", "--head", "2"],
        ["--source", "J'ai un rêve"],
        ["--model", "minilm", "--layer", "2"],
        [" ".join(["word"] * 20)],  # shapes only
    ],
)
@pytest.mark.parametrize("columns", ["80", "120"])
def test_no_line_ends_with_a_space(args, columns):
    text = args[0] if args and not args[0].startswith("-") else "I have a dream"
    rest = args[1:] if args and not args[0].startswith("-") else args
    out = run("explain", text, *rest, env={"COLUMNS": columns, "FORCE_COLOR": None, "NO_COLOR": None})
    assert out.code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [n for n, line in enumerate(lines, 1) if line.endswith(" ")] == []
    assert max(len(line) for line in lines) <= int(columns)
    assert "\x1b[" not in out.stdout  # not a terminal: no colour


def test_no_line_ends_with_a_space_through_a_real_pipe_even_in_colour():
    plain = run_subprocess("explain", "I have a dream", env={"COLUMNS": "80"})
    assert plain.code == 0, plain.stderr
    assert not [line for line in plain.stdout.splitlines() if line.endswith(" ")]
    coloured = run_subprocess("explain", "I have a dream", env={"COLUMNS": "80", "FORCE_COLOR": "1"})
    assert "\x1b[" in coloured.stdout
    assert not [line for line in ANSI.sub("", coloured.stdout).splitlines() if line.endswith(" ")]
    assert ANSI.sub("", coloured.stdout).splitlines()[4] == f"  weights  {RANDOM_NOTICE}"
