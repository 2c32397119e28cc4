"""Heat tables, grids, heatmap fallback and bars, drawn on fixed-width colourless consoles (golden text)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rich.text import Text

from attnviz import extract
from attnviz.render import bars, table
from attnviz.render.term import MARK, cell_style, rgb
from attnviz.views import query_view, view

GOLDEN = Path(__file__).parent / "golden"
LONG = (
    "Attention lets every token in a sentence look at every other token, weigh how much each one matters "
    "for its own meaning, and mix their values accordingly."
)


def draw(renderable, width: int, color: bool = False) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        color_system="truecolor" if color else None,
        force_terminal=color,
        legacy_windows=False,
        _environ={},  # ignore NO_COLOR / COLUMNS from the test environment
    )
    console.print(renderable)
    return out.getvalue()


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME.txt; UPDATE_GOLDEN=1 rewrites it."""
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.fixture(scope="module")
def results():
    return {
        "short": extract("I have a dream", device="cpu"),
        "pair": extract("The cat sat.", pair="It was tired.", device="cpu"),
        "long": extract(LONG, device="cpu"),
    }


CASES = {
    "grid": ("short", {}, None),
    "head": ("short", {"head": "0"}, None),
    "mean": ("short", {"agg": "mean"}, None),
    "rollout": ("short", {"agg": "rollout"}, None),
    "long": ("long", {"head": "3"}, None),
    "pair": ("pair", {"head": "mean"}, None),
    "query": ("short", {}, "dream"),
}


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(results, case, width):
    source, options, query = CASES[case]
    shown = view(results[source], **options)
    renderable = bars.render(query_view(shown, query)) if query else table.render(shown)
    text = draw(renderable, width)
    assert max(len(line) for line in text.splitlines()) <= width
    check_golden(f"{case}-{width}", text)


def test_layout_follows_the_width(results):
    one_head = view(results["short"], head="0")
    assert "0.50◂" in draw(table.render(one_head), 80)  # full-size table
    assert ".50◂" in draw(table.render(one_head), 40) and "0.50" not in draw(table.render(one_head), 40)
    narrow = draw(table.render(one_head), 30)
    assert "▀" not in narrow and "·" in narrow and "tokens:" in narrow  # colourless heatmap + legend
    assert "too many for a" in narrow and "--tokens A:B shows a window" in narrow
    assert "tokens:" in draw(table.render(one_head, style="heat"), 120)


def test_grid_wraps_to_the_width(results):
    grid = view(results["short"])  # 12 heads of the last layer
    for width, per_row in ((80, 2), (120, 3)):
        lines = draw(table.render(grid), width).splitlines()
        first_titles = [line for line in lines if line.startswith("head 0")][0]
        assert first_titles.split()[::2] == ["head"] * per_row


def test_strongest_cell_of_every_row_is_marked(results):
    shown = view(results["short"], head="2")
    w = shown.stacks[0].weights[0, 0]
    rows = draw(table.render(shown), 80).splitlines()[2:8]
    for qi, line in enumerate(rows):
        cells = line.split()[1:]
        marked = [j for j, cell in enumerate(cells) if cell.endswith(MARK)]
        assert marked == [int(np.argmax(w[qi]))]


def test_colours_follow_the_scale_and_text_stays_readable(results):
    shown = view(results["short"], head="0")
    s = shown.stacks[0]
    vmax = float(s.weights.max())
    block = table.table_block(s.weights[0, 0], s.query, s.key, vmax)
    row: Text = block[1 + 4]  # 'dream' (after the header)
    spans = [sp for sp in row.spans if sp.style and getattr(sp.style, "bgcolor", None)]
    assert len(spans) == 6
    for j, span in enumerate(spans):
        style = span.style
        value = float(s.weights[0, 0, 4, j])
        assert style.bgcolor.triplet == rgb(value / vmax)
        assert style.bold == (j == int(np.argmax(s.weights[0, 0, 4])))
    dark, bright = cell_style(0.0), cell_style(1.0)
    assert dark.color.triplet == (255, 255, 255) and bright.color.triplet == (0, 0, 0)
    coloured = draw(table.render(shown), 80, color=True)
    assert "\x1b[" in coloured and "48;2;" in coloured  # truecolor backgrounds


def test_notes_from_views_are_shown(results):
    text = draw(table.render(view(results["short"], head="0", hide_specials=True)), 80)
    assert "rows no longer sum to 1" in text and "[CLS]" not in text
    text = draw(table.render(view(results["short"], head="0", hide_specials=True, renormalize=True)), 80)
    assert "renormalised" in text
