"""Files of an export: safe names, atomic writes, the manifest, the output folder.

Image names come from the sentence index, a sanitised slug and a hash (never a path
from user text). Every file is written under a temporary name and renamed; the
manifest gets a line only after its image is complete, so after an interrupt it
lists exactly the complete images and a re-run skips them.

Nothing is ever written outside the folder, even when others can write into it: files
are created exclusively and never through a link, renames replace links, manifest lines
naming anything but a plain file in the folder are dropped, and one export at a time
holds the folder (lock_folder).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import stopping
from ..errors import OutputError
from ..saved import dumps

MANIFEST = "manifest.jsonl"
TMP_PREFIX = ".attnviz-tmp-"  # our temporary files; a killed run's leftovers are removed on the next
STALE_SECONDS = 600  # one image's temporary file lives for moments; ten minutes old means abandoned
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a link at the name: refused (ELOOP), never followed
NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the name cannot hang the open


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
    """Write to a temporary name beside `path`, then rename: readers never see half a file.

    The temporary file is created exclusively and never through a link (another user may have
    planted one in a shared folder); the rename replaces whatever is at `path`, a link included,
    instead of writing through it.
    """
    fd, tmp = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _token() -> str:
    return secrets.token_hex(4)


def _create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file `.attnviz-tmp-NAME-RANDOM-PID` in `folder`, open for writing; the pid ends the name (is_stale)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW  # O_EXCL: never an existing file or link
    for _ in range(100):
        tmp = folder / f"{TMP_PREFIX}{name}-{_token()}-{os.getpid()}"
        try:
            return os.open(tmp, flags, 0o666), tmp  # 0o666 less the umask, as open() would give
        except FileExistsError:
            continue  # a file or a link has that name: never write through it, take another
    raise OutputError(f"cannot create a temporary file in {folder}: every name tried exists")


def deferred_interrupt() -> contextlib.AbstractContextManager[None]:
    """Hold stop signals (Ctrl-C, SIGTERM, SIGHUP) until the block ends, so an image and its
    manifest line land together."""
    return stopping.held()


def is_image(folder: Path, name: object) -> bool:
    """Whether `name` is a complete file of ours in `folder`: one plain name (no path, not hidden,
    not the manifest) of a regular file, not a link (it could point anywhere)."""
    if not isinstance(name, str) or name != os.path.basename(name) or name.startswith(".") or name == MANIFEST:
        return False
    try:
        return stat.S_ISREG(os.lstat(folder / name).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return False


def lock_folder(folder: Path) -> int | None:
    """Lock `folder` for one export at a time; the descriptor returned holds the lock until closed.

    flock on the folder itself: no lock file to plant a link at or to leave behind, and the
    kernel drops the lock when the process dies, however it dies (workers do not inherit it).
    None where the filesystem has no locks (some network mounts): the export goes on unlocked.
    """
    try:
        import fcntl
    except ImportError:  # not a Unix
        return None
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))  # not inherited (PEP 446): workers hold none
    except OSError:  # a folder we may write but not read
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(
            f"another export is writing into {folder} right now",
            hint="wait for it to finish, or choose another output folder",
        ) from None
    except OSError:
        os.close(fd)
        return None
    return fd


def _read_manifest(path: Path) -> str:
    """The manifest's text; empty when there is none, or when a link or something other than
    a regular file has its name (the rewrite then replaces it)."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return ""
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise OutputError(f"{path} is a folder, not a manifest", hint="choose another output folder")
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(mode):
            return ""
        return f.read().decode("utf-8", errors="replace")


def _record(line: str) -> dict[str, Any] | None:
    """A manifest line as attnviz export writes it (a JSON object naming its file, index and view), else None."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if isinstance(record, dict) and {"file", "index", "view"} <= record.keys():
        return record
    return None


class Manifest:
    """manifest.jsonl: one complete line per complete image, appended as images land.

    Lines read back are kept only for images in the folder itself (see is_image): a line naming
    `../x`, `/etc/passwd` or a link is dropped. `lock` (lock_folder) is released by close().
    """

    def __init__(self, folder: Path, echo: Callable[[str], None] | None = None, lock: int | None = None) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        self.echo = echo
        self.lock = lock
        self.records: dict[str, dict[str, Any]] = {}
        self.replaced = False
        try:
            # "\n" only: text may hold U+2028; what follows the last "\n" is a line a killed run tore: dropped
            *lines, _ = _read_manifest(self.path).split("\n")
            for number, line in enumerate(lines, 1):
                record = _record(line)
                if record is None:
                    raise OutputError(
                        f"{self.path} line {number} is not a line attnviz export wrote: not rewriting another "
                        "program's file",
                        hint="choose another output folder, or move that manifest.jsonl away",
                    )
                if is_image(folder, record.get("file")):
                    self.records[record["file"]] = {**record, "path": str(folder / record["file"])}
            self.rewrite()  # drop lines of images that are gone, and any torn last line
        except BaseException:
            self.unlock()
            raise

    def rewrite(self) -> None:
        lines = "".join(dumps(r) + "\n" for r in self.records.values())
        write_atomic(self.path, lines.encode("utf-8"))
        self.replaced = False

    def add(self, record: dict[str, Any]) -> None:
        """List a complete image: its line goes to the file first, then to `echo` (--manifest -)."""
        record = {**record, "path": str(self.folder / record["file"])}
        line = dumps(record) + "\n"
        old = self.records.get(record["file"])
        self.records[record["file"]] = record
        if old is not None:
            # the image was listed already: the file is complete either way; fix the line at the end
            self.replaced = self.replaced or old != record
        else:
            self._append(line.encode("utf-8"))
        if self.echo is not None:
            try:
                self.echo(line)
            except Exception:
                # the reader is gone (`| head`) or stdout cannot be written (a full disk): the file still lists
                # every image, and the images still in flight are listed there alone while the run stops
                self.echo = None
                raise

    def _append(self, data: bytes) -> None:
        """One line at the end of the manifest, never through a link put in its place."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OutputError(f"{self.path} was replaced by a link: not writing through it") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputError(f"{self.path} was replaced by something other than a file")
            view = memoryview(data)
            while view:  # one write of one whole line, unless the disk fills part-way
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def complete_set(self, key: str) -> list[dict[str, Any]] | None:
        """The records of plan set `key` when every image of it is listed (and so on disk), else None."""
        records = [r for r in self.records.values() if r.get("plan") == key]
        if records and all(r.get("plan_images") == len(records) for r in records):
            return records
        return None

    def close(self) -> None:
        try:
            if self.replaced:
                self.rewrite()
        finally:
            self.unlock()

    def unlock(self) -> None:
        if self.lock is not None:
            os.close(self.lock)  # closing the descriptor drops the flock
            self.lock = None


def prepare_folder(folder: Path) -> None:
    """Create the output folder; OutputError if it is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the output folder {folder} exists and is not a folder", hint="give a folder path")
    if folder.is_symlink() and not folder.exists():
        target = os.readlink(folder)
        raise OutputError(
            f"the output folder {folder} is a link to {target}, which does not exist", hint="give a folder path"
        )
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
        if is_stale(tmp):  # a link of that name is removed itself, never what it points to
            with contextlib.suppress(OSError):
                tmp.unlink()


def is_stale(tmp: Path) -> bool:
    """A temporary file (named …-PID by write_atomic) whose writer is gone, or that is old.

    Another export writing into the same folder right now keeps its files: its process is
    alive and they are fresh. The age rule covers a recycled pid.
    """
    with contextlib.suppress(OSError):
        if time.time() - tmp.lstat().st_mtime > STALE_SECONDS:
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
