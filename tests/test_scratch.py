"""Our from-scratch attention against PyTorch's module and a real pretrained layer; the scratch model."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from harness import run, run_subprocess
from torch import nn

from attnviz.api import run_batch
from attnviz.backends.registry import load, minilm_folder
from attnviz.backends.scratch import (
    ScratchBackend,
    ScratchModel,
    embed,
    load_weights,
    save_weights,
    sinusoidal_positions,
    word_vectors,
    words,
)
from attnviz.backends.types import Inputs, LoadOptions
from attnviz.errors import Fix, ModelError, UsageError
from attnviz.scratch import MultiHeadAttention, causal_mask, padding_mask

D, H = 32, 4


def torch_pair(seed: int, bias: bool = True) -> tuple[nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(D, H, bias=bias, batch_first=True).eval()
    with torch.no_grad():  # torch zero-initialises its biases: make them count
        if bias:
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
    return theirs, MultiHeadAttention.from_torch(theirs).eval()


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "both"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_equals_torch_multihead_attention(cross, masking, bias):
    theirs, ours = torch_pair(seed=len(masking) + 7 * cross, bias=bias)
    B, Tq = 3, 5
    Tk = 7 if cross else Tq
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(B, Tq, D, generator=gen)
    kv = torch.randn(B, Tk, D, generator=gen) if cross else q
    keep = torch.ones(B, Tk, dtype=torch.bool)
    keep[1, -2:] = False  # batch item 1 has two padded keys
    keep[2, -1] = False
    mask = None  # ours: True = may attend
    attn_mask, key_padding_mask = None, None  # torch's: True = blocked
    if masking in ("causal", "both"):
        mask = causal_mask(Tq, Tk)  # (Tq, Tk)
        attn_mask = ~mask
    if masking in ("padding", "both"):
        pad = padding_mask(keep)  # (B, 1, 1, Tk)
        mask = pad if mask is None else mask & pad
        key_padding_mask = ~keep

    with torch.no_grad():
        out, w = ours(q, kv, kv, mask)
        ref_out, ref_w = theirs(
            q,
            kv,
            kv,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=True,
            average_attn_weights=False,
        )
    assert w.shape == ref_w.shape == (B, H, Tq, Tk)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, Tq), atol=1e-6, rtol=0)
    if masking in ("causal", "both"):
        assert (w.triu(diagonal=1) == 0).all()  # exactly 0, not merely small
    if masking in ("padding", "both"):
        assert (w[1, :, :, -2:] == 0).all() and (w[2, :, :, -1] == 0).all()


def test_weights_are_per_head_and_dropout_is_off_in_eval():
    _, ours = torch_pair(seed=3)
    ours.dropout.p = 0.5
    x = torch.randn(2, 6, D)
    with torch.no_grad():
        a, wa = ours(x, x, x)
        b, wb = ours(x, x, x)
    assert torch.equal(a, b) and torch.equal(wa, wb)
    assert wa.shape == (2, H, 6, 6)
    assert not torch.allclose(wa[:, 0], wa[:, 1])  # heads differ: nothing was averaged
    ours.train()
    with torch.no_grad():
        c, wc = ours(x, x, x)
    assert not torch.allclose(a, c)  # dropout now changes the weighted sum...
    torch.testing.assert_close(wc, wa)  # ...but the weights returned are the softmax itself


def test_a_row_with_every_key_masked_is_zero_not_nan():
    _, ours = torch_pair(seed=4)
    x = torch.randn(1, 3, D)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    with torch.no_grad():
        _, w = ours(x, x, x, mask)
    assert torch.isfinite(w).all() and (w[0, :, 1] == 0).all()
    assert (w[0, :, 0, 2] == 0).all()


def test_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(D, H, add_bias_kv=True))
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)


def test_transplanted_minilm_layers_reproduce_transformers_weights():
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    enc = AutoTokenizer.from_pretrained(folder)("I have a dream, said the man in Washington.", return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 6
    for layer, theirs in enumerate(out.attentions):
        ours = MultiHeadAttention.from_bert_layer(folder, layer)
        x = out.hidden_states[layer]  # (1, T, 384): what enters this layer
        with torch.no_grad():
            _, w = ours(x, x, x)
        assert w.shape == theirs.shape == (1, 12, x.shape[1], x.shape[1])
        torch.testing.assert_close(w, theirs, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="layer 6 does not exist"):
        MultiHeadAttention.from_bert_layer(folder, 6)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I have a dream", ["I", "have", "a", "dream"]),
        ("I have a dream.", ["I", "have", "a", "dream", "."]),
        ('"Don\'t stop," she said — twice!', ['"', "Don't", "stop", ",", '"', "she", "said", "—", "twice", "!"]),
        ("a well-known 3.5-star hotel", ["a", "well-known", "3", ".", "5-star", "hotel"]),
        ("Я мечтаю, что", ["Я", "мечтаю", ",", "что"]),
        ("我有一个梦想。", ["我", "有", "一", "个", "梦", "想", "。"]),
        ("love ❤️ 👍🏽!", ["love", "❤️", "👍🏽", "!"]),
    ],
)
def test_word_tokenizer_keeps_case_and_splits_punctuation(text, expected):
    assert words(text) == expected


def test_embeddings_are_word_vector_plus_position():
    # that they are the same in every process is checked by test_show_scratch_json_is_the_same_in_every_process
    x = embed(["dream", "I", "dream"], 16)[0]  # (3, 16)
    positions = sinusoidal_positions(3, 16)  # (3, 16)
    torch.testing.assert_close(x[0] - positions[0], word_vectors(["dream"], 16)[0])
    torch.testing.assert_close(x[2] - positions[2], x[0] - positions[0])  # same word, same vector
    assert not torch.allclose(x[0], x[2])  # ...at another position
    assert not torch.allclose(word_vectors(["dream"], 16), word_vectors(["Dream"], 16))


def test_scratch_backend_names_its_stacks():
    text = Inputs("I have a dream")
    (enc,) = run_batch(load("scratch"), [text])
    assert enc.stack_names == ("encoder",) and enc.stacks[0].weights.shape == (1, 8, 4, 4)
    (dec,) = run_batch(load("scratch", LoadOptions(causal=True, layers=2)), [text])
    w = dec.stack("decoder").weights  # (2, 8, 4, 4)
    assert w.shape == (2, 8, 4, 4) and dec.stacks[0].causal
    assert (np.triu(w, k=1) == 0).all()
    (cross,) = run_batch(
        load("scratch", LoadOptions(d_model=64, heads=4)), [Inputs("I have a dream", source="J'ai un rêve")]
    )
    s = cross.stack("cross")
    assert s.query.texts == ("I", "have", "a", "dream") and s.key.texts == ("J'ai", "un", "rêve")
    assert s.weights.shape == (1, 4, 4, 3)
    assert cross.to_json()["source"] == "J'ai un rêve"


def test_seed_changes_the_weights_and_nothing_else_does():
    a = run_batch(load("scratch", LoadOptions(d_model=64, heads=4, seed=1)), [Inputs("I have a dream")])[0]
    torch.manual_seed(12345)  # the global generator must not matter
    b = run_batch(load("scratch", LoadOptions(d_model=64, heads=4, seed=1)), [Inputs("I have a dream")])[0]
    c = run_batch(load("scratch", LoadOptions(d_model=64, heads=4, seed=2)), [Inputs("I have a dream")])[0]
    assert np.array_equal(a.stacks[0].weights, b.stacks[0].weights)
    assert not np.allclose(a.stacks[0].weights, c.stacks[0].weights)


def test_weights_file_round_trip(tmp_path):
    model = ScratchModel(48, 6, 2).reset(seed=9)
    with torch.no_grad():
        model.layers[1].query.weight.mul_(3.0)  # "trained": differs from any seed
    path = tmp_path / "mine.safetensors"
    save_weights(model, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys())[:4] == [
            "layers.0.key.bias",
            "layers.0.key.weight",
            "layers.0.out.bias",
            "layers.0.out.weight",
        ]
        assert f.metadata()["heads"] == "6"
    backend = ScratchBackend(LoadOptions(weights=str(path)))  # --d-model/--heads defaults: the file wins
    assert (backend.d_model, backend.heads, len(backend.model.layers)) == (48, 6, 2)
    loaded = load_weights(path, heads=1)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    result = backend.run([Inputs("I have a dream")])[0].validate()
    assert result.stacks[0].weights.shape == (2, 6, 4, 4)


def test_bad_weights_and_options_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no weights file"):
        ScratchBackend(LoadOptions(weights=str(tmp_path / "missing.safetensors")))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot read scratch weights"):
        ScratchBackend(LoadOptions(weights=str(junk)))
    with pytest.raises(UsageError, match="d_model 100 is not divisible by 8 heads") as caught:
        ScratchBackend(LoadOptions(d_model=100, heads=8))
    assert caught.value.fix is Fix.SCRATCH_SIZES
    with pytest.raises(UsageError, match="a causal mask hides future tokens") as caught:
        load("scratch", LoadOptions(causal=True)).run([Inputs("a b", source="c d")])
    assert caught.value.fix is Fix.SCRATCH_CAUSAL_SOURCE


def test_show_scratch_json_is_the_same_in_every_process():
    args = ["show", "I have a dream", "--model", "scratch", "--format", "json", "--layer", "all", "--head", "all"]
    here = run(*args)
    assert here.code == 0, here.stderr
    doc = here.json()
    (stack,) = doc["stacks"]
    assert stack["name"] == "encoder" and doc["model"] == "scratch"
    assert stack["query"]["tokens"] == stack["key"]["tokens"] == ["I", "have", "a", "dream"]
    assert stack["query"]["offsets"] == [[0, 1], [2, 6], [7, 8], [9, 14]]
    assert np.asarray(stack["attention"]).shape == (1, 8, 4, 4)
    assert run(*args).json() == doc
    # Python's hash() is salted per process; the word vectors must not be: another process, another salt
    salt = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    there = run_subprocess(*args, env={"PYTHONHASHSEED": salt})
    assert there.code == 0, there.stderr
    assert there.json() == doc


def test_truncate_warns_like_the_other_backends():
    from attnviz import extract

    r = extract(" ".join(["word"] * 1100), model="scratch", truncate=True)
    assert r.notes == ("input truncated to 1024 tokens (the scratch model's maximum)",)
    assert len(r.stacks[0].query) == 1024
