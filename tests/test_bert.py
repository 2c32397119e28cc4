"""attnviz's numpy BERT (the embedded model's path) against transformers' eager attention.

transformers runs each case once per module (one fixture); our side runs them singly,
batched with padding, and through `capture`. Everything must hold to 1e-5.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnviz.api import run_batch
from attnviz.backends import native_bert
from attnviz.backends.registry import MINILM_NAME, minilm_folder
from attnviz.backends.types import Capture, Device, DeviceMap, Dtype, Inputs, LoadOptions
from attnviz.errors import DeviceError, InputError, ModelError, SelectionError
from attnviz.spec import Indices

ATOL = 1e-5

SENTENCES = [
    "I have a dream",
    "a",  # 3 tokens with [CLS] and [SEP]
    "Я мечтаю, что однажды эта нация поднимется.",
    "我有一个梦想。",
    "لدي حلم بأن يوماً ما ستنهض هذه الأمة",
    "Emoji too: 🚀🔥 and ❤️ — unbelievably tokenized!",
    "Café naïve résumé, Ångström façade; Tiếng Việt có dấu.",
    "मेरा एक सपना है कि एक दिन यह राष्ट्र उठेगा",
    "夢があります。いつの日か、この国は立ち上がる。",
]
PAIRS = [
    ("I have a dream", "so do I"),
    ("Я мечтаю.", "我有一个梦想。"),
]
# every language above, repeated past the model's 512 positions (truncated to 512) …
LONG = " ".join(SENTENCES) * 8
# … and exactly 512 tokens with no truncation: [CLS] + 510 words + [SEP]
FULL = "dream " * 510


def _texts(pair: tuple[str, str | None]) -> Inputs:
    return Inputs(pair[0], pair=pair[1])


CASES: list[tuple[str, str | None]] = [(s, None) for s in SENTENCES] + list(PAIRS) + [(LONG, None), (FULL, None)]


@pytest.fixture(scope="module")
def theirs() -> dict[tuple[str, str | None], tuple[list[str], np.ndarray]]:
    """transformers' eager attention for every case, alone (no padding): tokens, (L, h, T, T)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = {}
    with torch.inference_mode():
        for text, pair in CASES:
            enc = tokenizer(text, pair, return_tensors="pt", truncation=True, max_length=512)
            attentions = model(**enc, output_attentions=True).attentions
            tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
            out[(text, pair)] = tokens, torch.stack(attentions, 1)[0].numpy()
    return out


@pytest.fixture(scope="module")
def backend() -> native_bert.BertBackend:
    return native_bert.BertBackend(minilm_folder(), MINILM_NAME, LoadOptions(device=Device.CPU))


def test_the_cases_span_one_to_512_tokens(theirs):
    lengths = sorted(w.shape[-1] for _, w in theirs.values())
    assert lengths[0] == 3 and lengths[-2:] == [512, 512]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{i}-{len(c[0])}-chars{'-pair' if c[1] else ''}" for i, c in enumerate(CASES)]
)
def test_each_input_alone_equals_transformers_eager(backend, theirs, case):
    tokens, want = theirs[case]
    (got,) = backend.run([_texts(case)], truncate=True)
    stack = got.stacks[0]
    assert list(stack.query.texts) == tokens
    assert stack.weights.dtype == np.float32 and stack.weights.shape == want.shape
    np.testing.assert_allclose(stack.weights, want, atol=ATOL, rtol=0)
    assert got.model == MINILM_NAME and got.precision == "float32"


def test_pairs_carry_segments_and_match(backend, theirs):
    case = PAIRS[0]
    (got,) = backend.run([_texts(case)])
    toks = got.stacks[0].query
    assert toks.texts[toks.pair_start] == "so"  # B starts after the first [SEP]
    assert set(toks.segments) == {0, 1}  # token_type_ids reached the model: the weights below depend on them
    np.testing.assert_allclose(got.stacks[0].weights, theirs[case][1], atol=ATOL, rtol=0)


def test_a_padded_batch_equals_each_input_alone(backend, theirs):
    """Short sentences, pairs and a 512-token input in padded batches: padding changes nothing."""
    short = [c for c in CASES if c[0] not in (LONG, FULL)]
    for batch in (short, [(FULL, None), ("a", None)]):  # the second pads 3 tokens to 512
        results = run_batch(backend, [_texts(c) for c in batch], batch_size=len(batch), truncate=True)
        for case, got in zip(batch, results):
            tokens, want = theirs[case]
            assert list(got.stacks[0].query.texts) == tokens
            np.testing.assert_allclose(got.stacks[0].weights, want, atol=ATOL, rtol=0)


def test_one_and_two_token_sequences_equal_transformers():
    """The encoder itself at T = 1 and 2 (no text gives fewer than 3 tokens with [CLS] and [SEP])."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(minilm_folder(), attn_implementation="eager").eval()
    encoder = native_bert.BertEncoder(minilm_folder())
    for ids in ([[101]], [[101, 102]], [[2023, 2003]]):
        with torch.inference_mode():
            want = torch.stack(model(torch.tensor(ids), output_attentions=True).attentions, 1)[0].numpy()
        a = np.array(ids)
        got = dict(encoder.attention(a, np.zeros_like(a), None, range(6), range(12)))
        np.testing.assert_allclose(np.stack([got[i][0] for i in range(6)]), want, atol=ATOL, rtol=0)


def test_capture_keeps_the_named_maps_and_stops_early(theirs):
    backend = native_bert.BertBackend(minilm_folder(), MINILM_NAME, LoadOptions())
    case = CASES[0]
    capture = Capture(layers=Indices.parse("0", "layer"), heads=Indices.parse("3,1,-1", "head"))
    (got,) = backend.run([_texts(case)], capture=capture)
    stack = got.stacks[0]
    layers, heads = capture.pick(6, 12)
    assert layers == [0] and sorted(heads) == [1, 3, 11]
    assert [o.ids for o in stack.layer_axis] == [(0,)] and [o.ids for o in stack.head_axis] == [(h,) for h in heads]
    assert (stack.model_layers, stack.model_heads) == (6, 12)
    np.testing.assert_allclose(stack.weights, theirs[case][1][[0]][:, heads], atol=ATOL, rtol=0)
    assert set(backend.encoder.weights._layers) == {0}  # layer 0 needed one layer's weights, not six

    capture = Capture(layers=Indices.parse("2,4", "layer"), heads=Indices.parse("all", "head"))
    (got,) = backend.run([_texts(case)], capture=capture)
    assert [o.ids for o in got.stacks[0].layer_axis] == [(2,), (4,)]
    np.testing.assert_allclose(got.stacks[0].weights, theirs[case][1][[2, 4]], atol=ATOL, rtol=0)
    assert set(backend.encoder.weights._layers) == {0, 1, 2, 3, 4}  # layer 5 never read

    with pytest.raises(SelectionError):
        backend.run([_texts(case)], capture=Capture(layers=Indices.parse("6", "layer")))


def test_stream_hands_over_each_kept_layer_as_run_gives_it(backend, theirs):
    from attnviz.backends.types import LayerStreaming

    assert isinstance(backend, LayerStreaming)
    case = (LONG, None)
    parts: list = []
    capture = Capture(layers=Indices.parse("1,3", "layer"), heads=Indices.parse("0:4", "head"))
    backend.stream(_texts(case), parts.append, truncate=True, capture=capture)
    assert [[o.ids for o in p.stacks[0].layer_axis] for p in parts] == [[(1,)], [(3,)]]
    for part, layer in zip(parts, (1, 3)):
        (stack,) = part.stacks
        assert stack.weights.shape == (1, 4, 512, 512) and (stack.model_layers, stack.model_heads) == (6, 12)
        np.testing.assert_allclose(stack.weights[0], theirs[case][1][layer, :4], atol=ATOL, rtol=0)
        assert any("truncated to 512" in note for note in part.notes)


def test_default_capture_is_the_last_layer_every_head(backend, theirs):
    from attnviz.spec import ViewSpec

    case = CASES[2]
    (got,) = backend.run([_texts(case)], capture=Capture.for_view(ViewSpec.build()))
    assert [o.ids for o in got.stacks[0].layer_axis] == [(5,)] and got.stacks[0].heads == 12
    np.testing.assert_allclose(got.stacks[0].weights, theirs[case][1][[5]], atol=ATOL, rtol=0)


def test_erfc_and_gelu_against_the_exact_erf():
    z = np.linspace(0, 30, 300_001)
    exact = np.array([math.erfc(v) for v in z])
    assert np.abs(native_bert.erfc_positive(z) - exact).max() < 1e-9  # the fit itself, in float64
    x = np.linspace(-12, 12, 480_001, dtype=np.float32)
    exact_gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    err = np.abs(native_bert.gelu(x).astype(np.float64) - exact_gelu)
    assert native_bert.gelu(x).dtype == np.float32
    assert (err <= 4e-7 * np.maximum(1, np.abs(x))).all(), err.max()  # ~1 float32 ulp
    assert native_bert.gelu(np.float32([-40, 0, 40])).tolist() == [0, 0, 40]


def test_blas_runs_one_thread_during_the_forward_pass(monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    for var in native_bert._THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    with native_bert.blas_threads():
        assert blas_threads() == {native_bert.BLAS_THREADS}
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    before = blas_threads()
    with native_bert.blas_threads():  # the user's variable wins: nothing is changed
        assert blas_threads() == before


def test_a_tiny_saved_bert_equals_transformers(tiny_model):
    """Any plain BERT folder (here 2 layers × 4 heads × 32, random weights) runs the same way."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = tiny_model("bert")
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ours = native_bert.BertBackend(folder, "tiny", LoadOptions())
    assert ours.info.layers == {"encoder": 2} and ours.info.heads == 4
    batch = [Inputs("I have a dream"), Inputs("Я мечтаю", pair="so do I")]
    for inputs, got in zip(batch, ours.run(batch)):
        enc = tokenizer(inputs.text, inputs.pair, return_tensors="pt")
        with torch.inference_mode():
            want = torch.stack(model(**enc, output_attentions=True).attentions, 1)[0].numpy()
        np.testing.assert_allclose(got.stacks[0].weights, want, atol=ATOL, rtol=0)


def _copy_of_tiny(tiny_model, tmp_path: Path) -> Path:
    folder = tmp_path / "bert"
    shutil.copytree(tiny_model("bert"), folder)
    return folder


def test_broken_folders_are_model_errors(tiny_model, tmp_path):
    folder = _copy_of_tiny(tiny_model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ModelError, match="hidden_act 'relu'"):
        native_bert.BertBackend(folder, "tiny", LoadOptions())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ModelError, match="lacks 16 BERT weights"):
        native_bert.BertBackend(folder, "tiny", LoadOptions())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(ModelError, match="the config says"):
        native_bert.BertBackend(folder, "tiny", LoadOptions())
    (folder / "config.json").write_text(json.dumps(config))
    small = native_bert.BertBackend(folder, "tiny", LoadOptions())
    small.encoder.config = native_bert.BertConfig(**{**vars(small.encoder.config), "vocab_size": 100})
    with pytest.raises(ModelError, match="no embedding for"):  # ids past the embedding table
        small.run([Inputs("I have a dream")])
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(ModelError, match="cannot read the BERT weights"):
        native_bert.BertBackend(folder, "tiny", LoadOptions())


def test_the_numpy_path_refuses_other_devices_and_dtypes():
    with pytest.raises(DeviceError):
        native_bert.BertBackend(minilm_folder(), MINILM_NAME, LoadOptions(dtype=Dtype.FLOAT16))


def test_the_registry_sends_gpus_and_half_dtypes_to_transformers(theirs):
    from attnviz.backends.registry import load, load_tokenizer, runs_native

    assert runs_native(LoadOptions()) and runs_native(LoadOptions(device=Device.CPU))
    assert not runs_native(LoadOptions(device=Device.CUDA)) and not runs_native(LoadOptions(device=Device.MPS))
    assert not runs_native(LoadOptions(dtype=Dtype.BFLOAT16))
    assert not runs_native(LoadOptions(device_map=DeviceMap.AUTO))
    assert load_tokenizer("minilm", LoadOptions(device=Device.CUDA)).info.backend == "native"
    assert load("minilm", LoadOptions()).info.backend == "native"
    half = load("minilm", LoadOptions(device=Device.CPU, dtype=Dtype.BFLOAT16))
    assert half.info.backend == "transformers" and half.info.name == MINILM_NAME
    (got,) = half.run([_texts(CASES[0])])
    assert got.precision == "bfloat16"
    np.testing.assert_allclose(got.stacks[0].weights, theirs[CASES[0]][1], atol=0.05, rtol=0)


def test_too_long_input_names_the_limit(backend):
    with pytest.raises(InputError, match="600 tokens long; the model takes at most 512") as caught:
        backend.run([Inputs("word " * 598)])
    assert "--" not in caught.value.message + (caught.value.hint or "")  # the core never names flags
    (truncated,) = backend.run([Inputs("word " * 598)], truncate=True)
    assert len(truncated.stacks[0].query) == 512 and truncated.stacks[0].query.texts[-1] == "[SEP]"
    assert any("truncated to 512" in note for note in truncated.notes), truncated.notes
