"""The whole pipeline as Prefect flow runs on a real (test-harness) Prefect server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.pipeline import pipeline_flow
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import ACCURACY, FORECASTS, SERIES, Lake
from lstm_pipeline.registry.tracking import CHAMPION, Registry
from lstm_pipeline.shell.cli import app
from tests.conftest import trend_seasonal

pytestmark = pytest.mark.slow


def test_pipeline_ingests_trains_promotes_and_forecasts_then_reruns_idempotently(
    tiny_config: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    # The monitor's live error must not trigger a retrain here: this test is about the
    # fine-tune that new data brings (the degradation branch has tests of its own). The
    # LSTM alone against the naive baselines: AutoETS fits these synthetic series almost
    # exactly, and the gate has tests of its own.
    cfg = tiny_config(policy={"degradation_ratio": 1000}, combine={"members": ["lstm"]},
                      backtest={"statistical_baselines": False})
    data = trend_seasonal(n_series=8, n=96)
    first = tmp_path / "first.csv"
    data.to_csv(first, index=False)

    result = pipeline_flow([str(first)], config=cfg)

    assert result["train"]["action"] == "retrain"
    assert result["train"]["promoted"] is True
    lake = Lake(cfg.lake.root)
    forecasts = lake.read(FORECASTS)
    assert forecasts.groupby("unique_id").size().to_dict() == {f"s{i:02d}": 12 for i in range(8)}
    last_obs = data.assign(ds=pd.to_datetime(data["ds"])).groupby("unique_id")["ds"].max()
    first_ds = forecasts.groupby("unique_id")["ds"].min()
    assert (first_ds == last_obs + pd.DateOffset(months=1)).all()
    assert (forecasts.groupby("unique_id")["cutoff"].first() == last_obs).all()
    champion = Registry(cfg.registry, cfg.lake.root).version(CHAMPION)
    assert champion is not None
    assert set(forecasts["model_version"]) == {champion.version}
    assert champion.tags["training_mode"] == "retrain"
    assert "PROMOTED" in champion.description

    # Same file again: nothing new lands, training is skipped, forecasts are not duplicated.
    series_version, n_rows = lake.version(SERIES), len(lake.read(SERIES))
    again = pipeline_flow([str(first)], config=cfg)
    assert again["train"]["action"] == "skip"
    assert (lake.version(SERIES), len(lake.read(SERIES))) == (series_version, n_rows)
    assert len(lake.read(FORECASTS)) == 8 * 12

    # A year of new data: the policy fine-tunes, and the new vintage joins the archive.
    newer = trend_seasonal(n_series=8, n=108)
    later = tmp_path / "later.csv"
    newer[pd.to_datetime(newer["ds"]) > last_obs.max()].to_csv(later, index=False)
    third = pipeline_flow([str(later)], config=cfg)
    assert third["train"]["action"] == "finetune"
    # Before training, the monitor scored the first vintage against the new actuals.
    accuracy = lake.read(ACCURACY)
    assert len(accuracy) == 8 * 12 and set(accuracy["model_version"]) == {champion.version}
    archive = lake.read(FORECASTS)
    assert archive.groupby("unique_id")["cutoff"].nunique().eq(2).all()


def test_cli_reports_an_unreadable_file_by_name_and_lands_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")
    root = tmp_path / "lake"

    result = CliRunner().invoke(app, ["ingest", str(bad), "--root", str(root)])

    assert result.exit_code == 1
    assert "broken.parquet" in result.output
    assert Lake(root).version(SERIES) is None


def test_cli_forecast_without_a_champion_writes_the_baseline_labelled_as_such(
    tmp_path: Path, trend_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "lake"
    assert CliRunner().invoke(app, ["ingest", str(trend_csv()), "--root", str(root)]).exit_code == 0

    result = CliRunner().invoke(app, ["forecast", "--root", str(root)])

    assert result.exit_code == 0, result.output
    assert "baseline seasonal_naive (no LSTM has passed the gate yet)" in result.output
    forecasts = Lake(root).read(FORECASTS)
    assert set(forecasts["model_name"]) == {"baseline"} and set(forecasts["model_version"]) == {"seasonal_naive"}
    assert forecasts.groupby("unique_id").size().eq(12).all()
