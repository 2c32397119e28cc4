"""Fuzzing the CLI: random texts and flag combinations, a fixed budget of examples.

Every run must end with exit code 0, 1 or 2, never print a traceback, and leave
stdout either empty or valid for the chosen format. The CLI runs in-process
(tests/harness.py), so loaded models stay cached between examples.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
from harness import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 200

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
        "--agg": st.sampled_from(["none", "mean", "max", "rollout", "bogus"]),
        "--stack": st.sampled_from(["encoder", "cross", "all", "bogus"]),
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
            assert int(npz["count"]) == 1 and "0/meta" in npz.files
    else:
        data.decode("utf-8")  # tables: text


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=texts, options=flags)
def test_cli_never_crashes(text, options):
    argv = ["show", text]
    for flag, value in options.items():
        argv += [flag] if value is None else [flag, value]
    argv += ["--device", "cpu"]
    out = run(*argv)
    assert out.code in (0, 1, 2), (argv, out.code, out.stderr)
    assert "Traceback" not in out.stderr, (argv, out.stderr)
    assert "unexpected" not in out.stderr, (argv, out.stderr)  # our catch-all for bugs
    if out.code:
        assert out.stdout_bytes == b"", (argv, out.stderr)
        assert any(line.startswith("error: ") for line in out.stderr.splitlines()), (argv, out.stderr)  # says why
    else:
        check_stdout(options.get("--format", "table"), out.stdout_bytes)
