"""Head metrics and roles: exact values on hand-built maps, a second implementation on a real
model, running means over a corpus, and the `attnviz heads` command on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from harness import run

import attnviz
from attnviz.errors import SelectionError
from attnviz.heads import METRICS, ROLES, Corpus, Thresholds, measure, rank, role_of, stack_metrics
from attnviz.probe import build, second_copy
from attnviz.result import MapKind, Stack, Tokens
from attnviz.spec import ALL, Combine
from attnviz.tokentext import surface
from attnviz.views import select_stack

TOL = 1e-6


def one_head(rows: list[list[float]], texts: str = "a b c d", causal: bool = False, special: tuple = ()) -> Stack:
    tokens = Tokens(tuple(texts.split()), special=special)
    w = np.array(rows, dtype=np.float32)[None, None]  # (1, 1, q, k)
    return Stack("decoder" if causal else "encoder", tokens, tokens, w, causal=causal)


def metrics_of(stack: Stack, rows: slice | None = None) -> dict[str, float]:
    return {k: float(v[0, 0]) for k, v in stack_metrics(stack, rows).items()}


def assert_values(got: dict[str, float], want: dict[str, float]) -> None:
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=TOL), name


EYE = np.eye(4).tolist()
SUB = [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]  # row 0 has no previous token: itself
SUPER = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
FIRST = [[1, 0, 0, 0]] * 4
UNIFORM = [[0.25] * 4] * 4


def test_identity_is_a_self_head():
    m = metrics_of(one_head(EYE))
    assert_values(m, {"entropy": 0, "entropy_normalized": 0, "distance": 0, "max": 1, "sink": 0.25, "self": 1})
    assert_values(m, {"previous": 0, "next": 0, "duplicate": 0, "induction": 0, "special": 0, "punctuation": 0})
    assert role_of(m) == ("self", 1.0)


def test_sub_diagonal_is_a_previous_token_head():
    m = metrics_of(one_head(SUB))
    assert_values(m, {"previous": 0.75, "self": 0.25, "sink": 0.5, "distance": 0.75, "max": 1, "next": 0})
    assert role_of(m) == ("previous", pytest.approx(0.75))


def test_super_diagonal_is_a_next_token_head():
    m = metrics_of(one_head(SUPER))
    assert_values(m, {"next": 0.75, "self": 0.25, "previous": 0, "distance": 0.75})
    assert role_of(m)[0] == "next"


def test_first_column_is_a_sink_and_wins_a_tie_with_special():
    m = metrics_of(one_head(FIRST, "[CLS] b c [SEP]", special=(True, False, False, True)))
    assert_values(m, {"sink": 1, "special": 1, "max": 1, "distance": 1.5, "self": 0.25, "entropy": 0})
    assert role_of(m) == ("sink", 1.0)  # tie: sink comes before special


def test_uniform_is_broad_with_the_formula_values():
    m = metrics_of(one_head(UNIFORM))
    assert_values(m, {"entropy": math.log(4), "entropy_normalized": 1, "max": 0.25, "distance": 1.25})
    assert_values(m, {"self": 0.25, "previous": 3 / 16, "next": 3 / 16, "sink": 0.25})
    assert role_of(m) == ("broad", pytest.approx(1.0))


def test_causal_rows_are_normalised_by_the_keys_they_see():
    rows = [[1 / (i + 1) if j <= i else 0 for j in range(4)] for i in range(4)]
    m = metrics_of(one_head(rows, causal=True))
    assert_values(m, {"entropy": (math.log(2) + math.log(3) + math.log(4)) / 4, "entropy_normalized": 1})
    assert_values(m, {"max": (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4})


def test_duplicate_pattern():
    # x y x y x y: rows 2..5 look at the latest earlier copy of their own token
    rows = np.zeros((6, 6))
    rows[0, 0] = rows[1, 1] = 1
    for i in range(2, 6):
        rows[i, i - 2] = 1
    m = metrics_of(one_head(rows.tolist(), "x y x y x y"))
    assert_values(m, {"duplicate": 4 / 6, "self": 2 / 6, "induction": 0, "previous": 0})
    assert role_of(m)[0] == "duplicate"


def test_induction_pattern_on_a_repeated_sequence():
    # a b c a b c: at the second copy, each token looks at what followed its first copy
    rows = np.zeros((6, 6))
    for i in range(3):
        rows[i, i] = 1
    rows[3, 1] = rows[4, 2] = rows[5, 3] = 1
    stack = one_head(rows.tolist(), "a b c a b c")
    whole = metrics_of(stack)
    assert_values(whole, {"induction": 0.5, "self": 0.5})
    assert role_of(whole)[0] == "self"  # a tie at 0.5: self comes first
    second = metrics_of(stack, slice(3, 6))  # the probe measures the second copy's rows
    assert_values(second, {"induction": 1, "self": 0, "duplicate": 0, "sink": 0, "distance": 2})
    assert role_of(second) == ("induction", 1.0)


def test_punctuation_leaves_specials_out_and_reads_byte_level_tokens():
    stack = one_head([[0, 0.5, 0.5, 0]] * 4, "[CLS] Ġ, hi [SEP]", special=(True, False, False, True))
    assert_values(metrics_of(stack), {"punctuation": 0.5, "special": 0})
    assert surface("Ġ,") == "," and surface("##ing") == "ing" and surface("ï¼Į") == "，"
    assert surface("▁the") == "the" and surface("café") == "café"


def test_cross_stacks_have_no_positional_metrics():
    q, k = Tokens(("x", "y")), Tokens(("a", "b", "c"))
    cross = Stack("cross", q, k, np.full((1, 1, 2, 3), 1 / 3, dtype=np.float32))
    m = stack_metrics(cross)
    for name in ("self", "previous", "next", "sink", "duplicate", "induction"):
        assert np.isnan(m[name]).all(), name
    (score,) = measure(cross)
    assert score.metrics["self"] is None and score.metrics["entropy"] == pytest.approx(math.log(3))
    assert score.role == "broad"


def test_thresholds_change_the_role_and_are_checked():
    m = metrics_of(one_head(SUB))
    assert role_of(m, Thresholds(role=0.8))[0] == "mixed"
    assert role_of(metrics_of(one_head(UNIFORM)), Thresholds(role=0.2))[0] == "self"  # 0.25 now names it
    with pytest.raises(SelectionError):
        Thresholds(role=1.5)


def test_a_corpus_keeps_means_and_population_deviations():
    stacks = [one_head(EYE), one_head(SUB), one_head(UNIFORM)]
    corpus = Corpus()
    for s in stacks:
        corpus.add(s)
    (score,) = corpus.heads()
    assert score.count == 3 and corpus.sentences == 3
    for name in METRICS:
        values = [metrics_of(s)[name] for s in stacks]
        assert score.metrics[name] == pytest.approx(np.mean(values), abs=TOL), name
        assert score.std[name] == pytest.approx(np.std(values), abs=TOL), name


def test_only_single_probability_heads_are_measured():
    result = attnviz.extract("I have a dream")
    mean = select_stack(result.stacks[0], ALL, ALL, Combine.MEAN)
    with pytest.raises(SelectionError, match="per head"):
        measure(mean)
    hidden = attnviz.views.hide_special(result)
    assert hidden.stacks[0].kind is MapKind.WEIGHTS
    with pytest.raises(SelectionError, match="probabilities"):
        measure(hidden)


def test_rank_sorts_filters_and_cuts():
    heads = measure(attnviz.extract("The cat sat on the mat, and the cat slept."))
    by_role = rank(heads)
    named = [h for h in by_role if h.role in ROLES[:8]]
    assert by_role[: len(named)] == named  # named roles first
    low = rank(heads, "entropy", reverse=True, top=5)
    assert [h.metrics["entropy"] for h in low] == sorted(h.metrics["entropy"] for h in heads)[:5]
    assert all(h.role == "special" for h in rank(heads, role="special"))
    assert rank(heads, "layer") == heads
    with pytest.raises(SelectionError):
        rank(heads, "bogus")


def row_by_row(w: np.ndarray, tokens: Tokens) -> dict[str, float]:
    """A second, loop-by-loop implementation of the formulas for one [T, T] map."""
    T = w.shape[0]
    w = w.astype(np.float64)
    ent = [-sum(p * math.log(p) for p in row if p > 0) for row in w]
    prev = sum(w[i, i - 1] for i in range(1, T)) / w.sum()
    dup = sum(w[i, j] for i in range(T) for j in range(i) if tokens.texts[j] == tokens.texts[i]) / w.sum()
    ind = sum(w[i, j] for i in range(T) for j in range(1, i + 1) if tokens.texts[j - 1] == tokens.texts[i]) / w.sum()
    return {
        "entropy": float(np.mean(ent)),
        "entropy_normalized": float(np.mean([e / math.log(T) for e in ent])),
        "distance": float(np.mean([sum(w[i, j] * abs(i - j) for j in range(T)) for i in range(T)])),
        "max": float(w.max(1).mean()),
        "sink": float(w[:, 0].mean()),
        "special": float(np.mean([sum(w[i, j] for j in range(T) if tokens.is_special(j)) for i in range(T)])),
        "previous": float(prev),
        "duplicate": float(dup),
        "induction": float(ind),
    }


def test_minilm_heads_match_a_loop_by_loop_implementation():
    result = attnviz.extract("the cat saw the dog and the cat ran")
    stack = result.stacks[0]
    scores = {(h.layer, h.head): h for h in measure(result)}
    assert len(scores) == 72
    for layer, head in [(0, 0), (2, 7), (5, 11)]:
        want = row_by_row(stack.weights[layer, head], stack.key)
        assert_values(scores[layer, head].metrics, want)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the command


def test_json_schema_and_names():
    out = run("heads", "I have a dream", "--format", "json")
    assert out.code == 0, out.stderr
    doc = out.json()
    assert doc["schema"] == "attnviz-heads/1" and doc["model"] == "all-MiniLM-L6-v2" and doc["sentences"] == 1
    assert len(doc["heads"]) == 72
    first = doc["heads"][0]
    assert set(first) >= {"stack", "layer", "head", "metrics", "role"}
    assert list(first["metrics"]) == list(METRICS)
    assert (first["layer"], first["head"]) == (0, 0)  # json keeps the model's order
    assert {h["role"] for h in doc["heads"]} <= set(ROLES)


def test_selection_flags_narrow_and_combined_heads_are_refused():
    doc = run("heads", "I have a dream", "--layer", "2", "--head", "3:5", "-f", "json").json()
    assert [(h["layer"], h["head"]) for h in doc["heads"]] == [(2, 3), (2, 4)]
    bad = run("heads", "I have a dream", "--head", "mean")
    assert bad.code == 2 and "per head" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sort", "bogus"], "cannot sort by 'bogus'"),
        (["--role", "bogus"], "unknown role 'bogus'"),
        (["--out", "x.png"], "--out names the image file"),
        (["--probe-length", "5"], "--probe-length goes with --probe"),
        (["--role-threshold", "2"], "--role-threshold"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(args, message):
    out = run("heads", "I have a dream", *args)
    assert out.code == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_help_names_every_sort_key_and_role():
    from attnviz.cli.heads import ROLE_NAMES, SORTS
    from attnviz.heads import SORT_KEYS

    assert SORTS.split(", ") == list(SORT_KEYS) and ROLE_NAMES.split(", ") == list(ROLES)


def test_nothing_to_measure_and_the_probe_on_scratch():
    assert run("heads").code == 2
    out = run("heads", "--probe", "induction", "--model", "scratch")
    assert out.code == 2 and "no vocabulary" in out.stderr


def test_a_corpus_averages_sentences_and_skips_a_bad_line(tmp_path):
    texts = ["I have a dream", "the cat sat on the mat", "so do I, said the cat"]
    path = tmp_path / "s.txt"
    path.write_text("\n".join(texts) + "\n" + "word " * 600 + "\n")
    out = run("heads", "--input", str(path), "-f", "json", "--layer", "0")
    assert out.code == 1 and "line 4" in out.stderr and "1 of 4 sentences failed" in out.stderr
    doc = out.json()
    assert doc["sentences"] == 3
    alone = [measure(attnviz.views.select(attnviz.extract(t), layer=0)) for t in texts]
    for i, h in enumerate(doc["heads"]):
        values = [a[i].metrics["entropy"] for a in alone]
        assert h["count"] == 3
        assert h["metrics"]["entropy"] == pytest.approx(np.mean(values), abs=1e-6)
        assert h["std"]["entropy"] == pytest.approx(np.std(values), abs=1e-6)


def test_saved_results_measure_like_the_model(tmp_path):
    saved = run("show", "-", "--layer", "all", "--format", "jsonl", stdin="I have a dream\nthe cat sat\n")
    path = tmp_path / "saved.jsonl"
    path.write_bytes(saved.stdout_bytes)
    from_file = run("heads", str(path), "-f", "json").json()
    direct = run("heads", "-", "-f", "json", stdin="I have a dream\nthe cat sat\n").json()
    assert from_file == direct


def test_csv_has_one_row_per_head():
    out = run("heads", "I have a dream", "-f", "csv", "--layer", "-1")
    lines = out.stdout.splitlines()
    assert lines[0].startswith("stack,layer,head,role,score,count,entropy,")
    assert len(lines) == 1 + 12 and lines[1].startswith("encoder,5,0,")


def test_table_fits_80_columns_and_lists_the_top_heads():
    out = run("heads", "I have a dream, said the cat.", env={"COLUMNS": "80"})
    assert out.code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == "all-MiniLM-L6-v2 · 1 sentence · 72 heads"
    assert any(line.startswith("layer 5 ") for line in lines)
    assert "20 of 72 heads listed" in out.stdout
    assert not any(line.endswith(" ") for line in lines)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bart", "t5", "bert"])
def test_every_family_is_measured(tiny_model, family):
    out = run("heads", "the quick brown fox jumps over the lazy dog", "--model", str(tiny_model(family)), "-f", "json")
    assert out.code == 0, out.stderr
    heads = out.json()["heads"]
    stacks = {h["stack"] for h in heads}
    assert stacks == (
        {"encoder", "decoder", "cross"}
        if family in ("bart", "t5")
        else {"decoder" if family in ("gpt2", "llama") else "encoder"}
    )
    for h in heads:
        if h["stack"] == "cross":
            assert h["metrics"]["self"] is None and h["metrics"]["sink"] is None
        else:
            assert 0 <= h["metrics"]["self"] <= 1 and 0 <= h["metrics"]["entropy_normalized"] <= 1 + 1e-6


def test_induction_probe_on_a_tiny_decoder(tiny_model):
    out = run("heads", "--probe", "induction", "--model", str(tiny_model("gpt2")), "-f", "json", "--seed", "3")
    assert out.code == 0, out.stderr
    doc = out.json()
    assert "written twice" in doc["notes"][0]
    assert all(h["metrics"]["induction"] is not None for h in doc["heads"])
    again = run("heads", "--probe", "induction", "--model", str(tiny_model("gpt2")), "-f", "json", "--seed", "3")
    assert again.json() == doc  # seeded


def test_probe_text_repeats_token_for_token():
    from attnviz.backends.registry import cached
    from attnviz.backends.types import Inputs, LoadOptions

    backend = cached("minilm", LoadOptions())
    probe = build(backend.vocabulary(), 20, seed=1)
    tokens = backend.tokenize(Inputs(probe.text))["input"]
    rows = second_copy(tokens)
    assert rows is not None
    plain = [t for i, t in enumerate(tokens.texts) if not tokens.is_special(i)]
    assert tokens.texts[rows] == tuple(plain[-(rows.stop - rows.start) :])
    assert len(set(probe.text.split()[1:21])) == 20  # distinct words


def test_image_is_written_whole(tmp_path):
    path = tmp_path / "roles.png"
    out = run("heads", "I have a dream", "--image", "png", "--out", str(path))
    assert out.code == 0, out.stderr
    assert path.read_bytes().startswith(b"\x89PNG") and f"wrote {path}" in out.stderr
    from PIL import Image  # matplotlib depends on pillow

    pixels = np.asarray(Image.open(path).convert("RGB"))
    band = np.concatenate([pixels[:3].reshape(-1, 3), pixels[-3:].reshape(-1, 3), pixels[:, :3].reshape(-1, 3)])
    assert (band == 255).all()  # nothing drawn into the border
    svg = tmp_path / "roles.svg"
    assert run("heads", "I have a dream", "--image", "svg", "--out", str(svg)).code == 0
    assert b"<svg" in svg.read_bytes()[:500]
    assert sorted(tmp_path.iterdir()) == sorted([path, svg])  # no temporary file left behind


def test_a_saved_file_name_is_read_as_a_file_whatever_its_case_and_a_missing_one_is_an_error(tmp_path):
    """`heads missing.json` measured the words 'missing.json' before; GOOD.JSON was a sentence too."""
    saved = tmp_path / "GOOD.JSON"
    saved.write_text(run("show", "I have a dream", "--format", "json", "--layer", "all").stdout)
    assert run("heads", str(saved), "--format", "json").code == 0
    missing = run("heads", str(tmp_path / "missing.json"))
    assert missing.code == 1 and missing.stderr.startswith("error: ") and "no such file" in missing.stderr
