"""Export when the disk fills up or the folder cannot be written: one error line, no broken files."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SENTENCES = "I have a dream\nthe quick brown fox jumps over the lazy dog\nso do I\n"


def export(out: Path, *args: str, preexec=None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "attnviz", "export", "--input", "-", "--out", str(out), "--device", "cpu", *args]
    return subprocess.run(cmd, input=SENTENCES, capture_output=True, text=True, timeout=300, preexec_fn=preexec)


def assert_only_complete_images(out: Path) -> list[str]:
    """No temporary files; every PNG decodes; the manifest lists exactly the PNGs on disk."""
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    pngs = [n for n in names if n.endswith(".png")]
    for name in pngs:
        with Image.open(out / name) as image:
            image.load()  # raises on a truncated file
    listed = []
    if (out / "manifest.jsonl").exists():
        listed = [json.loads(line)["file"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(listed) == pngs
    return pngs


def _disk_full_after(limit_bytes: int):
    def limit() -> None:
        # a write past the limit fails with EFBIG instead of killing the process: a full disk, simulated
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_disk_full_leaves_no_partial_file_and_a_rerun_finishes(tmp_path, jobs):
    out = tmp_path / "figs"
    full = export(out, "--layer", "5", "--jobs", jobs, preexec=_disk_full_after(12_000))
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    assert "error:" in full.stderr and "File too large" in full.stderr
    before = assert_only_complete_images(out)
    assert len(before) < 36  # the limit stopped it part-way

    rerun = export(out, "--layer", "5", "--jobs", jobs)
    assert rerun.returncode == 0, rerun.stderr
    after = assert_only_complete_images(out)
    assert len(after) == 36 and set(before) <= set(after)


def test_unwritable_output_folder(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:
        # root writes through permission bits; an immutable folder stops root too
        if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode:
            pytest.skip("running as root on a filesystem without chattr +i")
    try:
        result = export(out, "--layer", "5")
        assert result.returncode == 1, result.stderr
        assert f"--out {out} is not writable" in result.stderr
        assert "Traceback" not in result.stderr
        assert list(out.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(out)], check=True)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_task_failing_part_way_still_lists_the_images_it_wrote(tmp_path, jobs):
    """A folder squats on the 6th head's image name: the rename onto it fails (a real EISDIR)
    after heads 0-4 of that task are complete; the manifest must list exactly the images on disk."""
    from attnviz.batch import sentence_stem
    from attnviz.inputs import Sentence
    from attnviz.models import Inputs

    text = SENTENCES.splitlines()[0]
    stem = sentence_stem(Sentence(0, 1, text), Inputs(text))
    out = tmp_path / "figs"
    out.mkdir()
    (out / f"{stem}-encoder-L05-H05.png").mkdir()
    result = export(out, "--layer", "5", "--jobs", jobs)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "error:" in result.stderr
    pngs = sorted(p.name for p in out.glob("*.png") if p.is_file())
    assert {f"{stem}-encoder-L05-H{h:02d}.png" for h in range(5)} <= set(pngs)
    listed = [json.loads(line)["file"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(listed) == pngs
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_only_stale_temporary_files_are_removed(tmp_path):
    """A second export writing into the same folder keeps its temporary files; a dead or old run's go."""
    from attnviz.batch import TMP_PREFIX, prepare_folder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = tmp_path / f"{TMP_PREFIX}a.png-{os.getpid()}"
    dead = tmp_path / f"{TMP_PREFIX}b.png-{gone.pid}"
    old = tmp_path / f"{TMP_PREFIX}c.png-{os.getpid()}"
    for path in (live, dead, old):
        path.write_bytes(b"half an image")
    os.utime(old, (0, 0))
    prepare_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
