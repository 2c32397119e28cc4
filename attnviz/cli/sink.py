"""Data to standard output in bounded chunks: every byte arrives, or the command fails saying so.

Python's text and buffered writers can hand a large string to one write(2), and Linux
writes at most 2,147,479,552 bytes per call: a 2 GiB JSON was cut short with exit 0.
A ByteSink gathers small writes up to CHUNK bytes, gives write(2) at most CHUNK bytes
at a time, writes again from where a short count stopped, waits when a non-blocking
pipe is full, and turns any other failure into an OutputError that says how far it
got. A reader that went away (`| head`) is still a BrokenPipeError: the app makes that
a quiet exit 0.
"""

from __future__ import annotations

import codecs
import io
import os
import select
import sys
from collections.abc import Callable
from typing import IO, Any

from ..errors import OutputError

CHUNK = 1 << 20  # bytes per write(2): bounded copies, and far under any system's cap on one write

WriteSome = Callable[[memoryview], "int | None"]  # writes some of the bytes, returns how many (None: none yet)


class ByteSink:
    """A write-only binary file (write, flush, close) that writes through `write_some` in chunks.

    `chunk` bounds every call of `write_some`; writes smaller than it are gathered first.
    It has no tell() or seek(): zipfile writes into it as into a pipe.
    """

    def __init__(self, write_some: WriteSome, name: str = "standard output", chunk: int | None = None) -> None:
        self._write_some = write_some
        self.name = name
        self.chunk = max(1, chunk if chunk is not None else CHUNK)
        self._pending = bytearray()
        self.written = 0  # bytes that reached the file so far

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if len(self._pending) + n < self.chunk:
            self._pending += view
            return n
        self.flush()
        if n < self.chunk:
            self._pending += view
        else:
            self._put(view)
        return n

    def flush(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._put(memoryview(data))

    def close(self) -> None:
        self.flush()

    def _put(self, view: memoryview) -> None:
        """All of `view`, at most `chunk` bytes a call, again and again until none is left."""
        while view:
            try:
                n = self._write_some(view[: self.chunk])
            except BrokenPipeError:
                raise  # the reader went away: the app stops quietly
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                raise OutputError(f"cannot write to {self.name} after {self.written:,} bytes: {reason}") from None
            if n is None:  # a non-blocking file that takes nothing now: wait until it can
                continue
            if n <= 0:
                raise OutputError(f"cannot write to {self.name} after {self.written:,} bytes: it took none")
            view = view[n:]
            self.written += n


def fd_writer(fd: int) -> WriteSome:
    """os.write on `fd`; a full non-blocking pipe is waited for (select), not an error."""

    def write_some(view: memoryview) -> int | None:
        try:
            return os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            return None

    return write_some


def file_writer(file: IO[bytes]) -> WriteSome:
    """file.write, for a binary file without a descriptor (a test's in-memory stdout)."""

    def write_some(view: memoryview) -> int | None:
        n = file.write(view)
        file.flush()
        return n

    return write_some


def text_writer(file: Any) -> WriteSome:
    """For a text-only stdout (no .buffer): UTF-8 decoded as it comes, a character split by a chunk kept whole."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    def write_some(view: memoryview) -> int:
        file.write(decoder.decode(bytes(view)))
        file.flush()
        return len(view)

    return write_some


def stdout_sink(chunk: int | None = None) -> ByteSink:
    """A ByteSink on standard output, after whatever was printed there before (it is flushed first).

    A real stdout is written by its descriptor; any other (a test's, or the app's stand-in
    for a closed one, which raises BrokenPipeError) through its binary buffer, or as text
    when it has none.
    """
    out = sys.stdout
    if out is None:
        raise BrokenPipeError("standard output is closed")
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        return ByteSink(text_writer(out), chunk=chunk)
    buffer.flush()
    if isinstance(out, io.TextIOWrapper):
        try:
            return ByteSink(fd_writer(out.fileno()), chunk=chunk)
        except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor: an in-memory stdout
            pass
    return ByteSink(file_writer(buffer), chunk=chunk)


def write_text(data: str) -> None:
    """Text to standard output in stdout's own encoding, every byte of it (see ByteSink)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    errors = getattr(sys.stdout, "errors", None) or "strict"
    sink = stdout_sink()
    sink.write(data.encode(encoding, errors))
    sink.flush()
