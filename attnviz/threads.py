"""How many threads the model's arithmetic runs on: one for small models, `--threads N` to choose.

A small model's operations are tiny, and each parallel one waits at a barrier for all its
threads: when another process holds a core, every wait costs a scheduler slice. Measured
on the project's 2-core machine (`bench/bench_pipeline.py --thread-policy [--busy]`: 100
sentences in batches of 16, medians):

                           no other load          one core busy elsewhere
                           1 thread  2 threads    1 thread  2 threads
    scratch (1 layer)       0.09 s    0.07 s       0.09 s    0.64 s
    scratch (6 layers)      0.38 s    0.27 s       0.39 s    2.50 s
    tiny BERT               0.08 s    0.08 s       0.08 s    0.41 s
    MiniLM on transformers  1.16 s    0.65 s       1.22 s    3.60 s

Two threads gain at most 1.8x on an idle machine and lose 3-7x on a busy one (up to 33x
with more load from other processes), so a model under SMALL_MODEL parameters runs torch
on one thread. Bigger models keep torch's default (one per core), where the work per
operation pays for the threads. A count in OMP_NUM_THREADS or MKL_NUM_THREADS is the
user's choice and is kept; `--threads N` (via `chosen`) overrides both, and also sets the
numpy BLAS threads of the embedded MiniLM (backends/native_bert.py).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the whole machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on macOS and Windows
        return os.cpu_count() or 1


SMALL_MODEL = 100_000_000  # parameters: MiniLM has 23 M, BERT-base 110 M
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_chosen: list[int | None] = [None]  # --threads N of the command running in this process


def chosen() -> int | None:
    """The thread count the command was given (--threads N), or None for the policy."""
    return _chosen[0]


def choose(n: int | None) -> None:
    """Use `n` threads from now on (None: the policy); a command sets it before loading its model."""
    _chosen[0] = n


def torch_threads(parameters: int) -> int | None:
    """The torch thread count for a model of this many parameters (None: leave torch's own)."""
    if chosen() is not None:
        return chosen()
    if any(os.environ.get(v) for v in THREAD_VARIABLES):
        return None
    return 1 if parameters < SMALL_MODEL else None


def apply(backend: Any) -> None:
    """Set torch's threads for a loaded backend that runs a torch model; others are left alone."""
    model = getattr(backend, "model", None)
    if model is None or "torch" not in sys.modules:  # the numpy MiniLM never imports torch
        return
    import torch

    if not isinstance(model, torch.nn.Module):
        return
    n = torch_threads(sum(p.numel() for p in model.parameters()))
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
