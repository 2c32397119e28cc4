"""Bad input gets one clear line and an exit code, never a traceback (issue: hardening).

Everything runs in this process (tests/harness.py) except what needs a process of its
own: environment read once at import, a real Ctrl-C, a real closed pipe.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from harness import Run, run, run_subprocess

from attnviz.errors import SelectionError


def assert_one_clear_error(out: Run, code: int, message: str, hint: str | None = None) -> None:
    """Exit `code`, nothing on stdout, `message` on the error line and `hint` (when given) on the next."""
    assert out.code == code, out.stderr
    lines = out.stderr.splitlines()
    assert lines and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), out.stderr
    if hint is not None:
        assert lines[1:] == [f"hint: {hint}"], out.stderr
    assert out.stdout_bytes == b""


def test_unknown_model_name_fails_fast_when_the_hub_is_unreachable():
    # huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT once, at import: a process of its own
    start = time.monotonic()
    # an endpoint on a closed loopback port: "no network" without sending anything off this machine
    out = run_subprocess(
        "show", "hi", "--model", "minilmm", env={"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert time.monotonic() - start < 15
    assert_one_clear_error(
        out, 1, "model 'minilmm' is not a built-in name (minilm, scratch), a folder, or in the local"
    )
    assert "cannot be reached: offline?" in out.stderr


def test_hub_id_with_hf_hub_offline_says_so():
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # conftest sets HF_HUB_OFFLINE=1 before anything imports the hub
    out = run("show", "hi", "--model", "org/name")
    assert_one_clear_error(out, 1, "and HF_HUB_OFFLINE is set", "pass a local folder saved with save_pretrained")


def test_folder_without_config(tmp_path):
    out = run("show", "hi", "--model", str(tmp_path))
    assert_one_clear_error(out, 1, "has no config.json: not a transformers model folder")


def test_model_path_that_is_a_file(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    assert_one_clear_error(run("show", "hi", "--model", str(file)), 1, "is not a folder")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_weights(tiny_model, tmp_path, damage):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model("bert"), folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 10)
    assert_one_clear_error(run("show", "hi", "--model", str(folder)), 1, "is corrupt or truncated")


def test_remote_code_is_refused_without_the_flag(tiny_model, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model("bert"), folder)
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    out = run("show", "hi", "--model", str(folder))
    assert_one_clear_error(
        out, 1, "ships its own Python code", "read that code, then pass --trust-remote-code if you trust it"
    )
    assert not marker.exists()


class _Boom:
    """A pickle that runs code when loaded: what weights_only loading must refuse."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_bin_weights_never_run_code(tiny_model, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model("bert"), folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Boom(str(marker))}, f)
    out = run("show", "hi", "--model", str(folder))
    assert_one_clear_error(out, 1, "cannot load model")
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Boom(str(marker))))  # the same bytes, unpickled plainly, do run code
    assert marker.exists()


def test_model_without_attention(tmp_path):
    import transformers as tf
    from tiny_models import _bpe_tokenizer

    tokenizer = _bpe_tokenizer(bos=False, eos=False)
    config = tf.MambaConfig(vocab_size=len(tokenizer), hidden_size=16, state_size=4, num_hidden_layers=1, expand=2)
    tf.MambaModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    out = run("show", "I have a dream", "--model", str(tmp_path))
    assert_one_clear_error(out, 1, "(MambaModel) gives no attention weights")


@pytest.mark.parametrize(
    "args, stdin, code, message, hint",
    [
        (["show", ""], None, 1, "error: the text is empty", "give a sentence, or - to read standard input"),
        (["show", " \t\n "], None, 1, "error: the text is empty", None),
        (["show", "-"], b"", 1, "error: standard input has no sentences", None),
        (["show", "-"], b"good line\nbad \xff\xfe line\n", 1, "standard input line 2 is not valid UTF-8", None),
        (["show", "word " * 600], None, 1, "is 602 tokens long; the model takes at most 512",
         "shorten the text or pass --truncate"),
        (["show", "hi", "--head", "12"], None, 1, "head 12 does not exist: this model has 12 heads (0..11)", None),
        (["show", "hi", "--layer", "x"], None, 2, "error: --layer: cannot read layer 'x'", None),
        (["show", "hi", "--head", "avg"], None, 2, "error: --head: cannot read head 'avg'", None),
        (["show", "hi", "--tokens", "x"], None, 2, "error: --tokens: cannot read token window 'x'",
         "write A:B, e.g. 0:20"),
        (["show", "hi", "--dtype", "float64"], None, 2, "error: Invalid value for '--dtype'",
         "see 'attnviz show --help'"),
        (["show", "hi", "--device", "tpu"], None, 2, "error: Invalid value for '--device'",
         "see 'attnviz show --help'"),
        (["show", "hi", "--agg", "sum"], None, 2, "error: Invalid value for '--agg'", "see 'attnviz show --help'"),
        (["show", "hi", "--stack", "middle"], None, 2, "error: Invalid value for '--stack'", None),
        (["show", "hi", "--stack", "cross"], None, 1, "error: there is no 'cross' stack here (there is encoder)",
         None),
        (["show", "-"], b"one\ntwo\n", 2, "error: 2 sentences on standard input but --format json holds one",
         "use --format jsonl, csv or npz"),
        (["show", "--digits", "x", "hi"], None, 2, "Invalid value for '--digits'", None),
        (["show", "hi", "--vmax", "1e308", "-f", "heat"], None, 2, "error: --vmax 1e308 is outside 1e-30..1e30", None),
        (["show", "hi", "--batch-size", "99999999999999999999"], None, 2, "Invalid value for '--batch-size'", None),
        (["nosuch"], None, 2, "No such command 'nosuch'", "see 'attnviz --help'"),
        (["show", "hi", "--target", "x"], None, 2,
         "error: a decoder target is for encoder-decoder models; all-MiniLM-L6-v2 is encoder", "drop --target"),
        (["show", "hi", "--source", "x"], None, 2, "error: a cross-attention source text is for the scratch model",
         "drop --source, or use --model scratch"),
        (["show", "hi", "--pair", "x", "--model", "scratch"], None, 2,
         "error: a sentence pair is for pretrained encoder models; scratch is the scratch model", "drop --pair"),
        (["show", "hi", "--heads", "4"], None, 2, "error: --heads is for --model scratch, not minilm", "drop --heads"),
        (["show", "hi", "--pair", " "], None, 1, "error: the pair text is empty", None),
        (["tokens", "hi", "--target", "x"], None, 2, "a decoder target is for encoder-decoder models",
         "drop --target"),
        (["explain", "hi", "--model", "minilm", "--heads", "4"], None, 2, "--heads is for --model scratch",
         "drop --heads"),
        (["export", "hi", "--renormalize", "--out", "OUT"], None, 2,
         "error: --renormalize only applies with --hide-special", "add --hide-special"),
        (["export", "hi", "--view", "mean", "--out", "OUT"], None, 2, "error: Invalid value for '--view'",
         "see 'attnviz export --help'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(tmp_path, args, stdin, code, message, hint):
    if args[:2] == ["show", "-"] and code == 2:
        args = [*args, "--format", "json"]
    folder = tmp_path / "out"
    out = run(*[str(folder) if a == "OUT" else a for a in args], stdin=stdin or b"")
    assert_one_clear_error(out, code, message, hint)
    if args[0] == "export":
        assert not folder.exists()  # refused before making its folder


def test_truncate_warns_and_continues():
    out = run("show", "word " * 600, "--truncate", "--format", "json", "--head", "0")
    assert out.code == 0, out.stderr
    assert len(out.json()["stacks"][0]["query"]["tokens"]) == 512
    assert out.stderr == "warning: input truncated to 512 tokens (the model's maximum)\n"


def test_debug_lets_the_exception_through_for_that_call_only():
    # the exception leaves main(), so Python prints its traceback: the point of --debug
    with pytest.raises(SelectionError, match="layer 99 does not exist"):
        run("--debug", "show", "hi", "--layer", "99")
    # the next call in the same process is back to one line
    assert_one_clear_error(run("show", "hi", "--layer", "99"), 1, "layer 99 does not exist")


def test_ctrl_c_exits_130_without_traceback():
    # a real SIGINT to a process blocked reading stdin: needs a process of its own
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnviz", "show", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(2.0)  # started and blocked reading stdin
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr == b"interrupted\n" and stdout == b""


def test_broken_pipe_is_quiet():
    # a reader that goes away (`| head`): only a real pipe between two processes shows it
    cmd = f"{sys.executable} -m attnviz show - --format jsonl | head -c 10"
    out = subprocess.run(cmd, shell=True, input=b"I have a dream\n" * 40, capture_output=True, timeout=120)
    assert len(out.stdout) == 10
    assert out.stderr == b""


def test_no_pickle_loading_in_our_code():
    """Our own code never unpickles: torch.load only with weights_only, no pickle module."""
    sources = list(Path(__file__).resolve().parents[1].joinpath("attnviz").rglob("*.py"))
    assert len(sources) > 30  # the package was found
    for path in sources:
        source = path.read_text()
        assert "import pickle" not in source and "pickle.load" not in source, path
        assert "torch.load(" not in source or "weights_only=True" in source, path


@pytest.mark.parametrize("spec", [" ", "org/..", "../../x y", "a/b/c", "-bad"])
def test_a_spec_that_is_no_folder_and_no_hub_id_is_a_plain_error(spec):
    out = run("show", "I have a dream", "--model", spec)
    assert out.code == 1 and "unexpected" not in out.stderr
    assert out.stderr.startswith(f"error: model {spec!r} is not a built-in name") or "does not exist" in out.stderr


@pytest.mark.parametrize(("encoding", "name"), [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-32", "UTF-32")])
def test_utf16_and_utf32_input_is_refused_by_name(tmp_path, encoding, name):
    text = "I have a dream\nso do I\n".encode(encoding)
    out = run("show", "-", stdin=text)
    assert out.code == 1 and out.stderr.splitlines()[0] == f"error: standard input is {name} text, not UTF-8"
    path = tmp_path / "talks.txt"
    path.write_bytes(text)
    out = run("export", "--input", str(path), "--out", str(tmp_path / "out"))
    assert out.code == 1 and f"talks.txt is {name} text, not UTF-8" in out.stderr


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_attnviz_debug_is_on_only_for_1_true_yes(value):
    out = run("show", "", env={"ATTNVIZ_DEBUG": value})
    assert out.code == 1 and out.stderr.startswith("error: the text is empty")
    with pytest.raises(Exception, match="the text is empty"):
        run("show", "", env={"ATTNVIZ_DEBUG": "yes"})


def test_a_huge_seed_is_a_usage_error():
    out = run("show", "x", "--model", "scratch", "--seed", str(2**64))
    assert out.code == 2 and "--seed" in out.stderr and "unexpected" not in out.stderr


def test_columns_zero_still_draws():
    out = run("show", "I have a dream", env={"COLUMNS": "0"})
    assert out.code == 0 and out.stdout.startswith("encoder · layer 5")


def test_a_huge_columns_is_drawn_at_a_bounded_width():
    """COLUMNS=1000000000 made rich build gigabytes of padding for a few hundred bytes of table."""
    out = run("show", "I have a dream", env={"COLUMNS": "1000000000"})
    assert out.code == 0 and max(len(line) for line in out.stdout.splitlines()) <= 1000


@pytest.mark.parametrize("command", [("show", "--format", "jsonl"), ("tokens", "--format", "json")])
def test_json_lines_escape_unicode_line_breaks(command):
    """U+0085/U+2028/U+2029 are legal raw in JSON but split lines for splitlines() and old JS readers."""
    name, *flags = command
    out = run(name, "a\u2028b\u0085c\u2029d", *flags)
    assert out.code == 0, out.stderr
    assert len(out.stdout.splitlines()) == 1 and "\\u2028" in out.stdout
    assert json.loads(out.stdout)["text"] == "a\u2028b\u0085c\u2029d"


def test_nan_attention_is_an_error_that_names_the_layer(tiny_model, tmp_path):
    """A checkpoint whose numbers are broken gives exit 1 naming where, never a drawing or data of NaN."""
    import torch
    import transformers

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model("gpt2"), folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        model.transformer.h[1].attn.c_attn.weight.fill_(float("nan"))
    model.save_pretrained(str(folder))
    for fmt in ("table", "json"):
        out = run("show", "I have a dream", "--model", str(folder), "--format", fmt, "--device", "cpu")
        assert out.code == 1 and out.stdout == "", out.stderr
        assert "decoder layer 1, head 0 holds NaN or infinity" in out.stderr and "unexpected" not in out.stderr


def test_a_checkpoint_that_does_not_match_its_config_is_an_error_naming_the_weights(tiny_model, tmp_path):
    """Missing layer weights (left random) or weights of layers the model lacks: exit 1, unless --allow-missing."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    shutil.copytree(tiny_model("gpt2"), folder)
    weights = load_file(str(folder / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if ".h.1." not in k}
    kept["transformer.h.9.attn.c_attn.weight"] = weights["transformer.h.0.attn.c_attn.weight"].clone()
    kept["lm_head.bias"] = weights["transformer.h.0.attn.c_attn.bias"].clone()  # a task head: not counted
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    out = run("show", "I have a dream", "--model", str(folder), "--device", "cpu")
    assert out.code == 1 and out.stdout == ""
    first = out.stderr.splitlines()[0]
    assert "does not match its config" in first and "h.1.attn.c_attn.weight" in first
    assert "1 unexpected (transformer.h.9.attn.c_attn.weight)" in first and "lm_head" not in first
    assert "--allow-missing" in out.stderr
    allowed = run("show", "I have a dream", "--model", str(folder), "--allow-missing", "--device", "cpu")
    assert allowed.code == 0, allowed.stderr


@pytest.mark.parametrize(
    "command", [("show", "-"), ("tokens", "-"), ("heads", "-"), ("export", "--input", "-"), ("render", "-")]
)
def test_closed_stdin_is_a_plain_error(command, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "attnviz", *command, *(("--out", str(tmp_path)) if command[0] == "export" else ())],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        close_fds=True,
        preexec_fn=lambda: os.close(0),
    )
    assert out.returncode == 1 and out.stderr.startswith("error: standard input is closed"), out.stderr


# ---------------------------------------------------------------- issue 15, item 6: each a plain error


@pytest.mark.parametrize(
    "command",
    [
        ("show", "hi"),
        ("show", "hi", "--format", "json"),
        ("show", "hi", "--format", "npz"),
        ("show", "hi", "--format", "html"),
        ("tokens", "hi"),
        ("info",),
        ("heads", "hi", "--format", "csv"),
    ],
)
def test_closed_stdout_is_a_quiet_stop(command):
    out = subprocess.run(
        [sys.executable, "-m", "attnviz", *command],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1),
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.parametrize(("seed", "code"), [(2**63, 2), (2**63 - 1, 0), (-1, 2)])
def test_seeds_beyond_64_bits_are_a_usage_error(seed, code):
    out = run("show", "I have a dream", "--model", "scratch", "--seed", str(seed))
    assert out.code == code, out.stderr
    if code:
        assert_one_clear_error(out, 2, "a seed is a whole number from 0 to 2**63 - 1")


@pytest.mark.parametrize(
    "flag", [("--head", "5:2"), ("--tokens", "5:2"), ("--layer", "5:2"), ("--head", "2:2"), ("--tokens", "3:3")]
)
def test_empty_ranges_are_usage_errors_for_every_flag(flag):
    out = run("show", "I have a dream", *flag)
    assert out.code == 2 and out.stderr.startswith(f"error: {flag[0]}: "), out.stderr


def _scratch_weights(path: Path, **changes) -> Path:
    """A real scratch weights file (2 heads, 8 wide, 1 layer) with some tensors or metadata changed."""
    from safetensors.torch import save_file

    from attnviz.backends.scratch import ScratchModel

    state = {k: v.contiguous() for k, v in ScratchModel(8, 2, 1).reset(0).state_dict().items()}
    meta = {"format": "attnviz-scratch/1", "heads": str(changes.pop("heads", 2))}
    state.update(changes.pop("tensors", {}))
    save_file(state, str(path), metadata=meta)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"heads": "x"}, "its metadata says heads='x', which is not a head count (a whole number above 0)"),
        ({"heads": "0"}, "its metadata says heads='0', which is not a head count"),
        ({"heads": "-2"}, "its metadata says heads='-2', which is not a head count"),
        ({"heads": "3"}, "d_model 8 is not divisible by 3 heads"),
        ({"tensors": {"layers.0.query.weight": "scalar"}}, "layers.0.query.weight is a single number"),
        ({"tensors": {"layers.0.query.weight": "3d"}}, "layers.0.query.weight is 8x8x2, not a d_model x d_model"),
        ({"tensors": {"layers.0.query.bias": "scalar"}}, "does not fit the scratch model: size mismatch"),
        ({"tensors": {"layers.2.query.weight": "copy"}}, "names layer 2 but has no weights for layer 1"),
        ({"tensors": {"embeddings.weight": "copy"}}, "has a tensor 'embeddings.weight' the scratch model does not"),
    ],
)
def test_a_weights_file_that_does_not_fit_is_one_clear_error(tmp_path, change, message):
    import torch

    made = {"scalar": torch.tensor(3.0), "3d": torch.zeros(8, 8, 2), "copy": torch.zeros(8, 8)}
    if "tensors" in change:
        change = {"tensors": {k: made[v] for k, v in change["tensors"].items()}}
    path = _scratch_weights(tmp_path / "w.safetensors", **change)
    out = run("show", "I have a dream", "--model", "scratch", "--weights", str(path))
    assert out.code == 1 and "unexpected" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and message in out.stderr.splitlines()[0], out.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("42", "config.json holds the number 42, not a model's settings (a JSON object)"),
        ("null", "config.json holds null, not a model's settings"),
        ("[1, 2]", "config.json holds a list, not a model's settings"),
        ('"bert"', "config.json holds a string, not a model's settings"),
        ("[" * 100_000 + "]" * 100_000, "config.json is nested too deeply to be a model's config"),
        ('{"model_type": "bert", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "is nested too deeply"),
    ],
)
@pytest.mark.parametrize("command", [("show", "hi"), ("info",), ("tokens", "hi"), ("explain", "hi")])
def test_a_config_json_that_is_no_config_is_one_clear_error(tmp_path, content, message, command):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(content)
    _scratch_weights(folder / "model.safetensors")  # explain looks for weights before it reads the config
    out = run(*command, "--model", str(folder))
    assert_one_clear_error(out, 1, message)


def test_allocation_failures_are_one_line():
    """An allocation the machine refuses (here: a 2 GB address-space cap) is an error, not a bug report."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    out = subprocess.run(
        [sys.executable, "-m", "attnviz", "show", "I have a dream", "--model", "scratch", "--d-model", "30000",
         "--heads", "2", "--max-params", str(10**12)],
        capture_output=True, text=True, timeout=120, preexec_fn=cap,
    )  # fmt: skip
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "error: out of memory (RuntimeError): the input or the model is too big for this machine",
        "hint: use a shorter input, fewer layers or a smaller model",
    ]


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        (("--layers", "400"), "the model's weights may be broken"),
        (("--layers", "60", "--dtype", "float16"), "float16/bfloat16 can overflow: try --dtype float32"),
    ],
)
def test_scratch_numbers_that_overflow_are_an_error_naming_where(flags, hint):
    out = run("show", "I have a dream", "--model", "scratch", *flags, "--device", "cpu")
    assert_one_clear_error(out, 1, "holds NaN or infinity", hint)
    assert "scratch gave attention weights that are not usable: encoder layer" in out.stderr


@pytest.mark.parametrize("value", ["1", "TRUE", " yes "])
def test_attnviz_debug_is_on_for_1_true_yes_in_any_case(value):
    with pytest.raises(Exception, match="the text is empty"):
        run("show", "", env={"ATTNVIZ_DEBUG": value})


def _forged_npz(path: Path, change=None, raw: dict[str, bytes] | None = None) -> Path:
    """A real saved .npz with one thing changed: `change(members)` on the arrays it holds, or members
    replaced by `raw` bytes (an .npy whose header says anything)."""
    import io
    import zipfile

    out = run("show", "I have a dream", "--format", "npz", "--layer", "all")
    with np.load(io.BytesIO(out.stdout_bytes)) as data:
        members = {k: data[k] for k in data.files}
    if change is not None:
        change(members)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, (raw or {}).get(info.filename.removesuffix(".npy"), old.read(info)))
    return path


def _npy(shape: tuple[int, ...], dtype: str) -> bytes:
    """An .npy header that claims `shape` and `dtype`, followed by 64 bytes: a forged file is small."""
    import io

    head = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": shape})
    return head.getvalue() + bytes(64)


def _meta_with(**fields):
    def change(members):
        meta = json.loads(str(members["0/meta"][()]))
        for key, value in fields.items():
            meta["stacks"][0][key] = value
        members["0/meta"] = json.dumps(meta)

    return change


ATT = "0/encoder/attention"


def _deep(path: Path) -> None:
    path.write_text("[" * 200_000 + "]" * 200_000)


def _huge_number(path: Path) -> None:
    path.write_text(run("show", "hi", "-f", "json").stdout.replace('"index":0', '"index":' + "9" * 5000))


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("deep.json", _deep, "is nested too deeply to be an attnviz result"),
        ("huge.json", _huge_number, "holds a number thousands of digits long"),
        ("count.npz", lambda p: _forged_npz(p, lambda m: m.update(count=np.int64(-5))), "it says it holds -5 results"),
        ("shape.npz", lambda p: _forged_npz(p, raw={ATT: _npy((6, 12, 20000, 20000), "float32")}), "says float32"),
        ("complex.npz", lambda p: _forged_npz(p, raw={ATT: _npy((1, 12, 6, 6), "complex64")}), "is complex64"),
        ("twice.npz", lambda p: _forged_npz(p, _meta_with(layers=[0, 0, 0, 0, 0, 0])), "a layer appears twice"),
        ("huge.npz", lambda p: _forged_npz(p, _meta_with(model_layers=10**12)), "layer count 1000000000000"),
    ],
)
def test_damaged_or_forged_saved_files_are_one_clear_error(tmp_path, name, make, message):
    """render and heads read a saved file: never a recursion or memory error, never a silent wrong answer."""
    path = tmp_path / name
    make(path)
    for command in ("render", "heads"):
        assert_one_clear_error(run(command, str(path), "--layer", "all"), 1, message)


def test_control_characters_in_input_never_reach_the_terminal_raw():
    """ESC sequences in a text or a file name could recolour a terminal, move its cursor or set its title:
    tables, headings and messages draw them as pictures (␛); JSON keeps them, escaped."""
    text = "hi\x1b[31mRED\x1b]0;pwned\x07 there"
    for out in (
        run("show", "-", stdin=f"{text}\nsecond\n"),  # several sentences: each under a heading
        run("show", text, "--model", "scratch"),
        run("tokens", text, "--model", "scratch"),
        run("render", text),
    ):
        assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout + out.stderr
    assert "␛" in run("tokens", text, "--model", "scratch").stdout
    assert json.loads(run("show", text, "--format", "json").stdout)["text"] == text


def test_render_refuses_binary_input_from_its_first_bytes():
    """`render /dev/zero` read until the kernel killed it (22 GB); binary data is refused at once."""
    for out in (run("render", "/dev/zero"), run("render", "-", stdin=b"\0" * 100_000)):
        assert_one_clear_error(out, 1, "is not an attnviz result: it starts with NUL bytes, not JSON or an .npz")
