"""`attnviz show` end to end, in process: views wired to flags, colour rules, stacks, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from attnviz.cli import main


def cli(*args: str, stdin: str | None = None, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """Run `attnviz ARGS` in this process with stdout a pipe: (exit code, stdout, stderr)."""
    with CliRunner().isolation(input=stdin, env=env) as (out, err, *_):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        sys.stdout.flush()
        sys.stderr.flush()
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_default_is_every_head_of_the_last_layer_without_ansi_on_a_pipe():
    code, out, err = cli("show", "I have a dream")
    assert code == 0 and err == ""
    assert out.startswith("encoder · layer 5 · 12 heads\n")
    assert all(f"head {h}" in out for h in range(12))
    assert "\x1b[" not in out
    assert max(len(line) for line in out.splitlines()) <= 80  # a pipe is 80 columns unless COLUMNS says


def test_columns_widen_the_grid():
    _, out, _ = cli("show", "I have a dream", env={"COLUMNS": "120"})
    assert "head 0" in out and any(line.startswith("head 0") and "head 2" in line for line in out.splitlines())


def test_force_color_gives_colour_and_no_color_wins():
    truecolor = {"FORCE_COLOR": "1", "NO_COLOR": None, "COLORTERM": "truecolor"}
    _, out, _ = cli("show", "I have a dream", "--head", "0", env=truecolor)
    assert "\x1b[" in out and "48;2;" in out  # shaded backgrounds
    _, out, _ = cli("show", "I have a dream", "--head", "0", env={**truecolor, "NO_COLOR": "1"})
    assert "48;" not in out and "38;" not in out  # no colours (bold may stay)


def test_query_bars_one_block_per_head():
    code, out, _ = cli("show", "I have a dream", "--query", "dream", "--layer", "0")
    assert code == 0
    assert out.startswith("encoder · layer 0 · query 'dream': its weight on each key")
    assert sum(line.count("head ") for line in out.splitlines()) == 12
    assert "█" in out and "◂" in out
    code, _, err = cli("show", "I have a dream", "--query", "nightmare")
    assert code == 1 and "error: no query token 'nightmare'" in err


def test_words_hide_special_and_windows_change_what_is_drawn():
    _, pieces, _ = cli("show", "the riverbank", "--head", "0")
    _, words, _ = cli("show", "the riverbank", "--head", "0", "--words", "--hide-special")
    assert "##bank" in pieces and "##bank" not in words and "riverbank" in words and "[CLS]" not in words
    assert "note: word pieces merged: keys summed, queries averaged" in words
    assert "note: special tokens hidden: rows no longer sum to 1 (use --renormalize)" in words
    _, window, _ = cli("show", "I have a dream", "--head", "0", "--tokens", "1:3")
    assert "note: tokens 1:3 only" in window and "dream" not in window


def test_rollout_and_aggregates():
    _, out, _ = cli("show", "I have a dream", "--agg", "rollout")
    assert out.startswith("encoder · rollout · mean of heads") and "note: rollout over 6 layers" in out
    _, out, _ = cli("show", "I have a dream", "--head", "max")
    assert out.startswith("encoder · layer 5 · max of heads")
    _, out, _ = cli("show", "I have a dream", "--head", "0", "--layer", "all")
    assert out.startswith("encoder · head 0 · 6 layers") and "layer 0" in out and "layer 5" in out


def test_pair_draws_the_sentence_boundary():
    _, out, _ = cli("show", "The cat sat.", "--pair", "It was tired.", "--head", "mean")
    lines = out.splitlines()
    assert any(set(line) <= {"─", "┼"} and "┼" in line for line in lines)  # between A's and B's rows
    assert all("│" in line for line in lines[1:7])  # between A's and B's key columns


def test_encoder_decoder_stacks_are_titled_and_selectable(tiny_model):
    folder = str(tiny_model("bart"))
    code, out, _ = cli("show", "I have a dream", "--model", folder, "--head", "0", "--device", "cpu")
    assert code == 0
    titles = [line for line in out.splitlines() if " · layer " in line and " · head 0" in line]
    assert [t.split(" · ")[0] for t in titles] == ["encoder", "decoder", "cross"]
    _, out, _ = cli("show", "I have a dream", "--model", folder, "--stack", "cross", "--head", "0")
    assert out.startswith("cross · layer 2 · head 0") and "encoder" not in out


def test_many_sentences_each_get_a_heading():
    code, out, _ = cli("show", "-", "--head", "mean", stdin="I have a dream\nso do I\n")
    assert code == 0
    assert "» I have a dream" in out and "» so do I" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--renormalize"], "error: --renormalize only applies with --hide-special"),
        (["--agg", "mean", "--head", "3"], "error: --agg mean combines every head; it cannot go with --head 3"),
        (["--format", "svg"], "error: unknown --format 'svg'"),
    ],
)
def test_contradicting_flags_are_usage_errors(args, message):
    code, out, err = cli("show", "hi", *args)
    assert code == 2 and out == "" and message in err


def test_help_says_how_words_merge_and_lists_formats():
    code, out, _ = cli("show", "--help")
    assert code == 0
    out = " ".join(out.split())  # help wraps at the terminal width
    assert "summed over a word's key pieces" in out and "averaged over its query pieces" in out
    for fmt in ("table", "heat", "json", "jsonl", "csv", "npz"):
        assert f"{fmt}:" in out


def test_npz_refuses_a_terminal():
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
    import json

    code, out, err = cli("show", "word " * 600, "--truncate", "--format", "json", "--head", "mean")
    assert code == 0 and "warning:" in err and "512" in err
    assert len(json.loads(out)["stacks"][0]["query_tokens"]) == 512
