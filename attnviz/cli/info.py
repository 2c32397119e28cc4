"""`attnviz info`: what a model is and what attention it has."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from ..backends.types import Device
from .options import DeviceOpt, DModel, Heads, Layers, Model, Seed, TrustRemoteCode, load_model, write_stdout


def info(
    model: Model = "minilm",
    device: DeviceOpt = Device.AUTO,
    trust_remote_code: TrustRemoteCode = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    layers: Layers = 1,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
) -> None:
    """Family, stacks, layers, heads and maximum length of a model."""
    options = dict(trust_remote_code=trust_remote_code, layers=layers, d_model=d_model, heads=heads, seed=seed)
    meta = load_model(model, device=device, **options).info
    if json_out:
        write_stdout(json.dumps(asdict(meta), ensure_ascii=False) + "\n")
        return
    from rich.console import Console

    from ..render.tokens import info_table

    Console().print(info_table(meta))
