"""The scheduled pipeline: ingest -> monitor -> train (by policy) -> forecast, as subflows."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from flows.common import resolve_config
from flows.forecast import forecast_flow
from flows.ingest import ingest_flow
from flows.monitor import monitor_flow
from flows.train import Mode, train_flow
from lstm_pipeline.config import PipelineConfig


@task(cache_policy=NO_CACHE)
def train_on_work_pool(deployment: str, mode: Mode, cfg: PipelineConfig) -> dict[str, object]:
    """Run the train deployment (e.g. on the ``gpu`` pool) as a child run and wait for it.

    It gets this run's resolved configuration, so both hosts use the same lake, registry
    and model settings whatever their own environment says.
    """
    child = run_deployment(deployment, parameters={"mode": mode, "config": cfg.model_dump(mode="json")})
    assert isinstance(child, FlowRun)  # called from sync code: the run, not a coroutine
    state = child.state
    if state is None or not state.is_completed():
        raise RuntimeError(
            f"training run {child.name!r} of {deployment} ended "
            f"{state.name if state else 'without a state'}: {state.message if state else ''}"
        )
    return {"deployment": deployment, "flow_run": child.name, "flow_run_id": str(child.id), "state": state.name}


@flow(name="pipeline", timeout_seconds=8 * 3600)
def pipeline_flow(
    sources: list[str] | None = None,
    mode: Mode = "auto",
    config: PipelineConfig | None = None,
    config_file: str | None = None,
    train_deployment: str | None = None,
) -> dict[str, object]:
    """``train_deployment`` (e.g. ``train/gpu``): train there instead of in this process."""
    cfg = resolve_config(config, config_file)
    ingested = ingest_flow(sources, config=cfg) if sources else None
    # Before training: live errors of earlier forecasts feed the retrain policy.
    monitored = monitor_flow(config=cfg)
    if train_deployment:
        trained = train_on_work_pool(train_deployment, mode, cfg)
    else:
        trained = train_flow(mode, config=cfg)
    forecast = forecast_flow(config=cfg)
    return {"ingest": ingested, "monitor": monitored, "train": trained, "forecast": forecast}
