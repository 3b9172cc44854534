"""What each pipeline run did, stage by stage, kept in the lake's ``runs`` table.

A scheduled run must deliver the day's forecasts even when an earlier stage fails, and
say what failed. :func:`run_stages` runs the stages in turn, whoever executes them (the
Prefect pipeline flow, or the command line in its own process), builds a
:class:`RunReport` from their outcomes and appends it to ``runs`` (one row per stage);
the caller ends Failed if any stage failed, after the forecast stage has run. A run
stopped by a signal (``KeyboardInterrupt`` or :class:`~lstm_pipeline.errors.Interrupted`)
is recorded with its stage ``interrupted`` before the signal's exception goes on.
``lstm-pipeline status`` reads the last failure or interruption from here.

The ``*_result`` functions turn each stage's outcome into the plain dict that flows
return and the command line prints (a ``summary`` entry holds its lines).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from lstm_pipeline.errors import Interrupted, PipelineError
from lstm_pipeline.lake.tables import RUNS, Lake

if TYPE_CHECKING:
    from lstm_pipeline.lake.ingest import IngestReport
    from lstm_pipeline.stages.monitor import MonitorOutcome
    from lstm_pipeline.stages.steps import ForecastOutcome
    from lstm_pipeline.stages.training import TrainOutcome

__all__ = [
    "RunReport", "StageOutcome", "failure_line", "forecast_result", "ingest_result", "interruption", "last_failure",
    "monitor_result", "record_run", "run_stages", "train_result",
]

log = logging.getLogger(__name__)

COMPLETED, FAILED, SKIPPED, INTERRUPTED = "completed", "failed", "skipped", "interrupted"
# A stage to run: returns its result dict, or raises.
Stage = tuple[str, Callable[[], dict[str, Any]]]


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    state: str  # completed, failed or skipped
    message: str = ""  # one line: what the stage did, or why it failed


@dataclass(frozen=True)
class RunReport:
    run_id: str
    stages: tuple[StageOutcome, ...]
    started_at: datetime
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def failed(self) -> tuple[StageOutcome, ...]:
        return tuple(s for s in self.stages if s.state == FAILED)

    @property
    def interrupted(self) -> StageOutcome | None:
        return next((s for s in self.stages if s.state == INTERRUPTED), None)

    def stage(self, name: str) -> StageOutcome | None:
        return next((s for s in self.stages if s.stage == name), None)

    def message(self) -> str:
        """One paragraph for the run's final state: what failed, and whether forecasts were written."""
        if not self.failed and not self.interrupted:
            return "every stage completed"
        parts = [f"{s.stage} failed: {s.message}" for s in self.failed]
        if self.interrupted:
            parts.append(f"{self.interrupted.stage} {self.interrupted.message}")
        forecast = self.stage("forecast")
        if forecast is not None and forecast.state == COMPLETED:
            parts.append(f"forecasts were written ({forecast.message})")
        elif forecast is not None and "forecasts were written" not in forecast.message:
            # A forecast stage that failed after forecasting from a fallback says so itself.
            parts.append("NO forecasts were written")
        return "; ".join(parts)

    def markdown(self) -> str:
        lines = ["| stage | state | message |", "|---|---|---|"]
        lines += [f"| {s.stage} | **{s.state}** | {s.message.replace('|', '/')} |" for s in self.stages]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "run_id": self.run_id, "stage": [s.stage for s in self.stages], "state": [s.state for s in self.stages],
            "message": [s.message for s in self.stages],
            "started_at": pd.Timestamp(self.started_at).tz_convert(None),
            "finished_at": pd.Timestamp(self.finished_at).tz_convert(None),
        })


def record_run(lake: Lake, report: RunReport) -> None:
    """Append the report to ``runs``; a lake that cannot take it is logged, not fatal."""
    try:
        lake.upsert(RUNS, report.to_frame(), keys=["run_id", "stage"])
    except Exception as exc:  # noqa: BLE001 - the run's own state still says what happened
        log.warning("could not record run %s in the lake: %s", report.run_id, exc)


def failure_line(exc: BaseException) -> str:
    """A failed stage's one line: an expected failure's own message, else the error's type too."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, PipelineError) and text else f"{type(exc).__name__}: {text}".rstrip(": ")


def run_stages(
    run_id: str, stages: Sequence[Stage], lake: Lake, skipped: Sequence[StageOutcome] = (),
) -> tuple[dict[str, Any], RunReport]:
    """Run ``stages`` in turn; a stage that raises fails alone and the next one still runs.

    Returns each completed stage's result (None for a failed one) and the report, which is
    recorded in ``runs``. A signal's exception (``KeyboardInterrupt``, ``Interrupted``)
    stops the run: the stages so far and the interrupted one are recorded, and it goes on.
    """
    started = datetime.now(UTC)
    results: dict[str, Any] = {}
    outcomes = list(skipped)
    for name, call in stages:
        try:
            results[name] = call()
        except Exception as exc:  # noqa: BLE001 - a failed stage does not stop the forecast
            log.debug("stage %s failed", name, exc_info=exc)
            results[name] = None
            outcomes.append(StageOutcome(name, FAILED, failure_line(exc)))
            continue
        except BaseException as exc:
            exc.stage = name  # type: ignore[attr-defined]  # for the caller's one line
            outcomes.append(StageOutcome(name, INTERRUPTED, interruption(exc)))
            record_run(lake, RunReport(run_id, tuple(outcomes), started))
            raise
        outcomes.append(StageOutcome(name, COMPLETED, _DONE[name](results[name]) if name in _DONE else ""))
    report = RunReport(run_id, tuple(outcomes), started)
    record_run(lake, report)
    return results, report


def interruption(exc: BaseException) -> str:
    """The one line that says which signal stopped a stage."""
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc.signame}: stopped, nothing registered or promoted after the signal"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT: stopped, nothing registered or promoted after the signal"
    return f"interrupted: {type(exc).__name__}"


def ingest_result(report: IngestReport) -> dict[str, Any]:
    return {"rows_read": report.rows_read, "rows_quarantined": report.rows_quarantined,
            "series_version": report.series_version, "summary": report.summary()}


def monitor_result(outcome: MonitorOutcome) -> dict[str, Any]:
    return {"realised": outcome.realised, "new": outcome.inserted, "pending": outcome.pending,
            "table_version": outcome.table_version, "recorded_versions": list(outcome.recorded),
            "summary": outcome.summary()}


def train_result(outcome: TrainOutcome) -> dict[str, Any]:
    return {"action": outcome.decision.action, "reason": outcome.decision.reason, "version": outcome.version,
            "run_id": outcome.run_id, "promoted": bool(outcome.promotion and outcome.promotion.promote),
            "summary": outcome.summary()}


def forecast_result(outcome: ForecastOutcome) -> dict[str, Any]:
    return {"model_name": outcome.model_name, "model_version": outcome.model_version, "rows": outcome.rows,
            "series": outcome.series, "stale": len(outcome.stale), "source": outcome.source,
            "table_version": outcome.table_version, "summary": outcome.summary()}


def _forecast_done(r: Mapping[str, Any]) -> str:
    origin = f"baseline {r['model_version']}" if r["model_name"] == "baseline" else \
        f"{r['model_name']} v{r['model_version']}"
    return f"{r['rows']} rows from {origin}"


# What a completed stage's row in ``runs`` says.
_DONE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "ingest": lambda r: f"{r['rows_read']} rows read",
    "monitor": lambda r: f"{r['realised']} rows realised",
    "train": lambda r: (f"{r['deployment']} {r['state']}" if "deployment" in r else str(r["action"]))
    + (f", v{r['version']} promoted={r['promoted']}" if r.get("version") else ""),
    "forecast": _forecast_done,
}


def last_failure(lake: Lake) -> Mapping[str, object] | None:
    """The most recent failed or interrupted stage in ``runs``: run_id, stage, state, message, finished_at."""
    if not lake.exists(RUNS):
        return None
    runs = lake.read(RUNS)
    failed = runs[runs["state"].isin([FAILED, INTERRUPTED])]
    if failed.empty:
        return None
    row = failed.sort_values("finished_at").iloc[-1]
    return {k: row[k] for k in ("run_id", "stage", "state", "message", "finished_at")}
