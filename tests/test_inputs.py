"""Sentence files: line numbers, comments, tabs, bad lines; streaming with a per-line limit;
cutting long texts before tokenising; and what becomes the model's input."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from harness import run

from attnviz.backends.types import Inputs
from attnviz.errors import Fix, InputError
from attnviz.inputs import (
    READ_CHUNK,
    Sentence,
    cut_text,
    from_arguments,
    parse_lines,
    raw_lines,
    read_sentences,
    refuse_long,
    run_truncating,
    stream_sentences,
    to_inputs,
)
from attnviz.result import AttentionResult


def test_lines_keep_their_numbers_past_comments_blanks_bom_and_crlf():
    data = "\ufeff# header\r\n\r\nI have a dream\r\n   \n  # indented comment\nso do I\n".encode()
    got = parse_lines(data, "f.txt")
    assert [(s.index, s.line, s.text, s.error) for s in got] == [
        (0, 3, "I have a dream", None),
        (1, 6, "so do I", None),
    ]


def test_lines_split_on_newline_only_never_on_unicode_line_breaks():
    # str.splitlines() would also split on each of these: they are text inside a line
    inside = "a\u0085b\u2028c\u2029d\x0be\x0cf\x1cg\rh"
    got = parse_lines(f"{inside}\nnext\n".encode(), "f")
    assert [(s.line, s.text) for s in got] == [(1, inside), (2, "next")]


def test_a_tab_starts_the_second_text():
    (s,) = parse_lines(b"The cat sat.\t It was tired. \n", "f")
    assert (s.text, s.second) == ("The cat sat.", "It was tired.")


@pytest.mark.parametrize(
    "data, error",
    [
        (b"ok\n\xffbad\n", "f line 2 is not valid UTF-8 (byte 0)"),
        (b"a\tb\tc\n", "f line 1 has 3 tab-separated columns; at most 2"),
        (b"a\t \n", "f line 1 has an empty column"),
    ],
)
def test_bad_lines_are_kept_with_their_error(data, error):
    bad = [s for s in parse_lines(data, "f") if s.error]
    assert [s.error for s in bad] == [error]


def test_the_second_text_is_a_target_for_encoder_decoders_else_a_pair():
    sentences = [Sentence(0, 1, "a", second="b"), Sentence(1, 2, "c")]
    enc = to_inputs(sentences, "encoder", pair="P")
    assert [(x.text, x.pair, x.target) for x in enc] == [("a", "b", None), ("c", "P", None)]
    seq2seq = to_inputs(sentences, "encoder-decoder", target="T")
    assert [(x.text, x.pair, x.target) for x in seq2seq] == [("a", None, "b"), ("c", None, "T")]


def test_files_that_cannot_be_used(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_sentences(str(tmp_path / "nope.txt"))  # at once, before any sentence is asked for
    with pytest.raises(InputError, match="is a folder"):
        list(read_sentences(str(tmp_path)))
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(InputError, match="has no sentences"):
        list(read_sentences(str(tmp_path / "empty.txt")))
    (tmp_path / "zeros.bin").write_bytes(bytes(64))
    with pytest.raises(InputError, match="zeros.bin starts with NUL bytes: binary data, not UTF-8 text"):
        list(read_sentences(str(tmp_path / "zeros.bin")))


def test_sentences_say_where_they_came_from_and_tag_results():
    file_line, argument = Sentence(2, 7, "x"), from_arguments(["a", "b"])[1]
    assert (file_line.where, argument.where) == ("line 7", "sentence 2")
    from attnviz.result import Stack, Tokens

    toks = Tokens(("x",))
    r = AttentionResult("m", "x", (Stack("encoder", toks, toks, np.ones((1, 1, 1, 1), np.float32)),))
    tagged = file_line.tag(r)
    assert (tagged.index, tagged.line) == (2, 7) and (r.index, r.line) == (0, None)


# ---------------------------------------------------------------- streaming, a line at a time


def _reader(data: bytes, piece: int):
    """read(n) over `data` that hands out at most `piece` bytes a call, like a slow pipe."""
    at = 0

    def read(n: int) -> bytes:
        nonlocal at
        out = data[at : at + min(n, piece)]
        at += len(out)
        return out

    return read


@pytest.mark.parametrize("piece", [1, 2, 3, 7, READ_CHUNK])
def test_raw_lines_are_the_same_however_the_stream_is_cut(piece):
    data = b"one\n\ntwo\r\n" + b"x" * 25 + b"\nthree\n" + b"y" * 20  # the last: exactly the limit, no newline
    got = list(raw_lines(_reader(data, piece), 20))
    assert got == [(1, b"one", False), (2, b"", False), (3, b"two\r", False), (4, b"x" * 20, True),
                   (5, b"three", False), (6, b"y" * 20, False)]  # fmt: skip


def test_without_a_limit_lines_are_read_whole():
    data = b"a" * 100_000 + b"\nb"
    assert list(raw_lines(_reader(data, 4096), None)) == [(1, b"a" * 100_000, False), (2, b"b", False)]


def test_a_long_line_fails_with_its_number_and_the_rest_goes_on():
    data = "first\n" + "word " * 1000 + "\nthird\n"
    got = parse_lines(data.encode(), "talks.txt", max_line_bytes=1024)
    assert [(s.index, s.line, s.text) for s in got if not s.error] == [(0, 1, "first"), (2, 3, "third")]
    (bad,) = [s for s in got if s.error]
    assert (bad.line, bad.fix) == (2, Fix.LONG_LINE)
    assert bad.error == "talks.txt line 2 is longer than 1 KiB, the limit for one line"


def test_a_kept_long_line_is_its_start_never_a_character_cut_in_two():
    line = "我有一个梦想" * 100  # 3 bytes a character: a limit of 1000 falls inside one
    (s,) = stream_sentences(_reader(line.encode(), 64), "f", max_line_bytes=1000, keep_start=True)
    assert s.error is None and s.text == line[:333] and len(s.text.encode()) == 999
    assert s.note == "f line 1 is longer than 1,000 bytes: only its start (1,000 bytes) is read"


def test_a_long_line_is_told_as_soon_as_its_limit_is_passed():
    """show stops at the first bad line: an endless line (no newline, ever) is not read to its end."""
    calls = itertools.count()

    def endless(n: int) -> bytes:
        next(calls)
        return b"a" * n

    first = next(stream_sentences(endless, "standard input", max_line_bytes=1 << 20))
    assert first.error == "standard input line 1 is longer than 1 MiB, the limit for one line"
    assert next(calls) <= (1 << 20) // READ_CHUNK + 3  # read up to the limit and no further


def test_arguments_have_the_same_limit():
    long = "word " * 300
    (s,) = from_arguments([long], 1000)
    assert s.error == "sentence 1 is longer than 1,000 bytes, the limit for one line" and s.fix is Fix.LONG_LINE
    (kept,) = from_arguments([long], 1000, keep_start=True)
    assert kept.text == long[:1000] and kept.note


# ---------------------------------------------------------------- the command line, with real processes


def test_show_refuses_a_long_line_by_number_and_truncate_keeps_its_start(tmp_path):
    data = "I have a dream\n" + "word " * 300_000 + "\nso do I\n"  # line 2: 1.5 MB
    out = run("show", "-", "--format", "jsonl", stdin=data)
    assert out.code == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "error: standard input line 2 is longer than 1 MiB, the limit for one line",
        "hint: raise the limit with --max-line-bytes N, or pass --truncate to read only its start",
    ]
    raised = run("show", "-", "--format", "jsonl", "--head", "0", "--max-line-bytes", "2000000", stdin=data)
    assert raised.code == 1 and "is longer than 512 tokens" in raised.stderr  # past the reader: the model's limit
    kept = run("show", "-", "--format", "jsonl", "--head", "0", "--truncate", stdin=data)
    assert kept.code == 0, kept.stderr
    assert [len(d["stacks"][0]["query"]["tokens"]) for d in kept.jsonl()] == [6, 512, 5]
    assert "standard input line 2 is longer than 1 MiB: only its start (1 MiB) is read" in kept.stderr


def test_export_skips_a_long_line_with_its_number(tmp_path):
    talks = tmp_path / "talks.txt"
    talks.write_text("I have a dream\n" + "word " * 300_000 + "\nso do I\n")
    out = run("export", "--input", str(talks), "--out", str(tmp_path / "out"), "--layer", "0", "--head", "0")
    assert out.code == 1
    assert f"error: {talks} line 2 is longer than 1 MiB, the limit for one line" in out.stderr
    assert "2 images written" in out.stderr and "1 of 3 sentences failed" in out.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


# runs attnviz as its child and prints the child's peak memory: a process forked straight from this
# (big) test process would report this process's memory as its own peak (Linux keeps it across exec)
_MEASURE = """
import resource, subprocess, sys
code = subprocess.run([sys.executable, "-m", "attnviz", *sys.argv[1:]], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def _peak_rss_mib(args: list[str], feed) -> tuple[int, float, bytes]:
    """(exit code, the peak resident memory of `attnviz ARGS` in MiB, its stderr), its stdin fed by
    `feed(pipe)` on a thread."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _MEASURE, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None
    writer = threading.Thread(target=feed, args=(proc.stdin,), daemon=True)
    writer.start()
    assert proc.stdout is not None and proc.stderr is not None
    stderr = proc.stderr.read()  # (not communicate(): it would close stdin under the writer)
    stdout = proc.stdout.read()
    proc.wait(60)
    writer.join(10)
    peak_kib, code = map(int, stdout.split())  # ru_maxrss is in KiB on Linux
    return code, peak_kib / 1024, stderr


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and wait4 as on Linux")
def test_memory_stays_bounded_however_long_the_input():
    """An endless line through a pipe (512 MiB without a newline, like /dev/zero of letters), then a
    sentence: the line is skipped by number, the sentence measured, and the process never holds the line."""
    size = 512 << 20

    def feed(pipe) -> None:
        block = b"a" * (1 << 20)
        try:
            for _ in range(size // len(block)):
                pipe.write(block)
            pipe.write(b"\nI have a dream\n")
        except BrokenPipeError:
            pass
        finally:
            pipe.close()

    started = time.monotonic()
    code, peak, stderr = _peak_rss_mib(["heads", "--input", "-", "--format", "json"], feed)
    assert code == 1, stderr  # one sentence failed, the other was measured
    assert b"standard input line 1 is longer than 1 MiB" in stderr and b"1 of 2 sentences failed" in stderr
    assert peak < 300, f"peak {peak:.0f} MiB for {size >> 20} MiB of input"  # the line is never held
    assert time.monotonic() - started < 120


def test_dev_zero_is_refused_at_once():
    started = time.monotonic()
    with open("/dev/zero", "rb") as zero:
        out = subprocess.run(
            [sys.executable, "-m", "attnviz", "show", "-"], stdin=zero, capture_output=True, timeout=60
        )
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode().startswith("error: standard input starts with NUL bytes: binary data, not UTF-8")
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------- cut before tokenising


def test_cut_text_keeps_short_texts_and_cuts_long_ones_at_a_space():
    assert cut_text("I have a dream", 512) == "I have a dream"
    long = "word " * 20_000
    cut = cut_text(long, 512)
    assert long.startswith(cut) and not cut.endswith(" w") and len(cut.encode()) <= 512 * 64
    assert len(cut.encode()) > 512 * 64 - 10  # cut at the last space before the budget
    cjk = "梦" * 20_000  # no spaces: cut at a character, never inside one
    assert cjk.startswith(cut_text(cjk, 512)) and len(cut_text(cjk, 512)) == 512 * 64 // 3


@pytest.fixture(scope="module")
def minilm():
    from attnviz.backends.registry import cached
    from attnviz.backends.types import LoadOptions

    return cached("minilm", LoadOptions())


@pytest.mark.parametrize(
    "text",
    [
        "word " * 20_000,  # the usual case: the cut start fills the window
        "a" + " " * 100_000 + "b c d",  # the cut start is all spaces: run again whole
        "x" * 40_000 + " tail words",  # one word longer than any token, then words: run again whole
    ],
)
def test_a_truncating_run_on_the_cut_start_equals_truncating_the_whole_text(minilm, text):
    whole = minilm.run([Inputs(text)], truncate=True)[0]
    seen: list[int] = []

    def run_cut(batch: list[Inputs]) -> list[AttentionResult]:
        seen.extend(len(x.text) for x in batch)
        return minilm.run(batch, truncate=True)

    (cut,) = run_truncating(run_cut, [Inputs(text)], minilm.info.max_positions)
    assert seen[0] < len(text)  # the model got the cut start first
    assert cut.stacks[0].query.texts == whole.stacks[0].query.texts
    np.testing.assert_array_equal(cut.stacks[0].weights, whole.stacks[0].weights)


def test_a_long_text_is_refused_from_its_start_without_tokenising_it_whole(minilm):
    tokenized: list[int] = []

    def tokenize(x: Inputs):
        tokenized.append(len(x.text))
        return minilm.tokenize(x)

    with pytest.raises(InputError, match=r"input is longer than 512 tokens \(its first 32.0 KiB alone are") as info:
        refuse_long(tokenize, [Inputs("word " * 2_000_000)], 512)  # 10 MB
    assert info.value.fix is Fix.TRUNCATE and len(tokenized) == 1 and 32_000 < tokenized[0] <= 32 * 1024
    refuse_long(tokenize, [Inputs("a" + " " * 100_000 + "b")], 512)  # a long text of few tokens is not refused
