"""A responsive export, for real: per-image progress and manifest, Ctrl-C within 2 s, a closed
pipe on `--manifest -`, SIGKILL reconciled by the next run, and a finished re-run without a model.

Real processes, real signals, real pipes: the states checked here only exist between processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import run
from PIL import Image

from attnviz.export.files import MANIFEST, TMP_PREFIX

PER_SENTENCE = 72  # MiniLM, --view head: 6 layers × 12 heads
DREAM = "I have a dream"


def sentences(tmp_path: Path, n: int) -> Path:
    source = tmp_path / "in.txt"
    source.write_text("".join(f"sentence number {i} is here and there\n" for i in range(n)), encoding="utf-8")
    return source


def start(out: Path, source: Path, *args: str, **popen: object) -> subprocess.Popen:
    """`attnviz export --input SOURCE --out OUT` in a process of its own, SIGINT at its default
    (a shell's background job would inherit it ignored; a terminal's foreground job has the default)."""
    cmd = [sys.executable, "-m", "attnviz", "export", "--input", str(source), "--out", str(out), "--device", "cpu"]
    return subprocess.Popen(
        [*cmd, *args],
        stdout=popen.pop("stdout", subprocess.DEVNULL),
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,  # type: ignore[call-overload]
    )


def wait_for_images(out: Path, count: int, proc: subprocess.Popen, ext: str = "png") -> None:
    deadline = time.monotonic() + 60
    while len(list(out.glob(f"*.{ext}"))) < count:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else proc.returncode
        assert time.monotonic() < deadline, "no images after 60 s"
        time.sleep(0.01)


def listed(out: Path) -> list[str]:
    return [json.loads(line)["file"] for line in (out / MANIFEST).read_text(encoding="utf-8").splitlines()]


def on_disk(out: Path, ext: str = "png") -> list[str]:
    return sorted(p.name for p in out.glob(f"*.{ext}"))


def check_consistent(out: Path, ext: str = "png") -> list[str]:
    """No temporary file; the manifest lists exactly the images on disk, once each; each loads."""
    assert not [p.name for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
    names = listed(out)
    assert len(names) == len(set(names))
    assert sorted(names) == on_disk(out, ext)
    for name in names:
        if ext == "png":
            with Image.open(out / name) as image:
                image.load()  # raises on a truncated file
        else:
            assert (out / name).read_bytes().rstrip().endswith(b"</svg>")
    return names


@pytest.mark.parametrize("ext, jobs", [("png", "2"), ("png", "1"), ("svg", "2")])
def test_ctrl_c_exits_within_two_seconds_leaving_exactly_the_complete_images(tmp_path, ext, jobs):
    out = tmp_path / "out"
    proc = start(out, sentences(tmp_path, 12), "--image", ext, "--jobs", jobs)
    wait_for_images(out, 10, proc, ext)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    stderr = err.decode()
    assert proc.returncode == 130, stderr
    assert took < 2.0, f"exit {took:.2f} s after Ctrl-C"
    assert "interrupted" in stderr and "Traceback" not in stderr
    names = check_consistent(out, ext)
    assert 10 <= len(names) < 12 * PER_SENTENCE


def test_manifest_dash_prints_each_image_as_it_lands(tmp_path):
    """Each printed line's image is on disk already, and the first line comes long before a
    sentence's 72 images are done (lines no longer come a sentence at a time)."""
    out = tmp_path / "out"
    proc = start(out, sentences(tmp_path, 3), "--manifest", "-", "--jobs", "2", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert len(on_disk(out)) < PER_SENTENCE
    lines = [first, *proc.stdout]
    assert proc.wait(timeout=60) == 0
    printed = [json.loads(line)["file"] for line in lines]
    assert len(printed) == 3 * PER_SENTENCE
    assert printed == listed(out)  # the same lines, in the same order
    check_consistent(out)


def test_progress_and_manifest_advance_one_image_at_a_time(tmp_path):
    """The reporter hears of every image alone, and by then its manifest line is on disk."""
    from attnviz import extract
    from attnviz.export.run import ExportOptions, Reporter, export, from_results
    from attnviz.render.image import Style

    out = tmp_path / "out"
    calls: list[tuple[int, int, int]] = []

    class Record(Reporter):
        def done(self, written: int, skipped: int) -> None:
            calls.append((written, skipped, len(listed(out))))

    found, outcomes = from_results([extract(DREAM, device="cpu")])
    options = ExportOptions(style=Style(), jobs=2)
    summary = export(found, outcomes, out, options, Record())
    assert summary.written == PER_SENTENCE
    assert calls == [(1, 0, n) for n in range(1, PER_SENTENCE + 1)]
    check_consistent(out)


def test_a_closed_pipe_stops_the_export_quietly_with_the_manifest_matching_the_disk(tmp_path):
    """`attnviz export ... --manifest - | head -3`: no traceback, drawing stops, nothing unlisted."""
    out = tmp_path / "out"
    proc = start(out, sentences(tmp_path, 12), "--manifest", "-", stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert all(json.loads(line)["file"] for line in lines)
    proc.stdout.close()  # what `head -3` does once it has its lines
    proc.wait(timeout=30)  # before reading stderr: a hang must fail the test, not stall it
    err = proc.stderr.read().decode()
    assert proc.returncode == 0 and err == "", err  # quiet, like other Unix tools
    names = check_consistent(out)
    assert 3 <= len(names) < 2 * PER_SENTENCE  # it stopped drawing soon after the reader left


def test_sigkill_is_reconciled_by_the_next_run(tmp_path):
    """kill -9 of the whole run (parent and drawing workers) mid-export: images may be on disk
    without a manifest line, and temporary files may remain; the same command then finishes,
    listing every image once."""
    out = tmp_path / "out"
    source = sentences(tmp_path, 3)
    proc = start(out, source, "--jobs", "2", start_new_session=True)
    wait_for_images(out, 20, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.2)  # workers are gone too (the group was killed)
    # a temporary file of a killed writer, as a kill mid-write leaves it
    (out / f"{TMP_PREFIX}half.png-{proc.pid}").write_bytes(b"half an image")
    survived = on_disk(out)
    assert set(listed(out)) <= set(survived)  # the manifest never lists an image that is not complete
    rerun = subprocess.run(
        [sys.executable, "-m", "attnviz", "export", "--input", str(source), "--out", str(out), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    total = 3 * PER_SENTENCE
    assert f"{total - len(survived)} images written to {out}, {len(survived)} already complete" in rerun.stderr
    assert len(check_consistent(out)) == total


# modules that only a model (or its tokenizer) brings in
MODEL_MODULES = ("attnviz.backends.registry", "safetensors", "tokenizers", "torch", "transformers")
WATCH = f"""
import atexit, sys
watch = {MODEL_MODULES!r}
atexit.register(lambda: sys.stderr.write("loaded: " + ",".join(m for m in watch if m in sys.modules) + "\\n"))
from attnviz.cli import main
main(sys.argv[1:])
"""


def export_watching_imports(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    cmd = [sys.executable, "-c", WATCH, "export", DREAM, "--out", str(out), "--jobs", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    loaded = proc.stderr.rsplit("loaded: ", 1)[-1].strip()
    return proc, [m for m in loaded.split(",") if m]


def test_a_rerun_of_a_finished_export_loads_no_model(tmp_path):
    out = tmp_path / "out"
    first, loaded = export_watching_imports(out, "--layer", "5", "--view", "head")
    assert first.returncode == 0, first.stderr
    assert "attnviz.backends.registry" in loaded  # the check can see a model load
    again, loaded = export_watching_imports(out, "--layer", "5", "--view", "head", "--manifest", "-")
    assert again.returncode == 0, again.stderr
    assert loaded == []
    assert f"0 images written to {out}, 12 already complete" in again.stderr
    assert [json.loads(line)["file"] for line in again.stdout.splitlines()] == listed(out)
    assert len(check_consistent(out)) == 12


def test_a_rerun_with_one_image_missing_draws_only_it(tmp_path):
    out = tmp_path / "out"
    args = ("export", DREAM, "--out", str(out), "--device", "cpu", "--jobs", "1", "--layer", "5")
    assert run(*args).code == 0
    gone = on_disk(out)[3]
    (out / gone).unlink()
    again = run(*args)
    assert again.code == 0, again.stderr
    assert f"1 image written to {out}, 11 already complete" in again.stderr
    assert len(check_consistent(out)) == 12
    other = run(*args, "--cmap", "Blues")  # another look: its set is not known finished, so the model runs
    assert other.code == 0 and f"0 images written to {out}, 12 already complete" in other.stderr
