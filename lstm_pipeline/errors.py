"""Expected failures: bad input, missing data, a service or model that is not there.

Each carries one line that names the cause (the file and row, the table, the server),
which the command line prints without a traceback. Any other exception is a bug and
keeps its traceback. :class:`Interrupted` is not a failure but a stop: the command line
raises it for SIGTERM (SIGINT raises ``KeyboardInterrupt``) in the thread doing the work.
"""

from __future__ import annotations

import signal

__all__ = ["ConfigError", "Interrupted", "ModelLoadError", "NotEnoughData", "PipelineError"]


class PipelineError(Exception):
    """An expected failure whose message says what went wrong and where."""


class NotEnoughData(PipelineError, ValueError):
    """The lake (or the part of it a step may use) holds too little data for the step."""


class ModelLoadError(PipelineError):
    """A model version exists but could not be loaded completely (missing or corrupt artifact)."""


class ConfigError(PipelineError, ValueError):
    """A configuration file or value that cannot be used."""


class Interrupted(BaseException):
    """A termination signal (SIGTERM, SIGHUP) arrived: stop the work, register nothing more.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` blocks
    (retries, a failed stage that lets the next one run) let it through.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.signame = signal.Signals(signum).name

    def __str__(self) -> str:
        return f"interrupted by {self.signame}"
