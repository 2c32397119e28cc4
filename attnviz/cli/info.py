"""`attnviz info`: what a model is and what attention it has."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from .app import app
from .options import Device, DModel, Heads, Layers, Model, Seed, TrustRemoteCode, load_model, write_stdout


@app.command()
def info(
    model: Model = "minilm",
    device: Device = "auto",
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
    from rich.table import Table

    table = Table(show_header=False, title=meta.name, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("family", meta.family),
        ("backend", meta.backend),
        ("stacks", ", ".join(meta.stacks)),
        ("layers", ", ".join(f"{k} {v}" for k, v in meta.layers.items())),
        ("heads", str(meta.heads)),
        ("d_model", str(meta.d_model)),
        ("vocabulary", str(meta.vocab_size)),
        ("max positions", str(meta.max_positions) if meta.max_positions else "unbounded"),
        ("path", meta.path),
    ]
    rows += [(k, str(v)) for k, v in meta.extra.items()]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
