"""Realised errors and live accuracy against values worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lstm_pipeline.stages.monitor import ACCURACY_COLUMNS, live_accuracy, realised_errors

M = pd.Timestamp  # shorthand for month starts

# A: diffs 2, 3, 4, 5, 6 -> naive scale 3 up to 2020-04, 3.5 up to 2020-05. B: constant -> no scale.
SERIES = pd.DataFrame({
    "unique_id": ["A"] * 6 + ["B"] * 5,
    "ds": list(pd.date_range("2020-01-01", periods=6, freq="MS")) + list(pd.date_range("2020-01-01", periods=5, freq="MS")),
    "y": [1.0, 3.0, 6.0, 10.0, 15.0, 21.0] + [5.0] * 5,
})
FORECASTS = pd.DataFrame({
    "unique_id": ["A", "A", "A", "B", "C", "A"],
    "cutoff": [M("2020-04-01")] * 5 + [M("2020-05-01")],
    "ds": [M("2020-05-01"), M("2020-06-01"), M("2020-07-01"), M("2020-05-01"), M("2020-05-01"), M("2020-06-01")],
    "step": [1, 2, 3, 1, 1, 1],
    "yhat": [12.0, 20.0, 30.0, 7.0, 1.0, 21.7],
    "model_name": "m",
    "model_version": ["1", "1", "1", "1", "1", "2"],
    "run_id": "r",
})


def test_only_forecast_rows_with_an_actual_are_realised() -> None:
    errors = realised_errors(FORECASTS, SERIES, "MS", season_length=1)

    assert list(errors.columns) == ACCURACY_COLUMNS
    # A 2020-07 has no actual yet and series C has none at all: both wait.
    assert list(zip(errors["model_version"], errors["unique_id"], errors["ds"].dt.strftime("%Y-%m"))) == [
        ("1", "A", "2020-05"), ("1", "A", "2020-06"), ("1", "B", "2020-05"), ("2", "A", "2020-06"),
    ]
    assert errors["y"].tolist() == [15.0, 21.0, 5.0, 21.0]
    assert errors["step"].tolist() == [1, 2, 1, 1]


def test_errors_are_absolute_and_scaled_by_the_history_before_the_cutoff() -> None:
    errors = realised_errors(FORECASTS, SERIES, "MS", season_length=1)

    assert errors["abs_error"].tolist() == pytest.approx([3.0, 1.0, 2.0, 0.7])
    assert errors["scale"].tolist()[:2] == [3.0, 3.0]  # A up to 2020-04: |2|, |3|, |4|
    assert errors["scale"].iloc[3] == 3.5  # A up to 2020-05 adds |5|: the later cutoff's own history
    assert errors["scaled_error"].iloc[:2].tolist() == pytest.approx([1.0, 1 / 3])
    assert errors["scaled_error"].iloc[3] == pytest.approx(0.2)
    # B is constant: no scale, so no scaled error (missing, not infinite).
    assert math.isnan(errors["scale"].iloc[2])
    assert math.isnan(errors["scaled_error"].iloc[2])


def test_the_scale_uses_the_season_length_when_the_history_is_long_enough() -> None:
    ds = pd.date_range("2020-01-01", periods=7, freq="MS")
    series = pd.DataFrame({"unique_id": "S", "ds": ds, "y": [1.0, 2.0, 4.0, 7.0, 11.0, 16.0, 20.0]})
    forecast = pd.DataFrame({
        "unique_id": ["S"], "cutoff": [ds[5]], "ds": [ds[6]], "step": [1], "yhat": [18.0], "model_version": ["1"],
    })

    errors = realised_errors(forecast, series, "MS", season_length=2)

    # history 1, 2, 4, 7, 11, 16: lag-2 differences 3, 5, 7, 9 -> scale 6; |20 - 18| / 6
    assert errors["scale"].tolist() == [6.0]
    assert errors["scaled_error"].tolist() == pytest.approx([2 / 6])


def test_timestamps_of_different_resolutions_still_join() -> None:
    forecasts = FORECASTS.assign(ds=FORECASTS["ds"].astype("datetime64[ns]"),
                                 cutoff=FORECASTS["cutoff"].astype("datetime64[s]"))

    assert len(realised_errors(forecasts, SERIES, "MS", season_length=1)) == 4


def test_nothing_is_realised_without_forecasts_or_actuals() -> None:
    assert realised_errors(FORECASTS.iloc[:0], SERIES, "MS", 1).empty
    assert realised_errors(FORECASTS, SERIES.iloc[:0], "MS", 1).empty
    assert list(realised_errors(FORECASTS.iloc[:0], SERIES, "MS", 1).columns) == ACCURACY_COLUMNS


def test_live_accuracy_averages_each_forecast_first_then_over_forecasts() -> None:
    live = live_accuracy(realised_errors(FORECASTS, SERIES, "MS", season_length=1))

    assert live.loc["1", "n_forecasts"] == 2  # (A, 2020-04) and (B, 2020-04)
    assert live.loc["1", "n_points"] == 3
    assert live.loc["1", "mae"] == pytest.approx(2.0)  # A: (3 + 1) / 2 = 2; B: 2
    assert live.loc["1", "mase"] == pytest.approx(2 / 3)  # A: (1 + 1/3) / 2; B has no scale
    assert live.loc["2", "mase"] == pytest.approx(0.2)
    assert live.loc["2", "last_cutoff"] == M("2020-05-01")


def test_live_accuracy_by_version_and_horizon_step() -> None:
    errors = realised_errors(FORECASTS, SERIES, "MS", season_length=1)

    live = live_accuracy(errors, by=["model_version", "step"])

    assert live.loc[("1", 1), "mae"] == pytest.approx((3.0 + 2.0) / 2)
    assert live.loc[("1", 2), "mase"] == pytest.approx(1 / 3)
    assert live_accuracy(errors.iloc[:0]).empty


def test_live_accuracy_by_version_and_cutoff() -> None:
    errors = realised_errors(FORECASTS, SERIES, "MS", season_length=1)

    live = live_accuracy(errors, by=["model_version", "cutoff"])

    assert list(live.index) == [("1", M("2020-04-01")), ("2", M("2020-05-01"))]
    assert live["n_forecasts"].tolist() == [2, 1]
    assert live.loc[("1", M("2020-04-01")), "last_cutoff"] == M("2020-04-01")
