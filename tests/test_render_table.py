"""Heat tables, grids, heatmap fallback and bars, drawn on fixed-width colourless consoles (golden text)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from consoles import draw
from rich.cells import cell_len
from rich.text import Text

from attnviz import ViewSpec, extract, views
from attnviz.render import bars, table
from attnviz.render import explain as explain_render
from attnviz.render.term import MARK, cell_style, rgb
from attnviz.result import AttentionResult, Stack, Tokens, origins

GOLDEN = Path(__file__).parent / "golden"
LONG = (
    "Attention lets every token in a sentence look at every other token, weigh how much each one matters "
    "for its own meaning, and mix their values accordingly."
)


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


# the result, and the ViewSpec.build arguments (the flags of `attnviz show`) of each golden file
CASES = {
    "grid": ("short", {}),
    "head": ("short", {"head": "0"}),
    "mean": ("short", {"agg": "mean"}),
    "rollout": ("short", {"agg": "rollout"}),
    "long": ("long", {"head": "3"}),
    "pair": ("pair", {"head": "mean"}),
    "query": ("short", {"query": "dream"}),
}


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(results, case, width):
    source, options = CASES[case]
    shown = views.apply(results[source], ViewSpec.build(**options))
    renderable = bars.render(shown) if "query" in options else table.render(shown)
    text = draw(renderable, width)
    assert max(len(line) for line in text.splitlines()) <= width
    check_golden(f"{case}-{width}", text)


def test_layout_follows_the_width(results):
    one_head = views.select(results["short"], head=0)
    assert "0.50◂" in draw(table.render(one_head), 80)  # full-size table
    assert ".50◂" in draw(table.render(one_head), 40) and "0.50" not in draw(table.render(one_head), 40)
    narrow = draw(table.render(one_head), 30)
    assert "▀" not in narrow and "·" in narrow and "tokens:" in narrow  # colourless heatmap + legend
    assert "too many for a" in narrow and "--tokens A:B shows a window" in narrow
    assert "tokens:" in draw(table.render(one_head, style="heat"), 120)


def test_grid_wraps_to_the_width(results):
    grid = views.select(results["short"])  # 12 heads of the last layer
    for width, per_row in ((80, 2), (120, 3)):
        lines = draw(table.render(grid), width).splitlines()
        first_titles = [line for line in lines if line.startswith("head 0")][0]
        assert first_titles.split()[::2] == ["head"] * per_row


def test_strongest_cell_of_every_row_is_marked(results):
    shown = views.select(results["short"], head=2)
    w = shown.stacks[0].weights[0, 0]
    rows = draw(table.render(shown), 80).splitlines()[2:8]
    for qi, line in enumerate(rows):
        cells = line.split()[1:]
        marked = [j for j, cell in enumerate(cells) if cell.endswith(MARK)]
        assert marked == [int(np.argmax(w[qi]))]


def test_colours_follow_the_scale_and_text_stays_readable(results):
    shown = views.select(results["short"], head=0)
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
    one_head = views.select(results["short"], head=0)
    text = draw(table.render(views.hide_special(one_head)), 80)
    assert "note: special tokens hidden: rows no longer sum to 1" in text and "[CLS]" not in text
    text = draw(table.render(views.hide_special(one_head, renormalize=True)), 80)
    assert "note: special tokens hidden; rows renormalised to sum to 1" in text and "[SEP]" not in text


def note_text(drawn: str) -> str:
    """The drawn notes, their wrapped lines joined again."""
    lines = drawn.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("note: "))
    return " ".join(line.strip() for line in lines[start:]).removeprefix("note: ")


def test_rollout_titles_name_the_heads_and_the_note_wraps_whole(results):
    one = draw(table.render(views.rollout(results["short"], head=0)), 80)
    assert one.splitlines()[0] == "encoder · rollout of all 6 layers · head 0"
    several = draw(table.render(views.rollout(results["short"], head="0,2")), 80)
    assert several.splitlines()[0] == "encoder · rollout of all 6 layers · mean of heads 0,2"
    every = draw(table.render(views.rollout(results["short"])), 80)
    assert every.splitlines()[0] == "encoder · rollout of all 6 layers · mean of all 12 heads"
    for text in (one, several, every):
        assert len(text.splitlines()[-1]) <= 80 and len(text.splitlines()[-2]) <= 80
        assert note_text(text) == views.ROLLOUT_NOTE  # wrapped over lines, not cut


def _one_query_result(layer_ids: tuple[int, ...]) -> AttentionResult:
    """One head, one query over three keys, in the model's layers `layer_ids` (of 12)."""
    keys = Tokens(("a", "b", "c"))
    weights = np.tile(np.array([0.2, 0.3, 0.5], dtype=np.float32), (len(layer_ids), 1, 1, 1))
    stack = Stack("encoder", Tokens(("a",)), keys, weights, layer_axis=origins(layer_ids), model_layers=12)
    return AttentionResult("synthetic", "a b c", (stack,)).validate()


def test_bars_name_layers_in_numeric_order():
    text = draw(bars.render(_one_query_result(tuple(range(12)))), 200)
    assert text.splitlines()[0] == "encoder · layers 0–11 · query 'a': its weight on each key"
    shuffled = draw(bars.render(_one_query_result((10, 2, 1))), 200)
    assert shuffled.splitlines()[0].startswith("encoder · layers 1,2,10 ·")
    titles = [line.split("   ")[0] for line in shuffled.splitlines() if line.startswith("layer")]
    assert titles == ["layer 10 · head 0"]  # blocks stay in the stack's order


def test_explain_tables_measure_wide_tokens_in_cells():
    rows = ("梦想梦想梦想梦想", "a")  # 16 cells wide: cut to 12 cells, not 12 characters
    columns = tuple(f"k{i}" for i in range(20))
    values = np.full((2, 20), 0.05)
    lines = draw(explain_render.heat_table(values, rows, columns, 60, unit=True), 60).splitlines()
    assert max(cell_len(line) for line in lines) <= 60
    assert lines[1].startswith("梦想梦想梦…")
    assert all("…" not in line.split()[-2] for line in lines[1:])  # no value column squeezed
    assert all(line.endswith("… +14") or "+14" not in line for line in lines)
