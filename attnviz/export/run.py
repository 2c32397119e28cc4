"""An export run: results in (from a model, or from a saved file), images and a manifest out.

Drawing runs in worker processes (one warm matplotlib figure per layout each) while
this process runs the model; the CLI follows along through a `Reporter`. A sentence
that fails is reported and the rest goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.types import Backend, Inputs
from ..errors import AttnvizError
from ..inputs import Sentence, to_inputs
from ..result import AttentionResult
from ..spec import ALL, ExportView, ViewSpec
from .files import Manifest, deferred_interrupt, prepare_folder, stem, write_atomic
from .plan import Task, content_key, plan

if TYPE_CHECKING:
    from ..render.image import Style

Outcome = tuple[Sentence, Inputs, AttentionResult | AttnvizError]


@dataclass(frozen=True)
class ExportOptions:
    """What to draw and how; the view means what it means for `show` (every layer by default)."""

    style: Style
    view: ExportView = ExportView.HEAD
    spec: ViewSpec = field(default_factory=lambda: ViewSpec(layers=ALL))
    overwrite: bool = False
    jobs: int = 0  # drawing processes; 0 = one per core, 1 = draw in this process


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
    """What every export run starts with: the folder, its manifest, and the lines that can be used
    (the others reported as failed)."""
    prepare_folder(folder)
    manifest = Manifest(folder, echo)
    summary = Summary(sentences=len(sentences), manifest=manifest.path)
    good = []
    for s in sentences:
        if s.error:
            fail(summary, reporter, s, s.error)
        else:
            good.append(s)
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
) -> Callable[[list[Sentence]], Iterator[Outcome]]:
    """Results of running sentences through the model `load` gives, batch by batch.

    `pair` / `target` go with every sentence that has no second column of its own.
    """

    def outcomes(sentences: list[Sentence]) -> Iterator[Outcome]:
        from ..api import check_fits

        backend = load()
        family = backend.info.family
        check_fits(backend, [Inputs("flags", pair=pair, target=target)])  # before any drawing
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            batch = to_inputs(chunk, family, pair=pair, target=target)
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
            yield s, Inputs(r.text, **r.inputs), r

    return sentences, outcomes


# ---------------------------------------------------------------- drawing


_painter: Any = None


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group: workers finish their task and the main
    # process, which owns the manifest, decides what happens.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _get_painter()


def _get_painter() -> Any:
    global _painter
    if _painter is None:
        from ..render.image import Painter

        _painter = Painter()
    return _painter


def draw_task(
    task: Task, folder: str, on_done: Callable[[str], None] | None = None
) -> tuple[list[str], Exception | None]:
    """Draw and write a task's images. Runs in a worker or in-process.

    Returns the names of the images written and the error that stopped the task (None if
    none): images written before a failure are complete and must still reach the manifest.
    """
    names: list[str] = []
    try:
        painter = _get_painter()
        for item in task.items:
            data = painter.render(task.layout, task.style, item.weights, item.title)
            path = Path(folder) / item.name
            if on_done is None:
                write_atomic(path, data)
            else:
                with deferred_interrupt():
                    write_atomic(path, data)
                    on_done(item.name)
            names.append(item.name)
    except Exception as exc:
        return names, exc
    return names, None


def _tasks(sentence: Sentence, inputs: Inputs, result: AttentionResult, options: ExportOptions) -> list[Task]:
    from ..views import apply

    base: dict[str, Any] = {"index": sentence.index, "line": sentence.line, "text": inputs.text}
    base.update({k: v for k, v in (("pair", inputs.pair), ("target", inputs.target)) if v is not None})
    base.update(model=result.model, view=options.view.value)
    shown = apply(result, options.spec)
    name = stem(sentence.index, inputs.text, inputs.pair, inputs.target, content_key(shown))
    return plan(shown, name, base, options.view, options.style)


def export(
    sentences: Sequence[Sentence],
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    folder: Path,
    options: ExportOptions,
    reporter: Reporter | None = None,
    echo: Callable[[str], None] | None = None,
) -> Summary:
    """Export every sentence's images to `folder`; failures are collected, not raised.

    `outcomes(good)` gives each usable sentence's result (from_model, from_results); it is
    called once the drawing processes are starting, so they warm up while a model loads.
    """
    options.style.check()
    reporter = reporter or Reporter()
    manifest, summary, good = begin(sentences, folder, reporter, echo)
    jobs = options.jobs or (os.cpu_count() or 1)
    pool = None
    if jobs > 1 and good:
        import multiprocessing

        # spawn, not fork: the model's threads must not be copied; workers warm up while the model loads
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    pending: dict[Future[tuple[list[str], Exception | None]], Task] = {}
    noted: set[str] = set()
    per_sentence: int | None = None

    def finish(task: Task, names: list[str]) -> None:
        with deferred_interrupt():
            by_name = {i.name: i.record for i in task.items}
            for name in names:
                manifest.add(by_name[name])
        summary.written += len(names)
        reporter.done(len(names), 0)

    def collect(block: bool) -> None:
        if not pending:
            return
        done, _ = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            names, error = future.result()
            finish(pending.pop(future), names)
            if error is not None:
                raise error  # futures still pending are listed in the `finally` below

    try:
        for sentence, inputs, result in outcomes(good):
            try:
                if isinstance(result, AttnvizError):
                    raise result
                for note in result.notes:
                    reporter.note(f"{sentence.where}: {note}")
                tasks = _tasks(sentence, inputs, result, options)
            except AttnvizError as exc:
                fail(summary, reporter, sentence, f"{sentence.where}: {exc.message}")
                continue
            _note_fonts(tasks, reporter, noted)
            if per_sentence is None:
                per_sentence = sum(len(t.items) for t in tasks)
                reporter.total(per_sentence * len(good))
            for task in tasks:
                todo = []
                for item in task.items:
                    if not options.overwrite and (folder / item.name).is_file():
                        with deferred_interrupt():
                            manifest.add(item.record)
                        summary.skipped += 1
                        reporter.done(0, 1)
                    else:
                        todo.append(item)
                if not todo:
                    continue
                task = Task(task.layout, task.style, tuple(todo))
                if pool is None:
                    by_name = {i.name: i.record for i in todo}

                    def landed(name: str, by_name: dict[str, dict[str, Any]] = by_name) -> None:
                        manifest.add(by_name[name])
                        summary.written += 1
                        reporter.done(1, 0)

                    _, error = draw_task(task, str(folder), landed)  # `landed` listed each image
                    if error is not None:
                        raise error
                else:
                    while len(pending) >= 2 * jobs:
                        collect(block=True)
                    pending[pool.submit(draw_task, task, str(folder))] = task
                    collect(block=False)
        while pending:
            collect(block=True)
    finally:
        # after Ctrl-C or an error: workers (which ignore SIGINT) finish the tasks they hold;
        # list every image they wrote, even those of a task that failed part-way, then stop
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            for future, task in pending.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    finish(task, future.result()[0])
        manifest.close()
    return summary


def _note_fonts(tasks: list[Task], reporter: Reporter, noted: set[str]) -> None:
    from ..render.image import missing_glyphs

    for task in tasks:
        missing = set(missing_glyphs(task.layout.query + task.layout.key)) - noted
        if missing:
            noted.update(missing)
            reporter.note(
                f"no installed font draws {''.join(sorted(missing))[:20]}: labels show them as U+XXXX "
                "(install a CJK font such as Noto Sans CJK to draw them)"
            )
