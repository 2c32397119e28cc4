"""What attnviz refuses to do by default, and the checks that say so; each limit has a flag.

    MAX_LINE_BYTES     one input line (--max-line-bytes); checked as the line is read
    MAX_LAYERS         a model's layers (--max-layers)      } from its config.json, the scratch
    Limits.max_params  its parameters (--max-params)        } flags or a weights file's header,
                                                            } before anything is allocated
    MAX_TOTAL_PIXELS   the images of one export run (--max-total-pixels)

This module stays light (no numpy): the command line's defaults come from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import Fix, ModelError

MAX_LINE_BYTES = 1 << 20  # 1 MiB a line: hundreds of times any model's window, tokenised in ~1 s
MAX_TOTAL_PIXELS = 10_000_000_000  # 10 gigapixels a run: ~1,000 sentences of MiniLM's 72 head images
MAX_LAYERS = 1000  # the largest released transformers have ~130 layers; building 100,000 takes minutes


@dataclass(frozen=True)
class Limits:
    """How big a model may be before it is built; each limit has a flag that raises it."""

    max_params: int | None = None  # None: as many float32 weights as this machine's memory holds
    max_layers: int = MAX_LAYERS


def memory_bytes() -> int | None:
    """This machine's memory (or a container's limit, when lower); None where it cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total if total > 0 else None


def bytes_text(n: float) -> str:
    """A size for messages: '3.1 GiB', '24 GiB', '1.2 EiB'."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} {units[i]}" if i == 0 or n >= 100 or n == int(n) else f"{n:.1f} {units[i]}"


def check_size(
    name: str,
    params: int,
    layers: int,
    limits: Limits,
    bytes_per_param: int = 4,
    device_memory: int = 0,
    can_shrink: bool = False,
) -> None:
    """ModelError when a model would be bigger than the limits allow, before it is built.

    Without a parameter limit, the model's weights (`bytes_per_param` each: 4 in float32, 2 in
    float16/bfloat16) must fit in this machine's memory, plus `device_memory` (the GPUs' own, for a
    model spread over them with --device-map): beyond that the kernel kills the process with no
    message at all, or accelerate pages weights through the disk. `can_shrink`: the model could run
    in 16 bits or spread (a transformers model), which the remedy then names.
    """
    if layers > limits.max_layers:
        raise ModelError(
            f"{name} has {layers:,} layers, more than the limit of {limits.max_layers:,}",
            hint="check its config, or allow more layers if you mean it",
            fix=Fix.BIGGER_MODEL,
            what="layers",
        )
    limit, memory = limits.max_params, None
    if limit is None:
        memory = memory_bytes()
        if memory is not None:
            memory += device_memory
            limit = memory // bytes_per_param
    if limit is not None and params > limit:
        if memory is None:
            beyond = f"more than the limit of {limit:,}"
        elif device_memory:
            beyond = f"more than this machine's GPUs and memory hold together ({bytes_text(memory)})"
        else:
            beyond = f"more than this machine's {bytes_text(memory)} of memory holds"
        precision = "float32" if bytes_per_param == 4 else "16-bit floats"
        raise ModelError(
            f"{name} has about {params:,} parameters ({bytes_text(params * bytes_per_param)} as {precision}), {beyond}",
            hint="use a smaller model, or allow more parameters if it fits",
            fix=Fix.SMALLER_WEIGHTS if can_shrink and memory is not None and bytes_per_param == 4 else Fix.BIGGER_MODEL,
            what="params",
        )
