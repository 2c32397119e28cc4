"""The command line, run for real in this process (tests/harness.py); a new process only to probe imports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness import run, run_subprocess

from attnviz import __version__, extract

HEAVY = ("torch", "transformers", "matplotlib", "numpy")


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level names of every module `python -X importtime` reports importing."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name.split(".")[0])
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        *([c, "--help"] for c in ("show", "render", "export", "heads", "explain", "tokens", "info")),
    ],
)
def test_version_and_help_do_not_import_heavy_modules(args):
    # a module imported once stays in sys.modules: only a new process can tell what --help imports
    out = run_subprocess(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.code == 0, out.stderr
    modules = imported_modules(out.stderr)
    assert "attnviz" in modules and "typer" in modules  # the probe sees what the command imports
    assert sorted(modules & set(HEAVY)) == []
    if args == ["--version"]:
        assert out.stdout == f"attnviz {__version__}\n"


def test_show_json_all_layers_and_heads_matches_the_api():
    out = run("show", "I have a dream", "--format", "json", "--layer", "all", "--head", "all", "--device", "cpu")
    assert out.code == 0, out.stderr
    doc = out.json()
    assert doc["schema"] == "attnviz/2" and doc["model"] == "all-MiniLM-L6-v2"
    assert (doc["index"], doc["line"]) == (0, None)
    (stack,) = doc["stacks"]
    assert stack["name"] == "encoder" and stack["kind"] == "probability"
    assert stack["query"]["tokens"] == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]
    assert stack["query"]["special"] == [True, False, False, False, False, True]
    assert stack["layers"] == list(range(6)) and stack["heads"] == list(range(12))
    assert (stack["model_layers"], stack["model_heads"]) == (6, 12)
    weights = np.asarray(stack["attention"], dtype=np.float32)
    assert weights.shape == (6, 12, 6, 6)
    assert np.array_equal(weights, extract("I have a dream", device="cpu").stacks[0].weights)


def test_show_reads_stdin_and_jsonl_gives_one_line_per_sentence():
    stdin = "I have a dream\n\nso do I\n"
    out = run("show", "-", "--format", "jsonl", "--head", "mean", "--device", "cpu", stdin=stdin)
    assert out.code == 0, out.stderr
    docs = out.jsonl()
    assert [(d["text"], d["index"], d["line"]) for d in docs] == [("I have a dream", 0, 1), ("so do I", 1, 3)]
    assert docs[0]["stacks"][0]["heads"] == [{"combine": "mean", "of": list(range(12))}]
    assert docs[0]["stacks"][0]["layers"] == [5]


def test_info_reports_real_shapes(tiny_model):
    out = run("info", "--model", str(tiny_model("bart")), "--json", "--device", "cpu")
    assert out.code == 0, out.stderr
    info = out.json()
    assert info["family"] == "encoder-decoder"
    assert info["stacks"] == ["encoder", "decoder", "cross"]
    assert info["layers"] == {"encoder": 2, "decoder": 3, "cross": 3} and info["heads"] == 4


def test_tokens_json():
    out = run("tokens", "I have a dream", "--format", "json", "--device", "cpu")
    assert out.code == 0, out.stderr
    doc = out.json()
    assert doc["text"] == "I have a dream"
    assert [t["token"] for t in doc["input"]] == ["[CLS]", "i", "have", "a", "dream", "[SEP]"]
    assert doc["input"][4] == {
        "index": 4,
        "token": "dream",
        "special": False,
        "word": 3,
        "segment": 0,
        "offsets": [9, 14],
        "from_text": "dream",
    }
    assert doc["input"][0]["special"] and doc["input"][0]["from_text"] is None


def test_tokens_carry_every_column_and_what_unk_replaced():
    """Every column of the table is in the JSON; [UNK] says which characters it stands for, in A or B."""
    out = run("tokens", "I have a 😀 dream", "so do I", "--pair", "ü ☃", "--format", "json", "--device", "cpu")
    assert out.code == 0, out.stderr
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    unk = [t for t in first["input"] if t["token"] == "[UNK]"]
    assert [t["from_text"] for t in unk] == ["😀", "☃"] and [t["segment"] for t in unk] == [0, 1]
    assert first["pair"] == "ü ☃" and second["text"] == "so do I"
    table = run("tokens", "I have a 😀 dream", "--device", "cpu")
    row = next(line for line in table.stdout.splitlines() if "[UNK]" in line)
    assert "😀" in row and "from text" in table.stdout
    assert not [line for line in table.stdout.splitlines() if line.endswith(" ")]


@pytest.mark.parametrize(
    "args, code, message, hint",
    [
        (["show", "   "], 1, "error: the text is empty", "hint: give a sentence, or - to read standard input"),
        (["show", "hi", "--layer", "9"], 1, "error: layer 9 does not exist: this model has 6 layers (0..5)", None),
        (["show", "hi", "--format", "xml"], 2, "error: Invalid value for '--format'",
         "hint: see 'attnviz show --help'"),
        (["show", "hi", "--model", "/nonexistent/folder"], 1, "error: model folder /nonexistent/folder does not exist",
         "hint: built-in models: minilm, scratch"),
    ],
)  # fmt: skip
def test_errors_are_one_clear_line(args, code, message, hint):
    out = run(*args, "--device", "cpu")
    assert out.code == code, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0].startswith(message)
    assert lines[1:] == ([hint] if hint else [])
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cuda_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = run("show", "hi", "--device", "cuda")
    assert out.code == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "error: a CUDA device was asked for, but none is available",
        "hint: use --device cpu",
    ]


def test_unk_says_what_it_replaced_in_headers_and_saved_files(tmp_path):
    """The label rule: [UNK] carries the characters it stands for, in A and in B, and keeps them in a saved file."""
    shown = run("show", "I have a ☃ dream", "--pair", "so do ☂", "--head", "0", "--device", "cpu")
    assert "[UNK:☃]" in shown.stdout and "[UNK:☂]" in shown.stdout
    saved = tmp_path / "unk.json"
    saved.write_bytes(run("show", "I have a ☃ dream", "--format", "json", "--device", "cpu").stdout_bytes)
    assert "[UNK:☃]" in run("render", str(saved), "--head", "0").stdout
