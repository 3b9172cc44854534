"""What a person at a terminal sees while the pipeline works: progress, not log lines.

On a terminal (stderr is a TTY), long work shows ``rich`` progress bars on stderr:
training (one bar per member and fit, with the epoch and the loss) and the ingest of
several files. Elsewhere (CI, a worker, a pipe) there are no bars: training says one
plain INFO line per finished fit, and the ingest its usual log lines.

The command line opens these around its work; :func:`epoch_callbacks` hands the open
training progress to the code that calls ``run_training`` (the train flow), so that a
flow run started from a terminal shows it and one on a worker does not.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lstm_pipeline.model.train import EpochLog

__all__ = ["configure_logging", "epoch_callbacks", "file_progress", "is_terminal", "training_progress"]

log = logging.getLogger(__name__)

EpochCallback = Callable[["EpochLog"], None]
_active: ContextVar[tuple[EpochCallback, ...]] = ContextVar("epoch_callbacks", default=())


def is_terminal() -> bool:
    """Whether stderr is a terminal a person reads (not a pipe, a file or ``TERM=dumb``)."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


def configure_logging(log_file: Path, verbose: bool) -> None:
    """The log file gets everything (the pipeline's DEBUG lines too). The console (stderr)
    gets warnings and errors without tracebacks, and off a terminal the training's
    per-fit lines; with ``verbose``, every INFO line, Prefect's own, and tracebacks.

    A record logged with ``extra={"console": False}`` goes to the file only: the command
    says it once itself.
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    logging.getLogger("lstm_pipeline").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(log_file, maxBytes=10_000_000, backupCount=3)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(to_file)
    except OSError:
        pass  # no log file: the console still says what failed
    terminal = _StderrHandler()
    terminal.setFormatter(_Console("%(asctime)s %(levelname)s %(name)s: %(message)s", verbose))
    terminal.addFilter(lambda record: _for_console(record, verbose))
    root.addHandler(terminal)
    for chatty in ("httpx", "alembic", "mlflow.store", "botocore", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _for_console(record: logging.LogRecord, verbose: bool) -> bool:
    if not getattr(record, "console", True):
        return False
    if verbose:
        return record.levelno >= logging.INFO
    if record.name.startswith("prefect") or record.name == "py.warnings":
        return False  # a failure Prefect logs is reported once, by the command
    return record.levelno >= logging.WARNING or (record.name == __name__ and record.levelno >= logging.INFO)


def epoch_callbacks() -> tuple[EpochCallback, ...]:
    """The callbacks of the :func:`training_progress` open in this context (none on a worker)."""
    return _active.get()


@contextmanager
def training_progress(members: int, bars: bool | None = None) -> Iterator[EpochCallback]:
    """A callback for every member's every epoch: bars on a terminal, else a line per fit.

    ``members``: the ensemble's size, for "member 2/3". ``bars``: None decides by
    :func:`is_terminal`.
    """
    show = _TrainingBars(members) if (is_terminal() if bars is None else bars) else _TrainingLines(members)
    token = _active.set((show,))
    try:
        with show:
            yield show
    finally:
        _active.reset(token)


@contextmanager
def file_progress(total: int, bars: bool | None = None) -> Iterator[None]:
    """A bar over ``total`` source files while they are read, on a terminal and for 2+ files.

    It advances on each file the ingest reads or skips as a duplicate (its log records).
    """
    if total < 2 or not (is_terminal() if bars is None else bars):
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                        TimeElapsedColumn(), transient=True, console=_stderr_console())
    task = progress.add_task("ingest", total=total)
    counter = _FileCounter(lambda: progress.advance(task))
    sources_log = logging.getLogger("lstm_pipeline.lake.sources")
    level = sources_log.level
    sources_log.setLevel(min(sources_log.getEffectiveLevel(), logging.INFO))  # the records it counts
    sources_log.addHandler(counter)
    try:
        with progress:
            yield
    finally:
        sources_log.removeHandler(counter)
        sources_log.setLevel(level)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


class _FileCounter(logging.Handler):
    """Counts the ingest's per-file records ("read N rows", "duplicate ... skipped")."""

    def __init__(self, advance: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self._advance = advance

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("%s: read") or "duplicate" in str(record.msg):
            self._advance()


class _TrainingBars:
    """One transient bar per (member, fit); a fit's bar ends at its last epoch (early stop)."""

    def __init__(self, members: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.members = members
        self.progress = Progress(
            TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=_stderr_console(), transient=True,
        )
        self.current: tuple[int, str] | None = None
        self.task: Any = None

    def __enter__(self) -> _TrainingBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, epoch: EpochLog) -> None:
        key = (epoch.member, epoch.fit)
        if key != self.current:
            self._close()
            self.current = key
            self.task = self.progress.add_task(
                f"member {epoch.member + 1}/{self.members} {epoch.fit}", total=epoch.max_epochs or None, loss="-")
        loss = epoch.val_loss if epoch.fit == "evaluation" else epoch.train_loss
        self.progress.update(self.task, completed=epoch.epoch, loss=f"{loss:.4f}")

    def _close(self) -> None:
        if self.task is not None:  # stopped early: the bar is full at the epoch it stopped
            done = self.progress.tasks[-1].completed
            self.progress.update(self.task, total=done, completed=done)


class _TrainingLines:
    """Off a terminal: one INFO line when each fit ends, none per epoch."""

    def __init__(self, members: int) -> None:
        self.members = members
        self.last: EpochLog | None = None

    def __enter__(self) -> _TrainingLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._report()

    def __call__(self, epoch: EpochLog) -> None:
        if self.last is not None and (self.last.member, self.last.fit) != (epoch.member, epoch.fit):
            self._report()
        self.last = epoch
        if epoch.max_epochs and epoch.epoch >= epoch.max_epochs:  # ran its course: say so now
            self._report()

    def _report(self) -> None:
        if self.last is not None:
            e = self.last
            scored = f", validation loss {e.val_loss:.4f}" if e.fit == "evaluation" else ""
            log.info("member %d/%d %s: %d epoch%s, train loss %.4f%s",
                     e.member + 1, self.members, e.fit, e.epoch, "" if e.epoch == 1 else "s", e.train_loss, scored)
        self.last = None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a test runner may swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Console(logging.Formatter):
    """Log lines for the terminal: no tracebacks unless ``--verbose`` (the log file has them)."""

    def __init__(self, fmt: str, verbose: bool) -> None:
        super().__init__(fmt)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose or not (record.exc_info or record.exc_text):
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
