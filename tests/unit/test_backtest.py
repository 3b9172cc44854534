"""Rolling-origin backtest on small synthetic frames with answers known in advance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.backtest import (
    BacktestResult,
    Forecaster,
    backtest,
    training_cutoff_frame,
)
from lstm_pipeline.baselines import naive, seasonal_naive
from lstm_pipeline.forecast import future_dates

H, K, STEP = 4, 3, 2
FREQ = "MS"


def frame(series: dict[str, np.ndarray]) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2000-01-01", periods=len(y), freq=FREQ), "y": y})
        for uid, y in series.items()
    ]
    return pd.concat(parts, ignore_index=True)


def trends(n_a: int = 40, n_b: int = 30) -> pd.DataFrame:
    """Two straight lines: slope 1 (a) and slope 2 (b)."""
    return frame({"a": np.arange(n_a, dtype=float), "b": 2.0 * np.arange(n_b, dtype=float) + 5})


def oracle(truth: pd.DataFrame, horizon: int = H) -> Forecaster:
    """A 'perfect' forecaster: reads the true future of each series from the full frame."""
    actual = truth.set_index(["unique_id", "ds"])["y"]

    def forecast(history: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for uid, cutoff in history.groupby("unique_id")["ds"].max().items():
            ds = future_dates(cutoff, FREQ, horizon)
            parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "yhat": actual.loc[uid].reindex(ds).to_numpy()}))
        return pd.concat(parts, ignore_index=True)

    return forecast


def naive_fc(history: pd.DataFrame) -> pd.DataFrame:
    return naive(history, H, FREQ)


def run(series: pd.DataFrame, forecasters: dict[str, Forecaster], season_length: int = 1, min_history: int = 1,
        n_windows: int = K) -> BacktestResult:
    return backtest(series, forecasters, horizon=H, n_windows=n_windows, step=STEP,
                    season_length=season_length, min_history=min_history)


def test_training_cutoff_frame_keeps_rows_before_the_first_cutoff() -> None:
    series = trends(40, 30).sample(frac=1.0, random_state=0)  # order must not matter
    kept = training_cutoff_frame(series, horizon=H, n_windows=K, step=STEP)
    first_cut = {"a": 40 - H - (K - 1) * STEP, "b": 30 - H - (K - 1) * STEP}  # 32, 22
    assert kept.groupby("unique_id").size().to_dict() == first_cut
    assert kept.loc[kept["unique_id"] == "a", "y"].tolist() == list(np.arange(32.0))
    assert kept.groupby("unique_id")["ds"].max().to_dict() == {
        "a": pd.Timestamp("2002-08-01"), "b": pd.Timestamp("2001-10-01")  # positions 31 and 21
    }
    assert list(kept.index) == list(range(len(kept)))


def test_training_rows_end_where_the_first_backtest_window_starts() -> None:
    series = trends()
    kept = training_cutoff_frame(series, horizon=H, n_windows=K, step=STEP)
    result = run(series, {"naive": naive_fc})
    first = result.predictions[result.predictions["window"] == 0]
    assert first.groupby("unique_id")["cutoff"].first().to_dict() == kept.groupby("unique_id")["ds"].max().to_dict()


def test_windows_cut_horizon_plus_steps_before_the_end() -> None:
    result = run(trends(), {"naive": naive_fc})
    cutoffs = result.predictions.groupby(["window", "unique_id"])["cutoff"].first()
    a_dates = pd.date_range("2000-01-01", periods=40, freq=FREQ)
    # window k cuts a at position 40 - H - (K-1-k)*STEP = 32, 34, 36: cutoff is the row before
    assert [cutoffs[(k, "a")] for k in range(K)] == [a_dates[31], a_dates[33], a_dates[35]]
    last = result.predictions[(result.predictions["window"] == K - 1) & (result.predictions["unique_id"] == "a")]
    assert last["ds"].tolist() == list(a_dates[36:40])  # the final window scores the last H points
    assert last["step"].tolist() == [1, 2, 3, 4]


def test_perfect_forecaster_scores_zero() -> None:
    rng = np.random.default_rng(0)
    series = frame({"a": rng.normal(10, 2, 40), "b": np.cumsum(rng.normal(0, 1, 30))})
    result = run(series, {"oracle": oracle(series)}, season_length=12)
    summary = result.summary()
    assert summary.loc["oracle", "mae"] == 0.0
    assert summary.loc["oracle", "mase"] == 0.0
    assert summary.loc["oracle", "rmse"] == 0.0 and summary.loc["oracle", "smape"] == 0.0
    assert summary.loc["oracle", "r2"] == 1.0
    assert result.mase("oracle") == 0.0


def test_seasonal_naive_on_a_purely_periodic_series_scores_zero() -> None:
    season = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0])
    series = frame({"p": np.tile(season, 4), "q": np.tile(season[::-1] * 10, 3)})
    result = run(series, {"snaive": lambda h: seasonal_naive(h, H, FREQ, 12)}, season_length=12)
    scores = result.scores()
    assert (scores["mae"] == 0.0).all() and (scores["rmse"] == 0.0).all() and (scores["smape"] == 0.0).all()
    # the MASE denominator (seasonal differences of the history) is 0 too: MASE is undefined
    assert (result.scales["scale"] == 0.0).all()
    assert scores["mase"].isna().all()


def test_all_forecasters_are_scored_on_identical_windows() -> None:
    series = trends()
    result = run(series, {"naive": naive_fc, "snaive": lambda h: seasonal_naive(h, H, FREQ, 12),
                          "oracle": oracle(series)})
    keys = {
        model: set(map(tuple, g[["window", "unique_id", "cutoff", "ds", "step"]].itertuples(index=False)))
        for model, g in result.predictions.groupby("model")
    }
    assert keys["naive"] == keys["snaive"] == keys["oracle"]
    assert len(keys["naive"]) == K * 2 * H
    # and against the same actuals
    y = result.predictions.pivot_table(index=["window", "unique_id", "ds"], columns="model", values="y")
    assert (y["naive"] == y["oracle"]).all() and (y["snaive"] == y["oracle"]).all()


def test_series_with_too_little_history_sit_out_a_window_for_every_forecaster() -> None:
    series = trends(40, 30)
    seen: list[set[str]] = []

    def recording(history: pd.DataFrame) -> pd.DataFrame:
        seen.append(set(history["unique_id"]))
        return naive_fc(history)

    # b's cutoffs are at positions 22, 24, 26: with min_history 24 it misses window 0 only
    result = run(series, {"naive": naive_fc, "recording": recording}, min_history=24)
    members = result.predictions.groupby(["model", "window"])["unique_id"].unique().map(set)
    for model in ("naive", "recording"):
        assert members[(model, 0)] == {"a"}
        assert members[(model, 1)] == members[(model, 2)] == {"a", "b"}
    assert seen == [{"a"}, {"a", "b"}, {"a", "b"}]  # never even shown the short series
    assert set(result.scales.loc[result.scales["window"] == 0, "unique_id"]) == {"a"}
    assert result.summary().loc["naive", "n_series"] == 2


def test_no_series_long_enough_raises() -> None:
    with pytest.raises(ValueError, match="long enough"):
        run(trends(40, 30), {"naive": naive_fc}, min_history=100)


def test_forecaster_that_omits_a_series_raises() -> None:
    def forgetful(history: pd.DataFrame) -> pd.DataFrame:
        fc = naive_fc(history)
        return fc[fc["unique_id"] != "b"]

    with pytest.raises(ValueError, match=r"'forgetful' gave no forecast for \['b'\]"):
        run(trends(), {"naive": naive_fc, "forgetful": forgetful})


def test_scale_is_the_in_sample_seasonal_difference_of_each_window_history() -> None:
    result = run(trends(), {"naive": naive_fc}, season_length=1)
    scale = result.scales.set_index(["window", "unique_id"])["scale"]
    assert len(scale) == K * 2
    assert (scale.xs("a", level="unique_id") == 1.0).all()  # slope 1
    assert (scale.xs("b", level="unique_id") == 2.0).all()  # slope 2


def test_summary_of_naive_on_straight_lines() -> None:
    # Naive misses a line with slope s by s * step: MAE per window is s * mean(1..4) = 2.5 s,
    # MASE (scale s) is 2.5 for both series; R2 = 1 - sum(step^2) / sum((step - 2.5)^2) = 1 - 30/5.
    series = trends()
    result = run(series, {"naive": naive_fc, "oracle": oracle(series)}, season_length=1)
    summary = result.summary()
    assert list(summary.index) == ["naive", "oracle"]
    assert list(summary.columns) == ["mae", "rmse", "smape", "mase", "r2", "mase_median", "n_series", "n_windows"]
    naive_row = summary.loc["naive"]
    assert naive_row["mae"] == pytest.approx((2.5 + 5.0) / 2)
    assert naive_row["rmse"] == pytest.approx((math.sqrt(7.5) + math.sqrt(30.0)) / 2)  # sqrt(mean(s^2 k^2))
    assert naive_row["mase"] == pytest.approx(2.5) and naive_row["mase_median"] == pytest.approx(2.5)
    assert naive_row["r2"] == pytest.approx(-5.0)
    assert naive_row["n_series"] == 2 and naive_row["n_windows"] == K
    assert summary.loc["oracle", "mase"] == 0.0
    assert len(result.scores()) == 2 * K * 2  # models x windows x series


def test_by_step_of_naive_on_straight_lines() -> None:
    series = trends()
    result = run(series, {"naive": naive_fc, "oracle": oracle(series)}, season_length=1)
    table = result.by_step()
    assert table.shape == (2 * H, 2)
    assert list(table.columns) == ["mae", "mase"]
    steps = np.arange(1, H + 1, dtype=float)
    np.testing.assert_allclose(table.loc["naive", "mae"].to_numpy(), 1.5 * steps)  # mean of 1*k and 2*k
    np.testing.assert_allclose(table.loc["naive", "mase"].to_numpy(), steps)
    assert (table.loc["oracle"] == 0.0).all().all()
