"""Monitor flow: stored forecasts scored against actuals that have arrived since."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import publish_markdown, publish_table, resolve_config, retry_on_io
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.stages import monitor
from lstm_pipeline.stages.runs import monitor_result


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def score_realised_forecasts(cfg: PipelineConfig) -> monitor.MonitorOutcome:
    # Safe to retry: keyed merge into `accuracy`, and the registry is only written on change.
    return monitor.run_monitor(cfg)


@flow(name="monitor", timeout_seconds=3600)
def monitor_flow(config: PipelineConfig | None = None, config_file: str | None = None) -> dict[str, object]:
    cfg = resolve_config(config, config_file)
    outcome = score_realised_forecasts(cfg)
    publish_markdown("monitor-summary", f"```\n{outcome.summary()}\n```", "Live accuracy of stored forecasts")
    if not outcome.live.empty:
        publish_table("live-accuracy", outcome.live_table(), "Live error per model version, on realised forecast steps")
    return monitor_result(outcome)
