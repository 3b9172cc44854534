"""Seasonal naive and the MASE scale on the grid: gaps, short histories, constant series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.evaluate.metrics import mase_scale
from lstm_pipeline.model import seasonal


def monthly(uid: str, y: list[float], start: str = "2020-01-01", drop: tuple[int, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(y), freq="MS"), "y": y})
    return frame.drop(index=list(drop)).reset_index(drop=True)


def test_mase_scale_is_the_mean_seasonal_difference() -> None:
    history = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    assert mase_scale(history, 2) == 5.0  # |4-1|, |7-2|, |11-4|
    assert mase_scale(history, 1) == 2.5  # 1, 2, 3, 4
    assert mase_scale([1.0, 2.0, 3.0, 4.0, 10.0], 4) == 9.0  # one seasonal pair


@pytest.mark.parametrize("season_length", [3, 5, 12])
def test_mase_scale_falls_back_to_first_differences_without_a_seasonal_pair(season_length: int) -> None:
    assert mase_scale([1.0, 3.0, 6.0], season_length) == 2.5


@pytest.mark.parametrize("history", [[], [4.0], [np.nan, 3.0, np.nan]])
def test_mase_scale_is_nan_without_any_pair(history: list[float]) -> None:
    assert math.isnan(mase_scale(np.array(history), 12))


def test_a_constant_history_has_no_scale() -> None:
    # Zero would make the series' MASE infinite and let it dominate a mean.
    assert math.isnan(mase_scale(np.full(30, 3.0), 12))
    assert math.isnan(mase_scale(np.zeros(30), 12))


def test_mase_scale_pairs_only_observed_periods() -> None:
    # NaN marks a missing period: pairs (t, t-2) with both observed are (4, 2) -> |7 - 2| only.
    assert mase_scale([1.0, 2.0, np.nan, 7.0, np.nan], 2) == 5.0
    frame = monthly("a", [1.0, 2.0, 0.0, 7.0, 0.0], drop=(2, 4))
    assert seasonal.mase_scales(frame, "MS", 2).to_dict() == {"a": 5.0}


def test_intermittent_series_have_a_finite_positive_scale() -> None:
    y = [0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 4.0,
         0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 5.0, 0.0, 0.0, 0.0]
    scale = seasonal.mase_scales(monthly("i", y), "MS", 12)["i"]
    assert scale == pytest.approx(np.mean(np.abs(np.array(y[12:]) - np.array(y[:12]))))
    assert scale > 0


def test_seasonal_naive_carries_over_a_missing_period_in_the_last_season() -> None:
    # m=3, observed Jan, Mar, Apr (Feb missing): the last season Feb..Apr is [10 (carried), 30, 40].
    frame = monthly("b", [10.0, 0.0, 30.0, 40.0], drop=(1,))
    fc = seasonal.seasonal_naive(frame, 4, "MS", 3)
    assert fc["yhat"].tolist() == [10.0, 30.0, 40.0, 10.0]
    assert fc["ds"].tolist() == list(pd.date_range("2020-05-01", periods=4, freq="MS"))
    assert (fc["cutoff"] == pd.Timestamp("2020-04-01")).all()


def test_forecast_season_rule() -> None:
    assert seasonal.forecast_season(12, 12) == 12
    assert seasonal.forecast_season(11, 12) == 1
    assert seasonal.forecast_season(np.array([3, 12, 30]), 12).tolist() == [1, 12, 12]
