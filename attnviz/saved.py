"""Results on disk and in pipes: JSON, JSON lines, NPZ and CSV out; one loader back in.

    write  json   one attnviz/2 document (result.to_json)
           jsonl  one compact document per line, one line per input
           npz    several results: '{i}/meta' (the document without weights) and
                  '{i}/{stack}/attention' (float32 [layers, heads, query, key]);
                  NpzStream writes one result's layers into it as a model makes them
           csv    one row per weight, for spreadsheets (not read back: no token metadata)
    read   load(path) for .json, .jsonl and .npz (attnviz/2 and attnviz/1), '-' for stdin

Weights survive every round trip bit for bit: JSON writes the shortest decimal that
reads back to the same float32, NPZ stores the float32 array itself.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from .errors import SavedFileError
from .inputs import stdin_stream
from .result import SCHEMA, SCHEMA_V1, AttentionResult, MapKind, Origin, Stack, Tokens
from .tokentext import GENERATED_MARK

CSV_COLUMNS = ("index", "line", "stack", "layer", "head", "query_index", "query", "key_index", "key", "weight")
NPZ_MAGIC = b"PK\x03\x04"


# ---------------------------------------------------------------- writing


# JSON allows these raw, but line readers (Python's splitlines, JavaScript before ES2019) break on them
LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(doc: Any, compact: bool = False) -> str:
    """JSON text with non-ASCII kept readable, but U+0085/U+2028/U+2029 escaped: one line stays one line."""
    separators = (",", ":") if compact else None
    return json.dumps(doc, ensure_ascii=False, separators=separators).translate(LINE_BREAKS)


def to_json(result: AttentionResult) -> str:
    """One whole JSON document (see README, 'JSON schema')."""
    return b"".join(json_chunks(result)).decode("utf-8", "surrogateescape")


def jsonl_line(result: AttentionResult) -> str:
    """One compact JSON document and a newline."""
    return to_json(result) + "\n"


# ---- JSON a piece at a time: metadata with orjson, weights a few maps per piece

# float32 numbers per piece of a stack's attention (~10 bytes each as JSON): pieces stay a few MB
JSON_PIECE = 1 << 18
_BREAKS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def _dumps_bytes(doc: Any) -> bytes:
    """Compact UTF-8 JSON with U+0085/U+2028/U+2029 escaped (orjson writes them raw).

    In UTF-8 those three byte sequences only ever encode those characters, and JSON
    only has them inside strings, so replacing the bytes is exact. A text that is not
    valid Unicode (a lone surrogate from an undecodable argument) is escaped as \\udcxx.
    """
    import orjson

    try:
        data = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return json.dumps(doc, separators=(",", ":")).encode("ascii")
    for raw, escaped in _BREAKS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def float32_json(weights: np.ndarray, piece: int = JSON_PIECE) -> Iterator[bytes]:
    """Nested JSON lists of a float32 array, each number the shortest decimal that reads back to the
    same float32 (orjson's), in pieces of about `piece` numbers: a huge array is never one string."""
    import orjson

    a = np.asarray(weights, dtype=np.float32)
    if a.size <= piece or a.ndim == 1:
        yield orjson.dumps(np.ascontiguousarray(a), option=orjson.OPT_SERIALIZE_NUMPY)
        return
    rows = max(1, piece // max(1, a[0].size))  # sub-arrays per piece
    yield b"["
    if rows == 1:
        for i, sub in enumerate(a):
            if i:
                yield b","
            yield from float32_json(sub, piece)
    else:
        for start in range(0, len(a), rows):
            part = orjson.dumps(np.ascontiguousarray(a[start : start + rows]), option=orjson.OPT_SERIALIZE_NUMPY)
            yield (b"," if start else b"") + part[1:-1]  # the rows without their enclosing brackets
    yield b"]"


def _split(doc: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields of `doc` before `key` and after it, in order."""
    keys = list(doc)
    at = keys.index(key)
    return {k: doc[k] for k in keys[:at]}, {k: doc[k] for k in keys[at + 1 :]}


def _opening(before: dict[str, Any], key: str) -> bytes:
    """'{"a":1,...,"key":' : an object's fields up to `key`, left open for its value."""
    head = _dumps_bytes(before)[:-1]  # without its closing brace
    return head + (b"," if before else b"") + _dumps_bytes(key) + b":"


def _closing(after: dict[str, Any]) -> bytes:
    """',"b":2,...}' : the fields after a value written in pieces, and the closing brace."""
    return b"," + _dumps_bytes(after)[1:] if after else b"}"


def json_chunks(result: AttentionResult, piece: int = JSON_PIECE) -> Iterator[bytes]:
    """The result's compact JSON document (README, 'JSON schema') as pieces of UTF-8 to write one
    after another: the metadata of each stack, then its weights a few maps at a time."""
    doc = _meta_doc(result, keep_key=True)
    before, after = _split(doc, "stacks")
    yield _opening(before, "stacks") + b"["
    for n, (stack, stack_doc) in enumerate(zip(result.stacks, doc["stacks"])):
        fields, rest = _split(stack_doc, "attention")
        yield (b"," if n else b"") + _opening(fields, "attention")
        yield from float32_json(stack.weights, piece)
        yield _closing(rest)
    yield b"]" + _closing(after)


def jsonl_chunks(results: Iterable[AttentionResult], piece: int = JSON_PIECE) -> Iterator[bytes]:
    """One compact document per result, each followed by a newline."""
    for result in results:
        yield from json_chunks(result, piece)
        yield b"\n"


# ---- CSV


def _axis_value(origin: Origin) -> int | str:
    return origin.single if origin.single is not None else origin.combine.value if origin.combine else ""


def _cell(value: object) -> str:
    """One CSV field as the csv module writes it (minimal quoting, "" for a quote)."""
    text = str(value)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _float32_texts(row: np.ndarray) -> list[str]:
    """Each float32 of a 1-D array as its shortest decimal that reads back to the same float32."""
    if not row.size:
        return []
    return next(float32_json(row)).decode("ascii")[1:-1].split(",")


def _csv_texts(tokens: Tokens) -> list[str]:
    """Token texts as the model has them, a generated one marked as every view marks it ('dream⁺')."""
    return [t + GENERATED_MARK if tokens.is_generated(i) else t for i, t in enumerate(tokens.texts)]


def csv_chunks(results: Iterable[AttentionResult], header: bool = True) -> Iterator[str]:
    """A header, then one row per (input, stack, layer, head, query, key) with token texts and weight;
    one piece of text per map. The header waits for the first result: a view that fails on it
    (an unknown --query) leaves stdout empty, not a header without rows."""
    pending = header
    for result in results:
        if pending:
            yield ",".join(CSV_COLUMNS) + "\n"
            pending = False
        line = "" if result.line is None else result.line
        for s in result.stacks:
            keys = [f"{ki},{_cell(key)}" for ki, key in enumerate(_csv_texts(s.key))]
            queries = [f"{qi},{_cell(query)}" for qi, query in enumerate(_csv_texts(s.query))]
            for li, layer in enumerate(s.layer_axis):
                for hi, head in enumerate(s.head_axis):
                    where = (
                        f"{result.index},{line},{_cell(s.name)},{_cell(_axis_value(layer))},{_cell(_axis_value(head))}"
                    )
                    yield "".join(
                        f"{where},{query},{key},{weight}\n"
                        for qi, query in enumerate(queries)
                        for key, weight in zip(keys, _float32_texts(s.weights[li, hi, qi]))
                    )
    if pending:
        yield ",".join(CSV_COLUMNS) + "\n"


def csv_rows(results: Iterable[AttentionResult]) -> Iterator[list[str]]:
    """The rows of csv_chunks as lists of fields (the csv module reads them back)."""
    for piece in csv_chunks(results, header=False):
        yield from csv.reader(io.StringIO(piece))


def to_csv(results: Iterable[AttentionResult], header: bool = True) -> str:
    """A header, then one row per (input, stack, layer, head, query, key) with token texts and weight."""
    return "".join(csv_chunks(results, header))


def _meta_doc(result: AttentionResult, keep_key: bool = False) -> dict[str, Any]:
    """The result's JSON document without its weights, which go into .npy members of their own
    (`keep_key`: each stack keeps an empty 'attention' where the weights belong, in its place)."""
    light = replace(
        result,
        stacks=tuple(replace(s, weights=np.empty((s.layers, s.heads, 0, 0), np.float32)) for s in result.stacks),
    )
    doc = light.to_json()
    for stack in doc["stacks"]:
        if keep_key:
            stack["attention"] = []
        else:
            del stack["attention"]
    return doc


class Writable(Protocol):
    """Where npz output goes: a binary file, a pipe, the command line's ByteSink (no seeking needed)."""

    def write(self, data: Any, /) -> int: ...

    def flush(self) -> None: ...


class NpzWriter:
    """Writes results into one .npz as they come; `numpy.load` reads it (no pickles).

    Members are stored as they are unless `compress` (deflate, as numpy.savez_compressed):
    attention weights compress by ~8% at ~30 times the time.
    """

    def __init__(self, file: Writable, compress: bool = False) -> None:
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.gate = _Gate(file)  # shut by abandon(): a failed run never ends in a zip that reads as whole
        self.zip = zipfile.ZipFile(self.gate, "w", method, allowZip64=True)
        self.count = 0

    def member(self, name: str) -> IO[bytes]:
        """An open member '{name}.npy' to write into (one at a time: a zip takes one member after another)."""
        return self.zip.open(f"{name}.npy", "w", force_zip64=True)

    def _put(self, name: str, array: np.ndarray) -> None:
        with self.member(name) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

    def add(self, result: AttentionResult) -> None:
        i = self.count
        for s in result.stacks:
            self._put(f"{i}/{s.name}/attention", s.weights)  # float32 [layers, heads, query, key]
        self.add_meta(result)

    def add_meta(self, result: AttentionResult) -> None:
        """Everything of a result but its attention arrays (`add`, or a stream, writes those)."""
        i = self.count
        self._put(f"{i}/meta", np.asarray(dumps(_meta_doc(result))))
        for s in result.stacks:
            self._put(f"{i}/{s.name}/query_tokens", np.asarray(s.query.texts, dtype=np.str_))
            self._put(f"{i}/{s.name}/key_tokens", np.asarray(s.key.texts, dtype=np.str_))
        self.count += 1

    def close(self) -> None:
        self._put("schema", np.asarray(SCHEMA))
        self._put("count", np.asarray(self.count, dtype=np.int64))
        self.zip.close()

    def abandon(self) -> None:
        """After an error: write nothing more, so the output stays a zip without its directory (no reader takes it)."""
        self.gate.shut = True
        with contextlib.suppress(Exception):
            self.zip.close()


def write_npz(results: Iterable[AttentionResult], file: Writable, compress: bool = False) -> None:
    """Results as one .npz written straight into `file` as they come (a pipe will do: no seeking needed)."""
    writer = NpzWriter(file, compress)
    try:
        for r in results:
            writer.add(r)
    except BaseException:
        writer.abandon()
        raise
    writer.close()


def to_npz(results: Iterable[AttentionResult], compress: bool = False) -> bytes:
    out = io.BytesIO()
    write_npz(results, out, compress)
    return out.getvalue()


# the order of looseness: a stack is as loose as its loosest layer
_LOOSENESS = (MapKind.PROBABILITY, MapKind.WEIGHTS, MapKind.SIGNED)


@dataclass
class _Track:
    """One stack of a streamed result: its member's shape, what came so far, where early layers wait."""

    name: str
    layers: int  # how many will come
    shape: tuple[int, ...]  # one layer's (heads, query, key)
    meta: Stack  # the first layer of the loosest kind: tokens, provenance, kind, notes
    axis: list[Origin] = field(default_factory=list)
    spill: IO[bytes] | None = None


def _write_layer(f: IO[bytes], layer: np.ndarray) -> None:
    """One layer's float32 (heads, q, k) as .npy data, a head at a time (no copy of a contiguous map)."""
    for plane in layer:
        f.write(np.ascontiguousarray(plane, dtype="<f4").data.cast("B"))


class _Gate:
    """A write-only file that can be shut: after a failed stream, nothing more reaches the output.

    It has no tell(), so zipfile writes as into a pipe (sizes after each member's data).
    """

    def __init__(self, file: Writable) -> None:
        self.file = file
        self.shut = False

    def close(self) -> None:
        """zipfile never closes a file it was given; the owner of `file` does."""

    def write(self, data: Any) -> int:
        return len(memoryview(data).cast("B")) if self.shut else self.file.write(data)

    def flush(self) -> None:
        if not self.shut:
            self.file.flush()


class NpzStream:
    """One result into an .npz layer by layer, in NpzWriter's layout (`load` reads it back).

    Each stack's '0/{stack}/attention' member starts with its .npy header, shaped [layers,
    heads, q, k] from the first layer and the count given, and takes each layer's bytes as
    it comes: the stream holds no layer. A zip takes one member after another, so layers
    of a stack that come while another's member is open (an encoder-decoder's cross
    attention between its decoder layers) wait in a temporary file, not in memory.
    """

    def __init__(self, file: Writable, compress: bool = False) -> None:
        self.gate = _Gate(file)
        self.writer = NpzWriter(self.gate, compress)
        self.tracks: dict[str, _Track] = {}
        self.first: AttentionResult | None = None
        self._open: tuple[_Track, IO[bytes]] | None = None

    def add(self, part: AttentionResult, layers: int) -> None:
        """`part` holds one stack of one layer; its stack will get `layers` layers in all, in order."""
        (stack,) = part.stacks
        track = self._track(stack, layers)
        self.first = self.first or part
        track.axis.extend(stack.layer_axis)
        if _LOOSENESS.index(stack.kind) > _LOOSENESS.index(track.meta.kind):
            track.meta = stack  # e.g. a token window that cuts weight off this layer's rows only
        if self._open is None:
            self._open = (track, self._start(track))
        open_track, f = self._open
        if open_track is track:
            _write_layer(f, stack.weights[0])
            if len(track.axis) == track.layers:
                f.close()
                self._open = None
        else:
            track.spill = track.spill or tempfile.TemporaryFile()
            _write_layer(track.spill, stack.weights[0])

    def _track(self, stack: Stack, layers: int) -> _Track:
        shape = stack.weights.shape[1:]
        track = self.tracks.get(stack.name)
        if track is None:
            track = self.tracks[stack.name] = _Track(stack.name, layers, shape, stack)
        if shape != track.shape or len(track.axis) >= track.layers:
            raise ValueError(f"{stack.name}: a layer shaped {shape} after {len(track.axis)} shaped {track.shape}")
        return track

    def _start(self, track: _Track) -> IO[bytes]:
        """Open the track's member: its header, then whatever layers waited in its temporary file."""
        f = self.writer.member(f"0/{track.name}/attention")
        header = {"descr": "<f4", "fortran_order": False, "shape": (track.layers, *track.shape)}
        np.lib.format.write_array_header_1_0(f, header)
        if track.spill is not None:
            track.spill.seek(0)
            shutil.copyfileobj(track.spill, f, 1 << 22)
            track.spill.close()
            track.spill = None
        return f

    def close(self) -> None:
        """Write the layers still waiting, then the result's metadata; the .npz is complete after this."""
        if self.first is None:
            raise ValueError("nothing was streamed")
        short = [t.name for t in self.tracks.values() if len(t.axis) != t.layers]
        if short or self._open is not None:
            raise ValueError(f"stacks {short} did not get every layer they were promised")
        for track in self.tracks.values():
            if track.spill is not None:
                self._start(track).close()
        stacks = tuple(
            replace(t.meta, weights=np.empty((t.layers, *t.shape[:1], 0, 0), np.float32), layer_axis=tuple(t.axis))
            for t in self.tracks.values()
        )
        self.writer.add_meta(replace(self.first, stacks=stacks))
        self.writer.close()
        self.gate.flush()

    def abort(self) -> None:
        """After an error: write nothing more (the output stays an incomplete zip that no reader takes)."""
        self.gate.shut = True
        with contextlib.suppress(Exception):
            if self._open is not None:
                self._open[1].close()
            self.writer.zip.close()
        for track in self.tracks.values():
            if track.spill is not None:
                track.spill.close()


# ---------------------------------------------------------------- reading


def _from_doc(doc: Any, where: str) -> AttentionResult:
    try:
        return AttentionResult.from_json(doc)
    except ValueError as exc:
        raise SavedFileError(f"{where} is not an attnviz result: {exc}") from None


def _npz_v1(data: Any) -> dict[str, Any]:
    """An attnviz/1 .npz (one result, 'encoder/attention' …) as an attnviz/1 JSON document."""

    def text(key: str) -> str:
        return str(data[key][()])

    doc: dict[str, Any] = {
        k: text(k) for k in ("schema", "model", "text", "precision", "pair", "target", "source") if k in data.files
    }
    names = sorted({k.split("/")[0] for k in data.files if k.endswith("/attention")})
    doc["stacks"] = [
        {
            "name": name,
            "causal": bool(data[f"{name}/causal"][()]),
            "layers": [v.item() for v in data[f"{name}/layers"]],
            "heads": [v.item() for v in data[f"{name}/heads"]],
            "query_tokens": [str(t) for t in data[f"{name}/query_tokens"]],
            "key_tokens": [str(t) for t in data[f"{name}/key_tokens"]],
            "attention": data[f"{name}/attention"],
            "notes": [str(n) for n in data[f"{name}/notes"]],
        }
        for name in names
    ]
    return doc


def _load_npz(raw: IO[bytes], name: str) -> list[AttentionResult]:
    try:
        with np.load(raw, allow_pickle=False) as data:
            schema = str(data["schema"][()]) if "schema" in data.files else None
            if schema == SCHEMA_V1:
                return [_from_doc(_npz_v1(data), name)]
            if schema != SCHEMA:
                raise SavedFileError(f"{name} is not an attnviz .npz (schema {schema!r})")
            results = []
            count = int(data["count"][()])
            if count < 0:
                raise SavedFileError(f"{name} is not a readable attnviz .npz: it says it holds {count} results")
            for i in range(count):
                doc = _json(str(data[f"{i}/meta"][()]), f"{name} result {i}")
                for stack in doc["stacks"]:
                    key = f"{i}/{stack['name']}/attention"
                    shape, dtype = _npy_header(data, key)
                    sizes = [len(stack[k]) for k in ("layers", "heads")] + [
                        len(stack[k]["tokens"]) for k in ("query", "key")
                    ]
                    if dtype != np.float32 or list(shape) != sizes:
                        raise SavedFileError(
                            f"{name} is not a readable attnviz .npz: {key} is {dtype} {list(shape)}, "
                            f"its description says float32 {sizes}"
                        )
                    stack["attention"] = data[key]
                results.append(_from_doc(doc, f"{name} result {i}"))
            return results
    except SavedFileError:
        raise
    except RecursionError:
        raise SavedFileError(f"{name} is not a readable attnviz .npz: nested too deeply") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError) as exc:
        raise SavedFileError(f"{name} is not a readable attnviz .npz: {exc}") from None


def _json(text: str, where: str) -> Any:
    """The JSON value of `text`; JSONDecodeError as json raises it, SavedFileError for JSON no attnviz
    file holds (nested thousands deep, a number of thousands of digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise SavedFileError(f"{where} is nested too deeply to be an attnviz result") from None
    except ValueError as exc:  # Python refuses integers of over 4,300 digits
        reason = "it holds a number thousands of digits long" if "digits" in str(exc) else str(exc)
        raise SavedFileError(f"{where} is not an attnviz result: {reason}") from None


def _npy_header(data: Any, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npz member declares, read before its data (a forged header may claim terabytes)."""
    with data.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return tuple(shape), dtype


def _load_text(data: bytes, name: str) -> list[AttentionResult]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SavedFileError(f"{name} is not UTF-8 (byte {exc.start})") from None
    try:
        return [_from_doc(_json(text, name), name)]  # one (possibly pretty-printed) document
    except json.JSONDecodeError:
        pass
    results = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            doc = _json(line, where)
        except json.JSONDecodeError as exc:
            raise SavedFileError(f"{where} is not JSON: {exc.msg}") from None
        results.append(_from_doc(doc, where))
    if not results:
        raise SavedFileError(f"{name} is empty: no attnviz results in it")
    return results


def _read_saved(stream: IO[bytes], name: str) -> bytes:
    """All of a saved file, once its start shows it can be one: an .npz (a zip) or JSON text. Binary
    data (/dev/zero, an image) is refused from its first bytes instead of read to the end."""
    head = stream.read(4096)
    start = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]  # a UTF-8 BOM is read past (utf-8-sig)
    if not head.startswith(NPZ_MAGIC) and start not in (b"{", b"[", b""):
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at the end is no error
        except UnicodeDecodeError as exc:
            raise SavedFileError(f"{name} is not UTF-8 (byte {exc.start})") from None
        shown = "NUL bytes" if start == b"\0" else repr(start.decode("utf-8", errors="replace"))
        raise SavedFileError(f"{name} is not an attnviz result: it starts with {shown}, not JSON or an .npz")
    return head + stream.read()


def load(path: str | Path) -> list[AttentionResult]:
    """Every result in a file attnviz wrote (.json, .jsonl, .npz), or in standard input for '-'.

    The format is read off the content (an .npz is a zip file), so names do not matter.
    """
    name = "standard input" if str(path) == "-" else str(path)
    if str(path) == "-":
        data = _read_saved(stdin_stream(), name)
    else:
        try:
            with open(path, "rb") as f:
                data = _read_saved(f, name)
        except FileNotFoundError:
            raise SavedFileError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise SavedFileError(f"{path} is a folder, not a file") from None
        except OSError as exc:
            raise SavedFileError(f"cannot read {path}: {exc.strerror}") from None
    if data.startswith(NPZ_MAGIC):
        return _load_npz(io.BytesIO(data), name)
    if not data.strip():
        raise SavedFileError(f"{name} is empty: no attnviz results in it")
    return _load_text(data, name)
