"""Sentence files: line numbers, comments, tabs, bad lines; and what becomes the model's input."""

from __future__ import annotations

import pytest

from attnviz.errors import InputError
from attnviz.inputs import Sentence, from_arguments, parse_lines, read_sentences, to_inputs
from attnviz.result import AttentionResult


def test_lines_keep_their_numbers_past_comments_blanks_bom_and_crlf():
    data = "\ufeff# header\r\n\r\nI have a dream\r\n   \n  # indented comment\nso do I\n".encode()
    got = parse_lines(data, "f.txt")
    assert [(s.index, s.line, s.text, s.error) for s in got] == [
        (0, 3, "I have a dream", None),
        (1, 6, "so do I", None),
    ]


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
        read_sentences(str(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match="is a folder"):
        read_sentences(str(tmp_path))
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(InputError, match="has no sentences"):
        read_sentences(str(tmp_path / "empty.txt"))


def test_sentences_say_where_they_came_from_and_tag_results():
    file_line, argument = Sentence(2, 7, "x"), from_arguments(["a", "b"])[1]
    assert (file_line.where, argument.where) == ("line 7", "sentence 2")
    import numpy as np

    from attnviz.result import Stack, Tokens

    toks = Tokens(("x",))
    r = AttentionResult("m", "x", (Stack("encoder", toks, toks, np.ones((1, 1, 1, 1), np.float32)),))
    tagged = file_line.tag(r)
    assert (tagged.index, tagged.line) == (2, 7) and (r.index, r.line) == (0, None)
