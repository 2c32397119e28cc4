"""Views on hand-made results: provenance, rollout's stacks and layers, word merge, hidden
specials, token windows — and that every step works on a result as well as on a stack."""

from __future__ import annotations

import numpy as np
import pytest
from harness import run

from attnviz import views
from attnviz.errors import SelectionError
from attnviz.result import AttentionResult, MapKind, Origin, Stack, Tokens
from attnviz.spec import Combine, ViewSpec


def distributions(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).random(shape, dtype=np.float32) + 0.01
    return (w / w.sum(axis=-1, keepdims=True)).astype(np.float32)


def stack(name: str, q: int, k: int, layers: int = 3, heads: int = 2) -> Stack:
    w = distributions((layers, heads, q, k), seed=len(name) + q + k)
    return Stack(name, Tokens(tuple(f"q{i}" for i in range(q))), Tokens(tuple(f"k{i}" for i in range(k))), w)


def result(*stacks: Stack) -> AttentionResult:
    return AttentionResult("hand-made", "text", stacks).validate()


SEQ2SEQ = result(stack("encoder", 4, 4), stack("decoder", 3, 3), stack("cross", 3, 4))
CROSS_ONLY = result(stack("cross", 3, 4))

# "[CLS] un ##believ ##able cat [SEP]": one word in three pieces
PIECES = Tokens(
    texts=("[CLS]", "un", "##believ", "##able", "cat", "[SEP]"),
    special=(True, False, False, False, False, True),
    word_ids=(None, 0, 0, 0, 1, None),
    offsets=((0, 0), (0, 2), (2, 7), (7, 11), (12, 15), (0, 0)),
)
BERTISH = result(Stack("encoder", PIECES, PIECES, distributions((2, 3, 6, 6), seed=7)))


# ---------------------------------------------------------------- selection and provenance


def test_select_takes_ints_sequences_and_strings_and_records_where_maps_came_from():
    by_int = views.select(SEQ2SEQ, layer=2, head=[1], stack="encoder")
    by_str = views.select(SEQ2SEQ, layer="-1", head="1:2", stack="encoder")
    s = by_int.stacks[0]
    assert s.layer_axis == by_str.stacks[0].layer_axis and s.head_axis == by_str.stacks[0].head_axis
    np.testing.assert_array_equal(s.weights, by_str.stacks[0].weights)
    assert s.layer_axis == (Origin((2,)),) and s.head_axis == (Origin((1,)),)
    np.testing.assert_array_equal(s.weights[0, 0], SEQ2SEQ.stack("encoder").weights[2, 1])


def test_mean_of_chosen_heads_says_which_and_keeps_rows_summing_to_1():
    s = views.select(SEQ2SEQ.stack("encoder"), layer="all", head=ViewSpec.build(head="0:2").heads)
    mean = views.apply(SEQ2SEQ, ViewSpec.build(stack="encoder", layer="all", head="0:2", agg="mean")).stacks[0]
    np.testing.assert_allclose(mean.weights[:, 0], s.weights.mean(axis=1), atol=1e-7)
    assert mean.head_axis == (Origin((0, 1), Combine.MEAN),)
    assert mean.head_label(0) == "mean of all 2 heads" and mean.kind is MapKind.PROBABILITY
    mean.validate()


def test_max_of_heads_is_no_longer_a_distribution():
    m = views.select(SEQ2SEQ.stack("encoder"), head="max")
    assert m.kind is MapKind.WEIGHTS and m.head_label(0) == "max of all 2 heads"
    m.validate()  # weights: non-negative, no row-sum claim


def test_combined_heads_cannot_be_picked_apart_or_combined_again():
    mean = views.select(SEQ2SEQ.stack("encoder"), layer="all", head="mean")
    assert views.select(mean, layer="all", head="mean").head_axis == mean.head_axis  # the same thing again
    with pytest.raises(SelectionError, match="head 0 is not in this result: it holds mean of all 2 heads"):
        views.select(mean, head=0)
    with pytest.raises(SelectionError, match="already combined"):
        views.select(mean, head="max")


# ---------------------------------------------------------------- rollout


def test_rollout_of_a_result_skips_cross_and_rows_sum_to_1():
    shown = views.rollout(SEQ2SEQ)
    assert [s.name for s in shown.stacks] == ["encoder", "decoder"]
    for s in shown.stacks:
        assert s.layer_axis == (Origin((0, 1, 2), Combine.ROLLOUT),) and s.weights.shape[:2] == (1, 1)
        assert s.layer_label(0) == "rollout of all 3 layers" and s.head_label(0) == "mean of all 2 heads"
        s.validate()
    named = views.apply(SEQ2SEQ, ViewSpec.build(agg="rollout", stack="decoder"))
    assert [s.name for s in named.stacks] == ["decoder"]


def test_rollout_by_hand():
    s = SEQ2SEQ.stack("encoder")
    joint = np.eye(4)
    for layer in s.weights.mean(axis=1).astype(np.float64):
        a = layer + np.eye(4)
        joint = (a / a.sum(axis=-1, keepdims=True)) @ joint
    np.testing.assert_allclose(views.rollout(s).weights[0, 0], joint, atol=1e-6)
    one_head = views.rollout(s, head=1)
    assert one_head.head_axis == (Origin((1,)),)


def test_rollout_of_cross_names_the_stacks_that_work():
    with pytest.raises(SelectionError) as caught:
        views.apply(SEQ2SEQ, ViewSpec.build(agg="rollout", stack="cross"))
    assert "self-attention" in caught.value.message and "--" not in caught.value.message
    assert caught.value.details["stacks"] == "encoder or decoder"
    with pytest.raises(SelectionError, match="only cross-attention"):
        views.rollout(CROSS_ONLY)


def test_rollout_needs_every_layer():
    last = views.select(SEQ2SEQ, layer="last")
    with pytest.raises(
        SelectionError, match="rollout multiplies every layer of the model, and this result holds layer 2"
    ):
        views.rollout(last)


def test_rollout_notes_a_layer_choice_only_when_one_was_made():
    unchosen = views.apply(SEQ2SEQ, ViewSpec.build(agg="rollout")).stacks[0]
    everything = views.apply(SEQ2SEQ, ViewSpec.build(agg="rollout", layer="all")).stacks[0]
    chosen = views.apply(SEQ2SEQ, ViewSpec.build(agg="rollout", layer="1")).stacks[0]
    assert not any("ignored" in n for n in unchosen.notes + everything.notes)
    assert "rollout uses every layer; the layer choice (1) is ignored" in chosen.notes
    np.testing.assert_array_equal(chosen.weights, unchosen.weights)


def test_show_rollout_on_an_encoder_decoder_model(tiny_model):
    out = run("show", "I have a dream", "--model", str(tiny_model("bart")), "--agg", "rollout", "--layer", "0")
    assert out.code == 0, out.stderr
    titles = [line.split(" · ")[0] for line in out.stdout.splitlines() if " · rollout of all" in line]
    assert titles == ["encoder", "decoder"]
    assert "note: rollout uses every layer; the layer choice (0) is ignored" in out.stdout


# ---------------------------------------------------------------- tokens


def test_merge_words_sums_keys_averages_queries_and_rows_still_sum_to_1():
    merged = views.merge_words(BERTISH).stacks[0]
    assert merged.query.texts == ("[CLS]", "unbelievable", "cat", "[SEP]")
    assert merged.query.offsets == ((0, 0), (0, 11), (12, 15), (0, 0))
    assert merged.query.special == (True, False, False, True)
    w = BERTISH.stacks[0].weights
    np.testing.assert_allclose(merged.weights[..., 1, 1], w[..., 1:4, 1:4].sum(axis=-1).mean(axis=-1), atol=1e-6)
    np.testing.assert_allclose(merged.weights.sum(axis=-1), 1.0, atol=1e-5)
    merged.validate()
    assert views.merge_words(merged).weights.shape == merged.weights.shape  # merging again changes nothing


def test_hide_special_drops_rows_and_columns_and_says_rows_no_longer_sum_to_1():
    hidden = views.hide_special(BERTISH).stacks[0]
    assert hidden.query.texts == ("un", "##believ", "##able", "cat") and hidden.kind is MapKind.WEIGHTS
    np.testing.assert_array_equal(hidden.weights, BERTISH.stacks[0].weights[:, :, 1:5, 1:5])
    assert (hidden.weights.sum(axis=-1) < 1).all()
    assert "special tokens hidden: rows no longer sum to 1" in hidden.notes
    renormalized = views.hide_special(BERTISH, renormalize=True).stacks[0]
    np.testing.assert_allclose(renormalized.weights.sum(axis=-1), 1.0, atol=1e-6)
    assert renormalized.kind is MapKind.PROBABILITY
    renormalized.validate()


def test_hide_special_when_everything_is_special():
    only = Tokens(("[CLS]", "[SEP]"), special=(True, True))
    with pytest.raises(SelectionError, match="every token is special"):
        views.hide_special(Stack("encoder", only, only, distributions((1, 1, 2, 2))))


def test_token_window_cuts_rows_and_columns_of_self_attention_and_keys_of_cross():
    window = views.token_window(SEQ2SEQ, "1:3")
    enc, dec, cross = window.stacks
    assert enc.query.texts == ("q1", "q2") and enc.key.texts == ("k1", "k2")
    np.testing.assert_array_equal(enc.weights, SEQ2SEQ.stacks[0].weights[:, :, 1:3, 1:3])
    assert cross.query.texts == ("q0", "q1", "q2") and cross.key.texts == ("k1", "k2")
    assert enc.kind is MapKind.WEIGHTS and "tokens 1:3 only: rows no longer sum to 1" in enc.notes
    assert views.token_window(SEQ2SEQ, "2:99").stacks[0].key.texts == ("k2", "k3")  # clipped to the end
    with pytest.raises(SelectionError, match="starts past the end: there are 4 tokens"):
        views.token_window(SEQ2SEQ.stacks[0], (4, None))


def test_a_window_that_keeps_every_key_keeps_the_distribution():
    causal = np.tril(np.ones((3, 3), np.float32))
    w = (causal / causal.sum(axis=-1, keepdims=True))[None, None]
    toks = Tokens(("a", "b", "c"))
    s = views.token_window(Stack("decoder", toks, toks, w, causal=True), "0:2")
    assert s.kind is MapKind.PROBABILITY and s.notes == ("tokens 0:2 only",)


def test_query_row_by_text_or_index():
    row = views.query_row(BERTISH, "cat").stacks[0]
    assert row.query.texts == ("cat",) and row.weights.shape == (2, 3, 1, 6)
    assert views.query_row(BERTISH, -2).stacks[0].query.texts == ("cat",)
    with pytest.raises(SelectionError, match="no query token 'dog'"):
        views.query_row(BERTISH, "dog")


def test_results_without_token_metadata_refuse_views_that_need_it():
    bare = Tokens(("a", "b"))
    s = Stack("encoder", bare, bare, distributions((1, 1, 2, 2)))
    for step in (views.hide_special, views.merge_words):
        with pytest.raises(SelectionError, match="does not record"):
            step(s)


def test_rollout_refuses_maps_whose_tokens_a_view_changed():
    for changed in (views.merge_words(BERTISH), views.hide_special(BERTISH, renormalize=True)):
        with pytest.raises(SelectionError, match="tokens were already changed"):
            views.rollout(changed)
    max_heads = views.select(BERTISH, layer="all", head="max")  # weights only because of the max: rollout works
    np.testing.assert_allclose(views.rollout(max_heads).stacks[0].weights.sum(-1), 1.0, atol=1e-5)


def test_words_never_merge_across_the_pair_boundary():
    pair = Tokens(
        texts=("[CLS]", "dream", "##ing", "[SEP]", "dream", "##ing", "[SEP]"),
        special=(True, False, False, True, False, False, True),
        word_ids=(None, 0, 0, None, 0, 0, None),
        segments=(0, 0, 0, 0, 1, 1, 1),
    )
    hidden = views.hide_special(Stack("encoder", pair, pair, distributions((1, 1, 7, 7))))
    assert views.merge_words(hidden).query.texts == ("dreaming", "dreaming")


def test_hiding_specials_where_there_are_none_changes_nothing_and_says_nothing():
    s = SEQ2SEQ.stack("encoder")
    plain = Stack(
        s.name, Tokens(s.query.texts, special=(False,) * 4), Tokens(s.key.texts, special=(False,) * 4), s.weights
    )
    assert views.hide_special(plain) is plain


def test_numpy_integers_select_too():
    assert views.select(SEQ2SEQ.stack("encoder"), layer=np.int64(1), head=np.arange(2)).layer_axis == (Origin((1,)),)


def test_errors_name_the_stack_when_there_are_several():
    with pytest.raises(SelectionError, match=r"^encoder: token window 4:9 starts past the end"):
        views.apply(SEQ2SEQ, ViewSpec.build(tokens="4:9"))
