"""`attnviz render FILE`: a saved result prints exactly what `show` printed for the same text,
without a model — proven with torch and transformers made unimportable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import run, run_subprocess

TEXT = "I have an unbelievable dream"  # 'unbelievable' is several word pieces: --words matters
CASES = [
    [],
    ["--head", "0"],
    ["--head", "mean"],
    ["--agg", "rollout"],
    ["--words"],
    ["--hide-special", "--renormalize"],
    ["--query", "dream"],
    ["--format", "heat"],
    ["--format", "csv"],
    ["--format", "json", "--layer", "2:4", "--head", "-1"],
    ["--format", "jsonl", "--agg", "max", "--head", "0,3"],
    ["--layer", "all", "--head", "5", "--words", "--hide-special", "--tokens", "1:4"],
]


@pytest.fixture(scope="module")
def saved_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = run("show", TEXT, "--layer", "all", "--format", "json")
    assert out.code == 0, out.stderr
    path = tmp_path_factory.mktemp("saved") / "saved.json"
    path.write_bytes(out.stdout_bytes)
    return path


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PYTHONPATH with a `torch` and a `transformers` that refuse to be imported."""
    root = tmp_path_factory.mktemp("blocked")
    for name in ("torch", "transformers"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    return {"PYTHONPATH": str(root)}


@pytest.mark.parametrize("flags", CASES, ids=lambda f: " ".join(f) or "default")
def test_render_prints_what_show_printed(saved_json, flags):
    shown = run("show", TEXT, *flags)
    assert shown.code == 0, shown.stderr
    rendered = run("render", str(saved_json), *flags)
    assert rendered.code == 0, rendered.stderr
    assert rendered.stdout_bytes == shown.stdout_bytes


def test_render_runs_without_torch_or_transformers(saved_json, no_torch):
    blocked = run_subprocess("show", TEXT, "--model", "scratch", env=no_torch)
    assert blocked.code != 0  # the block works: a model run cannot import torch
    for flags in CASES:
        expected = run("show", TEXT, *flags).stdout_bytes
        got = run_subprocess("render", str(saved_json), *flags, env=no_torch)
        assert got.code == 0, (flags, got.stderr)
        assert got.stdout_bytes == expected, flags


def test_npz_holds_every_sentence_and_renders_as_jsonl_lines(tmp_path):
    stdin = "# a comment\n\nI have a dream\n\nso do I\n"
    npz = run("show", "-", "--format", "npz", "--head", "mean", stdin=stdin)
    assert npz.code == 0, npz.stderr
    (tmp_path / "two.npz").write_bytes(npz.stdout_bytes)
    lines = run("render", str(tmp_path / "two.npz"), "--format", "jsonl").jsonl()
    assert [(d["text"], d["index"], d["line"]) for d in lines] == [("I have a dream", 0, 3), ("so do I", 1, 5)]
    direct = run("show", "-", "--format", "jsonl", "--head", "mean", stdin=stdin)
    assert [json.dumps(d) for d in lines] == [json.dumps(d) for d in direct.jsonl()]


def test_jsonl_from_stdin_keeps_the_input_files_line_numbers():
    stdin = "I have a dream\n# skipped\n\nso do I\n"
    saved = run("show", "-", "--format", "jsonl", "--layer", "all", stdin=stdin)
    assert [d["line"] for d in saved.jsonl()] == [1, 4]
    again = run("render", "-", "--format", "jsonl", "--head", "0", stdin=saved.stdout_bytes)
    assert again.code == 0, again.stderr
    assert [d["line"] for d in again.jsonl()] == [1, 4]
    csv_rows = run("render", "-", "--format", "csv", stdin=saved.stdout_bytes).stdout.splitlines()
    assert {row.split(",")[1] for row in csv_rows[1:]} == {"1", "4"}


def test_render_images_are_the_images_export_draws(tmp_path, saved_json):
    flags = ["--layer", "5", "--head", "0:2", "--jobs", "1"]
    exported = run("export", TEXT, "--out", str(tmp_path / "a"), *flags)
    assert exported.code == 0, exported.stderr
    rendered = run("render", str(saved_json), "--image", "png", "--out", str(tmp_path / "b"), *flags)
    assert rendered.code == 0, rendered.stderr
    a = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert len(a) == 2 and a == sorted(p.name for p in (tmp_path / "b").glob("*.png"))
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    manifest = [json.loads(line) for line in (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()]
    assert {(m["layer"], m["head"], m["line"]) for m in manifest} == {(5, 0, None), (5, 1, None)}


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["render", "missing.json"], 1, "error: missing.json: no such file"),
        (["render", "{saved}", "--format", "csv", "--image", "png"], 2, "error: --format prints to stdout"),
        (["render", "{saved}", "--head", "avg"], 2, "error: --head: cannot read head 'avg'"),
        (["render", "{saved}", "--format", "xml"], 2, "error: Invalid value for '--format'"),
        (["render", "{saved}", "--layer", "7"], 1, "error: layer 7 does not exist: this model has 6 layers (0..5)"),
    ],
)
def test_render_errors_are_one_clear_line(saved_json, args, code, message):
    out = run(*[a.replace("{saved}", str(saved_json)) for a in args])
    assert out.code == code and out.stdout == ""
    assert out.stderr.splitlines()[0] == message or out.stderr.startswith(message), out.stderr
    assert "Traceback" not in out.stderr


def test_rollout_of_a_file_without_every_layer_says_how_to_save_one(tmp_path):
    last = run("show", TEXT, "--format", "json")
    (tmp_path / "last.json").write_bytes(last.stdout_bytes)
    out = run("render", str(tmp_path / "last.json"), "--agg", "rollout")
    assert out.code == 1
    assert out.stderr.splitlines() == [
        "error: rollout multiplies every layer of the model, and this result holds layer 5",
        "hint: save every layer and head (attnviz show TEXT --layer all --format json > saved.json)",
    ]
    assert run("render", str(tmp_path / "last.json"), "--head", "mean").code == 0  # what it holds still renders


def test_signed_maps_print_as_data_and_are_not_drawn(tmp_path, saved_json):
    doc = json.loads(saved_json.read_text())
    for s in doc["stacks"]:
        s["kind"] = "signed"
        s["attention"] = [[[[-w for w in row] for row in head] for head in layer] for layer in s["attention"]]
    signed = tmp_path / "signed.json"
    signed.write_text(json.dumps(doc))
    data = run("render", str(signed), "--format", "json")
    assert data.code == 0 and data.json()["stacks"][0]["kind"] == "signed"
    assert min(min(min(min(h) for h in layer) for layer in data.json()["stacks"][0]["attention"])) < 0
    table = run("render", str(signed))
    assert table.code == 2 and "signed maps" in table.stderr and table.stdout == ""
    images = run("render", str(signed), "--image", "png", "--out", str(tmp_path / "img"), "--jobs", "1")
    assert images.code == 1 and "are signed" in images.stderr


def test_render_names_the_result_that_failed_and_keeps_image_hints(tmp_path):
    two = run("show", "-", "--format", "jsonl", stdin="I have a dream\n\nyes\n")
    (tmp_path / "two.jsonl").write_bytes(two.stdout_bytes)
    out = run("render", str(tmp_path / "two.jsonl"), "--query", "dream")
    assert out.code == 1 and out.stderr.startswith("error: line 3: no query token 'dream'")
    images = run(
        "render", str(tmp_path / "two.jsonl"), "--image", "png", "--agg", "rollout", "--out", str(tmp_path / "i")
    )
    assert images.code == 1 and "hint: save every layer and head" in images.stderr
    assert not list((tmp_path / "i").glob("*.png")) if (tmp_path / "i").exists() else True
    assert run("render", str(tmp_path / "two.jsonl"), "--view", "layer").code == 2  # --view lays out images only
