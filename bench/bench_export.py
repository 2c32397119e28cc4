"""`attnviz export --view head` against a naive matplotlib loop, side by side in one run.

    .venv/bin/python bench/bench_export.py [--sentences 6] [--repeat 3] [--annotate off|auto]
                                           [--formats png,svg,pdf]

The naive loop makes one new figure per head: imshow, tick labels on both axes,
title, colourbar, values in the cells (same rule as attnviz), tight_layout, savefig,
close. It draws the same labels, title and values at the same size (asserted: PNG
pixels, SVG width/height, PDF MediaBox). For SVG and PDF both sides save with the
same settings: TrueType (Type 42) PDF fonts, SVG text as <text>, the same font list.
Each format runs `--repeat` times, the sides alternating which goes first; medians.
Model load is excluded from both: the model is loaded once before timing; attnviz's
time includes its forward passes and starting its drawing processes, the naive
loop's does not. A last line times the whole CLI (interpreter start and model load
included, PNG) for reference.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from attnviz.api import run_batch  # noqa: E402
from attnviz.backends.registry import cached  # noqa: E402
from attnviz.backends.types import Device, Inputs, LoadOptions  # noqa: E402
from attnviz.export.run import ExportOptions, export, from_model  # noqa: E402
from attnviz.inputs import parse_lines  # noqa: E402
from attnviz.render.image import Layout, Sheet, Style, _label_families, _value_text, printable_label  # noqa: E402

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


def naive(results, folder: Path, style: Style) -> int:
    """One fresh figure per head, as a hand-written script would do it."""
    count = 0
    for n, result in enumerate(results):
        stack = result.stacks[0]
        q = [printable_label(t) for t in stack.query.texts]
        k = [printable_label(t) for t in stack.key.texts]
        titles = [f"{result.model} · {stack.name} · layer {i} · head {j}" for i in range(6) for j in range(12)]
        layout = Layout(1, 1, stack.query.texts, stack.key.texts, widest_title=max(titles, key=len))
        sheet = Sheet(layout, style)  # for the size only
        width, height = sheet.size
        annotate, rotate = sheet.m.annotate, sheet.m.rotate_x
        plt.close(sheet.fig)
        for layer in range(stack.layers):
            for head in range(stack.heads):
                w = stack.weights[layer, head]
                fig, ax = plt.subplots(figsize=(width, height), dpi=style.dpi)
                image = ax.imshow(w, cmap=style.cmap, vmin=0, vmax=style.vmax)
                ax.set_xticks(range(len(k)), k, rotation=90 if rotate else 0, fontsize=sheet.m.tick_size)
                ax.set_yticks(range(len(q)), q, fontsize=sheet.m.tick_size)
                ax.set_xlabel("key")
                ax.set_ylabel("query")
                ax.set_title(f"{result.model} · {stack.name} · layer {layer} · head {head}")
                fig.colorbar(image, ax=ax)
                if annotate:
                    for i in range(w.shape[0]):
                        for j in range(w.shape[1]):
                            ax.text(j, i, _value_text(float(w[i, j])), ha="center", va="center", fontsize=7.5)
                fig.tight_layout()
                fig.savefig(folder / f"{n:04d}-L{layer:02d}-H{head:02d}.{style.fmt}", dpi=style.dpi)
                plt.close(fig)
                count += 1
    return count


def page_size(path: Path) -> tuple[float, float]:
    """PNG pixels, SVG width/height (pt) or PDF MediaBox (pt), rounded."""
    if path.suffix == ".png":
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


def bench_format(fmt: str, args, sentences, backend, results, root: Path) -> dict:
    """One format: both sides `--repeat` times, alternating; medians and the asserted sizes."""
    style = Style(fmt=fmt, annotate=args.annotate)
    naive_s, ours_s, images = [], [], 0
    for rep in range(args.repeat):
        ours_dir, naive_dir = root / f"{fmt}-attnviz-{rep}", root / f"{fmt}-naive-{rep}"
        naive_dir.mkdir()

        def run_ours(ours_dir: Path = ours_dir) -> int:
            start = time.perf_counter()
            summary = export(sentences, from_model(lambda: backend), ours_dir, ExportOptions(style=style))
            ours_s.append(time.perf_counter() - start)
            return summary.written

        def run_naive(naive_dir: Path = naive_dir) -> int:
            start = time.perf_counter()
            # the same settings attnviz uses for vector files, as a competent user would set them
            rc = {"pdf.fonttype": 42, "svg.fonttype": "none", "font.family": list(_label_families())}
            with matplotlib.rc_context(rc if fmt != "png" else {}):
                count = naive(results, naive_dir, style)
            naive_s.append(time.perf_counter() - start)
            return count

        sides = (run_ours, run_naive) if rep % 2 == 0 else (run_naive, run_ours)
        counts = {side.__name__: side() for side in sides}
        images = counts["run_naive"]
        assert counts["run_ours"] == images, counts
    ours_files = sorted((root / f"{fmt}-attnviz-0").glob(f"*.{fmt}"))
    naive_files = sorted((root / f"{fmt}-naive-0").glob(f"*.{fmt}"))
    assert len(ours_files) == len(naive_files) == images
    for a, b in zip(ours_files, naive_files):
        assert page_size(a) == page_size(b), (a.name, page_size(a), b.name, page_size(b))
    return {
        "images": images,
        "ours": statistics.median(ours_s),
        "naive": statistics.median(naive_s),
        "sizes": sorted({page_size(p) for p in ours_files}),
        "kb": statistics.median(p.stat().st_size for p in ours_files) / 1024,
        "naive_kb": statistics.median(p.stat().st_size for p in naive_files) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--annotate", default="off", help="off (default, the naive loop's cheapest case) or auto (values in cells)"
    )
    parser.add_argument("--formats", default="png,svg,pdf", help="comma-separated: png, svg, pdf")
    args = parser.parse_args()
    texts = (SENTENCES * 10)[: args.sentences]
    sentences = parse_lines("\n".join(texts).encode(), "bench")
    backend = cached("minilm", LoadOptions(device=Device.CPU))
    results = run_batch(backend, [Inputs(t) for t in texts])
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fmt in formats:
            measured[fmt] = bench_format(fmt, args, sentences, backend, results, root)

        cli_dir = root / "cli"
        text_file = root / "sentences.txt"
        text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        start = time.perf_counter()
        cli = [sys.executable, "-m", "attnviz", "export", "--input", str(text_file), "--out", str(cli_dir)]
        subprocess.run([*cli, "--device", "cpu", "--annotate", args.annotate], check=True, capture_output=True)
        cli_s = time.perf_counter() - start

    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    images = next(iter(measured.values()))["images"]
    print(
        f"{args.sentences} sentences × 6 layers × 12 heads = {images} labeled images per format, "
        f"{args.repeat} runs each (sides alternating), --annotate {args.annotate}"
    )
    for fmt, m in measured.items():
        ours, slow = m["ours"], m["naive"]
        print(f"{fmt.upper():4} sizes {m['sizes']}, median file {m['kb']:.1f} KiB (naive {m['naive_kb']:.1f} KiB)")
        print(f"     naive loop : median {slow:6.2f} s  {images / slow:7.1f} images/s")
        print(
            f"     attnviz    : median {ours:6.2f} s  {images / ours:7.1f} images/s  (forward passes + process start)"
        )
        print(f"     ratio      : {slow / ours:.1f}x")
    print(f"peak RSS   : this process (model + naive loops) {self_mib:.0f} MiB; largest child {child_mib:.0f} MiB")
    print(f"whole CLI  : {cli_s:.2f} s = {images / cli_s:.1f} PNGs/s including interpreter start and model load")
    for fmt, m in measured.items():
        ours, slow = m["ours"], m["naive"]
        print(
            f"RESULT attnviz export --view head --image {fmt}: {images / ours:.0f} images/s vs naive loop "
            f"{images / slow:.1f} images/s = {slow / ours:.1f}x ({images} files, --annotate {args.annotate}, "
            "model load excluded)"
        )


if __name__ == "__main__":
    main()
