"""The command line's work in its own process, without Prefect.

With no Prefect API configured (no ``PREFECT_API_URL``), a command gains nothing from a
flow run but a temporary API server to start and stop (15 s or more of a one-minute
run). These functions run the same library stages the flows wrap, in the same order and
with the same outcomes: a failed stage does not stop the forecast, the run's stages go
to the ``runs`` table, and an I/O error of the lake is retried as the flows' tasks retry
it. Deployments, workers and any command with an API configured still make real flow
runs (``flows/``).

The work runs in the calling (main) thread, so a signal's exception raised there stops
it where it is.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import Lake, LakeError
from lstm_pipeline.stages import console
from lstm_pipeline.stages.runs import (
    SKIPPED,
    RunReport,
    Stage,
    StageOutcome,
    forecast_result,
    ingest_result,
    monitor_result,
    run_stages,
    train_result,
)

__all__ = ["forecast", "ingest", "monitor", "pipeline", "train"]

log = logging.getLogger(__name__)

Mode = Literal["auto", "retrain", "finetune"]
T = TypeVar("T")
# As the flows' tasks: lake I/O is retried after 5 s, then 30 s; nothing else is.
_RETRY_DELAYS_S = (5.0, 30.0)


def ingest(cfg: PipelineConfig, sources: Sequence[str]) -> dict[str, Any]:
    from lstm_pipeline.lake.sources import resolve_sources
    from lstm_pipeline.stages import steps

    with console.file_progress(len(resolve_sources(sources))):
        return ingest_result(_retry_io(lambda: steps.run_ingest(cfg, sources)))


def monitor(cfg: PipelineConfig) -> dict[str, Any]:
    from lstm_pipeline.stages.monitor import run_monitor

    return monitor_result(_retry_io(lambda: run_monitor(cfg)))


def train(cfg: PipelineConfig, mode: Mode) -> dict[str, Any]:
    """No retry: a rerun would repeat the whole training (MLflow I/O is retried inside)."""
    from lstm_pipeline.stages.training import run_training

    with console.training_progress(cfg.lstm_ensemble) as progress:
        return train_result(run_training(cfg, mode, callbacks=(progress,)))


def forecast(cfg: PipelineConfig) -> dict[str, Any]:
    from lstm_pipeline.stages import steps

    return forecast_result(_retry_io(lambda: steps.run_forecast(cfg)))


def pipeline(cfg: PipelineConfig, sources: Sequence[str], mode: Mode) -> tuple[dict[str, Any], RunReport]:
    """ingest (when there are sources) -> monitor -> train -> forecast; see :func:`runs.run_stages`."""
    stages: list[Stage] = []
    if sources:
        stages.append(("ingest", lambda: ingest(cfg, sources)))
    stages += [("monitor", lambda: monitor(cfg)), ("train", lambda: train(cfg, mode)),
               ("forecast", lambda: forecast(cfg))]
    skipped = () if sources else (StageOutcome("ingest", SKIPPED, "no sources given"),)
    return run_stages(f"local-{uuid.uuid4().hex[:12]}", stages, Lake.from_config(cfg.lake), skipped)


def _retry_io(call: Callable[[], T]) -> T:
    for delay in _RETRY_DELAYS_S:
        try:
            return call()
        except (LakeError, OSError) as exc:
            if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
                raise  # a missing or unreadable file does not mend itself
            log.warning("lake I/O failed (%s): retrying in %.0f s", exc, delay)
            time.sleep(delay)
    return call()
