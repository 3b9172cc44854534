"""Panel layout, window start indices, gathering and calendar features, by exact index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_pipeline.windows import Panel, calendar_features, gather, window_starts

L, H = 3, 2


def panel_of(*lengths: int, n_features: int = 2) -> Panel:
    """Series i holds rows whose feature 0 is 1000*i + local position (easy to read back)."""
    arrays = []
    for i, n in enumerate(lengths):
        t = np.arange(n, dtype=np.float64)
        arrays.append(np.stack([1000 * i + t] + [-(t + k) for k in range(1, n_features)], axis=1))
    return Panel.from_arrays([f"s{i}" for i in range(len(lengths))], arrays)


def test_from_arrays_offsets_lengths_and_values() -> None:
    panel = panel_of(10, 7)
    assert panel.ids == ("s0", "s1")
    np.testing.assert_array_equal(panel.offsets, [0, 10])
    np.testing.assert_array_equal(panel.lengths, [10, 7])
    assert panel.values.shape == (17, 2) and panel.values.dtype == np.float32
    assert panel.offsets.dtype == np.int64 and panel.lengths.dtype == np.int64
    # series 1 starts at its offset
    np.testing.assert_array_equal(panel.values[10:17, 0], 1000 + np.arange(7))


def test_from_arrays_with_no_series_is_empty() -> None:
    panel = Panel.from_arrays([], [])
    assert panel.ids == () and panel.values.shape == (0, 1)
    assert len(panel.lengths) == 0
    assert window_starts(panel, L, H, target_end=panel.lengths).shape == (0,)


def test_window_starts_up_to_target_end() -> None:
    panel = panel_of(10, 7)
    # s0: targets < 8 -> t + L + H - 1 <= 7 -> t <= 3; s1: t <= 7 - 5 = 2 (global 10 + t)
    starts = window_starts(panel, L, H, target_end=np.array([8, 7]))
    np.testing.assert_array_equal(starts, [0, 1, 2, 3, 10, 11, 12])
    assert starts.dtype == np.int64


def test_window_starts_target_end_is_clipped_to_the_series() -> None:
    panel = panel_of(10, 7)
    starts = window_starts(panel, L, H, target_end=np.array([99, 99]))
    np.testing.assert_array_equal(starts, [0, 1, 2, 3, 4, 5, 10, 11, 12])


def test_window_starts_between_target_begin_and_end() -> None:
    panel = panel_of(10, 7)
    # s0: targets in [7, 10): t in 4..5 (t=4 predicts 7..8, t=5 predicts 8..9; t=3 would predict 6)
    # s1: targets in [5, 7): t = 2 only (predicts 5..6)
    starts = window_starts(panel, L, H, target_end=np.array([10, 7]), target_begin=np.array([7, 5]))
    np.testing.assert_array_equal(starts, [4, 5, 12])


def test_window_at_local_t_predicts_t_plus_lookback_onwards() -> None:
    panel = panel_of(10, 7)
    begin, end = np.array([7, 5]), np.array([10, 7])
    starts = window_starts(panel, L, H, target_end=end, target_begin=begin)
    for s in starts:
        series = int(np.searchsorted(panel.offsets, s, side="right") - 1)
        t = int(s - panel.offsets[series])
        first_target, last_target = t + L, t + L + H - 1
        assert begin[series] <= first_target and last_target < end[series]


def test_train_and_validation_windows_split_at_target_begin_without_overlap() -> None:
    panel = panel_of(10, 7)
    val_begin = panel.lengths - H  # [8, 5]
    train = window_starts(panel, L, H, target_end=val_begin)
    val = window_starts(panel, L, H, target_end=panel.lengths, target_begin=val_begin)
    # train: every target before val_begin (s0 t <= 3, s1 t <= 0); val: exactly the last H targets
    np.testing.assert_array_equal(train, [0, 1, 2, 3, 10])
    np.testing.assert_array_equal(val, [5, 12])
    # windows whose targets straddle val_begin (s0 t = 4, s1 t = 1) belong to neither split
    every = window_starts(panel, L, H, target_end=panel.lengths)
    np.testing.assert_array_equal(np.setdiff1d(every, np.concatenate([train, val])), [4, 11])


def test_window_starts_skips_series_without_a_whole_window() -> None:
    panel = panel_of(4, 6)  # s0 has 4 < L + H = 5 points
    starts = window_starts(panel, L, H, target_end=panel.lengths)
    np.testing.assert_array_equal(starts, [4 + 0, 4 + 1])
    none = window_starts(panel, L, H, target_end=np.array([2, 2]))
    assert none.shape == (0,) and none.dtype == np.int64


def test_gather_returns_exact_panel_slices() -> None:
    panel = panel_of(10, 7, n_features=3)
    values = torch.from_numpy(panel.values)
    starts = torch.tensor([0, 4, 12])
    x, y = gather(values, starts, L, H)
    assert x.shape == (3, L, 3) and y.shape == (3, H)
    for b, s in enumerate(starts.tolist()):
        assert torch.equal(x[b], values[s : s + L])
        assert torch.equal(y[b], values[s + L : s + L + H, 0])
    # readable: window at global 12 is s1, local 2: inputs 1002..1004, targets 1005..1006
    assert x[2, :, 0].tolist() == [1002.0, 1003.0, 1004.0]
    assert y[2].tolist() == [1005.0, 1006.0]


def test_calendar_features_monthly_are_sin_cos_of_the_month() -> None:
    ds = pd.date_range("2021-01-01", periods=12, freq="MS")
    cal = calendar_features(ds, 12)
    assert cal.shape == (12, 2) and cal.dtype == np.float32
    assert cal[0].tolist() == [0.0, 1.0]  # January -> (0, 1)
    np.testing.assert_allclose(cal[3], [1.0, 0.0], atol=1e-6)  # April: a quarter turn
    np.testing.assert_allclose(cal[6], [0.0, -1.0], atol=1e-6)  # July: half a turn
    angle = 2 * np.pi * np.arange(12) / 12
    np.testing.assert_allclose(cal, np.stack([np.sin(angle), np.cos(angle)], 1), atol=1e-6)


def test_calendar_features_depend_on_the_timestamp_not_the_position() -> None:
    march_first = calendar_features(pd.date_range("2021-03-01", periods=3, freq="MS"), 12)
    whole_year = calendar_features(pd.Series(pd.date_range("2020-01-01", periods=15, freq="MS")), 12)
    np.testing.assert_array_equal(march_first, whole_year[2:5])
    np.testing.assert_array_equal(whole_year[12:15], whole_year[0:3])  # same months a year on


def test_calendar_features_daily_start_on_monday() -> None:
    cal = calendar_features(pd.DatetimeIndex(["2024-01-01", "2024-01-03"]), 7)  # Monday, Wednesday
    assert cal[0].tolist() == [0.0, 1.0]
    np.testing.assert_allclose(cal[1], [np.sin(4 * np.pi / 7), np.cos(4 * np.pi / 7)], atol=1e-6)


@pytest.mark.parametrize("season_length", [0, 1])
def test_no_calendar_features_without_a_season(season_length: int) -> None:
    cal = calendar_features(pd.date_range("2021-01-01", periods=5, freq="MS"), season_length)
    assert cal.shape == (5, 0)
