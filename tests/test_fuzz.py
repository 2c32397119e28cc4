"""Fuzzing the CLI: random texts and flag combinations, a fixed budget of examples.

Every run must end with exit code 0, 1 or 2, never print a traceback, and leave
stdout either empty or valid for the chosen format. The CLI runs in-process (the
loaded models stay cached), with stdout/stderr/stdin swapped for byte buffers.
"""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnviz.cli import main

EXAMPLES = 80

texts = st.one_of(
    st.text(max_size=40),  # any unicode, control characters and empty included
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12).map(lambda s: (s + " ") * 120),  # long
    st.sampled_from(["I have a dream", "Я мечтаю", "我有一个梦想", "🚀🔥", "\x00\x1b[31m", " ", "-x"]),
)
flags = st.fixed_dictionaries(
    {},
    optional={
        "--model": st.sampled_from(["minilm", "scratch", "no/such-model-here"]),
        "--layer": st.sampled_from(["0", "-1", "all", "last", "7", "x", "1:3", "3:1"]),
        "--head": st.sampled_from(["0", "mean", "max", "all", "13", "2:5", ""]),
        "--format": st.sampled_from(["table", "heat", "json", "jsonl", "csv", "npz", "xml"]),
        "--agg": st.sampled_from(["none", "mean", "rollout", "bogus"]),
        "--tokens": st.sampled_from(["0:3", "5:2", "x", "1:"]),
        "--query": st.sampled_from(["0", "dream", "99", "-1"]),
        "--digits": st.sampled_from(["0", "3", "9"]),
        "--pair": texts,
        "--hide-special": st.just(None),
        "--words": st.just(None),
        "--truncate": st.just(None),
        "--renormalize": st.just(None),
    },
)


def run(argv: list[str]) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.BytesIO()
    wrappers = [io.TextIOWrapper(buf, encoding="utf-8", write_through=True) for buf in (out, err, io.BytesIO())]
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = wrappers
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
        for wrapper in wrappers:
            wrapper.flush()
            wrapper.detach()  # keep the byte buffers open for reading
    return code, out.getvalue(), err.getvalue().decode("utf-8", "replace")


def check_stdout(fmt: str, data: bytes) -> None:
    if not data:
        return
    if fmt == "json":
        json.loads(data)
    elif fmt == "jsonl":
        for line in data.decode().splitlines():
            json.loads(line)
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode())))
        assert rows and all(len(r) == len(rows[0]) for r in rows)
    elif fmt == "npz":
        with np.load(io.BytesIO(data)) as npz:
            assert npz.files
    else:
        data.decode("utf-8")  # tables: text


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=texts, options=flags)
def test_cli_never_crashes(text, options):
    argv = ["show", text]
    for flag, value in options.items():
        argv += [flag] if value is None else [flag, value]
    argv += ["--device", "cpu"]
    code, stdout, stderr = run(argv)
    assert code in (0, 1, 2), (argv, code, stderr)
    assert "Traceback" not in stderr, (argv, stderr)
    assert "unexpected" not in stderr, (argv, stderr)  # our catch-all for bugs
    if code:
        assert stdout == b"", (argv, stderr)
    else:
        check_stdout(options.get("--format", "table"), stdout)
