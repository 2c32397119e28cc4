"""The one parser of view strings (spec.py) and how views resolve its indices against a stack."""

from __future__ import annotations

import re

import numpy as np
import pytest

from attnviz.errors import SelectionError, UsageError
from attnviz.result import Origin, Stack, Tokens
from attnviz.spec import ALL, LAST, Agg, Combine, Indices, TokenWindow, ViewSpec, parse_head
from attnviz.views import positions


def axis(*ids: int) -> tuple[Origin, ...]:
    return tuple(Origin((i,)) for i in ids)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("all", [0, 1, 2, 3, 4, 5]),
        ("last", [5]),
        ("LAST ", [5]),
        ("3", [3]),
        ("-1", [5]),
        ("-6", [0]),
        ("2:4", [2, 3]),
        (":2", [0, 1]),
        ("4:", [4, 5]),
        ("-2:", [4, 5]),
        ("0,5,0", [0, 5]),
        ("5, 1:3", [1, 2, 5]),
    ],
)
def test_strings_name_model_layers(text, expected):
    assert positions(Indices.parse(text), axis(*range(6)), 6, "layer") == expected


@pytest.mark.parametrize("value, expected", [(2, [2]), ([4, 1], [1, 4]), (range(1, 3), [1, 2]), ((-1,), [5])])
def test_ints_and_sequences_work_like_strings(value, expected):
    assert positions(Indices.parse(value), axis(*range(6)), 6, "layer") == expected


@pytest.mark.parametrize("text", ["x", "1.5", "2:x", "", "1,,2", "4:2", "3:3"])
def test_unreadable_or_empty_specs_are_usage_errors(text):
    with pytest.raises(UsageError):
        Indices.parse(text, "layer")


@pytest.mark.parametrize("value", [True, [], ["1"], range(0, 6, 2)])
def test_odd_python_values_are_usage_errors(value):
    with pytest.raises(UsageError):
        Indices.parse(value, "head")


@pytest.mark.parametrize(
    "text, message",
    [
        ("6", "layer 6 does not exist: this model has 6 layers (0..5)"),
        ("-7", "layer -7 does not exist"),
        ("0:9", "layer range 0:9 is outside 0..6"),
    ],
)
def test_numbers_past_the_model_are_selection_errors(text, message):
    with pytest.raises(SelectionError, match=re.escape(message)):
        positions(Indices.parse(text), axis(*range(6)), 6, "layer")


def test_numbers_are_the_models_not_positions_on_a_partial_axis():
    held = axis(2, 5)  # a saved result with layers 2 and 5 of a 6-layer model
    assert positions(Indices.parse("5"), held, 6, "layer") == [1]
    assert positions(Indices.parse("-1"), held, 6, "layer") == [1]
    assert positions(LAST, held, 6, "layer") == [1]
    assert positions(ALL, held, 6, "layer") == [0, 1]
    with pytest.raises(SelectionError, match=r"layer 3 is not in this result: it holds layers 2,5"):
        positions(Indices.parse("3"), held, 6, "layer")


def test_last_and_all_reach_combined_maps():
    rolled = (Origin((0, 1, 2), Combine.ROLLOUT),)
    assert positions(LAST, rolled, 3, "layer") == [0]
    with pytest.raises(SelectionError, match="it holds rollout of all 3 layers"):
        positions(Indices.parse("1"), rolled, 3, "layer")


def test_head_words_mean_every_head_combined():
    assert parse_head("mean") == (ALL, Combine.MEAN)
    assert parse_head(" MAX") == (ALL, Combine.MAX)
    assert parse_head("0:2") == (Indices(((0, 2),), text="0:2"), None)


def test_build_says_mean_one_way():
    by_head = ViewSpec.build(head="mean")
    by_agg = ViewSpec.build(agg="mean")
    assert by_head == by_agg
    assert by_head.combine is Combine.MEAN and not by_head.rollout
    chosen = ViewSpec.build(head="0:3", agg=Agg.MEAN)  # the mean of the chosen heads
    assert chosen.heads.parts == ((0, 3),) and chosen.combine is Combine.MEAN
    rolled_max = ViewSpec.build(head="max", agg="rollout")
    assert rolled_max.rollout and rolled_max.combine is Combine.MAX


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(head="mean", agg="max"),
        dict(agg="avg"),
        dict(stack="decoderr"),
        dict(renormalize=True),
        dict(tokens="5:2"),
        dict(tokens="abc"),
        dict(tokens="-1:3"),
    ],
)
def test_build_refuses_what_cannot_be_read_or_contradicts(kwargs):
    with pytest.raises(UsageError):
        ViewSpec.build(**kwargs)


def test_token_windows():
    assert TokenWindow.parse("2:5") == TokenWindow(2, 5)
    assert TokenWindow.parse(":5") == TokenWindow(0, 5)
    assert TokenWindow.parse("3:") == TokenWindow(3, None)
    assert str(TokenWindow.parse("3:")) == "3:"


def test_layers_not_chosen_stay_none_until_a_command_fills_them():
    spec = ViewSpec.build()
    assert spec.layers is None
    assert spec.with_layers(ALL).layers == ALL
    assert ViewSpec.build(layer="2").with_layers(ALL).layers == Indices((2,), text="2")


def test_a_stack_defaults_to_every_model_layer_and_head():
    s = Stack("encoder", Tokens(("a",)), Tokens(("a",)), np.ones((2, 3, 1, 1), np.float32))
    assert s.layer_axis == axis(0, 1) and s.head_axis == axis(0, 1, 2)
    assert (s.model_layers, s.model_heads) == (2, 3)
    assert s.layer_label(1) == "layer 1" and s.head_label(2) == "head 2"
