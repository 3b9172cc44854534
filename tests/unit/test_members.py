"""Members and combinations: exact weighted means, statistical fits on awkward series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.evaluate import members
from lstm_pipeline.evaluate.backtest import BacktestResult
from lstm_pipeline.evaluate.procedure import best_choice, choice_name, choices, weights_of


def frame(values: dict[str, list[float]], start: str = "2020-01-01") -> pd.DataFrame:
    rows = [(uid, d, v) for uid, vs in values.items()
            for d, v in zip(pd.date_range(start, periods=len(vs), freq="MS"), vs, strict=True)]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "yhat"])


def test_combine_is_the_weighted_mean_and_renormalises_where_a_member_is_missing() -> None:
    lstm = frame({"a": [10.0, 20.0]})  # no forecast for b
    ets = frame({"a": [30.0, 40.0], "b": [1.0, 2.0]})
    out = members.combine({"lstm": lstm, "auto_ets": ets}, {"lstm": 0.25, "auto_ets": 0.75})
    got = out.set_index(["unique_id", "ds"])["yhat"]
    assert got.loc["a"].tolist() == [0.25 * 10 + 0.75 * 30, 0.25 * 20 + 0.75 * 40]
    assert got.loc["b"].tolist() == [1.0, 2.0]  # b: the members that have it, weights renormalised


def test_combine_refuses_a_weighted_member_without_a_forecast() -> None:
    with pytest.raises(ValueError, match="theta"):
        members.combine({"lstm": frame({"a": [1.0]})}, {"lstm": 0.5, "theta": 0.5})


def test_choices_are_the_combination_then_each_member_and_weights_follow_the_name() -> None:
    cfg = PipelineConfig()
    assert choices(cfg) == ("lstm+auto_ets+theta", "lstm+auto_ets", "lstm+theta", "auto_ets+theta",
                            "lstm", "auto_ets", "theta")
    assert weights_of("lstm+auto_ets") == {"lstm": 0.5, "auto_ets": 0.5}
    assert choice_name(["auto_ets", "theta"]) == "auto_ets+theta"
    assert members.describe({"lstm": 0.5, "auto_ets": 0.5, "theta": 0.0}) == "lstm:0.5 auto_ets:0.5"
    alone = cfg.with_overrides({"combine": {"members": ["lstm"]}})
    assert choices(alone) == ("lstm",) and alone.lstm_ensemble == 3 and cfg.lstm_ensemble == 1


def test_unknown_members_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="combine.members"):
        PipelineConfig().with_overrides({"combine": {"members": ["lstm", "prophet"]}})


def test_statistical_members_forecast_every_series_short_gappy_or_constant() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(60)
    long = 100 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, 60)
    rows = [("long", d, v) for d, v in zip(pd.date_range("2015-01-01", periods=60, freq="MS"), long, strict=True)]
    rows += [("short", d, float(i)) for i, d in enumerate(pd.date_range("2019-09-01", periods=4, freq="MS"))]
    rows += [("flat", d, 5.0) for d in pd.date_range("2018-01-01", periods=24, freq="MS")]
    gappy = pd.date_range("2017-01-01", periods=36, freq="MS").delete([10, 11, 20])
    rows += [("gappy", d, 50.0 + i) for i, d in enumerate(gappy)]
    history = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
    out = members.statistical_forecasts(history, ["auto_ets", "theta", "seasonal_naive"], 6, "MS", 12, n_jobs=1)
    for name, fc in out.items():
        assert sorted(fc["unique_id"].unique()) == ["flat", "gappy", "long", "short"], name
        assert fc.groupby("unique_id").size().eq(6).all() and np.isfinite(fc["yhat"]).all(), name
        # Each forecast starts the period after its series' last observation.
        first = fc.groupby("unique_id")["ds"].min()
        assert first["short"] == pd.Timestamp("2020-01-01") and first["flat"] == pd.Timestamp("2020-01-01")
    assert np.allclose(out["auto_ets"].query("unique_id == 'flat'")["yhat"], 5.0)


def test_a_backtest_combination_is_scored_on_the_same_rows_as_its_parts() -> None:
    keys = {"window": [0, 0, 1], "unique_id": ["a", "a", "a"], "cutoff": pd.to_datetime(["2020-01-01"] * 2 + ["2020-03-01"]),
            "ds": pd.to_datetime(["2020-02-01", "2020-03-01", "2020-04-01"]), "step": [1, 2, 1], "y": [1.0, 2.0, 3.0]}
    parts = [pd.DataFrame({**keys, "yhat": yhat, "model": name})
             for name, yhat in (("lstm", [2.0, 4.0, 6.0]), ("auto_ets", [0.0, 0.0, 0.0]))]
    cols = ["model", "window", "unique_id", "cutoff", "ds", "step", "y", "yhat"]
    result = BacktestResult(pd.concat(parts, ignore_index=True)[cols],
                            pd.DataFrame({"window": [0, 1], "unique_id": ["a", "a"], "scale": [1.0, 1.0]}))
    combined = result.with_combinations({"lstm+auto_ets": {"lstm": 0.5, "auto_ets": 0.5}})
    mean = combined.predictions.query("model == 'lstm+auto_ets'")
    assert mean["yhat"].tolist() == [1.0, 2.0, 3.0] and mean["y"].tolist() == [1.0, 2.0, 3.0]
    assert combined.summary().loc["lstm+auto_ets", "mae"] == 0.0
    # A combination whose parts were not backtested is left out.
    assert "lstm+theta" not in combined.with_combinations({"lstm+theta": {"lstm": 0.5, "theta": 0.5}}).models()


def test_a_smaller_choice_is_served_only_when_it_is_better_by_the_margin() -> None:
    rows = []
    for model, err in (("lstm+auto_ets+theta", 1.00), ("lstm+auto_ets", 0.98), ("lstm", 0.90)):
        rows.append({"model": model, "window": 0, "unique_id": "a", "cutoff": pd.Timestamp("2020-01-01"),
                     "ds": pd.Timestamp("2020-02-01"), "step": 1, "y": 0.0, "yhat": err})
    result = BacktestResult(pd.DataFrame(rows), pd.DataFrame({"window": [0], "unique_id": ["a"], "scale": [1.0]}))
    candidates = ("lstm+auto_ets+theta", "lstm+auto_ets", "lstm")
    assert best_choice(result, candidates, margin=0.0) == "lstm"
    assert best_choice(result, candidates, margin=0.05) == "lstm"  # 10 % better
    assert best_choice(result, candidates, margin=0.15) == "lstm+auto_ets+theta"  # nothing clears 15 %
