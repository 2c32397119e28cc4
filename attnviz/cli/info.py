"""`attnviz info`: what a model is and what attention it has."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from typing import Annotated

import typer

from ..backends.types import Device
from ..limits import MAX_LAYERS
from .help import OUTPUT_PANEL
from .options import (
    AllowMissing,
    DeviceMapOpt,
    DeviceOpt,
    DModel,
    Heads,
    Layers,
    MaxLayers,
    MaxParams,
    Model,
    Seed,
    TrustRemoteCode,
    load_model,
    write_stdout,
)


class InfoFormat(str, Enum):
    TABLE = "table"
    JSON = "json"


EXAMPLES = """
# the embedded model's family, stacks, layers, heads, maximum length
attnviz info
# a model folder, as JSON
attnviz info --model path/to/model --format json
"""


def info(
    model: Model = "minilm",
    device: DeviceOpt = Device.AUTO,
    device_map: DeviceMapOpt = None,
    trust_remote_code: TrustRemoteCode = False,
    allow_missing: AllowMissing = False,
    fmt: Annotated[
        InfoFormat, typer.Option("--format", "-f", help="table, or json: one object.", rich_help_panel=OUTPUT_PANEL)
    ] = InfoFormat.TABLE,
    json_out: Annotated[bool, typer.Option("--json", hidden=True, help="The same as --format json.")] = False,
    layers: Layers = 1,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
    max_params: MaxParams = None,
    max_layers: MaxLayers = MAX_LAYERS,
) -> None:
    """Family, stacks, layers, heads and maximum length of a model."""
    options = dict(
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        allow_missing=allow_missing,
        layers=layers,
        d_model=d_model,
        heads=heads,
        seed=seed,
    )
    meta = load_model(model, device=device, max_params=max_params, max_layers=max_layers, **options).info
    if json_out or fmt is InfoFormat.JSON:
        from ..saved import dumps  # lazy: numpy stays out of --help

        write_stdout(dumps(asdict(meta)) + "\n")
        return
    from ..render.tokens import info_table
    from .console import print_trimmed, stdout_console

    print_trimmed(stdout_console(), info_table(meta))
