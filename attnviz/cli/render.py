"""`attnviz render FILE`: draw a saved result again, with any view, in any format — no model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..limits import MAX_TOTAL_PIXELS
from ..spec import Agg, Annotate, ExportView, ImageFormat, parse_vmax
from .images import export_images, image_style
from .options import (
    AggOpt,
    AnnotateOpt,
    Caption,
    Cmap,
    Digits,
    Dpi,
    FigSize,
    FontSize,
    FormatOrNone,
    HeadOrOverview,
    HideSpecial,
    ImageOrNone,
    Jobs,
    Layer,
    ManifestOpt,
    MaxPixels,
    MaxTotalPixels,
    OutputFormat,
    Overwrite,
    Query,
    Renormalize,
    StackOpt,
    TokenWindowOpt,
    ViewOrNone,
    VmaxOrNone,
    Words,
    view_spec,
)
from .output import check_count, check_format, check_vmax, print_results, viewed

FileArg = Annotated[
    str,
    typer.Argument(
        metavar="FILE", help="A .json, .jsonl or .npz that attnviz wrote (show --format json …), or - for stdin."
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", metavar="DIR", help="With --image: the folder for the images and manifest.jsonl (created)."
    ),
]


EXAMPLES = """
# save once, draw many times without a model
attnviz show "I have a dream" --layer all --format json > dream.json
attnviz render dream.json --layer 0 --head mean
# the saved weights as PNG heatmaps, one grid per layer
attnviz render dream.json --image png --view layer --out figs/
"""


def render(
    file: FileArg,
    layer: Layer = None,
    head: HeadOrOverview = None,
    stack: StackOpt = None,
    agg: AggOpt = Agg.NONE,
    hide_special: HideSpecial = False,
    renormalize: Renormalize = False,
    words: Words = False,
    tokens: TokenWindowOpt = None,
    query: Query = None,
    fmt: FormatOrNone = None,
    digits: Digits = 2,
    image: ImageOrNone = None,
    out: Out = None,
    view: ViewOrNone = None,
    cmap: Cmap = "viridis",
    dpi: Dpi = 100,
    vmax: VmaxOrNone = None,
    annotate: AnnotateOpt = Annotate.AUTO,
    caption: Caption = False,
    figsize: FigSize = None,
    fontsize: FontSize = None,
    max_pixels: MaxPixels = 10_000,
    max_total_pixels: MaxTotalPixels = MAX_TOTAL_PIXELS,
    manifest: ManifestOpt = None,
    overwrite: Overwrite = False,
    jobs: Jobs = 0,
) -> None:
    """Draw a saved result again with any view and format, without loading a model.

    It prints exactly what `show` prints for the same text and flags; with --image (and
    --out) it writes the images `export` would.
    """
    spec = view_spec(
        stack=stack,
        layer=layer,
        head="all" if head is None else head,
        agg=agg,
        words=words,
        hide_special=hide_special,
        renormalize=renormalize,
        tokens=tokens,
        query=query,
    )
    as_images = image is not None or out is not None
    if view is not None and not as_images:
        raise UsageError("--view lays out images: it goes with --image/--out", hint="add --image png, or drop --view")
    if as_images and fmt is not None:
        raise UsageError("--format prints to stdout and --image/--out write files: choose one")
    if as_images and query is not None:
        raise UsageError("--query draws bars in the terminal, not images", hint="drop --query, or drop --image/--out")
    fmt = fmt or OutputFormat.TABLE
    style = None
    if as_images:
        style = image_style(
            image or ImageFormat.PNG,
            cmap=cmap,
            dpi=dpi,
            vmax="1" if vmax is None else vmax,
            annotate=annotate,
            caption=caption,
            figsize=figsize,
            fontsize=fontsize,
            max_pixels=max_pixels,
        )
    else:
        check_format(fmt)
        top = parse_vmax(vmax)
        check_vmax(fmt, top)
    from ..saved import load

    results = load(file)
    if style is not None:
        from ..export.run import from_results
        from ..spec import ALL, ViewSpec

        # viewed here, once: a view this file cannot give is one error with its hint, before any image;
        # export then draws the viewed maps as they are (every layer, every head: nothing changes)
        shown = [viewed(r, spec.with_layers(ALL), len(results) > 1) for r in results]
        sentences, outcomes = from_results(shown)
        export_images(
            sentences,
            outcomes,
            out or Path("attnviz-images"),
            ViewSpec(),
            view=view or ExportView.HEAD,
            style=style,
            manifest=manifest,
            overwrite=overwrite,
            jobs=jobs,
            max_total_pixels=max_total_pixels,
        )
        return
    check_count(fmt, len(results), f"results in {file}")
    print_results(results, spec, fmt, digits, glance=head is None, vmax=top)
