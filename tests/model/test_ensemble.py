"""An ensemble of seeds and input lengths forecasts the median of its members."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_pipeline.config import WindowConfig, load_config
from lstm_pipeline.evaluate.procedure import _member
from lstm_pipeline.model.forecast import predict, predict_ensemble
from lstm_pipeline.model.train import fit
from tests.conftest import trend_seasonal


def test_members_take_the_input_lengths_in_turn_and_consecutive_seeds() -> None:
    cfg = load_config(overrides={"train": {"seed": 7}, "window": {"lookbacks": [6, 9]}}, environ={})
    members = [_member(cfg, k, 12) for k in range(3)]
    assert [m.window.lookback for m in members] == [6, 9, 6]
    assert [m.train.seed for m in members] == [7, 8, 9]


def test_default_input_lengths_span_a_season_and_a_quarter_to_three_horizons() -> None:
    assert WindowConfig().input_lengths(12) == (15, 24, 36)  # monthly, horizon 12
    assert WindowConfig(horizon=8).input_lengths(4) == (5, 16, 24)  # quarterly
    assert WindowConfig(horizon=8).input_lengths(1) == (8, 16, 24)  # no season
    assert WindowConfig(lookback=10).input_lengths(12) == (10,)
    assert WindowConfig(lookbacks=(4, 5)).input_lengths(12) == (4, 5)


@pytest.mark.slow  # fits three members
def test_ensemble_forecast_is_the_median_of_its_members() -> None:
    data = trend_seasonal(n_series=3, n=72)
    data["ds"] = data["ds"].astype("datetime64[us]")
    cfg = load_config(overrides={"model": {"hidden_size": 8}, "train": {"max_epochs": 2},
                                 "window": {"lookbacks": [12, 18, 24]}}, environ={})
    members = [fit(data, _member(cfg, k, 12), "MS").checkpoint for k in range(3)]
    assert [m.window.lookback for m in members] == [12, 18, 24]
    forecasts = [predict(m, data).frame for m in members]
    both = predict_ensemble(members, data).frame

    assert not np.allclose(forecasts[0]["yhat"], forecasts[1]["yhat"])  # different models
    assert list(both["unique_id"]) == list(forecasts[0]["unique_id"]) and list(both["ds"]) == list(forecasts[0]["ds"])
    median = np.median(np.stack([f["yhat"].to_numpy() for f in forecasts]), axis=0)
    np.testing.assert_allclose(both["yhat"], median, rtol=1e-6)
    assert predict_ensemble(members[:1], data).frame.equals(forecasts[0])
