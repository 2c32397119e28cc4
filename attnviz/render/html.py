"""The interactive viewer as self-contained HTML: one page, or a fragment for notebooks.

The page carries its JS and CSS inline (render/assets/) and every map of the result,
quantised to 16 bits (steps of 1/65535, well under what a colour or a line's opacity
can show), gzipped and base64-encoded; the browser unpacks them with
`DecompressionStream`. The exact float32 numbers stay in the JSON/NPZ formats. Each
viewer gets its own id and runs in its own closure, so several share a page.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import secrets
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import SelectionError
from ..result import AttentionResult, MapKind, Stack, Tokens


@cache
def _asset(name: str) -> str:
    return resources.files("attnviz.render").joinpath("assets", name).read_text(encoding="utf-8")


def _tokens(tokens: Tokens) -> dict[str, Any]:
    n = len(tokens)
    return {
        "texts": list(tokens.labels),  # as a reader should see them (tokentext.label)
        "special": [tokens.is_special(i) for i in range(n)],
        "word_ids": list(tokens.word_ids) if tokens.word_ids else [None] * n,
        "segments": list(tokens.segments) if tokens.segments else [0] * n,
    }


def _check(stack: Stack) -> None:
    if stack.kind is MapKind.SIGNED:
        raise SelectionError(
            f"{stack.name} holds signed maps, which the viewer's scale (0 to 1) cannot draw",
            hint="print them as data: --format json, jsonl, csv or npz",
        )


def payload(result: AttentionResult, metrics: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the page's script reads: tokens, labels, shapes and the packed weights."""
    stacks, blobs, offset = [], [], 0
    for s in result.stacks:
        _check(s)
        # 16-bit steps over 0..1 (float64 so the product rounds once): each weight within 0.5/65535 = 7.6e-6
        q = np.round(np.clip(s.weights.astype(np.float64), 0.0, 1.0) * 65535).astype("<u2")
        stacks.append(
            {
                "name": s.name,
                "causal": s.causal,
                "shape": list(s.weights.shape),
                "offset": offset,
                "layers": [s.layer_label(i) for i in range(s.layers)],
                "heads": [s.head_label(i) for i in range(s.heads)],
                "layerIds": [o.single for o in s.layer_axis],
                "headIds": [o.single if o.single is not None else s.head_label(i) for i, o in enumerate(s.head_axis)],
                "query": _tokens(s.query),
                "key": _tokens(s.key),
            }
        )
        blobs.append(q.tobytes())
        offset += q.size
    packed = gzip.compress(b"".join(blobs), compresslevel=6, mtime=0)
    notes = [*result.notes, *dict.fromkeys(n for s in result.stacks for n in s.notes)]
    return {
        "model": result.model,
        "text": result.text,
        "pair": result.inputs.get("pair"),
        "target": result.inputs.get("target"),
        "notes": notes,
        "stacks": stacks,
        "gzip": True,
        "blob": base64.b64encode(packed).decode("ascii"),
        "metrics": list(metrics) if metrics else None,
    }


def head_metrics(result: AttentionResult) -> list[dict[str, Any]] | None:
    """`attnviz heads` numbers for the page's table, when the maps can be measured (single heads)."""
    from ..heads import measure

    try:
        return [h.to_json() for h in measure(result)]
    except SelectionError:
        return None


def _json_for_script(doc: dict[str, Any]) -> str:
    # inside <script> only '</' and '<!--' can end or confuse it; escaping '<' covers both
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def fragment(result: AttentionResult, metrics: Sequence[dict[str, Any]] | None = None, styles: bool = True) -> str:
    """One viewer: a div, its styles (unless the page has them) and its script."""
    uid = "attnviz-" + secrets.token_hex(6)
    data = _json_for_script(payload(result, metrics))
    style = f"<style>{_asset('viewer.css')}</style>\n" if styles else ""
    return (
        f'<div class="attnviz" id="{uid}">loading attention…</div>\n{style}'
        f'<script type="application/json" id="{uid}-data">{data}</script>\n'
        f"<script>{_asset('viewer.js').strip()}(document.getElementById({json.dumps(uid)}), "
        f"JSON.parse(document.getElementById({json.dumps(uid + '-data')}).textContent));</script>\n"
    )


def notebook(result: AttentionResult) -> str:
    """What `AttentionResult._repr_html_` shows: the viewer, with head metrics when they apply."""
    return fragment(result, head_metrics(result))


def page(results: Sequence[AttentionResult], title: str | None = None, with_metrics: bool = True) -> str:
    """A whole HTML document with one viewer per result (styles once, in the head)."""
    name = title or (results[0].text if len(results) == 1 else f"{len(results)} sentences")
    viewers = "\n".join(fragment(r, head_metrics(r) if with_metrics else None, styles=False) for r in results)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>attnviz · {html.escape(name)}</title>\n"
        f"<style>body {{ margin: 16px; background: #fafafa; }}\n{_asset('viewer.css')}</style>\n</head>\n<body>\n"
        f"{viewers}\n</body>\n</html>\n"
    )


def index(entries: Sequence[tuple[str, str, int | None]], model: str) -> str:
    """The index of an export's pages: (file name, sentence, line number) each."""
    rows = "\n".join(
        f'<li><a href="{html.escape(file, quote=True)}">{html.escape(text)}</a>'
        f"{f' <small>(line {line})</small>' if line is not None else ''}</li>"
        for file, text, line in entries
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>attnviz · {html.escape(model)}</title>\n"
        "<style>body { font: 14px/1.5 system-ui, sans-serif; margin: 24px; } li { margin: 2px 0; }</style>\n"
        f"</head>\n<body>\n<h1>{html.escape(model)}</h1>\n<ol>\n{rows}\n</ol>\n</body>\n</html>\n"
    )
