"""Where a transformers model's files come from, checked before transformers sees them.

A spec is a folder when it exists or looks like a path; otherwise a hub id. Folders
are checked for config.json, readable safetensors and remote code; hub ids load from
the local cache without touching the network, and otherwise fail fast when the hub
cannot be reached (transformers' own retries take ~26 s before giving up).
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
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
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{config_file} is not valid JSON: {exc}") from None
    if "auto_map" in config and not trust_remote_code:
        raise ModelError(
            f"{path} ships its own Python code (auto_map in config.json), which attnviz does not run by default",
            hint="read that code, then allow remote code if you trust it",
            fix=Fix.TRUST_REMOTE_CODE,
        )
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights)


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
