"""Signals that stop a command: raised as exceptions where the work runs.

While :func:`raising_signals` is open, SIGINT raises ``KeyboardInterrupt`` and SIGTERM
or SIGHUP raise :class:`~lstm_pipeline.errors.Interrupted` in the main thread, which is
where the command line runs its work (in process, or a Prefect flow run, whose sync
flows and tasks run in the calling thread). Both are ``BaseException``: they pass every
``except Exception`` (a retry, a failed stage that lets the next one run) and reach the
training's ``except BaseException``, which closes its MLflow run as failed, so nothing is
registered or promoted after the signal.

The handlers are installed explicitly, so a process started with SIGINT ignored (a
background job of a shell script, which is why a SIGINT to the CLI alone used to be
ignored) still stops on it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lstm_pipeline.errors import Interrupted

__all__ = ["SIGNALS", "exit_code", "raising_signals"]

# SIGHUP (the terminal closed) exists on POSIX only.
SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextmanager
def raising_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise in the main thread while open; the previous
    handlers come back on exit. From another thread (handlers can only be set from the
    main one) it changes nothing. :func:`ignoring_signals` inside it protects a last
    write from a second signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, signal.default_int_handler if s == signal.SIGINT else _raise_interrupted)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def ignoring_signals() -> None:
    """From now until :func:`raising_signals` closes: a second signal must not break the
    record of the first being written."""
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def exit_code(exc: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process a signal stopped: 130, 143."""
    return 128 + int(exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)
