"""prefect.yaml deployments run for real: server, work pools, deploy, workers, triggers.

Follows the README's "Deployments and workers" steps against a local ``prefect server``
(fresh SQLite), with the services past one machine: the lake on S3 (moto's server) and an
MLflow server on PostgreSQL with S3 artifacts. Both work pools are created,
``prefect --no-prompt deploy --all`` applies a copy of prefect.yaml from a folder that is
not the checkout, and a process worker serves each pool (the pipeline's training runs as
a child run on the ``gpu`` pool). The workers run in another such folder, on a copy of
the package installed on its own (no checkout, no git), and know only three addresses:
PREFECT_API_URL, MLFLOW_TRACKING_URI and LSTM_PIPELINE_LAKE__ROOT (with the store's
AWS_* variables). Runs get the tiny model through the ``config_file`` parameter.

1. A manual run of ``pipeline/daily`` with parameters ingests 96 months of 8 series,
   trains, promotes and forecasts months 97-108.
2. A scheduled run (``--start-in``) that ingests months 97-108, and an overlapping manual
   trigger: the deployment's concurrency limit of one runs them one after the other.
3. The accuracy table then holds the realised errors of the forecasts from step 1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
)
from prefect.client.schemas.objects import FlowRun, State

from lstm_pipeline import __version__
from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.evaluate.metrics import mase_scale
from lstm_pipeline.lake.tables import ACCURACY, FORECASTS, SERIES, Lake
from lstm_pipeline.registry.tracking import CHAMPION, Registry
from lstm_pipeline.shell.services import ObjectStore, Postgres
from tests.conftest import ROOT, trend_seasonal
from tests.e2e.conftest import (
    PrefectServer,
    ProductionMlflow,
    start_production_mlflow,
    stop,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

N_SERIES, HORIZON = 8, 12
PIPELINE, TRAIN = "pipeline/daily", "train/gpu"
DEPLOYMENTS = {PIPELINE, TRAIN, "ingest/manual", "forecast/manual", "monitor/manual"}
RUN_TIMEOUT_S = 900  # generous: a loaded 2-core machine, a few process start-ups per run
TINY = {
    "window": {"lookback": 24, "horizon": HORIZON},
    "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
    "train": {"max_epochs": 6, "patience": 4, "batch_size": 64, "finetune_epochs": 3, "ensemble": 1},
    "backtest": {"n_windows": 1, "step": 12, "statistical_baselines": False},
    # The LSTM served alone: these tests follow an LSTM champion (the combination: test_forecast_that_ships).
    "combine": {"members": ["lstm"]},
}


@dataclass
class World:
    server: PrefectServer
    client: SyncPrefectClient
    cfg: PipelineConfig  # as the workers resolve it
    lake: Lake
    mlflow: ProductionMlflow
    deploy_dir: Path  # where `prefect deploy` ran: not the checkout
    worker_dir: Path  # where the workers ran: not the checkout
    checkout_lake_before: dict[str, int]
    env: dict[str, str]  # the Prefect client's, plus the three addresses and the store's AWS_*
    data: pd.DataFrame  # all 108 months; the runs see the first 96, then the rest
    manual: FlowRun
    forecasts_after_manual: pd.DataFrame
    scheduled: FlowRun
    overlapping: FlowRun

    def states(self, run: FlowRun) -> list[State]:
        return sorted(self.client.read_flow_run_states(run.id), key=lambda s: s.timestamp)

    def deployment_runs(self, name: str) -> list[FlowRun]:
        deployment = self.client.read_deployment_by_name(name)
        return self.client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )


def _trigger(server: PrefectServer, *extra: str, params: dict[str, object]) -> UUID:
    out = server.cli("deployment", "run", PIPELINE, "--params", json.dumps(params), *extra).stdout
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    assert found, f"no flow run id in the output of `prefect deployment run`:\n{out}"
    return UUID(found.group(1))


def _wait(server: PrefectServer, client: SyncPrefectClient, ids: list[UUID]) -> list[FlowRun]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        runs = [client.read_flow_run(i) for i in ids]
        if all(r.state is not None and r.state.is_final() for r in runs):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"flow runs not finished after {RUN_TIMEOUT_S}s: "
                        f"{[(r.name, r.state.name if r.state else None) for r in runs]}\n{server.report()}")
        time.sleep(2)
    failed = [r for r in runs if not r.state or not r.state.is_completed()]
    if failed:
        pytest.fail("flow runs did not complete: "
                    + "; ".join(f"{r.name}: {r.state.name if r.state else None} {r.state.message if r.state else ''}"
                                for r in failed) + f"\n{server.report()}")
    return runs


def _tree(path: Path) -> dict[str, int]:
    """Every file and folder under ``path`` with its modification time; empty if absent."""
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")} if path.exists() else {}


def _install_package_copy(tmp: Path) -> Path:
    """The package built from a copy of its sources and installed into a folder of its own,
    as a worker host has it after ``pip install``: no checkout, no git. Its dependencies
    are this interpreter's."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("lstm_pipeline", "flows"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(src)],
                   check=True, capture_output=True, timeout=300, cwd=tmp)
    return site


@pytest.fixture(scope="module")
def world(prefect_server: PrefectServer, postgres: Postgres, object_store: ObjectStore,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("deployments")
    server = prefect_server
    mlflow = start_production_mlflow(postgres, object_store, "deployments", tmp)
    lake_root = f"s3://{mlflow.bucket}/lake"
    store_env = object_store.env()
    options = {k: store_env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID",
                                         "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    checkout_lake_before = _tree(ROOT / "data" / "lake")
    config_file = tmp / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY))
    data = trend_seasonal(n_series=N_SERIES, n=108)
    ds = pd.to_datetime(data["ds"])
    months = sorted(ds.unique())
    first, later = tmp / "first.csv", tmp / "later.csv"
    data[ds <= months[95]].to_csv(first, index=False)
    data[ds > months[95]].to_csv(later, index=False)

    site = _install_package_copy(tmp)
    deploy_dir, worker_dir = tmp / "deploy-host", tmp / "worker-host"
    deploy_dir.mkdir()
    worker_dir.mkdir()
    shutil.copy(ROOT / "prefect.yaml", deploy_dir / "prefect.yaml")

    # README, "Deployments and workers", step by step, in a folder that is not the checkout.
    server.cli("work-pool", "create", "cpu", "--type", "process", cwd=deploy_dir)
    server.cli("work-pool", "create", "gpu", "--type", "process", cwd=deploy_dir)
    server.cli("--no-prompt", "deploy", "--all", cwd=deploy_dir,
               extra_env={"PWD": str(deploy_dir), "PYTHONPATH": str(site)})
    addresses = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "LSTM_PIPELINE_LAKE__ROOT": lake_root,
        **store_env,
    }
    worker_env = {
        **addresses,
        "PYTHONPATH": str(site),  # the installed copy, not the checkout
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # default 10: only makes the test wait less
        "PREFECT_LOGGING_EXTRA_LOGGERS": "lstm_pipeline",
    }
    for pool in ("cpu", "gpu"):
        server.worker(pool, worker_env, tmp, cwd=worker_dir)

    with SyncPrefectClient(server.url) as client:
        manual_id = _trigger(server, params={"sources": [str(first)], "mode": "retrain",
                                             "config_file": str(config_file)})
        (manual,) = _wait(server, client, [manual_id])
        lake = Lake(lake_root, options)
        forecasts_after_manual = lake.read(FORECASTS)

        # A scheduled run that brings the next year's actuals, and a manual trigger at once.
        scheduled_id = _trigger(server, "--start-in", "5 seconds",
                                params={"sources": [str(later)], "config_file": str(config_file)})
        overlapping_id = _trigger(server, params={"config_file": str(config_file)})
        scheduled, overlapping = _wait(server, client, [scheduled_id, overlapping_id])

        cfg = load_config(config_file, overrides={"lake": {"root": lake_root, "storage_options": options},
                                                  "registry": {"tracking_uri": mlflow.url}}, environ={})
        try:
            yield World(server, client, cfg, lake, mlflow, deploy_dir, worker_dir, checkout_lake_before,
                        {**server.env, **addresses}, data.assign(ds=ds), manual, forecasts_after_manual,
                        scheduled, overlapping)
        finally:
            stop(mlflow.proc)


def test_prefect_yaml_applies_schedules_pools_and_concurrency(world: World) -> None:
    client = world.client
    names = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in client.read_deployments()}
    assert names == DEPLOYMENTS

    pipeline = client.read_deployment_by_name(PIPELINE)
    assert pipeline.work_pool_name == "cpu"
    (schedule,) = pipeline.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 * * *", "Europe/London")
    assert pipeline.global_concurrency_limit is not None and pipeline.global_concurrency_limit.limit == 1
    assert pipeline.concurrency_options is not None
    assert pipeline.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert pipeline.parameters["train_deployment"] == TRAIN
    assert client.read_deployment_by_name(TRAIN).work_pool_name == "gpu"
    # The code comes from the installed package: no pull step, module-path entrypoints.
    for deployment in client.read_deployments():
        assert deployment.pull_steps == []
        assert deployment.entrypoint is not None and deployment.entrypoint.startswith("flows.")
        assert ":" not in deployment.entrypoint and ".py" not in deployment.entrypoint
    assert pipeline.entrypoint == "flows.pipeline.pipeline_flow"
    # The landing folder is data, resolved when deploying: the deploying folder's data/incoming.
    assert pipeline.parameters["sources"] == [f"{world.deploy_dir}/data/incoming/{g}"
                                              for g in ("*.csv", "*.csv.gz", "*.parquet")]


def test_workers_outside_the_checkout_reach_the_lake_and_mlflow_only_through_their_addresses(
    world: World,
) -> None:
    # The runs wrote to the S3 lake and the MLflow server, and nothing of theirs is local.
    assert world.lake.version(SERIES) is not None and len(world.lake.read(FORECASTS)) > 0
    assert _tree(ROOT / "data" / "lake") == world.checkout_lake_before
    assert _tree(world.worker_dir) == {}  # each run had a fresh temporary folder
    assert not (world.deploy_dir / "mlflow.db").exists() and not (world.deploy_dir / "data").exists()
    registry = Registry(world.cfg.registry, world.cfg.lake.root)
    assert registry.uri == world.mlflow.url
    versions = registry.client.search_model_versions(f"name='{registry.name}'")
    assert versions
    # The code that ran was the installed copy: it is not a git checkout, so the version
    # carries no commit.
    assert {v.tags["code_version"] for v in versions} == {__version__}


def test_the_server_schedules_the_cron_at_six_in_london(world: World) -> None:
    deployment = world.client.read_deployment_by_name(PIPELINE)
    deadline = time.monotonic() + 120  # the scheduler service runs every few seconds
    upcoming: list[FlowRun] = []
    while not upcoming and time.monotonic() < deadline:
        upcoming = [r for r in world.client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type={"any_": ["SCHEDULED"]})),
        ) if r.auto_scheduled]
        if not upcoming:
            time.sleep(2)
    assert upcoming, f"the server created no run from the cron schedule\n{world.server.report()}"
    local = {r.expected_start_time.astimezone(ZoneInfo("Europe/London")) for r in upcoming if r.expected_start_time}
    assert local and all((t.hour, t.minute) == (6, 0) for t in local), sorted(local)


def test_a_manual_run_with_parameters_forecasts_every_series(world: World) -> None:
    forecasts = world.forecasts_after_manual
    assert world.manual.parameters["mode"] == "retrain"
    assert forecasts.groupby("unique_id").size().to_dict() == {f"s{i:02d}": HORIZON for i in range(N_SERIES)}
    months = sorted(world.data["ds"].unique())
    assert set(forecasts["cutoff"]) == {months[95]}
    assert set(forecasts["model_version"]) == {"1"}


def test_training_ran_on_the_gpu_pool_as_a_child_of_each_pipeline_run(world: World) -> None:
    train_runs = world.deployment_runs(TRAIN)
    pipeline_runs = {r.id for r in world.deployment_runs(PIPELINE) if r.state and r.state.is_final()}

    assert len(pipeline_runs) == 3
    assert len(train_runs) == 3  # skipping is the train flow's own decision: it always runs
    assert all(r.work_pool_name == "gpu" and r.state is not None and r.state.is_completed() for r in train_runs)
    parents = {world.client.read_task_run(r.parent_task_run_id).flow_run_id for r in train_runs
               if r.parent_task_run_id}
    assert parents == pipeline_runs


def test_mlflow_holds_the_training_runs_and_model_versions(world: World) -> None:
    registry = Registry(world.cfg.registry, world.cfg.lake.root)
    runs = {r.info.run_id: r for r in registry.client.search_runs([registry.experiment_id])}
    versions = sorted(registry.client.search_model_versions(f"name='{registry.name}'"), key=lambda v: int(v.version))

    # One run and one version per training: the manual run retrained on 96 months; the
    # scheduled run brought new data and trained on it (the third run trains again only
    # if that candidate was not promoted, since the champion then predates the new data).
    assert len(runs) == len(versions) >= 2
    assert all(v.run_id in runs for v in versions)
    assert all(r.info.status == "FINISHED" and "backtest_mase" in r.data.metrics for r in runs.values())
    assert versions[0].tags["training_mode"] == "retrain"
    newest_data = str(world.lake.version("series"))
    assert {v.tags["data_version"] for v in versions[1:]} == {newest_data}
    champion = registry.version(CHAMPION)
    assert champion is not None and "PROMOTED" in champion.description


def test_a_scheduled_run_and_an_overlapping_trigger_never_run_at_once(world: World) -> None:
    scheduled_states = world.states(world.scheduled)
    assert scheduled_states[0].name == "Scheduled"
    assert world.scheduled.expected_start_time is not None and world.scheduled.created is not None
    assert world.scheduled.expected_start_time > world.scheduled.created  # scheduled for later

    first, second = sorted([world.scheduled, world.overlapping], key=lambda r: r.start_time or 0)
    assert first.end_time is not None and second.start_time is not None
    assert first.end_time <= second.start_time, "the two runs overlapped"
    assert "AwaitingConcurrencySlot" in [s.name for s in world.states(second)], (
        [s.name for s in world.states(second)]
    )


def test_accuracy_holds_the_realised_errors_of_the_earlier_forecasts(world: World) -> None:
    accuracy = world.lake.read(ACCURACY)
    earlier = world.forecasts_after_manual.merge(world.data[["unique_id", "ds", "y"]], on=["unique_id", "ds"])
    got = accuracy.merge(earlier[["unique_id", "cutoff", "ds", "model_version", "yhat", "y"]],
                         on=["unique_id", "cutoff", "ds", "model_version"], suffixes=("", "_expected"))

    # Every forecast of the manual run has its actual now, and only those are scored.
    assert len(accuracy) == len(got) == N_SERIES * HORIZON
    np.testing.assert_array_equal(got["y"], got["y_expected"])
    np.testing.assert_array_equal(got["abs_error"], (got["y_expected"] - got["yhat_expected"]).abs())
    scales = {uid: mase_scale(g[g["ds"] <= g["ds"].sort_values().iloc[95]]["y"].to_numpy(), 12)
              for uid, g in world.data.groupby("unique_id")}
    np.testing.assert_allclose(got["scaled_error"], got["abs_error"] / got["unique_id"].map(scales), rtol=1e-12)

    # The live MASE reached the version that made the forecasts.
    registry = Registry(world.cfg.registry, world.cfg.lake.root)
    v1 = registry.client.get_model_version(registry.name, "1")
    expected = float((got.groupby("unique_id")["scaled_error"].mean()).mean())
    assert float(v1.tags["live_mase"]) == pytest.approx(expected, rel=1e-5)
    assert v1.tags["live_n_points"] == str(N_SERIES * HORIZON)


def test_flow_runs_publish_their_summaries_as_artifacts(world: World) -> None:
    keys = {a.key for a in world.client.read_artifacts() if a.key}

    assert {"ingest-summary", "monitor-summary", "live-accuracy", "training-decision", "backtest-metrics",
            "forecast-summary"} <= keys
    # One per monitor run that found realised forecasts: version 1's, scored by the scheduled run.
    tables = [a for a in world.client.read_artifacts() if a.key == "live-accuracy"]
    assert tables and all(a.type == "table" and '"model_version": "1"' in str(a.data) for a in tables)


def test_the_archive_keeps_both_vintages_and_status_reports_them(world: World) -> None:
    forecasts = world.lake.read(FORECASTS)
    assert forecasts["cutoff"].nunique() == 2
    assert not forecasts.duplicated(["unique_id", "cutoff", "ds", "model_version"]).any()

    exe = Path(sys.executable).parent / "lstm-pipeline"
    shown = subprocess.run([str(exe), "status", "--root", world.cfg.lake.root], capture_output=True, text=True,
                           env=world.env, cwd=world.worker_dir.parent, check=False, timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    months = sorted(world.data["ds"].unique())
    assert f"latest cutoff {months[107].date()} (2 cutoffs archived)" in shown.stdout
    accuracy_line = next(line for line in shown.stdout.splitlines() if line.strip().startswith("accuracy "))
    assert accuracy_line.split()[2] == str(N_SERIES * HORIZON)
