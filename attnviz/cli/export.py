"""`attnviz export`: heatmap images (PNG, SVG, PDF) for one sentence or a whole file."""

from __future__ import annotations

import functools
import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..backends.types import Device, Dtype
from ..limits import MAX_LAYERS, MAX_LINE_BYTES, MAX_TOTAL_PIXELS
from ..spec import Agg, Annotate, ExportView, ImageFormat
from .help import IMAGE_PANEL, INPUT_PANEL
from .images import export_images, export_pages, image_style
from .options import (
    AggOpt,
    AnnotateOpt,
    BatchSize,
    Caption,
    Cmap,
    DeviceMapOpt,
    DeviceOpt,
    Dpi,
    DtypeOpt,
    FigSize,
    FontSize,
    Generate,
    Head,
    HideSpecial,
    Jobs,
    Layer,
    ManifestOpt,
    MaxLayers,
    MaxLineBytes,
    MaxParams,
    MaxPixels,
    MaxTotalPixels,
    Model,
    Overwrite,
    Pair,
    Renormalize,
    StackOpt,
    Target,
    TokenWindowOpt,
    Truncate,
    TrustRemoteCode,
    ViewOpt,
    Vmax,
    Words,
    load_model,
    sentences_from,
    view_spec,
)


class ExportFormat(str, Enum):
    """What export writes: images, or interactive pages (html)."""

    PNG = "png"
    SVG = "svg"
    PDF = "pdf"
    HTML = "html"


EXAMPLES = """
# PNG heatmaps of every head of every layer
attnviz export "I have a dream" --out figs/
# a whole file, one grid per layer, as SVG
attnviz export --input sample_inputs/classic.txt --view layer --image svg --out figs/
# one interactive page per sentence, with an index.html
attnviz export --input sample_inputs/classic.txt --image html --out pages/
"""


def export(
    texts: Annotated[
        list[str] | None,
        typer.Argument(metavar="TEXT", help="Sentences to draw (or use --input FILE).", show_default=False),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder for the images and manifest.jsonl (created).",
            rich_help_panel=IMAGE_PANEL,
        ),
    ] = Path("attnviz-images"),
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="FILE",
            help="File with one sentence per line (- for stdin); a tab starts the pair/target.",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = None,
    view: ViewOpt = ExportView.HEAD,
    image: Annotated[
        ExportFormat,
        typer.Option(
            "--image",
            help="png, svg, pdf: heatmap images; html: one interactive page per sentence and an index.html.",
            rich_help_panel=IMAGE_PANEL,
        ),
    ] = ExportFormat.PNG,
    cmap: Cmap = "viridis",
    dpi: Dpi = 100,
    vmax: Vmax = "1",
    annotate: AnnotateOpt = Annotate.AUTO,
    caption: Caption = False,
    figsize: FigSize = None,
    fontsize: FontSize = None,
    max_pixels: MaxPixels = 10_000,
    max_total_pixels: MaxTotalPixels = MAX_TOTAL_PIXELS,
    manifest: ManifestOpt = None,
    overwrite: Overwrite = False,
    jobs: Jobs = 0,
    model: Model = "minilm",
    layer: Layer = None,
    head: Head = "all",
    stack: StackOpt = None,
    agg: AggOpt = Agg.NONE,
    hide_special: HideSpecial = False,
    renormalize: Renormalize = False,
    words: Words = False,
    tokens: TokenWindowOpt = None,
    pair: Pair = None,
    target: Target = None,
    generate: Generate = None,
    device: DeviceOpt = Device.AUTO,
    dtype: DtypeOpt = Dtype.FLOAT32,
    device_map: DeviceMapOpt = None,
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    batch_size: BatchSize = 16,
    max_line_bytes: MaxLineBytes = MAX_LINE_BYTES,
    max_params: MaxParams = None,
    max_layers: MaxLayers = MAX_LAYERS,
) -> None:
    """Draw attention heatmaps (PNG, SVG, PDF) for sentences or a whole file, with a manifest.

    Every layer by default (--layer narrows it); --agg mean/max draws the heads combined.
    """
    from ..export.run import from_model

    style = None
    if image is not ExportFormat.HTML:  # flags first: a typo should not wait for a model
        style = image_style(
            ImageFormat(image.value),
            cmap=cmap,
            dpi=dpi,
            vmax=vmax,
            annotate=annotate,
            caption=caption,
            figsize=figsize,
            fontsize=fontsize,
            max_pixels=max_pixels,
        )
    spec = view_spec(
        stack=stack,
        layer=layer,
        head=head,
        agg=agg,
        words=words,
        hide_special=hide_special,
        renormalize=renormalize,
        tokens=tokens,
    )
    sentences = sentences_from(
        texts or [],
        input_file,
        "nothing to draw",
        'give a sentence (attnviz export "I have a dream") or --input FILE',
        max_line_bytes,
        truncate,
    )
    load = functools.partial(
        load_model,
        model,
        device=device,
        dtype=dtype,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        causal_lm=generate is not None,
        max_params=max_params,
        max_layers=max_layers,
    )
    outcomes = from_model(
        load, batch_size=batch_size, truncate=truncate, pair=pair, target=target, generate=generate or 0
    )
    if style is None:
        export_pages(sentences, outcomes, out, spec, manifest=manifest)
        return
    export_images(
        sentences,
        outcomes,
        out,
        spec,
        view=view,
        style=style,
        manifest=manifest,
        overwrite=overwrite,
        jobs=jobs,
        source=_source(model, dtype, trust_remote_code, truncate, pair, target, str(generate or 0)),
        max_total_pixels=max_total_pixels,
    )


def _source(model: str, dtype: Dtype, trust_remote_code: bool, truncate: bool, *texts: str | None) -> str:
    """What makes the model's results what they are (for the export's plan keys): a local model
    folder by its full path, so the same `--model ./m` from another folder is another model."""
    where = Path(model)
    name = str(where.resolve()) if where.exists() else model
    return json.dumps([name, dtype.value, trust_remote_code, truncate, *texts], ensure_ascii=False)
