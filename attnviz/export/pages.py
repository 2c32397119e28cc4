"""`export --image html`: one interactive page per sentence, an index.html linking them, a manifest.

Each page is written atomically and listed in manifest.jsonl as it lands; index.html is
rewritten (atomically) from the manifest at the end, so it links every complete page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import AttnvizError
from ..inputs import Sentence
from ..spec import ALL, ViewSpec
from ..views import apply
from .files import deferred_interrupt, stem, write_atomic
from .run import Outcome, Reporter, Summary, begin, fail

INDEX = "index.html"


def export_pages(
    sentences: Sequence[Sentence],
    outcomes: Callable[[list[Sentence]], Iterable[Outcome]],
    folder: Path,
    spec: ViewSpec,
    reporter: Reporter | None = None,
    echo: Callable[[str], None] | None = None,
) -> Summary:
    """A page per usable sentence (every layer unless the spec narrows it); failures collected."""
    from ..render.html import index, page

    reporter = reporter or Reporter()
    manifest, summary, good = begin(sentences, folder, reporter, echo)
    reporter.total(len(good))
    spec = spec.with_layers(ALL)
    model = ""
    try:
        for sentence, inputs, result in outcomes(good):
            try:
                if isinstance(result, AttnvizError):
                    raise result
                for note in result.notes:
                    reporter.note(f"{sentence.where}: {note}")
                shown = apply(result, spec)
                model = result.model
                name = f"{stem(sentence.index, inputs.text, inputs.pair, inputs.target, view=result.model)}.html"
                data = page([shown]).encode("utf-8")
            except AttnvizError as exc:
                fail(summary, reporter, sentence, f"{sentence.where}: {exc.message}")
                continue
            with deferred_interrupt():
                write_atomic(folder / name, data)
                manifest.add(
                    {
                        "index": sentence.index,
                        "line": sentence.line,
                        "text": inputs.text,
                        **inputs.extras(),
                        "model": result.model,
                        "view": "page",
                        "file": name,
                    }
                )
            summary.written += 1
            reporter.done(1, 0)
    finally:
        manifest.close()  # also after Ctrl-C or a closed pipe: lines of re-drawn pages made right
    pages = [r for r in manifest.records.values() if str(r.get("file", "")).endswith(".html")]
    entries = [(r["file"], r.get("text", ""), r.get("line")) for r in sorted(pages, key=lambda r: r.get("index", 0))]
    write_atomic(folder / INDEX, index(entries, model or "attnviz").encode("utf-8"))
    return summary
