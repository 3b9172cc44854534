"""An awkward panel through the user's commands: ingest, train --mode retrain, forecast.

Ragged ends, a gap inside a series, a series shorter than lookback + horizon, a constant
and an intermittent series, and one that stopped long ago. Every row lands, every current
series is backtested and forecast from its own last observation, and the constant series
stays out of the gate's MASE mean.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lstm_pipeline.config import load_config
from lstm_pipeline.lake.tables import FORECASTS, QUARANTINE, SERIES, Lake
from lstm_pipeline.registry.tracking import Registry
from lstm_pipeline.shell.cli import app

pytestmark = pytest.mark.slow

NEWEST = "2020-12-01"


def months(uid: str, n: int, end: str = NEWEST, y: np.ndarray | None = None) -> pd.DataFrame:
    ds = pd.date_range(end=end, periods=n, freq="MS")
    t = np.arange(n)
    values = 200 + 0.5 * t + 20 * np.sin(2 * np.pi * ds.month / 12) if y is None else y
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": values})


def awkward_panel() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    gappy = months("gappy", 96)
    gappy = gappy[~gappy["ds"].between("2019-03-01", "2019-06-01")]  # four months missing
    intermittent = np.where(rng.random(72) < 0.7, 0.0, rng.integers(1, 4, 72).astype(float))
    return pd.concat([
        months("full_a", 96), months("full_b", 84),
        months("ragged", 90, end="2020-08-01"),  # ends four months before the others
        months("short30", 30),  # shorter than lookback 24 + horizon 12
        gappy,
        months("constant", 60, y=np.full(60, 5.0)),
        months("intermittent", 72, y=intermittent),
        months("stopped", 60, end="2017-06-01"),  # 42 months behind: stale
    ], ignore_index=True)


def test_awkward_panel_is_ingested_backtested_and_forecast(tmp_path: Path) -> None:
    panel = awkward_panel()
    source = tmp_path / "awkward.csv"
    panel.to_csv(source, index=False)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "window": {"lookback": 24, "horizon": 12},
        "model": {"hidden_size": 16},
        "train": {"max_epochs": 10, "patience": 5, "ensemble": 1},
    }))
    root = str(tmp_path / "lake")
    runner = CliRunner()

    ingested = runner.invoke(app, ["ingest", str(source), "--root", root])
    assert ingested.exit_code == 0, ingested.output
    lake = Lake(root)
    assert len(lake.read(SERIES)) == len(panel)  # nothing dropped, the gap not filled
    assert lake.version(QUARANTINE) is None

    trained = runner.invoke(app, ["train", "--mode", "retrain", "--root", root, "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    cfg = load_config(config, overrides={"lake": {"root": root}}, environ={})
    version = Registry(cfg.registry, root).versions()[-1]
    scores = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="backtest_scores.csv",
        tracking_uri=Registry(cfg.registry, root).uri))
    candidate = scores[scores["model"] == version.tags["served"]]
    # Cutoffs are dates, the same for every series (two windows, 12 months apart, before the
    # panel's newest month): the ragged series is scored at them too, the stopped one is not.
    # The short series has 18 points at the second cutoff and 6 (too few) at the first.
    windows = candidate.assign(cutoff=pd.to_datetime(candidate["cutoff"])).groupby("unique_id")["cutoff"]
    assert windows.apply(set).to_dict() == {
        **{uid: {pd.Timestamp("2018-12-01"), pd.Timestamp("2019-12-01")}
           for uid in ("full_a", "full_b", "ragged", "gappy", "constant", "intermittent")},
        "short30": {pd.Timestamp("2019-12-01")},
    }
    assert candidate.loc[candidate["unique_id"] == "constant", "mase"].isna().all()
    assert candidate.loc[candidate["unique_id"] != "constant", "mase"].notna().all()
    assert np.isfinite(float(version.tags["backtest_mase"]))  # the mean leaves the constant series out

    forecast = runner.invoke(app, ["forecast", "--root", root, "--config", str(config)])
    assert forecast.exit_code == 0, forecast.output
    rows = lake.read(FORECASTS)
    assert set(rows["unique_id"]) == set(panel["unique_id"]) - {"stopped"}
    assert rows.groupby("unique_id").size().eq(12).all()
    assert np.isfinite(rows["yhat"]).all()
    cutoffs = rows.groupby("unique_id")["cutoff"].first()
    assert cutoffs["ragged"] == pd.Timestamp("2020-08-01")
    assert (cutoffs.drop("ragged") == pd.Timestamp(NEWEST)).all()
    gappy = rows[rows["unique_id"] == "gappy"].sort_values("ds")
    assert list(gappy["ds"]) == list(pd.date_range("2021-01-01", periods=12, freq="MS"))
    assert "stopped" in forecast.output
