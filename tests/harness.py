"""Run the CLI in-process with byte buffers for stdin/stdout/stderr (loaded models stay cached)."""

from __future__ import annotations

import io
import sys

from attnviz.cli import main


def run_inprocess(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, str]:
    """(exit code, stdout bytes, stderr text) of `attnviz ARGV`."""
    out, err = io.BytesIO(), io.BytesIO()
    wrappers = [io.TextIOWrapper(buf, encoding="utf-8", write_through=True) for buf in (out, err, io.BytesIO(stdin))]
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
