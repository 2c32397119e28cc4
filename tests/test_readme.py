"""The README's example outputs are the real outputs, at 80 columns.

Each `<!-- output: ARGS [| head -N] -->` marker is followed by a fenced block holding
`$ attnviz ARGS` and what it prints. This test runs each one and compares;
UPDATE_README=1 rewrites the blocks from the real output.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from harness import run

README = Path(__file__).parent.parent / "README.md"
MARKER = re.compile(r"<!-- output: (?P<args>.+?)(?: \| head -(?P<head>\d+))? -->\n```text\n.*?```\n", re.S)


def block(args: str, head: str | None) -> str:
    out = run(*shlex.split(args), env={"COLUMNS": "80"})
    assert out.code == 0, f"attnviz {args}: {out.stderr}"
    lines = out.stdout.splitlines()
    shown = lines[: int(head)] if head else lines
    pipe = f" | head -{head}" if head else ""
    return "```text\n" + "\n".join([f"$ attnviz {args}{pipe}", *shown]) + "\n```\n"


def test_readme_outputs_are_real():
    text = README.read_text(encoding="utf-8")
    found = list(MARKER.finditer(text))
    assert len(found) >= 5, "the README lost its example outputs"

    def fresh(m: re.Match[str]) -> str:
        head = f" | head -{m['head']}" if m["head"] else ""
        return f"<!-- output: {m['args']}{head} -->\n" + block(m["args"], m["head"])

    updated = MARKER.sub(fresh, text)
    if os.environ.get("UPDATE_README"):
        README.write_text(updated, encoding="utf-8")
    assert updated == text, "README example outputs differ from the real ones: run with UPDATE_README=1"
