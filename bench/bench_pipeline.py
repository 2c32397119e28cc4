"""Side by side: `attnviz show - --format jsonl --layer all --head all` against a batched transformers loop.

The competitor (bench/hand_pipeline.py) is what a competent user writes: AutoModel with eager
attention, batches of 16 padded to their longest, output_attentions=True, one json.dumps line
per sentence written as each batch is done; it runs twice, in input order and sorted by length.
attnviz runs the embedded MiniLM (numpy) with its defaults.

Races, each side a fresh process, alternating, several runs; each prints both medians, the
ratio and each side's peak RSS (/usr/bin/time's %M: a child's own rusage would also count the
memory of this script, which it was forked from):

  1. 40 sentences, then 1,000 (a deterministic set: see `sentences`), output to /dev/null.
     Targets: attnviz <= 0.6x the faster loop's time and peak <= the loop's + 200 MiB at
     1,000; attnviz's peak for 40 and 1,000 sentences within 25% of each other.
  2. One 512-token text, `--format json --layer all --head all`: <= 2 s, and its size
     <= 60% of what attnviz wrote before streaming (BEFORE_BYTES).

Both sides get the same environment (PYTHONUNBUFFERED, which this environment sets and
which slows line-by-line writers, is removed for both) and the same threads (--threads,
default 1: torch.set_num_threads for the loop, `attnviz --threads` for attnviz). The 40-
sentence outputs are compared: the same weights within 1e-5.

    .venv/bin/python bench/bench_pipeline.py [--runs 3] [--threads 1] [--sentences 1000]
    .venv/bin/python bench/bench_pipeline.py --thread-policy [--busy]   # torch: 1 thread vs the default

--thread-policy times small torch models (the scratch model with 1 and 6 layers, a tiny BERT
built from a config, MiniLM on transformers) over 100 sentences in batches of 16, in this
process, with 1 torch thread and with torch's default, alternating; --busy keeps one core
busy in another process meanwhile (a shared machine). attnviz/threads.py quotes the result.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "sample_inputs"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
MIB = 1 << 20
# `show - --format json --layer all --head all` of the 512-token text below before this work
# (float64 reprs, json.dumps with spaces): 434,682,470 bytes, 12.7-17.7 s, 1.9 GB peak
BEFORE_BYTES = 434_682_470


@dataclass
class Side:
    name: str
    cmd: list[str]
    stdin: Path
    seconds: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)
    output: bytes = b""


def run_once(side: Side, keep: bool = False) -> None:
    """One cold run: wall time and peak RSS; `keep` keeps stdout (else it goes to /dev/null)."""
    with tempfile.TemporaryDirectory() as tmp, open(side.stdin, "rb") as stdin, tempfile.TemporaryFile() as err:
        peak = Path(tmp, "peak")
        out = tempfile.TemporaryFile() if keep else open(os.devnull, "wb")  # noqa: SIM115
        with out:
            start = time.perf_counter()
            code = subprocess.call(
                ["/usr/bin/time", "-f", "%M", "-o", str(peak), *side.cmd], stdin=stdin, stdout=out, stderr=err, env=ENV
            )
            side.seconds.append(time.perf_counter() - start)
            if code:
                err.seek(0)
                sys.exit(f"{side.name} failed ({code}): {err.read().decode(errors='replace')[-2000:]}")
            side.peak_kib.append(int(peak.read_text().split()[-1]))  # KiB
            if keep:
                out.seek(0)
                side.output = out.read()


def report(sides: list[Side]) -> None:
    for side in sides:
        t = sorted(side.seconds)
        print(
            f"  {side.name:<30} median {statistics.median(t):7.2f} s  (min {t[0]:.2f}, max {t[-1]:.2f}, n={len(t)})"
            f"   peak RSS {statistics.median(side.peak_kib) / 1024:5.0f} MiB (max {max(side.peak_kib) / 1024:.0f})"
        )


def median_peak(side: Side) -> float:
    return statistics.median(side.peak_kib) / 1024


def race(sides: list[Side], runs: int, keep: bool = False) -> None:
    for _ in range(runs):  # alternate so machine noise hits every side alike
        for side in sides:
            run_once(side, keep)
    report(sides)


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` sentences from the words of sample_inputs/, the same on every machine: lengths from a
    log-normal (median ~13 words, at most 40), mostly English, some Russian and Chinese."""
    text = [line for f in ("long.txt", "multilingual.txt") for line in (SAMPLES / f).read_text("utf-8").splitlines()]
    text = [line for line in text if line.strip() and not line.startswith("#")]
    english = [w for line in text for w in line.split() if w.isascii()]
    russian = [w for line in text for w in line.split() if any("а" <= c.lower() <= "я" for c in w)]
    chinese = [c for line in text for c in line if "\u4e00" <= c <= "\u9fff"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = max(2, min(40, round(rng.lognormvariate(2.6, 0.5))))
        kind = rng.random()
        if kind < 0.90:
            out.append(" ".join(rng.choice(english) for _ in range(words)))
        elif kind < 0.97:
            out.append(" ".join(rng.choice(russian) for _ in range(words)))
        else:
            out.append("".join(rng.choice(chinese) for _ in range(words)) + "。")
    return out


def padding(texts: list[str], size: int) -> None:
    """How much padded work each way of batching does, counted with MiniLM's tokenizer."""
    from attnviz.backends.registry import cached
    from attnviz.backends.types import Inputs, LoadOptions
    from attnviz.pipeline import _window, batches, token_counter

    count = token_counter(cached("minilm", LoadOptions()), 512)
    assert count is not None
    lengths = count([Inputs(t) for t in texts])

    def cost(cut: list[list[int]]) -> tuple[float, float]:
        padded = [(len(b), max(lengths[i] for i in b)) for b in cut]
        tokens = sum(n * t for n, t in padded) / sum(lengths)
        return tokens, sum(n * t * t for n, t in padded) / sum(n * n for n in lengths)

    in_order = [list(range(s, min(s + size, len(texts)))) for s in range(0, len(texts), size)]
    fully = batches(lengths, size, None)
    windows, pending, at = [], iter([Inputs(t) for t in texts]), 0
    while window := _window(pending, size):
        windows += [[at + i for i in b] for b in batches(lengths[at : at + len(window)], size)]
        at += len(window)
    mean = sum(lengths) / len(texts)
    print(f"  {len(texts)} sentences, {sum(lengths):,} tokens (mean {mean:.1f}, max {max(lengths)})")
    for name, cut in (("in input order", in_order), ("attnviz's windows", windows), ("all sorted", fully)):
        tokens, squares = cost(cut)
        print(f"    batches of {size} {name:<18} {tokens:.2f}x the tokens, {squares:.2f}x the T^2 work")


def same_weights(attnviz: bytes, loop: bytes) -> float:
    """Largest |difference| between attnviz's and the loop's weights, line by line."""
    theirs = {doc["index"]: doc for doc in map(json.loads, loop.splitlines())}
    worst = 0.0
    for i, line in enumerate(attnviz.splitlines()):
        ours = json.loads(line)
        a = np.asarray(ours["stacks"][0]["attention"], dtype=np.float32)
        b = np.asarray(theirs[i]["attention"], dtype=np.float32)
        if ours["stacks"][0]["query"]["tokens"] != theirs[i]["tokens"] or a.shape != b.shape:
            sys.exit(f"sentence {i}: attnviz and the loop disagree on the tokens")
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def thread_policy(runs: int, busy: bool) -> None:
    """Small torch models in this process: 1 torch thread against torch's default, alternating."""
    import torch
    import transformers as tf

    from attnviz.api import run_batch
    from attnviz.backends.registry import load, minilm_folder
    from attnviz.backends.types import Inputs, LoadOptions

    default = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp, "tiny-bert")
        tokenizer = tf.AutoTokenizer.from_pretrained(str(minilm_folder()))
        config = tf.BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
        )
        torch.manual_seed(0)
        tf.BertModel(config).save_pretrained(tiny)
        tokenizer.save_pretrained(tiny)
        models = {
            "scratch (1 layer)": load("scratch", LoadOptions()),
            "scratch (6 layers)": load("scratch", LoadOptions(layers=6)),
            "tiny BERT": load(str(tiny), LoadOptions()),
            "MiniLM on transformers": load(str(minilm_folder()), LoadOptions(device="cpu")),
        }
        inputs = [Inputs(t) for t in sentences(100)]
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            times: dict[tuple[str, int], list[float]] = {(k, n): [] for k in models for n in (1, default)}
            for _ in range(runs):
                for name, backend in models.items():
                    for n in (1, default):
                        torch.set_num_threads(n)
                        start = time.perf_counter()
                        run_batch(backend, inputs, batch_size=16)
                        times[(name, n)].append(time.perf_counter() - start)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    print(f"100 sentences in batches of 16, {'one core busy elsewhere' if busy else 'no other load started'}")
    for name in models:
        one, many = statistics.median(times[(name, 1)]), statistics.median(times[(name, default)])
        print(f"  {name:<24} 1 thread {one:6.2f} s   {default} threads {many:6.2f} s   ({many / one:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--thread-policy", action="store_true", help="only time torch: 1 thread vs the default")
    parser.add_argument("--busy", action="store_true", help="with --thread-policy: keep one core busy meanwhile")
    args = parser.parse_args()
    if args.thread_policy:
        thread_policy(args.runs + 2, args.busy)
        return
    from attnviz.backends.registry import minilm_folder

    py = sys.executable
    folder = str(minilm_folder())
    threads = ["--threads", str(args.threads)]
    attnviz = [py, "-m", "attnviz", "show", "-", "--format", "jsonl", "--layer", "all", "--head", "all", *threads]
    loop = [py, str(HERE / "hand_pipeline.py"), folder, *threads]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.threads} thread(s) on both sides,")
    print("PYTHONUNBUFFERED unset on both sides, batches of 16\n")

    with tempfile.TemporaryDirectory() as tmp:
        peaks = {}
        for n, runs in ((40, args.runs + 2), (args.sentences, args.runs)):
            texts = sentences(n)
            path = Path(tmp, f"{n}.txt")
            path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
            print(f"{n} sentences, every layer and head as JSON lines")
            padding(texts, 16)
            sides = [
                Side("loop (input order)", loop, path),
                Side("loop (sorted by length)", [*loop, "--sort"], path),
                Side("attnviz show -f jsonl", attnviz, path),
            ]
            race(sides, runs, keep=n <= 40)
            theirs = min(sides[:2], key=lambda s: statistics.median(s.seconds))
            ours = sides[2]
            ratio = statistics.median(ours.seconds) / statistics.median(theirs.seconds)
            extra = median_peak(ours) - median_peak(theirs)
            met = "met" if ratio <= 0.6 else "NOT met"
            print(f"  ratio attnviz / {theirs.name}: {ratio:.2f}x (target <= 0.60x: {met})")
            met = "met" if extra <= 200 else "NOT met"
            print(f"  peak attnviz - loop: {extra:+.0f} MiB (target <= +200 MiB: {met})")
            if ours.output:
                print(f"  output: attnviz {len(ours.output):,} bytes, loop {len(sides[0].output):,} bytes")
                print(f"  max |difference| of the weights: {same_weights(ours.output, sides[0].output):.2e}")
            peaks[n] = median_peak(ours)
            print()
        small, big = peaks[40], peaks[args.sentences]
        growth = big / small - 1
        met = "met" if abs(growth) <= 0.25 else "NOT met"
        print(f"attnviz peak: {small:.0f} MiB for 40 sentences, {big:.0f} MiB for {args.sentences}: ", end="")
        print(f"{growth:+.0%} (target within 25%: {met})\n")

        print("512 tokens, --format json --layer all --head all")
        paragraph = next(
            line for line in (SAMPLES / "long.txt").read_text("utf-8").splitlines() if line and not line.startswith("#")
        )
        long = Path(tmp, "long.txt")
        long.write_text(" ".join([paragraph] * 6) + "\n", encoding="utf-8")
        json_cmd = [py, "-m", "attnviz", "show", "-", "-f", "json", "--layer", "all", "--head", "all", "--truncate"]
        single = Side("attnviz show -f json (512 tokens)", [*json_cmd, *threads], long)
        race([single], args.runs)
        seconds = statistics.median(single.seconds)
        print(f"  time {seconds:.2f} s (target <= 2 s: {'met' if seconds <= 2 else 'NOT met'})")
        run_once(single, keep=True)
        size = len(single.output)
        met = "met" if size <= 0.6 * BEFORE_BYTES else "NOT met"
        print(f"  size {size:,} bytes, {size / BEFORE_BYTES:.1%} of before ({BEFORE_BYTES:,}; target <= 60%: {met})")


if __name__ == "__main__":
    main()
