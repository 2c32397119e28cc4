"""Peak memory and time: attnviz's layer-by-layer capture against a plain forward and the old way.

A 12-layer, 768-wide, 12-head GPT-2 with random weights (built from a config and saved
with save_pretrained into a temporary folder) reads 1,024 tokens, in four fresh processes:

    plain      a forward pass without attentions (the floor: what the model itself needs),
               as transformers runs it (a key/value cache) and with use_cache=False as attnviz does
    layer 0    attnviz show TEXT --format npz --layer 0
    layer all  attnviz show TEXT --format npz --layer all (streamed into the file)
    old way    a forward pass with output_attentions=True, every layer saved with np.savez

each under /usr/bin/time -v (peak resident memory), alternating, several rounds; prints
medians, the excess over the plain pass in units of one layer's maps (12 × 1024² × 4 B =
48 MiB), the targets (layer 0 ≤ plain + 2 maps, layer all ≤ plain + 4), and checks the
streamed file against the old way's weights.

    .venv/bin/python bench/bench_memory.py [--runs 3] [--tokens 1024]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

LAYERS, WIDTH, HEADS = 12, 768, 12
MIB = 1 << 20

PLAIN = """
import sys, torch
from transformers import AutoModel, AutoTokenizer
folder, text, cache = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3] == "cache"
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
with torch.inference_mode():
    model(**tok(text, return_tensors="pt"), use_cache=cache)
"""

OLD_WAY = """
import sys, numpy as np, torch
from transformers import AutoModel, AutoTokenizer
folder, text, out = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
with torch.inference_mode():
    attentions = model(**tok(text, return_tensors="pt"), output_attentions=True).attentions
    np.savez(out, attention=torch.stack(attentions, 1)[0].float().numpy())  # [L, H, T, T]
"""


def build(folder: Path, tokens: int) -> str:
    """Save the random decoder and a word-level tokenizer into `folder`; the text of exactly `tokens` tokens."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(1000)]
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<unk>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_embd=WIDTH,
        n_layer=LAYERS,
        n_head=HEADS,
        n_positions=tokens,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return " ".join(words[i % len(words)] for i in range(tokens))


def measured(cmd: list[str], out: Path | None) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one run under /usr/bin/time -v; stdout to `out`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # alike on every side
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    with open(out or os.devnull, "wb") as sink:
        done = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=sink, stderr=subprocess.PIPE, text=True, env=env)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd[:4])} …\n{done.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))  # type: ignore[union-attr]
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    h, m, s = clock.groups()  # type: ignore[union-attr]
    return int(h or 0) * 3600 + int(m) * 60 + float(s), rss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=1024)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="attnviz-bench-") as tmp:
        root = Path(tmp)
        folder = root / "decoder"
        text = build(folder, args.tokens)
        (root / "text.txt").write_text(text)
        (root / "plain.py").write_text(textwrap.dedent(PLAIN))
        (root / "old.py").write_text(textwrap.dedent(OLD_WAY))
        show = [py, "-m", "attnviz", "show", text, "--model", str(folder), "--device", "cpu", "--format", "npz"]
        cases = {
            "plain forward": ([py, str(root / "plain.py"), str(folder), str(root / "text.txt"), "cache"], None),
            "plain forward, no cache": (
                [py, str(root / "plain.py"), str(folder), str(root / "text.txt"), "no-cache"],
                None,
            ),
            "show --layer 0": ([*show, "--layer", "0"], root / "layer0.npz"),
            "show --layer all": ([*show, "--layer", "all"], root / "all.npz"),
            "old way (output_attentions)": (
                [py, str(root / "old.py"), str(folder), str(root / "text.txt"), str(root / "old.npz")],
                None,
            ),
        }
        seen: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.runs):  # alternate, so machine noise hits every case alike
            for name, (cmd, out) in cases.items():
                seen[name].append(measured(cmd, out))
        layer = HEADS * args.tokens**2 * 4 / MIB  # one layer's maps, MiB
        plain = statistics.median(r for _, r in seen["plain forward"])
        print(f"{LAYERS}-layer, {WIDTH}-wide, {HEADS}-head GPT-2 (random weights), {args.tokens} tokens, CPU")
        print(f"one layer's maps: {layer:.0f} MiB; medians of {args.runs} alternating runs\n")
        print(f"  {'':<28} {'wall s':>7} {'peak MiB':>9} {'(min–max)':>11} {'over plain':>11} {'in layers':>9}  target")
        targets = {"show --layer 0": 2, "show --layer all": 4}
        for name, runs in seen.items():
            wall, rss = statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs)
            over = rss - plain
            target = targets.get(name)
            verdict = "" if target is None else f"≤ {target} {'ok' if over <= target * layer else 'MISSED'}"
            spread = f"{min(r for _, r in runs):.0f}–{max(r for _, r in runs):.0f}"
            print(f"  {name:<28} {wall:7.2f} {rss:9.0f} {spread:>11} {over:+11.0f} {over / layer:9.2f}  {verdict}")
        check(root, args.tokens)


def check(root: Path, tokens: int) -> None:
    """The streamed file holds the old way's weights (within 1e-5), and --layer 0 its first layer."""
    from attnviz.saved import load

    with np.load(root / "old.npz") as z:
        old = z["attention"]
    (streamed,) = load(root / "all.npz")
    (first,) = load(root / "layer0.npz")
    w = streamed.stacks[0].weights
    assert w.shape == old.shape == (LAYERS, HEADS, tokens, tokens), (w.shape, old.shape)
    worst = max(float(np.abs(w - old).max()), float(np.abs(first.stacks[0].weights[0] - old[0]).max()))
    print(f"\nstreamed npz vs output_attentions: max |diff| {worst:.1e} ({'ok' if worst <= 1e-5 else 'WRONG'})")


if __name__ == "__main__":
    main()
