"""Sentence files: one sentence per line, UTF-8, with line numbers kept for messages.

Blank lines and lines starting with `#` are skipped. A tab splits a line into the
sentence and a second text: the pair (encoders) or the decoder target
(encoder–decoders). A line that cannot be used (bad bytes, too many tabs) is kept
with its error, so a batch can report it and go on with the rest.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from .backends.types import Inputs
from .errors import InputError
from .result import AttentionResult


@dataclass(frozen=True)
class Sentence:
    """One usable (or failed) line of an input file."""

    index: int  # 0-based among the sentences: image names and the manifest use it
    line: int | None  # 1-based line number in the file (None: given as an argument)
    text: str
    second: str | None = None  # the text after a tab: pair or target
    error: str | None = None  # why this line cannot be used

    @property
    def where(self) -> str:
        """'line 7' for a file's sentence, 'sentence 2' (1-based) for one given as an argument."""
        return f"line {self.line}" if self.line is not None else f"sentence {self.index + 1}"

    def tag(self, result: AttentionResult) -> AttentionResult:
        """The result, marked with where its input came from (saved files keep it)."""
        return replace(result, index=self.index, line=self.line)


def from_arguments(texts: list[str]) -> list[Sentence]:
    """Sentences given on the command line, in order."""
    return [Sentence(i, None, t) for i, t in enumerate(texts)]


# byte-order marks of the encodings that are not UTF-8: longest first (UTF-32 LE starts like UTF-16 LE)
WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def check_encoding(data: bytes, name: str) -> None:
    """Refuse UTF-16/32 text by name: read as UTF-8 it would be junk, line by line."""
    head = data[:4]
    marked = [encoding for bom, encoding in WIDE_BOMS if head.startswith(bom)]
    if marked:
        encoding = marked[0]
    elif len(head) == 4 and head.count(0) >= 2:  # no mark: UTF-16/32 text of Latin script is half NUL bytes
        encoding = "UTF-32" if head.count(0) == 3 else "UTF-16"
    else:
        return
    raise InputError(
        f"{name} is {encoding} text, not UTF-8", hint=f"convert it first: iconv -f {encoding} -t UTF-8 FILE"
    )


def parse_lines(data: bytes, name: str) -> list[Sentence]:
    """Sentences of a file's bytes; `name` is how messages refer to the file."""
    check_encoding(data, name)
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark from Windows editors
    sentences: list[Sentence] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            sentences.append(
                Sentence(
                    len(sentences),
                    number,
                    raw.decode("utf-8", "replace").strip(),
                    error=f"{name} line {number} is not valid UTF-8 (byte {exc.start})",
                )
            )
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text, tab, second = line.partition("\t")
        if tab and "\t" in second:
            sentences.append(
                Sentence(
                    len(sentences),
                    number,
                    line,
                    error=f"{name} line {number} has {line.count(chr(9)) + 1} tab-separated columns; at most 2",
                )
            )
            continue
        if tab and not (text.strip() and second.strip()):
            sentences.append(Sentence(len(sentences), number, line, error=f"{name} line {number} has an empty column"))
            continue
        sentences.append(Sentence(len(sentences), number, text.strip(), second.strip() if tab else None))
    return sentences


def stdin_bytes() -> bytes:
    """All of standard input; InputError when the process was started with it closed (<&-)."""
    if sys.stdin is None:
        raise InputError("standard input is closed: there is nothing to read", hint="give the input as an argument")
    return sys.stdin.buffer.read()


def read_sentences(path: str) -> list[Sentence]:
    """Sentences of a file, or of standard input for '-'; InputError if it has none."""
    name = "standard input" if path == "-" else path
    if path == "-":
        data = stdin_bytes()
    else:
        file = Path(path)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file", hint="give a text file with one sentence per line") from None
        except IsADirectoryError:
            raise InputError(f"{path} is a folder, not a file") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
    sentences = parse_lines(data, name)
    if not sentences:
        raise InputError(f"{name} has no sentences", hint="one sentence per line; blank and # lines are skipped")
    return sentences


def to_inputs(
    sentences: list[Sentence],
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
