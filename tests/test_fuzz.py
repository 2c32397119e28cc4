"""Fuzzing the CLI: every command, random texts, files of random bytes in random encodings,
scratch-model flags and weights files, and random flag combinations.

The property, for every run: exit code 0, 1 or 2; no traceback and no "unexpected … please
report it" on stderr; a failure says why on an `error:` line; the data printed parses in its
format, also before a failure (results stream out as they come: what came before the failing
one is whole records) (JSON lines split on "\\n" only, as a JSON Lines reader
splits them: U+2028 and U+0085 are text). The CLI runs in-process (tests/harness.py), so the
scratch and embedded models load once. Examples are random (pytest --hypothesis-seed=N replays a
run); a small budget per command keeps the whole file well under a minute.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from harness import Run, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# per command: the models stay loaded, so most examples take milliseconds (ATTNVIZ_FUZZ_EXAMPLES=500 digs deeper)
EXAMPLES = int(os.environ.get("ATTNVIZ_FUZZ_EXAMPLES", "25"))

fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- what the fuzz draws from

texts = st.one_of(
    st.text(max_size=40),  # any unicode: control characters, U+2028, lone combining marks, empty
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12).map(lambda s: (s + " ") * 120),  # long
    st.sampled_from(["I have a dream", "Я мечтаю", "我有一个梦想", "🚀🔥", "\x00\x1b[31m", " ", "-x", "a\u2028b"]),
)
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "shift_jis")


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    """What a sentence file may hold: random bytes, or lines of text in some encoding and line ending."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    lines = draw(st.lists(st.one_of(texts, st.sampled_from(["# comment", "", "a\tb", "a\tb\tc", "\t"])), max_size=5))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\u0085"]))
    data = ending.join(lines) + draw(st.sampled_from(["", ending]))
    return data.encode(draw(st.sampled_from(ENCODINGS)), "replace")


def flag_set(choices: dict[str, st.SearchStrategy[str | None]]) -> st.SearchStrategy[list[str]]:
    """Some of the flags, each with a value (None: a switch), as argv."""

    def argv(picked: dict[str, str | None]) -> list[str]:
        out: list[str] = []
        for flag, value in picked.items():
            out += [flag] if value is None else [flag, value]
        return out

    return st.fixed_dictionaries({}, optional=choices).map(argv)


VIEW = {
    "--layer": st.sampled_from(["0", "-1", "all", "last", "7", "x", "1:3", "3:1", "0,2", ""]),
    "--head": st.sampled_from(["0", "mean", "max", "all", "13", "2:5", "5:2", "", "-1"]),
    "--agg": st.sampled_from(["none", "mean", "max", "rollout", "bogus"]),
    "--stack": st.sampled_from(["encoder", "decoder", "cross", "bogus"]),
    "--tokens": st.sampled_from(["0:3", "5:2", "x", "1:", "0:1000"]),
    "--hide-special": st.none(),
    "--renormalize": st.none(),
    "--words": st.none(),
}
PRINT = {
    "--format": st.sampled_from(["table", "heat", "json", "jsonl", "csv", "npz", "html", "xml"]),
    "--query": st.sampled_from(["0", "dream", "99", "-1"]),
    "--digits": st.sampled_from(["0", "3", "9"]),
    "--vmax": st.sampled_from(["auto", "1", "0.5", "0", "-1", "nan", "inf", "x"]),
}
SCRATCH = {
    "--layers": st.sampled_from(["1", "2", "3", "0", "-1", "2000", "x"]),
    "--d-model": st.sampled_from(["1", "2", "8", "16", "7", "0"]),
    "--heads": st.sampled_from(["1", "2", "4", "3", "0"]),
    "--seed": st.sampled_from(["0", "1", str(2**63 - 1), str(2**63), "-1", "x"]),
    "--causal": st.none(),
    "--source": texts,
    "--dtype": st.sampled_from(["float32", "float16", "bfloat16"]),
    "--max-layers": st.sampled_from(["1", "2", "5000"]),
    "--max-params": st.sampled_from(["1", "100", "100000000"]),
}
MODEL = {
    "--pair": texts,
    "--truncate": st.none(),
    "--max-line-bytes": st.sampled_from(["1", "10", "1000000", "0"]),
    "--batch-size": st.sampled_from(["1", "3", "0"]),
}
models = st.sampled_from(["minilm", "scratch", "no/such-model-here", " ", "org/..", "./missing"])


# ---------------------------------------------------------------- the property


def split_lines(data: bytes) -> list[bytes]:
    """JSON Lines as a JSON Lines reader reads them: split on "\\n" only, never on U+2028 or U+0085."""
    lines = data.split(b"\n")
    assert lines[-1] == b"", "JSON lines end with a newline"
    return lines[:-1]


def check_output(fmt: str, data: bytes) -> None:
    """A successful run's stdout parses in its format."""
    if not data:
        return
    if fmt == "json":
        json.loads(data)
    elif fmt == "jsonl":
        assert all(json.loads(line) for line in split_lines(data))
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        assert rows and all(len(r) == len(rows[0]) for r in rows)
    elif fmt == "npz":
        with np.load(io.BytesIO(data)) as npz:
            assert int(npz["count"]) >= 1 and "0/meta" in npz.files
    elif fmt == "html":
        assert data.lstrip().lower().startswith(b"<!doctype html")
    else:
        data.decode("utf-8")  # tables: text


def holds(argv: list[str], out: Run, fmt: str) -> None:
    """The property every run must hold (see the module docstring)."""
    assert out.code in (0, 1, 2), (argv, out.code, out.stderr)
    assert "Traceback" not in out.stderr, (argv, out.stderr)
    assert "unexpected" not in out.stderr, (argv, out.stderr)  # our catch-all for bugs
    if out.code:
        assert any(line.startswith("error: ") for line in out.stderr.splitlines()), (argv, out.stderr)  # says why
        if fmt in ("npz", "html"):
            return  # one document: a failure midway leaves it unfinished, and the exit code says so
    # on a failure, whatever came before it: whole records of the results written as they came
    check_output(fmt, out.stdout_bytes)


def fmt_of(argv: list[str], default: str = "table") -> str:
    return argv[argv.index("--format") + 1] if "--format" in argv else default


def attnviz(argv: list[str], stdin: bytes = b"", default_format: str = "table") -> Run:
    out = run(*argv, stdin=stdin)
    holds(argv, out, fmt_of(argv, default_format))
    return out


@pytest.fixture(scope="module")
def scratch_dir():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


# ---------------------------------------------------------------- each command


@fuzz
@given(text=texts, model=models, view=flag_set(VIEW), printed=flag_set(PRINT), model_flags=flag_set(MODEL))
def test_show(text, model, view, printed, model_flags):
    attnviz(["show", text, "--model", model, "--device", "cpu", *view, *printed, *model_flags])


@fuzz
@given(data=file_bytes(), view=flag_set(VIEW), printed=flag_set(PRINT), model_flags=flag_set(MODEL))
def test_show_reads_any_bytes_on_stdin(data, view, printed, model_flags):
    attnviz(["show", "-", *view, *printed, *model_flags], stdin=data)


@fuzz
@given(text=texts, scratch=flag_set(SCRATCH), view=flag_set(VIEW), printed=flag_set(PRINT))
def test_show_scratch(text, scratch, view, printed):
    attnviz(["show", text, "--model", "scratch", "--device", "cpu", *scratch, *view, *printed])


@st.composite
def weights_files(draw: st.DrawFn) -> bytes:
    """A scratch weights file: a real one changed at random (metadata, shapes, keys, layer numbers,
    dtypes), or cut short, or random bytes."""
    import torch
    from safetensors.torch import save

    from attnviz.backends.scratch import ScratchModel

    kind = draw(st.sampled_from(["changed", "changed", "changed", "cut", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    d, heads, layers = draw(st.sampled_from([1, 2, 4, 8])), draw(st.sampled_from([1, 2])), draw(st.integers(1, 3))
    state = {k: v.contiguous() for k, v in ScratchModel(d, heads if d % heads == 0 else 1, layers).state_dict().items()}
    meta = {"heads": draw(st.sampled_from([str(heads), "0", "-1", "x", "", "3", "99999999999999999999"]))}
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*state, "layers.1000000.query.weight", "layers.5.out.bias", "other", "layers.x"]))
        shape = draw(st.sampled_from([(), (0,), (d,), (d, d), (d, d, 2), (d + 1, d)]))
        dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]))
        state[key] = torch.zeros(shape, dtype=dtype)
    if draw(st.booleans()) and state:
        del state[draw(st.sampled_from(sorted(state)))]
    data = save(state, metadata=meta)
    return data[: draw(st.integers(0, len(data)))] if kind == "cut" else data


@fuzz
@given(data=weights_files(), view=flag_set(VIEW))
def test_scratch_weights_files(scratch_dir, data, view):
    path = scratch_dir / "weights.safetensors"
    path.write_bytes(data)
    attnviz(["show", "I have a dream", "--model", "scratch", "--weights", str(path), "--device", "cpu", *view])


@fuzz
@given(
    text=texts,
    saved=st.sampled_from(["json", "jsonl", "npz"]),
    layer=st.sampled_from(["all", "0", "last"]),
    view=flag_set(VIEW),
    printed=flag_set(PRINT),
    images=flag_set(
        {
            "--image": st.sampled_from(["png", "svg", "pdf", "gif"]),
            "--view": st.sampled_from(["head", "layer", "model"]),
        }
    ),
)
def test_render(scratch_dir, text, saved, layer, view, printed, images):
    made = run("show", text, "--layer", layer, "--format", saved, "--head", "all")
    if made.code:
        return
    path = scratch_dir / f"saved.{saved}"
    path.write_bytes(made.stdout_bytes)
    out_dir = scratch_dir / "render-images"
    argv = ["render", str(path), *view, *printed, *images]
    if images:
        argv += ["--out", str(out_dir), "--jobs", "1", "--overwrite"]
    attnviz(argv)


@fuzz
@given(data=st.one_of(st.binary(max_size=300), file_bytes()), printed=flag_set(PRINT))
def test_render_any_bytes(data, printed):
    attnviz(["render", "-", *printed], stdin=data)


@settings(fuzz, max_examples=12)
@given(
    data=file_bytes(),
    how=st.sampled_from(["file", "stdin", "argument"]),
    flags=flag_set(
        {
            **VIEW,
            "--view": st.sampled_from(["head", "layer", "model", "mean"]),
            "--image": st.sampled_from(["png", "svg", "pdf", "html", "gif"]),
            "--dpi": st.sampled_from(["10", "50", "1200", "5"]),
            "--max-pixels": st.sampled_from(["100", "2000", "99"]),
            "--max-total-pixels": st.sampled_from(["1", "100000000"]),
            "--caption": st.none(),
            "--truncate": st.none(),
            "--max-line-bytes": st.sampled_from(["5", "100000"]),
            "--figsize": st.sampled_from(["4,3", "0,0", "x", "300,300"]),
            "--vmax": st.sampled_from(["auto", "1", "0"]),
        }
    ),
)
def test_export(scratch_dir, data, how, flags):
    out_dir = scratch_dir / "export"
    if "--layer" not in flags and "--view" not in flags:
        flags = [*flags, "--layer", "0", "--head", "0"]  # a few images, not 72 per sentence
    argv = ["export", "--out", str(out_dir), "--jobs", "1", *flags]
    stdin = b""
    if how == "file":
        (scratch_dir / "talks.txt").write_bytes(data)
        argv += ["--input", str(scratch_dir / "talks.txt")]
    elif how == "stdin":
        argv, stdin = [*argv, "--input", "-"], data
    else:
        argv.append(data.decode("utf-8", "replace"))
    attnviz(argv, stdin=stdin)
    manifest = out_dir / "manifest.jsonl"
    if manifest.exists():
        for line in split_lines(manifest.read_bytes()):
            assert (out_dir / json.loads(line)["file"]).is_file()


@fuzz
@given(
    text=texts,
    model=st.sampled_from(["minilm", "scratch"]),
    flags=flag_set(
        {
            "--layer": VIEW["--layer"],
            "--head": VIEW["--head"],
            "--format": st.sampled_from(["table", "json", "csv", "xml"]),
            "--sort": st.sampled_from(["role", "entropy", "layer", "x"]),
            "--top": st.sampled_from(["1", "0", "-1"]),
            "--role": st.sampled_from(["previous", "sink", "x"]),
            "--truncate": st.none(),
        }
    ),
)
def test_heads(text, model, flags):
    attnviz(["heads", text, "--model", model, "--device", "cpu", *flags])


@fuzz
@given(data=file_bytes(), flags=flag_set({"--format": st.sampled_from(["table", "json", "csv"])}))
def test_heads_reads_any_file(scratch_dir, data, flags):
    path = scratch_dir / "heads.txt"
    path.write_bytes(data)
    attnviz(["heads", "--input", str(path), *flags])


@fuzz
@given(
    text=texts,
    model=st.sampled_from(["scratch", "minilm", "./missing"]),
    flags=flag_set(
        {
            "--layer": st.sampled_from(["0", "-1", "5", "99"]),
            "--head": st.sampled_from(["0", "-1", "7", "99"]),
            "--query": st.sampled_from(["0", "dream", "99", "-1", ""]),
            "--format": st.sampled_from(["table", "json", "x"]),
            "--d-model": st.sampled_from(["8", "16", "7"]),
            "--heads": st.sampled_from(["1", "2", "3"]),
            "--layers": st.sampled_from(["1", "2"]),
            "--causal": st.none(),
            "--source": texts,
        }
    ),
)
def test_explain(text, model, flags):
    attnviz(["explain", text, "--model", model, *flags])


@fuzz
@given(
    text=texts,
    model=st.sampled_from(["minilm", "scratch", "no/such-model-here"]),
    flags=flag_set(
        {
            "--format": st.sampled_from(["table", "json", "x"]),
            "--pair": texts,
            "--source": texts,
            "--max-line-bytes": st.sampled_from(["1", "100000"]),
        }
    ),
)
def test_tokens(text, model, flags):
    attnviz(["tokens", text, "--model", model, *flags], default_format="table")


@fuzz
@given(
    model=models,
    flags=flag_set(
        {
            "--format": st.sampled_from(["table", "json", "x"]),
            "--layers": SCRATCH["--layers"],
            "--d-model": SCRATCH["--d-model"],
            "--heads": SCRATCH["--heads"],
            "--max-layers": SCRATCH["--max-layers"],
            "--max-params": SCRATCH["--max-params"],
        }
    ),
)
def test_info(model, flags):
    attnviz(["info", "--model", model, *flags])


def test_json_lines_split_on_newline_only():
    """The check itself: a line holding U+2028 or U+0085 is one JSON line, not three."""
    data = json.dumps({"text": "a\u2028b\u0085c"}, ensure_ascii=False).encode() + b"\n"
    assert len(split_lines(data)) == 1 and len(data.decode().splitlines()) == 3
    check_output("jsonl", data)
