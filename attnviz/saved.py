"""Results on disk and in pipes: JSON, JSON lines, NPZ and CSV out; one loader back in.

    write  json   one attnviz/2 document (result.to_json)
           jsonl  one compact document per line, one line per input
           npz    several results: '{i}/meta' (the document without weights) and
                  '{i}/{stack}/attention' (float32 [layers, heads, query, key])
           csv    one row per weight, for spreadsheets (not read back: no token metadata)
    read   load(path) for .json, .jsonl and .npz (attnviz/2 and attnviz/1), '-' for stdin

Weights survive every round trip bit for bit: JSON writes the shortest decimal that
reads back to the same float32, NPZ stores the float32 array itself.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import SavedFileError
from .inputs import stdin_bytes
from .result import SCHEMA, SCHEMA_V1, AttentionResult, Origin

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
    return dumps(result.to_json())


def jsonl_line(result: AttentionResult) -> str:
    """One compact JSON document and a newline."""
    return dumps(result.to_json(), compact=True) + "\n"


def _axis_value(origin: Origin) -> int | str:
    return origin.single if origin.single is not None else origin.combine.value if origin.combine else ""


def csv_rows(results: Iterable[AttentionResult]) -> Iterator[list[object]]:
    for result in results:
        for s in result.stacks:
            for li, layer in enumerate(s.layer_axis):
                for hi, head in enumerate(s.head_axis):
                    for qi, query in enumerate(s.query.texts):
                        row = s.weights[li, hi, qi].tolist()  # float32 → float; repr reads back exactly
                        for ki, key in enumerate(s.key.texts):
                            yield [
                                result.index,
                                "" if result.line is None else result.line,
                                s.name,
                                _axis_value(layer),
                                _axis_value(head),
                                qi,
                                query,
                                ki,
                                key,
                                repr(row[ki]),
                            ]


def to_csv(results: Iterable[AttentionResult], header: bool = True) -> str:
    """A header, then one row per (input, stack, layer, head, query, key) with token texts and weight."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(results))
    return out.getvalue()


class NpzWriter:
    """Writes results into one .npz as they come; `numpy.load` reads it (no pickles)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True)
        self.count = 0

    def _put(self, name: str, array: np.ndarray) -> None:
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

    def add(self, result: AttentionResult) -> None:
        doc = result.to_json()
        for stack in doc["stacks"]:
            del stack["attention"]
        i = self.count
        self._put(f"{i}/meta", np.asarray(dumps(doc)))
        for s in result.stacks:
            self._put(f"{i}/{s.name}/attention", s.weights)  # float32 [layers, heads, query, key]
            self._put(f"{i}/{s.name}/query_tokens", np.asarray(s.query.texts, dtype=np.str_))
            self._put(f"{i}/{s.name}/key_tokens", np.asarray(s.key.texts, dtype=np.str_))
        self.count += 1

    def close(self) -> None:
        self._put("schema", np.asarray(SCHEMA))
        self._put("count", np.asarray(self.count, dtype=np.int64))
        self.zip.close()


def to_npz(results: Iterable[AttentionResult]) -> bytes:
    out = io.BytesIO()
    writer = NpzWriter(out)
    for r in results:
        writer.add(r)
    writer.close()
    return out.getvalue()


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
            for i in range(int(data["count"][()])):
                doc = json.loads(str(data[f"{i}/meta"][()]))
                for stack in doc["stacks"]:
                    stack["attention"] = data[f"{i}/{stack['name']}/attention"]
                results.append(_from_doc(doc, f"{name} result {i}"))
            return results
    except SavedFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError) as exc:
        raise SavedFileError(f"{name} is not a readable attnviz .npz: {exc}") from None


def _load_text(data: bytes, name: str) -> list[AttentionResult]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SavedFileError(f"{name} is not UTF-8 (byte {exc.start})") from None
    try:
        return [_from_doc(json.loads(text), name)]  # one (possibly pretty-printed) document
    except json.JSONDecodeError:
        pass
    results = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SavedFileError(f"{name} line {number} is not JSON: {exc.msg}") from None
        results.append(_from_doc(doc, f"{name} line {number}"))
    if not results:
        raise SavedFileError(f"{name} is empty: no attnviz results in it")
    return results


def load(path: str | Path) -> list[AttentionResult]:
    """Every result in a file attnviz wrote (.json, .jsonl, .npz), or in standard input for '-'.

    The format is read off the content (an .npz is a zip file), so names do not matter.
    """
    name = "standard input" if str(path) == "-" else str(path)
    if str(path) == "-":
        data = stdin_bytes()
    else:
        try:
            data = Path(path).read_bytes()
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
