"""`attnviz export`, run for real: the embedded model and tiny saved models, real files, real SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Run, run
from PIL import Image

from attnviz.export.files import MANIFEST, TMP_PREFIX

DREAM = "I have a dream"
LAYERS, HEADS = list(range(6)), list(range(12))


def export(out: Path, *args: str, stdin: str = "") -> Run:
    """The CLI in this process (the model stays cached between tests), drawing in this process too."""
    return run("export", "--out", str(out), "--device", "cpu", "--jobs", "1", *args, stdin=stdin)


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text(encoding="utf-8").splitlines()]


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


def fields(r: dict) -> tuple:
    """What a record says it draws: (layer, layers, head, heads, agg, rollout)."""
    return r["layer"], r["layers"], r["head"], r["heads"], r["agg"], r["rollout"]


def check_types(r: dict) -> None:
    """Every manifest field keeps one type whatever the view."""
    assert type(r["index"]) is int and (r["line"] is None or type(r["line"]) is int)
    assert r["layer"] is None or type(r["layer"]) is int
    assert r["head"] is None or type(r["head"]) is int
    assert r["agg"] is None or r["agg"] in ("mean", "max")
    assert type(r["rollout"]) is bool
    assert r["layers"] and all(type(i) is int for i in r["layers"])
    assert r["heads"] and all(type(i) is int for i in r["heads"])


# (layer, layers, head, heads, agg, rollout) of each image, by the flags that made it
EACH_HEAD = {(layer, (layer,), head, (head,), None, False) for layer in LAYERS for head in HEADS}
EACH_LAYER = {(layer, (layer,), None, tuple(HEADS), None, False) for layer in LAYERS}
LAYER_MEANS = {(layer, (layer,), None, tuple(HEADS), "mean", False) for layer in LAYERS}
WHOLE_MODEL = {(None, tuple(LAYERS), None, tuple(HEADS), None, False)}
ROLLOUT = {(None, tuple(LAYERS), None, tuple(HEADS), "mean", True)}


@pytest.mark.parametrize(
    "args, view, expected",
    [
        (["--view", "head"], "head", EACH_HEAD),
        (["--view", "layer"], "layer", EACH_LAYER),
        (["--view", "model"], "model", WHOLE_MODEL),
        (["--agg", "mean"], "head", LAYER_MEANS),  # one image per layer, its heads averaged
        (["--agg", "rollout"], "head", ROLLOUT),  # one image: every layer rolled out
    ],
    ids=["head", "layer", "model", "agg-mean", "agg-rollout"],
)
def test_each_view_makes_its_images(tmp_path, args, view, expected):
    out = tmp_path / "images"
    result = export(out, DREAM, *args)
    assert result.code == 0, result.stderr
    records = check_consistent(out)
    count = len(expected)
    assert len(records) == count
    assert {r["view"] for r in records} == {view}
    assert {(r["stack"], r["index"], r["line"], r["text"]) for r in records} == {("encoder", 0, None, DREAM)}
    assert f"{count} image{'s' if count > 1 else ''} written to {out}" in result.stderr
    assert result.stdout == ""  # without --manifest -, stdout stays empty
    for r in records:
        check_types(r)
    got = {(r["layer"], tuple(r["layers"]), r["head"], tuple(r["heads"]), r["agg"], r["rollout"]) for r in records}
    assert got == expected
    if view == "head":
        sizes = {Image.open(out / r["file"]).size for r in records}
        assert len(sizes) == 1  # one sentence: one layout for every map


def test_selection_flags_pick_layers_and_heads(tmp_path):
    out = tmp_path / "pick"
    assert export(out, DREAM, "--layer", "2:4", "--head", "0,5", "--hide-special", "--words").code == 0
    records = check_consistent(out)
    assert sorted((r["layer"], r["head"]) for r in records) == [(2, 0), (2, 5), (3, 0), (3, 5)]
    assert all(r["layers"] == [r["layer"]] and r["heads"] == [r["head"]] and r["agg"] is None for r in records)


def test_manifest_fields_of_combined_heads_and_rollouts(tmp_path):
    out = tmp_path / "max"
    assert export(out, DREAM, "--view", "head", "--layer", "1", "--head", "max").code == 0
    (r,) = check_consistent(out)
    assert fields(r) == (1, [1], None, HEADS, "max", False)
    out = tmp_path / "mean"
    assert export(out, DREAM, "--agg", "mean", "--layer", "4", "--head", "2:4").code == 0
    (r,) = check_consistent(out)
    assert fields(r) == (4, [4], None, [2, 3], "mean", False)
    for heads, head, agg in (("0,2", None, "mean"), ("3", 3, None)):
        out = tmp_path / f"rollout-{heads}"
        assert export(out, DREAM, "--agg", "rollout", "--head", heads).code == 0
        (r,) = check_consistent(out)
        assert (r["layer"], r["layers"], r["head"], r["agg"], r["rollout"]) == (None, LAYERS, head, agg, True)
        assert r["heads"] == [int(h) for h in heads.split(",")]


def test_svg_and_pdf(tmp_path):
    import xml.etree.ElementTree as ET

    assert export(tmp_path / "svg", DREAM, "--agg", "rollout", "--image", "svg").code == 0
    (svg,) = images(tmp_path / "svg", "svg")
    assert ET.parse(tmp_path / "svg" / svg).getroot().tag.endswith("svg")
    assert export(tmp_path / "pdf", DREAM, "--view", "layer", "--layer", "5", "--image", "pdf").code == 0
    (pdf,) = images(tmp_path / "pdf", "pdf")
    assert (tmp_path / "pdf" / pdf).read_bytes().startswith(b"%PDF-")
    assert manifest(tmp_path / "pdf")[0]["file"] == pdf


def test_manifest_dash_prints_lines_to_stdout(tmp_path):
    out = tmp_path / "m"
    result = export(out, DREAM, "--view", "head", "--layer", "5", "--manifest", "-")
    assert result.code == 0, result.stderr
    printed = result.jsonl()  # every stdout line is a manifest record: talk stays on stderr
    assert len(printed) == 12
    assert printed == manifest(out)
    assert {"index", "line", "text", "model", "view", "stack", "layer", "head", "agg", "rollout", "path"} <= set(
        printed[0]
    )
    assert "12 images written" in result.stderr


def test_traversal_in_the_text_stays_inside_the_folder(tmp_path):
    out = tmp_path / "a" / "b"
    assert export(out, "../../etc/x", "/tmp/evil", "--agg", "rollout").code == 0
    records = check_consistent(out)
    assert sorted(r["file"].split("-")[0] for r in records) == ["0000", "0001"]
    assert all(r["file"].startswith(("0000-etc-x-", "0001-tmp-evil-")) for r in records)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted([*images(out), MANIFEST])


def test_rerun_skips_complete_images_and_overwrite_redraws(tmp_path):
    out = tmp_path / "again"
    args = (DREAM, "--view", "head", "--layer", "5")
    assert export(out, *args).code == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = export(out, *args)
    assert again.code == 0
    assert f"0 images written to {out}, 12 already complete" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == first
    assert len(check_consistent(out)) == 12
    time.sleep(0.01)
    assert export(out, *args, "--overwrite").code == 0
    assert all(p.stat().st_mtime_ns > first[p.name] for p in out.glob("*.png"))
    assert len(check_consistent(out)) == 12


def test_bad_lines_are_reported_and_the_rest_exported(tmp_path):
    source = tmp_path / "in.txt"
    too_long = " ".join(["word"] * 700)
    source.write_bytes(b"# a comment\n\nI have a dream\nbad \xff bytes\n" + too_long.encode() + b"\nso do I\n")
    out = tmp_path / "out"
    result = export(out, "--input", str(source), "--agg", "rollout")
    assert result.code == 1
    assert f"error: {source} line 4 is not valid UTF-8" in result.stderr
    assert "error: line 5: input is 702 tokens long" in result.stderr
    assert "error: 2 of 4 sentences failed" in result.stderr
    assert "hint: fix or remove those sentences and run again" in result.stderr
    records = check_consistent(out)
    assert [(r["index"], r["line"], r["text"]) for r in records] == [(0, 3, DREAM), (3, 6, "so do I")]


def test_sentences_given_as_arguments_are_counted_not_lined(tmp_path):
    out = tmp_path / "args"
    result = export(out, DREAM, " ".join(["word"] * 700), "--agg", "rollout")
    assert result.code == 1
    assert "error: sentence 2: input is 702 tokens long" in result.stderr and "line 2" not in result.stderr
    (r,) = check_consistent(out)
    assert (r["index"], r["line"], r["text"]) == (0, None, DREAM)


def test_output_path_that_is_a_file_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = export(blocker, DREAM)
    assert result.code == 1
    assert result.stderr.splitlines()[0] == f"error: the output folder {blocker} exists and is not a folder"
    assert blocker.read_text() == "x"


def test_usage_errors(tmp_path):
    out = tmp_path / "u"
    result = export(out, DREAM, "--view", "bogus")
    assert result.code == 2 and result.stderr.startswith("error: Invalid value for '--view'")
    result = export(out, DREAM, "--input", "x.txt")
    assert result.code == 2 and result.stderr.startswith("error: give sentences or --input FILE, not both")
    result = export(out)
    assert result.code == 2 and result.stderr.startswith("error: nothing to draw")
    assert not out.exists()


def test_pairs_file_and_encoder_decoder_stacks(tmp_path, tiny_model):
    pairs = Path(__file__).parent.parent / "sample_inputs" / "pairs.tsv"
    out = tmp_path / "pairs"
    assert export(out, "--input", str(pairs), "--agg", "rollout").code == 0
    records = check_consistent(out)
    assert len(records) == 4 and all(r["pair"] and r["line"] > 2 for r in records)

    bart = str(tiny_model("bart"))
    assert export(tmp_path / "bart", "the cat sat", "--model", bart, "--view", "head").code == 0
    stacks = [r["stack"] for r in check_consistent(tmp_path / "bart")]
    assert (stacks.count("encoder"), stacks.count("decoder"), stacks.count("cross")) == (2 * 4, 3 * 4, 3 * 4)
    assert export(tmp_path / "roll", "the cat sat", "--model", bart, "--agg", "rollout").code == 0
    assert sorted(r["stack"] for r in manifest(tmp_path / "roll")) == ["decoder", "encoder"]


def test_sigint_mid_run_leaves_only_complete_images_and_a_rerun_finishes(tmp_path):
    """Real Ctrl-C to a real process using drawing workers; then the same command completes the set."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"sentence number {i} is here\n" for i in range(12)), encoding="utf-8")
    out = tmp_path / "int"
    args = ["export", "--input", str(source), "--out", str(out), "--layer", "3:6"]
    args += ["--device", "cpu", "--jobs", "2", "--batch-size", "2"]
    total = 12 * 3 * 12  # sentences × layers × heads
    # a real signal needs a process of its own; a shell's background jobs inherit SIGINT ignored:
    # give the child the default, as a terminal would
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnviz", *args],
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
    assert "interrupted" in err and "Traceback" not in err
    partial = check_consistent(out)
    assert 20 <= len(partial) < total
    assert not list(out.glob(f"{TMP_PREFIX}*"))  # no temporary file outlived the interrupt
    rerun = run(*args)  # the same command, in this process this time
    assert rerun.code == 0, rerun.stderr
    assert f"{total - len(partial)} images written to {out}, {len(partial)} already complete" in rerun.stderr
    assert len(check_consistent(out)) == total
