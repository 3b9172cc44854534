"""What every flow shares: resolving its configuration and publishing artifacts."""

from __future__ import annotations

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from lstm_pipeline.config import PipelineConfig, load_config

__all__ = ["publish_markdown", "publish_table", "resolve_config"]


def resolve_config(config: PipelineConfig | None, config_file: str | None) -> PipelineConfig:
    """An explicit config wins; otherwise the file (if any) plus the worker's environment."""
    return config if config is not None else load_config(config_file)


def publish_table(key: str, frame: pd.DataFrame, description: str) -> None:
    rows = frame.reset_index().astype(object).where(frame.reset_index().notna(), None)
    create_table_artifact(key=key, table=rows.to_dict(orient="records"), description=description)


def publish_markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=text, description=description)
