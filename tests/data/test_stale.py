"""Series that stopped long ago are reported as stale and not forecast again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import FORECASTS, Lake
from lstm_pipeline.stages.status import render_status
from lstm_pipeline.stages.steps import max_staleness, run_forecast, run_ingest, stale_series


def monthly(uid: str, start: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=n, freq="MS"),
                         "y": 100.0 + np.arange(n) + 5 * np.sin(np.arange(n))})


def ragged() -> pd.DataFrame:
    return pd.concat([
        monthly("current", "2015-01-01", 72),  # ends 2020-12
        monthly("late", "2015-01-01", 67),  # ends 2020-07: 5 months behind, still current
        monthly("stopped", "2012-01-01", 78),  # ends 2018-06: 30 months behind
    ], ignore_index=True)


def test_stale_is_more_than_max_staleness_periods_behind_the_newest() -> None:
    frame = ragged()
    assert stale_series(frame, "MS", 24) == {"stopped": "2018-06-01"}
    assert stale_series(frame, "MS", 30) == {}  # exactly 30 behind: not more than the limit
    assert stale_series(frame, "MS", 4) == {"late": "2020-07-01", "stopped": "2018-06-01"}


def test_the_default_limit_is_two_seasons(tiny_config: Callable[..., PipelineConfig]) -> None:
    assert max_staleness(tiny_config(), "MS") == 24
    assert max_staleness(tiny_config(), "QS") == 8
    assert max_staleness(tiny_config(forecast={"max_staleness": 3}), "MS") == 3


@pytest.mark.slow  # the forecast creates an MLflow store
def test_stale_series_are_listed_and_not_forecast(tiny_config: Callable[..., PipelineConfig], tmp_path: Path) -> None:
    cfg = tiny_config()
    source = tmp_path / "ragged.csv"
    ragged().to_csv(source, index=False)
    run_ingest(cfg, [source])

    outcome = run_forecast(cfg)  # no champion yet: the baseline forecasts

    forecasts = Lake(cfg.lake.root).read(FORECASTS)
    assert set(forecasts["unique_id"]) == {"current", "late"}
    assert outcome.stale == {"stopped": "2018-06-01"}
    assert "1 stale series not forecast" in outcome.summary() and "stopped (2018-06-01)" in outcome.summary()
    # The late series is forecast from its own last observation.
    late = forecasts[forecasts["unique_id"] == "late"]
    assert late["cutoff"].iloc[0] == pd.Timestamp("2020-07-01")
    assert "1 stale series, not forecast: stopped (last 2018-06-01)" in render_status(cfg)
