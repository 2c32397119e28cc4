"""`attnviz heads` over a corpus: peak memory must not grow with the number of sentences.

Runs `attnviz heads --input FILE --format json` on 40 and on 800 seeded sentences (8–30
words each, the same mix), alternating, and prints for each size the median wall time,
sentences per second and peak RSS (from /usr/bin/time -v), then the ratio of the peaks.

    env -u PYTHONUNBUFFERED .venv/bin/python bench/bench_heads.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the a cat dog dream house river mountain quickly slowly saw heard built under over because while "
    "and but people city night morning small large old new said went found thought about into through"
).split()


def corpus(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 30))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ", and so on."]))
    return "\n".join(lines) + "\n"


def measure(path: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one run."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "attnviz", "heads", "--input", str(path), "-f", "json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = (40, 800)
    with tempfile.TemporaryDirectory() as tmp:
        files = {n: Path(tmp) / f"{n}.txt" for n in sizes}
        for n, path in files.items():
            path.write_text(corpus(n))
        runs: dict[int, list[tuple[float, int]]] = {n: [] for n in sizes}
        for _ in range(args.repeat):
            for n in sizes:
                runs[n].append(measure(files[n]))
    print(f"{'sentences':>9}  {'median s':>8}  {'sent/s':>7}  {'peak MiB':>8}")
    peaks = {}
    for n in sizes:
        wall = statistics.median(w for w, _ in runs[n])
        peaks[n] = max(p for _, p in runs[n]) / 1024
        print(f"{n:>9}  {wall:>8.2f}  {n / wall:>7.1f}  {peaks[n]:>8.0f}")
    print(f"peak memory, 800 vs 40 sentences: {peaks[800] / peaks[40]:.2f}×")


if __name__ == "__main__":
    main()
