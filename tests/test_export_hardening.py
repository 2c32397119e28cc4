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
from harness import Run, run
from PIL import Image

from attnviz.export.files import MANIFEST, TMP_PREFIX, prepare_folder, stem
from attnviz.export.plan import content_key

SENTENCES = "I have a dream\nthe quick brown fox jumps over the lazy dog\nso do I\n"
EXPORT = ["export", "--input", "-", "--device", "cpu", "--layer", "5"]


def stem_of(index: int, text: str) -> str:
    """The name stem export gives this sentence's maps (EXPORT's view: layer 5 as it is)."""
    from attnviz import extract, views

    shown = views.select(extract(text, device="cpu"), layer=5)
    return stem(index, text, view=content_key(shown))


def export(out: Path, *args: str) -> Run:
    """Export the three sentences' layer 5 (36 images) in this process."""
    return run(*EXPORT, "--out", str(out), *args, stdin=SENTENCES)


def export_on_a_full_disk(out: Path, limit_bytes: int, *args: str) -> Run:
    """The same export in a process of its own that cannot grow a file past `limit_bytes`.

    The limit would bind pytest's own files too, so it gets a process of its own (and not
    harness.run_subprocess, whose subprocess.run resets SIGXFSZ, which must stay ignored).
    """

    def limit() -> None:
        # a write past the limit fails with EFBIG instead of killing the process: a full disk, simulated
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    cmd = [sys.executable, "-m", "attnviz", *EXPORT, "--out", str(out), *args]
    proc = subprocess.run(cmd, input=SENTENCES.encode(), capture_output=True, timeout=300, preexec_fn=limit)
    return Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def assert_only_complete_images(out: Path) -> list[str]:
    """No temporary files; every PNG decodes; the manifest lists exactly the PNGs on disk."""
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    pngs = [n for n in names if n.endswith(".png")]
    for name in pngs:
        with Image.open(out / name) as image:
            image.load()  # raises on a truncated file
    listed = []
    if (out / MANIFEST).exists():
        listed = [json.loads(line)["file"] for line in (out / MANIFEST).read_text().splitlines()]
    assert sorted(listed) == pngs
    return pngs


@pytest.fixture(scope="module")
def image_sizes(tmp_path_factory) -> dict[str, int]:
    """Bytes of each image of the export, written where there is room."""
    out = tmp_path_factory.mktemp("roomy")
    assert export(out, "--jobs", "1").code == 0
    return {p.name: p.stat().st_size for p in out.glob("*.png")}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_disk_full_leaves_no_partial_file_and_a_rerun_finishes(tmp_path, jobs, image_sizes):
    first, second = (stem_of(i, text) for i, text in enumerate(SENTENCES.splitlines()[:2]))
    fits = max(size for name, size in image_sizes.items() if name.startswith(first))
    # the second sentence has more tokens, so bigger images: a limit the first sentence's images fit under
    assert fits < min(size for name, size in image_sizes.items() if name.startswith(second))
    out = tmp_path / "figs"
    full = export_on_a_full_disk(out, fits, "--jobs", jobs)
    assert full.code == 1, full.stderr
    assert "Traceback" not in full.stderr
    assert "error:" in full.stderr and "File too large" in full.stderr
    before = assert_only_complete_images(out)
    assert {name for name in image_sizes if name.startswith(first)} <= set(before)  # the disk filled part-way
    assert not [name for name in before if name.startswith(second)]

    rerun = export(out, "--jobs", jobs)
    assert rerun.code == 0, rerun.stderr
    assert f"{36 - len(before)} images written to {out}, {len(before)} already complete" in rerun.stderr
    after = assert_only_complete_images(out)
    assert set(after) == set(image_sizes) and len(after) == 36


def test_unwritable_output_folder(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:
        # root writes through permission bits; an immutable folder stops root too
        if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode:
            pytest.skip("running as root on a filesystem without chattr +i")
    try:
        result = export(out)
        assert result.code == 1, result.stderr
        assert result.stderr.splitlines() == [
            f"error: the output folder {out} is not writable",
            "hint: choose another folder or fix its permissions",
        ]
        assert result.stdout_bytes == b""
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(out)], check=True)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_task_failing_part_way_still_lists_the_images_it_wrote(tmp_path, jobs):
    """A folder squats on the 6th head's image name: the rename onto it fails (a real EISDIR)
    after heads 0-4 of that task are complete; the manifest must list exactly the images on disk."""
    first = stem_of(0, SENTENCES.splitlines()[0])
    out = tmp_path / "figs"
    out.mkdir()
    (out / f"{first}-encoder-L05-H05.png").mkdir()
    result = export(out, "--jobs", jobs)
    assert result.code == 1, result.stderr
    assert result.stderr.startswith("error: Is a directory") and len(result.stderr.splitlines()) == 1
    pngs = sorted(p.name for p in out.glob("*.png") if p.is_file())
    assert {f"{first}-encoder-L05-H{h:02d}.png" for h in range(5)} <= set(pngs)
    listed = [json.loads(line)["file"] for line in (out / MANIFEST).read_text().splitlines()]
    assert sorted(listed) == pngs
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_only_stale_temporary_files_are_removed(tmp_path):
    """A second export writing into the same folder keeps its temporary files; a dead or old run's go."""
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
