"""Every architecture of the tiny zoo: transformers' own eager weights, batched and single, or a clear no.

Each family of tests/tiny_zoo.py is decided here, once: EXACT families give what
`model(..., output_attentions=True)` gives on the same ids; REBUILT families return
something else there (pre-softmax scores, a sliding-window band, local blocks), and their
maps are proved against what the model does with them (the values each map mixes, or the
model's own softmax); REFUSED families exit 1 with one line that says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from harness import run
from tiny_zoo import BY_NAME, build

from attnviz import extract
from attnviz.api import run_batch
from attnviz.backends import families
from attnviz.backends.registry import cached
from attnviz.backends.types import Device, Inputs, LoadOptions
from attnviz.errors import InputError
from attnviz.result import MapKind

CPU = LoadOptions(device=Device.CPU)
LONG = "the quick brown fox jumps over the lazy dog, so do I said the cat"  # past every tiny window and block
TEXTS = ("I have a dream", LONG, "attention is all you need")  # three lengths: a batch pads two of them

REBUILT = ("longformer", "led", "longt5", "squeezebert", "prophetnet")
REFUSED = {
    "funnel": "pools its sequence between blocks",
    "longt5-tglobal": "attends to summaries of whole blocks",
    "pegasus_x": "learned global tokens",
    "nystromformer-landmarks": "approximates attention through landmarks",
}
# refused as well; checked through the CLI in this process (the ones above run as real processes)
ALSO_REFUSED = {"mra": "approximates attention block by block", "yoso": "approximates attention by hashing"}
EXACT = tuple(name for name in BY_NAME if name not in (*REBUILT, *REFUSED, *ALSO_REFUSED))
# transformers' own switches that give its eager weights for these families (see families.py)
REFERENCE_LOAD = {
    "big_bird": {"attention_type": "original_full"},
    "bigbird_pegasus": {"attention_type": "original_full"},
}
REFERENCE_FORWARD = {"fsmt": {"use_cache": False}}
PAD_SENSITIVE = ("convbert", "mobilebert", "nystromformer")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """zoo("llama") → folder of the saved tiny family; keyword arguments go to tiny_zoo.build."""
    root = tmp_path_factory.mktemp("zoo")
    built: dict[str, Path] = {}

    def get(name: str, **options: Any) -> Path:
        key = name + "".join(f"-{k}={v}" for k, v in sorted(options.items()))
        if key not in built:
            built[key] = build(BY_NAME[name], root / key, **options)
        return built[key]

    return get


def test_every_zoo_family_is_decided_and_the_zoo_covers_what_the_issue_names():
    assert len(EXACT) >= 30 and set(EXACT) | set(REBUILT) | set(REFUSED) | set(ALSO_REFUSED) == set(BY_NAME)
    named = {"llama", "mistral", "qwen2", "phi", "gpt_neox", "gemma2", "bloom", "mpt", "falcon", "gpt_bigcode"}
    named |= {"bart", "t5", "marian", "pegasus", "bert", "roberta", "deberta-v2", "electra", "albert"}
    named |= {"distilbert", "xlm-roberta", "convbert", "mobilebert", "longformer", "led", "longt5", "funnel"}
    named |= {"big_bird", "squeezebert", "prophetnet"}
    assert named <= set(BY_NAME), named - set(BY_NAME)


# ---------------------------------------------------------------- transformers' own weights


def _reference_model(folder: Path, name: str) -> Any:
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder, attn_implementation="eager", **REFERENCE_LOAD.get(name, {})).eval()


def _ids(backend: Any, model: Any, text: str) -> dict[str, torch.Tensor]:
    """The ids attnviz gives the model for `text` (the target is the text too), built here by hand."""
    tokenizer = backend.tokenizer
    ids = {"input_ids": tokenizer(text, return_tensors="pt")["input_ids"]}
    if model.config.is_encoder_decoder:
        target = tokenizer(text_target=text, return_tensors="pt")["input_ids"]
        start = torch.tensor([[model.config.decoder_start_token_id]])
        ids["decoder_input_ids"] = torch.cat([start, target], 1)
    return ids


@torch.inference_mode()
def _reference(model: Any, backend: Any, text: str, name: str) -> dict[str, np.ndarray]:
    """transformers' eager weights for one text, per attnviz stack name: (L, h, q, k)."""
    out = model(**_ids(backend, model, text), output_attentions=True, **REFERENCE_FORWARD.get(name, {}))
    if model.config.is_encoder_decoder:
        fields = {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions, "cross": out.cross_attentions}
    else:
        fields = {backend.family: out.attentions}
    return {stack: torch.stack(list(layers), 1)[0].float().numpy() for stack, layers in fields.items()}


@pytest.mark.parametrize("name", EXACT)
def test_family_gives_transformers_eager_weights_batched_and_single(zoo, name):
    folder = zoo(name)
    backend = cached(str(folder), CPU)
    model = _reference_model(folder, name)
    batch = [Inputs(t) for t in TEXTS]
    batched = run_batch(backend, batch, batch_size=len(batch))
    for inputs, got in zip(batch, batched):
        (alone,) = run_batch(backend, [inputs])
        want = _reference(model, backend, inputs.text, name)
        assert got.stack_names == alone.stack_names == tuple(want)
        for stack in got.stacks:
            np.testing.assert_allclose(alone.stack(stack.name).weights, want[stack.name], atol=1e-5, rtol=0)
            np.testing.assert_allclose(stack.weights, want[stack.name], atol=1e-5, rtol=0)
            q, k = stack.weights.shape[2:]
            upper = stack.weights[..., np.triu(np.ones((q, k), dtype=bool), 1)]
            if stack.name == "decoder":  # causal: exactly zero above the diagonal
                assert (upper == 0.0).all()
            elif stack.name == "encoder":  # bidirectional (XLNet is listed as a causal LM, and is not)
                assert upper.max() > 1e-3


def test_gpt_oss_rows_leave_the_sink_its_share_and_say_so(zoo):
    r = extract(LONG, model=str(zoo("gpt_oss")), device="cpu")
    (dec,) = r.stacks
    assert dec.kind is MapKind.WEIGHTS and families.SINK_NOTE in dec.notes
    sums = dec.weights.sum(-1)
    assert (sums < 1 - 1e-3).all() and (sums > 0).all()


def test_bigbird_shows_the_full_attention_it_runs_itself_and_refuses_inputs_it_would_run_sparse(zoo):
    """BigBird switches itself to full attention up to (5 + 2·random blocks)·block tokens (56 here)."""
    from transformers import AutoModel

    folder = zoo("big_bird")
    backend = cached(str(folder), CPU)
    assert backend.config.attention_type == "block_sparse" and backend.max_positions == 56
    as_saved = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    ids = _ids(backend, as_saved, LONG)
    with torch.inference_mode():
        own = as_saved(**ids).last_hidden_state
        loaded = backend.model(**ids).last_hidden_state  # attnviz's copy, built with full attention
    torch.testing.assert_close(loaded, own, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="input is 6[0-9] tokens long; the model takes at most 56"):
        extract(" ".join(["dream"] * 60), model=str(folder), device="cpu")


# ---------------------------------------------------------------- rebuilt maps, proved independently


def _hooked(model: Any, pick: Callable[[str, Any], bool]) -> list[tuple[str, tuple, dict, Any]]:
    """Hook every module `pick(name, module)` chooses: (name, args, kwargs, output) per call."""
    calls: list[tuple[str, tuple, dict, Any]] = []
    for name, module in model.named_modules():
        if pick(name, module):
            module.register_forward_hook(
                lambda m, args, kwargs, out, name=name: calls.append((name, args, kwargs, out)), with_kwargs=True
            )
    return calls


def _mix(weights: np.ndarray, values: torch.Tensor) -> torch.Tensor:
    """What a map (h, q, k) makes of values (k, h·d): the per-head weighted sums, (q, h·d)."""
    w = torch.from_numpy(weights)
    v = values.reshape(values.shape[0], w.shape[0], -1)  # (k, h, d)
    return torch.einsum("hqk,khd->qhd", w, v).reshape(w.shape[1], -1)


@pytest.mark.parametrize("name", ["longformer", "led"])
def test_sliding_window_band_becomes_the_map_the_model_mixes_its_values_with(zoo, name):
    folder = zoo(name)
    enc = extract(LONG, model=str(folder), device="cpu").stack("encoder")
    n, w = len(enc.query), 2  # attention_window 4: two keys each side
    assert n > 2 * w + 1
    far = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) > w
    assert (enc.weights[..., far] == 0.0).all() and enc.weights[..., ~far].min() > 0
    np.testing.assert_allclose(enc.weights.sum(-1), 1.0, atol=1e-5)
    # independent: each layer's context is that map times its values (keys padded to the window get 0)
    model = _reference_model(folder, name)
    calls = _hooked(model, lambda path, m: type(m).__name__ in ("LongformerSelfAttention", "LEDEncoderSelfAttention"))
    with torch.inference_mode():
        model(**_ids(cached(str(folder), CPU), model, LONG))
        modules = dict(model.named_modules())
        assert len(calls) == enc.layers
        for layer, (path, args, kwargs, out) in enumerate(calls):
            hidden = args[0] if args else kwargs["hidden_states"]  # (1, T padded to the window, C)
            want = _mix(enc.weights[layer], modules[path].value(hidden)[0, :n])
            torch.testing.assert_close(out[0][0, :n], want, atol=1e-5, rtol=0)


def test_longt5_local_blocks_become_the_map_the_model_mixes_its_values_with(zoo):
    folder = zoo("longt5")
    enc = extract(LONG, model=str(folder), device="cpu").stack("encoder")
    n, radius = len(enc.query), 2
    assert n > 3 * (radius + 1)
    far = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) > radius
    assert (enc.weights[..., far] == 0.0).all() and enc.weights[..., ~far].min() > 0
    np.testing.assert_allclose(enc.weights.sum(-1), 1.0, atol=1e-5)
    model = _reference_model(folder, "longt5")
    calls = _hooked(model, lambda path, m: type(m).__name__ == "LongT5LocalAttention")
    with torch.inference_mode():
        model(**_ids(cached(str(folder), CPU), model, LONG))
        modules = dict(model.named_modules())
        for layer, (path, args, kwargs, out) in enumerate(calls):
            module = modules[path]
            hidden = args[0] if args else kwargs["hidden_states"]  # (1, n, C)
            want = module.o(_mix(enc.weights[layer], module.v(hidden)[0]))
            torch.testing.assert_close(out[0][0], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", REBUILT)
def test_rebuilt_family_gives_the_same_maps_batched_as_single(zoo, name):
    backend = cached(str(zoo(name)), CPU)
    batch = [Inputs(t) for t in (*TEXTS, LONG)]
    for inputs, got in zip(batch, run_batch(backend, batch, batch_size=len(batch)), strict=True):
        (alone,) = run_batch(backend, [inputs])
        assert got.stack_names == alone.stack_names
        for stack in got.stacks:
            np.testing.assert_allclose(stack.weights, alone.stack(stack.name).weights, atol=1e-5, rtol=0)


def test_squeezebert_shows_its_own_softmax_not_the_scores_it_returns(zoo):
    folder = zoo("squeezebert")
    backend = cached(str(folder), CPU)
    model = _reference_model(folder, "squeezebert")
    assert _reference(model, backend, LONG, "squeezebert")["encoder"].min() < 0  # output_attentions: scores
    softmaxes = _hooked(model, lambda path, m: path.endswith("attention.softmax"))
    with torch.inference_mode():
        model(**_ids(backend, model, LONG))
    own = np.stack([out[0].numpy() for *_, out in softmaxes])  # (L, h, T, T): what it mixes its values with
    alone = extract(LONG, model=str(folder), device="cpu")
    batched = run_batch(backend, [Inputs(LONG), Inputs("I have")], batch_size=2)[0]
    for got in (alone, batched):
        np.testing.assert_allclose(got.stack("encoder").weights, own, atol=1e-6, rtol=0)


def test_prophetnet_encoder_and_cross_weights_are_what_the_model_mixes_its_values_with(zoo):
    folder = zoo("prophetnet")
    backend = cached(str(folder), CPU)
    r = extract(LONG, model=str(folder), device="cpu")
    model = _reference_model(folder, "prophetnet")
    hooked = {
        "encoder": _hooked(model, lambda path, m: path.startswith("encoder.") and path.endswith("self_attn")),
        "cross": _hooked(model, lambda path, m: path.endswith("cross_attn")),
    }
    want = _reference(model, backend, LONG, "prophetnet")  # (the hooked pass)
    np.testing.assert_allclose(r.stack("decoder").weights, want["decoder"], atol=1e-5, rtol=0)  # its main stream
    modules = dict(model.named_modules())
    for stack, calls in hooked.items():
        held = r.stack(stack)
        assert len(calls) == held.layers
        np.testing.assert_allclose(held.weights.sum(-1), 1.0, atol=1e-5)
        q = held.weights.shape[2]  # the main stream's rows come first
        for layer, (path, args, kwargs, out) in enumerate(calls):
            keys = kwargs.get("key_value_states")  # cross: the encoder's output; self: its own input
            keys = (args[0] if args else kwargs["hidden_states"]) if keys is None else keys
            with torch.inference_mode():
                mixed = modules[path].out_proj(_mix(held.weights[layer], modules[path].value_proj(keys)[0]))
            torch.testing.assert_close(out[0][0, :q], mixed, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- padding, lengths, refusals


@pytest.mark.parametrize("name", PAD_SENSITIVE)
def test_pad_sensitive_family_gives_the_same_weights_in_a_batch_as_alone(zoo, name):
    """With trained-like weights padding changes what transformers gives; attnviz runs these one at a time."""
    folder = zoo(name, noise=0.3)
    backend = cached(str(folder), CPU)
    model = _reference_model(folder, name)
    batch = [Inputs(t) for t in TEXTS]
    padded = backend.tokenizer(list(TEXTS), return_tensors="pt", padding=True)
    with torch.inference_mode():
        together = model(**padded, output_attentions=True).attentions[-1][0]  # (h, T, T) of the first text
    n = len(backend.tokenizer(TEXTS[0])["input_ids"])
    alone_ref = _reference(model, backend, TEXTS[0], name)["encoder"][-1]
    assert np.abs(together[:, :n, :n].numpy() - alone_ref).max() > 1e-3  # the hazard is real here
    for inputs, got in zip(batch, run_batch(backend, batch, batch_size=3)):
        want = _reference(model, backend, inputs.text, name)["encoder"]
        np.testing.assert_allclose(got.stack("encoder").weights, want, atol=1e-5, rtol=0)


def test_pad_sensitive_family_jsonl_lines_equal_single_runs_on_the_command_line(zoo):
    folder = str(zoo("convbert", noise=0.3))
    args = ("--model", folder, "--device", "cpu", "--layer", "all", "--head", "all")
    batch = run("show", "-", *args, "--format", "jsonl", "--batch-size", "3", stdin="\n".join(TEXTS) + "\n")
    assert batch.code == 0, batch.stderr
    for text, line in zip(TEXTS, batch.jsonl(), strict=True):
        alone = run("show", text, *args, "--format", "json")
        got, want = line["stacks"][0], alone.json()["stacks"][0]
        assert got["query"]["tokens"] == want["query"]["tokens"]
        np.testing.assert_allclose(np.array(got["attention"]), np.array(want["attention"]), atol=1e-6)


def _text_of(tokenizer: Any, n: int) -> str:
    text = " ".join(["the"] * (n - 2))
    assert len(tokenizer(text)["input_ids"]) == n  # <s> the the … </s>
    return text


def test_roberta_positions_after_the_pad_id_limit_inputs_before_the_forward_pass(zoo):
    """514 position rows, numbered from pad_token_id + 1 = 2: 512 tokens fit (roberta-base's layout)."""
    folder = zoo("roberta", max_position_embeddings=514, model_max_length=int(1e30))
    backend = cached(str(folder), CPU)
    assert backend.max_positions == 512
    forwards: list[int] = []
    backend.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    (fits,) = run_batch(backend, [Inputs(_text_of(backend.tokenizer, 512))])
    assert len(fits.stacks[0].query) == 512 and forwards == [1]
    for n in (513, 514):
        with pytest.raises(InputError, match=f"input is {n} tokens long; the model takes at most 512"):
            run_batch(backend, [Inputs(_text_of(backend.tokenizer, n))])
    assert forwards == [1]  # refused before the model ran
    cli = ("--model", str(folder), "--device", "cpu", "--format", "json", "--head", "0")
    too_long = run("show", _text_of(backend.tokenizer, 514), *cli)
    assert too_long.code == 1 and "514 tokens long; the model takes at most 512" in too_long.stderr.splitlines()[0]
    cut = run("show", _text_of(backend.tokenizer, 514), *cli, "--truncate")
    assert cut.code == 0, cut.stderr
    assert len(cut.json()["stacks"][0]["query"]["tokens"]) == 512


def test_a_decoder_with_fewer_positions_than_its_encoder_limits_the_target(zoo):
    """LED reads 16,384 tokens but its decoder 1,024: the target (by default the text itself) must fit the
    decoder, behind its start token, and --truncate cuts it there, before the forward pass."""
    positions = dict(max_encoder_position_embeddings=256, max_decoder_position_embeddings=32)
    folder = zoo("led", model_max_length=10**30, **positions)
    backend = cached(str(folder), CPU)
    assert (backend.max_positions, backend.max_target_positions) == (256, 32)
    text = _text_of(backend.tokenizer, 40)
    run_batch(backend, [Inputs("hi")])  # LED is tapped: its first run probes the model first
    forwards: list[int] = []
    backend.model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    with pytest.raises(InputError, match="target is 40 tokens long; the model takes at most 31"):
        run_batch(backend, [Inputs(text)])
    assert forwards == []
    (fits,) = run_batch(backend, [Inputs(text, target="I have a dream")])
    assert len(fits.stack("encoder").query) == 40 and forwards == [1]
    cli = ("--model", str(folder), "--device", "cpu", "--format", "json", "--head", "0")
    assert run("show", text, *cli).code == 1
    cut = run("show", text, *cli, "--truncate")
    assert cut.code == 0, cut.stderr
    lengths = {s["name"]: (len(s["query"]["tokens"]), len(s["key"]["tokens"])) for s in cut.json()["stacks"]}
    assert lengths == {"encoder": (40, 40), "decoder": (32, 32), "cross": (32, 40)}


def test_the_tokenizers_own_limit_counts_when_it_is_the_smaller(zoo):
    backend = cached(str(zoo("bert", model_max_length=16)), CPU)
    assert backend.max_positions == 16
    with pytest.raises(InputError, match="the model takes at most 16"):
        run_batch(backend, [Inputs(LONG)])


@pytest.fixture(scope="module")
def refusals(zoo) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """`attnviz show` on every refused family, run as real processes side by side."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "attnviz", "show", "I have a dream", "--model", str(zoo(name))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for name in REFUSED
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_family_exits_1_with_one_line_that_says_why(refusals, name):
    done = refusals[name]
    err = done.stderr.decode()
    assert done.returncode == 1 and not done.stdout
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and REFUSED[name] in err, err
    assert "unexpected" not in err and "Traceback" not in err


@pytest.mark.parametrize("name", sorted(ALSO_REFUSED))
def test_approximate_attention_is_refused_with_one_line(zoo, name):
    done = run("show", "I have a dream", "--model", str(zoo(name)))
    assert done.code == 1 and not done.stdout_bytes
    assert len(done.stderr.splitlines()) == 1 and ALSO_REFUSED[name] in done.stderr, done.stderr


def test_refusal_needs_no_weights_and_is_a_model_error_in_python(zoo, tmp_path):
    from attnviz.errors import ModelError

    folder = zoo("funnel")
    only_config = tmp_path / "funnel"
    only_config.mkdir()
    (only_config / "config.json").write_text((folder / "config.json").read_text())
    assert json.loads((only_config / "config.json").read_text())["model_type"] == "funnel"
    with pytest.raises(ModelError, match="pools its sequence between blocks"):  # not "no weights found"
        extract("I have a dream", model=str(only_config), device="cpu")
    # RWKV returns something it calls attentions: its recurrent state, which no view could read
    import transformers as tf

    rwkv = tmp_path / "rwkv"
    tf.RwkvConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1).save_pretrained(rwkv)
    done = run("show", "I have a dream", "--model", str(rwkv))
    assert done.code == 1 and done.stderr.startswith("error: ") and "RWKV is a recurrent network" in done.stderr
