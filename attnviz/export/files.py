"""Files of an export: safe names, atomic writes, the manifest, the output folder.

Image names come from the sentence index, a sanitised slug and a hash (never a path
from user text). Every file is written under a temporary name and renamed; the
manifest gets a line only after its image is complete, so after an interrupt it
lists exactly the complete images and a re-run skips them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError

MANIFEST = "manifest.jsonl"
TMP_PREFIX = ".attnviz-tmp-"  # our temporary files; a killed run's leftovers are removed on the next
STALE_SECONDS = 600  # one image's temporary file lives for moments; ten minutes old means abandoned


def slug(text: str, length: int = 24) -> str:
    """A file-name-safe slug: ASCII letters and digits joined by '-', never empty, never a path.

    Any script is transliterated (anyascii): '我有一个梦想' → 'wo-you-yi-ge-meng-xiang',
    'Я мечтаю' → 'ya-mechtayu'. CJK syllables come capitalised and are split there.
    """
    from anyascii import anyascii

    ascii_text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", anyascii(text))
    folded = unicodedata.normalize("NFKD", ascii_text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    return words[:length].strip("-") or "s"


def stem(index: int, text: str, pair: str | None = None, target: str | None = None, view: str = "") -> str:
    """'0007-i-have-a-dream-1a2b3c': index, slug, and a hash so edited lines never reuse old images.

    `view` names the model and what views did to the maps (plan.content_key): the same
    layer and head of another model or after another view are other numbers, so they
    get another name.
    """
    parts = [text, pair or "", target or ""] + ([view] if view else [])
    digest = hashlib.sha1("\x1f".join(parts).encode()).hexdigest()
    return f"{index:04d}-{slug(text)}-{digest[:6]}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an image and its manifest line land together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class Manifest:
    """manifest.jsonl: one complete line per complete image, appended as images land."""

    def __init__(self, folder: Path, echo: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        self.echo = echo
        self.records: dict[str, dict[str, Any]] = {}
        self.replaced = False
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and (folder / str(record.get("file", ""))).is_file():
                        self.records[str(record["file"])] = record
        self.rewrite()  # drop lines of images that are gone, and any torn last line

    def rewrite(self) -> None:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values())
        write_atomic(self.path, lines.encode("utf-8"))
        self.replaced = False

    def add(self, record: dict[str, Any]) -> None:
        """List a complete image: its line goes to the file first, then to `echo` (--manifest -)."""
        record = {**record, "path": str(self.folder / record["file"])}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        old = self.records.get(record["file"])
        self.records[record["file"]] = record
        if old is not None:
            # the image was listed already: the file is complete either way; fix the line at the end
            self.replaced = self.replaced or old != record
        else:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)  # one write of one whole line
        if self.echo is not None:
            try:
                self.echo(line)
            except BrokenPipeError:
                self.echo = None  # the reader is gone (`| head`): the file still lists every image
                raise

    def complete_set(self, key: str) -> list[dict[str, Any]] | None:
        """The records of plan set `key` when every image of it is listed (and so on disk), else None."""
        records = [r for r in self.records.values() if r.get("plan") == key]
        if records and all(r.get("plan_images") == len(records) for r in records):
            return records
        return None

    def close(self) -> None:
        if self.replaced:
            self.rewrite()


def prepare_folder(folder: Path) -> None:
    """Create the output folder; OutputError if it is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the output folder {folder} exists and is not a folder", hint="give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"the output folder {folder} is not writable", hint="choose another folder or fix its permissions"
        )
    sweep(folder)


def sweep(folder: Path) -> None:
    """Remove temporary files whose writer is gone: a run killed outright, or workers just stopped."""
    for tmp in folder.glob(f"{TMP_PREFIX}*"):
        if is_stale(tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()


def is_stale(tmp: Path) -> bool:
    """A temporary file (named …-PID by write_atomic) whose writer is gone, or that is old.

    Another export writing into the same folder right now keeps its files: its process is
    alive and they are fresh. The age rule covers a recycled pid.
    """
    with contextlib.suppress(OSError):
        if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
            return True
    pid = tmp.name.rsplit("-", 1)[-1]
    if not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, but another user's process (EPERM)
    return False
