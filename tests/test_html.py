"""The HTML viewer in a real browser: Debian's chromium driven by Playwright (executable_path,
never a downloaded browser). Without a chromium these tests skip with the reason; CI sets
ATTNVIZ_REQUIRE_BROWSER=1, which turns that skip into a failure."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from harness import run

import attnviz
from attnviz.render.html import fragment, payload

CHROMIUM = os.environ.get("ATTNVIZ_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (apt install chromium, or set ATTNVIZ_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _unavailable()
    if reason:
        if os.environ.get("ATTNVIZ_REQUIRE_BROWSER"):
            pytest.fail(f"browser tests are required here: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Opened:
    """A page opened from file://, with its console errors and every request it made."""

    def __init__(self, browser, path: Path, size=(1400, 900)) -> None:
        self.context = browser.new_context(viewport={"width": size[0], "height": size[1]}, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector(".attnviz[data-ready='1']", timeout=60_000)

    def outside(self) -> list[str]:
        """Requests other than the page itself and what it made in memory (blob:, data:)."""
        return [u for u in self.requests if not u.startswith(("blob:", "data:")) and not u.endswith(".html")]

    def close(self) -> None:
        self.context.close()


def write_page(tmp_path: Path, *args: str, stdin: str = "", name: str = "page.html") -> Path:
    out = run("show", *args, "--format", "html", stdin=stdin)
    assert out.code == 0, out.stderr
    path = tmp_path / name
    path.write_bytes(out.stdout_bytes)
    return path


def canvas_pixels(page) -> str:
    return page.eval_on_selector(".av-head canvas", "c => c.toDataURL()")


def test_classic_page_is_small_self_contained_and_interactive(browser, tmp_path):
    path = write_page(tmp_path, "I have a dream")
    assert path.stat().st_size < 500_000
    text = path.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", text) and "require.js" not in text
    opened = Opened(browser, path)
    page = opened.page
    try:
        # tokens are text in the DOM
        assert "dream" in page.inner_text(".av-head")
        before = canvas_pixels(page)
        page.hover(".av-col.left .av-tok >> nth=4")
        assert canvas_pixels(page) != before  # hovering a query token shows only its lines
        assert "query 4" in page.inner_text(".av-readout")
        # head chips: double-click solos one head
        page.dblclick(".av-chip >> nth=3")
        assert page.locator(".av-chip.off").count() == 11
        # model view: 6 × 12 thumbnails, a click opens that head in the matrix view
        page.click("button[data-value=model]")
        assert page.locator(".av-thumb").count() == 72
        page.click(".av-thumb >> nth=14")  # layer 1, head 2
        assert page.get_attribute("button[data-value=matrix]", "class") == "on"
        assert "layer 1 · head 2" in page.inner_text(".av-readout")
        box = page.locator(".av-matrix canvas").bounding_box()
        page.mouse.move(box["x"] + 3, box["y"] + box["height"] - 3)
        assert re.search(r"query 5 “\[SEP\]” → key 0 “\[CLS\]”: \d\.\d{4}", page.inner_text(".av-readout"))
        # downloads
        with page.expect_download() as png:
            page.click("button:text('PNG')")
        assert Path(png.value.path()).read_bytes().startswith(b"\x89PNG")
        with page.expect_download() as svg:
            page.click("button:text('SVG')")
        assert png.value.suggested_filename.endswith(".png")
        svg_text = Path(svg.value.path()).read_text()
        assert svg_text.startswith("<svg") and "<text" in svg_text and "[CLS]" in svg_text
        # the head-metrics table links to the heads
        assert page.locator("table.av-metrics tr.row").count() == 72
        page.click("table.av-metrics th:text('previous')")
        first = page.inner_text("table.av-metrics tr.row >> nth=0").split()
        assert first[:3] == ["0", "2", "previous"]
        page.click("table.av-metrics tr.row >> nth=0")
        assert "layer 0 · head 2" in page.inner_text(".av-readout")
        assert opened.errors == [] and opened.outside() == []
    finally:
        opened.close()


def test_controls_change_the_picture(browser, tmp_path):
    path = write_page(tmp_path, "I have an unforgettable dreamscape")
    opened = Opened(browser, path)
    page = opened.page
    try:
        assert page.locator(".av-col.left .av-tok").count() == 11
        page.check("label:has-text('words') input")
        assert page.locator(".av-col.left .av-tok").count() == 7  # un ##for ##get ##table → one word
        assert "unforgettable" in page.inner_text(".av-col.left")
        page.check("label:has-text('hide specials') input")
        assert page.locator(".av-col.left .av-tok").count() == 5
        page.click("button[data-value=mean]")
        page.check("label:has-text('rollout') input")
        page.click("button[data-value=matrix]")
        assert "rollout through layer 5 · mean of all 12 heads" in page.inner_text(".av-readout")
        page.click("button:text('dark')")
        assert "dark" in page.get_attribute(".attnviz", "class")
        assert opened.errors == []
    finally:
        opened.close()


def test_pairs_encoder_decoder_and_several_viewers_on_one_page(browser, tmp_path, tiny_model):
    pair = write_page(tmp_path, "I have a dream", "--pair", "so do I", name="pair.html")
    opened = Opened(browser, pair)
    try:
        for label in ("A→A", "A→B", "B→A", "B→B"):
            assert opened.page.locator(f"button:text('{label}')").count() == 1
        before = canvas_pixels(opened.page)
        opened.page.click("button:text('A→B')")
        assert canvas_pixels(opened.page) != before
    finally:
        opened.close()
    bart = write_page(tmp_path, "I have a dream", "--model", str(tiny_model("bart")), name="bart.html")
    opened = Opened(browser, bart)
    try:
        opened.page.click("button:text('cross')")
        assert "cross" in opened.page.inner_text(".av-readout") or opened.page.locator(".av-head").count() == 1
        opened.page.click("button[data-value=matrix]")
        assert opened.page.inner_text(".av-readout").startswith("cross · layer")
        assert opened.errors == []
    finally:
        opened.close()
    several = write_page(tmp_path, "-", stdin="I have a dream\nthe cat sat\n", name="two.html")
    opened = Opened(browser, several)
    try:
        opened.page.wait_for_function("document.querySelectorAll(\".attnviz[data-ready='1']\").length === 2")
        ids = opened.page.eval_on_selector_all(".attnviz", "els => els.map(e => e.id)")
        assert len(set(ids)) == 2
        opened.page.click(".attnviz >> nth=1 >> button[data-value=model]")  # one viewer's control ...
        assert opened.page.locator(".attnviz >> nth=0 >> .av-thumb").count() == 0  # ... leaves the other alone
        assert opened.errors == []
    finally:
        opened.close()


def test_works_inside_an_iframe_and_from_a_notebook_fragment(browser, tmp_path):
    result = attnviz.extract("I have a dream")
    html = result._repr_html_()
    assert html.startswith('<div class="attnviz" id="attnviz-') and html != result._repr_html_()  # fresh ids
    host = tmp_path / "host.html"
    host.write_text(f"<!DOCTYPE html><meta charset=utf-8><body>{html}{fragment(result)}</body>")
    frame = tmp_path / "frame.html"
    frame.write_text('<!DOCTYPE html><meta charset=utf-8><iframe src="host.html" width=1200 height=800></iframe>')
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(frame.as_uri())
        inner = page.frame_locator("iframe")
        inner.locator(".attnviz[data-ready='1'] >> nth=1").wait_for(timeout=60_000)
        assert inner.locator(".attnviz[data-ready='1']").count() == 2
        assert errors == []
    finally:
        context.close()


def test_embedded_weights_are_within_a_16_bit_step():
    result = attnviz.extract("I have a dream, and it is a big one")
    doc = payload(result)
    raw = np.frombuffer(gzip.decompress(base64.b64decode(doc["blob"])), dtype="<u2") / 65535
    w = result.stacks[0].weights
    assert np.abs(raw.reshape(w.shape) - w).max() <= 0.5 / 65535 + 1e-9


def test_render_and_export_write_pages(tmp_path):
    saved = tmp_path / "s.json"
    saved.write_bytes(run("show", "I have a dream", "--layer", "all", "--format", "json").stdout_bytes)
    out = run("render", str(saved), "--format", "html")
    assert out.code == 0 and out.stdout.startswith("<!DOCTYPE html>")
    data = json.loads(re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', out.stdout).group(1))
    assert data["stacks"][0]["shape"] == [6, 12, 6, 6]  # every layer and head
    folder = tmp_path / "pages"
    exported = run("export", "I have a dream", "the cat sat", "--image", "html", "--out", str(folder))
    assert exported.code == 0, exported.stderr
    pages = sorted(p.name for p in folder.glob("*.html") if p.name != "index.html")
    assert len(pages) == 2
    index = (folder / "index.html").read_text()
    assert all(f'href="{p}"' in index for p in pages)
    lines = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
    assert sorted(x["file"] for x in lines) == pages
    assert not list(folder.glob(".attnviz-tmp-*"))


def test_html_is_refused_on_a_terminal_and_signed_maps_are_refused():
    from attnviz.errors import SelectionError
    from attnviz.result import MapKind

    result = attnviz.extract("I have a dream")
    from dataclasses import replace

    signed = replace(result, stacks=(replace(result.stacks[0], kind=MapKind.SIGNED),))
    with pytest.raises(SelectionError, match="signed"):
        payload(signed)
