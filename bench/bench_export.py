"""`attnviz export` against matplotlib loops, side by side in one run.

    .venv/bin/python bench/bench_export.py [--view head|layer|model] [--sentences 6] [--words N]
        [--repeat 3] [--annotate off|auto] [--formats png,svg,pdf] [--before OLD_IMAGE_PY]

Sides (each run is a fresh process; the sides alternate which goes first in each round):

  attnviz      `export` with its default drawing processes (one per core)
  attnviz -j1  `export --jobs 1`: drawing in the one process, as the loops do
  competent    what a competent matplotlib user writes: one figure per sentence (its layout
               for the view: one heatmap, a layer's heads, or layers × heads), built once and
               reused for all that sentence's images: imshow once, then set_data, set_title
               and savefig; PNG through Pillow at zlib level 1, as attnviz encodes
  naive        a new figure per image, tight_layout, savefig's defaults (the old reference)
  before       (--before FILE) `export --jobs 1` with an older attnviz/render/image.py, e.g.
               `git show REV:attnviz/render/image.py > /tmp/image_before.py`

Every side draws the same images: the same labels (thinned alike for long inputs), panel and
row titles, title, values in the cells (`--annotate auto`: same rule as attnviz) and a
labelled colour bar, at the same size (asserted: PNG pixels, SVG width/height, PDF MediaBox).
For SVG and PDF every side saves with attnviz's settings: TrueType (Type 42) PDF fonts, SVG
text as <text>, the same font list. Both sides get the same environment (PYTHONUNBUFFERED
removed for all) and the same thread settings. The model is loaded before timing on every
side; attnviz's time includes its forward passes and starting its drawing processes, the
loops' does not (their attention is computed before the clock starts). Peak memory is each
side's own process, and for attnviz also its largest drawing process.

`--words N` makes each sentence N common words (N + 2 tokens): `--view model --words 58`
is the 60-token grid of issue 14.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # line-by-line writers alike on all sides
SENTENCES = [
    "I have a dream that one day this nation will rise up.",
    "The quick brown fox jumps over the lazy dog.",
    "Attention is all you need.",
    "She sells sea shells by the sea shore.",
    "The bank raised its interest rates again.",
    "Colorless green ideas sleep furiously.",
    "A journey of a thousand miles begins with a single step.",
    "To be or not to be, that is the question.",
]
WORDS = (
    "attention lets every token of a paragraph look at every other token and weigh what it finds "
    "so that the model can tell which words matter most for the meaning of the sentence as a whole"
).split()


def texts(args: argparse.Namespace) -> list[str]:
    if not args.words:
        return (SENTENCES * 10)[: args.sentences]
    return [" ".join((WORDS[i:] + WORDS)[: args.words]) for i in range(args.sentences)]


# ---------------------------------------------------------------- the loops (run in a child process)


def _loop_sheet(task: Any) -> Any:
    """attnviz's own measurements of this layout: the figure size and label rules every side uses."""
    from attnviz.render.image import Sheet

    return Sheet(task.layout, task.style)


def _grid(fig: Any, task: Any, sheet: Any) -> tuple[list[Any], Any]:
    """A grid of heatmap axes (labels on the outer ones), titles and a labelled colour bar; its images."""
    layout, style, m = task.layout, task.style, sheet.m
    width, height = sheet.size
    left, bottom, grid_w, grid_h = sheet.grid
    boxes, cols = sheet.boxes, layout.cols
    axes = fig.subplots(
        layout.rows,
        layout.cols,
        squeeze=False,
        sharex=True,
        sharey=True,
        gridspec_kw={
            "left": left / width,
            "right": (left + grid_w) / width,
            "bottom": bottom / height,
            "top": (bottom + grid_h) / height,
            # the gaps between panels as attnviz leaves them, as fractions of a panel
            "wspace": (boxes[1][0] - boxes[0][0]) / boxes[0][2] - 1 if cols > 1 else 0,
            "hspace": (boxes[0][1] - boxes[cols][1]) / boxes[0][3] - 1 if layout.rows > 1 else 0,
        },
    )
    from attnviz.render.image import printable_label

    q = [printable_label(t) for t in layout.query][:: m.step]
    k = [printable_label(t) for t in layout.key][:: m.step]
    nq, nk = len(layout.query), len(layout.key)
    images = []
    for p, ax in enumerate(axes.flat):
        images.append(ax.imshow(_zeros(nq, nk), cmap=style.cmap, vmin=0, vmax=style.vmax, aspect="auto"))
        if layout.panel_titles and layout.panel_titles[p]:
            ax.set_title(layout.panel_titles[p], fontsize=8, pad=3)
    for ax in axes[-1]:
        ax.set_xticks(range(0, nk, m.step), k, rotation=90 if m.rotate_x else 0, fontsize=m.tick_size)
    for r, ax in enumerate(axes[:, 0]):
        ax.set_yticks(range(0, nq, m.step), q, fontsize=m.tick_size)
        if layout.row_titles:
            ax.set_ylabel(layout.row_titles[r], fontsize=9)
    fig.supxlabel("key", fontsize=9)
    fig.supylabel("query", fontsize=9)
    cx, cy, cw, ch = sheet.colorbar
    colorbar = fig.colorbar(images[0], cax=fig.add_axes((cx / width, cy / height, cw / width, ch / height)))
    colorbar.set_label("attention weight", fontsize=8)
    return images, fig.suptitle("", fontsize=11)


def _zeros(nq: int, nk: int) -> Any:
    import numpy as np

    return np.zeros((nq, nk), np.float32)


def _values(ax: Any, w: Any, style: Any) -> list[Any]:
    from attnviz.render.image import _value_text

    return [
        ax.text(j, i, _value_text(float(w[i, j])), ha="center", va="center", fontsize=7.5)
        for i in range(w.shape[0])
        for j in range(w.shape[1])
    ]


def competent(tasks: list[Any], folder: Path, fmt: str) -> int:
    """One figure per sentence and layout, reused for all its images (set_data, set_title, savefig)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from attnviz.render.image import _contrast, _value_text

    count = 0
    save = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    for task in tasks:
        sheet = _loop_sheet(task)
        fig = Figure(figsize=sheet.size, dpi=task.style.dpi)
        images, title = _grid(fig, task, sheet)
        first = task.items[0].weights
        texts = [_values(im.axes, w, task.style) for im, w in zip(images, first)] if sheet.m.annotate else []
        cmap, vmax = colormaps[task.style.cmap], task.style.vmax
        for item in task.items:
            for p, image in enumerate(images):
                image.set_data(item.weights[p])
            for panel, w in zip(texts, item.weights):
                for t, value in zip(panel, w.reshape(-1).tolist()):
                    t.set_text(_value_text(value))
                    t.set_color(_contrast(cmap, value / vmax))
            title.set_text(item.title)
            fig.savefig(folder / item.name, dpi=task.style.dpi, **save)  # type: ignore[arg-type]
            count += 1
    return count


def naive(tasks: list[Any], folder: Path, fmt: str) -> int:
    """A new figure per image, as a first script does it (tight_layout, savefig's defaults)."""
    import matplotlib.pyplot as plt

    count = 0
    for task in tasks:
        sheet = _loop_sheet(task)
        for item in task.items:
            fig = plt.figure(figsize=sheet.size, dpi=task.style.dpi)
            images, title = _grid(fig, task, sheet)
            for p, image in enumerate(images):
                image.set_data(item.weights[p])
                if sheet.m.annotate:
                    _values(image.axes, item.weights[p], task.style)
            title.set_text(item.title)
            fig.tight_layout()
            fig.savefig(folder / item.name, dpi=task.style.dpi)
            plt.close(fig)
            count += 1
    return count


def child(args: argparse.Namespace) -> None:
    """One side, in this fresh process: load the model, then time drawing every image."""
    if args.child == "before":
        current = importlib.import_module("attnviz.render.image")
        spec = importlib.util.spec_from_file_location("attnviz.render.image", args.before)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["attnviz.render.image"] = module  # the export below draws with the older module
        spec.loader.exec_module(module)
        for name in set(vars(current)) - set(vars(module)):  # helpers today's export asks for that it lacked
            setattr(module, name, getattr(current, name))
    import resource
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    warnings.simplefilter("ignore")  # tight_layout's notes about the colour bar axes

    from attnviz.api import run_batch
    from attnviz.backends.registry import cached
    from attnviz.backends.types import Device, Inputs, LoadOptions
    from attnviz.export.plan import plan
    from attnviz.export.run import ExportOptions, export, from_model
    from attnviz.inputs import parse_lines
    from attnviz.render.image import Style, _label_families
    from attnviz.spec import ALL, ExportView, ViewSpec
    from attnviz.views import apply

    lines = texts(args)
    style = Style(fmt=args.fmt, annotate=args.annotate)
    view = ExportView(args.view)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    backend = cached("minilm", LoadOptions(device=Device.CPU))
    if args.child in ("attnviz", "attnviz-j1", "before"):
        sentences = parse_lines("\n".join(lines).encode(), "bench")
        options = ExportOptions(style=style, view=view, jobs=0 if args.child == "attnviz" else 1)
        start = time.perf_counter()
        count = export(sentences, from_model(lambda: backend), folder, options).written
    else:
        results = run_batch(backend, [Inputs(t) for t in lines])
        tasks = [
            replace(task, items=tuple(replace(i, name=f"{n:04d}-{i.name}") for i in task.items))  # one name each
            for n, r in enumerate(results)
            for task in plan(apply(r, ViewSpec(layers=ALL)), "x", {}, view, style)
        ]
        # the settings attnviz saves SVG and PDF with, as a competent user sets them
        rc: Any = {"pdf.fonttype": 42, "svg.fonttype": "none", "font.family": list(_label_families())}
        with matplotlib.rc_context(rc if args.fmt != "png" else {}):
            start = time.perf_counter()
            count = (competent if args.child == "competent" else naive)(tasks, folder, args.fmt)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB: the largest drawing process
    print(json.dumps({"seconds": seconds, "images": count, "peak_kib": peak, "workers_kib": workers}))


# ---------------------------------------------------------------- the driver


def run_side(side: str, args: argparse.Namespace, fmt: str, folder: Path) -> dict[str, Any]:
    """One side as a fresh process; its drawing time and peak memory."""
    cmd = [sys.executable, __file__, "--child", side, "--fmt", fmt, "--out", str(folder), "--view", args.view]
    cmd += ["--sentences", str(args.sentences), "--words", str(args.words), "--annotate", args.annotate]
    if args.before:
        cmd += ["--before", args.before]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, cwd=HERE.parent)
    if proc.returncode:
        raise SystemExit(f"{side} failed:\n{proc.stderr.decode()}")
    report: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return report


def page_size(path: Path) -> tuple[float, float]:
    """PNG pixels, SVG width/height (pt) or PDF MediaBox (pt), rounded."""
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    head = path.read_bytes()[:4000] if path.suffix == ".svg" else path.read_bytes()
    pattern = (
        rb'width="([\d.]+)pt" height="([\d.]+)pt"'
        if path.suffix == ".svg"
        else rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]"
    )
    match = re.search(pattern, head)
    assert match, path
    return round(float(match[1]), 1), round(float(match[2]), 1)


def files(folder: Path, fmt: str) -> list[Path]:
    return sorted(folder.glob(f"*.{fmt}"), key=lambda p: p.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--view", default="head", choices=["head", "layer", "model"])
    parser.add_argument("--sentences", type=int, default=6)
    parser.add_argument("--words", type=int, default=0, help="sentences of N common words (0: the classic ones)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--annotate", default="off", help="off (default) or auto (values in small cells)")
    parser.add_argument("--formats", default="png,svg,pdf", help="comma-separated: png, svg, pdf")
    parser.add_argument("--sides", default="attnviz,attnviz-j1,competent,naive")
    parser.add_argument("--before", default="", help="an older attnviz/render/image.py to time as a side")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--fmt", default="png", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sides = [s for s in args.sides.split(",") if s] + (["before"] if args.before else [])
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fmt in formats:
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
            for rep in range(args.repeat):
                order = sides[rep % len(sides) :] + sides[: rep % len(sides)]  # each side leads in turn
                for side in order:
                    folder = root / f"{fmt}-{side}-{rep}"
                    runs[side].append(run_side(side, args, fmt, folder))
                    if rep:
                        shutil.rmtree(folder)  # keep the first round's files for the size check
            images = {s: runs[s][0]["images"] for s in sides}
            assert len(set(images.values())) == 1, images
            reference = (
                [page_size(p) for p in files(root / f"{fmt}-attnviz-j1-0", fmt)] if "attnviz-j1" in sides else []
            )
            for side in sides:
                sizes = [page_size(p) for p in files(root / f"{fmt}-{side}-0", fmt)]
                assert len(sizes) == images[side], (side, len(sizes))
                assert sizes == reference, (side, sizes[:3], reference[:3])
            measured[fmt] = runs
    tokens = f"{args.words + 2} tokens" if args.words else "10-16 tokens"
    n = next(iter(next(iter(measured.values())).values()))[0]["images"]
    print(
        f"export --view {args.view}: {args.sentences} sentences ({tokens}), {n} images per format, "
        f"{args.repeat} runs a side (fresh processes, sides alternating), --annotate {args.annotate}"
    )
    base = "competent" if "competent" in sides else sides[0]
    for fmt, runs in measured.items():
        med = {s: statistics.median(r["seconds"] for r in runs[s]) for s in sides}
        print(f"{fmt.upper()}")
        for side in sides:
            peak = max(r["peak_kib"] for r in runs[side]) / 1024
            workers = max(r["workers_kib"] for r in runs[side]) / 1024 if side == "attnviz" else 0
            extra = f" + drawing processes ≤ {workers:.0f} MiB each" if workers else ""
            ratio = med[base] / med[side]
            print(
                f"  {side:11} median {med[side]:7.3f} s  {med[side] / n * 1000:8.1f} ms an image  "
                f"{ratio:6.1f}x vs {base}  peak {peak:5.0f} MiB{extra}"
            )
        pairs = [(side, base) for side in sides if side != base]
        if "before" in sides and "attnviz-j1" in sides:
            pairs.append(("attnviz-j1", "before"))  # the same process layout, the older image code
        for side, other in pairs:
            print(
                f"RESULT export --view {args.view} --image {fmt}: {side} {med[side] / n * 1000:.1f} ms an image vs "
                f"{other} {med[other] / n * 1000:.1f} ms = {med[other] / med[side]:.1f}x ({tokens}, {n} images)"
            )


if __name__ == "__main__":
    main()
