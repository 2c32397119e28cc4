"""Export when the disk fills up or the folder cannot be written: one error line, no broken files.
And never outside the folder: planted links, manifest lines pointing out, two exports at once;
JSON that line readers cannot break."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Run, run
from PIL import Image

from attnviz.export import files
from attnviz.export.files import MANIFEST, TMP_PREFIX, Manifest, lock_folder, prepare_folder, stem
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


# ---------------------------------------------------------------- never outside the folder

LAYER5 = [f"-encoder-L05-H{h:02d}.png" for h in range(12)]


def names_of(index: int) -> list[str]:
    """The 12 image names export gives sentence `index` of SENTENCES."""
    first = stem_of(index, SENTENCES.splitlines()[index])
    return [first + suffix for suffix in LAYER5]


def test_a_link_planted_at_the_temporary_name_is_never_written_through(tmp_path, monkeypatch):
    """Someone who can write into a shared folder plants a link under the next temporary name, and
    one at the final name: the file is created under another name, the final link is replaced."""
    folder, outside = tmp_path / "shared", tmp_path / "victim.txt"
    folder.mkdir()
    outside.write_text("precious")
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(files, "_token", lambda: next(tokens))
    planted = folder / f"{TMP_PREFIX}x.png-aaaa-{os.getpid()}"
    planted.symlink_to(outside)
    (folder / f"{TMP_PREFIX}x.png-{os.getpid()}").symlink_to(outside)  # the name before names had a random part
    (folder / "x.png").symlink_to(outside)
    files.write_atomic(folder / "x.png", b"image")
    assert outside.read_text() == "precious"
    assert not (folder / "x.png").is_symlink() and (folder / "x.png").read_bytes() == b"image"
    assert planted.is_symlink() and not (folder / f"{TMP_PREFIX}x.png-bbbb-{os.getpid()}").exists()
    # a dangling link (its target not there yet) is refused as well: O_EXCL|O_NOFOLLOW, not a check first
    tokens = iter(["cccc", "dddd"])
    (folder / f"{TMP_PREFIX}y.png-cccc-{os.getpid()}").symlink_to(tmp_path / "created-through-a-link")
    files.write_atomic(folder / "y.png", b"image")
    assert not (tmp_path / "created-through-a-link").exists()


def test_links_planted_at_image_names_are_replaced_not_written_through_or_counted(tmp_path):
    """Links at images' names, pointing outside: to a file to spoil, and to an image that would
    pass for complete. Export draws real images in their place and lists exactly those."""
    out, victim, fake = tmp_path / "figs", tmp_path / "victim.txt", tmp_path / "fake.png"
    out.mkdir()
    victim.write_text("precious")
    fake.write_bytes(_png())
    names = names_of(0)
    (out / names[0]).symlink_to(victim)
    (out / names[1]).symlink_to(fake)
    result = export(out, "--jobs", "1")
    assert result.code == 0, result.stderr
    assert "36 images written" in result.stderr  # neither link passed for a complete image
    assert victim.read_text() == "precious" and fake.read_bytes() == _png()
    assert not (out / names[0]).is_symlink() and not (out / names[1]).is_symlink()
    assert len(assert_only_complete_images(out)) == 36


def _png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


def test_manifest_lines_outside_the_folder_are_dropped_on_load(tmp_path):
    """Lines naming ../x, /etc/passwd, an absolute path, a file through a linked folder, a link, or
    no plain name at all: none is kept, none counts as complete, the rest stays."""
    out, elsewhere = tmp_path / "figs", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "x.png").write_bytes(_png())
    (tmp_path / "up.png").write_bytes(_png())
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    (out / "linked.png").symlink_to(elsewhere / "x.png")
    (out / "kept.png").write_bytes(_png())
    bad = ["../up.png", "/etc/passwd", str(elsewhere / "x.png"), "sub/x.png", "linked.png", ".", "", "..", 42, None]
    ours = {"index": 0, "view": "head"}  # the fields every line attnviz writes has
    lines = [json.dumps({**ours, "file": f, "path": "/etc/passwd"}) for f in bad]
    lines.append(json.dumps({**ours, "file": "kept.png", "path": "/etc/passwd"}))
    (out / MANIFEST).write_text("\n".join(lines) + "\n")
    manifest = Manifest(out)
    manifest.close()
    assert list(manifest.records) == ["kept.png"]
    assert manifest.records["kept.png"]["path"] == str(out / "kept.png")  # a line's own path is not trusted
    assert [json.loads(line)["file"] for line in (out / MANIFEST).read_text().splitlines()] == ["kept.png"]


def test_a_manifest_another_program_wrote_is_refused_not_rewritten(tmp_path):
    """A data set's own manifest.jsonl in --out: one error line, and the file is left as it was."""
    out = tmp_path / "dataset"
    out.mkdir()
    theirs = '{"audio": "a.wav", "label": 1}\n'
    (out / MANIFEST).write_text(theirs)
    done = run("export", "hi", "--out", str(out), "--layer", "0", "--head", "0")
    assert done.code == 1 and done.stderr.startswith(f"error: {out / MANIFEST} line 1 is not a line attnviz"), (
        done.stderr
    )
    assert (out / MANIFEST).read_text() == theirs and not list(out.glob("*.png"))
    # a line torn by a run killed mid-write is no other program's: it is dropped
    fresh = tmp_path / "fresh"
    assert run("export", "hi", "--out", str(fresh), "--layer", "0", "--head", "0").code == 0
    with open(fresh / MANIFEST, "a") as f:
        f.write('{"index": 0, "view": "he')
    again = run("export", "hi", "--out", str(fresh), "--layer", "0", "--head", "0:2")
    assert again.code == 0, again.stderr
    assert [json.loads(line)["head"] for line in (fresh / MANIFEST).read_text().splitlines()] == [0, 1]
    # a folder in its place
    folder = tmp_path / "odd"
    (folder / MANIFEST).mkdir(parents=True)
    odd = run("export", "hi", "--out", str(folder), "--layer", "0", "--head", "0")
    assert odd.code == 1 and odd.stderr.startswith(f"error: {folder / MANIFEST} is a folder, not a manifest")


def test_a_manifest_replaced_by_a_link_is_neither_read_nor_written_through(tmp_path):
    out, victim = tmp_path / "figs", tmp_path / "victim.jsonl"
    out.mkdir()
    (out / "kept.png").write_bytes(_png())
    victim.write_text(json.dumps({"file": "kept.png"}) + "\n")  # lines that would pass if the link were read
    (out / MANIFEST).symlink_to(victim)
    assert export(out, "--jobs", "1").code == 0
    assert victim.read_text() == json.dumps({"file": "kept.png"}) + "\n"
    assert not (out / MANIFEST).is_symlink()
    assert "kept.png" not in [json.loads(line)["file"] for line in (out / MANIFEST).read_text().splitlines()]


def test_an_export_into_a_folder_another_export_holds_is_refused_in_one_line(tmp_path):
    out = tmp_path / "figs"
    out.mkdir()
    lock = lock_folder(out)  # what a running export holds
    assert lock is not None
    try:
        refused = export(out, "--jobs", "1")
    finally:
        os.close(lock)
    assert refused.code == 1
    assert refused.stderr.splitlines() == [
        f"error: another export is writing into {out} right now",
        "hint: wait for it to finish, or choose another output folder",
    ]
    assert sorted(p.name for p in out.iterdir()) == []  # nothing touched
    assert export(out, "--jobs", "1").code == 0  # the lock went with its holder


def test_two_exports_into_one_folder_never_both_write(tmp_path):
    """A long export runs; a second one into the same folder is refused at once; once the first has
    stopped (Ctrl-C), another run merges into the folder: every image listed once."""
    out = tmp_path / "figs"
    source = tmp_path / "in.txt"
    source.write_text(SENTENCES * 4, encoding="utf-8")
    cmd = [sys.executable, "-m", "attnviz", "export", "--input", str(source), "--out", str(out), "--device", "cpu"]
    first = subprocess.Popen(
        [*cmd, "--jobs", "2"],  # every layer: 864 images, far longer than the second needs to start
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.png")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        second = subprocess.run([*cmd, "--layer", "5"], capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first export ended before the second could meet it"
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert second.returncode == 1
    assert second.stderr.splitlines()[0] == f"error: another export is writing into {out} right now"
    assert first.returncode == 130, err.decode()
    before = assert_only_complete_images(out)
    merged = subprocess.run([*cmd, "--layer", "5"], capture_output=True, text=True, timeout=300)
    assert merged.returncode == 0, merged.stderr
    after = assert_only_complete_images(out)  # listed once each: the check fails on a duplicate line
    listed = [json.loads(line)["file"] for line in (out / MANIFEST).read_text().splitlines()]
    assert len(listed) == len(set(listed))
    assert set(before) <= set(after)


# ---------------------------------------------------------------- JSON a line reader cannot break


def test_the_manifest_escapes_line_separators_and_reads_old_raw_ones(tmp_path):
    """U+0085, U+2028 and U+2029 are valid raw in JSON, but Python's splitlines and older JavaScript
    break lines on them: the manifest escapes them, and reading one written raw splits on \\n only."""
    out = tmp_path / "figs"
    text = "I have\u2028a dream\u0085so do\u2029I"
    done = run("export", text, "--out", str(out), "--device", "cpu", "--jobs", "1", "--layer", "5")
    assert done.code == 0, done.stderr
    raw = (out / MANIFEST).read_bytes().decode("utf-8")
    assert not {"\x85", "\u2028", "\u2029"} & set(raw)
    lines = raw.splitlines()  # the strictest line reader
    assert len(lines) == 12 and all(json.loads(line)["text"] == text for line in lines)
    # a manifest written raw (before the escaping): its lines still load
    (out / MANIFEST).write_text("".join(json.dumps(json.loads(line), ensure_ascii=False) + "\n" for line in lines))
    assert "\u2028" in (out / MANIFEST).read_text()
    again = run("export", text, "--out", str(out), "--device", "cpu", "--jobs", "1", "--layer", "5")
    assert again.code == 0 and "0 images written" in again.stderr and "12 already complete" in again.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_sentence_too_big_to_draw_is_skipped_with_its_line_and_the_rest_exported(tmp_path, jobs):
    """One line of 302 tokens cannot be drawn within --max-pixels 250: that line fails, named; the
    others are drawn, whether in this process or in the drawing processes."""
    source = tmp_path / "in.txt"
    source.write_text("hi there\n" + " ".join(["word"] * 300) + "\nso do I\n")
    out = tmp_path / "out"
    cmd = ("export", "--input", str(source), "--out", str(out), "--layer", "0", "--head", "0", "--max-pixels", "250")
    done = run(*cmd, "--jobs", jobs)
    assert done.code == 1, done.stderr
    assert "error: line 2: 302x302 tokens do not fit 250 pixels a side" in done.stderr
    assert "1 of 3 sentences failed" in done.stderr
    assert sorted(json.loads(line)["line"] for line in (out / MANIFEST).read_text().splitlines()) == [1, 3]


def test_a_very_long_word_is_labelled_short_and_drawn_small(tmp_path):
    """A 5,000-letter word is one token: its label ends in '…' instead of stretching the image."""
    out = tmp_path / "out"
    done = run("export", "a" * 5000, "--out", str(out), "--layer", "0", "--head", "0", "--jobs", "1")
    assert done.code == 0, done.stderr
    (png,) = out.glob("*.png")
    assert max(Image.open(png).size) < 600


def test_an_output_folder_that_is_a_dangling_link_says_so(tmp_path):
    (tmp_path / "figs").symlink_to(tmp_path / "gone")
    done = run("export", "hi", "--out", str(tmp_path / "figs"), "--layer", "0", "--head", "0")
    assert done.code == 1 and done.stderr.startswith(f"error: the output folder {tmp_path / 'figs'} is a link to")
    assert not (tmp_path / "gone").exists()
