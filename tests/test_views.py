"""views.view on hand-made results: which stacks rollout takes, and what it says about --layer."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.cli import main
from attnviz.errors import SelectionError
from attnviz.result import AttentionResult, Stack, Tokens
from attnviz.views import ROLLOUT_LAYER_NOTE, view


def stack(name: str, q: int, k: int, layers: int = 3, heads: int = 2) -> Stack:
    rng = np.random.default_rng(len(name) + q + k)
    w = rng.random((layers, heads, q, k), dtype=np.float32) + 0.01
    w /= w.sum(axis=-1, keepdims=True)
    return Stack(name, Tokens(tuple(f"q{i}" for i in range(q))), Tokens(tuple(f"k{i}" for i in range(k))), w)


def result(*stacks: Stack) -> AttentionResult:
    return AttentionResult("hand-made", "text", stacks).validate()


SEQ2SEQ = result(stack("encoder", 4, 4), stack("decoder", 3, 3), stack("cross", 3, 4))
CROSS_ONLY = result(stack("cross", 3, 4))


def test_rollout_without_a_stack_skips_cross():
    shown = view(SEQ2SEQ, agg="rollout")
    assert [s.name for s in shown.stacks] == ["encoder", "decoder"]
    for s in shown.stacks:
        assert s.layer_ids == ("rollout",) and s.weights.shape[:2] == (1, 1)
        np.testing.assert_allclose(s.weights.sum(axis=-1), 1.0, atol=1e-5)
    assert [s.name for s in view(SEQ2SEQ, agg="rollout", stack="all").stacks] == ["encoder", "decoder"]
    assert [s.name for s in view(SEQ2SEQ, agg="rollout", stack="decoder").stacks] == ["decoder"]


def test_rollout_of_a_named_cross_stack_names_the_stacks_that_work():
    with pytest.raises(SelectionError) as caught:
        view(SEQ2SEQ, agg="rollout", stack="cross")
    assert "self-attention" in caught.value.message and "\n" not in caught.value.message
    assert caught.value.hint is not None
    assert "--stack encoder or decoder" in caught.value.hint


def test_rollout_with_only_a_cross_stack_says_what_is_possible():
    for named in (None, "cross"):
        with pytest.raises(SelectionError) as caught:
            view(CROSS_ONLY, agg="rollout", stack=named)
        assert caught.value.hint is not None and "--agg none, mean or max" in caught.value.hint
    assert view(CROSS_ONLY, agg="mean").stacks[0].name == "cross"  # the hint's advice works


def test_rollout_notes_that_a_layer_choice_is_ignored():
    for default in ("last", "all"):
        assert ROLLOUT_LAYER_NOTE not in view(SEQ2SEQ, layer=default, agg="rollout").stacks[0].notes
    picked = view(SEQ2SEQ, layer="1", agg="rollout").stacks
    assert all(ROLLOUT_LAYER_NOTE in s.notes for s in picked)
    # the layer choice changes nothing else: rollout still multiplies every layer
    np.testing.assert_array_equal(picked[0].weights, view(SEQ2SEQ, agg="rollout").stacks[0].weights)


def test_show_rollout_on_an_encoder_decoder_model(tiny_model, capsys):
    folder = str(tiny_model("bart"))
    with pytest.raises(SystemExit) as exited:
        main(["show", "the cat sat", "--model", folder, "--device", "cpu", "--agg", "rollout", "--layer", "0"])
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    titles = [line.split(" · ")[0] for line in out.splitlines() if " · rollout · " in line]
    assert titles == ["encoder", "decoder"]
    assert f"note: {ROLLOUT_LAYER_NOTE}" in out
