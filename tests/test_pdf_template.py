"""PDFs filled in from a template look like PDFs matplotlib draws whole: same pixels (rasterised by
poppler), same text, Type 42 fonts only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz import extract
from attnviz.export.plan import plan
from attnviz.render.image import Sheet, Style
from attnviz.spec import ExportView, ViewSpec
from attnviz.views import apply

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm, pdftotext)")


def _raster(pdf: bytes, path: Path) -> np.ndarray:
    path.with_suffix(".pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", "100", "-png", "-singlefile", str(path.with_suffix(".pdf")), str(path)], check=True
    )
    return np.asarray(Image.open(f"{path}.png").convert("RGB")).astype(int)


def _text(pdf: bytes, path: Path) -> str:
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize(
    ("view", "spec"),
    [
        (ExportView.HEAD, {"layer": "all"}),
        (ExportView.HEAD, {"layer": "5", "head": "mean", "hide_special": True}),
        (ExportView.LAYER, {"layer": "all"}),
        (ExportView.MODEL, {"layer": "all"}),
    ],
    ids=["head", "mean", "layer", "model"],
)
def test_template_pdfs_match_whole_drawings(view, spec, tmp_path: Path):
    result = apply(extract("I have a dream, said the cat"), ViewSpec.build(**spec))  # type: ignore[arg-type]
    task = plan(result, "x", {}, view, Style(fmt="pdf", vmax=None))[0]
    fast = Sheet(task.layout, task.style)
    whole = Sheet(task.layout, task.style)
    for item in (task.items[0], task.items[-1]):
        pdf = fast.render(item.weights, item.title)
        assert fast._pdf, "the template should describe this figure"
        reference = whole.render_vector(item.weights, item.title)
        a, b = _raster(pdf, tmp_path / "fast"), _raster(reference, tmp_path / "whole")
        assert a.shape == b.shape
        # glyphs may sit a fraction of a pixel apart (kerning is not repeated): only edges differ
        assert (np.abs(a - b).max(axis=-1) > 60).mean() < 0.005
        words = _text(pdf, tmp_path / "t.pdf").split()
        assert item.title.split()[-1] in words and "dream" in words
        # the text layer (copy, search, screen readers) is the drawing's: nothing hidden added
        assert sorted(words) == sorted(_text(reference, tmp_path / "whole.pdf").split())
        if fast.m.annotate:
            assert f"{item.weights[0, 0, 0]:.2f}".removeprefix("0") in words
        fonts = subprocess.run(["pdffonts", str(tmp_path / "t.pdf")], capture_output=True, text=True).stdout
        assert "CID TrueType" in fonts and "Type 3" not in fonts


def test_titles_with_characters_the_template_lacks_are_drawn_whole(tmp_path: Path):
    result = apply(extract("I have a dream"), ViewSpec.build(layer="0", head="0"))
    task = plan(result, "x", {}, ExportView.HEAD, Style(fmt="pdf"))[0]
    sheet = Sheet(task.layout, task.style)
    item = task.items[0]
    sheet.render(item.weights, item.title)
    pdf = sheet.render(item.weights, "ЖЖЖ · encoder")  # Cyrillic: not in the template's subset
    assert "ЖЖЖ" in _text(pdf, tmp_path / "t.pdf")
