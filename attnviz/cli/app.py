"""The Typer app, global options, and the one place where errors become exit codes.

Exit codes: 0 ok, 1 error (AttnvizError), 2 usage, 130 interrupted. `--debug`
(or ATTNVIZ_DEBUG=1) lets the traceback through.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .. import __version__
from ..errors import AttnvizError

app = typer.Typer(
    name="attnviz",
    help="See transformer attention: heat tables in the terminal, heatmaps on disk, data for pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = {"on": bool(os.environ.get("ATTNVIZ_DEBUG"))}


def _show_version(value: bool) -> None:
    if value:
        print(f"attnviz {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
) -> None:
    """See transformer attention: heat tables in the terminal, heatmaps on disk, data for pipelines."""
    _debug["on"] = _debug["on"] or debug


def _say(kind: str, text: str) -> None:
    sys.stderr.write(f"{kind}: {text}\n")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map every outcome to an exit code."""
    from . import commands  # noqa: F401  (registers the commands)

    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="attnviz", standalone_mode=False)
    except AttnvizError as exc:
        if _debug["on"]:
            raise
        _say("error", exc.message)
        if exc.hint:
            _say("hint", exc.hint)
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # the reader went away (`| head`): stop quietly, like other Unix tools
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            code = 0
        else:
            if _debug["on"]:
                raise
            _say("error", f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
            code = 1
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
            exc.show()
            sys.exit(exc.exit_code)
        # a bug, not bad input: still one line, the traceback behind --debug
        if _debug["on"]:
            raise
        _say("error", f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        _say("hint", "run again with --debug for the traceback, and please report it")
        code = 1
    if code == 130:  # Ctrl-C: raised here, or turned by typer into a returned 130
        sys.stderr.write("interrupted\n")
    sys.exit(code if isinstance(code, int) else 0)
