"""What every flow shares: resolving its configuration, publishing artifacts, reading states."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.errors import PipelineError
from lstm_pipeline.lake import LakeError
from lstm_pipeline.runs import COMPLETED, FAILED, StageOutcome

__all__ = ["outcome_of", "publish_markdown", "publish_table", "resolve_config", "retry_on_io"]


def resolve_config(config: PipelineConfig | None, config_file: str | None) -> PipelineConfig:
    """An explicit config wins; otherwise the file (if any) plus the worker's environment."""
    return config if config is not None else load_config(config_file)


def publish_table(key: str, frame: pd.DataFrame, description: str) -> None:
    rows = frame.reset_index().astype(object).where(frame.reset_index().notna(), None)
    create_table_artifact(key=key, table=rows.to_dict(orient="records"), description=description)


def publish_markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=text, description=description)


def outcome_of(stage: str, state: Any, done: str = "") -> StageOutcome:
    """A stage's outcome from its final Prefect state, with a one-line reason when it failed."""
    if state.is_completed():
        return StageOutcome(stage, COMPLETED, done)
    error = state.result(raise_on_failure=False) if state.is_failed() else None
    if isinstance(error, PipelineError):
        why = str(error).strip().splitlines()[0]
    elif isinstance(error, BaseException):
        why = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    else:
        why = state.message or state.name
    return StageOutcome(stage, FAILED, why)


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a task only when the lake's I/O failed (a store that hiccupped, a commit race
    that outlasted the lake's own retries). Bad input, missing data or a broken model do
    not mend themselves, and MLflow has had its whole waiting budget already."""
    try:
        state.result()
    except (LakeError, OSError):
        return True
    except Exception:  # noqa: BLE001 - anything else: no retry
        return False
    return False
