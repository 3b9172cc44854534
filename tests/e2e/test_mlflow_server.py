"""The registry against a real ``mlflow server`` over HTTP, as a reviewer would use it.

Three scheduled-style trainings on growing data: the first retrains and is promoted, the
second fine-tunes on new data, the third uses a deliberately worse configuration and is
not promoted. Then the registry is read back through the client and the web UI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.registry.tracking import CHALLENGER, CHAMPION
from lstm_pipeline.stages import steps
from tests.conftest import ROOT, trend_seasonal
from tests.e2e.conftest import free_port, start, stop, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "lstm-forecaster"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1: SQLite backend, local artifact root; stopped by PID."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = start(
        "mlflow server",
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", (home / "artifacts").as_uri()],
        env, home, home / "server.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url)
        yield url
    finally:
        stop(proc)


@dataclass(frozen=True)
class History:
    url: str
    outcomes: tuple[steps.TrainOutcome, ...]
    cfg: PipelineConfig


@pytest.fixture(scope="module")
def three_trainings(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> History:
    tmp = tmp_path_factory.mktemp("registry-e2e")
    cfg = PipelineConfig.model_validate({
        "lake": {"root": str(tmp / "lake")},
        "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "train": {"max_epochs": 15, "patience": 8, "batch_size": 64, "finetune_epochs": 5, "ensemble": 2},
        "backtest": {"n_windows": 2, "step": 12, "statistical_baselines": False},
        # The LSTM served alone: these tests follow an LSTM champion.
        "combine": {"members": ["lstm"]},
        "registry": {"tracking_uri": mlflow_server},
    })
    full = trend_seasonal(n_series=8, n=120)
    ds = pd.to_datetime(full["ds"])
    cut = ds.min() + pd.DateOffset(months=107)

    def ingest(frame: pd.DataFrame, name: str) -> None:
        path = tmp / name
        frame.to_csv(path, index=False)
        steps.run_ingest(cfg, [path])

    ingest(full[ds <= cut], "first.csv")
    first = steps.run_training(cfg)
    ingest(full[ds > cut], "second.csv")
    second = steps.run_training(cfg)
    # A model that can hardly learn: one epoch, a tiny network, a short window.
    worse = cfg.with_overrides({"window": {"lookback": 13}, "model": {"hidden_size": 2}, "train": {"max_epochs": 1}})
    third = steps.run_training(worse)
    return History(mlflow_server, (first, second, third), cfg)


def test_first_retrains_second_finetunes_third_is_not_promoted(three_trainings: History) -> None:
    first, second, third = three_trainings.outcomes
    assert [o.decision.action for o in three_trainings.outcomes] == ["retrain", "finetune", "retrain"]
    assert third.decision.reason == "model configuration changed since the champion was trained"
    assert first.promotion is not None and first.promotion.promote
    assert third.promotion is not None and not third.promotion.promote
    assert [o.version for o in three_trainings.outcomes] == ["1", "2", "3"]
    # The fine-tune took a fraction of the full retrain's optimiser steps.
    assert second.development is not None and first.development is not None
    steps_of = lambda dev: sum(m.steps for m in (*dev.evaluation, *dev.served))
    assert steps_of(second.development) < steps_of(first.development)

    client = MlflowClient(three_trainings.url, three_trainings.url)
    champion = client.get_model_version_by_alias(MODEL, CHAMPION)
    expected_champion = "2" if second.promotion and second.promotion.promote else "1"
    assert champion.version == expected_champion
    assert client.get_model_version_by_alias(MODEL, CHALLENGER).version == "3"


def test_every_version_carries_the_evidence_for_its_decision(three_trainings: History) -> None:
    client = MlflowClient(three_trainings.url, three_trainings.url)
    for outcome in three_trainings.outcomes:
        assert outcome.version is not None and outcome.promotion is not None
        mv = client.get_model_version(MODEL, outcome.version)
        assert mv.tags["promoted"] == str(outcome.promotion.promote).lower()
        assert mv.tags["decision"] == outcome.promotion.reason
        assert mv.tags["training_mode"] == outcome.decision.action
        for tag in ("data_version", "data_hash", "evaluation_end", "served_end", "n_series", "seed", "code_version",
                    "backtest_mase", "coverage_80", "coverage_95", "steps", "retrain_steps", "champion_compared",
                    "best_baseline", "backtest_cutoffs", "retrained_at"):
            assert mv.tags.get(tag), f"version {mv.version} lacks tag {tag}"
        assert mv.tags["n_series"] == "8"
        assert outcome.promotion.reason in mv.description
        assert "| seasonal_naive |" in mv.description and f"| **{mv.tags['served']}** (served) |" in mv.description
        if outcome.version != "1":
            assert "| champion |" in mv.description  # compared with the champion of the day
        artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
        assert {"loss_curve.png", "error_by_step.png", "forecast_vs_actual.png", "backtest_scores.csv"} <= artifacts
        history = client.get_metric_history(mv.run_id, "train_loss")
        assert len(history) == int(mv.tags["epochs"])
        # What was compared, which data each model learnt from, and the served model's end.
        assert f"data up to {mv.tags['evaluation_end']}" in mv.description
        assert f"refit on all data up to {mv.tags['served_end']}" in mv.description
        # The served weights learnt from the newest month of the data at the time.
        assert mv.tags["served_end"] == ("2018-12-01" if outcome.version == "1" else "2019-12-01")
    third = client.get_model_version(MODEL, "3")
    assert "does not beat" in third.tags["decision"]
    assert "NOT promoted" in third.description


def test_champion_loads_and_forecasts_on_cpu_over_http(three_trainings: History) -> None:
    uri = f"models:/{MODEL}@{CHAMPION}"
    mlflow.set_tracking_uri(three_trainings.url)
    mlflow.set_registry_uri(three_trainings.url)
    try:
        model = mlflow.pyfunc.load_model(uri)
        requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    history = trend_seasonal(n_series=3, n=60)
    history["ds"] = pd.to_datetime(history["ds"])
    out = model.predict(history)
    assert out.groupby("unique_id").size().to_dict() == {"s00": 12, "s01": 12, "s02": 12}
    assert (out["yhat_lo_95"] <= out["yhat_lo_80"]).all() and (out["yhat_lo_80"] <= out["yhat"]).all()
    assert (out["yhat"] <= out["yhat_hi_80"]).all() and (out["yhat_hi_80"] <= out["yhat_hi_95"]).all()
    # Explicit requirements, with no local build tag that would pin a CPU-only torch wheel.
    torch_pin = [r for r in requirements if r.startswith("torch==")]
    assert len(torch_pin) == 1 and "+" not in torch_pin[0]


# --- the web UI, as a reviewer sees it ----------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=20000", "--window-size=1400,900",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed on first use (CI machines start without it)."""
    found = shutil.which("chromium")
    if found:
        return found
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], check=True,
                   timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


def _render(chromium: str, url: str, tmp: Path, screenshot: Path | None = None) -> str:
    args = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}"]
    if screenshot is not None:
        subprocess.run([*args, f"--screenshot={screenshot}", url], check=True, timeout=120, capture_output=True)
    done = subprocess.run([*args, "--dump-dom", url], check=True, timeout=120, capture_output=True, text=True)
    return done.stdout


def test_registry_ui_shows_the_champion_alias_and_the_decision(
    three_trainings: History, chromium: str, tmp_path: Path
) -> None:
    client = MlflowClient(three_trainings.url, three_trainings.url)
    champion = client.get_model_version_by_alias(MODEL, CHAMPION)
    ARTIFACTS.mkdir(exist_ok=True)

    models_page = _render(chromium, f"{three_trainings.url}/#/models/{MODEL}", tmp_path,
                          ARTIFACTS / "mlflow-registered-model.png")
    version_page = _render(chromium, f"{three_trainings.url}/#/models/{MODEL}/versions/{champion.version}",
                           tmp_path, ARTIFACTS / "mlflow-champion-version.png")

    # The versions table shows each alias beside its version; the version page its decision.
    assert "champion" in models_page and "challenger" in models_page
    assert "PROMOTED to champion" in version_page and champion.description.splitlines()[0].split("**: ")[1][:20] in version_page
    assert (ARTIFACTS / "mlflow-registered-model.png").stat().st_size > 10_000
