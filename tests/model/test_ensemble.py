"""An ensemble of seeds forecasts the mean of its members."""

from __future__ import annotations

import numpy as np

from lstm_pipeline.config import load_config
from lstm_pipeline.forecast import predict, predict_ensemble
from lstm_pipeline.train import fit
from tests.conftest import trend_seasonal


def test_ensemble_forecast_is_the_mean_of_its_members() -> None:
    data = trend_seasonal(n_series=3, n=72)
    data["ds"] = data["ds"].astype("datetime64[us]")
    members = [
        fit(data, load_config(overrides={"model": {"hidden_size": 8, "num_layers": 1},
                                         "train": {"max_epochs": 2, "seed": seed}}, environ={}), "MS").checkpoint
        for seed in (0, 1)
    ]
    a, b = (predict(m, data).frame for m in members)
    both = predict_ensemble(members, data).frame

    assert not np.allclose(a["yhat"], b["yhat"])  # different seeds, different models
    assert list(both["unique_id"]) == list(a["unique_id"]) and list(both["ds"]) == list(a["ds"])
    np.testing.assert_allclose(both["yhat"], (a["yhat"].to_numpy() + b["yhat"].to_numpy()) / 2, rtol=1e-6)
    assert predict_ensemble(members[:1], data).frame.equals(a)
