"""Limits with clear messages, each raised by a flag (issue 15, item 5): a model's size from its
config before anything is allocated, the scratch model's sizes and weights files, --jobs and the
pixels of an export run. Input lines are in test_inputs.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import run

from attnviz.backends.sources import estimate_size
from attnviz.errors import ModelError
from attnviz.limits import Limits, bytes_text, check_size, memory_bytes


def _write_config(folder: Path, **config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", **config}))
    return folder


def _refused_before_torch(*args: str) -> tuple[int, str, bool]:
    """(exit code, stderr, whether torch was imported) of `attnviz ARGS` in a process of its own:
    a model refused from its config never reaches torch, let alone allocates."""
    code = (
        "import sys\nfrom attnviz.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    status = exc.code\n"
        "print('torch' in sys.modules, file=sys.__stdout__)\nsys.exit(status)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stderr, out.stdout.strip() == "True"


# ---------------------------------------------------------------- a model's size from its config


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "bart", "t5"])
def test_the_estimate_is_close_to_the_real_parameter_count(tiny_model, family):
    import transformers

    folder = tiny_model(family)
    real = sum(p.numel() for p in transformers.AutoModel.from_pretrained(str(folder)).parameters())
    estimate = estimate_size(json.loads((folder / "config.json").read_text()))
    assert 0.85 * real <= estimate.params <= 1.15 * real, (estimate, real)
    assert estimate.layers in (2, 3)


@pytest.mark.parametrize(
    "name", ["BertConfig", "GPT2Config", "LlamaConfig", "T5Config", "DistilBertConfig", "MistralConfig"]
)
def test_the_estimate_holds_for_full_size_configs(name):
    """Default configs are the real sizes (BERT-base, GPT-2, Llama-7B, T5-base …): counted on the meta device."""
    import torch
    import transformers

    config = getattr(transformers, name)()
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config)
    real = sum(p.numel() for p in model.parameters())
    assert 0.9 * real <= estimate_size(config.to_dict()).params <= 1.1 * real


def test_a_config_naming_100000_layers_is_refused_before_anything_is_built(tmp_path):
    """It took 255 s of allocating before; now its config is read and refused."""
    folder = _write_config(tmp_path / "deep", hidden_size=32, num_hidden_layers=100_000, num_attention_heads=2)
    code, stderr, torch_loaded = _refused_before_torch("show", "hi", "--model", str(folder))
    assert code == 1 and not torch_loaded
    assert stderr.splitlines() == [
        f"error: model {str(folder)!r} has 100,000 layers, more than the limit of 1,000",
        "hint: use a smaller model, or allow it with --max-layers N if this machine can hold it",
    ]


@pytest.mark.skipif(memory_bytes() is None, reason="this system does not say how much memory it has")
def test_a_config_too_big_for_this_machine_is_refused(tmp_path):
    folder = _write_config(tmp_path / "wide", hidden_size=1_000_000, num_hidden_layers=2, vocab_size=100)
    code, stderr, torch_loaded = _refused_before_torch("info", "--model", str(folder))
    assert code == 1 and not torch_loaded
    first = stderr.splitlines()[0]
    assert first.startswith(f"error: model {str(folder)!r} has about 24,000,100,000,000 parameters (87.3 TiB")
    assert first.endswith(f"more than this machine's {bytes_text(memory_bytes() or 0)} of memory holds")
    assert "--max-params N" in stderr and "--dtype bfloat16" in stderr  # a transformers model can run in 16 bits


@pytest.mark.skipif(memory_bytes() is None, reason="this system does not say how much memory it has")
def test_the_memory_check_counts_the_dtype_and_the_gpus_of_a_device_map():
    """A 7B model in bfloat16 fits where its float32 weights would not; spread over devices, the GPUs'
    memory counts as well; an explicit --max-params is the limit whatever the devices."""
    params = int((memory_bytes() or 0) * 0.375)  # too many for float32 here, room to spare in 16 bits
    with pytest.raises(ModelError, match=r"as float32\), more than this machine's"):
        check_size("m", params, 12, Limits())
    check_size("m", params, 12, Limits(), bytes_per_param=2)
    with pytest.raises(ModelError, match=r"as 16-bit floats\), more than this machine's"):
        check_size("m", 3 * params, 12, Limits(), bytes_per_param=2)
    gpus = 8 * (memory_bytes() or 0)  # spread over GPUs (--device-map): their memory counts too
    check_size("m", 2 * params, 12, Limits(), device_memory=gpus)
    with pytest.raises(ModelError, match=r"more than this machine's GPUs and memory hold together"):
        check_size("m", 100 * params, 12, Limits(), device_memory=gpus)
    with pytest.raises(ModelError, match="more than the limit of 99"):
        check_size("m", 100, 12, Limits(max_params=99), device_memory=gpus)


def test_nested_configs_add_up():
    inner = {"hidden_size": 64, "num_hidden_layers": 3, "vocab_size": 10}
    alone = estimate_size(inner)
    both = estimate_size({"model_type": "x", "text_config": inner, "vision_config": {**inner, "num_hidden_layers": 5}})
    assert both.params > 2 * alone.params and both.layers == 5
    assert estimate_size({"num_hidden_layers": 1e30}).layers > 10**29  # floats are sizes too: the danger
    assert estimate_size({"hidden_size": "big", "num_hidden_layers": -3}) == estimate_size({})


def test_the_limits_are_raised_by_their_flags(tiny_model):
    folder = str(tiny_model("bert"))  # 2 layers, about 993,000 parameters
    out = run("show", "hi", "--model", folder, "--max-layers", "1")
    assert out.code == 1 and "has 2 layers, more than the limit of 1" in out.stderr
    out = run("show", "hi", "--model", folder, "--max-params", "500000")
    assert out.code == 1 and "has about 993,088 parameters (3.8 MiB as float32), more than the limit of 500,000" in (
        out.stderr
    )
    assert run("show", "hi", "--model", folder, "--max-layers", "2", "--max-params", "1000000").code == 0
    assert run("info", "--model", folder, "--max-layers", "1").code == 1
    assert run("tokens", "hi", "--model", folder, "--max-layers", "1").code == 1


# ---------------------------------------------------------------- the scratch model


def test_scratch_sizes_are_checked_before_allocating():
    out = run("show", "hi", "--model", "scratch", "--layers", "100000000")
    assert out.code == 1 and "the scratch model has 100,000,000 layers, more than the limit of 1,000" in out.stderr
    # 4 projections of 64 x 64 and their biases: 16,640 parameters a layer
    out = run("show", "hi", "--model", "scratch", "--d-model", "64", "--heads", "2", "--max-params", "16639")
    assert out.code == 1 and "about 16,640 parameters" in out.stderr and "--max-params N" in out.stderr
    ok = run("show", "hi", "--model", "scratch", "--d-model", "64", "--heads", "2", "--max-params", "16640")
    assert ok.code == 0, ok.stderr
    deep = run("show", "hi", "--model", "scratch", "--layers", "3", "--d-model", "8", "--heads", "2", "--max-layers=3")
    assert deep.code == 0, deep.stderr
    assert run("explain", "hi", "--layers", "3", "--max-layers", "2").code == 1


def test_a_scratch_model_too_big_for_memory_is_refused_not_killed():
    if memory_bytes() is None:
        pytest.skip("this system does not say how much memory it has")
    out = run("show", "hi", "--model", "scratch", "--d-model", "100000000")
    assert out.code == 1 and "more than this machine's" in out.stderr and "unexpected" not in out.stderr
    assert "--dtype" not in out.stderr and "--device-map" not in out.stderr  # remedies the scratch model lacks


def test_scratch_maps_that_would_not_fit_in_memory_are_refused_before_the_forward_pass():
    if memory_bytes() is None:
        pytest.skip("this system does not say how much memory it has")
    text = "w " * 1000
    out = run("show", text, "--model", "scratch", "--layers", "999", "--heads", "512", "--d-model", "512")
    assert out.code == 1 and out.stdout == ""
    assert "error: the attention maps of 999 layers x 512 heads over 1,000 x 1,000 tokens would take 3.7 TiB" in (
        out.stderr
    )


def _scratch_file(path: Path, layers: int, d_model: int = 8) -> Path:
    from attnviz.backends.scratch import ScratchModel, save_weights

    save_weights(ScratchModel(d_model, 2, layers).reset(0), path)
    return path


def test_a_weights_file_is_checked_against_the_limits(tmp_path):
    weights = str(_scratch_file(tmp_path / "three.safetensors", 3))
    out = run("show", "hi", "--model", "scratch", "--weights", weights, "--max-layers", "2")
    assert out.code == 1 and f"the scratch model in {weights} has 3 layers, more than the limit of 2" in out.stderr
    assert run("show", "hi", "--model", "scratch", "--weights", weights, "--max-layers", "3").code == 0


def test_a_weights_file_naming_layer_1000000_allocates_nothing(tmp_path):
    """7.7 GB were allocated for it before: layer numbers must run 0..N-1, read from the header."""
    import resource

    from safetensors.torch import load_file, save_file

    path = _scratch_file(tmp_path / "w.safetensors", 1)
    state = load_file(str(path))
    state["layers.1000000.query.weight"] = state["layers.0.query.weight"].clone()
    save_file(state, str(path))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = run("show", "hi", "--model", "scratch", "--weights", str(path))
    assert out.code == 1
    assert f"error: {path} names layer 1000000 but has no weights for layer 1" in out.stderr
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing near 7.7 GB


# ---------------------------------------------------------------- drawing: processes and pixels


def test_jobs_are_capped_at_the_cores_and_it_says_so(tmp_path):
    from attnviz.threads import cores

    n = cores()
    out = run("export", "I have a dream", "--out", str(tmp_path), "--layer", "0", "--head", "0", "--jobs", "512")
    assert out.code == 0, out.stderr
    cores_here = f"{n} core{'s' if n != 1 else ''}"
    assert out.stderr.splitlines()[0] == f"warning: --jobs 512 is more than the {cores_here} here: using {n}"
    quiet = run("export", "I have a dream", "--out", str(tmp_path / "b"), "--layer", "0", "--head", "0", "--jobs", "1")
    assert quiet.code == 0 and "warning" not in quiet.stderr


def _model_view_pixels(text: str) -> int:
    """What the run-total count gives one sentence's --view model image (every layer, as export draws)."""
    from attnviz.api import extract
    from attnviz.cli.images import result_pixels
    from attnviz.render.image import Style
    from attnviz.spec import ALL, ExportView, ViewSpec

    return result_pixels(extract(text), ViewSpec(layers=ALL), ExportView.MODEL, Style())


def test_the_pixels_of_a_run_are_limited(tmp_path):
    one = _model_view_pixels("I have a dream")
    # 6 layers x 12 heads of 6 x 6 tokens at 0.12 inch a token, and an inch of labels, at 100 dpi
    assert one == round((12 * 6 * 0.12 + 1) * 100) * round((6 * 6 * 0.12 + 1) * 100)
    talks = tmp_path / "talks.txt"
    talks.write_text("I have a dream\nI have a dream\nI have a dream\n")
    out_dir = tmp_path / "out"
    # room for one sentence and a half: the second is refused before it is drawn
    out = run("export", "--input", str(talks), "--view", "model", "--out", str(out_dir), "--jobs", "1",
              "--max-total-pixels", str(one * 3 // 2))  # fmt: skip
    assert out.code == 1 and out.stdout == ""
    error = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert error == [
        f"error: line 2: the images of this run would hold at least {2 * one / 1e6:,.1f} megapixels, more than the "
        f"limit of {one * 3 // 2 / 1e6:,.1f} megapixels ({one * 3 // 2:,} pixels); the images before it are complete"
    ]
    assert "--max-total-pixels N" in out.stderr
    manifest = [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]
    assert [r["line"] for r in manifest] == [1] and sorted(p.name for p in out_dir.glob("*.png")) == [
        manifest[0]["file"]
    ]
    # the same run with room for all three: the first sentence's image is already complete
    again = run("export", "--input", str(talks), "--view", "model", "--out", str(out_dir), "--jobs", "1",
                "--max-total-pixels", str(3 * one))  # fmt: skip
    assert again.code == 0, again.stderr
    assert len(list(out_dir.glob("*.png"))) == 3


def test_a_huge_dpi_is_refused_before_anything_is_drawn(tmp_path):
    out = run("export", "I have a dream", "--dpi", "1200", "--out", str(tmp_path), "--max-total-pixels", "100000000")
    assert out.code == 1 and "error: sentence 1: the images of this run would hold at least" in out.stderr
    assert not list(tmp_path.glob("*.png"))
