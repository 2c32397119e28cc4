"""Nothing is clipped and nothing is unbounded: every view of real results keeps a blank outer band of
pixels (titles, notes, labels and colourbars stay inside the canvas), and no image's longest side
exceeds --max-pixels."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz import extract
from attnviz.export.plan import plan
from attnviz.render.image import Painter, Sheet, Style
from attnviz.result import AttentionResult
from attnviz.spec import ExportView, ViewSpec
from attnviz.views import apply

BAND = 3  # pixels at each edge that must be the background
LONG = " ".join(
    "attention lets every token of a paragraph look at every other token and weigh what it finds".split() * 25
)[:1500]
LONG_MODEL = "/home/someone/checkpoints/experiments/2026-11-21/fine-tuned-all-MiniLM-L6-v2-with-a-long-name"


@pytest.fixture(scope="module")
def results() -> dict[str, AttentionResult]:
    return {
        "classic": extract("I have a dream"),
        "pair": extract("I have a dream", pair="so do I, said the cat"),
        "chinese": extract("我有一个梦想"),
        "long": extract(LONG, truncate=True),
        "long-model": replace(extract("I have a dream"), model=LONG_MODEL),
    }


def _images(result: AttentionResult, view: ExportView, style: Style, **spec: object) -> list[tuple[str, bytes]]:
    """The first and last image of each planned task, drawn as the export would draw them."""
    shown = apply(result, ViewSpec.build(**{"layer": "all", **spec}))  # type: ignore[arg-type]
    painter = Painter()
    out = []
    for task in plan(shown, "0000-x", {}, view, style):
        for item in {id(i): i for i in (task.items[0], task.items[-1])}.values():
            out.append((item.name, painter.render(task.layout, task.style, item.weights, item.title)))
    return out


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _assert_band_blank(pixels: np.ndarray, name: str) -> None:
    h, w, _ = pixels.shape
    band = np.concatenate(
        [
            pixels[:BAND].reshape(-1, 3),
            pixels[-BAND:].reshape(-1, 3),
            pixels[:, :BAND].reshape(-1, 3),
            pixels[:, -BAND:].reshape(-1, 3),
        ]
    )
    inked = int((band < 250).any(axis=1).sum())
    assert inked == 0, f"{name}: {inked} pixels of the outer {BAND}-pixel band of a {w}x{h} image are drawn on"


CASES = [
    ("classic", {}),
    ("classic", {"head": "mean"}),
    ("classic", {"hide_special": True, "words": True, "head": "mean"}),
    ("classic", {"agg": "rollout"}),
    ("pair", {}),
    ("pair", {"hide_special": True, "renormalize": True}),
    ("chinese", {"words": True}),
    ("long", {}),
    ("long-model", {}),
    ("long-model", {"head": "max", "hide_special": True, "words": True}),
]
STYLES = {
    "default": Style(),
    "caption": Style(caption=True, vmax=None),
    "big-font": Style(fontsize=16, annotate="on"),
    "small-figure": Style(figsize=(4, 3)),
}


@pytest.mark.parametrize("view", list(ExportView), ids=lambda v: v.value)
@pytest.mark.parametrize(("case", "spec"), CASES, ids=lambda c: c if isinstance(c, str) else "-".join(map(str, c)))
def test_every_view_keeps_its_outer_band_blank(results, case, spec, view):
    if case == "long" and view is ExportView.HEAD:
        spec = {**spec, "layer": "5", "head": "0"}  # one map is enough: the model view holds them all
    for style_name, style in STYLES.items():
        if style_name == "small-figure" and (case == "long" or view is ExportView.MODEL):
            continue  # hundreds of tokens in 4x3 inches do not fit at one pixel each (tested below)
        for name, png in _images(results[case], view, style, **spec):
            pixels = _pixels(png)
            assert max(pixels.shape[:2]) <= style.max_pixels, name
            _assert_band_blank(pixels, f"{case} {spec} {view.value} {style_name} {name}")


def test_a_long_paragraph_stays_within_the_pixel_limit_and_says_what_it_did(results):
    stack = apply(results["long"], ViewSpec.build(layer="all")).stacks[0]
    tasks = plan(apply(results["long"], ViewSpec.build(layer="all")), "x", {}, ExportView.MODEL, Style())
    sheet = Sheet(tasks[0].layout, tasks[0].style)
    width, height = sheet.pixel_size()
    assert max(width, height) <= 10_000 < 12 * len(stack.key) * 12  # the old 0.12-inch cells would not fit
    assert sheet.m.step > 1
    assert any("token labelled" in line for line in sheet.caption_lines)
    bigger = Sheet(tasks[0].layout, Style(max_pixels=20_000))
    assert 10_000 < max(bigger.pixel_size()) <= 20_000 and bigger.m.cell > sheet.m.cell


def test_a_figure_size_is_kept_exactly_and_the_cells_fit_inside(results):
    tasks = plan(apply(results["classic"], ViewSpec.build(layer="5")), "x", {}, ExportView.LAYER, Style())
    sheet = Sheet(tasks[0].layout, Style(figsize=(8, 6), dpi=100))
    assert sheet.pixel_size() == (800, 600)


def test_a_title_too_long_for_the_figure_is_shortened_with_an_ellipsis_at_its_start(results):
    tasks = plan(apply(results["long-model"], ViewSpec.build(layer="5", head="0")), "x", {}, ExportView.HEAD, Style())
    sheet = Sheet(tasks[0].layout, replace(tasks[0].style, figsize=(3, 3), fmt="pdf"))  # PDF: the title is a Text
    sheet.render(tasks[0].items[0].weights, tasks[0].items[0].title)
    shown = sheet.title.get_text()
    assert shown.startswith("…") and shown.endswith("encoder · layer 5 · head 0")


def test_vmax_auto_scales_each_stack_to_its_largest_weight(results):
    shown = apply(results["classic"], ViewSpec.build(layer="5", head="mean"))
    task = plan(shown, "x", {}, ExportView.HEAD, Style(vmax=None))[0]
    assert task.style.vmax == pytest.approx(float(shown.stacks[0].weights.max()))


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) rasterises the PDF")
@pytest.mark.parametrize("view", list(ExportView), ids=lambda v: v.value)
def test_pdf_pages_keep_their_outer_band_blank(results, view, tmp_path: Path):
    spec = {"layer": "5"} if view is not ExportView.MODEL else {}
    for name, pdf in _images(results["long-model"], view, Style(fmt="pdf", caption=True), **spec):
        path = tmp_path / name
        path.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", "72", "-png", "-singlefile", str(path), str(path)], check=True)
        _assert_band_blank(np.asarray(Image.open(f"{path}.png").convert("RGB")), name)
