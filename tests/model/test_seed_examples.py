"""The two classic examples every LSTM forecasting tutorial starts from, as acceptance tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.config import load_config
from lstm_pipeline.evaluate import metrics
from lstm_pipeline.model.forecast import predict
from lstm_pipeline.model.seasonal import seasonal_naive
from lstm_pipeline.model.train import fit
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_cosine_wave_is_learned_to_rmse_below_0_05_on_held_out_periods() -> None:
    # Period 20 on a daily grid: the weekly seasonal-naive base is wrong, so the LSTM
    # has to learn the wave itself.
    n, horizon = 400, 12
    t = np.arange(n + horizon)
    frame = pd.DataFrame({
        "unique_id": "cosine",
        "ds": pd.date_range("2020-01-01", periods=n + horizon, freq="D"),
        "y": np.cos(2 * np.pi * t / 20),
    })
    train, held_out = frame.iloc[:n], frame.iloc[n:]
    # One member with the ensemble's middle input length (2 horizons): the shortest default,
    # 1.25 weeks, is shorter than the wave.
    cfg = load_config(overrides={"train": {"seed": 0}, "window": {"lookback": 24}}, environ={})

    result = fit(train, cfg, "D")
    forecast = predict(result.checkpoint, train).frame

    assert list(forecast["ds"]) == list(held_out["ds"])
    assert metrics.rmse(held_out["y"].to_numpy(), forecast["yhat"].to_numpy()) < 0.05


def test_air_passengers_12_month_holdout_beats_seasonal_naive() -> None:
    frame = pd.read_csv(ROOT / "data" / "air_passengers.csv", parse_dates=["ds"])
    train, held_out = frame.iloc[:-12], frame.iloc[-12:]
    cfg = load_config(overrides={"train": {"seed": 0}}, environ={})

    result = fit(train, cfg, "MS")
    ours = predict(result.checkpoint, train).frame["yhat"].to_numpy()
    baseline = seasonal_naive(train, 12, "MS", 12)["yhat"].to_numpy()

    scale = metrics.mase_scale(train["y"].to_numpy(), 12)
    actual = held_out["y"].to_numpy()
    assert metrics.mase(actual, ours, scale) < metrics.mase(actual, baseline, scale)
    # 1960 grew on 1959: seasonal naive stays a year behind, the model must not.
    assert metrics.mase(actual, ours, scale) < 0.8 * metrics.mase(actual, baseline, scale)
