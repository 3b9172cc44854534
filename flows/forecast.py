"""Forecast flow: the champion (or the best baseline) forecasts every current series."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import publish_markdown, resolve_config, retry_on_io
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.stages import steps
from lstm_pipeline.stages.runs import forecast_result


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def forecast_with_champion(cfg: PipelineConfig) -> steps.ForecastOutcome:
    # Safe to retry: the write is a keyed merge, a rerun replaces rather than duplicates.
    return steps.run_forecast(cfg)


@flow(name="forecast", timeout_seconds=3600)
def forecast_flow(config: PipelineConfig | None = None, config_file: str | None = None) -> dict[str, object]:
    cfg = resolve_config(config, config_file)
    outcome = forecast_with_champion(cfg)
    publish_markdown("forecast-summary", f"```\n{outcome.summary()}\n```", "Forecasts written")
    return forecast_result(outcome)
