"""Many sentences → batched model runs → heatmap images + manifest.jsonl.

Safety rules: image names come from the sentence index, a sanitised slug and a hash
(never a path from user text); every file is written under a temporary name and
renamed; the manifest gets a line only after its image is complete, so after an
interrupt it lists exactly the complete images and a re-run skips them. A line that
fails is reported through the reporter and the rest goes on.

Drawing runs in worker processes (one warm matplotlib figure per layout each) while
this process runs the model; the CLI reports progress through a `Reporter`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .api import check_fits
from .errors import AttnvizError, OutputError, UsageError
from .inputs import Sentence, to_inputs
from .models import Backend, Inputs
from .result import AttentionResult, Stack, head_label, layer_label

VIEWS = ("head", "layer", "model", "mean", "rollout")
MANIFEST = "manifest.jsonl"
TMP_PREFIX = ".attnviz-tmp-"  # our temporary files; a killed run's leftovers are removed on the next


@dataclass(frozen=True)
class ExportOptions:
    """What to draw and how; the selection flags mean what they mean for `show`."""

    view: str = "head"
    layer: str = "all"
    head: str = "all"
    stack: str | None = None
    hide_special: bool = False
    renormalize: bool = False
    words: bool = False
    tokens: str | None = None
    fmt: str = "png"
    cmap: str = "viridis"
    dpi: int = 100
    vmax: float = 1.0
    annotate: str = "auto"
    overwrite: bool = False
    batch_size: int = 16
    truncate: bool = False
    jobs: int = 0  # drawing processes; 0 = one per core, 1 = draw in this process
    pair: str | None = None  # for every sentence without its own second column
    target: str | None = None

    def check(self) -> None:
        if self.view not in VIEWS:
            raise UsageError(f"unknown --view {self.view!r}", hint=f"choose one of: {', '.join(VIEWS)}")
        if self.jobs < 0:
            raise UsageError("--jobs must be 0 (one per core) or more")
        from .render.image import Style

        Style(self.fmt, self.cmap, self.dpi, self.vmax, self.annotate).check()


class Reporter:
    """Progress callbacks; the CLI's subclass draws a bar on stderr. The base does nothing."""

    def started(self, sentences: int) -> None: ...

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


# ---------------------------------------------------------------- names


def slug(text: str, length: int = 24) -> str:
    """A file-name-safe slug: ASCII letters and digits joined by '-', never empty, never a path."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    return words[:length].strip("-") or "s"


def sentence_stem(sentence: Sentence, inputs: Inputs) -> str:
    """'0007-i-have-a-dream-1a2b3c': index, slug, and a hash so edited lines never reuse old images."""
    digest = hashlib.sha1("\x1f".join([inputs.text, inputs.pair or "", inputs.target or ""]).encode()).hexdigest()
    return f"{sentence.index:04d}-{slug(sentence.text)}-{digest[:6]}"


# ---------------------------------------------------------------- planning images


@dataclass(frozen=True)
class Item:
    """One image to make: its weights (panels, q, k), title, file name and manifest fields."""

    weights: np.ndarray
    title: str
    name: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """Images sharing one layout: what a drawing process gets in one go."""

    layout: Any  # render.image.Layout
    style: Any  # render.image.Style
    items: tuple[Item, ...]


def _span(ids: Sequence[int | str]) -> str:
    ints = [i for i in ids if isinstance(i, int)]
    if len(ints) == len(ids) and ints and ints == list(range(ints[0], ints[-1] + 1)) and len(ints) > 2:
        return f"{ints[0]}–{ints[-1]}"
    return ",".join(str(i) for i in ids)


def _grid_columns(heads: int) -> int:
    """Columns of a layer grid: the smallest divisor ≥ √heads (wider than tall), at most 8."""
    for d in range(math.ceil(math.sqrt(heads)), min(heads, 8) + 1):
        if heads % d == 0:
            return d
    return heads


def _stacks(result: AttentionResult, options: ExportOptions) -> list[Stack]:
    from .views import view

    def pick(layer: str, head: str, stack: str | None, agg: str) -> tuple[Stack, ...]:
        return view(
            result,
            layer,
            head,
            stack,
            agg,
            hide_specials=options.hide_special,
            renormalize=options.renormalize,
            words=options.words,
            tokens=options.tokens,
        ).stacks

    # rollout's stacks (cross skipped unless named) are views.view's rule, as for `show`
    return list(pick(options.layer, options.head, options.stack, "rollout" if options.view == "rollout" else "none"))


def _ints(ids: Sequence[int | str]) -> list[int]:
    return [int(i) for i in ids]


def _source_heads(result: AttentionResult, s: Stack, head: str) -> list[int]:
    """The model heads behind a view stack's heads (an aggregate stands for the heads it combined)."""
    if all(isinstance(h, int) for h in s.head_ids):
        return _ints(s.head_ids)
    from .views import HEAD_AGGREGATES, parse_index_spec

    source = result.stack(s.name)
    spec = head.strip().lower()
    picked = range(source.heads) if spec in ("all", *HEAD_AGGREGATES) else parse_index_spec(spec, source.heads, "head")
    return [int(source.head_ids[i]) for i in picked]


def plan(result: AttentionResult, sentence: Sentence, inputs: Inputs, options: ExportOptions) -> list[Task]:
    """The images of one sentence, grouped by layout."""
    from .render.image import Layout, Style

    style = Style(options.fmt, options.cmap, options.dpi, options.vmax, options.annotate)
    stem = sentence_stem(sentence, inputs)
    base: dict[str, Any] = {"index": sentence.index, "line": sentence.line, "text": inputs.text}
    base.update({k: v for k, v in (("pair", inputs.pair), ("target", inputs.target)) if v is not None})
    base["model"] = result.model
    base["view"] = options.view
    tasks = []
    for s in _stacks(result, options):
        q, k = s.query.texts, s.key.texts
        caption = "\n".join(s.notes)
        head_word = f"{s.head_ids[0]} of heads" if s.heads == 1 and isinstance(s.head_ids[0], str) else None
        # manifest fields keep one type: layer/head an int or null, layers/heads lists of ints, agg a str or null
        all_layers = _ints(result.stack(s.name).layer_ids) if options.view == "rollout" else _ints(s.layer_ids)
        all_heads = _source_heads(result, s, options.head)
        heads_agg: str | None = None  # how one map combines heads: 'mean', 'max', or None (each head its own)
        if head_word:  # rollout of chosen heads ('head 3', 'mean of heads 0,2') averages them
            label = str(s.head_ids[0])
            heads_agg = label if label in ("mean", "max") else "mean" if len(all_heads) > 1 else None

        def item(
            weights: np.ndarray,
            title: str,
            suffix: str,
            layers: list[int],
            heads: list[int],
            agg: str | None,
            s: Stack = s,
        ) -> Item:
            name = f"{stem}-{s.name}-{suffix}.{options.fmt}"
            record = {
                **base,
                "stack": s.name,
                "layer": layers[0] if len(layers) == 1 else None,
                "layers": layers,
                "head": heads[0] if len(heads) == 1 and agg is None else None,
                "heads": heads,
                "agg": agg,
                "file": name,
            }
            return Item(
                np.ascontiguousarray(weights, dtype=np.float32), f"{result.model} · {s.name} · {title}", name, record
            )

        if options.view == "head":
            layout = Layout(1, 1, q, k, caption=caption)
            items = [
                item(
                    s.weights[li, hi][None],
                    f"layer {layer} · {head_word or f'head {head}'}",
                    f"L{layer:02d}-H{head:02d}" if isinstance(head, int) else f"L{layer:02d}-{head}",
                    [int(layer)],
                    [head] if isinstance(head, int) else all_heads,
                    heads_agg,
                )
                for li, layer in enumerate(s.layer_ids)
                for hi, head in enumerate(s.head_ids)
            ]
        elif options.view == "layer":
            cols = _grid_columns(s.heads)
            titles = tuple(head_label(h) for h in s.head_ids)
            layout = Layout(s.heads // cols, cols, q, k, panel_titles=titles, caption=caption)
            items = [
                item(
                    s.weights[li],
                    f"layer {layer} · {s.heads} heads",
                    f"L{layer:02d}",
                    [int(layer)],
                    all_heads,
                    heads_agg,
                )
                for li, layer in enumerate(s.layer_ids)
            ]
        elif options.view == "model":
            titles = tuple(head_label(h) if li == 0 else "" for li in range(s.layers) for h in s.head_ids)
            rows = tuple(layer_label(layer) for layer in s.layer_ids)
            layout = Layout(s.layers, s.heads, q, k, panel_titles=titles, row_titles=rows, caption=caption)
            weights = s.weights.reshape(s.layers * s.heads, len(q), len(k))  # (L*H, q, k), row-major panels
            title = f"layers {_span(s.layer_ids)} × heads {_span(s.head_ids)}"
            items = [item(weights, title, "model", all_layers, all_heads, heads_agg)]
        elif options.view == "mean":
            layout = Layout(1, 1, q, k, caption=caption)
            mean = s.weights.mean(axis=(0, 1))[None]  # (1, q, k)
            layers = s.layer_ids[0] if s.layers == 1 else _span(s.layer_ids)
            what = "layer" if s.layers == 1 else "layers"
            items = [
                item(
                    mean,
                    f"{what} {layers} · mean of {s.heads} heads",
                    "mean",
                    all_layers,
                    all_heads,
                    heads_agg or ("mean" if len(all_heads) > 1 else None),
                )
            ]
        else:  # rollout
            layout = Layout(1, 1, q, k, caption=caption)
            title = f"rollout · {s.head_ids[0]}"
            items = [item(s.weights[0, 0][None], title, "rollout", all_layers, all_heads, heads_agg)]
        tasks.append(Task(layout, style, tuple(items)))
    return tasks


# ---------------------------------------------------------------- writing files


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an image and its manifest line land together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


_painter: Any = None


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group: workers finish their task and the main
    # process, which owns the manifest, decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _get_painter()


def _get_painter() -> Any:
    global _painter
    if _painter is None:
        from .render.image import Painter

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


# ---------------------------------------------------------------- the manifest


class Manifest:
    """manifest.jsonl: one complete line per complete image, appended as images land."""

    def __init__(self, folder: Path, echo: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        self.echo = echo
        self.records: dict[str, dict[str, Any]] = {}
        self.replaced = False
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and (folder / str(record.get("file", ""))).is_file():
                        self.records[str(record["file"])] = record
        self.rewrite()  # drop lines of images that are gone, and any torn last line

    def rewrite(self) -> None:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values())
        write_atomic(self.path, lines.encode("utf-8"))
        self.replaced = False

    def add(self, record: dict[str, Any]) -> None:
        record = {**record, "path": str(self.folder / record["file"])}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if self.echo is not None:
            self.echo(line)
        old = self.records.get(record["file"])
        self.records[record["file"]] = record
        if old is not None:
            # the image was listed already: the file is complete either way; fix the line at the end
            self.replaced = self.replaced or old != record
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)  # one write of one whole line

    def close(self) -> None:
        if self.replaced:
            self.rewrite()


# ---------------------------------------------------------------- the run


def prepare_folder(folder: Path) -> None:
    """Create the output folder; OutputError if it is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} exists and is not a folder", hint="give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create --out {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"--out {folder} is not writable", hint="choose another folder or fix its permissions")
    for tmp in folder.glob(f"{TMP_PREFIX}*"):
        if _is_stale(tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()  # left by a run that was killed outright


STALE_SECONDS = 600  # one image's temporary file lives for moments; ten minutes old means abandoned


def _is_stale(tmp: Path) -> bool:
    """A temporary file (named …-PID by write_atomic) whose writer is gone, or that is old.

    Another export writing into the same folder right now keeps its files: its process is
    alive and they are fresh. The age rule covers a recycled pid.
    """
    with contextlib.suppress(OSError):
        if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
            return True
    pid = tmp.name.rsplit("-", 1)[-1]
    if not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, but another user's process (EPERM)
    return False


def _run(backend: Backend, batch: list[Inputs], options: ExportOptions) -> list[AttentionResult | AttnvizError]:
    """Results for a batch; if the batch fails, each input alone, so one bad line costs only itself."""
    from .api import run_batch

    # inputs with and without a pair cannot share a padded batch (the pairless would get an empty pair)
    if len({x.pair is None for x in batch}) > 1:
        split = next(i for i, x in enumerate(batch) if (x.pair is None) != (batch[0].pair is None))
        return _run(backend, batch[:split], options) + _run(backend, batch[split:], options)
    try:
        return list(run_batch(backend, batch, batch_size=len(batch), truncate=options.truncate))
    except AttnvizError:
        if len(batch) == 1:
            raise
    out: list[AttentionResult | AttnvizError] = []
    for x in batch:
        try:
            out.extend(run_batch(backend, [x], truncate=options.truncate))
        except AttnvizError as exc:
            out.append(exc)
    return out


def export(
    sentences: Sequence[Sentence],
    load: Callable[[], Backend],
    folder: Path,
    options: ExportOptions,
    reporter: Reporter | None = None,
    echo: Callable[[str], None] | None = None,
) -> Summary:
    """Export every sentence's images to `folder`; failures are collected, not raised."""
    options.check()
    reporter = reporter or Reporter()
    prepare_folder(folder)
    manifest = Manifest(folder, echo)
    summary = Summary(sentences=len(sentences), manifest=manifest.path)
    reporter.started(len(sentences))
    good = []
    for s in sentences:
        if s.error:
            summary.failed.append((s, s.error))
            reporter.failed(s, s.error)
        else:
            good.append(s)
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
        backend = load()
        family = backend.info.family
        check_fits(backend, [Inputs("flags", pair=options.pair, target=options.target)])  # before any drawing
        for start in range(0, len(good), options.batch_size):
            chunk = good[start : start + options.batch_size]
            batch = to_inputs(list(chunk), family, pair=options.pair, target=options.target)
            for sentence, inputs, result in zip(chunk, batch, _run(backend, batch, options)):
                try:
                    if isinstance(result, AttnvizError):
                        raise result
                    for warning in result.warnings:
                        reporter.note(f"line {sentence.line}: {warning}")
                    tasks = plan(result, sentence, inputs, options)
                except AttnvizError as exc:
                    message = f"line {sentence.line}: {exc.message}"
                    summary.failed.append((sentence, message))
                    reporter.failed(sentence, message)
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
    from .render.image import missing_glyphs

    for task in tasks:
        missing = set(missing_glyphs(task.layout.query + task.layout.key)) - noted
        if missing:
            noted.update(missing)
            reporter.note(
                f"no installed font draws {''.join(sorted(missing))[:20]}: labels show them as U+XXXX "
                "(install a CJK font such as Noto Sans CJK to draw them)"
            )
