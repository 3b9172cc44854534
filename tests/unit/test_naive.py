"""Seasonal naive and naive: exact values, dates, steps and the short-series fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_pipeline.model.seasonal import naive, seasonal_naive


def monthly(uid: str, y: np.ndarray | list[float], start: str = "2020-01-01") -> pd.DataFrame:
    return pd.DataFrame(
        {"unique_id": uid, "ds": pd.date_range(start, periods=len(y), freq="MS"), "y": np.asarray(y, float)}
    )


def test_seasonal_naive_repeats_the_last_season() -> None:
    history = monthly("a", np.arange(1, 16))  # 15 months: 1..15, last season 4..15
    fc = seasonal_naive(history, horizon=14, freq="MS", season_length=12)
    assert fc["yhat"].tolist() == [*range(4, 16), 4, 5]
    assert fc["yhat"].dtype == np.float64


def test_dates_start_one_period_after_the_last_observation_with_steps_1_to_h() -> None:
    history = monthly("a", np.arange(15))  # last ds 2021-03-01
    fc = seasonal_naive(history, horizon=4, freq="MS", season_length=12)
    assert list(fc.columns) == ["unique_id", "ds", "cutoff", "step", "yhat"]
    assert fc["ds"].tolist() == list(pd.to_datetime(["2021-04-01", "2021-05-01", "2021-06-01", "2021-07-01"]))
    assert (fc["cutoff"] == pd.Timestamp("2021-03-01")).all()
    assert fc["step"].tolist() == [1, 2, 3, 4]


def test_each_series_gets_its_own_cutoff_and_values() -> None:
    history = pd.concat(
        [monthly("b", [5.0, 6.0, 7.0], start="2019-06-01"), monthly("a", [1.0, 2.0, 3.0, 4.0])]
    ).sample(frac=1.0, random_state=0)  # unsorted on purpose
    fc = seasonal_naive(history, horizon=3, freq="MS", season_length=2)
    a, b = fc[fc["unique_id"] == "a"], fc[fc["unique_id"] == "b"]
    assert a["yhat"].tolist() == [3.0, 4.0, 3.0]
    assert b["yhat"].tolist() == [6.0, 7.0, 6.0]
    assert a["ds"].iloc[0] == pd.Timestamp("2020-05-01")
    assert b["ds"].iloc[0] == pd.Timestamp("2019-09-01")
    assert fc["unique_id"].tolist() == ["a"] * 3 + ["b"] * 3  # sorted by id


def test_series_exactly_one_season_long_uses_the_season() -> None:
    fc = seasonal_naive(monthly("a", [1.0, 2.0, 3.0]), horizon=4, freq="MS", season_length=3)
    assert fc["yhat"].tolist() == [1.0, 2.0, 3.0, 1.0]


def test_series_shorter_than_a_season_fall_back_to_naive() -> None:
    history = pd.concat([monthly("short", [1.0, 2.0, 9.0]), monthly("long", np.arange(12.0))])
    fc = seasonal_naive(history, horizon=5, freq="MS", season_length=12)
    assert fc.loc[fc["unique_id"] == "short", "yhat"].tolist() == [9.0] * 5
    assert fc.loc[fc["unique_id"] == "long", "yhat"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_naive_repeats_the_last_value() -> None:
    fc = naive(monthly("a", [3.0, 1.0, 4.0, 1.0, 5.0]), horizon=3, freq="MS")
    assert fc["yhat"].tolist() == [5.0, 5.0, 5.0]
    assert fc["step"].tolist() == [1, 2, 3]
    assert fc["ds"].iloc[0] == pd.Timestamp("2020-06-01")


def test_daily_frequency_dates() -> None:
    history = pd.DataFrame(
        {"unique_id": "d", "ds": pd.date_range("2024-01-01", periods=10, freq="D"), "y": np.arange(10.0)}
    )
    fc = seasonal_naive(history, horizon=8, freq="D", season_length=7)
    assert fc["ds"].tolist() == list(pd.date_range("2024-01-11", periods=8, freq="D"))
    assert fc["yhat"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 3.0]


def test_a_gap_is_not_treated_as_contiguous() -> None:
    # 13 months with March 2020 missing: the last season is Feb 2020 .. Jan 2021, with
    # March carried over from February, so the forecast for March 2021 is February's value.
    history = monthly("g", np.arange(1.0, 14.0)).drop(index=2)
    fc = seasonal_naive(history, horizon=3, freq="MS", season_length=12)
    assert fc["ds"].tolist() == list(pd.to_datetime(["2021-02-01", "2021-03-01", "2021-04-01"]))
    assert fc["yhat"].tolist() == [2.0, 2.0, 4.0]
