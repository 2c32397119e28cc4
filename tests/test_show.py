"""`attnviz show` end to end, in process: views wired to flags, colour rules, stacks, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from harness import run

from attnviz.views import ROLLOUT_NOTE


def test_default_is_the_last_layer_at_a_glance_on_one_80_by_50_screen():
    shown = run("show", "I have a dream")
    assert shown.code == 0 and shown.stderr == ""
    out = shown.stdout
    lines = out.splitlines()
    assert lines[0] == "encoder · layer 5 · 12 heads at a glance"
    assert len(lines) <= 50 and max(len(line) for line in lines) <= 80  # a pipe is 80 columns unless COLUMNS says
    assert "mean of 12 heads" in out and "--head all" in out
    assert "\x1b[" not in out and not [line for line in lines if line.endswith(" ")]


def test_the_glance_names_each_heads_strongest_link_between_real_tokens():
    """Checked against the exact weights: argmax over non-special rows and columns, share on specials."""
    data = json.loads(run("show", "I have a dream", "--format", "json").stdout)
    stack = data["stacks"][0]
    w = np.array(stack["attention"], dtype=np.float32)[0]  # (H, q, k) of the last layer
    tokens = stack["query"]["tokens"]
    words = [1, 2, 3, 4]  # between [CLS] and [SEP]
    out = run("show", "I have a dream").stdout
    for h in range(12):
        sub = w[h][np.ix_(words, words)]
        i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
        share = w[h][words][:, [0, 5]].sum(axis=1).mean()
        expected = f"{h:>4}  {tokens[words[i]]:>5} → {tokens[words[j]]:<5}  {sub[i, j]:>6.2f}  {share:>8.0%}"
        assert expected in out, expected


def test_columns_widen_the_grid():
    out = run("show", "I have a dream", "--head", "all", env={"COLUMNS": "120"}).stdout
    assert "head 0" in out and any(line.startswith("head 0") and "head 2" in line for line in out.splitlines())
    assert max(len(line) for line in out.splitlines()) > 80


def test_force_color_gives_colour_and_no_color_wins():
    truecolor = {"FORCE_COLOR": "1", "NO_COLOR": None, "COLORTERM": "truecolor"}
    out = run("show", "I have a dream", "--head", "0", env=truecolor).stdout
    assert "\x1b[" in out and "48;2;" in out  # shaded backgrounds
    out = run("show", "I have a dream", "--head", "0", env={**truecolor, "NO_COLOR": "1"}).stdout
    assert "48;" not in out and "38;" not in out  # no colours (bold may stay)


def test_query_bars_one_block_per_head():
    shown = run("show", "I have a dream", "--query", "dream", "--layer", "0")
    assert shown.code == 0, shown.stderr
    out = shown.stdout
    assert out.startswith("encoder · layer 0 · query 'dream': its weight on each key")
    assert sum(line.count("head ") for line in out.splitlines()) == 12
    assert "█" in out and "◂" in out
    missing = run("show", "I have a dream", "--query", "nightmare")
    assert missing.code == 1 and missing.stderr.startswith("error: no query token 'nightmare'\n")


def test_words_hide_special_and_windows_change_what_is_drawn():
    pieces = run("show", "the riverbank", "--head", "0").stdout
    words = run("show", "the riverbank", "--head", "0", "--words", "--hide-special").stdout
    assert "##bank" in pieces and "##bank" not in words and "riverbank" in words and "[CLS]" not in words
    assert "note: word pieces merged into words: keys summed, queries averaged" in words
    assert "note: special tokens hidden: rows no longer sum to 1" in words
    window = run("show", "I have a dream", "--head", "0", "--tokens", "1:3").stdout
    assert "note: tokens 1:3 only: rows no longer sum to 1" in window
    assert "have" in window and "dream" not in window


def test_rollout_and_aggregates():
    out = run("show", "I have a dream", "--agg", "rollout").stdout
    assert out.startswith("encoder · rollout of all 6 layers · mean of all 12 heads\n")
    assert f"note: {ROLLOUT_NOTE[:40]}" in out
    out = run("show", "I have a dream", "--head", "max").stdout
    assert out.startswith("encoder · layer 5 · max of all 12 heads\n")
    assert run("show", "I have a dream", "--agg", "max").stdout == out  # --agg max says what --head max says
    out = run("show", "I have a dream", "--agg", "mean", "--head", "0:3", "--layer", "2").stdout
    assert out.startswith("encoder · layer 2 · mean of heads 0–2\n")
    out = run("show", "I have a dream", "--head", "0", "--layer", "all").stdout
    assert out.startswith("encoder · head 0 · 6 layers") and "layer 0" in out and "layer 5" in out


def test_pair_draws_the_sentence_boundary():
    lines = run("show", "The cat sat.", "--pair", "It was tired.", "--head", "mean").stdout.splitlines()
    assert any(set(line) <= {"─", "┼"} and "┼" in line for line in lines)  # between A's and B's rows
    assert all("│" in line for line in lines[1:7])  # between A's and B's key columns


def test_encoder_decoder_stacks_are_titled_and_selectable(tiny_model):
    folder = str(tiny_model("bart"))
    shown = run("show", "I have a dream", "--model", folder, "--head", "0", "--device", "cpu")
    assert shown.code == 0, shown.stderr
    titles = [line for line in shown.stdout.splitlines() if " · layer " in line and " · head 0" in line]
    assert [t.split(" · ")[0] for t in titles] == ["encoder", "decoder", "cross"]
    out = run("show", "I have a dream", "--model", folder, "--stack", "cross", "--head", "0", "--device", "cpu").stdout
    assert out.startswith("cross · layer 2 · head 0") and "encoder" not in out


def test_many_sentences_each_get_a_heading():
    shown = run("show", "-", "--head", "mean", stdin="I have a dream\nso do I\n")
    assert shown.code == 0, shown.stderr
    assert "» I have a dream" in shown.stdout and "» so do I" in shown.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--renormalize"], "error: --renormalize only applies with --hide-special"),
        (["--head", "max", "--agg", "mean"], "error: --head max and --agg mean combine heads two ways"),
        (["--format", "svg"], "error: Invalid value for '--format'"),
    ],
)
def test_contradicting_flags_are_usage_errors(args, message):
    out = run("show", "hi", *args)
    assert out.code == 2 and out.stdout == "" and out.stderr.startswith(message)


def test_help_says_how_words_merge_and_lists_formats():
    shown = run("show", "--help")
    assert shown.code == 0
    out = " ".join(shown.stdout.split())  # help wraps at the terminal width
    assert "summed over a word's key pieces" in out and "averaged over its query pieces" in out
    for fmt in ("table", "heat", "json", "jsonl", "csv", "npz"):
        assert f"{fmt}:" in out


def test_npz_refuses_a_terminal():
    # stdout must be a real terminal: only a process of its own can have one
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attnviz", "show", "hi", "--format", "npz"],
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ},
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2
    assert "error: npz is binary and stdout is a terminal" in proc.stderr
    assert "> a.npz" in proc.stderr


def test_truncation_warning_goes_to_stderr_and_data_stays_clean():
    shown = run("show", "word " * 600, "--truncate", "--format", "json", "--head", "mean")
    assert shown.code == 0 and shown.stderr.startswith("warning: input truncated to 512 tokens")
    assert len(shown.json()["stacks"][0]["query"]["tokens"]) == 512


def test_a_15_token_mean_keeps_its_numbers_and_whole_specials_at_80_columns():
    """The tight table (no blank before a value) comes before the heatmap."""
    out = run("show", "The quick brown fox jumps over the lazy dog while the cat sleeps", "--head", "mean").stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = lines[1]
    assert header.split()[0] == "[CLS]" and header.split()[-1] == "[SEP]"  # specials whole
    assert sum(line.startswith("the ") for line in lines) == 3  # three rows for 'the', with numbers
    assert all(line.count(".") == 15 for line in lines[2:17])
