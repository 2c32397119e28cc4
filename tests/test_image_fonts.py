"""Fonts in images: every script draws as glyphs, PDFs embed TrueType, SVGs keep text as text."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from attnviz.render.image import FONT_PACKAGES, Layout, Sheet, Style, _label_families, missing_glyphs, printable_label

CHINESE = tuple("我有一个梦想")
MIXED = ("мечта", "όνειρο", "حلم", "सपना", "夢を見る", "꿈")  # Cyrillic, Greek, Arabic, Devanagari, Japanese, Korean
FONTS_INSTALLED = all(importlib.util.find_spec(name) for name in FONT_PACKAGES)
needs_fonts = pytest.mark.skipif(not FONTS_INSTALLED, reason="the fonts extra is not installed: pip install '.[fonts]'")


def weights(n: int) -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.ones(n), n).astype(np.float32)[None]  # (1, q, k), rows sum to 1


def render(tokens: tuple[str, ...], fmt: str, title: str = "model · encoder · layer 0 · head 0") -> bytes:
    return Sheet(Layout(1, 1, tokens, tokens), Style(fmt=fmt)).render(weights(len(tokens)), title)


@needs_fonts
@pytest.mark.parametrize("tokens", [CHINESE, MIXED], ids=["chinese", "mixed"])
def test_every_script_draws_as_glyphs_in_a_png(tokens):
    assert missing_glyphs(tokens) == ""
    assert [printable_label(t) for t in tokens] == list(tokens)  # no U+XXXX
    sheet = Sheet(Layout(1, 1, tokens, tokens), Style(annotate="off"))
    pixels = np.asarray(Image.open(io.BytesIO(sheet.render(weights(len(tokens)), "我有一个梦想"))).convert("L"))
    r0, r1, c0, _, _ = sheet._cells[0]
    row_h = (r1 - r0) / len(tokens)
    labels = [pixels[int(r0 + i * row_h) : int(r0 + (i + 1) * row_h), : c0 - 4] for i in range(len(tokens))]
    assert all((label < 128).sum() > 10 for label in labels)  # each y label has ink
    # glyphs, not one empty box repeated: no two labels look alike
    masks = {(label < 128).tobytes() for label in labels}
    assert len(masks) == len(tokens)


def test_pdf_embeds_truetype_fonts_and_no_type_3(tmp_path):
    pdffonts = shutil.which("pdffonts")
    if pdffonts is None:
        pytest.skip("pdffonts is missing (apt-get install poppler-utils)")
    for name, tokens in (("latin", ("[CLS]", "i", "have", "a", "dream", "[SEP]")), ("mixed", CHINESE + MIXED)):
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(render(tokens, "pdf", title="我有一个梦想 · layer 0"))
        listing = subprocess.run([pdffonts, str(path)], capture_output=True, text=True, check=True).stdout
        fonts = listing.splitlines()[2:]
        assert fonts, listing
        assert "Type 3" not in listing, listing
        assert all(" CID TrueType " in line and " yes yes yes " in line for line in fonts), listing
        assert path.stat().st_size < 80_000  # subset fonts keep it small


def test_svg_keeps_tokens_as_text_elements_with_a_family_list():
    svg = render(("[CLS]", "dream", *CHINESE, *MIXED), "svg").decode()
    root = ET.fromstring(svg)
    texts = [el for el in root.iter() if el.tag.endswith("}text")]
    strings = {"".join(el.itertext()) for el in texts}
    assert {"[CLS]", "dream", "我", "мечта", "सपना", "꿈"} <= strings
    assert "model · encoder · layer 0 · head 0" in strings
    assert "<path" in svg and "glyph" not in svg.lower()  # no glyphs drawn as paths
    families = ", ".join(f"'{name}'" for name in _label_families())
    assert all(families in el.get("style", "") for el in texts)
    if FONTS_INSTALLED:
        assert families == "'DejaVu Sans', 'Noto Sans CJK SC', 'Noto Sans Devanagari'"
    assert len(svg) < 120_000


def test_vector_settings_stay_inside_attnviz():
    import matplotlib

    render(("a", "b"), "pdf")
    render(("a", "b"), "svg")
    assert matplotlib.rcParams["pdf.fonttype"] == 3 and matplotlib.rcParams["svg.fonttype"] == "path"


def test_fonts_register_on_first_drawing_not_at_import():
    code = (
        "import attnviz, attnviz.render.image as image\n"
        "from matplotlib.font_manager import fontManager\n"
        f"def ours(): return [f.name for f in fontManager.ttflist if any(p in f.fname for p in {FONT_PACKAGES})]\n"
        "assert not ours(), ours()\n"
        "image._label_families()\n"
        "print(sorted(set(ours())))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if FONTS_INSTALLED:
        assert "Noto Sans CJK SC" in out and "Noto Sans Devanagari" in out


def test_characters_no_font_has_become_code_points_with_one_warning(tmp_path):
    from harness import run

    assert missing_glyphs(("a\ue000", "\ue001")) == "\ue000\ue001"
    assert printable_label("a\ue000") == "aU+E000"
    assert printable_label("\ue000\ue001b") == "U+E000 U+E001b"  # a run of them stays readable
    out = run("export", "a \ue000 b \ue001 c", "--model", "scratch", "--view", "layer", "--out", str(tmp_path))
    assert out.code == 0, out.stderr
    assert out.stderr.count("warning:") == 1 and "U+E000" in out.stderr, out.stderr
    # the advice fits the machine: the fonts extra is only suggested where it is missing
    assert ("pip install 'attnviz[fonts]'" in out.stderr) is not FONTS_INSTALLED, out.stderr


def test_one_warning_per_run_over_many_sentences(tmp_path):
    from harness import run

    source = tmp_path / "in.txt"
    source.write_text("a \ue000 b\nc \ue001 d\n", encoding="utf-8")
    out = run("export", "--input", str(source), "--model", "scratch", "--view", "layer", "--out", str(tmp_path / "o"))
    assert out.code == 0, out.stderr
    assert out.stderr.count("warning:") == 1 and "U+E000" in out.stderr, out.stderr
