"""Data formats for pipelines: the attnviz/1 JSON document, JSON lines, CSV and NPZ.

Every writer keeps the float32 weights exact: JSON and CSV write the shortest decimal
that reads back to the same float64 (and so to the same float32); NPZ stores the
float32 array itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence

import numpy as np

from ..result import AttentionResult

CSV_COLUMNS = ("sentence", "stack", "layer", "head", "query_index", "query", "key_index", "key", "weight")


def to_json(result: AttentionResult) -> str:
    """One whole JSON document (see README, 'JSON schema')."""
    return json.dumps(result.to_json(), ensure_ascii=False)


def to_jsonl(results: list[AttentionResult]) -> str:
    """One compact JSON document per line, one line per input."""
    return "".join(json.dumps(r.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for r in results)


def _csv_rows(results: Sequence[AttentionResult]) -> Iterator[list[object]]:
    for n, result in enumerate(results):
        for s in result.stacks:
            for li, layer in enumerate(s.layer_ids):
                for hi, head in enumerate(s.head_ids):
                    for qi, query in enumerate(s.query.texts):
                        row = s.weights[li, hi, qi].tolist()  # float32 → float; repr reads back exactly
                        for ki, key in enumerate(s.key.texts):
                            yield [n, s.name, layer, head, qi, query, ki, key, repr(row[ki])]


def to_csv(results: Sequence[AttentionResult]) -> str:
    """A header, then one row per (sentence, stack, layer, head, query, key) with token texts and weight."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_rows(results))
    return out.getvalue()


def _ids(values: Sequence[int | str]) -> np.ndarray:
    """Layer/head ids: an int64 array, or strings where one is 'mean', 'max' or 'rollout'."""
    if all(isinstance(v, int) for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.asarray([str(v) for v in values], dtype=np.str_)


def npz_arrays(result: AttentionResult) -> dict[str, np.ndarray]:
    """The arrays `to_npz` stores, by name (see README, 'NPZ layout')."""
    arrays: dict[str, np.ndarray] = {
        "schema": np.asarray("attnviz/1"),
        "model": np.asarray(result.model),
        "text": np.asarray(result.text),
        "precision": np.asarray(result.precision),
    }
    for name, value in result.inputs.items():
        arrays[name] = np.asarray(value)
    for s in result.stacks:
        arrays[f"{s.name}/attention"] = s.weights  # float32 [layers, heads, query, key]
        arrays[f"{s.name}/query_tokens"] = np.asarray(s.query.texts, dtype=np.str_)
        arrays[f"{s.name}/key_tokens"] = np.asarray(s.key.texts, dtype=np.str_)
        arrays[f"{s.name}/layers"] = _ids(s.layer_ids)
        arrays[f"{s.name}/heads"] = _ids(s.head_ids)
        arrays[f"{s.name}/causal"] = np.asarray(s.causal)
        arrays[f"{s.name}/notes"] = np.asarray(s.notes, dtype=np.str_)
    return arrays


def to_npz(result: AttentionResult) -> bytes:
    """A compressed .npz: `numpy.load(f)["encoder/attention"]` is the float32 [L, H, q, k] array."""
    out = io.BytesIO()
    np.savez_compressed(out, **npz_arrays(result))  # type: ignore[arg-type]
    return out.getvalue()
