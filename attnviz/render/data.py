"""Data formats for pipelines: the attnviz/1 JSON document and JSON lines."""

from __future__ import annotations

import json

from ..result import AttentionResult


def to_json(result: AttentionResult) -> str:
    """One whole JSON document (see README, 'JSON schema')."""
    return json.dumps(result.to_json(), ensure_ascii=False)


def to_jsonl(results: list[AttentionResult]) -> str:
    """One compact JSON document per line, one line per input."""
    return "".join(json.dumps(r.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for r in results)
