"""Expected failures: bad input, missing data, a service or model that is not there.

Each carries one line that names the cause (the file and row, the table, the server),
which the command line prints without a traceback. Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ModelLoadError", "NotEnoughData", "PipelineError"]


class PipelineError(Exception):
    """An expected failure whose message says what went wrong and where."""


class NotEnoughData(PipelineError, ValueError):
    """The lake (or the part of it a step may use) holds too little data for the step."""


class ModelLoadError(PipelineError):
    """A model version exists but could not be loaded completely (missing or corrupt artifact)."""


class ConfigError(PipelineError, ValueError):
    """A configuration file or value that cannot be used."""
