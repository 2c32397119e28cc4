"""Every model family through the transformers backend: stacks, shapes, masks."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz import extract
from attnviz.api import run_batch
from attnviz.backends.registry import cached
from attnviz.backends.types import Device, Inputs, LoadOptions

CPU = LoadOptions(device=Device.CPU)


def test_bert_encoder_pair_shapes(tiny_model):
    r = extract("I have a dream", model=str(tiny_model("bert")), pair="so do I", device="cpu")
    (enc,) = r.stacks
    assert enc.name == "encoder" and not enc.causal
    assert enc.weights.shape == (2, 4, 10, 10)
    assert enc.query.texts[0] == "[CLS]" and enc.query.texts.count("[SEP]") == 2
    assert enc.query.segments == (0,) * 6 + (1,) * 4
    np.testing.assert_allclose(enc.weights.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_is_causal_with_exact_zeros(tiny_model, family):
    r = extract("the quick brown fox jumps", model=str(tiny_model(family)), device="cpu")
    (dec,) = r.stacks
    assert dec.name == "decoder" and dec.causal
    L, H, q, k = dec.weights.shape
    assert (L, H) == (2, 4) and q == k == len(dec.query) > 3
    upper = np.triu(np.ones((q, k), dtype=bool), 1)
    assert (dec.weights[..., upper] == 0.0).all()  # exactly zero, not merely small
    np.testing.assert_allclose(dec.weights.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("family, dec_layers", [("bart", 3), ("t5", 2)])
def test_encoder_decoder_has_three_stacks(tiny_model, family, dec_layers):
    r = extract("I have a dream", model=str(tiny_model(family)), target="so do I", device="cpu")
    assert r.stack_names == ("encoder", "decoder", "cross")
    enc, dec, cross = r.stacks
    assert enc.weights.shape[:2] == (2, 4) and dec.weights.shape[0] == dec_layers
    assert cross.query.texts == dec.query.texts and cross.key.texts == enc.key.texts
    assert cross.weights.shape[2:] == (len(dec.query), len(enc.key))
    q = len(dec.query)
    assert (dec.weights[..., np.triu(np.ones((q, q), dtype=bool), 1)] == 0.0).all()
    assert r.inputs == {"target": "so do I"}


def test_batched_results_equal_single_runs(tiny_model):
    """Padding inside a batch must not change any sentence's weights."""
    backend = cached(str(tiny_model("gpt2")), CPU)
    texts = ["I have a dream", "the quick brown fox jumps over the lazy dog", "so"]
    batched = run_batch(backend, [Inputs(t) for t in texts], batch_size=3)
    for text, got in zip(texts, batched):
        (alone,) = run_batch(backend, [Inputs(text)])
        np.testing.assert_allclose(got.stacks[0].weights, alone.stacks[0].weights, atol=1e-6)
        assert got.stacks[0].query.texts == alone.stacks[0].query.texts


def test_dtype_bfloat16_still_returns_float32(tiny_model):
    r = extract("I have a dream", model=str(tiny_model("llama")), dtype="bfloat16", device="cpu")
    assert r.stacks[0].weights.dtype == np.float32 and r.precision == "bfloat16"


def test_a_batch_mixing_pairs_and_single_sentences_equals_single_runs(tiny_model):
    backend = cached(str(tiny_model("bert")), CPU)
    batch = [Inputs("I have a dream"), Inputs("so do I", pair="said the cat"), Inputs("attention")]
    for inputs, got in zip(batch, run_batch(backend, batch, batch_size=3)):
        (alone,) = run_batch(backend, [inputs])
        assert got.text == inputs.text and got.stacks[0].query.texts == alone.stacks[0].query.texts
        np.testing.assert_allclose(got.stacks[0].weights, alone.stacks[0].weights, atol=1e-6)


def test_decoder_target_at_the_limit_fails_cleanly_or_truncates(tiny_model):
    """The start token takes one position: the target may use max_positions - 1."""
    from attnviz.errors import InputError

    folder = str(tiny_model("bart"))  # max_position_embeddings = 64
    long_target = "the quick brown fox " * 40
    with pytest.raises(InputError, match="target is .* tokens long; the model takes at most 63"):
        extract("I have a dream", model=folder, target=long_target, device="cpu")
    r = extract("I have a dream", model=folder, target=long_target, device="cpu", truncate=True)
    assert len(r.stack("decoder").query) == 64
    assert any("target truncated" in note for note in r.notes), r.notes
