"""Half-block heatmaps: two query rows per line in colour, shades without, pooled to fit any width."""

from __future__ import annotations

import pytest
from consoles import draw
from rich.text import Text

from attnviz import extract, views
from attnviz.render import bars, heat, table
from attnviz.render.term import SHADES, rgb

SENTENCE = "the quick brown fox jumps over the lazy dog "


def visible_width(line: str) -> int:
    return Text.from_ansi(line).cell_len


def close(a, b) -> bool:
    """Same colour within the heatmap's 256-step quantisation."""
    return max(abs(x - y) for x, y in zip(a, b)) <= 2


@pytest.fixture(scope="module")
def long300():
    result = extract(SENTENCE * 33 + "end", device="cpu")
    assert len(result.stacks[0].query) == 300  # 298 words + [CLS] + [SEP]
    return result


@pytest.fixture(scope="module")
def pair():
    return extract("The cat sat on the mat.", pair="It was tired.", device="cpu")


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("width", [80, 120])
def test_no_line_is_wider_than_the_console_for_300_tokens(long300, width, color):
    drawings = [
        table.render(views.select(long300)),  # every head of the last layer → a grid of heatmaps
        table.render(views.select(long300, head=0)),
        table.render(views.rollout(long300), style="heat"),
        bars.render(views.query_row(views.select(long300), "fox")),
    ]
    for renderable in drawings:
        lines = draw(renderable, width, color).splitlines()
        assert lines
        assert max(visible_width(line) for line in lines) <= width


def test_long_input_pools_tokens_into_cells_and_says_so(long300):
    text = draw(table.render(views.select(long300, head=0)), 80, color=False)
    assert "each heatmap cell is the max over 4×4 tokens" in text
    assert "tokens:  0 [CLS]  1 the" in text and "299 [SEP]" in text
    rows = [line for line in text.splitlines() if line[:3].strip().isdigit() and set(line[4:]) <= set(SHADES)]
    assert len(rows) == 75  # 300 query tokens, 4 per line


def test_colour_heatmap_packs_two_query_rows_per_line(pair):
    s = views.select(pair, head=1).stacks[0]
    w = s.weights[0, 0]  # (q, k)
    vmax = float(w.max())
    lines = heat.heat_block(w, s.query, s.key, vmax, 80, color=True)
    q, k = w.shape
    cut = 9  # [CLS] the cat sat on the mat . [SEP] | it was tired . [SEP]
    assert s.key.segments.index(1) == cut
    body = lines[1:]  # after the index axis
    assert body[cut // 2 + 1].plain.strip().startswith("─")  # the rule between sentence A and B
    first = body[0]
    glyphs = [(sp.start, sp.style) for sp in first.spans if "▀" in first.plain[sp.start : sp.end]]
    assert len(glyphs) == k
    for j, (_, style) in enumerate(glyphs):
        assert close(style.color.triplet, rgb(float(w[0, j]) / vmax))  # upper half: query 0
        assert close(style.bgcolor.triplet, rgb(float(w[1, j]) / vmax))  # lower half: query 1
    assert "│" in first.plain  # the column between sentence A's and B's keys
    # sentence A has 9 rows → 5 lines (the last has only an upper half); then the rule; then B
    assert len(body) == 5 + 1 + 3


def test_colourless_heatmap_uses_shades_one_row_per_line(pair):
    s = views.select(pair, head=0).stacks[0]
    w = s.weights[0, 0]
    vmax = float(w.max())
    lines = heat.heat_block(w, s.query, s.key, vmax, 80, color=False)
    data = [ln.plain for ln in lines[1:] if not ln.plain.strip().startswith("─")]
    assert len(data) == w.shape[0]
    for i, line in enumerate(data):
        cells = line[3:].replace("│", "")  # after the 2-digit query index and a space
        expected = "".join(SHADES[min(4, int(float(v) / vmax * 5))] for v in w[i])
        assert cells == expected


def test_token_legend_wraps_and_marks_sentence_b(pair):
    lines = heat.token_legend(pair.stacks[0].query, 30)
    assert all(line.cell_len <= 30 for line in lines)
    joined = " ".join(line.plain for line in lines)
    assert "│ 9 it" in joined and "0 [CLS]" in joined


PAIR_WORDS = "the cat sat on a warm mat by the old door while rain fell".split()


@pytest.mark.parametrize("a_words, b_words", [(3, 2), (3, 9), (6, 5), (6, 9), (11, 2), (11, 5)])
def test_sentence_pairs_fit_at_every_width(a_words, b_words):
    """The column where sentence B starts, and cells that never straddle it, still fit the width."""
    result = extract(" ".join(PAIR_WORDS[:a_words]) + ".", pair=" ".join(PAIR_WORDS[-b_words:]) + ".", device="cpu")
    stack = views.select(result, head=0).stacks[0]
    assert stack.key.pair_start is not None
    for width in range(12, 60):
        for color in (False, True):
            # the lines as built, before rich crops anything at the console's edge
            lines = table.stack_lines(stack, width, color, style="heat")
            widest = max(line.cell_len for line in lines)
            assert widest <= width, f"{widest} cells at width {width} (color={color})"
        size = heat.cell_size(len(stack.query), len(stack.key), width, stack.key.pair_start)
        note = heat.pooled_note(len(stack.query), len(stack.key), width, stack.key.pair_start)
        assert (f"{size}×{size} tokens" in note) if size > 1 else note == ""
