"""`attnviz export --view head` against a naive matplotlib loop, side by side in one run.

    .venv/bin/python bench/bench_export.py [--sentences 6] [--repeat 3] [--annotate off|auto]

The naive loop makes one new figure per head: imshow, tick labels on both axes,
title, colourbar, values in the cells (same rule as attnviz), tight_layout, savefig,
close. It draws the same labels, title and values at the same pixel size (asserted).
Model load is excluded from both: the model is loaded once before timing; attnviz's
time includes its forward passes and starting its drawing processes, the naive
loop's does not. A last line times the whole CLI (interpreter start and model load
included) for reference.
"""

from __future__ import annotations

import argparse
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
from attnviz.render.image import Layout, Sheet, Style, _value_text, printable_label  # noqa: E402

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
                fig.savefig(folder / f"{n:04d}-L{layer:02d}-H{head:02d}.png", dpi=style.dpi)
                plt.close(fig)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--annotate", default="off", help="off (default, the naive loop's cheapest case) or auto (values in cells)"
    )
    args = parser.parse_args()
    texts = (SENTENCES * 10)[: args.sentences]
    sentences = parse_lines("\n".join(texts).encode(), "bench")
    backend = cached("minilm", LoadOptions(device=Device.CPU))
    results = run_batch(backend, [Inputs(t) for t in texts])
    style = Style(annotate=args.annotate)
    naive_s, ours_s, images = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rep in range(args.repeat):
            ours_dir, naive_dir = root / f"attnviz-{rep}", root / f"naive-{rep}"
            naive_dir.mkdir()
            start = time.perf_counter()
            options = ExportOptions(style=style)
            summary = export(sentences, from_model(lambda: backend), ours_dir, options)
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            images = naive(results, naive_dir, style)
            naive_s.append(time.perf_counter() - start)
            assert summary.written == images, (summary.written, images)
        ours_png = sorted(p for p in (root / "attnviz-0").glob("*.png"))
        naive_png = sorted((root / "naive-0").glob("*.png"))
        assert len(ours_png) == len(naive_png) == images
        for a, b in zip(ours_png, naive_png):
            with Image.open(a) as x, Image.open(b) as y:
                assert x.size == y.size, (a.name, x.size, b.name, y.size)
        sizes = sorted({Image.open(p).size for p in ours_png})

        cli_dir = root / "cli"
        text_file = root / "sentences.txt"
        text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        start = time.perf_counter()
        cli = [sys.executable, "-m", "attnviz", "export", "--input", str(text_file), "--out", str(cli_dir)]
        subprocess.run([*cli, "--device", "cpu", "--annotate", args.annotate], check=True, capture_output=True)
        cli_s = time.perf_counter() - start

    ours, slow = statistics.median(ours_s), statistics.median(naive_s)
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"{args.sentences} sentences × 6 layers × 12 heads = {images} labeled PNGs, sizes {sizes}, {args.repeat} runs"
    )
    print(f"naive loop : median {slow:6.2f} s  {images / slow:7.1f} images/s")
    print(
        f"attnviz    : median {ours:6.2f} s  {images / ours:7.1f} images/s  (forward passes + process start included)"
    )
    print(f"ratio      : {slow / ours:.1f}x   (same labels, title, values and pixel size: asserted equal sizes)")
    print(f"peak RSS   : this process (model + naive loop) {self_mib:.0f} MiB; largest child {child_mib:.0f} MiB")
    print(f"whole CLI  : {cli_s:.2f} s = {images / cli_s:.1f} images/s including interpreter start and model load")
    print(
        f"RESULT attnviz export --view head: {images / ours:.0f} images/s vs naive loop {images / slow:.1f} images/s "
        f"= {slow / ours:.1f}x ({images} PNGs, --annotate {args.annotate}, model load excluded)"
    )


if __name__ == "__main__":
    main()
