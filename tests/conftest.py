"""Shared fixtures: tiny saved models (one per family, built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_models import save_tiny

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("NO_COLOR", "1")

FAMILIES = ("bert", "gpt2", "llama", "bart", "t5")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """tiny_model("gpt2") → folder of a saved tiny GPT-2 (built on first use)."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = save_tiny(family, root / family)
        return built[family]

    return get
