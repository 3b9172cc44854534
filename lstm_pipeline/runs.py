"""What each pipeline run did, stage by stage, kept in the lake's ``runs`` table.

A scheduled run must deliver the day's forecasts even when an earlier stage fails, and
say what failed. The pipeline flow builds a :class:`RunReport` from its stages' outcomes,
appends it to ``runs`` (one row per stage) and ends Failed if any stage failed, after
the forecast stage has run. ``lstm-pipeline status`` reads the last failure from here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from lstm_pipeline.lake import RUNS, Lake

__all__ = ["RunReport", "StageOutcome", "last_failure", "record_run"]

log = logging.getLogger(__name__)

COMPLETED, FAILED, SKIPPED = "completed", "failed", "skipped"


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

    def stage(self, name: str) -> StageOutcome | None:
        return next((s for s in self.stages if s.stage == name), None)

    def message(self) -> str:
        """One paragraph for the run's final state: what failed, and whether forecasts were written."""
        if not self.failed:
            return "every stage completed"
        parts = [f"{s.stage} failed: {s.message}" for s in self.failed]
        forecast = self.stage("forecast")
        if forecast is not None and forecast.state == COMPLETED:
            parts.append(f"forecasts were written ({forecast.message})")
        elif forecast is not None:
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


def last_failure(lake: Lake) -> Mapping[str, object] | None:
    """The most recent failed stage recorded in ``runs``: run_id, stage, message, finished_at."""
    if not lake.exists(RUNS):
        return None
    runs = lake.read(RUNS)
    failed = runs[runs["state"] == FAILED]
    if failed.empty:
        return None
    row = failed.sort_values("finished_at").iloc[-1]
    return {k: row[k] for k in ("run_id", "stage", "message", "finished_at")}
