"""Sentence files: one sentence per line, UTF-8, with line numbers kept for messages.

Blank lines and lines starting with `#` are skipped. A tab splits a line into the
sentence and a second text: the pair (encoders) or the decoder target
(encoder–decoders). A line that cannot be used (bad bytes, too many tabs, too long)
is kept with its error, so a batch can report it and go on with the rest.

Files and standard input are read as a stream, a chunk at a time, and split on "\\n"
only (never on U+0085 or U+2028, which are text). A line is never held past its byte
limit: an over-long line is a failed line (or, when kept, its start), found before
anything is tokenised, so memory stays bounded however long the input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO

from .backends.types import Inputs
from .errors import Fix, InputError
from .limits import MAX_LINE_BYTES, bytes_text
from .result import AttentionResult, Tokens

READ_CHUNK = 1 << 16  # bytes per read: the stream is never held whole
# bytes of text per token that a cut before tokenising keeps: tokens are far shorter in any real text
# (MiniLM: ~4.5 bytes a token in English, ~3 in Chinese), so the kept start still overflows the window
CUT_BYTES_PER_TOKEN = 64


@dataclass(frozen=True)
class Sentence:
    """One usable (or failed) line of an input file."""

    index: int  # 0-based among the sentences: image names and the manifest use it
    line: int | None  # 1-based line number in the file (None: given as an argument)
    text: str
    second: str | None = None  # the text after a tab: pair or target
    error: str | None = None  # why this line cannot be used
    fix: Fix | None = None  # a remedy for the error the command line can word as flags
    note: str | None = None  # about a usable line, e.g. that only its start was kept

    @property
    def where(self) -> str:
        """'line 7' for a file's sentence, 'sentence 2' (1-based) for one given as an argument."""
        return f"line {self.line}" if self.line is not None else f"sentence {self.index + 1}"

    def tag(self, result: AttentionResult) -> AttentionResult:
        """The result, marked with where its input came from (saved files keep it)."""
        return replace(result, index=self.index, line=self.line)


def size_text(n: int) -> str:
    """An exact number of bytes for a message: '1 MiB', '64 KiB', '1,000 bytes' (limits.bytes_text rounds)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} bytes"


def from_arguments(texts: list[str], max_bytes: int | None = None, keep_start: bool = False) -> list[Sentence]:
    """Sentences given on the command line, in order; one longer than `max_bytes` fails (or, with
    `keep_start`, is cut to that many bytes)."""
    out = []
    for i, t in enumerate(texts):
        sentence = Sentence(i, None, t)
        if max_bytes is not None and len(t) > max_bytes // 4 and len(data := t.encode("utf-8", "replace")) > max_bytes:
            where = f"sentence {i + 1}"
            if keep_start:
                sentence = Sentence(i, None, _start(data, max_bytes), note=_cut_note(where, max_bytes))
            else:
                sentence = Sentence(i, None, "", error=_long_error(where, max_bytes), fix=Fix.LONG_LINE)
        out.append(sentence)
    return out


# byte-order marks of the encodings that are not UTF-8: longest first (UTF-32 LE starts like UTF-16 LE)
WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def check_encoding(data: bytes, name: str) -> None:
    """Refuse UTF-16/32 text by name (read as UTF-8 it would be junk, line by line), and NUL bytes."""
    head = data[:4]
    marked = [encoding for bom, encoding in WIDE_BOMS if head.startswith(bom)]
    if marked:
        encoding = marked[0]
    elif head == b"\x00" * 4:  # /dev/zero, an image, a database: no text starts so
        raise InputError(f"{name} starts with NUL bytes: binary data, not UTF-8 text", hint="give a text file")
    elif len(head) == 4 and head.count(0) >= 2:  # no mark: UTF-16/32 text of Latin script is half NUL bytes
        encoding = "UTF-32" if head.count(0) == 3 else "UTF-16"
    else:
        return
    raise InputError(
        f"{name} is {encoding} text, not UTF-8", hint=f"convert it first: iconv -f {encoding} -t UTF-8 FILE"
    )


def raw_lines(read: Callable[[int], bytes], limit: int | None) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes, too long) for each line of a byte stream, split on b"\\n" only.

    A line longer than `limit` bytes is given as its first `limit` bytes with `too long`
    set, as soon as the limit is passed (a consumer that stops there reads no further);
    the rest of it is read and dropped if iteration goes on. At most `limit` + one
    chunk of the stream is held at any time.
    """
    number, line, skipping = 1, bytearray(), False
    while chunk := read(READ_CHUNK):
        start, n = 0, len(chunk)
        while start <= n:
            nl = chunk.find(b"\n", start)
            end = n if nl < 0 else nl
            if not skipping:
                room = end - start if limit is None else min(end - start, limit + 1 - len(line))
                line += chunk[start : start + room]
                if limit is not None and len(line) > limit:
                    yield number, bytes(line[:limit]), True
                    line.clear()
                    skipping = True
            if nl < 0:
                break
            if not skipping:
                yield number, bytes(line), False
            line.clear()
            skipping = False
            number, start = number + 1, nl + 1
    if line and not skipping:  # the last line, without a "\n"
        yield number, bytes(line), False


def _start(data: bytes, limit: int) -> str:
    """The text of the first `limit` bytes, without a character cut in two at the end."""
    head = data[:limit]
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return head[: exc.start].decode("utf-8")
        raise


def _long_error(where: str, limit: int) -> str:
    return f"{where} is longer than {size_text(limit)}, the limit for one line"


def _cut_note(where: str, limit: int) -> str:
    return f"{where} is longer than {size_text(limit)}: only its start ({size_text(limit)}) is read"


def _sentence(
    index: int, number: int, raw: bytes, too_long: bool, name: str, limit: int, keep_start: bool
) -> Sentence | None:
    """A line's sentence (None for blank and comment lines); a line that cannot be used carries its error."""
    where = f"{name} line {number}"
    note = None
    if too_long:
        if not keep_start:
            return Sentence(index, number, "", error=_long_error(where, limit), fix=Fix.LONG_LINE)
        note = _cut_note(where, limit)
    try:
        line = (_start(raw, limit) if too_long else raw.decode("utf-8")).rstrip("\r")
    except UnicodeDecodeError as exc:
        text = raw[:200].decode("utf-8", "replace").strip()
        return Sentence(index, number, text, error=f"{where} is not valid UTF-8 (byte {exc.start})")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    text, tab, second = line.partition("\t")
    if tab and "\t" in second:
        columns = line.count("\t") + 1
        return Sentence(index, number, line, error=f"{where} has {columns} tab-separated columns; at most 2")
    if tab and not (text.strip() and second.strip()):
        return Sentence(index, number, line, error=f"{where} has an empty column")
    return Sentence(index, number, text.strip(), second.strip() if tab else None, note=note)


def stream_sentences(
    read: Callable[[int], bytes], name: str, max_line_bytes: int | None = MAX_LINE_BYTES, keep_start: bool = False
) -> Iterator[Sentence]:
    """Sentences of a byte stream as they are read; `name` is how messages refer to it.

    A line over `max_line_bytes` fails with its number, or with `keep_start` is cut to
    its start. InputError for UTF-16/32 or binary input (from its first bytes).
    """
    head = b""
    while len(head) < 4 and (more := read(4 - len(head))):
        head += more
    check_encoding(head, name)
    pending = [head]

    def reads(n: int) -> bytes:
        return pending.pop() if pending else read(n)

    bom = b"\xef\xbb\xbf"  # a UTF-8 byte order mark from Windows editors
    first = True
    index = 0
    limit = max_line_bytes if max_line_bytes is not None else sys.maxsize
    for number, raw, too_long in raw_lines(reads, max_line_bytes):
        if first:
            raw, first = raw.removeprefix(bom), False
        sentence = _sentence(index, number, raw, too_long, name, limit, keep_start)
        if sentence is not None:
            index += 1
            yield sentence


def parse_lines(data: bytes, name: str, max_line_bytes: int | None = None) -> list[Sentence]:
    """Sentences of a file's bytes held in memory; `name` is how messages refer to the file."""
    stream = memoryview(data)
    at = 0

    def read(n: int) -> bytes:
        nonlocal at
        piece = bytes(stream[at : at + n])
        at += len(piece)
        return piece

    return list(stream_sentences(read, name, max_line_bytes))


def stdin_stream() -> IO[bytes]:
    """Standard input as bytes; InputError when the process was started with it closed (<&-)."""
    if sys.stdin is None:
        raise InputError("standard input is closed: there is nothing to read", hint="give the input as an argument")
    return sys.stdin.buffer


def read_sentences(
    path: str, max_line_bytes: int | None = MAX_LINE_BYTES, keep_start: bool = False
) -> Iterator[Sentence]:
    """Sentences of a file, or of standard input for '-', read as they are needed.

    A missing or unreadable file is an InputError here, before the first sentence; one
    with no sentences at all is an InputError once it has been read.
    """
    name = "standard input" if path == "-" else path
    if path == "-":
        stream = stdin_stream()
        return _all_of(stream_sentences(_reader(stream), name, max_line_bytes, keep_start), name, None)
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed by _all_of when the sentences are read)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint="give a text file with one sentence per line") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    return _all_of(stream_sentences(_reader(file, path), name, max_line_bytes, keep_start), name, file)


def _reader(stream: IO[bytes], path: str | None = None) -> Callable[[int], bytes]:
    """read(n) of a binary stream that returns what is there (a pipe need not fill a chunk); OSError → InputError."""
    read = getattr(stream, "read1", stream.read)

    def reads(n: int) -> bytes:
        try:
            return read(n)
        except OSError as exc:  # EIO from a hung-up terminal, EISDIR where open() let a folder through
            raise InputError(f"cannot read {path or 'standard input'}: {exc.strerror or exc}") from None

    return reads


def _all_of(sentences: Iterator[Sentence], name: str, file: IO[bytes] | None) -> Iterator[Sentence]:
    """The sentences, then InputError if there were none; the file is closed at the end."""
    try:
        any_ = False
        for s in sentences:
            any_ = True
            yield s
        if not any_:
            raise InputError(f"{name} has no sentences", hint="one sentence per line; blank and # lines are skipped")
    finally:
        if file is not None:
            file.close()


def cut_text(text: str, max_tokens: int) -> str:
    """The start of a long text, cut before tokenising, that still holds more than `max_tokens`
    tokens in any real text (CUT_BYTES_PER_TOKEN bytes a token), ending at a space when there is
    one near the cut so that no word is split. Short texts come back as they are."""
    budget = max_tokens * CUT_BYTES_PER_TOKEN
    if len(text) <= budget // 4 or len(data := text.encode("utf-8", "surrogatepass")) <= budget:
        return text
    head = data[:budget].decode("utf-8", "ignore")  # at most one character at the end is lost
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return head[:space] if space > len(head) // 2 else head


def cut_inputs(batch: Sequence[Inputs], max_tokens: int) -> list[Inputs]:
    """Each input with its long texts cut (cut_text) for a truncating run; the same object when none is long."""
    out = []
    for x in batch:
        texts = {"text": x.text, **x.extras()}
        cut = {k: cut_text(v, max_tokens) for k, v in texts.items()}
        if cut == texts:
            out.append(x)
        else:  # named, not **cut: Inputs has fields other than texts (generate)
            out.append(
                replace(x, text=cut["text"], pair=cut.get("pair"), target=cut.get("target"), source=cut.get("source"))
            )
    return out


def _fills(result: AttentionResult, max_tokens: int) -> bool:
    """Whether truncation filled a sequence of the result to the model's window (a target: one short of it)."""
    return any(max(len(s.query.texts), len(s.key.texts)) >= max_tokens - 1 for s in result.stacks)


def run_truncating(
    run: Callable[[list[Inputs]], list[AttentionResult]], batch: Sequence[Inputs], max_tokens: int | None
) -> list[AttentionResult]:
    """`run` (a backend's truncating run) on the batch with long texts cut before tokenising.

    A cut start that fills the window gives what truncating the whole text gives, without
    tokenising megabytes to keep 512 tokens. One that does not (a text of long runs of
    spaces, or of words longer than any token) is run again whole, so the answer never
    depends on the cut.
    """
    if not max_tokens:
        return run(list(batch))
    cut = cut_inputs(batch, max_tokens)
    results = run(cut)
    for i, (x, short, result) in enumerate(zip(batch, cut, results)):
        if short is not x and not _fills(result, max_tokens):
            results[i] = run([x])[0]
    return results


def refuse_long(
    tokenize: Callable[[Inputs], dict[str, Tokens]], batch: Sequence[Inputs], max_tokens: int | None
) -> None:
    """InputError (with the truncate remedy) for an input whose cut start alone is longer than the
    model takes: the whole text surely is, and tokenising megabytes only to say so takes a minute."""
    if not max_tokens:
        return
    for x, short in zip(batch, cut_inputs(batch, max_tokens)):
        if short is x:
            continue
        try:
            n = max(len(t.texts) for t in tokenize(short).values())
        except InputError as exc:
            if exc.fix is not Fix.TRUNCATE:
                raise
            n = int(exc.details.get("tokens", max_tokens + 1))
        if n > max_tokens:
            size = bytes_text(len(short.text.encode("utf-8", "surrogatepass")))
            raise InputError(
                f"input is longer than {max_tokens:,} tokens (its first {size} alone are {n:,}); "
                f"the model takes at most {max_tokens:,}",
                hint="shorten the text, or truncate it",
                fix=Fix.TRUNCATE,
                tokens=n,
            )


def to_inputs(
    sentences: Iterable[Sentence],
    family: str,
    pair: str | None = None,
    target: str | None = None,
    source: str | None = None,
) -> list[Inputs]:
    """Model inputs; a line's text after a tab is the target for encoder–decoders, else the pair."""
    out = []
    for s in sentences:
        line_pair, line_target = pair, target
        if s.second is not None:
            if family == "encoder-decoder":
                line_target = s.second
            else:
                line_pair = s.second
        out.append(Inputs(s.text, pair=line_pair, target=line_target, source=source))
    return out
