"""The scheduled pipeline: ingest -> train (by policy) -> forecast, as subflows."""

from __future__ import annotations

from prefect import flow

from flows.common import resolve_config
from flows.forecast import forecast_flow
from flows.ingest import ingest_flow
from flows.train import Mode, train_flow
from lstm_pipeline.config import PipelineConfig


@flow(name="pipeline", timeout_seconds=8 * 3600)
def pipeline_flow(
    sources: list[str] | None = None,
    mode: Mode = "auto",
    config: PipelineConfig | None = None,
    config_file: str | None = None,
) -> dict[str, object]:
    cfg = resolve_config(config, config_file)
    ingested = ingest_flow(sources, config=cfg) if sources else None
    trained = train_flow(mode, config=cfg)
    forecast = forecast_flow(config=cfg)
    return {"ingest": ingested, "train": trained, "forecast": forecast}
