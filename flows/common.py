"""What every flow shares: resolving its configuration, publishing artifacts, retrying I/O."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.lake.tables import LakeError

__all__ = ["publish_markdown", "publish_table", "resolve_config", "result_of", "retry_on_io"]


def resolve_config(config: PipelineConfig | None, config_file: str | None) -> PipelineConfig:
    """An explicit config wins; otherwise the file (if any) plus the worker's environment."""
    return config if config is not None else load_config(config_file)


def publish_table(key: str, frame: pd.DataFrame, description: str) -> None:
    rows = frame.reset_index().astype(object).where(frame.reset_index().notna(), None)
    create_table_artifact(key=key, table=rows.to_dict(orient="records"), description=description)


def publish_markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=text, description=description)


def result_of(state: Any) -> dict[str, Any]:
    """A subflow's result from its final state; raises its error when it did not complete."""
    if state.is_completed():
        return dict(state.result())
    error = state.result(raise_on_failure=False) if state.is_failed() else None
    if isinstance(error, BaseException):
        raise error
    raise RuntimeError(state.message or state.name)


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
