"""Grid positions, dates, calendar features and the layout rule for gaps and padding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.model import grid


@pytest.mark.parametrize(
    ("freq", "stamps"),
    [
        ("MS", ["2020-01-01", "2020-02-01", "2020-12-01", "2021-01-01"]),
        ("ME", ["2020-01-31", "2020-02-29", "2020-12-31", "2021-01-31"]),
        ("QS", ["2020-01-01", "2020-04-01", "2020-10-01", "2021-01-01"]),
        ("QS-OCT", ["2019-10-01", "2020-01-01", "2020-07-01", "2020-10-01"]),
        ("YS", ["1990-01-01", "1991-01-01", "1999-01-01", "2000-01-01"]),
        ("D", ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]),
        ("W", ["2024-01-07", "2024-01-14", "2024-01-21", "2024-01-28"]),
        ("h", ["2024-03-31 00:00", "2024-03-31 01:00", "2024-03-31 02:00", "2024-03-31 03:00"]),
        ("15min", ["2024-01-01 00:00", "2024-01-01 00:15", "2024-01-01 00:30", "2024-01-01 00:45"]),
    ],
)
def test_positions_count_periods_and_dates_invert_them(freq: str, stamps: list[str]) -> None:
    ds = pd.DatetimeIndex(stamps)
    pos = grid.positions(ds, freq)
    assert pos.dtype == np.int64
    expected = [0, 1, 11, 12] if freq in ("MS", "ME") else [0, 1, 3, 4] if freq in ("QS", "QS-OCT") else \
        [0, 1, 9, 10] if freq == "YS" else [0, 1, 2, 3]
    assert (pos - pos[0]).tolist() == expected
    assert grid.dates(pos, freq, like=ds[0]).tolist() == ds.tolist()


def test_shift_and_future_dates_follow_the_calendar() -> None:
    assert grid.shift(pd.Timestamp("2020-03-01"), -14, "MS") == pd.Timestamp("2019-01-01")
    assert grid.shift(pd.Timestamp("2020-01-31"), 1, "ME") == pd.Timestamp("2020-02-29")
    assert grid.future_dates(pd.Timestamp("2019-10-01"), "QS", 3).tolist() == list(
        pd.to_datetime(["2020-01-01", "2020-04-01", "2020-07-01"]))
    # A daily grid keeps its time of day.
    assert grid.future_dates(pd.Timestamp("2024-01-05 06:00"), "D", 2).tolist() == list(
        pd.to_datetime(["2024-01-06 06:00", "2024-01-07 06:00"]))


def test_calendar_features_monthly_are_sin_cos_of_the_month() -> None:
    ds = pd.date_range("2021-01-01", periods=12, freq="MS")
    cal = grid.calendar_features(ds, 12)
    assert cal.shape == (12, 2) and cal.dtype == np.float32
    assert cal[0].tolist() == [0.0, 1.0]  # January -> (0, 1)
    np.testing.assert_allclose(cal[3], [1.0, 0.0], atol=1e-6)  # April: a quarter turn
    angle = 2 * np.pi * np.arange(12) / 12
    np.testing.assert_allclose(cal, np.stack([np.sin(angle), np.cos(angle)], 1), atol=1e-6)


def test_calendar_features_depend_on_the_timestamp_not_the_position() -> None:
    march_first = grid.calendar_features(pd.date_range("2021-03-01", periods=3, freq="MS"), 12)
    whole_year = grid.calendar_features(pd.Series(pd.date_range("2020-01-01", periods=15, freq="MS")), 12)
    np.testing.assert_array_equal(march_first, whole_year[2:5])
    np.testing.assert_array_equal(whole_year[12:15], whole_year[0:3])


def test_calendar_features_daily_start_on_monday() -> None:
    cal = grid.calendar_features(pd.DatetimeIndex(["2024-01-01", "2024-01-03"]), 7)  # Monday, Wednesday
    assert cal[0].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(cal[1], [np.sin(4 * np.pi / 7), np.cos(4 * np.pi / 7)], atol=1e-6)


@pytest.mark.parametrize("season_length", [0, 1])
def test_no_calendar_features_without_a_season(season_length: int) -> None:
    assert grid.calendar_features(pd.date_range("2021-01-01", periods=5, freq="MS"), season_length).shape == (5, 0)


def test_layout_carries_over_gaps_pads_before_and_marks_what_was_observed() -> None:
    # Series 0 observed at positions 10, 11, 13 (12 missing); series 1 at 5 only.
    codes = np.array([0, 0, 0, 1])
    pos = np.array([10, 11, 13, 5])
    lay = grid.layout(codes, pos, start=np.array([8, 3]), lengths=np.array([7, 4]))
    # series 0 rows: positions 8..14; 8, 9 before its start (first row), 12 carried, 14 after its end
    assert lay.source.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert lay.observed.tolist() == [False, False, True, True, False, True, False,
                                     False, False, True, False]
    assert lay.row_positions().tolist() == [8, 9, 10, 11, 12, 13, 14, 3, 4, 5, 6]
    assert lay.offsets.tolist() == [0, 7]


def test_complete_fills_missing_periods_with_the_last_observation() -> None:
    frame = pd.DataFrame({"unique_id": ["a", "a", "a"], "ds": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-05-01"]),
                          "y": [1.0, 2.0, 5.0]})
    full = grid.complete(frame, "MS")
    assert full["ds"].tolist() == list(pd.date_range("2020-01-01", periods=5, freq="MS"))
    assert full["y"].tolist() == [1.0, 2.0, 2.0, 2.0, 5.0]
    assert full["observed"].tolist() == [True, True, False, False, True]
