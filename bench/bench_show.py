"""Side by side: `attnviz show ... --format json` against a hand-written transformers script.

Runs both as fresh processes (that is how people use them: cold start each time),
alternating, several times each; prints medians, the ratio, and checks that both
printed the same weights. Also times `attnviz --help` against `python -c "import typer"`.

    .venv/bin/python bench/bench_show.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEXT = "I have a dream"


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stdout


def weights(stdout: str) -> np.ndarray:
    return np.asarray(json.loads(stdout)["stacks"][0]["attention"], dtype=np.float32)


def race(name_a: str, cmd_a: list[str], name_b: str, cmd_b: list[str], runs: int) -> tuple[float, float, str, str]:
    times: dict[str, list[float]] = {name_a: [], name_b: []}
    outs = {}
    for _ in range(runs):  # alternate so machine noise hits both alike
        for name, cmd in ((name_a, cmd_a), (name_b, cmd_b)):
            seconds, outs[name] = timed(cmd)
            times[name].append(seconds)
    med_a, med_b = statistics.median(times[name_a]), statistics.median(times[name_b])
    for name in (name_a, name_b):
        t = sorted(times[name])
        print(f"  {name:<28} median {statistics.median(t):6.3f} s   (min {t[0]:.3f}, max {t[-1]:.3f}, n={len(t)})")
    return med_a, med_b, outs[name_a], outs[name_b]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from attnviz.backends.registry import minilm_folder

    py = sys.executable
    attnviz = [py, "-m", "attnviz"]
    hand = [py, str(HERE / "hand_show.py"), str(minilm_folder()), TEXT]
    ours = [*attnviz, "show", TEXT, "--format", "json", "--layer", "all", "--head", "all", "--device", "cpu"]

    print(f"show '{TEXT}' as JSON, every layer and head, cold process each run")
    t_hand, t_ours, out_hand, out_ours = race("hand-written transformers", hand, "attnviz show", ours, args.runs)
    diff = float(np.abs(weights(out_hand) - weights(out_ours)).max())
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  max |difference| of the weights: {diff:.2e}; peak RSS of any child: {peak_mb:.0f} MiB")
    print(f"  ratio attnviz / hand script: {t_ours / t_hand:.2f}x  (target <= 0.60x)\n")

    print("attnviz --help against python -c 'import typer'")
    t_typer, t_help, _, _ = race(
        "python -c 'import typer'", [py, "-c", "import typer"], "attnviz --help", [*attnviz, "--help"], args.runs
    )
    print(f"  ratio --help / import typer: {t_help / t_typer:.2f}x  (target <= 3x)")


if __name__ == "__main__":
    main()
