"""The registry and the lake as production runs them, for real on 127.0.0.1.

A PostgreSQL cluster, moto's S3-compatible server and ``mlflow server`` with its backend
on PostgreSQL and its artifacts in S3 (proxied: clients need only the server's URL). The
lake is an ``s3://`` root. Through them: a retrain and a fine-tune on growing data, the
aliases, tags and artifacts read back, the MLflow server restarted on the same database,
and a separate CPU-only process that loads ``models:/<name>@champion`` from the server
and forecasts. The database password is in none of the logs, runs or objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from mlflow import MlflowClient

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.lake.tables import FORECASTS, Lake
from lstm_pipeline.shell.services import ObjectStore, Postgres, clean_env
from lstm_pipeline.stages import steps
from tests.conftest import trend_seasonal
from tests.e2e.conftest import ProductionMlflow, start_production_mlflow, stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL, N_SERIES, HORIZON = "lstm-forecaster", 8, 12
CHAMPION, CHALLENGER = "champion", "challenger"
ARTIFACT_FILES = {"loss_curve.png", "error_by_step.png", "forecast_vs_actual.png", "backtest_scores.csv"}

# Runs in a process of its own: CPU only, and only the MLflow server's URL (no AWS_*).
LOAD_AND_FORECAST = """
import json, sys
import mlflow, pandas as pd, torch
history = pd.read_csv(sys.argv[1], parse_dates=["ds"])
model = mlflow.pyfunc.load_model("models:/%s@champion")
out = model.predict(history)
out.to_csv(sys.argv[2], index=False)
print(json.dumps({"cuda": torch.cuda.is_available()}))
""" % MODEL


@dataclass(frozen=True)
class Stack:
    mlflow: ProductionMlflow
    postgres: Postgres
    store: ObjectStore
    cfg: PipelineConfig
    outcomes: tuple[steps.TrainOutcome, ...]
    forecast: steps.ForecastOutcome
    data: pd.DataFrame
    tmp: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.mlflow.url, self.mlflow.url)

    @property
    def password(self) -> str:
        return self.postgres.passfile.read_text().strip().rsplit(":", 1)[1]

    def objects(self) -> dict[str, bytes]:
        """Every object in the stack's bucket: the lake's tables and MLflow's artifacts."""
        env = self.store.env()
        s3 = boto3.client("s3", endpoint_url=self.store.endpoint, region_name=env["AWS_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.mlflow.bucket)
                for o in page.get("Contents", [])]
        return {key: s3.get_object(Bucket=self.mlflow.bucket, Key=key)["Body"].read() for key in keys}


@pytest.fixture(scope="module")
def stack(postgres: Postgres, object_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("production-stack")
    mlflow = start_production_mlflow(postgres, object_store, "production_stack", tmp)
    env = object_store.env()
    cfg = load_config(overrides={
        "lake": {"root": f"s3://{mlflow.bucket}/lake",
                 "storage_options": {k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID",
                                                         "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}},
        "window": {"lookback": 24, "horizon": HORIZON},
        "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "train": {"max_epochs": 15, "patience": 8, "batch_size": 64, "finetune_epochs": 5, "ensemble": 1},
        "backtest": {"n_windows": 1, "step": 12, "statistical_baselines": False},
        # The LSTM served alone: these tests follow an LSTM champion.
        "combine": {"members": ["lstm"]},
        "registry": {"tracking_uri": mlflow.url},
    }, environ={})
    data = trend_seasonal(n_series=N_SERIES, n=120)
    ds = pd.to_datetime(data["ds"])
    cut = ds.min() + pd.DateOffset(months=107)
    try:
        outcomes = []
        for name, part, mode in (("first.csv", data[ds <= cut], "retrain"), ("later.csv", data[ds > cut], "finetune")):
            part.to_csv(tmp / name, index=False)
            steps.run_ingest(cfg, [tmp / name])
            outcomes.append(steps.run_training(cfg, mode))
        forecast = steps.run_forecast(cfg)
        yield Stack(mlflow, postgres, object_store, cfg, tuple(outcomes), forecast, data.assign(ds=ds), tmp)
    finally:
        stop(mlflow.proc)


def test_a_retrain_then_a_finetune_are_registered_with_aliases(stack: Stack) -> None:
    first, second = stack.outcomes
    assert [o.decision.action for o in stack.outcomes] == ["retrain", "finetune"]
    assert [o.version for o in stack.outcomes] == ["1", "2"]
    assert first.promotion is not None and first.promotion.promote
    client = stack.client
    champion = client.get_model_version_by_alias(MODEL, CHAMPION)
    assert champion.version == ("2" if second.promotion and second.promotion.promote else "1")
    assert client.get_model_version_by_alias(MODEL, CHALLENGER).version == "2"
    assert first.development is not None and second.development is not None
    steps_of = lambda dev: sum(m.steps for m in (*dev.evaluation, *dev.served))
    assert steps_of(second.development) < steps_of(first.development)  # the fine-tune is the cheaper path

    # The registry lives in PostgreSQL: its tables hold the model and both versions.
    rows = stack.postgres.psql("SELECT name, version FROM model_versions ORDER BY version;",
                               database=stack.mlflow.database)
    assert rows.split() == [f"{MODEL}|1", f"{MODEL}|2"]


def test_tags_and_artifacts_read_back_through_the_server(stack: Stack) -> None:
    client = stack.client
    objects = stack.objects()
    for outcome in stack.outcomes:
        assert outcome.version is not None and outcome.promotion is not None
        mv = client.get_model_version(MODEL, outcome.version)
        assert mv.tags["training_mode"] == outcome.decision.action
        assert mv.tags["promoted"] == str(outcome.promotion.promote).lower()
        assert mv.tags["n_series"] == str(N_SERIES)
        assert mv.tags["data_version"] == str(stack.outcomes.index(outcome))  # series v0, then v1
        assert outcome.promotion.reason in (mv.description or "")
        listed = {a.path for a in client.list_artifacts(mv.run_id)}
        assert ARTIFACT_FILES <= listed
        # Stored in the S3 bucket, under the server's artifacts destination.
        stored = {key.rsplit("/", 1)[1] for key in objects if key.startswith("mlartifacts/") and mv.run_id in key}
        assert ARTIFACT_FILES <= stored
        assert len(client.get_metric_history(mv.run_id, "train_loss")) == int(mv.tags["epochs"])


def test_forecasts_land_in_the_s3_lake(stack: Stack) -> None:
    lake = Lake.from_config(stack.cfg.lake)
    forecasts = lake.read(FORECASTS)
    assert stack.forecast.rows == N_SERIES * HORIZON
    assert forecasts.groupby("unique_id").size().to_dict() == {f"s{i:02d}": HORIZON for i in range(N_SERIES)}
    champion = stack.client.get_model_version_by_alias(MODEL, CHAMPION)
    assert set(forecasts["model_version"]) == {champion.version}
    assert set(forecasts["cutoff"]) == {stack.data["ds"].max()}


def test_after_a_restart_on_the_same_database_a_cpu_only_process_loads_the_champion(stack: Stack) -> None:
    stack.mlflow.restart()  # a second start on the migrated database
    history = stack.data  # what the forecast step read from the lake
    history.to_csv(stack.tmp / "history.csv", index=False)
    # No AWS_* at all: the artifacts come through the server.
    env = {k: v for k, v in clean_env({"MLFLOW_TRACKING_URI": stack.mlflow.url, "CUDA_VISIBLE_DEVICES": ""}).items()
           if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_FORECAST, str(stack.tmp / "history.csv"), str(stack.tmp / "out.csv")],
        cwd=stack.tmp, env=env, capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"cuda": False}
    out = pd.read_csv(stack.tmp / "out.csv", parse_dates=["ds", "cutoff"])
    assert out.groupby("unique_id").size().to_dict() == {f"s{i:02d}": HORIZON for i in range(N_SERIES)}
    assert (out["yhat_lo_95"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_hi_95"]).all()
    # The same champion, the same numbers as the forecast written to the lake.
    written = Lake.from_config(stack.cfg.lake).read(FORECASTS)
    merged = out.merge(written, on=["unique_id", "ds"], suffixes=("", "_lake"))
    assert len(merged) == N_SERIES * HORIZON
    pd.testing.assert_series_equal(merged["yhat"], merged["yhat_lake"], check_names=False, rtol=1e-5)


def test_the_database_password_is_nowhere(stack: Stack) -> None:
    password = stack.password
    assert len(password) >= 24
    server = stack.mlflow.proc
    places: dict[str, bytes] = {
        "mlflow server log": server.log.read_bytes(),
        "postgres log": (stack.postgres.data_dir.parent / "postgres.log").read_bytes(),
        "mlflow server command line": Path(f"/proc/{server.pid}/cmdline").read_bytes(),
        "mlflow server environment": Path(f"/proc/{server.pid}/environ").read_bytes(),
        **{f"s3://{stack.mlflow.bucket}/{key}": body for key, body in stack.objects().items()},
    }
    client = stack.client
    for outcome in stack.outcomes:
        assert outcome.run_id is not None and outcome.version is not None
        run = client.get_run(outcome.run_id)
        mv = client.get_model_version(MODEL, outcome.version)
        record: dict[str, Any] = {"params": run.data.params, "tags": run.data.tags, "version_tags": mv.tags,
                                  "description": mv.description}
        places[f"run {outcome.run_id}"] = json.dumps(record).encode()
    assert any(key.startswith(f"s3://{stack.mlflow.bucket}/mlartifacts/") for key in places)
    found = [where for where, content in places.items() if password.encode() in content]
    assert found == []
    # The server reaches the database through the passfile, with a URI that holds no password.
    assert f"postgresql://{stack.postgres.role}@" in " ".join(server.argv)
    assert b"PGPASSFILE=" in places["mlflow server environment"]
    assert os.stat(stack.postgres.passfile).st_mode & 0o077 == 0
