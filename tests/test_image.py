"""Heatmap images: real PNG/SVG/PDF bytes from real attention, decoded and checked."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from attnviz import extract
from attnviz.errors import UsageError
from attnviz.export.files import slug
from attnviz.render.image import Layout, Sheet, Style, _elide, _scale_ticks, printable_label

TOKENS = ("[CLS]", "i", "have", "a", "dream", "[SEP]")


@pytest.fixture(scope="module")
def dream():
    return extract("I have a dream", device="cpu").stack("encoder")


def test_png_decodes_at_the_figure_size_and_cells_carry_the_colour_map():
    n = len(TOKENS)
    weights = np.eye(n, dtype=np.float32)[None]  # (1, q, k): 1 on the diagonal, 0 elsewhere
    sheet = Sheet(Layout(1, 1, TOKENS, TOKENS), Style(annotate="off"))
    png = sheet.render(weights, "title")
    image = Image.open(io.BytesIO(png))
    image.load()
    w_in, h_in = sheet.size
    assert image.size == sheet.pixel_size() == (int(w_in * 100), int(h_in * 100))  # matplotlib truncates
    assert image.info["dpi"] == pytest.approx((100, 100), abs=0.1)
    pixels = np.asarray(image.convert("RGB"))
    r0, r1, c0, c1, _ = sheet._cells[0]
    cell_h, cell_w = (r1 - r0) / n, (c1 - c0) / n
    top, bottom = (np.array(colormaps["viridis"]([1.0, 0.0])[:, :3]) * 255).round()
    for i in range(n):
        for j in range(n):
            y, x = int(r0 + (i + 0.5) * cell_h), int(c0 + (j + 0.5) * cell_w)
            assert np.abs(pixels[y, x] - (top if i == j else bottom)).max() <= 1, (i, j)


def test_values_are_written_in_small_matrices_and_not_in_large_ones(dream):
    small = Sheet(Layout(1, 1, TOKENS, TOKENS), Style())
    assert small.m.annotate
    long_tokens = tuple(f"t{i}" for i in range(30))
    assert not Sheet(Layout(1, 1, long_tokens, long_tokens), Style()).m.annotate
    with_values = np.asarray(Image.open(io.BytesIO(small.render(dream.weights[0, 0][None], "t"))))
    plain = Sheet(Layout(1, 1, TOKENS, TOKENS), Style(annotate="off"))
    without = np.asarray(Image.open(io.BytesIO(plain.render(dream.weights[0, 0][None], "t"))))
    assert with_values.shape != without.shape or not np.array_equal(with_values, without)


def test_figure_grows_with_the_token_count():
    sizes = []
    for n in (4, 12, 60):
        tokens = tuple(f"w{i}" for i in range(n))
        sizes.append(Sheet(Layout(1, 1, tokens, tokens), Style()).pixel_size())
    assert sizes[0][0] < sizes[1][0] < sizes[2][0]
    assert sizes[0][1] < sizes[1][1] < sizes[2][1]


def test_svg_is_xml_and_pdf_is_a_pdf(dream):
    weights = dream.weights[5, 0][None]
    svg = Sheet(Layout(1, 1, TOKENS, TOKENS), Style(fmt="svg")).render(weights, "model · encoder · layer 5 · head 0")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    pdf = Sheet(Layout(1, 1, TOKENS, TOKENS), Style(fmt="pdf")).render(weights, "t")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_grid_sheet_has_one_panel_per_head(dream):
    layout = Layout(3, 4, TOKENS, TOKENS, panel_titles=tuple(f"head {h}" for h in range(12)))
    sheet = Sheet(layout, Style())
    png = sheet.render(dream.weights[5], "layer 5")
    assert Image.open(io.BytesIO(png)).size == sheet.pixel_size()
    assert len(sheet.boxes) == len(sheet._cells) == 12
    boxes = [cells[:4] for cells in sheet._cells]  # (r0, r1, c0, c1) in pixels: no two panels overlap
    assert all(
        not (a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]) for a in boxes for b in boxes if a is not b
    )
    with pytest.raises(ValueError):
        sheet.render(dream.weights[5, :4], "too few panels")


def test_labels_without_a_font_become_code_points():
    assert printable_label("dream") == "dream"
    assert printable_label("мечта") == "мечта"  # DejaVu draws Cyrillic
    assert printable_label("梦") in ("梦", "U+68A6")  # drawn when a CJK font is installed, never an empty box


@pytest.mark.parametrize(
    "style, message",
    [
        (Style(fmt="gif"), "unknown image format"),
        (Style(cmap="nope"), "unknown colour map"),
        (Style(dpi=5), "a dpi of 5 is outside 10..1200"),
        (Style(vmax=0), "the top of the colour scale must be a number above 0"),
        (Style(annotate="sometimes"), "unknown annotate setting"),
    ],
)
def test_style_check_refuses_what_matplotlib_cannot_draw(style, message):
    with pytest.raises(UsageError, match=message):
        style.check()


def test_slug_never_makes_a_path():
    assert slug("../../etc/x") == "etc-x"
    assert slug("/") == "s" and slug("..") == "s"
    assert slug("У меня есть мечта") == "u-menya-est-mechta"  # transliterated, not dropped


def test_slug_transliterates_every_script():
    assert slug("我有一个梦想") == "wo-you-yi-ge-meng-xiang"
    assert slug("όνειρο") == "oneiro" and slug("café") == "cafe"
    assert all(slug(t) not in ("", "s") for t in ("夢", "꿈", "सपना", "حلم"))
    assert slug("I have a dream that one day this nation will rise") == "i-have-a-dream-that-one"


def test_long_titles_and_notes_stay_inside_the_image(tmp_path):
    """The title (centred over the grid) and the caption make room for themselves: the border stays white."""
    from harness import run

    out = run(
        "export",
        "I have an unbelievable dream",
        "--view",
        "layer",
        "--agg",
        "rollout",
        "--hide-special",
        "--out",
        str(tmp_path),
        "--jobs",
        "1",
    )
    assert out.code == 0, out.stderr
    (png,) = tmp_path.glob("*.png")
    pixels = np.asarray(Image.open(png).convert("L"))
    border = np.concatenate([pixels[:, :3].ravel(), pixels[:, -3:].ravel(), pixels[:3].ravel(), pixels[-3:].ravel()])
    assert border.min() == 255
    # and the band just inside does hold ink: the title and caption reach close to the edges
    assert pixels[:, :40].min() < 128 and pixels[:, -80:].min() < 128


def test_a_long_model_name_is_shortened_not_stretched_across_the_figure():
    """The title may widen a small figure a little (Sheet.MIN_WIDTH); a longer one loses its start."""
    layout = Layout(1, 1, TOKENS, TOKENS)
    short = Sheet(layout, Style("png"))
    path = "/data/" + "very-long-folder-name/" * 20 + "model"
    long = Sheet(replace(layout, widest_title=f"{path} · encoder · layer 5 · head 3"), Style("png"))
    assert long.size[0] <= max(short.size[0], Sheet.MIN_WIDTH + 2 * Sheet.PAD) + 1e-9
    title = _elide(f"{path} · encoder · layer 5 · head 3", Sheet.TITLE_SIZE, long.title_room)
    assert title.startswith("…") and title.endswith("model · encoder · layer 5 · head 3")


def test_a_font_size_asked_for_grows_the_cells_and_a_thinning_note_names_its_cause():
    layout = Layout(1, 1, TOKENS, TOKENS)
    assert Sheet(layout, Style("png", fontsize=30)).m.step == 1  # every token keeps its label
    long = tuple(f"w{i}" for i in range(131))
    squeezed = Sheet(Layout(1, 1, long, long), Style("png", figsize=(8, 8)))
    assert squeezed.m.step > 1 and "to fit the 8x8-inch figure" in squeezed.caption_lines[-1]
    bounded = Sheet(Layout(1, 1, long * 20, long * 20), Style("png"))
    assert bounded.m.step > 1 and "within 10000 pixels" in bounded.caption_lines[-1]


@pytest.mark.parametrize("vmax", [1.0, 0.5, 0.987, 0.85, 0.0123, 3e-5])
def test_the_colour_bar_labels_its_top(vmax):
    """An auto scale ends at the largest weight: its top carries that number, and ticks never crowd it."""
    ticks, labels = _scale_ticks(vmax)
    assert ticks[0] == 0 and ticks[-1] == pytest.approx(vmax) and labels[-1] == f"{vmax:.3g}"
    steps = np.diff(ticks)
    assert steps.min() >= steps.max() / 2 - 1e-12


@pytest.mark.parametrize("rows, cols, annotate", [(1, 1, "on"), (1, 1, "off"), (2, 2, "on")])
def test_svg_from_the_template_is_what_matplotlib_draws(dream, rows, cols, annotate):
    """SVGs after the first fill a template: the same document as a whole drawing, but ids and cell images."""
    import base64
    import re

    layout = Layout(rows, cols, TOKENS, TOKENS, panel_titles=tuple(f"head {h}" for h in range(rows * cols)))
    weights = dream.weights[5, : rows * cols]
    fast = Sheet(layout, Style(fmt="svg", annotate=annotate))
    fast.render(dream.weights[4, : rows * cols], "model · encoder · layer 4")
    ours = fast.render(weights, "model · encoder · layer 5 & <more>").decode()
    assert fast._svg, "the template describes this figure"
    whole = Sheet(layout, Style(fmt="svg", annotate=annotate))
    whole._svg = []  # no template: matplotlib draws every image
    theirs = whole.render(weights, "model · encoder · layer 5 & <more>").decode()

    def plain(svg: str) -> str:
        return re.sub(r'(id|href|clip-path)="[^"]*"|url\(#[^)]*\)|base64,[^"]*|; fill: #000000', "", svg)

    assert plain(ours) == plain(theirs)
    ET.fromstring(ours)

    def cells(svg: str) -> list[np.ndarray]:
        data = re.findall(r'base64,\s*([^"]*)', svg)[: rows * cols]
        return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")).astype(int) for d in data]

    for a, b in zip(cells(ours), cells(theirs)):
        assert a.shape == b.shape == (len(TOKENS), len(TOKENS), 3)
        assert np.abs(a - b).max() <= 4  # one colour-map step at most (rounding vs flooring the index)


def test_a_pair_draws_its_a_b_boundary_in_png_and_svg(tmp_path):
    """A white line between sentence A and B, over the cells, in the fast PNG path and in SVG."""
    from harness import run
    from matplotlib.image import imread

    for fmt in ("png", "svg"):
        out = run(
            "export", "The cat sat.", "--pair", "It was tired.", "--layer", "5", "--head", "0",
            "--image", fmt, "--out", str(tmp_path / fmt),
        )  # fmt: skip
        assert out.code == 0, out.stderr
    png = imread(next((tmp_path / "png").glob("*.png")))[..., :3]  # (H, W, 3) in 0..1
    white_columns = [x for x in range(png.shape[1]) if (png[:, x] > 0.99).all(axis=-1).mean() > 0.6]
    white_rows = [y for y in range(png.shape[0]) if (png[y] > 0.99).all(axis=-1).mean() > 0.6]
    inside = [x for x in white_columns if 0.3 * png.shape[1] < x < 0.7 * png.shape[1]]
    assert inside, "no vertical A|B line inside the heatmap"
    assert [y for y in white_rows if 0.3 * png.shape[0] < y < 0.7 * png.shape[0]], "no horizontal A|B line"
    svg = next((tmp_path / "svg").glob("*.svg")).read_text()
    assert svg.count("stroke: #ffffff") >= 2


def _far(a: np.ndarray, b: np.ndarray, tolerance: int = 60) -> np.ndarray:
    """Pixels of `a` with no pixel of `b` within one pixel that is closer than `tolerance` in every channel."""
    h, w, _ = a.shape
    padded = np.pad(b, ((1, 1), (1, 1), (0, 0)), mode="edge")
    best = np.full((h, w), 255)
    for dy in range(3):
        for dx in range(3):
            best = np.minimum(best, np.abs(a - padded[dy : dy + h, dx : dx + w]).max(axis=-1))
    return best > tolerance


@pytest.mark.parametrize("view", ["head", "layer", "model"])
@pytest.mark.parametrize("text, pair", [("I have a dream", None), ("I have a dream", "so do I, said the cat")])
def test_fast_png_is_what_matplotlib_draws_of_the_same_sheet(view, text, pair):
    """The PNG painter (stamped labels, painted cells, colour bar and ticks) against matplotlib drawing
    the sheet's own figure: the same pixels but for glyph edges a pixel apart (whole-pixel anchors)."""
    from dataclasses import replace

    from attnviz.export.plan import plan
    from attnviz.spec import ExportView, ViewSpec
    from attnviz.views import apply

    spec = ViewSpec.build(layer="5", head="0") if view == "head" else ViewSpec.build(layer="all")
    task = plan(apply(extract(text, pair=pair), spec), "x", {}, ExportView(view), Style(caption=True, annotate="on"))[0]
    item = task.items[-1]
    fast = Sheet(task.layout, task.style)
    png = np.asarray(Image.open(io.BytesIO(fast.render(item.weights, item.title))).convert("RGB")).astype(int)
    assert fast.fig is None  # a PNG builds no matplotlib figure at all
    whole = Sheet(task.layout, replace(task.style, fmt="svg"))
    whole.render_vector(item.weights, item.title)
    assert whole.fig is not None and len(whole.fig.axes) == 2  # one axes for every panel, one for the colour bar
    assert len(whole.images) == task.layout.panels
    out = io.BytesIO()
    whole.fig.savefig(out, format="png", dpi=task.style.dpi)
    drawn = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert png.shape == drawn.shape
    far = _far(png, drawn) | _far(drawn, png)
    assert far.mean() < 0.01, f"{far.sum()} pixels differ beyond glyph edges"
    # and the parts are there: every panel's cells, labels left of the grid and under it, the colour bar
    r0, r1, c0, c1, _ = fast._cells[0]
    assert (png[r0:r1, : c0 - 2] < 128).any() and (png[fast._cells[-1][1] + 3 :, c0:c1] < 128).any()


def _rows_that_repeat(height: int, width: int, seed: int) -> np.ndarray:
    """PNG scanlines (filter byte 0, RGB) of flat runs of rows, with ink left and right of a middle band."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    y = 0
    while y < height:
        run = int(rng.integers(1, 12))
        image[y : y + run] = rng.integers(0, 256, (1, width, 3), dtype=np.uint8)
        y += run
    inked = rng.random(height) < 0.3
    image[inked, : width // 5] = rng.integers(0, 256, (int(inked.sum()), width // 5, 3), dtype=np.uint8)
    image[inked[::-1], -width // 6 :] = 255 - image[inked[::-1], -width // 6 :]
    return np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)


@pytest.mark.parametrize("width", [300, 5000])  # short spans go through zlib whole; long ones as ready-made pieces
def test_png_rows_that_repeat_decode_to_the_same_pixels(width):
    import zlib

    from attnviz.render.image import encode_png

    scanlines = _rows_that_repeat(200, width, seed=width)
    span = (1 + 3 * (width // 5), 1 + 3 * (width - width // 6))
    png = encode_png(scanlines, width, 200, 100, span=span)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert np.array_equal(pixels, scanlines[:, 1:].reshape(200, width, 3))
    idat = png[png.index(b"IDAT") + 4 :]
    raw = zlib.decompress(idat[: int.from_bytes(png[png.index(b"IDAT") - 4 : png.index(b"IDAT")], "big")])
    assert len(raw) == scanlines.size  # zlib checked the Adler-32 too
    filters = set(raw[:: scanlines.shape[1]])
    assert filters == {0, 2}  # rows as they are, and rows sent as their difference to the row above


def test_a_model_grid_draws_each_distinct_label_once():
    from attnviz.render import image

    tokens = tuple(f"w{i}" for i in range(30))
    titles = tuple(f"head {h}" if p < 12 else "" for p, h in enumerate(list(range(12)) * 6))
    layout = Layout(6, 12, tokens, tokens, panel_titles=titles, row_titles=tuple(f"layer {i}" for i in range(6)))
    sheet = Sheet(layout, Style())
    image._stamp.cache_clear()
    weights = np.random.default_rng(0).dirichlet(np.ones(30), (72, 30)).astype(np.float32)  # (72, q, k)
    Image.open(io.BytesIO(sheet.render(weights, "model"))).load()
    labels = [t for t in sheet.labels if t.text in tokens]
    assert len(labels) == 12 * 30 + 6 * 30  # x labels under 12 panels, y labels beside 6
    distinct = {(t.text, t.size, t.rotation, t.ha, t.va) for t in sheet.labels}
    assert image._stamp.cache_info().misses == len(distinct) + 1  # each drawn once (and the title), then stamped


def test_the_painter_lets_big_canvases_go_and_paints_the_next_in_one():
    from attnviz.render.image import Painter

    weights = np.eye(len(TOKENS), dtype=np.float32)[None]
    first, second, third = (Layout(1, 1, TOKENS, TOKENS, q_cut=cut) for cut in (None, 2, 3))  # one size
    canvas = Sheet(first, Style())
    canvas.render(weights, "a")
    painter = Painter(budget=canvas.nbytes() + 1000)  # room for one canvas: the older ones go
    painter.render(first, Style(), weights, "a")
    buffer = painter.sheet(first, Style())._buffer
    painter.render(second, Style(), weights, "b")  # the first sheet goes; its canvas is kept for the next
    png = painter.render(third, Style(), weights, "c")
    assert list(painter._sheets) == [(third, Style())]
    assert buffer is not None and np.shares_memory(painter.sheet(third, Style())._buffer, buffer)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))  # painted anew: no trace of the first
    fresh = np.asarray(Image.open(io.BytesIO(Sheet(third, Style()).render(weights, "c"))).convert("RGB"))
    assert np.array_equal(pixels, fresh)
