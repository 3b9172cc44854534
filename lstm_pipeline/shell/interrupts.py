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

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_pipeline.errors import Interrupted

if TYPE_CHECKING:
    from lstm_pipeline.config import PipelineConfig

__all__ = [
    "SIGNALS", "cancel_unfinished_promotions", "exit_code", "exit_soon", "ignoring_signals", "raising_signals",
]

log = logging.getLogger(__name__)

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


def cancel_unfinished_promotions(cfg: PipelineConfig, since: datetime, why: str) -> list[str]:
    """Versions registered since ``since`` whose aliases had not moved when the signal
    came (``promotion=pending``) are tagged ``cancelled``: the next run's repair must not
    finish a promotion the operator stopped. Returns their numbers. The registry gets a
    short budget (the operator is waiting); out of reach, it is logged and left.
    """
    from lstm_pipeline.registry.tracking import PROMOTION, Registry, resolve_tracking_uri

    try:
        uri = resolve_tracking_uri(cfg.registry, cfg.lake.root)
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            return []  # no store yet: nothing was registered
        registry = Registry(cfg.registry.model_copy(update={"max_wait_s": min(cfg.registry.max_wait_s, 30.0)}),
                            cfg.lake.root)
        cancelled = []
        for version in registry.versions():
            if version.tags.get(PROMOTION) == "pending" and version.created.timestamp() >= since.timestamp() - 1:
                registry.tag_version(version.version, {PROMOTION: "cancelled", "promotion_cancelled": why})
                cancelled.append(version.version)
    except Exception as exc:  # noqa: BLE001 - the interruption is reported either way
        log.warning("could not check the registry for a promotion the signal interrupted: %s", exc)
        return []
    for version in cancelled:
        log.warning("v%s was registered but not promoted before the signal: its promotion is cancelled", version)
    return cancelled


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def exit_soon(code: int, grace_s: float = 10.0) -> None:
    """End the process with ``code`` after ``grace_s`` seconds if it has not ended by then.

    An interrupted command records what it must and exits; a library thread that the signal
    caught half-started (MLflow's download pool, for one) would otherwise keep the
    interpreter waiting on it at exit. A daemon timer never holds the exit up itself.
    """
    timer = threading.Timer(grace_s, os._exit, args=(code,))
    timer.daemon = True
    timer.start()
