"""`attnviz export`, run for real: the embedded model and tiny saved models, real files, real SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from attnviz.cli import main

DREAM = "I have a dream"


def run(*args: str) -> int:
    """The CLI in this process (the model stays cached between tests); returns the exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def export(out: Path, *args: str) -> int:
    return run("export", "--out", str(out), "--device", "cpu", "--jobs", "1", *args)


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def images(out: Path, ext: str = "png") -> set[str]:
    return {p.name for p in out.glob(f"*.{ext}")}


def check_consistent(out: Path) -> list[dict]:
    """No temporary files; the manifest lists exactly the images; every PNG decodes at its size."""
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    records = manifest(out)
    assert len({r["file"] for r in records}) == len(records)
    assert {r["file"] for r in records} == images(out)
    for r in records:
        assert Path(r["path"]).resolve().parent == out.resolve()
        with Image.open(out / r["file"]) as image:
            image.load()  # raises on a truncated file
    return records


@pytest.mark.parametrize(
    "view, count",
    [("head", 6 * 12), ("layer", 6), ("model", 1), ("mean", 1), ("rollout", 1)],
)
def test_each_view_makes_its_images(tmp_path, view, count, capsys):
    out = tmp_path / view
    assert export(out, DREAM, "--view", view) == 0
    records = check_consistent(out)
    assert len(records) == count
    assert {r["view"] for r in records} == {view}
    assert {r["stack"] for r in records} == {"encoder"}
    assert f"{count} image{'s' if count > 1 else ''} written to {out}" in capsys.readouterr().err
    for r in records:  # every field keeps one type whatever the view
        assert r["layer"] is None or type(r["layer"]) is int
        assert r["head"] is None or type(r["head"]) is int
        assert r["agg"] is None or r["agg"] in ("mean", "max")
        assert r["layers"] and all(type(i) is int for i in r["layers"])
        assert r["heads"] and all(type(i) is int for i in r["heads"])
    if view in ("mean", "rollout", "model"):
        (r,) = records
        assert (r["layer"], r["layers"], r["head"], r["heads"]) == (None, list(range(6)), None, list(range(12)))
        assert r["agg"] == (None if view == "model" else "mean")
    if view == "head":
        assert {(r["layer"], r["head"]) for r in records} == {(layer, h) for layer in range(6) for h in range(12)}
        sizes = {Image.open(out / r["file"]).size for r in records}
        assert len(sizes) == 1  # one sentence: one layout for every head


def test_selection_flags_pick_layers_and_heads(tmp_path):
    out = tmp_path / "pick"
    assert export(out, DREAM, "--layer", "2:4", "--head", "0,5", "--hide-special", "--words") == 0
    records = check_consistent(out)
    assert sorted((r["layer"], r["head"]) for r in records) == [(2, 0), (2, 5), (3, 0), (3, 5)]
    assert all(r["layers"] == [r["layer"]] and r["heads"] == [r["head"]] and r["agg"] is None for r in records)


def test_manifest_fields_of_combined_heads_and_one_layer_means(tmp_path):
    out = tmp_path / "combined"
    assert export(out, DREAM, "--view", "head", "--layer", "1", "--head", "max") == 0
    (r,) = check_consistent(out)
    assert (r["layer"], r["layers"], r["head"], r["heads"], r["agg"]) == (1, [1], None, list(range(12)), "max")
    out = tmp_path / "mean"
    assert export(out, DREAM, "--view", "mean", "--layer", "4", "--head", "2:4") == 0
    (r,) = check_consistent(out)
    assert (r["layer"], r["layers"], r["head"], r["heads"], r["agg"]) == (4, [4], None, [2, 3], "mean")
    for heads, head, agg in (("0,2", None, "mean"), ("3", 3, None)):
        out = tmp_path / f"rollout-{heads}"
        assert export(out, DREAM, "--view", "rollout", "--head", heads) == 0
        (r,) = check_consistent(out)
        assert (r["layer"], r["layers"], r["head"], r["agg"]) == (None, list(range(6)), head, agg)
        assert r["heads"] == [int(h) for h in heads.split(",")]


def test_svg_and_pdf(tmp_path):
    import xml.etree.ElementTree as ET

    assert export(tmp_path / "svg", DREAM, "--view", "mean", "--image", "svg") == 0
    (svg,) = images(tmp_path / "svg", "svg")
    assert ET.parse(tmp_path / "svg" / svg).getroot().tag.endswith("svg")
    assert export(tmp_path / "pdf", DREAM, "--view", "layer", "--layer", "5", "--image", "pdf") == 0
    (pdf,) = images(tmp_path / "pdf", "pdf")
    assert (tmp_path / "pdf" / pdf).read_bytes().startswith(b"%PDF-")
    assert manifest(tmp_path / "pdf")[0]["file"] == pdf


def test_manifest_dash_prints_lines_to_stdout(tmp_path, capsys):
    out = tmp_path / "m"
    assert export(out, DREAM, "--view", "head", "--layer", "5", "--manifest", "-") == 0
    captured = capsys.readouterr()
    printed = [json.loads(line) for line in captured.out.splitlines()]
    assert len(printed) == 12
    assert printed == manifest(out)
    assert {"index", "text", "stack", "layer", "head", "view", "path"} <= set(printed[0])
    assert "images written" not in captured.out  # talk stays on stderr


def test_traversal_in_the_text_stays_inside_the_folder(tmp_path):
    out = tmp_path / "a" / "b"
    assert export(out, "../../etc/x", "/tmp/evil", "--view", "mean") == 0
    records = check_consistent(out)
    assert sorted(r["file"].split("-")[0] for r in records) == ["0000", "0001"]
    assert all(r["file"].startswith(("0000-etc-x-", "0001-tmp-evil-")) for r in records)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted([*images(out), "manifest.jsonl"])


def test_rerun_skips_complete_images_and_overwrite_redraws(tmp_path, capsys):
    out = tmp_path / "again"
    args = (DREAM, "--view", "head", "--layer", "5")
    assert export(out, *args) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    capsys.readouterr()
    assert export(out, *args) == 0
    assert f"0 images written to {out}, 12 already complete" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == first
    assert len(check_consistent(out)) == 12
    time.sleep(0.01)
    assert export(out, *args, "--overwrite") == 0
    assert all(p.stat().st_mtime_ns > first[p.name] for p in out.glob("*.png"))
    assert len(check_consistent(out)) == 12


def test_bad_lines_are_reported_and_the_rest_exported(tmp_path, capsys):
    source = tmp_path / "in.txt"
    too_long = " ".join(["word"] * 700)
    source.write_bytes(b"# a comment\n\nI have a dream\nbad \xff bytes\n" + too_long.encode() + b"\nso do I\n")
    out = tmp_path / "out"
    assert export(out, "--input", str(source), "--view", "mean") == 1
    err = capsys.readouterr().err
    assert "line 4 is not valid UTF-8" in err
    assert "line 5: input is 702 tokens long" in err
    assert "error: 2 of 4 sentences failed" in err
    records = check_consistent(out)
    assert [(r["index"], r["line"], r["text"]) for r in records] == [(0, 3, DREAM), (3, 6, "so do I")]


def test_output_path_that_is_a_file_is_an_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert export(blocker, DREAM) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_usage_errors(tmp_path, capsys):
    assert export(tmp_path / "u", DREAM, "--view", "bogus") == 2
    assert "unknown --view 'bogus'" in capsys.readouterr().err
    assert export(tmp_path / "u", DREAM, "--input", "x.txt") == 2
    assert export(tmp_path / "u") == 2


def test_pairs_file_and_encoder_decoder_stacks(tmp_path, tiny_model):
    pairs = Path(__file__).parent.parent / "sample_inputs" / "pairs.tsv"
    out = tmp_path / "pairs"
    assert export(out, "--input", str(pairs), "--view", "mean") == 0
    records = check_consistent(out)
    assert len(records) == 4 and all("pair" in r for r in records)

    bart = str(tiny_model("bart"))
    assert export(tmp_path / "bart", "the cat sat", "--model", bart, "--view", "head") == 0
    stacks = [r["stack"] for r in check_consistent(tmp_path / "bart")]
    assert (stacks.count("encoder"), stacks.count("decoder"), stacks.count("cross")) == (2 * 4, 3 * 4, 3 * 4)
    assert export(tmp_path / "roll", "the cat sat", "--model", bart, "--view", "rollout") == 0
    assert sorted(r["stack"] for r in manifest(tmp_path / "roll")) == ["decoder", "encoder"]


def test_sigint_mid_run_leaves_only_complete_images_and_a_rerun_finishes(tmp_path):
    """Real Ctrl-C to a real process using drawing workers; then the same command completes the set."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"sentence number {i} is here\n" for i in range(12)), encoding="utf-8")
    out = tmp_path / "int"
    cmd = [sys.executable, "-m", "attnviz", "export", "--input", str(source), "--out", str(out)]
    cmd += ["--device", "cpu", "--jobs", "2", "--batch-size", "2"]
    # a shell's background jobs inherit SIGINT ignored: give the child the default, as a terminal would
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("*.png"))) >= 20:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # (typer turns KeyboardInterrupt into a silent exit 130, so no message is asserted)
    partial = check_consistent(out)
    assert 20 <= len(partial) < 12 * 72
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already complete" in rerun.stderr
    assert len(check_consistent(out)) == 12 * 72
    assert not os.path.exists(out / "manifest.jsonl.tmp")
