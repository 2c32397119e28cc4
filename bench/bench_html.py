"""Side by side: attnviz's offline HTML viewer against BertViz's `head_view`, same weights.

For about 10, 100 and 500 tokens (MiniLM, 6 layers x 12 heads) it writes the attnviz page
(`attnviz show TEXT --format html`) and dumps the very same float32 weights
(`--layer all --format npz`); a small helper run under BertViz's own venv feeds them to
`bertviz.head_view(attention, tokens, html_action='return')` and saves `.data`, exactly as
BertViz's README says. Each page is then opened in Debian's chromium (Playwright from this
venv, `executable_path`, never a downloaded browser), the tools alternating, a fresh tab
each time, and the medians are printed.

BertViz's page loads require.js, d3 and jQuery from a public CDN, which this machine
cannot reach. It is measured two ways:
  - CDN blocked: every non-file request aborted (as offline): time to the `load` event and
    what got drawn;
  - CDN served locally: those requests answered with the same libraries from npm
    (`npm pack`, done by this script), ready when BertViz has drawn its token text.

BertViz lives in a venv of its own (CPU torch first, so pip does not pull CUDA):

    python3.11 -m venv /tmp/bertviz-venv
    /tmp/bertviz-venv/bin/pip install torch==2.13.0
    echo torch==2.13.0 > /tmp/bv-constraints.txt
    /tmp/bertviz-venv/bin/pip install -c /tmp/bv-constraints.txt bertviz

Run (needs `npm` for the libraries, or `--libs DIR` from an earlier `--keep DIR` run):

    env -u PYTHONUNBUFFERED .venv/bin/python bench/bench_html.py --bertviz-python /tmp/bertviz-venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
ATTNVIZ_READY = ".attnviz[data-ready='1']"
BERTVIZ_READY = "#vis svg text"  # head_view.js draws the token columns as svg <text>
NAMES = (("attnviz", "html"), ("weights", "npz"), ("bertviz", "html"))

# The URLs BertViz 1.4.1 loads (head_view.py, head_view.js) -> (npm package, file in it).
# jQuery 2.0.0 was never published to npm: 2.1.0 is the oldest 2.x there. npm's requirejs
# has no require.min.js: the unminified require.js of the same version stands in.
LIBS = {
    "/require.js/2.3.6/require.min.js": ("requirejs@2.3.6", "require.js"),
    "/d3/5.7.0/d3.min.js": ("d3@5.7.0", "dist/d3.min.js"),
    "/jquery/2.0.0/jquery.min.js": ("jquery@2.1.0", "dist/jquery.min.js"),
}

# Run under BertViz's venv: argv = weights.npz (attnviz --format npz), out.html.
HELPER = """
import sys
import numpy as np
import torch
from bertviz import head_view

saved = np.load(sys.argv[1])
layers = saved["0/encoder/attention"]  # float32 [layers, heads, n, n]
tokens = [str(t) for t in saved["0/encoder/query_tokens"]]
attention = tuple(torch.tensor(layer)[None] for layer in layers)
html_head_view = head_view(attention, tokens, html_action="return")
with open(sys.argv[2], "w") as file:
    file.write(html_head_view.data)
"""


@dataclass
class Load:
    """One opening of one page in a fresh tab."""

    ready: float | None  # seconds from navigation to the ready selector; None: never
    load_event: float  # seconds, from the Navigation Timing entry
    heap_mb: float  # JSHeapUsedSize (CDP Performance.getMetrics) after ready
    texts: int  # svg/DOM <text> elements drawn
    lines: int  # svg <line> elements drawn
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def texts(root: Path) -> dict[int, str]:
    raw = (root / "sample_inputs" / "long.txt").read_text()
    paragraph = " ".join(line for line in raw.splitlines() if not line.startswith("#")).split()
    words = raw.split()
    return {
        10: " ".join(paragraph[:8]),  # [CLS] + 8 words + [SEP]
        100: " ".join(paragraph[:83]),
        500: " ".join((words * 4)[:390]),  # as bench/html_shots.py: about 500 tokens
    }


def attnviz(text: str, fmt: str, out: Path, *extra: str) -> None:
    with open(out, "wb") as f:
        cmd = [sys.executable, "-m", "attnviz", "show", text, "--truncate", *extra, "--format", fmt]
        subprocess.run(cmd, stdout=f, check=True)


def fetch_libs(folder: Path) -> dict[str, Path]:
    """npm pack the libraries of LIBS into folder; URL suffix -> local file."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = sorted({spec for spec, _ in LIBS.values()})
    missing = [s for s in specs if not (folder / s).is_dir()]
    if missing:
        out = subprocess.run(
            ["npm", "pack", *missing, "--pack-destination", str(folder)], capture_output=True, text=True, check=True
        )
        for spec, tgz in zip(missing, out.stdout.split()):
            with tarfile.open(folder / tgz) as tar:
                tar.extractall(folder / spec, filter="data")
    return {suffix: folder / spec / "package" / file for suffix, (spec, file) in LIBS.items()}


def open_page(browser: Browser, path: Path, ready: str | None, libs: dict[str, Path] | None, timeout: float) -> Load:
    """Open path in a fresh context; non-file requests are served from libs, else aborted.

    With libs, a page that has not asked for every one of them 10 s after its `load` event
    never ran its script (BertViz's 500-token page: its inline script is too long for V8),
    so it is not waited for further.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    requests: list[str] = []
    errors: list[str] = []

    def route(r: Route) -> None:
        url = r.request.url
        local = next((p for suffix, p in (libs or {}).items() if url.endswith(suffix)), None)
        if url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        elif local is not None:
            r.fulfill(path=str(local), content_type="application/javascript")
        else:
            r.abort("internetdisconnected")

    context.route("**/*", route)
    tab = context.new_page()
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("pageerror", lambda e: errors.append(str(e).splitlines()[0]))
    tab.on("console", lambda m: errors.append(m.text.splitlines()[0]) if m.type == "error" else None)
    cdp = context.new_cdp_session(tab)
    cdp.send("Performance.enable")
    started = time.perf_counter()
    took: float | None = None
    try:
        tab.goto(path.as_uri(), wait_until="load", timeout=timeout * 1000)
        loaded = time.perf_counter()
        while ready and took is None:
            try:
                tab.wait_for_selector(ready, state="attached", timeout=500)
                took = time.perf_counter() - started
            except PlaywrightTimeout:
                waited = time.perf_counter() - loaded
                unasked = [s for s in libs or {} if not any(u.endswith(s) for u in requests)]
                if unasked and waited > 10:
                    errors.append(f"script never ran: no request for {', '.join(unasked)} 10 s after load")
                    break
                if waited > timeout:
                    errors.append(f"not ready {timeout:.0f} s after load")
                    break
    except PlaywrightError as exc:
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    try:
        load_ms = tab.evaluate("performance.getEntriesByType('navigation')[0]?.loadEventEnd ?? NaN")
        counts = tab.evaluate("[document.querySelectorAll('text').length, document.querySelectorAll('line').length]")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    except PlaywrightError as exc:
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        load_ms, counts, metrics = float("nan"), [0, 0], {}
    context.close()
    heap = metrics.get("JSHeapUsedSize", float("nan")) / 1e6
    return Load(took, load_ms / 1000, heap, counts[0], counts[1], requests, errors)


def med(values: list[float | None]) -> float | None:
    """The median, or None when any run never got there."""
    return None if None in values else statistics.median(v for v in values if v is not None)


def seconds(value: float | None) -> str:
    return "never (see notes)" if value is None else f"{value:.2f} s"


def errors(runs: list[Load]) -> list[str]:
    return sorted({e for r in runs for e in r.errors})


def summarize(
    n: int, ours: Path, theirs: Path, a: list[Load], b: list[Load], c: list[Load]
) -> tuple[tuple[str, ...], list[str]]:
    """One table row and the notes for one size: a = attnviz, b = BertViz CDN-local, c = CDN blocked."""
    a_ready, b_ready = med([r.ready for r in a]), med([r.ready for r in b])
    a_size, b_size = ours.stat().st_size, theirs.stat().st_size
    offline = "drew tokens" if c[-1].texts else f"blank, load {med([r.load_event for r in c]):.2f} s"
    ratio = f"size x{b_size / a_size:.1f}" + (f", time x{b_ready / a_ready:.1f}" if a_ready and b_ready else "")
    row = (
        str(n),
        f"{a_size / 1e6:.2f} MB",
        seconds(a_ready),
        f"{b_size / 1e6:.2f} MB",
        seconds(b_ready),
        offline,
        ratio,
    )
    outside = sorted({u for r in a for u in r.requests if u != ours.as_uri()})
    heap = {name: med([r.heap_mb for r in runs]) for name, runs in (("attnviz", a), ("BertViz", b))}
    notes = [
        f"{n} tokens, attnviz: requests other than its own file: {outside or 'none'}; errors: {errors(a) or 'none'}",
        f"{n} tokens, BertViz CDN-local: {b[-1].texts} <text>, {b[-1].lines} <line>, "
        f"load event {med([r.load_event for r in b]):.2f} s; errors: {errors(b) or 'none'}",
        f"{n} tokens, JS heap after ready (median): attnviz {heap['attnviz']:.0f} MB, BertViz {heap['BertViz']:.0f} MB",
        f"{n} tokens, BertViz CDN-blocked: requests {sorted({u for r in c for u in r.requests})}; errors: {errors(c)}",
    ]
    return row, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bertviz-python", default=os.environ.get("BERTVIZ_PYTHON", "/tmp/bertviz-venv/bin/python"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500], choices=[10, 100, 500])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=300, help="seconds one page may take to get ready")
    ap.add_argument("--libs", type=Path, help="folder for the npm packages (default: a temporary one)")
    ap.add_argument("--keep", type=Path, help="write the pages here instead of a temporary folder")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        libs = fetch_libs(args.libs or folder / "libs")
        version = subprocess.run(
            [args.bertviz_python, "-c", "import importlib.metadata as m; print(m.version('bertviz'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"bertviz {version}; served locally: " + ", ".join(f"{s} {f}" for s, f in LIBS.values()))
        print("local library bytes: " + ", ".join(f"{p.name} {p.stat().st_size / 1e3:.0f} kB" for p in libs.values()))

        pages: list[tuple[int, Path, Path]] = []
        for size in args.sizes:
            ours, npz, theirs = (folder / f"{name}-{size}.{ext}" for name, ext in NAMES)
            text = texts(ROOT)[size]
            attnviz(text, "html", ours)
            attnviz(text, "npz", npz, "--layer", "all")  # the page holds every layer too
            subprocess.run([args.bertviz_python, "-c", HELPER, str(npz), str(theirs)], check=True)
            pages.append((int(np.load(npz)["0/encoder/attention"].shape[-1]), ours, theirs))

        rows, notes = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for n, ours, theirs in pages:
                a: list[Load] = []
                b: list[Load] = []
                c: list[Load] = []
                for _ in range(args.repeats):  # alternate, so machine noise hits every tool alike
                    a.append(open_page(browser, ours, ATTNVIZ_READY, None, args.timeout))
                    b.append(open_page(browser, theirs, BERTVIZ_READY, libs, args.timeout))
                    c.append(open_page(browser, theirs, None, None, args.timeout))
                row, more = summarize(n, ours, theirs, a, b, c)
                rows.append(row)
                notes += more
                print(f"done: {n} tokens", file=sys.stderr)
            browser.close()

    head = (
        "tokens",
        "attnviz size",
        "attnviz ready (median)",
        "BertViz size",
        "BertViz ready CDN-local (median)",
        "BertViz offline (CDN blocked)",
        "ratio BertViz/attnviz",
    )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\nChromium {CHROMIUM}, {args.repeats} runs each, alternating; tokens include [CLS] and [SEP]\n")
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
