"""Stop signals (SIGINT, SIGTERM, SIGHUP): one exception, once, held where a step must finish.

The first stop signal raises `Stopped` in the main thread; the run winds down (workers
ended, manifest made right) and exits with 128 + the signal's number. Later stop signals
are ignored while it does: a second Ctrl-C used to cut the wind-down in half. Inside
`held()` a signal waits for the block to end, so an image and its manifest line land
together. Signals a program set to its own handler, or to SIG_IGN (nohup, a shell's
background job), are left alone.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
FORCE_SECONDS = 3.0  # a wind-down still going this long after the first signal is stuck: exit at once


class Stopped(KeyboardInterrupt):
    """A stop signal arrived. A KeyboardInterrupt, so code that cleans up after Ctrl-C does so for all three."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    """What the handler knows: the signal being wound down for, and the held blocks open now."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.since = 0.0
        self.depth = 0  # held() blocks open in the main thread
        self.pending = False  # a signal came inside a held block: raise when the outermost ends

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


_state = _State()


def caught() -> int | None:
    """The stop signal this run is winding down for, or None."""
    return _state.signum


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.signum is not None:
        if time.monotonic() - _state.since > FORCE_SECONDS:
            os._exit(128 + _state.signum)  # the wind-down is stuck: workers die with us (die_with_parent)
        return  # winding down already: a second Ctrl-C changes nothing
    _state.signum, _state.since = signum, time.monotonic()
    if _state.depth:
        _state.pending = True
    else:
        raise Stopped(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _at_default(signum: int) -> bool:
    return signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler)


@contextlib.contextmanager
def catching(final: bool = False) -> Iterator[None]:
    """Stop signals raise `Stopped` inside the block (main thread; signals at their defaults only).

    On the way out the previous handlers come back, and a stop by SIGTERM or SIGHUP whose
    default was to die is re-raised as that signal: the process dies of it, after the clean-up.
    `final` (the CLI): the process ends with the block, so after a stop later signals stay
    ignored up to the exit, and a watchdog forces the exit if the wind-down hangs.
    """
    if not _main_thread():
        yield
        return
    previous: dict[int, Handler] = {s: signal.signal(s, _handle) for s in STOP_SIGNALS if _at_default(s)}
    watch = _Watchdog() if final and previous else None
    try:
        yield
    except Stopped as exc:
        if final or exc.signum not in previous:
            raise
        _restore(previous)
        if exc.signum != signal.SIGINT and previous[exc.signum] == signal.SIG_DFL:
            signal.raise_signal(exc.signum)  # die of it, as the signal would have done
        raise
    finally:
        if final and _state.signum is not None:
            # the process exits now; the interpreter's shutdown puts Python handlers back to SIG_DFL,
            # and a second Ctrl-C then killed it by signal: ignore them instead (the watchdog stays)
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
        else:
            if watch is not None:
                watch.close()
            _restore(previous)


def _restore(previous: dict[int, Handler]) -> None:
    for s, handler in previous.items():
        if signal.getsignal(s) is _handle:
            signal.signal(s, handler)
    if previous and not any(signal.getsignal(s) is _handle for s in STOP_SIGNALS):
        _state.reset()  # the outermost catcher is gone: a later run starts fresh


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Stop signals wait until the block ends (then `Stopped` is raised): a step lands whole."""
    if not _main_thread():
        yield
        return
    with catching():
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
            if not _state.depth and _state.pending:
                _state.pending = False
                assert _state.signum is not None
                raise Stopped(_state.signum)


class _Watchdog:
    """Forces the exit when a stop takes longer than FORCE_SECONDS, even while the main thread is
    stuck in C code (where Python handlers cannot run): the C-level handler writes each signal's
    number to a pipe (signal.set_wakeup_fd) that a thread watches."""

    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        os.set_blocking(self.write, False)
        try:
            self.previous: int | None = signal.set_wakeup_fd(self.write, warn_on_full_buffer=False)
        except ValueError:  # not the main thread after all
            self.previous = None
        threading.Thread(target=self._watch, name="attnviz-stop-watchdog", daemon=True).start()

    def _watch(self) -> None:
        first: int | None = None
        deadline = 0.0
        while True:
            wait = None if first is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.read], [], [], wait)
            if not ready and first is not None:
                with contextlib.suppress(OSError):
                    os.write(2, f"stopping took over {FORCE_SECONDS:.0f} s: exiting now\n".encode())
                os._exit(128 + first)
            try:
                data = os.read(self.read, 64)
            except OSError:
                return
            if not data:  # closed: the run ended normally
                os.close(self.read)
                return
            stops = [b for b in data if b in STOP_SIGNALS]
            if stops and first is None:
                first, deadline = stops[0], time.monotonic() + FORCE_SECONDS

    def close(self) -> None:
        if self.previous is not None:
            signal.set_wakeup_fd(self.previous)
        os.close(self.write)


def die_with_parent(parent: int) -> None:
    """Make this (worker) process die when `parent` does, even when it is killed outright.

    Linux: prctl(PR_SET_PDEATHSIG, SIGKILL). It fires when the parent *thread* that started us
    ends: the main thread for a pool's first workers (it lives as long as the process); the
    pool's own thread for a worker it replaced, which ends only when the pool is ended anyway.
    Then getppid() closes the race of a parent that died before the prctl call. Elsewhere a
    thread polls getppid().
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    else:
        threading.Thread(target=_poll_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)  # the parent died before it could be told: nobody waits for this worker


def _poll_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
