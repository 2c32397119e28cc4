"""The one way tests run the CLI: in-process, with byte buffers for stdin, stdout and stderr.

Loaded models stay cached between calls, so a test costs its own work, not a torch
start-up. Tests that need a real process (signals, imports, a terminal) use
`run_subprocess`, which returns the same `Run`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnviz.cli import main


@dataclass(frozen=True)
class Run:
    """What one `attnviz ...` call did."""

    code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8")

    def json(self) -> Any:
        """stdout as one JSON document."""
        return json.loads(self.stdout)

    def jsonl(self) -> list[Any]:
        """stdout as JSON lines."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def run(*args: str, stdin: bytes | str = b"", env: dict[str, str | None] | None = None) -> Run:
    """`attnviz ARGS` in this process; `env` sets (or with None, removes) variables for the call."""
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    out, err = io.BytesIO(), io.BytesIO()
    wrappers = [io.TextIOWrapper(buf, encoding="utf-8", write_through=True) for buf in (out, err, io.BytesIO(data))]
    saved_streams = sys.stdout, sys.stderr, sys.stdin
    saved_env = {k: os.environ.get(k) for k in env or {}}
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    sys.stdout, sys.stderr, sys.stdin = wrappers
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved_streams
        for wrapper in wrappers:
            wrapper.flush()
            wrapper.detach()  # keep the byte buffers open for reading
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))


def run_subprocess(
    *args: str, stdin: bytes | str = b"", env: dict[str, str] | None = None, timeout: float = 120
) -> Run:
    """`python -m attnviz ARGS` in a new process (for signals, imports and real pipes)."""
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "attnviz", *args],
        input=data,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME.txt byte for byte; UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"
