"""An export run: results in (from a model, or from a saved file), images and a manifest out.

Drawing runs in worker processes (one warm matplotlib figure per layout each) while
this process runs the model; the CLI follows along through a `Reporter`. A sentence
that fails is reported and the rest goes on.

Whatever stops a run (an error, a closed pipe, SIGINT, SIGTERM or SIGHUP, once or
repeatedly) it ends its workers within about a second and leaves a manifest listing
exactly the complete images. Workers ignore the terminal's SIGINT and SIGHUP (the
parent decides) and die with the parent even when it is killed outright.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import queue
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import stopping
from ..backends.types import Backend, Inputs
from ..errors import AttnvizError
from ..inputs import Sentence, to_inputs
from ..result import AttentionResult
from ..spec import ALL, ExportView, ViewSpec
from .files import Manifest, deferred_interrupt, is_image, lock_folder, prepare_folder, stem, sweep, write_atomic
from .plan import Item, Task, content_key, plan

if TYPE_CHECKING:
    from ..render.image import Layout, Style

Outcome = tuple[Sentence, Inputs, AttentionResult | AttnvizError]


@dataclass(frozen=True)
class ExportOptions:
    """What to draw and how; the view means what it means for `show` (every layer by default)."""

    style: Style
    view: ExportView = ExportView.HEAD
    spec: ViewSpec = field(default_factory=lambda: ViewSpec(layers=ALL))
    overwrite: bool = False
    jobs: int = 0  # drawing processes; 0 = one per core once the run is big enough to pay for them, 1 = none


class Reporter:
    """Progress callbacks; the CLI's subclass draws a bar on stderr. The base does nothing."""

    def total(self, images: int) -> None:
        """The expected number of images (known once the first sentence is planned)."""

    def done(self, written: int, skipped: int) -> None:
        """Images completed since the last call: written now, or already complete."""

    def failed(self, sentence: Sentence, message: str) -> None: ...

    def note(self, message: str) -> None:
        """A warning for the user (truncation, missing fonts)."""


@dataclass
class Summary:
    """What an export did."""

    written: int = 0
    skipped: int = 0
    sentences: int = 0
    failed: list[tuple[Sentence, str]] = field(default_factory=list)
    manifest: Path | None = None


def begin(
    sentences: Sequence[Sentence], folder: Path, reporter: Reporter, echo: Callable[[str], None] | None
) -> tuple[Manifest, Summary, list[Sentence]]:
    """What every export run starts with: the folder (locked for this run: OutputError if another
    export holds it), its manifest, and the lines that can be used (the others reported as failed)."""
    prepare_folder(folder)
    manifest = Manifest(folder, echo, lock=lock_folder(folder))
    summary = Summary(sentences=len(sentences), manifest=manifest.path)
    good = []
    try:
        for s in sentences:
            if s.error:
                fail(summary, reporter, s, s.error)
            else:
                good.append(s)
    except BaseException:
        manifest.close()
        raise
    return manifest, summary, good


def fail(summary: Summary, reporter: Reporter, sentence: Sentence, message: str) -> None:
    """One sentence failed: counted in the summary and told to the reporter; the run goes on."""
    summary.failed.append((sentence, message))
    reporter.failed(sentence, message)


# ---------------------------------------------------------------- where results come from


def _run(backend: Backend, batch: list[Inputs], truncate: bool) -> list[AttentionResult | AttnvizError]:
    """Results for a batch; if the batch fails, each input alone, so one bad line costs only itself."""
    from ..api import run_batch

    try:
        return list(run_batch(backend, batch, batch_size=len(batch), truncate=truncate))
    except AttnvizError:
        if len(batch) == 1:
            raise
    out: list[AttentionResult | AttnvizError] = []
    for x in batch:
        try:
            out.extend(run_batch(backend, [x], truncate=truncate))
        except AttnvizError as exc:
            out.append(exc)
    return out


def from_model(
    load: Callable[[], Backend],
    batch_size: int = 16,
    truncate: bool = False,
    pair: str | None = None,
    target: str | None = None,
    generate: int = 0,
) -> Callable[[list[Sentence]], Iterator[Outcome]]:
    """Results of running sentences through the model `load` gives, batch by batch.

    `pair` / `target` go with every sentence that has no second column of its own; a decoder
    first continues each sentence by `generate` tokens.
    """

    def outcomes(sentences: list[Sentence]) -> Iterator[Outcome]:
        from ..api import check_fits

        backend = load()
        family = backend.info.family
        check_fits(backend, [Inputs("flags", pair=pair, target=target, generate=generate)])  # before any drawing
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            batch = [replace(x, generate=generate) for x in to_inputs(chunk, family, pair=pair, target=target)]
            for sentence, inputs, result in zip(chunk, batch, _run(backend, batch, truncate)):
                yield sentence, inputs, result if isinstance(result, AttnvizError) else sentence.tag(result)

    return outcomes


def from_results(
    results: Sequence[AttentionResult],
) -> tuple[list[Sentence], Callable[[list[Sentence]], Iterator[Outcome]]]:
    """Sentences and outcomes for results read from a saved file."""
    sentences = [Sentence(r.index, r.line, r.text) for r in results]

    def outcomes(good: list[Sentence]) -> Iterator[Outcome]:
        for s, r in zip(sentences, results):  # saved results have no failed lines: good is every sentence
            x = r.inputs
            yield s, Inputs(r.text, pair=x.get("pair"), target=x.get("target"), source=x.get("source")), r

    return sentences, outcomes


# ---------------------------------------------------------------- drawing


_painter: Any = None
END_POOL_SECONDS = 1.0  # Pool.terminate() gets this long before its workers are killed outright
WAIT_SECONDS = 0.2  # how long the main thread sleeps on the pool at a time: Ctrl-C is handled between
# --jobs 0 draws in this process until the images left would take this long here: only then do the
# drawing processes pay for their start (each imports matplotlib: ~1.5 s of a core). 432 small PNGs
# take ~2 s in one process, where starting two workers made the run 1.3-1.6x slower (bench_export.py).
POOL_AFTER_SECONDS = 4.0
POOL_SAMPLE = 8  # images drawn here before the pace is trusted


# a terminal sends these to its whole foreground process group (Ctrl-C, the window closing)
TERMINAL_SIGNALS = {getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name)}


def _init_worker(parent: int) -> None:
    # Workers are born with the terminal's signals blocked (_children_ignore_stops). Ignoring them
    # discards any that came while this process started (a traceback per worker, before): the
    # parent decides when drawing stops, and ends the workers with SIGTERM (left at its default).
    for s in TERMINAL_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)
    stopping.die_with_parent(parent)
    _get_painter()


def _get_painter() -> Any:
    global _painter
    if _painter is None:
        from ..render.image import Painter

        _painter = Painter()
    return _painter


def draw_image(layout: Layout, style: Style, weights: Any, title: str, path: str) -> None:
    """Draw one image and write it atomically. Runs in a worker or in-process."""
    write_atomic(Path(path), _get_painter().render(layout, style, weights, title))


@contextlib.contextmanager
def _children_ignore_stops() -> Iterator[None]:
    """While worker processes start: stop signals held here (the pool is made whole, then stopped),
    and the terminal's signals blocked in this thread, so workers (and the pool's threads) inherit
    them blocked until _init_worker ignores them. Blocked, not ignored: none is lost here."""
    with deferred_interrupt():
        if not hasattr(signal, "pthread_sigmask"):
            yield
            return
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
        # a spawned worker starts with SIGINT unblocked (Python's start-up unblocks it), but an
        # ignored SIGINT stays ignored through exec and start-up: else a Ctrl-C while a worker
        # imports is a "Fatal Python error" per worker. Blocked here, a Ctrl-C stays pending
        # (Linux never discards a blocked signal) and reaches the handler restored below.
        handlers = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
        try:
            yield
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _end_pool(pool: Any) -> None:
    """Stop the workers now (SIGTERM), and the pool's threads within END_POOL_SECONDS.

    Pool.terminate() ends by joining its task thread, which can stay blocked for good handing
    a queued task to workers that are already gone (seen after a closed --manifest - pipe). So
    it runs on a daemon thread that gets END_POOL_SECONDS; after that the remaining workers are
    killed and the run goes on: the stuck threads are daemons and die with the process. Only this
    pool's own workers are killed, never other children of a program that uses attnviz.
    """
    workers = list(pool._pool)  # the pool's processes (no public accessor); terminate() may replace the list
    ender = threading.Thread(target=lambda: (pool.terminate(), pool.join()), daemon=True)
    ender.start()
    ender.join(END_POOL_SECONDS)
    if ender.is_alive():
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.join(END_POOL_SECONDS)  # reaped: a zombie's pid looks alive, and its temporary file would stay


class _Drawing:
    """Draws images one at a time, in worker processes or in this one, and lists each the
    moment it lands: its manifest line, then the reporter.

    Every image in flight is tracked, so whatever stops the run, `stop` can list exactly
    the images that reached the disk and no other.
    """

    def __init__(
        self, folder: Path, jobs: int, manifest: Manifest, summary: Summary, reporter: Reporter, adaptive: bool = False
    ) -> None:
        self.folder, self.manifest, self.summary, self.reporter = folder, manifest, summary, reporter
        self.jobs = jobs
        self.adaptive = adaptive  # start the processes only once the work left pays for them (--jobs 0)
        self.limit = 16 * jobs  # in flight at most: workers stay busy while the model runs; an error waits for few
        self.flying: dict[str, Item] = {}
        self.landed: queue.SimpleQueue[tuple[str, BaseException | None]] = queue.SimpleQueue()
        self.pool: Any = None
        self.left: int | None = None  # images still to draw, once known (expect)
        self.owners: dict[str, Sentence] = {}  # the sentence of each image sent to a worker
        self.failed: set[int] = set()  # ids of the sentences an image of which could not be drawn
        self.pace: collections.deque[float] = collections.deque(maxlen=POOL_SAMPLE)  # seconds of the last images here
        self.first: Sentence | None = None  # the first sentence drawn here (its images are not timed)

    def expect(self, images: int) -> None:
        """How many images are still to draw (an upper bound: some may be complete already)."""
        self.left = images

    def start(self) -> None:
        """Start the drawing processes (with more than one job; adaptive: not yet, see draw); a stop
        signal meanwhile waits for the pool to be whole, so `stop` can end it."""
        if self.jobs > 1 and not self.adaptive:
            self._start_pool()

    def _pays(self) -> bool:
        """Whether the images left would take long enough here to be worth the drawing processes. The pace is
        the median of the last POOL_SAMPLE images after the first sentence's: those come 3-4x slower while the
        titles and labels are drawn for the first time (then stamped from a cache)."""
        if self.pool is not None or self.jobs < 2 or self.left is None or len(self.pace) < POOL_SAMPLE:
            return False
        return statistics.median(self.pace) * self.left > POOL_AFTER_SECONDS

    def _start_pool(self) -> None:
        if self.jobs > 1:
            import multiprocessing

            # spawn, not fork: the model's threads must not be copied; workers warm up while the model loads
            with _children_ignore_stops():
                self.pool = multiprocessing.get_context("spawn").Pool(
                    self.jobs, initializer=_init_worker, initargs=(os.getpid(),)
                )

    def draw(self, task: Task, sentence: Sentence) -> None:
        """Draw a task's images; returns once they are all submitted (in-process: written). An image
        that cannot be drawn (too many tokens for the size limit) fails its sentence, not the run."""
        for item in task.items:
            path = str(self.folder / item.name)
            if self.adaptive and self._pays():
                self._start_pool()
            if self.pool is None:
                began = time.perf_counter()
                try:
                    data = _get_painter().render(task.layout, task.style, item.weights, item.title)
                except AttnvizError as exc:
                    self._fail(sentence, exc)
                    return  # its other images share the layout that failed
                with deferred_interrupt():  # the image and its manifest line land together
                    write_atomic(Path(path), data)
                    self._land(item)
                self.first = sentence if self.first is None else self.first
                if sentence is not self.first:
                    self.pace.append(time.perf_counter() - began)
                continue
            while len(self.flying) >= self.limit:
                self._collect(block=True)
            self.flying[item.name] = item
            self.owners[item.name] = sentence
            self.pool.apply_async(
                draw_image,
                (task.layout, task.style, item.weights, item.title, path),
                callback=lambda _, name=item.name: self.landed.put((name, None)),
                error_callback=lambda exc, name=item.name: self.landed.put((name, exc)),
            )
            self._collect(block=False)

    def finish(self) -> None:
        """Wait for every image in flight; the first drawing error is raised."""
        while self.flying:
            self._collect(block=True)

    def stop(self, wait: bool) -> None:
        """End the drawing: `wait` lets images in flight land (an error elsewhere), else they are
        abandoned (Ctrl-C, a closed pipe). Either way the manifest then lists exactly what is on disk."""
        if self.pool is None:
            return
        try:
            if wait:
                while self.flying:  # each image leaves `flying` as it lands or fails, so this ends
                    with contextlib.suppress(Exception):  # the error being raised already is the one to tell
                        self._collect(block=True)
        finally:
            _end_pool(self.pool)  # a worker mid-image dies; its temporary file is swept below
            sweep(self.folder)
            for name, item in list(self.flying.items()):
                if is_image(self.folder, name):  # written (renamed into place) before its worker stopped
                    self._land(item)

    def _collect(self, block: bool) -> None:
        """List the images the workers finished; with `block`, wait (briefly) for at least one."""
        while self.flying:
            try:
                name, error = self.landed.get(timeout=WAIT_SECONDS) if block else self.landed.get_nowait()
            except queue.Empty:
                if block:
                    continue
                return
            if error is not None:
                del self.flying[name]
                if not isinstance(error, AttnvizError):
                    raise error
                self._fail(self.owners.pop(name), error)
                continue
            with deferred_interrupt():
                self._land(self.flying[name])
            block = False

    def _fail(self, sentence: Sentence, exc: AttnvizError) -> None:
        if id(sentence) not in self.failed:  # once, however many of its images were in flight
            self.failed.add(id(sentence))  # (by identity: results read from files may share an index)
            fail(self.summary, self.reporter, sentence, f"{sentence.where}: {exc.message}")

    def _land(self, item: Item) -> None:
        # no longer in flight, whatever listing it does: its line reaches the file before any echo can fail,
        # and an image a failed write left unlisted is taken in by the next run (_complete)
        self.flying.pop(item.name, None)
        self.owners.pop(item.name, None)
        self.manifest.add(item.record)
        self.summary.written += 1
        self.reporter.done(1, 0)
        if self.left is not None:
            self.left -= 1


def plan_key(source: str, sentence: Sentence, options: ExportOptions) -> str:
    """Names one sentence's set of images before any model runs: its input, where its results come
    from (`source`: the model and its flags) and what is drawn. Manifest lines carry it, so a
    re-run can tell a finished sentence from the manifest alone."""
    parts = [source, sentence.index, sentence.text, sentence.second, options.view.value, repr(options.spec)]
    parts.append(repr(options.style))
    return hashlib.sha1(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:16]


def _tasks(
    sentence: Sentence, inputs: Inputs, result: AttentionResult, options: ExportOptions, key: str | None
) -> list[Task]:
    from ..views import apply

    base: dict[str, Any] = {"index": sentence.index, "line": sentence.line, "text": inputs.text}
    base.update({k: v for k, v in (("pair", inputs.pair), ("target", inputs.target)) if v is not None})
    base.update(model=result.model, view=options.view.value)
    shown = apply(result, options.spec)
    name = stem(sentence.index, inputs.text, inputs.pair, inputs.target, content_key(shown))
    tasks = plan(shown, name, base, options.view, options.style)
    if key is not None:
        count = sum(len(t.items) for t in tasks)
        for t in tasks:
            for item in t.items:
                item.record.update(plan=key, plan_images=count)
    return tasks


def _skip_finished(
    good: list[Sentence], keys: dict[int, str], manifest: Manifest, summary: Summary, reporter: Reporter
) -> tuple[list[Sentence], int]:
    """The sentences still to draw, and how many images the finished ones have (listed again)."""
    todo, done = [], 0
    for s in good:
        records = manifest.complete_set(keys[s.index]) if s.index in keys else None
        if records is None:
            todo.append(s)
            continue
        for r in records:
            manifest.add(r)
        done += len(records)
    if done:
        summary.skipped += done
        reporter.done(0, done)
    return todo, done


def export(
    sentences: Sequence[Sentence],
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    folder: Path,
    options: ExportOptions,
    reporter: Reporter | None = None,
    echo: Callable[[str], None] | None = None,
    source: str | None = None,
) -> Summary:
    """Export every sentence's images to `folder`; failures are collected, not raised.

    `outcomes(todo)` gives each sentence's result (from_model, from_results); it is called
    once the drawing processes are starting, so they warm up while a model loads. With
    `source` (what plan_key needs), sentences whose images the manifest lists in full are
    not run at all: a finished export re-runs without loading a model.
    """
    options.style.check()
    reporter = reporter or Reporter()
    with stopping.catching():  # SIGTERM and SIGHUP wind the run down like Ctrl-C (the CLI catches them already)
        manifest, summary, good = begin(sentences, folder, reporter, echo)
        try:
            keys = {s.index: plan_key(source, s, options) for s in good} if source is not None else {}
            if options.overwrite:
                todo, finished = good, 0
            else:
                todo, finished = _skip_finished(good, keys, manifest, summary, reporter)
            if todo:
                _draw_all(todo, finished, outcomes, folder, options, keys, manifest, summary, reporter)
            else:
                reporter.total(finished)
        finally:
            manifest.close()  # also after a stop: lines of re-drawn images made right, the folder unlocked
    return summary


def _draw_all(
    todo: list[Sentence],
    finished: int,
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    folder: Path,
    options: ExportOptions,
    keys: dict[int, str],
    manifest: Manifest,
    summary: Summary,
    reporter: Reporter,
) -> None:
    """Run the sentences still to do and draw their images; whatever stops it, the workers end
    and every image that reached the disk is listed."""
    from ..threads import cores

    drawing = _Drawing(folder, options.jobs or cores(), manifest, summary, reporter, adaptive=not options.jobs)
    noted: set[str] = set()
    per_sentence: int | None = None
    try:
        drawing.start()
        for sentence, inputs, result in outcomes(todo):
            try:
                if isinstance(result, AttnvizError):
                    raise result
                for note in result.notes:
                    reporter.note(f"{sentence.where}: {note}")
                tasks = _tasks(sentence, inputs, result, options, keys.get(sentence.index))
            except AttnvizError as exc:
                fail(summary, reporter, sentence, f"{sentence.where}: {exc.message}")
                continue
            _note_fonts(tasks, reporter, noted)
            if per_sentence is None:
                per_sentence = sum(len(t.items) for t in tasks)
                reporter.total(finished + per_sentence * len(todo))
                drawing.expect(per_sentence * len(todo))
            for task in tasks:
                todo_items = tuple(
                    i for i in task.items if not _complete(folder, i, options, manifest, summary, reporter)
                )
                if todo_items:
                    drawing.draw(Task(task.layout, task.style, todo_items), sentence)
        drawing.finish()
    except BaseException as exc:
        # an error elsewhere lets the few images in flight land; a stop signal and a closed pipe do not wait
        drawing.stop(wait=isinstance(exc, Exception) and not isinstance(exc, BrokenPipeError))
        raise
    else:
        drawing.stop(wait=True)


def _complete(
    folder: Path, item: Item, options: ExportOptions, manifest: Manifest, summary: Summary, reporter: Reporter
) -> bool:
    """Whether an image is on disk already (and kept): then it is listed, and counted as skipped.

    An image the manifest lists as drawn with another look (`--cmap`, `--vmax`, `--dpi`, …) is
    drawn again in its place; one it does not list (a run killed outright) is taken as it is.
    """
    if options.overwrite or not is_image(folder, item.name):  # a link there is no image: it gets replaced
        return False
    listed = manifest.records.get(item.name)
    if listed is not None and listed.get("look") != item.record["look"]:
        return False
    with deferred_interrupt():
        manifest.add(item.record)
    summary.skipped += 1
    reporter.done(0, 1)
    return True


def _note_fonts(tasks: list[Task], reporter: Reporter, noted: set[str]) -> None:
    """One warning per run for characters no installed font draws (labels show them as U+XXXX)."""
    from ..render.image import fonts_extra_installed, missing_glyphs

    for task in tasks:
        missing = set(missing_glyphs(task.layout.query + task.layout.key)) - noted
        if missing and not noted:
            shown = " ".join(f"U+{ord(c):04X}" for c in sorted(missing)[:8])  # private-use ones print as nothing
            advice = (
                "attnviz's fonts cover CJK and Devanagari, not these"
                if fonts_extra_installed()
                else "install attnviz's fonts: pip install 'attnviz[fonts]'"
            )
            reporter.note(
                f"no installed font draws {shown}{' …' if len(missing) > 8 else ''}: labels show them as U+XXXX "
                f"({advice})"
            )
        noted.update(missing)
