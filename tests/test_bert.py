"""Our own BERT (the embedded model's fast path) against transformers' eager attention."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz import extract
from attnviz.backends.registry import minilm_folder

SENTENCES = [
    "I have a dream",
    "Я мечтаю, что однажды эта нация поднимется.",
    "我有一个梦想。",
    "Emoji too: 🚀🔥 and ❤️ — unbelievably tokenized!",
]


@pytest.fixture(scope="module")
def transformers_minilm():
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def attentions(text: str, pair: str | None = None):
        enc = tokenizer(text, pair, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
        tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
        return tokens, torch.stack(out.attentions, 1)[0].numpy()  # (L, h, T, T)

    return attentions


@pytest.mark.parametrize("text", SENTENCES)
def test_native_minilm_equals_transformers_eager(transformers_minilm, text):
    ours = extract(text, device="cpu").stack("encoder")
    tokens, theirs = transformers_minilm(text)
    assert list(ours.query.texts) == tokens
    assert ours.weights.shape == theirs.shape == (6, 12, len(tokens), len(tokens))
    np.testing.assert_allclose(ours.weights, theirs, atol=1e-5, rtol=0)


def test_native_minilm_pair_equals_transformers(transformers_minilm):
    ours = extract("I have a dream", pair="so do I", device="cpu").stack("encoder")
    tokens, theirs = transformers_minilm("I have a dream", "so do I")
    assert list(ours.query.texts) == tokens
    np.testing.assert_allclose(ours.weights, theirs, atol=1e-5, rtol=0)


def test_padding_in_a_batch_changes_nothing():
    from attnviz.api import run_batch
    from attnviz.backends.registry import cached
    from attnviz.backends.types import Device, Inputs, LoadOptions

    backend = cached("minilm", LoadOptions(device=Device.CPU))
    batch = run_batch(backend, [Inputs(t) for t in SENTENCES], batch_size=4)
    lengths = {len(r.stacks[0].query) for r in batch}
    assert len(lengths) == len(SENTENCES)  # every sentence padded to a different extent
    for text, got in zip(SENTENCES, batch):
        alone = extract(text, device="cpu").stack("encoder")
        assert got.stacks[0].query == alone.query
        np.testing.assert_allclose(got.stacks[0].weights, alone.weights, atol=1e-5, rtol=0)


def test_too_long_input_names_the_limit():
    from attnviz.errors import InputError

    with pytest.raises(InputError, match="600 tokens long; the model takes at most 512") as caught:
        extract("word " * 598, device="cpu")
    assert "--" not in caught.value.message + (caught.value.hint or "")  # the core never names flags
    truncated = extract("word " * 598, device="cpu", truncate=True)
    assert len(truncated.stacks[0].query) == 512 and truncated.stacks[0].query.texts[-1] == "[SEP]"
    assert any("truncated to 512" in note for note in truncated.notes), truncated.notes
