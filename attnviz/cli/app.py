"""The Typer app: commands registered here, global options, and the one place where
outcomes become exit statuses (errors.ExitStatus). SIGINT, SIGTERM and SIGHUP wind a
command down (attnviz.stopping) and exit with 128 + the signal's number.

Command modules define plain functions and never import this module, so the
imports run one way: app → commands → options. A command's module is imported only
when that command runs (or its --help is asked for): the root's --help lists the
summaries below and imports none of them.
`--debug` (or ATTNVIZ_DEBUG=1) lets the traceback through.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import signal
import sys
from typing import Annotated, TextIO, cast

import typer

from .. import __version__, stopping
from ..errors import AttnvizError, ExitStatus
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

# name → the first line of its function's docstring (tests/test_golden_cli.py checks they agree)
COMMANDS = {
    "show": "Show attention weights: the last layer at a glance, every head as heat tables, or data for pipelines.",
    "render": "Draw a saved result again with any view and format, without loading a model.",
    "export": "Draw attention heatmaps (PNG, SVG, PDF) for sentences or a whole file, with a manifest.",
    "heads": "Measure every head (entropy, distance, sinks, previous-token, induction …) and name its role.",
    "explain": "Walk one attention layer step by step: X, Q/K/V, head split, scores, √d_k, mask, softmax, "
    "weighted sum, output.",
    "tokens": "Print the tokens the model sees, with their indices.",
    "info": "Family, stacks, layers, heads and maximum length of a model.",
}


def load_command(name: str) -> typer.core.TyperCommand:
    """The click command of `name`, built from its module (imported now)."""
    module = importlib.import_module(f"{__package__}.{name}")
    info = typer.models.CommandInfo(
        name=name, cls=Command, callback=getattr(module, name), epilog=module.EXAMPLES, options_metavar="[OPTIONS]"
    )
    command = typer.main.get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode=None)
    return cast(typer.core.TyperCommand, command)


app = typer.Typer(
    name="attnviz",
    help="See transformer attention: heat tables in the terminal, heatmaps on disk, data for pipelines.",
    cls=Group.lazy(COMMANDS, load_command),
    epilog=EXAMPLES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


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


class _ClosedStdout(io.TextIOBase):
    """Standard output of a process started without one (`>&-`): writing to it is writing to a
    reader that went away, a quiet stop like `| head`. Its number holds /dev/null."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "standard output is closed")

    def fileno(self) -> int:
        return 1

    @property
    def buffer(self) -> _ClosedStdout:  # binary formats (npz) write here: the same quiet stop
        return self


def _closed_streams() -> None:
    """/dev/null under each standard stream the process was started without, so no file the run
    opens takes its number (drawing workers inherit 0-2: a pipe there became their stdout, and
    the export hung). stdin stays None (reading it is an error that says so), stdout reads as a
    reader gone away, talk to a closed stderr goes nowhere."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if fd == 1:
                sys.stdout = cast(TextIO, _ClosedStdout())
            elif fd == 2:
                sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the process)


def _tell_stop(signum: int) -> None:
    """The last line of a stopped run; after SIGHUP the terminal may be gone, and that changes nothing."""
    with contextlib.suppress(Exception):
        name = signal.Signals(signum).name
        sys.stderr.write("interrupted\n" if signum == signal.SIGINT else f"stopped by {name}\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map every outcome to an exit status."""
    _debug["on"] = _debug_env()  # per call: --debug must not stick to later calls
    _closed_streams()
    with stopping.catching(final=True):  # from here on a stop signal winds the command down
        try:
            code = _run(argv)
        except BaseException:
            if stopping.caught() is None:
                raise
            code = ExitStatus.INTERRUPTED  # an error while winding down (a hung-up terminal) changes nothing
        signum = stopping.caught()
        if signum is None and code == ExitStatus.INTERRUPTED:
            signum = signal.SIGINT  # a KeyboardInterrupt raised without the signal
        if signum is not None:
            code = 128 + signum
            _tell_stop(signum)
        sys.exit(int(code))


def _out_of_memory(exc: Exception) -> bool:
    """An allocation that failed: Python's MemoryError, numpy's (a subclass), torch's CPU allocator
    (a RuntimeError that says so) and its CUDA OutOfMemoryError."""
    text = str(exc)
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or (isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text))
    )


def _run(argv: list[str] | None) -> int:
    """Run the command; every outcome as an exit status."""
    command = typer.main.get_command(app)
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
        elif _out_of_memory(exc) and not _debug["on"]:
            say("error", f"out of memory ({type(exc).__name__}): the input or the model is too big for this machine")
            say("hint", "use a shorter input, fewer layers or a smaller model")
            code = ExitStatus.ERROR
        else:
            # a bug, not bad input: still one line, the traceback behind --debug
            if _debug["on"]:
                raise
            say("error", f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            say("hint", "run again with --debug for the traceback, and please report it")
            code = ExitStatus.ERROR
    return code  # 130 also when typer turned Ctrl-C into a returned 130
