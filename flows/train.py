"""Train flow: the policy decides, then evaluate, refit, register and gate."""

from __future__ import annotations

from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import publish_markdown, publish_table, resolve_config
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.stages import console
from lstm_pipeline.stages.runs import train_result
from lstm_pipeline.stages.training import TrainOutcome, run_training

Mode = Literal["auto", "retrain", "finetune"]


@task(cache_policy=NO_CACHE)
def train_and_gate(cfg: PipelineConfig, mode: Mode) -> TrainOutcome:
    # No task retry: a rerun would repeat the whole training. Its MLflow I/O is retried
    # inside, within registry.max_wait_s. Progress bars when a terminal started the run.
    return run_training(cfg, mode, callbacks=console.epoch_callbacks())


@flow(name="train", timeout_seconds=6 * 3600)
def train_flow(
    mode: Mode = "auto", config: PipelineConfig | None = None, config_file: str | None = None
) -> dict[str, object]:
    cfg = resolve_config(config, config_file)
    outcome = train_and_gate(cfg, mode)
    publish_markdown("training-decision", f"```\n{outcome.summary()}\n```", "Training decision and gate")
    if outcome.comparison is not None:
        publish_table("backtest-metrics", outcome.comparison, "Backtest metrics on identical windows")
    if outcome.run_id and outcome.tracking_uri.startswith("http"):
        create_link_artifact(
            key="mlflow-run", link=f"{outcome.tracking_uri.rstrip('/')}/#/runs/{outcome.run_id}",
            description=f"MLflow run of model version {outcome.version}",
        )
    return train_result(outcome)
