"""Where a transformers model's files come from, checked before transformers sees them.

A spec is a folder when it exists or looks like a path; otherwise a hub id. Folders
are checked for config.json, readable safetensors and remote code; hub ids load from
the local cache without touching the network, and otherwise fail fast when the hub
cannot be reached (transformers' own retries take ~26 s before giving up).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import Fix, ModelError

BUILTIN = ("minilm", "scratch")
REACH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Source:
    """What to hand to from_pretrained, and whether it may use the network."""

    location: str
    local_files_only: bool


def looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1 or spec.endswith("/")


def resolve(spec: str, trust_remote_code: bool = False) -> Source:
    """Check a folder or hub id and say how to load it; raise ModelError with a fix otherwise."""
    path = Path(spec).expanduser()
    if path.exists() or looks_like_path(spec):
        check_folder(path, trust_remote_code, spec)
        return Source(str(path), local_files_only=True)
    return _hub(spec)


def check_folder(path: Path, trust_remote_code: bool, spec: str | None = None) -> None:
    if not path.exists():
        shown = spec or str(path)  # as the user typed it: Path("./x") would print "x", like a model name
        raise ModelError(f"model folder {shown} does not exist", hint=f"built-in models: {', '.join(BUILTIN)}")
    if not path.is_dir():
        raise ModelError(f"{path} is not a folder", hint="pass the folder save_pretrained wrote, not a file in it")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"{path} has no config.json: not a transformers model folder", hint="save models with save_pretrained"
        )
    config = read_config(config_file)
    if "auto_map" in config and not trust_remote_code:
        raise ModelError(
            f"{path} ships its own Python code (auto_map in config.json), which attnviz does not run by default",
            hint="read that code, then allow remote code if you trust it",
            fix=Fix.TRUST_REMOTE_CODE,
        )
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights)


def read_config(config_file: Path) -> dict[str, Any]:
    """A config.json as a dict; ModelError for one that is not a JSON object (42, null, a list) or
    is nested past any real config (json's recursion limit), before transformers reads it."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{config_file} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ModelError(f"{config_file} is nested too deeply to be a model's config") from None
    if not isinstance(config, dict):
        raise ModelError(
            f"{config_file} holds {_kind(config)}, not a model's settings (a JSON object)",
            hint="save models with save_pretrained",
        )
    return config


def _kind(value: object) -> str:
    """What a JSON value is, for messages: 'the number 42', 'null', 'a list'."""
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return f"the number {json.dumps(value)}" if not isinstance(value, bool) else json.dumps(value)
    return "a list" if isinstance(value, list) else "a string"


def cached_config(spec: str) -> Path | None:
    """The config.json of a model folder or of a hub id in the local cache; None when there is none here."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path / "config.json" if (path / "config.json").is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(spec, "config.json")
    except Exception:  # a boundary: the hub library validates ids its own way; no config found is all it means
        return None
    return Path(found) if isinstance(found, str) else None


# ---------------------------------------------------------------- a model's size from its config

# config.json names for a transformer's sizes, across families (first found wins)
_WIDTH = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
_FFN = ("intermediate_size", "d_ff", "n_inner", "ffn_dim", "encoder_ffn_dim", "hidden_dim", "decoder_ffn_dim")
_LAYERS = ("encoder_layers", "num_layers", "num_hidden_layers", "n_layer", "n_layers")
_DECODER_LAYERS = ("decoder_layers", "num_decoder_layers")
_EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts")
_DEPTH = 8  # sub-configs (text_config, encoder/decoder) are one or two levels down


@dataclass(frozen=True)
class Size:
    """A model's size as its config describes it: parameters (an estimate) and layers (the most of any stack)."""

    params: int
    layers: int


def _count(config: dict[str, Any], names: tuple[str, ...]) -> int | None:
    """The first of `names` that holds a whole number ≥ 0 (floats such as 1e30 included: they are the danger)."""
    for name in names:
        value = config.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return int(value)
    return None


def estimate_size(config: dict[str, Any], depth: int = 0) -> Size:
    """About how many parameters and layers a config builds, from its sizes alone (nothing allocated).

    Per layer: the attention projections (4·d², fewer with grouped key/value heads), the
    feed-forward (2·d·ff, 3·d·ff gated, times the experts), and a decoder layer's
    cross-attention; plus the embeddings (vocab·d). Within a few tens of percent of the
    real count for the usual families; sub-configs (text_config, encoder, decoder) add up.
    """
    params, layers = 0, 0
    d = _count(config, _WIDTH)
    if d:
        ff = _count(config, _FFN) or 4 * d
        heads = _count(config, ("num_attention_heads", "n_head", "num_heads"))
        kv = _count(config, ("num_key_value_heads",))
        attention = 2 * d * d + 2 * d * (d * kv // heads if heads and kv else d)
        gated = config.get("hidden_act") == "silu" or "gemma" in str(config.get("model_type", ""))
        mlp = (3 if gated else 2) * d * ff * max(1, _count(config, _EXPERTS) or 1)
        n = _count(config, _LAYERS) or 0
        n_dec = _count(config, _DECODER_LAYERS) or 0
        params = (_count(config, ("vocab_size",)) or 0) * d + n * (attention + mlp) + n_dec * (2 * attention + mlp)
        layers = max(n, n_dec)
    else:
        layers = _count(config, _LAYERS) or 0  # no width: the layer count still says how long building takes
    if depth < _DEPTH:
        for value in config.values():
            if isinstance(value, dict):
                inner = estimate_size(value, depth + 1)
                params, layers = params + inner.params, max(layers, inner.layers)
    return Size(params, layers)


def check_safetensors(file: Path) -> None:
    """Open the header and check every tensor lies inside the file: catches truncation."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            f.keys()
    except Exception as exc:  # safetensors raises its own error types for bad headers and short files
        raise ModelError(
            f"weights file {file} is corrupt or truncated ({exc})", hint="re-save or re-download it"
        ) from None


# a hub id: name or org/name, letters, digits, '-', '_', '.'; no '..' and no leading/trailing '-' or '.'
HUB_ID = re.compile(r"(?!.*\.\.)([A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(?<![.-])")


def _hub(spec: str) -> Source:
    if not HUB_ID.fullmatch(spec):
        raise ModelError(
            f"model {spec!r} is not a built-in name ({', '.join(BUILTIN)}), an existing folder, or a hub id (org/name)",
            hint="pass a folder saved with save_pretrained, or a hub id such as bert-base-uncased",
        )
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return Source(spec, local_files_only=True)  # cached: no network round trip at all
    not_here = f"model {spec!r} is not a built-in name ({', '.join(BUILTIN)}), a folder, or in the local hub cache"
    if constants.HF_HUB_OFFLINE:
        raise ModelError(
            f"{not_here}, and HF_HUB_OFFLINE is set", hint="pass a local folder saved with save_pretrained"
        )
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError:
        raise ModelError(
            f"{not_here}, and the hub ({host}) cannot be reached: offline?",
            hint="download it where you have network (it is then cached), or pass a local folder",
        ) from None
    return Source(spec, local_files_only=bool(os.environ.get("HF_HUB_OFFLINE")))
