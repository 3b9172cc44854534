"""Forecast flow: the champion forecasts every series; the vintage is kept in ``forecasts``."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import publish_markdown, resolve_config
from lstm_pipeline import steps
from lstm_pipeline.config import PipelineConfig


@task(retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def forecast_with_champion(cfg: PipelineConfig) -> steps.ForecastOutcome:
    # Safe to retry: the write is a keyed merge, a rerun replaces rather than duplicates.
    return steps.run_forecast(cfg)


@flow(name="forecast", timeout_seconds=3600)
def forecast_flow(config: PipelineConfig | None = None, config_file: str | None = None) -> dict[str, object]:
    cfg = resolve_config(config, config_file)
    outcome = forecast_with_champion(cfg)
    publish_markdown("forecast-summary", f"```\n{outcome.summary()}\n```", "Forecasts written")
    return {"model_version": outcome.model_version, "rows": outcome.rows, "table_version": outcome.table_version}
