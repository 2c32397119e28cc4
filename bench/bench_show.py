"""Side by side: `attnviz show` against a hand-written transformers script, cold processes.

Three races, each side run as a fresh process (that is how people use them), alternating,
several times each; every race prints both medians, the ratio and each side's peak RSS:

  1. `attnviz show TEXT` (the default table) vs hand_show.py --table (the last layer's
     head-averaged attention as a text table): target ≤ 0.2×
  2. `attnviz show TEXT --format json --layer all --head all` vs hand_show.py (every
     layer and head as JSON); also checks that both printed the same weights
  3. `attnviz --help` vs `python -c "import typer"`: target ≤ 1.5×

Both sides get the same environment: PYTHONUNBUFFERED (which this environment sets and
which slows line-by-line writers) is removed for both, and both run one BLAS/torch thread
(attnviz's numpy MiniLM uses one BLAS thread; the hand script calls torch.set_num_threads(1)).

    .venv/bin/python bench/bench_show.py [--runs 7]
    .venv/bin/python bench/bench_show.py --blas   # the numpy forward pass: 1 BLAS thread vs the default
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEXT = "I have a dream"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


@dataclass
class Side:
    name: str
    cmd: list[str]
    seconds: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)
    stdout: bytes = b""


def run_once(side: Side) -> None:
    """One cold run: wall time and the child's own peak RSS (wait4's rusage, not all children's)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(side.cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        side.seconds.append(time.perf_counter() - start)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            sys.exit(f"{side.name} failed ({proc.returncode}): {err.read().decode(errors='replace')[-2000:]}")
        side.stdout = out.read()
        side.peak_kib.append(usage.ru_maxrss)  # KiB on Linux


def race(a: Side, b: Side, runs: int, target: float | None) -> float:
    """Alternate a and b `runs` times each; print both and the ratio b / a."""
    for _ in range(runs):  # alternate so machine noise hits both alike
        run_once(a)
        run_once(b)
    for side in (a, b):
        t = sorted(side.seconds)
        peak = max(side.peak_kib) / 1024
        print(
            f"  {side.name:<34} median {statistics.median(t):6.3f} s  (min {t[0]:.3f}, max {t[-1]:.3f}, n={len(t)})"
            f"   peak RSS {peak:5.0f} MiB"
        )
    ratio = statistics.median(b.seconds) / statistics.median(a.seconds)
    goal = f"  (target <= {target:.2f}x: {'met' if ratio <= target else 'NOT met'})" if target else ""
    print(f"  ratio {b.name} / {a.name}: {ratio:.2f}x{goal}\n")
    return ratio


def weights(stdout: bytes) -> np.ndarray:
    return np.asarray(json.loads(stdout)["stacks"][0]["attention"], dtype=np.float32)


def blas_threads(runs: int) -> None:
    """The numpy MiniLM's forward pass in this process, one BLAS thread against the library's default."""
    from threadpoolctl import threadpool_info

    from attnviz.backends import native_bert
    from attnviz.backends.registry import MINILM_NAME, minilm_folder
    from attnviz.backends.types import Inputs, LoadOptions

    default = max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
    backend = native_bert.BertBackend(minilm_folder(), MINILM_NAME, LoadOptions())
    backend.run([Inputs("warm up: every layer's weights read once")])
    print(f"numpy MiniLM forward (every layer and head), BLAS threads: 1 against the default {default}")
    for words, batch in ((4, 1), (60, 1), (510, 1), (60, 16)):
        inputs = [Inputs("dream " * words)] * batch
        times: dict[int, list[float]] = {1: [], default: []}
        for _ in range(runs):
            for threads in times:  # alternate
                native_bert.BLAS_THREADS = threads
                start = time.perf_counter()
                backend.run(inputs)
                times[threads].append(time.perf_counter() - start)
        one, many = statistics.median(times[1]), statistics.median(times[default])
        shape = f"{batch:2d} x {words + 2:3d} tokens"
        print(f"  {shape}: 1 thread {one * 1000:7.1f} ms, {default} threads {many * 1000:7.1f} ms  ({many / one:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--blas", action="store_true", help="only time the numpy forward pass, 1 vs default threads")
    args = parser.parse_args()
    if args.blas:
        blas_threads(args.runs)
        return
    from attnviz.backends.registry import minilm_folder

    py = sys.executable
    attnviz = [py, "-m", "attnviz"]
    hand = [py, str(HERE / "hand_show.py"), str(minilm_folder()), TEXT, "--threads", "1"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, PYTHONUNBUFFERED unset on both sides\n")

    print(f"1. show '{TEXT}' (the table), cold process each run")
    table = Side("hand-written script (--table)", [*hand, "--table"])
    race(table, Side("attnviz show", [*attnviz, "show", TEXT]), args.runs, 0.2)

    print(f"2. show '{TEXT}' as JSON, every layer and head")
    theirs = Side("hand-written script (JSON)", hand)
    ours = Side("attnviz show -f json", [*attnviz, "show", TEXT, "-f", "json", "--layer", "all", "--head", "all"])
    race(theirs, ours, args.runs, None)
    diff = float(np.abs(weights(theirs.stdout) - weights(ours.stdout)).max())
    print(f"  max |difference| of the weights: {diff:.2e}\n")

    print("3. attnviz --help against python -c 'import typer'")
    typer = Side("python -c 'import typer'", [py, "-c", "import typer"])
    race(typer, Side("attnviz --help", [*attnviz, "--help"]), args.runs, 1.5)


if __name__ == "__main__":
    main()
