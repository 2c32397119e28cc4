"""Bad input gets one clear line and an exit code, never a traceback (issue: hardening)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import run_inprocess


def run_cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "attnviz", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_clear_error(out: subprocess.CompletedProcess, code: int, message: str) -> None:
    stderr = out.stderr.decode()
    assert out.returncode == code, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert out.stdout == b""


def test_unknown_model_name_fails_fast_when_the_hub_is_unreachable():
    start = time.monotonic()
    # an endpoint on a closed loopback port: "no network" without sending anything off this machine
    out = run_cli("show", "hi", "--model", "minilmm", env={"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert time.monotonic() - start < 15
    assert_one_clear_error(
        out, 1, "model 'minilmm' is not a built-in name (minilm, scratch), a folder, or in the local"
    )
    assert "cannot be reached: offline?" in out.stderr.decode()


def test_hub_id_with_hf_hub_offline_says_so():
    out = run_cli("show", "hi", "--model", "org/name", env={"HF_HUB_OFFLINE": "1"})
    assert_one_clear_error(out, 1, "and HF_HUB_OFFLINE is set")


def test_folder_without_config(tmp_path):
    out = run_cli("show", "hi", "--model", str(tmp_path))
    assert_one_clear_error(out, 1, "has no config.json: not a transformers model folder")


def test_model_path_that_is_a_file(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    assert_one_clear_error(run_cli("show", "hi", "--model", str(file)), 1, "is not a folder")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_weights(tiny_model, tmp_path, damage):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model("bert"), folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 10)
    assert_one_clear_error(run_cli("show", "hi", "--model", str(folder)), 1, "is corrupt or truncated")


def test_remote_code_is_refused_without_the_flag(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(tiny_model("bert"), folder)
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    out = run_cli("show", "hi", "--model", str(folder))
    assert_one_clear_error(out, 1, "ships its own Python code")
    assert "--trust-remote-code" in out.stderr.decode()
    assert not marker.exists()


class _Boom:
    """A pickle that runs code when loaded: what weights_only loading must refuse."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_bin_weights_never_run_code(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model("bert"), folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Boom(str(marker))}, f)
    out = run_cli("show", "hi", "--model", str(folder))
    assert_one_clear_error(out, 1, "cannot load model")
    assert not marker.exists()


def test_model_without_attention(tmp_path):
    import transformers as tf
    from tiny_models import _bpe_tokenizer

    tokenizer = _bpe_tokenizer(bos=False, eos=False)
    config = tf.MambaConfig(vocab_size=len(tokenizer), hidden_size=16, state_size=4, num_hidden_layers=1, expand=2)
    tf.MambaModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    out = run_cli("show", "I have a dream", "--model", str(tmp_path))
    assert_one_clear_error(out, 1, "(MambaModel) gives no attention weights")


@pytest.mark.parametrize(
    "args, stdin, code, message",
    [
        (["show", ""], None, 1, "error: the text is empty"),
        (["show", " \t\n "], None, 1, "error: the text is empty"),
        (["show", "-"], b"", 1, "error: standard input has no sentences"),
        (["show", "-"], b"good line\nbad \xff\xfe line\n", 1, "standard input line 2 is not valid UTF-8"),
        (["show", "word " * 600], None, 1, "is 602 tokens long; the model takes at most 512"),
        (["show", "hi", "--head", "12"], None, 1, "head 12 does not exist: this model has 12 heads (0..11)"),
        (["show", "hi", "--layer", "x"], None, 2, "cannot read layer 'x'"),
        (["show", "hi", "--dtype", "float64"], None, 1, "unknown dtype 'float64'"),
        (["show", "hi", "--device", "tpu"], None, 1, "unknown device 'tpu'"),
        (["show", "hi", "--stack", "cross"], None, 1, "this model has no 'cross' stack"),
        (["show", "-"], b"one\ntwo\n", 2, "but --format json holds one"),
        (["show", "--digits", "x", "hi"], None, 2, "Invalid value for '--digits'"),
        (["nosuch"], None, 2, "No such command 'nosuch'"),
        (
            ["show", "hi", "--target", "x"],
            None,
            2,
            "--target is for encoder-decoder models; all-MiniLM-L6-v2 is encoder",
        ),
        (["show", "hi", "--source", "x"], None, 2, "--source (cross-attention) is for --model scratch"),
        (["show", "hi", "--pair", "x", "--model", "scratch"], None, 2, "--pair is for pretrained encoder models"),
        (["show", "hi", "--heads", "4"], None, 2, "--heads is for --model scratch, not minilm"),
        (["show", "hi", "--pair", " "], None, 1, "the --pair text is empty"),
        (["tokens", "hi", "--target", "x"], None, 2, "--target is for encoder-decoder models"),
        (["explain", "hi", "--model", "minilm", "--heads", "4"], None, 2, "--heads is for --model scratch"),
        (
            ["export", "hi", "--renormalize", "--out", "/tmp/x"],
            None,
            2,
            "--renormalize only applies with --hide-special",
        ),
    ],
)
def test_bad_input_is_one_line(args, stdin, code, message):
    if args[:2] == ["show", "-"] and code == 2:
        args = [*args, "--format", "json"]
    got, stdout, stderr = run_inprocess(args, stdin or b"")
    assert got == code, stderr
    assert message in stderr
    assert "Traceback" not in stderr and stdout == b""


def test_truncate_warns_and_continues():
    out = run_cli("show", "word " * 600, "--truncate", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["stacks"][0]["query_tokens"]) == 512


def test_debug_shows_the_traceback():
    out = run_cli("--debug", "show", "hi", "--layer", "99")
    assert out.returncode == 1
    assert b"Traceback" in out.stderr and b"SelectionError" in out.stderr


def test_ctrl_c_exits_130_without_traceback():
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
    assert b"interrupted" in stderr
    assert b"Traceback" not in stderr and stdout == b""


def test_broken_pipe_is_quiet():
    cmd = f"{sys.executable} -m attnviz show - --format jsonl | head -c 10"
    out = subprocess.run(cmd, shell=True, input=b"I have a dream\n" * 40, capture_output=True, timeout=120)
    assert len(out.stdout) == 10
    assert b"Traceback" not in out.stderr and b"error" not in out.stderr


def test_no_pickle_loading_in_our_code():
    """Our own code never unpickles: torch.load only with weights_only, no pickle module."""
    for path in Path(__file__).resolve().parents[1].joinpath("attnviz").rglob("*.py"):
        source = path.read_text()
        assert "import pickle" not in source and "pickle.load" not in source, path
        assert "torch.load(" not in source or "weights_only=True" in source, path
