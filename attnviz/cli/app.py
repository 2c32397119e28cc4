"""The Typer app: commands registered here, global options, and the one place where
outcomes become exit statuses (errors.ExitStatus).

Command modules define plain functions and never import this module, so the
imports run one way: app → commands → options.
`--debug` (or ATTNVIZ_DEBUG=1) lets the traceback through.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .. import __version__
from ..errors import AttnvizError, ExitStatus
from . import explain, export, heads, info, render, show, tokens
from .help import Command, Group
from .hints import hint_for
from .options import say

EXAMPLES = """
# the last layer of the classic sentence at a glance
attnviz show "I have a dream"
# heatmaps for a whole file of sentences
attnviz export --input sample_inputs/classic.txt --out figs/
# which heads do what
attnviz heads --input sample_inputs/classic.txt
# the computation, step by step
attnviz explain "I have a dream"
# tab completion for your shell (bash, zsh, fish, PowerShell)
attnviz --install-completion
"""

app = typer.Typer(
    name="attnviz",
    help="See transformer attention: heat tables in the terminal, heatmaps on disk, data for pipelines.",
    cls=Group,
    epilog=EXAMPLES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
for module in (show, render, export, heads, explain, tokens, info):
    app.command(cls=Command, epilog=module.EXAMPLES)(getattr(module, module.__name__.rsplit(".", 1)[-1]))


def _debug_env() -> bool:
    """ATTNVIZ_DEBUG is on for 1, true or yes only: ATTNVIZ_DEBUG=0 means off."""
    return os.environ.get("ATTNVIZ_DEBUG", "").strip().lower() in ("1", "true", "yes")


_debug = {"on": _debug_env()}


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


def _usage(exc: Exception) -> ExitStatus:
    """click's usage errors (typer vendors click) as one `error:` line and a pointer to --help."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    say("error", message.strip().splitlines()[0] if message.strip() else type(exc).__name__)
    ctx = getattr(exc, "ctx", None)
    say("hint", f"see '{ctx.command_path if ctx else 'attnviz'} --help'")
    return ExitStatus.USAGE if getattr(exc, "exit_code", 2) == ExitStatus.USAGE else ExitStatus.ERROR


def _quiet_pipe() -> ExitStatus:
    """The reader went away (`| head`): stop quietly with 0, like other Unix tools."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    return ExitStatus.OK


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map every outcome to an exit status."""
    command = typer.main.get_command(app)
    _debug["on"] = _debug_env()  # per call: --debug must not stick to later calls
    code: int
    try:
        returned = command.main(args=argv, prog_name="attnviz", standalone_mode=False)
        code = returned if isinstance(returned, int) else ExitStatus.OK
    except AttnvizError as exc:
        if _debug["on"]:
            raise
        say("error", exc.message)
        hint = hint_for(exc)
        if hint:
            say("hint", hint)
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = ExitStatus.INTERRUPTED
    except typer.Exit as exc:
        code = exc.exit_code
    except SystemExit as exc:
        if not isinstance(exc.__context__, BrokenPipeError):
            raise
        code = _quiet_pipe()  # typer caught the broken pipe itself and chose exit 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            code = _quiet_pipe()
        else:
            if _debug["on"]:
                raise
            say("error", f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
            code = ExitStatus.ERROR
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors
            code = _usage(exc)
        else:
            # a bug, not bad input: still one line, the traceback behind --debug
            if _debug["on"]:
                raise
            say("error", f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            say("hint", "run again with --debug for the traceback, and please report it")
            code = ExitStatus.ERROR
    if code == ExitStatus.INTERRUPTED:  # Ctrl-C: raised here, or turned by typer into a returned 130
        sys.stderr.write("interrupted\n")
    sys.exit(int(code))
