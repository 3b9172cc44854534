"""The scheduled pipeline: ingest -> monitor -> train (by policy) -> forecast, as subflows.

Forecasts come first: a failed ingest, monitor or training does not stop the forecast
stage, which then serves the current champion (or the best baseline). The run ends
**Failed** when any stage failed, with a message naming each failure and saying whether
forecasts were written, so that an alert on failed flow runs fires; the ``pipeline-run``
artifact and the lake's ``runs`` table hold the same report.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from prefect.states import Failed

from flows.common import publish_markdown, resolve_config, result_of
from flows.forecast import forecast_flow
from flows.ingest import ingest_flow
from flows.monitor import monitor_flow
from flows.train import Mode, train_flow
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import Lake
from lstm_pipeline.stages.runs import SKIPPED, Stage, StageOutcome, run_stages


@task(cache_policy=NO_CACHE)
def train_on_work_pool(deployment: str, mode: Mode, cfg: PipelineConfig) -> dict[str, object]:
    """Run the train deployment (e.g. on the ``gpu`` pool) as a child run and wait for it.

    It gets this run's resolved configuration, so both hosts use the same lake, registry
    and model settings whatever their own environment says.
    """
    child = run_deployment(deployment, parameters={"mode": mode, "config": _without_secrets(cfg)})
    assert isinstance(child, FlowRun)  # called from sync code: the run, not a coroutine
    state = child.state
    if state is None or not state.is_completed():
        raise RuntimeError(
            f"training run {child.name!r} of {deployment} ended "
            f"{state.name if state else 'without a state'}: {state.message if state else ''}"
        )
    return {"deployment": deployment, "flow_run": child.name, "flow_run_id": str(child.id), "state": state.name}


def _without_secrets(cfg: PipelineConfig) -> dict[str, object]:
    """The configuration as a flow-run parameter, which Prefect stores: without credentials
    from ``lake.storage_options`` (the worker has its own, in its environment)."""
    dumped = cfg.model_dump(mode="json")
    options = dumped["lake"]["storage_options"]
    dumped["lake"]["storage_options"] = {
        k: v for k, v in options.items() if not any(word in k.upper() for word in ("SECRET", "TOKEN", "PASSWORD", "KEY"))
    }
    return dumped


@flow(name="pipeline", timeout_seconds=8 * 3600)
def pipeline_flow(
    sources: list[str] | None = None,
    mode: Mode = "auto",
    config: PipelineConfig | None = None,
    config_file: str | None = None,
    train_deployment: str | None = None,
) -> Any:
    """``train_deployment`` (e.g. ``train/gpu``): train there instead of in this process."""
    cfg = resolve_config(config, config_file)
    stages: list[Stage] = []
    if sources:
        stages.append(("ingest", lambda: result_of(ingest_flow(sources, config=cfg, return_state=True))))
    # Before training: live errors of earlier forecasts feed the retrain policy.
    stages.append(("monitor", lambda: result_of(monitor_flow(config=cfg, return_state=True))))
    if train_deployment:
        stages.append(("train", lambda: train_on_work_pool(train_deployment, mode, cfg)))
    else:
        stages.append(("train", lambda: result_of(train_flow(mode, config=cfg, return_state=True))))
    stages.append(("forecast", lambda: result_of(forecast_flow(config=cfg, return_state=True))))
    skipped = () if sources else (StageOutcome("ingest", SKIPPED, "no sources given"),)

    results, report = run_stages(str(flow_run.get_id() or "local"), stages, Lake.from_config(cfg.lake), skipped)
    publish_markdown("pipeline-run", f"**{report.message()}**\n\n{report.markdown()}", "What each stage did")
    results["stages"] = {s.stage: {"state": s.state, "message": s.message} for s in report.stages}
    if report.failed:
        return Failed(message=report.message(), data=results)
    return results
