"""The forecast that ships, through the user's commands: the gate serves the best of the
combination and its members, the registered model combines them in a separate process,
a diverged LSTM is refused by name while the best forecast without it is served with
intervals, short histories train down to a stated minimum, and covariates go end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lstm_pipeline.config import load_config
from lstm_pipeline.evaluate.procedure import choices, weights_of
from lstm_pipeline.lake.tables import FORECASTS, Lake
from lstm_pipeline.registry.tracking import Registry
from lstm_pipeline.shell.cli import app

pytestmark = pytest.mark.slow

SMALL = {"model": {"hidden_size": 8}, "train": {"max_epochs": 6, "patience": 3}}


def monthly_panel(n_series: int = 12, n: int = 72, end: str = "2020-12-01") -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(n_series):
        ds = pd.date_range(end=end, periods=n, freq="MS")
        t = np.arange(n)
        y = 100 + i * 10 + 0.3 * t + (8 + i) * np.sin(2 * np.pi * ds.month / 12) + rng.normal(0, 2, n)
        frames.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def setup(tmp_path: Path, panel: pd.DataFrame, settings: dict[str, object]) -> tuple[str, Path, CliRunner]:
    source, config = tmp_path / "panel.csv", tmp_path / "config.yaml"
    panel.to_csv(source, index=False)
    config.write_text(yaml.safe_dump(settings))
    root = str(tmp_path / "lake")
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(source), "--root", root, "--config", str(config)])
    assert ingested.exit_code == 0, ingested.output
    return root, config, runner


def latest_version(root: str, config: Path):  # type: ignore[no-untyped-def]
    cfg = load_config(config, overrides={"lake": {"root": root}}, environ={})
    return Registry(cfg.registry, root).versions()[-1], cfg


def test_the_gate_serves_the_best_choice_and_the_registered_model_combines_in_another_process(tmp_path: Path) -> None:
    root, config, runner = setup(tmp_path, monthly_panel(), SMALL)
    trained = runner.invoke(app, ["train", "--mode", "retrain", "--root", root, "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    version, cfg = latest_version(root, config)
    served = version.tags["served"]
    # What is served is the lowest backtest MASE among the combination and each member alone.
    assert served in choices(cfg)
    assert version.tags["members"] == " ".join(f"{m}:{w:.3g}" for m, w in weights_of(served).items())
    for name in ("lstm+auto_ets+theta", "auto_ets+theta", "lstm", "auto_ets", "theta", "seasonal_naive"):
        assert f"| {name} |" in version.description or f"**{name}** (served)" in version.description, name
    assert f"**Serves** `{served}`" in version.description and "sMAPE (%)" in version.description
    assert np.isfinite(float(version.tags["backtest_mase"]))

    forecast = runner.invoke(app, ["forecast", "--root", root, "--config", str(config)])
    assert forecast.exit_code == 0, forecast.output
    rows = Lake(root).read(FORECASTS)
    assert len(rows) == 12 * 12 and (rows["members"] == version.tags["members"]).all()
    assert np.isfinite(rows[["yhat", "yhat_lo_80", "yhat_hi_80", "yhat_lo_95", "yhat_hi_95"]].to_numpy()).all()
    assert (rows["yhat_lo_95"] <= rows["yhat_lo_80"]).all() and (rows["yhat_hi_80"] <= rows["yhat_hi_95"]).all()

    # The registered model, loaded in a CPU-only process with no network, gives the same forecast.
    history = tmp_path / "history.parquet"
    Lake(root).read_series()[["unique_id", "ds", "y"]].to_parquet(history)
    out = tmp_path / "served.parquet"
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({Registry(cfg.registry, root).uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{cfg.registry.model_name}/{version.version}')\n"
        f"model.predict(pd.read_parquet({str(history)!r})).to_parquet({str(out)!r})\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = pd.read_parquet(out).merge(rows, on=["unique_id", "ds"], suffixes=("", "_lake"))
    assert len(loaded) == len(rows)
    assert np.allclose(loaded["yhat"], loaded["yhat_lake"], rtol=1e-6)


def test_a_diverged_lstm_is_refused_by_name_and_the_best_forecast_without_it_is_served(tmp_path: Path) -> None:
    # A learning rate no network survives: its weights, and so its loss, are not finite after one step.
    settings = {**SMALL, "train": {"max_epochs": 6, "lr": float("inf")}}
    root, config, runner = setup(tmp_path, monthly_panel(), settings)
    trained = runner.invoke(app, ["train", "--mode", "retrain", "--root", root, "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    version, _ = latest_version(root, config)
    assert version.tags["promoted"] == "false"
    assert version.tags["decision"].startswith("LSTM member 0 diverged in its evaluation fit at epoch 1")
    assert "lstm" not in version.tags["served"].split("+")

    forecast = runner.invoke(app, ["forecast", "--root", root, "--config", str(config)])
    assert forecast.exit_code == 0, forecast.output
    rows = Lake(root).read(FORECASTS)
    assert (rows["model_name"] == "baseline").all()
    best = version.tags["best_baseline"]
    assert (rows["model_version"] == best).all() and "lstm" not in best
    assert np.isfinite(rows[["yhat", "yhat_lo_80", "yhat_hi_95"]].to_numpy()).all()  # baselines have intervals


@pytest.mark.parametrize(("n", "windows", "validation"), [(36, 1, 12), (24, 1, 6)])
def test_short_histories_train_with_fewer_windows_and_a_shorter_validation(
    tmp_path: Path, n: int, windows: int, validation: int,
) -> None:
    root, config, runner = setup(tmp_path, monthly_panel(n=n), SMALL)
    trained = runner.invoke(app, ["train", "--mode", "retrain", "--root", root, "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    version, _ = latest_version(root, config)
    assert (version.tags["backtest_windows"], version.tags["validation_periods"]) == (str(windows), str(validation))
    forecast = runner.invoke(app, ["forecast", "--root", root, "--config", str(config)])
    assert forecast.exit_code == 0, forecast.output
    assert len(Lake(root).read(FORECASTS)) == 12 * 12


def test_a_history_below_the_minimum_names_it_what_the_data_has_and_the_setting(tmp_path: Path) -> None:
    root, config, runner = setup(tmp_path, monthly_panel(n=13), SMALL)
    trained = runner.invoke(app, ["train", "--mode", "retrain", "--root", root, "--config", str(config)])
    assert trained.exit_code == 1
    assert "spans 13 periods" in trained.output and "at least 15" in trained.output
    assert "window.horizon" in trained.output and "Traceback" not in trained.output


def test_covariates_are_inputs_from_ingest_to_a_forecast_in_another_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = []
    for uid in ("AAA", "BBB", "CCC"):
        ds = pd.date_range("2023-01-02", periods=200, freq="D")
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
        frames.append(pd.DataFrame({"ticker": uid, "date": ds.strftime("%Y-%m-%d"), "close": close,
                                    "open": close * (1 + rng.normal(0, 0.002, 200)),
                                    "volume": rng.integers(1_000, 9_000, 200).astype(float)}))
    settings = {**SMALL, "data": {"id_col": "ticker", "time_col": "date", "target_col": "close",
                                  "covariates": ["volume", "open"]},
                "window": {"horizon": 5}}
    root, config, runner = setup(tmp_path, pd.concat(frames, ignore_index=True), settings)
    trained = runner.invoke(app, ["train", "--mode", "retrain", "--root", root, "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    version, cfg = latest_version(root, config)
    assert version.tags["n_series"] == "3"
    forecast = runner.invoke(app, ["forecast", "--root", root, "--config", str(config)])
    assert forecast.exit_code == 0, forecast.output
    rows = Lake(root).read(FORECASTS)
    assert len(rows) == 3 * 5 and np.isfinite(rows["yhat"]).all()
    # The model reads the covariates from the history it is given (inputs, never targets).
    history = tmp_path / "history.parquet"
    Lake(root).read_series().to_parquet(history)
    script = (
        "import mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({Registry(cfg.registry, root).uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{cfg.registry.model_name}/{version.version}')\n"
        f"h = pd.read_parquet({str(history)!r})\n"
        "print(len(m.predict(h)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "15"
