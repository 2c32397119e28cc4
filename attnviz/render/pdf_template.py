"""PDFs of one sheet from a template: matplotlib writes the figure once, each image fills in what differs.

What differs between the images of a sheet is the cells (one image per panel), the values written in
them with their colours, and the title. matplotlib draws the template with marker colours on the
value texts and the title; here the page's content stream is split at those texts, and each image
gets new text operators, new cell images and a new cross-reference table. Fonts (Type 42, subset),
labels, colourbar and everything else are the template's bytes. The template's font subset holds
every digit and the widest title's characters (a line of them, drawn in the template and cut from
each image), so any value and any title of the sheet can be set.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

VALUE_INK = "#010203"  # marker colours of the value texts and the title in the template
TITLE_INK = "#030201"
SPARE_INK = "#020301"  # a line of every character images may need: in the font subset, cut from the page
CHARSET = "0123456789.,:-"  # characters every image may need beyond the template's own texts

_SEGMENT = re.compile(rb"(/F\d+) (\S+) Tf\n(?:\S+ \S+ Td\n)?\s*\[(.*?)\]\s*TJ", re.S)  # a font switch, its glyphs
_LITERAL = re.compile(rb"\(((?:\\.|[^\\)])*)\)", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_CHUNK = re.compile(rb"q\n1 0 -0 1 (\S+) (\S+) cm\nBT\n(/F\d+ \S+ Tf)\n0 0 Td\n.*?TJ\nET\nQ\n", re.S)
_OBJ = re.compile(rb"(\d+) 0 obj\n")


def marker_op(colour: str) -> bytes:
    """How matplotlib writes a fill colour '#rrggbb': 'r g b rg' with ten decimals."""
    rgb = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return " ".join(f"{c / 255:.10f}".rstrip("0").rstrip(".") for c in rgb).encode() + b" rg"


def _unescape(literal: bytes) -> bytes:
    """The bytes of a PDF literal string's inside: escapes such as \\( and \\ddd undone."""
    return re.sub(
        rb"\\([0-7]{1,3}|.)",
        lambda m: bytes([int(m[1], 8)]) if m[1][:1].isdigit() else _ESCAPES.get(m[1], m[1]),
        literal,
        flags=re.S,
    )


def _num(x: float) -> bytes:
    return f"{x:.6f}".rstrip("0").rstrip(".").encode()


@dataclass
class _Text:
    """One text of the template: where its chunk sits in the content stream, and how it was placed."""

    start: int
    end: int
    x: float  # left edge, points
    y: float
    font: bytes  # b"/F1 7.5 Tf"


class PdfTemplate:
    """A PDF of a sheet split where its images differ; `fill` makes each image's bytes."""

    def __init__(
        self,
        pdf: bytes,
        panels: int,
        shape: tuple[int, int],
        values: int,
        width: Callable[[str, float], float],
        placeholder: str,
        title: str,
    ) -> None:
        """Parse the template; ValueError when it does not look the way this module expects."""
        self.width = width  # points of a text at a size, as matplotlib lays it out
        self.offsets = self._objects(pdf)
        self.header = pdf[: min(self.offsets.values())]
        self.trailer = pdf[pdf.rindex(b"trailer") : pdf.rindex(b"startxref")]
        self.bodies = {n: pdf[start:end] for n, (start, end) in self._spans(pdf).items()}
        page = next(n for n, body in self.bodies.items() if b"/Type /Page " in body)
        self.content_id = int(re.search(rb"/Contents (\d+) 0 R", self.bodies[page])[1])  # type: ignore[index]
        content = self._stream(self.bodies[self.content_id])
        self.content = zlib.decompress(content) if b"/FlateDecode" in self.bodies[self.content_id] else content
        self.values = self._texts(VALUE_INK, values)
        self.title = self._texts(TITLE_INK, 1)[0]
        self.spare = self._texts(SPARE_INK, 1)[0]
        self.placeholder_width = width(placeholder, self._size(self.values[0].font)) if self.values else 0.0
        self.title_centre = self.title.x + width(title, self._size(self.title.font)) / 2
        self.glyphs = self._title_glyphs(title, self.content[self.title.start : self.title.end])
        self.image_ids = self._panel_images(panels, shape)

    # ------------------------------------------------------------ parsing the template

    @staticmethod
    def _objects(pdf: bytes) -> dict[int, int]:
        offsets = {int(m[1]): m.start() for m in _OBJ.finditer(pdf) if pdf[m.start() - 1 : m.start()] in (b"\n", b"")}
        if not offsets:
            raise ValueError("no objects")
        return offsets

    def _spans(self, pdf: bytes) -> dict[int, tuple[int, int]]:
        order = sorted(self.offsets.items(), key=lambda item: item[1])
        ends = [start for _, start in order[1:]] + [pdf.rindex(b"xref")]
        return {n: (start, end) for (n, start), end in zip(order, ends)}

    @staticmethod
    def _stream(body: bytes) -> bytes:
        start = body.index(b"stream\n") + len(b"stream\n")
        return body[start : body.rindex(b"\nendstream")]

    @staticmethod
    def _size(font: bytes) -> float:
        return float(font.split()[1])

    def _texts(self, ink: str, count: int) -> list[_Text]:
        """The `count` text chunks that follow the first use of a marker colour, in drawing order."""
        at = self.content.find(marker_op(ink))
        if at < 0:
            if count:
                raise ValueError("a marker colour is missing")
            return []
        texts = []
        for match in _CHUNK.finditer(self.content, at):
            texts.append(_Text(match.start(), match.end(), float(match[1]), float(match[2]), match[3]))
            if len(texts) == count:
                break
        if len(texts) != count:
            raise ValueError(f"found {len(texts)} of {count} texts")
        return texts

    @staticmethod
    def _title_glyphs(title: str, chunk: bytes) -> dict[str, tuple[bytes, bytes]]:
        """Character → (font, two-byte code) as the template's title set them. matplotlib puts characters
        beyond Latin-1 in a second font with codes of its own; this learns them from the title."""
        codes: list[tuple[bytes, bytes]] = []
        for font, _, glyphs in _SEGMENT.findall(chunk):
            data = b"".join(_unescape(lit) for lit in _LITERAL.findall(glyphs))
            codes += [(font, data[i : i + 2]) for i in range(0, len(data), 2)]
        if len(codes) != len(title):
            raise ValueError(f"the title has {len(title)} characters and {len(codes)} glyphs")
        return dict(zip(title, codes))

    def can_set(self, title: str, charset: frozenset[str]) -> bool:
        """Whether every character of `title` has a glyph in the template's fonts."""
        return all(ch in self.glyphs or (ch in charset and ord(ch) < 256) for ch in title)

    def _panel_images(self, panels: int, shape: tuple[int, int]) -> list[int]:
        """Object numbers of the panels' cell images, in the order the page draws them."""
        q, k = shape
        names = dict(re.findall(rb"/(I\d+) (\d+) 0 R", b"".join(self.bodies.values())))
        drawn = [int(names[name]) for name in re.findall(rb"/(I\d+)\s+Do\b", self.content) if name in names]
        ids = [n for n in drawn if re.search(rb"/Width %d /Height %d\b" % (k, q), self.bodies[n])]
        if len(ids) != panels:
            raise ValueError(f"found {len(ids)} panel images for {panels} panels")
        return ids

    # ------------------------------------------------------------ one image

    def fill(self, cells: Sequence[np.ndarray], values: Sequence[str], inks: Sequence[bool], title: str) -> bytes:
        """The PDF of one image: cells (q, k, 3) uint8 per panel, value texts with white (True) or
        black ink, and the title."""
        edits = [(self.title.start, self.title.end, self._title_chunks(title))]
        edits.append((self.spare.start, self.spare.end, b""))  # no text layer for what no one sees
        for text, value, white in zip(self.values, values, inks):
            size = self._size(text.font)
            x = text.x + (self.placeholder_width - self.width(value, size)) / 2  # centred in its cell
            edits.append((text.start, text.end, self._chunk(x, text.y, text.font, value, white)))
        parts, at = [], 0
        for start, end, data in sorted(edits):
            parts += [self.content[at:start], data]
            at = end
        parts.append(self.content[at:])
        bodies = dict(self.bodies)
        bodies[self.content_id] = self._stream_object(
            self.content_id, b"", zlib.compress(b"".join(parts), 6), flate=True
        )
        for n, rgb in zip(self.image_ids, cells):
            q, k, _ = rgb.shape
            # bottom row first: the page draws the image flipped (matplotlib's origin="upper" transform)
            rows = np.concatenate([np.zeros((q, 1), np.uint8), rgb[::-1].reshape(q, k * 3)], axis=1)  # PNG filter 0
            head = (
                b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
                b"/DecodeParms << /Predictor 10 /Colors 3 /Columns %d /BitsPerComponent 8 >> " % (k, q, k)
            )
            bodies[n] = self._stream_object(n, head, zlib.compress(rows.tobytes(), 6), flate=True)
        return self._assemble(bodies)

    def _title_chunks(self, title: str) -> bytes:
        """The title in black, centred where the template's was: one chunk per run of one font."""
        size = self._size(self.title.font)
        base = self.title.font.split()[0]
        left = self.title_centre - self.width(title, size) / 2
        runs: list[tuple[int, bytes, bytes]] = []  # (first character, font, codes)
        for i, ch in enumerate(title):
            font, code = self.glyphs.get(ch, (base, ch.encode("utf-16-be")))
            if runs and runs[-1][1] == font:
                runs[-1] = (runs[-1][0], font, runs[-1][2] + code)
            else:
                runs.append((i, font, code))
        return b"".join(
            self._chunk(left + self.width(title[:start], size), self.title.y, b"%s %s Tf" % (font, _num(size)), codes)
            for start, font, codes in runs
        )

    @staticmethod
    def _chunk(x: float, y: float, font: bytes, codes: bytes | str, white: bool = False) -> bytes:
        """A text at (x, y) in black or white: `codes` as the font's two-byte codes (a str: its code points)."""
        ink = b"1 g" if white else b"0 g"
        data = codes.encode("utf-16-be") if isinstance(codes, str) else codes
        text = b"<" + data.hex().upper().encode() + b">"
        return b"q\n%s\n1 0 -0 1 %s %s cm\nBT\n%s\n0 0 Td\n%s Tj\nET\nQ\n" % (ink, _num(x), _num(y), font, text)

    @staticmethod
    def _stream_object(n: int, head: bytes, data: bytes, flate: bool) -> bytes:
        kind = b"/Filter /FlateDecode " if flate else b""
        return b"%d 0 obj\n<< %s%s/Length %d >>\nstream\n%s\nendstream\nendobj\n" % (n, head, kind, len(data), data)

    def _assemble(self, bodies: dict[int, bytes]) -> bytes:
        out = [self.header]
        pos = len(self.header)
        offsets = {}
        for n in sorted(bodies, key=self.offsets.__getitem__):
            offsets[n] = pos
            out.append(bodies[n])
            pos += len(bodies[n])
        size = max(offsets) + 1
        xref = [b"xref\n0 %d\n0000000000 65535 f \n" % size]
        xref += [b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 65535 f \n" for n in range(1, size)]
        out += xref
        out.append(self.trailer)
        out.append(b"startxref\n%d\n%%%%EOF\n" % pos)
        return b"".join(out)
