"""Rolling-origin backtest on small synthetic frames with answers known in advance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.evaluate.backtest import BacktestResult, Forecaster, backtest, cutoff_dates
from lstm_pipeline.evaluate.metrics import mae, mase, r2, rmse, smape
from lstm_pipeline.model import grid
from lstm_pipeline.model.seasonal import naive, seasonal_naive

H, K, STEP = 4, 3, 2
FREQ = "MS"


def frame(series: dict[str, np.ndarray], start: dict[str, str] | None = None) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"unique_id": uid, "ds": pd.date_range((start or {}).get(uid, "2000-01-01"), periods=len(y),
                                                            freq=FREQ), "y": y})
        for uid, y in series.items()
    ]
    return pd.concat(parts, ignore_index=True)


def trends(n: int = 40) -> pd.DataFrame:
    """Two straight lines ending on the same month: slope 1 (a) and slope 2 (b)."""
    return frame({"a": np.arange(n, dtype=float), "b": 2.0 * np.arange(n, dtype=float) + 5})


def oracle(truth: pd.DataFrame, horizon: int = H) -> Forecaster:
    """A 'perfect' forecaster: reads the true future of each series from the full frame."""
    actual = truth.set_index(["unique_id", "ds"])["y"]

    def forecast(history: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for uid, cutoff in history.groupby("unique_id")["ds"].max().items():
            ds = grid.future_dates(cutoff, FREQ, horizon)
            parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "yhat": actual.loc[uid].reindex(ds).to_numpy()}))
        return pd.concat(parts, ignore_index=True)

    return forecast


def naive_fc(history: pd.DataFrame) -> pd.DataFrame:
    return naive(history, H, FREQ)


def run(series: pd.DataFrame, forecasters: dict[str, Forecaster], season_length: int = 1, min_history: int = 2,
        n_windows: int = K) -> BacktestResult:
    cuts = cutoff_dates(series, FREQ, H, n_windows, STEP)
    return backtest(series, forecasters, cuts, H, FREQ, season_length, min_history)


def test_cutoffs_are_dates_horizon_plus_steps_before_the_newest_period() -> None:
    series = trends(40)  # 2000-01 .. 2003-04
    assert cutoff_dates(series, FREQ, H, K, STEP) == [
        pd.Timestamp("2002-08-01"), pd.Timestamp("2002-10-01"), pd.Timestamp("2002-12-01")]  # 8, 6, 4 months back
    result = run(series, {"naive": naive_fc})
    last = result.predictions[(result.predictions["window"] == K - 1) & (result.predictions["unique_id"] == "a")]
    assert last["ds"].tolist() == list(pd.date_range("2003-01-01", periods=4, freq=FREQ))
    assert last["step"].tolist() == [1, 2, 3, 4]


def test_a_series_that_ended_early_is_scored_on_the_actuals_it_has_at_the_same_dates() -> None:
    # b ends two months before a: its test windows are the same calendar months, cut short.
    series = frame({"a": np.arange(40.0), "b": np.arange(38.0)})
    result = run(series, {"naive": naive_fc})
    p = result.predictions
    assert set(p["cutoff"]) == set(cutoff_dates(series, FREQ, H, K, STEP))
    for k in range(K):
        a, b = p[(p["window"] == k) & (p["unique_id"] == "a")], p[(p["window"] == k) & (p["unique_id"] == "b")]
        assert a["cutoff"].iloc[0] == b["cutoff"].iloc[0]
        assert set(b["ds"]) <= set(a["ds"])
    last_b = p[(p["window"] == K - 1) & (p["unique_id"] == "b")]
    assert last_b["step"].tolist() == [1, 2]  # the 2 months it has


def test_no_series_trains_on_another_series_test_window() -> None:
    # Ragged ends: whatever each series' length, history handed over at a cutoff never
    # reaches past that cutoff date, for any series.
    series = frame({"a": np.arange(40.0), "b": np.arange(33.0), "c": np.arange(36.0)},
                   start={"b": "2000-06-01", "c": "2000-03-01"})
    seen: list[pd.Timestamp] = []

    def recording(history: pd.DataFrame) -> pd.DataFrame:
        seen.append(history["ds"].max())
        return naive_fc(history)

    run(series, {"recording": recording})
    assert seen == cutoff_dates(series, FREQ, H, K, STEP)


def test_series_not_observed_at_a_cutoff_sit_that_window_out() -> None:
    series = trends(40)
    gap = pd.Timestamp("2002-10-01")  # window 1's cutoff
    series = series[~((series["unique_id"] == "b") & (series["ds"] == gap))]
    result = run(series, {"naive": naive_fc})
    members = result.predictions.groupby("window")["unique_id"].unique().map(set)
    assert members[0] == members[2] == {"a", "b"}
    assert members[1] == {"a"}


def test_perfect_forecaster_scores_zero() -> None:
    rng = np.random.default_rng(0)
    series = frame({"a": rng.normal(10, 2, 40), "b": np.cumsum(rng.normal(0, 1, 40))})
    summary = run(series, {"oracle": oracle(series)}, season_length=12).summary()
    assert summary.loc["oracle", "mae"] == 0.0 and summary.loc["oracle", "mase"] == 0.0
    assert summary.loc["oracle", "rmse"] == 0.0 and summary.loc["oracle", "smape"] == 0.0
    assert summary.loc["oracle", "r2"] == 1.0


def test_constant_series_have_no_mase_and_do_not_enter_its_mean() -> None:
    series = frame({"line": np.arange(40.0), "flat": np.full(40, 7.0)})
    result = run(series, {"naive": naive_fc})
    summary = result.summary()
    # naive on a unit-slope line: MAE 2.5, scale 1 -> MASE 2.5; the flat series is left out
    assert summary.loc["naive", "mase"] == pytest.approx(2.5)
    assert summary.loc["naive", "n_unscaled"] == K
    assert summary.loc["naive", "n_series"] == 2


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


def test_series_with_too_little_history_sit_out_a_window_for_every_forecaster() -> None:
    series = frame({"a": np.arange(40.0), "b": np.arange(26.0)}, start={"b": "2001-03-01"})
    seen: list[set[str]] = []

    def recording(history: pd.DataFrame) -> pd.DataFrame:
        seen.append(set(history["unique_id"]))
        return naive_fc(history)

    # b has 18, 20, 22 observations up to the three cutoffs: min_history 20 drops it from window 0
    result = run(series, {"naive": naive_fc, "recording": recording}, min_history=20)
    members = result.predictions.groupby(["model", "window"])["unique_id"].unique().map(set)
    for model in ("naive", "recording"):
        assert members[(model, 0)] == {"a"}
        assert members[(model, 1)] == members[(model, 2)] == {"a", "b"}
    assert seen == [{"a"}, {"a", "b"}, {"a", "b"}]


def test_no_series_long_enough_raises() -> None:
    with pytest.raises(ValueError, match="no series can be backtested"):
        run(trends(40), {"naive": naive_fc}, min_history=100)


def test_forecaster_that_omits_a_series_raises() -> None:
    def forgetful(history: pd.DataFrame) -> pd.DataFrame:
        fc = naive_fc(history)
        return fc[fc["unique_id"] != "b"]

    with pytest.raises(ValueError, match=r"'forgetful' gave no forecast for \['b'\]"):
        run(trends(), {"naive": naive_fc, "forgetful": forgetful})


def test_summary_of_naive_on_straight_lines() -> None:
    # Naive misses a line with slope s by s * step: MAE per window 2.5 s, MASE 2.5 for both,
    # R2 = 1 - sum(step^2) / sum((step - 2.5)^2) = 1 - 30/5.
    series = trends()
    summary = run(series, {"naive": naive_fc, "oracle": oracle(series)}, season_length=1).summary()
    naive_row = summary.loc["naive"]
    assert naive_row["mae"] == pytest.approx((2.5 + 5.0) / 2)
    assert naive_row["rmse"] == pytest.approx((math.sqrt(7.5) + math.sqrt(30.0)) / 2)
    assert naive_row["mase"] == pytest.approx(2.5) and naive_row["mase_median"] == pytest.approx(2.5)
    assert naive_row["r2"] == pytest.approx(-5.0)
    assert naive_row["n_series"] == 2 and naive_row["n_windows"] == K


def test_scores_agree_with_the_scalar_metric_functions() -> None:
    rng = np.random.default_rng(3)
    series = frame({"a": rng.normal(50, 5, 40), "b": np.cumsum(rng.normal(1, 2, 40)) + 20})
    result = run(series, {"naive": naive_fc}, season_length=3)
    scores = result.scores().set_index(["window", "unique_id"])
    scale = result.scales.set_index(["window", "unique_id"])["scale"]
    for (k, uid), g in result.predictions.groupby(["window", "unique_id"]):
        y, yhat = g["y"].to_numpy(), g["yhat"].to_numpy()
        row = scores.loc[(k, uid)]
        assert row["mae"] == pytest.approx(mae(y, yhat)) and row["rmse"] == pytest.approx(rmse(y, yhat))
        assert row["smape"] == pytest.approx(smape(y, yhat)) and row["r2"] == pytest.approx(r2(y, yhat))
        assert row["mase"] == pytest.approx(mase(y, yhat, scale[(k, uid)]))


def test_by_step_of_naive_on_straight_lines() -> None:
    series = trends()
    table = run(series, {"naive": naive_fc, "oracle": oracle(series)}, season_length=1).by_step()
    steps = np.arange(1, H + 1, dtype=float)
    np.testing.assert_allclose(table.loc["naive", "mae"].to_numpy(), 1.5 * steps)
    np.testing.assert_allclose(table.loc["naive", "mase"].to_numpy(), steps)
    assert (table.loc["oracle"] == 0.0).all().all()
