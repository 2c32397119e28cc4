"""Streaming pipelines: results in input order from length-sorted batches, waiting results bounded
(spilled to a temporary file), every byte written through real pipes in bounded chunks (short
writes, a full non-blocking pipe, a full disk), an npz stored or deflated, and --threads."""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
from harness import run

from attnviz import pipeline, saved, threads
from attnviz.api import iter_results, run_batch
from attnviz.backends.registry import cached
from attnviz.backends.types import Capture, Inputs, LoadOptions
from attnviz.cli.sink import ByteSink, fd_writer
from attnviz.spec import ALL

ROOT = Path(__file__).resolve().parents[1]
EVERY = ("--layer", "all", "--head", "all")
# lengths from 2 to ~60 words, in an order that is not sorted: batches must be re-sorted
WORDS = "attention lets every token in a sentence look at every other token and decide".split()
SENTENCES = [" ".join(WORDS[: 2 + (7 * i) % 13] * (1 + i % 4)) for i in range(37)]


def minilm():
    return cached("minilm", LoadOptions())


# ---------------------------------------------------------------- order, batching, bounded waiting


def test_results_come_in_input_order_with_the_numbers_of_single_runs():
    backend = minilm()
    got = list(iter_results(backend, [Inputs(s) for s in SENTENCES], batch_size=4, capture=Capture(layers=ALL)))
    assert [r.text for r in got] == SENTENCES
    for text, result in zip(SENTENCES[:6], got):
        (alone,) = run_batch(backend, [Inputs(text)], capture=Capture(layers=ALL))
        np.testing.assert_allclose(result.stacks[0].weights, alone.stacks[0].weights, atol=1e-5)


def test_batches_are_sorted_by_length_capped_by_cells_and_run_in_order_of_their_first_input():
    lengths = [5, 300, 7, 6, 40, 41, 5, 200, 8]
    cut = pipeline.batches(lengths, size=3, cells=3 * 64 * 64)
    assert sorted(i for b in cut for i in b) == list(range(len(lengths)))
    for batch in cut:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) ** 2 <= 3 * 64 * 64
    assert [min(b) for b in cut] == sorted(min(b) for b in cut)
    assert [1] in cut and [7] in cut  # each long input alone: its maps alone are over the cap
    assert pipeline.batches(lengths, size=3, cells=None)[0] == [0, 6, 3]  # the shortest three together


def test_the_token_counter_counts_with_the_models_tokenizer():
    count = pipeline.token_counter(minilm(), 512)
    assert count is not None
    assert count([Inputs("I have a dream"), Inputs("我有一个梦想")]) == [4, 6]


def test_the_written_lines_are_in_input_order_and_sorted_runs_pad_less(monkeypatch):
    sizes: list[tuple[int, int]] = []  # (inputs, longest) of each forward pass
    backend = minilm()
    real_run = backend.run

    def recording_run(batch, truncate=False, capture=None):
        results = real_run(batch, truncate, capture)
        sizes.append((len(batch), max(len(r.stacks[0].query.texts) for r in results)))
        return results

    monkeypatch.setattr(backend, "run", recording_run)
    out = run("show", "-", "-f", "jsonl", "--batch-size", "4", *EVERY, stdin="\n".join(SENTENCES))
    docs = out.jsonl()
    assert [d["text"] for d in docs] == SENTENCES and [d["line"] for d in docs] == list(range(1, 38))
    real = sum(len(d["stacks"][0]["query"]["tokens"]) for d in docs)
    in_order = sum(
        len(SENTENCES[s : s + 4]) * max(len(d["stacks"][0]["query"]["tokens"]) for d in docs[s : s + 4])
        for s in range(0, len(docs), 4)
    )
    padded = sum(n * longest for n, longest in sizes)
    assert padded < in_order and padded <= 1.2 * real


def test_waiting_results_spill_to_disk_and_come_back_bit_for_bit():
    results = run_batch(minilm(), [Inputs(s) for s in SENTENCES[:5]], capture=Capture(layers=ALL))
    waiting = pipeline.Waiting(budget=results[0].stacks[0].weights.nbytes)  # room for the first alone
    for i in (3, 0, 4, 1, 2):
        waiting.put(i, results[i])
    assert waiting.held_bytes <= waiting.budget and len(waiting.spilled) >= 3
    assert waiting.file is not None and os.fstat(waiting.file.fileno()).st_size > 0
    for i in range(5):
        back = waiting.pop(i)
        assert back.text == results[i].text and back.stacks[0].query == results[i].stacks[0].query
        assert np.array_equal(back.stacks[0].weights, results[i].stacks[0].weights)
    assert os.fstat(waiting.file.fileno()).st_size == 0  # every spilled result went out: the file starts over
    waiting.close()


def test_memory_does_not_grow_with_the_number_of_inputs(monkeypatch):
    """The same sentences twice or 16 times (windows of 16 inputs, 1 MiB of waiting weights in
    memory): the traced peak of a consumer that writes each result and lets it go stays the same
    (a list of every result grows 8x)."""
    monkeypatch.setattr(pipeline, "WAITING_BYTES", 1 << 20)
    monkeypatch.setattr(pipeline, "WINDOW_BATCHES", 2)
    backend = minilm()
    texts = SENTENCES[:16]
    run_batch(backend, [Inputs(s) for s in texts])  # every layer's weights read before measuring

    def peak(repeat: int) -> int:
        tracemalloc.start()
        try:
            inputs = (Inputs(s) for _ in range(repeat) for s in texts)
            for result in iter_results(backend, inputs, batch_size=8, capture=Capture(layers=ALL)):
                for _ in saved.json_chunks(result):
                    pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, big = peak(2), peak(16)
    held = sum(r.stacks[0].weights.nbytes for r in run_batch(backend, [Inputs(s) for s in texts]))
    assert big < small * 1.1 + (1 << 20), (small, big)
    assert 16 * held > 1.5 * big  # holding the results would have shown: they alone are more than the peak


# ---------------------------------------------------------------- every byte, in bounded writes


def _reader(fd: int, into: list[bytes], slow: bool) -> threading.Thread:
    def read() -> None:
        while chunk := os.read(fd, 1 << 16):
            into.append(chunk)
            if slow:
                time.sleep(0.001)  # the writer finds the pipe full now and then
        os.close(fd)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_a_full_non_blocking_pipe_gets_every_byte_in_bounded_short_writes():
    data = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    got: list[bytes] = []
    reader = _reader(r, got, slow=True)
    calls: list[tuple[int, int | None]] = []
    write = fd_writer(w)

    def counted(view: memoryview) -> int | None:
        n = write(view)
        calls.append((len(view), n))
        return n

    sink = ByteSink(counted, chunk=100_000)  # more than the pipe holds (64 KiB): writes come back short
    at = 0
    for size in (1, 99_999, 250_000, 7, 1_000_000):  # smaller and larger than a chunk, as writers do
        sink.write(data[at : at + size])
        at += size
    sink.write(data[at:])
    sink.flush()
    os.close(w)
    reader.join(30)
    assert b"".join(got) == data and sink.written == len(data)
    assert max(size for size, _ in calls) <= 100_000
    assert any(n is not None and n < size for size, n in calls)  # short counts, written again from there
    assert any(n is None for _, n in calls)  # a full pipe, waited for


def test_the_cli_writes_every_byte_through_a_pipe_in_small_chunks():
    """The command line with its chunk lowered to 4 KiB (hundreds of write calls), read from a real
    pipe, gives exactly the bytes of an in-process run."""
    args = ["show", "-", "-f", "jsonl", *EVERY]
    stdin = "\n".join(SENTENCES[:6]) + "\n"
    code = "import sys; from attnviz.cli import sink, main; sink.CHUNK = 4096; main(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], input=stdin.encode(), capture_output=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run(*args, stdin=stdin).stdout_bytes
    assert len(proc.stdout) > 100 * 4096


def test_a_full_disk_is_an_error_that_says_how_far_it_got():
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "attnviz", "show", "I have a dream", "-f", "jsonl"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert proc.returncode == 1
    assert proc.stderr.decode() == "error: cannot write to standard output after 0 bytes: No space left on device\n"


def test_a_reader_that_goes_away_midway_is_a_quiet_stop():
    stdin = ("\n".join(SENTENCES) + "\n").encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnviz", "show", "-", "-f", "jsonl", *EVERY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    assert len(proc.stdout.read(100_000)) == 100_000  # the first lines came, then the reader leaves
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


def test_more_than_2_gib_through_a_pipe_arrives_whole():
    """Nine 512-token lines of every layer and head (2.3 GB of JSON lines) through a real pipe: the
    reader counts every byte and checksums them against the same lines made in this process."""
    paragraph = (ROOT / "sample_inputs" / "long.txt").read_text().splitlines()[1]
    text = " ".join([paragraph] * 6)
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnviz", "show", "-", "-f", "jsonl", "--truncate", *EVERY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((text + "\n").encode() * 9)
    proc.stdin.close()
    total, crc = 0, 0
    while chunk := proc.stdout.read(1 << 22):
        total += len(chunk)
        crc = zlib.crc32(chunk, crc)
    assert proc.wait(timeout=600) == 0
    (one,) = run_batch(minilm(), [Inputs(text)], truncate=True, capture=Capture(layers=ALL))
    line = b"".join(saved.json_chunks(one)) + b"\n"
    expected_total, expected_crc = 0, 0
    for i in range(9):  # the same line, but for where it came from
        each = line.replace(b'"index":0,"line":null', f'"index":{i},"line":{i + 1}'.encode(), 1)
        expected_total += len(each)
        expected_crc = zlib.crc32(each, expected_crc)
    assert total == expected_total > 2**31
    assert crc == expected_crc


# ---------------------------------------------------------------- formats and flags


def load_npz(data: bytes, path: Path) -> list:
    path.write_bytes(data)
    return saved.load(path)


def test_npz_is_stored_by_default_and_deflated_with_compress(tmp_path):
    args = ("show", "I have a dream", "so do I", "-f", "npz", *EVERY)
    stored, deflated = run(*args), run(*args, "--compress")
    for out, method in ((stored, zipfile.ZIP_STORED), (deflated, zipfile.ZIP_DEFLATED)):
        assert out.code == 0, out.stderr
        with zipfile.ZipFile(io.BytesIO(out.stdout_bytes)) as z:
            assert {info.compress_type for info in z.infolist()} == {method}
    assert len(deflated.stdout_bytes) < len(stored.stdout_bytes)
    a, b = load_npz(stored.stdout_bytes, tmp_path / "a.npz"), load_npz(deflated.stdout_bytes, tmp_path / "b.npz")
    assert all(np.array_equal(x.stacks[0].weights, y.stacks[0].weights) for x, y in zip(a, b))


def test_one_input_npz_streams_deflated_too(tmp_path):
    out = run("show", "I have a dream", "-f", "npz", "--compress", *EVERY)
    with zipfile.ZipFile(io.BytesIO(out.stdout_bytes)) as z:
        assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_DEFLATED}
    (result,) = load_npz(out.stdout_bytes, tmp_path / "one.npz")
    assert result.stacks[0].weights.shape == (6, 12, 6, 6)


def test_json_writes_each_float32_as_its_shortest_exact_decimal():
    out = run("show", "I have a dream", "-f", "json", *EVERY)
    doc = out.json()
    weights = np.asarray(doc["stacks"][0]["attention"], dtype=np.float32)
    raw = out.stdout.split('"attention":', 1)[1].split("]]]]", 1)[0]
    numbers = raw.replace("[", "").replace("]", "").split(",")
    assert len(numbers) == weights.size
    for text, value in zip(numbers[:500], weights.ravel()[:500]):
        assert np.float32(text) == value
        assert len(text) <= len(np.format_float_positional(value, unique=True)) + 4  # float32's, not float64's
    assert len(out.stdout_bytes) / weights.size < 13


def test_threads_sets_torch_and_blas(monkeypatch):
    import torch
    from threadpoolctl import threadpool_info

    from attnviz.backends import native_bert

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        assert run("show", "I have a dream", "--model", "scratch", "--threads", "3", "-f", "json").code == 0
        assert torch.get_num_threads() == 3
        assert run("show", "I have a dream", "--model", "scratch", "-f", "json").code == 0
        assert torch.get_num_threads() == 1  # the policy for a small model
        threads.choose(2)
        with native_bert.blas_threads():
            assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
    finally:
        threads.choose(None)


def test_the_thread_policy_keeps_big_models_and_the_users_choice(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert threads.torch_threads(22_000_000) == 1
    assert threads.torch_threads(7_000_000_000) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.torch_threads(22_000_000) is None
    threads.choose(5)
    try:
        assert threads.torch_threads(22_000_000) == 5
    finally:
        threads.choose(None)


def test_an_error_midway_keeps_the_lines_before_it_whole():
    """A too-long line after good ones: the good lines are written whole, then the error, exit 1."""
    lines = ["I have a dream", "so do I", "word " * 600]
    out = run("show", "-", "-f", "jsonl", stdin="\n".join(lines))
    assert out.code == 1 and "512" in out.stderr
    assert [json.loads(line)["text"] for line in out.stdout.splitlines()] == lines[:2]


def test_line_breaks_inside_texts_stay_escaped_in_streamed_lines():
    out = run("show", "a\u2028b\u0085c\u2029d", "so do I", "-f", "jsonl")
    assert out.code == 0
    assert not {"\x85", "\u2028", "\u2029"} & set(out.stdout)
    assert [json.loads(line)["text"] for line in out.stdout.split("\n")[:-1]] == ["a\u2028b\u0085c\u2029d", "so do I"]


def test_compress_is_refused_where_nothing_is_compressed():
    out = run("show", "I have a dream", "-f", "jsonl", "--compress")
    assert out.code == 2 and out.stdout == ""
    assert out.stderr.startswith("error: --compress deflates npz output; --format jsonl is not compressed\n")
