"""The command line, run for real: through CliRunner and as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from attnviz import __version__, extract


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attnviz", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_version_and_help_do_not_import_heavy_modules():
    probe = (
        "import sys\n"
        "from attnviz.cli import main\n"
        "for argv in (['--version'], ['--help'], ['show', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'matplotlib', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"attnviz {__version__}" in out.stdout
    assert "HEAVY []" in out.stdout


def test_show_json_all_layers_and_heads_matches_the_api():
    out = run_cli("show", "I have a dream", "--format", "json", "--layer", "all", "--head", "all", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "attnviz/1" and doc["model"] == "all-MiniLM-L6-v2"
    (stack,) = doc["stacks"]
    assert stack["name"] == "encoder"
    assert stack["query_tokens"] == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]
    weights = np.asarray(stack["attention"], dtype=np.float32)
    assert weights.shape == (6, 12, 6, 6)
    assert np.array_equal(weights, extract("I have a dream", device="cpu").stacks[0].weights)


def test_show_reads_stdin_and_jsonl_gives_one_line_per_sentence():
    out = run_cli("show", "-", "--format", "jsonl", "--head", "mean", stdin="I have a dream\n\nso do I\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["I have a dream", "so do I"]
    assert json.loads(lines[0])["stacks"][0]["heads"] == ["mean"]


def test_info_reports_real_shapes(tiny_model):
    out = run_cli("info", "--model", str(tiny_model("bart")), "--json", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["family"] == "encoder-decoder"
    assert info["stacks"] == ["encoder", "decoder", "cross"]
    assert info["layers"] == {"encoder": 2, "decoder": 3, "cross": 3} and info["heads"] == 4


def test_tokens_json():
    out = run_cli("tokens", "I have a dream", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["input"] == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["show", "   "], 1, "error: the text is empty"),
        (["show", "hi", "--layer", "9"], 1, "error: layer 9 does not exist: this model has 6 layers (0..5)"),
        (["show", "hi", "--format", "xml"], 2, "error: unknown --format 'xml'"),
        (["show", "hi", "--model", "/nonexistent/folder"], 1, "error: model folder /nonexistent/folder does not exist"),
    ],
)
def test_errors_are_one_clear_line(args, code, message):
    out = run_cli(*args)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cuda_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = run_cli("show", "hi", "--device", "cuda")
    assert out.returncode == 1
    assert "error: --device cuda was asked for, but no CUDA device is available" in out.stderr
