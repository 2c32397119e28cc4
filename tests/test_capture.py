"""Layer-by-layer capture (hf.py) and the streamed npz (saved.NpzStream): the same numbers as
transformers' own `output_attentions=True`, holding only what the view keeps."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from harness import run, run_subprocess
from tiny_models import _bpe_tokenizer

from attnviz import extract
from attnviz.api import run_batch
from attnviz.backends.registry import load
from attnviz.backends.types import Capture, Device, DeviceMap, Inputs, LoadOptions
from attnviz.errors import DeviceError, ModelError, SavedFileError
from attnviz.saved import load as load_saved
from attnviz.spec import ALL, Indices, ViewSpec
from attnviz.views import apply

CPU = LoadOptions(device=Device.CPU)
FAMILIES = ("bert", "gpt2", "llama", "bart", "t5")
TEXTS = ("I have a dream", "the quick brown fox jumps over the lazy dog", "so do I")
CAPTURES = {
    "every layer": None,
    "layer 0": Capture(layers=Indices.parse(0)),
    "heads 1,3 of every layer": Capture(layers=ALL, heads=Indices.parse("1,3", "head")),
    "last layer, head -1": Capture(heads=Indices.parse(-1, "head"), layers=Indices(last=True)),
}


def reference(backend, batch: list[Inputs]) -> list[dict[str, np.ndarray]]:
    """transformers' own weights for a batch (output_attentions=True), padding cut by the masks."""
    _, inputs = backend._prepare(batch, False)  # the model's inputs, as attnviz builds them
    with torch.inference_mode():
        out = backend.model(**inputs, output_attentions=True)
    src = inputs["attention_mask"].bool().numpy()
    tgt = inputs["decoder_attention_mask"].bool().numpy() if "decoder_attention_mask" in inputs else None
    if tgt is None:
        fields = {"decoder" if backend.family == "decoder" else "encoder": ("attentions", src, src)}
    else:
        fields = {
            "encoder": ("encoder_attentions", src, src),
            "decoder": ("decoder_attentions", tgt, tgt),
            "cross": ("cross_attentions", tgt, src),
        }
    maps = []
    for b in range(len(batch)):
        maps.append(
            {
                name: torch.stack(getattr(out, field), 1)[b].float().numpy()[:, :, q[b]][:, :, :, k[b]]
                for name, (field, q, k) in fields.items()
            }
        )
    return maps


def backend_of(tiny_model, family: str):
    return load(str(tiny_model(family)), CPU)  # a fresh backend: nothing cached from other tests


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("capture", list(CAPTURES), ids=list(CAPTURES))
@pytest.mark.parametrize("size", [1, 3], ids=["single", "batched"])
def test_hooked_capture_equals_output_attentions(tiny_model, family, capture, size):
    backend = backend_of(tiny_model, family)
    assert backend.sites, f"{family} should run hooked"
    batch = [Inputs(t) for t in TEXTS[:size]]
    wanted = CAPTURES[capture] or Capture()
    results = backend.run(batch, capture=CAPTURES[capture])
    for result, full in zip(results, reference(backend, batch)):
        assert result.stack_names == tuple(full)
        for stack in result.stacks:
            layers, heads = wanted.pick(stack.model_layers, stack.model_heads)
            expected = full[stack.name][layers][:, heads]
            assert stack.weights.dtype == np.float32 and stack.weights.flags.c_contiguous
            assert stack.weights.shape == expected.shape
            np.testing.assert_allclose(stack.weights, expected, atol=1e-5, rtol=0)
            assert [o.single for o in stack.layer_axis] == layers
            assert [o.single for o in stack.head_axis] == heads
            assert stack.model_layers == full[stack.name].shape[0]
            assert stack.model_heads == full[stack.name].shape[1] == 4
        result.validate()


def test_pairs_are_captured_like_output_attentions(tiny_model):
    backend = backend_of(tiny_model, "bert")
    batch = [Inputs("I have a dream", pair="so do I"), Inputs("the quick brown fox", pair="jumps over the lazy dog")]
    capture = Capture(layers=Indices.parse(1), heads=Indices.parse("0,2", "head"))
    for result, full in zip(backend.run(batch, capture=capture), reference(backend, batch)):
        (stack,) = result.stacks
        assert stack.query.pair_start is not None
        np.testing.assert_allclose(stack.weights, full["encoder"][[1]][:, [0, 2]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_model_is_never_asked_for_attentions_and_hooks_go_away(tiny_model, family):
    backend = backend_of(tiny_model, family)
    asked: list[object] = []
    handle = backend.model.register_forward_pre_hook(
        lambda module, args, kwargs: asked.append(kwargs.get("output_attentions")), with_kwargs=True
    )
    try:
        (result,) = backend.run([Inputs("I have a dream")], capture=Capture(layers=Indices.parse(0)))
    finally:
        handle.remove()
    assert asked == [None]  # one forward pass, without output_attentions
    assert all(s.layers == 1 for s in result.stacks)
    assert not any(site.module._forward_hooks for sites in backend.sites.values() for site in sites)


@pytest.mark.parametrize("family", FAMILIES)
def test_info_counts_layers_and_heads_without_a_forward_pass(tiny_model, family):
    backend = backend_of(tiny_model, family)
    calls: list[int] = []
    handle = backend.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        info = backend.info
    finally:
        handle.remove()
    assert calls == []
    (full,) = reference(backend, [Inputs("attention is all you need")])
    assert info.stacks == tuple(full)
    assert info.layers == {name: maps.shape[0] for name, maps in full.items()}
    assert info.heads == next(iter(full.values())).shape[1]


def test_shared_layers_are_counted_as_the_model_runs_them(tmp_path):
    """ALBERT runs one layer module 12 times: the hooks count calls, not modules."""
    import transformers as tf

    from attnviz.backends.registry import minilm_folder

    tokenizer = tf.AutoTokenizer.from_pretrained(str(minilm_folder()))
    torch.manual_seed(0)
    config = tf.AlbertConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    tf.AlbertModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backend = load(str(tmp_path), CPU)
    assert [len(s) for s in backend.sites.values()] == [1]
    assert backend.info.layers == {"encoder": 3}
    batch = [Inputs(t) for t in TEXTS]
    for result, full in zip(backend.run(batch, capture=Capture(layers=Indices.parse(-1))), reference(backend, batch)):
        np.testing.assert_allclose(result.stacks[0].weights, full["encoder"][[2]], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def bloom(tmp_path_factory):
    """A tiny BLOOM: its transformers code names no attention modules (GPT-J's did until 5.2x)."""
    import transformers as tf

    folder = tmp_path_factory.mktemp("bloom")
    tokenizer = _bpe_tokenizer(bos=False, eos=False)
    torch.manual_seed(0)
    config = tf.BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=4)
    tf.BloomModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_model_that_names_no_attention_modules_runs_the_old_way(bloom):
    backend = load(str(bloom), CPU)
    assert backend.sites == {}
    batch = [Inputs(t) for t in TEXTS]
    capture = Capture(layers=Indices.parse(1), heads=Indices.parse("2", "head"))
    for result, full in zip(backend.run(batch, capture=capture), reference(backend, batch)):
        np.testing.assert_allclose(result.stacks[0].weights, full["decoder"][[1]][:, [2]], atol=1e-5, rtol=0)
    assert backend.info.layers == {"decoder": 2} and backend.info.heads == 4
    out = run("show", TEXTS[1], "--model", str(bloom), "--format", "npz", "--layer", "all", "--device", "cpu")
    assert out.code == 0, out.stderr
    (saved,) = load_saved_bytes(out.stdout_bytes)
    np.testing.assert_allclose(saved.stacks[0].weights, reference(backend, batch[1:2])[0]["decoder"], atol=1e-5)


# ---------------------------------------------------------------- the streamed npz


def load_saved_bytes(data: bytes):
    from attnviz.saved import _load_npz

    return _load_npz(io.BytesIO(data), "stdout")


VIEWS = {
    "every layer": ["--layer", "all"],
    "layer 0": ["--layer", "0"],
    "the last layer": [],
    "heads 1,3": ["--layer", "all", "--head", "1,3"],
    "mean of heads, specials hidden": ["--layer", "all", "--head", "mean", "--hide-special", "--renormalize"],
    "words, a token window": ["--layer", "0,-1", "--words", "--tokens", "1:4"],
    "one query": ["--layer", "1", "--query", "2", "--head", "max"],
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("view", list(VIEWS), ids=list(VIEWS))
def test_a_streamed_npz_holds_what_the_whole_result_would(tiny_model, family, view):
    """One sentence's npz is written layer by layer; it must equal the view of the whole result."""
    folder = str(tiny_model(family))
    args = VIEWS[view]
    out = run("show", TEXTS[1], "--model", folder, "--format", "npz", "--device", "cpu", *args)
    assert out.code == 0, out.stderr
    (streamed,) = load_saved_bytes(out.stdout_bytes)
    spec = ViewSpec.build(**_spec_args(args))
    whole = apply(extract(TEXTS[1], model=folder, device="cpu"), spec)
    assert streamed.stack_names == whole.stack_names
    for got, want in zip(streamed.stacks, whole.stacks):
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-6, rtol=0)
        assert got.weights.shape == want.weights.shape
        assert (got.layer_axis, got.head_axis, got.kind, got.notes) == (
            want.layer_axis,
            want.head_axis,
            want.kind,
            want.notes,
        )
        assert got.query.texts == want.query.texts and got.key.texts == want.key.texts
        assert (got.model_layers, got.model_heads, got.token_view) == (
            want.model_layers,
            want.model_heads,
            want.token_view,
        )


def _spec_args(args: list[str]) -> dict[str, object]:
    flags = {"--layer": "layer", "--head": "head", "--tokens": "tokens", "--query": "query"}
    spec: dict[str, object] = {}
    i = 0
    while i < len(args):
        if args[i] in flags:
            spec[flags[args[i]]] = args[i + 1]
            i += 2
        else:
            spec[args[i].removeprefix("--").replace("-", "_")] = True
            i += 1
    return spec


def test_a_token_window_marks_the_stack_by_its_loosest_layer(tiny_model):
    """Whether rows lose weight to a window differs by layer: the file says so if any layer does."""
    folder = str(tiny_model("gpt2"))
    args = ["--layer", "all", "--tokens", "0:3"]
    out = run("show", TEXTS[1], "--model", folder, "--format", "npz", "--device", "cpu", *args)
    (streamed,) = load_saved_bytes(out.stdout_bytes)
    whole = apply(extract(TEXTS[1], model=folder, device="cpu"), ViewSpec.build(layer="all", tokens="0:3"))
    assert streamed.stacks[0].kind == whole.stacks[0].kind and streamed.stacks[0].notes == whole.stacks[0].notes


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_a_streamed_npz_through_a_real_pipe_reads_back_and_renders(tiny_model, tmp_path, family):
    folder = str(tiny_model(family))
    out = run_subprocess("show", TEXTS[1], "--model", folder, "--format", "npz", "--layer", "all", "--device", "cpu")
    assert out.code == 0, out.stderr
    path = tmp_path / "saved.npz"
    path.write_bytes(out.stdout_bytes)
    (back,) = load_saved(path)
    full = reference(load(folder, CPU), [Inputs(TEXTS[1])])[0]
    for stack in back.stacks:
        np.testing.assert_allclose(stack.weights, full[stack.name], atol=1e-5, rtol=0)
    rendered = run("render", str(path), "--format", "json", "--layer", "all")
    assert rendered.code == 0, rendered.stderr
    assert [s["name"] for s in rendered.json()["stacks"]] == list(full)
    with np.load(path) as z:  # plain numpy reads it too
        assert z["0/decoder/attention"].shape == full["decoder"].shape


def test_a_stream_that_fails_before_its_first_layer_writes_nothing(tiny_model):
    out = run("show", "I have a dream", "--model", str(tiny_model("gpt2")), "--format", "npz", "--query", "nosuchword")
    assert out.code == 1 and out.stdout_bytes == b""
    assert out.stderr.startswith("error: no query token 'nosuchword'") and "Traceback" not in out.stderr


def test_a_stream_that_fails_midway_leaves_no_readable_file(tiny_model):
    """The encoder's layers are written before the decoder's fail: the output is not an npz anyone reads."""
    folder = str(tiny_model("bart"))
    args = ("--target", "so", "--tokens", "5:", "--layer", "all", "--format", "npz", "--device", "cpu")
    out = run("show", "the quick brown fox jumps over the lazy dog", "--model", folder, *args)
    assert out.code == 1
    assert out.stderr.count("\n") <= 2 and "token window 5: starts past the end" in out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(SavedFileError, match="not a readable attnviz .npz"):
        load_saved_bytes(out.stdout_bytes)


def test_stack_choice_and_several_sentences_still_write_npz(tiny_model):
    folder = str(tiny_model("t5"))
    one = run("show", "I have a dream", "--model", folder, "--format", "npz", "--stack", "cross", "--layer", "all")
    assert one.code == 0, one.stderr
    assert load_saved_bytes(one.stdout_bytes)[0].stack_names == ("cross",)
    bad = run("show", "I have a dream", "--model", str(tiny_model("gpt2")), "--format", "npz", "--stack", "cross")
    assert bad.code == 1 and "there is no 'cross' stack here (there is decoder)" in bad.stderr
    two = run("show", "I have a dream", "so do I", "--model", folder, "--format", "npz", "--layer", "0")
    assert [r.stack_names for r in load_saved_bytes(two.stdout_bytes)] == [("encoder", "decoder", "cross")] * 2


# ---------------------------------------------------------------- dtypes and device maps


@pytest.mark.parametrize("dtype, tolerance", [("bfloat16", 3e-2), ("float16", 4e-3)])
@pytest.mark.parametrize("family", ["llama", "bart"])
def test_half_precision_runs_on_the_cpu_and_comes_out_float32(tiny_model, family, dtype, tolerance):
    folder = str(tiny_model(family))
    half = extract("I have a dream", model=folder, dtype=dtype, device="cpu")
    full = extract("I have a dream", model=folder, device="cpu")
    assert half.precision == dtype
    for h, f in zip(half.stacks, full.stacks):
        assert h.weights.dtype == np.float32
        np.testing.assert_allclose(h.weights, f.weights, atol=tolerance * 2, rtol=0)


def test_a_device_map_spreads_the_model_and_gives_the_same_weights(tiny_model):
    pytest.importorskip("accelerate")
    folder = str(tiny_model("llama"))
    mapped = load(folder, LoadOptions(device_map=DeviceMap.AUTO))  # here: no GPU, so all of it on the CPU
    assert {p.device.type for p in mapped.model.parameters()} == {"cpu"}
    (got,) = run_batch(mapped, [Inputs("I have a dream")], capture=Capture(layers=ALL))
    want = extract("I have a dream", model=folder, device="cpu")
    np.testing.assert_allclose(got.stacks[0].weights, want.stacks[0].weights, atol=1e-6, rtol=0)


def test_a_model_that_fits_no_device_is_refused_not_paged_in_from_the_disk(tiny_model, monkeypatch):
    """accelerate puts what fits neither the GPUs nor the memory on the disk: that is an error, not a crawl.
    The machine's memory is made to look like 20 kB to accelerate (psutil), which is how it measures it."""
    pytest.importorskip("accelerate")
    import psutil

    real = psutil.virtual_memory
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real()._replace(available=20_000, total=20_000))
    with pytest.raises(ModelError, match="does not fit in the memory of this machine's devices") as caught:
        load(str(tiny_model("llama")), LoadOptions(device_map=DeviceMap.AUTO))
    assert "--dtype" not in str(caught.value) and "bfloat16" in (caught.value.hint or "")


def test_a_device_map_with_a_device_is_refused(tiny_model):
    with pytest.raises(DeviceError, match="a device map places the model itself"):
        load(str(tiny_model("gpt2")), LoadOptions(device=Device.CPU, device_map=DeviceMap.AUTO))
    out = run("show", "hi", "--model", str(tiny_model("gpt2")), "--device-map", "auto", "--device", "cpu")
    assert out.code == 1 and out.stderr.startswith("error: a device map places the model itself")
