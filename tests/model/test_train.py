"""Training and forecasting behaviour on small synthetic panels (tiny model, CPU, seconds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.model.checkpoint import Checkpoint, fit_scalers
from lstm_pipeline.model.forecast import predict
from lstm_pipeline.model.network import LSTMForecaster
from lstm_pipeline.model.scaling import fit_scaler
from lstm_pipeline.model.seasonal import naive, seasonal_naive
from lstm_pipeline.model.train import EpochLog, TrainResult, fit

FREQ = "MS"
L, H = 12, 6  # the small window used everywhere but the sine test


def config(**sections: dict[str, Any]) -> PipelineConfig:
    overrides: dict[str, dict[str, Any]] = {
        "window": {"lookback": L, "horizon": H},
        "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "train": {"max_epochs": 3, "batch_size": 32, "patience": 100, "device": "cpu", "seed": 0},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_config(overrides=overrides, environ={})


def series(uid: str, y: np.ndarray, start: str = "2010-01-01") -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(y), freq=FREQ), "y": y})


def sines(n_series: int, n: int, noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Noisy sines with period 12, amplitude 1, a random phase and a level of 10 * i."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.concat(
        [
            series(f"s{i}", 10.0 * i + np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi)) + rng.normal(0, noise, n))
            for i in range(n_series)
        ],
        ignore_index=True,
    )


def rmse_against(truth: pd.DataFrame, forecast: pd.DataFrame) -> float:
    joined = truth.merge(forecast, on=["unique_id", "ds"], how="inner", validate="one_to_one")
    assert len(joined) == len(truth)
    return float(np.sqrt(np.mean((joined["y"] - joined["yhat"]) ** 2)))


# --- (a) it learns ------------------------------------------------------------------


@pytest.mark.slow
def test_loss_falls_and_forecast_is_accurate_on_a_learnable_sine() -> None:
    # Season length 1 makes the model's built-in base plain naive (and drops the calendar
    # features), so an accurate forecast of the sine has to be learnt by the LSTM itself;
    # with season 12 an untrained model is already seasonal naive and nothing is left to learn.
    full = sines(n_series=6, n=120)
    train, future = full.groupby("unique_id").head(108), full.groupby("unique_id").tail(12)
    cfg = config(
        window={"lookback": 24, "horizon": 12},
        data={"season_length": 1},
        train={"max_epochs": 20, "lr": 1e-2},
    )
    seen: list[EpochLog] = []
    result = fit(train, cfg, FREQ, callbacks=[seen.append])

    assert result.mode == "retrain" and not result.diverged
    assert len(result.history) == 20 and list(result.history) == seen  # callback got every epoch
    first, last = result.history[0].val_loss, result.history[-1].val_loss
    # measured: first ~1.0, last ~0.08-0.11 (scaled MAE) over training seeds 0-5
    assert last < first / 4

    fc = predict(result.checkpoint, train, device="cpu").frame
    error = rmse_against(future, fc)
    # measured: ~0.08-0.095 in original units (noise 0.05); naive is ~0.96
    assert error < 0.3
    assert error < rmse_against(future, naive(train, 12, FREQ)) / 3


# --- (b) reproducible ----------------------------------------------------------------


def state(result: TrainResult) -> dict[str, torch.Tensor]:
    return dict(result.checkpoint.state_dict)


@pytest.mark.slow
def test_fixed_seed_gives_identical_weights() -> None:
    frame = sines(n_series=3, n=48)
    one, two = fit(frame, config(), FREQ), fit(frame, config(), FREQ)
    assert state(one).keys() == state(two).keys()
    assert all(torch.equal(state(one)[k], state(two)[k]) for k in state(one))
    assert [h.train_loss for h in one.history] == [h.train_loss for h in two.history]
    other = fit(frame, config(train={"seed": 1}), FREQ)
    assert not all(torch.equal(state(one)[k], state(other)[k]) for k in state(one))


@pytest.mark.slow
def test_the_weight_average_changes_what_is_scored_and_kept_not_the_optimisation() -> None:
    frame = sines(n_series=3, n=48)
    raw = fit(frame, config(train={"ema_decay": 0.0}), FREQ)
    averaged = fit(frame, config(train={"ema_decay": 0.9}), FREQ)
    assert [h.train_loss for h in raw.history] == [h.train_loss for h in averaged.history]
    assert [h.val_loss for h in raw.history] != [h.val_loss for h in averaged.history]
    assert not all(torch.equal(state(raw)[k], state(averaged)[k]) for k in state(raw))


@pytest.mark.slow
def test_an_epoch_draws_at_most_max_windows_per_epoch() -> None:
    frame = sines(n_series=3, n=48)
    everything = fit(frame, config(train={"max_windows_per_epoch": None}), FREQ)
    capped = fit(frame, config(train={"max_windows_per_epoch": 20}), FREQ)
    # Cutoffs at local rows 11..40 of each series (padding ahead, the last H held out):
    # 36 points per series up to the split, the first 11 observations too few for a cutoff
    # before the padding's end... every observed cutoff from the first point on counts.
    assert everything.n_train_windows == capped.n_train_windows == 3 * (48 - H - 1)
    # The batch shrinks so that an epoch keeps 16 steps or so; three epochs each.
    per_epoch = everything.n_train_windows
    assert everything.steps == 3 * -(-per_epoch // -(-per_epoch // 16))
    assert capped.steps == 3 * 10  # 20 windows in batches of 2


# --- (c) fine-tuning ------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_starts_from_the_checkpoint_and_keeps_known_scaler_stats() -> None:
    rng = np.random.default_rng(5)
    old = pd.concat([series("a", rng.normal(0, 1, 48)), series("b", rng.normal(50, 5, 48))], ignore_index=True)
    base = fit(old, config(train={"max_epochs": 2}), FREQ)
    assert base.checkpoint.state_dict["head.2.weight"].abs().sum() > 0  # moved off the zero init

    # New data: a and b grow by 24 points on another level, and c is new.
    grown = pd.concat(
        [
            old,
            series("a", rng.normal(20, 3, 24), start="2014-01-01"),
            series("b", rng.normal(-50, 1, 24), start="2014-01-01"),
            series("c", rng.normal(7, 2, 40)),
        ],
        ignore_index=True,
    )
    # A vanishing learning rate: whatever it trains, the weights stay where they started.
    cfg = config(train={"max_epochs": 2, "finetune_epochs": 4, "finetune_lr": 1e-12})
    tuned = fit(grown, cfg, FREQ, init=base.checkpoint)

    assert tuned.mode == "finetune"
    assert len(tuned.history) == 4  # finetune_epochs, not max_epochs
    assert tuned.history[0].lr == 1e-12
    for name, weights in base.checkpoint.state_dict.items():
        torch.testing.assert_close(tuned.checkpoint.state_dict[name], weights, rtol=0, atol=1e-8)

    stats = tuned.checkpoint.scaler.stats
    assert stats["a"] == base.checkpoint.scaler.stats["a"]
    assert stats["b"] == base.checkpoint.scaler.stats["b"]
    refit = fit_scaler({"a": grown.loc[grown["unique_id"] == "a", "y"].to_numpy()[:-H]}).stats["a"]
    assert refit != stats["a"]  # so keeping them was a choice, not a coincidence
    c = grown.loc[grown["unique_id"] == "c", "y"].to_numpy()
    # New series: fitted on its rows before the validation split, a date: c ended in 2013,
    # long before the split (the last H months up to 2015-12), so all 40 of its points.
    assert stats["c"] == fit_scaler({"c": c}).stats["c"]


# --- (d) short series, gaps, the validation split and the fixed refit ---------------------


def test_series_shorter_than_lookback_plus_horizon_are_trained_on() -> None:
    rng = np.random.default_rng(2)
    frame = pd.concat(
        [
            series("long", rng.normal(0, 1, 60)),
            series("short", rng.normal(0, 1, 10), start="2014-03-01"),  # ends with long: 10 < L + H
            series("tiny", rng.normal(0, 1, 2), start="2014-11-01"),
        ],
        ignore_index=True,
    )
    result = fit(frame, config(train={"max_epochs": 1}), FREQ)
    # tiny's two points lie in the validation split: nothing to learn from before it.
    assert list(result.skipped_series) == ["tiny"]
    assert set(result.checkpoint.scaler.stats) == {"long", "short"}
    # Every observed cutoff with an observed target up to the split (the last H periods are
    # validation): long 60 - H - 1, short 10 - H - 1, tiny none (its 2 points are in the split).
    assert result.n_train_windows == (60 - H - 1) + (10 - H - 1)
    assert result.n_val_windows == 2  # long and short are observed at the split
    assert result.train_end == pd.Timestamp("2014-06-01") and result.data_end == pd.Timestamp("2014-12-01")


def test_a_series_that_starts_in_the_validation_split_is_left_out_and_reported() -> None:
    frame = pd.concat([series("old", np.arange(48.0)), series("new", np.arange(3.0), start="2013-10-01")])
    result = fit(frame, config(train={"max_epochs": 1}), FREQ)
    assert list(result.skipped_series) == ["new"] and "before the validation split" in result.skipped_series["new"]


def test_missing_periods_are_not_targets_and_not_contiguous() -> None:
    full = sines(n_series=1, n=48)
    gappy = full.drop(index=[20, 21, 22])  # three months missing
    with_gap = fit(gappy, config(train={"max_epochs": 1}), FREQ)
    complete = fit(full, config(train={"max_epochs": 1}), FREQ)
    # The gap's three periods are neither cutoffs nor targets: three fewer windows.
    assert with_gap.n_train_windows == complete.n_train_windows - 3


@pytest.mark.slow
def test_a_fixed_run_trains_on_everything_for_the_given_epochs_and_learning_rates() -> None:
    frame = sines(n_series=3, n=48)
    validated = fit(frame, config(train={"max_epochs": 6}), FREQ)
    refit = fit(frame, config(train={"max_epochs": 6}), FREQ, epochs=4, lr_schedule=[1e-3, 1e-3, 5e-4, 5e-4])
    assert len(refit.history) == 4 and refit.best_epoch == 4
    assert [e.lr for e in refit.history] == [1e-3, 1e-3, 5e-4, 5e-4]
    assert refit.n_val_windows == 0 and refit.train_end == refit.data_end == frame["ds"].max()
    assert refit.n_train_windows > validated.n_train_windows  # the last H periods are training data now
    # The scaler of the refit has seen every observation.
    y = frame.loc[frame["unique_id"] == "s0", "y"].to_numpy()
    assert refit.checkpoint.scaler.stats["s0"] == fit_scaler({"s0": y}).stats["s0"]


def test_training_with_nothing_to_learn_from_raises() -> None:
    frame = series("one", np.arange(1, dtype=float))
    with pytest.raises(ValueError, match="no series"):
        fit(frame, config(), FREQ)


# --- (e) forecast --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> Checkpoint:
    return fit(sines(n_series=3, n=48), config(train={"max_epochs": 2}), FREQ).checkpoint


@pytest.mark.slow
def test_predict_gives_h_rows_per_series_after_each_last_observation(trained: Checkpoint) -> None:
    history = pd.concat(
        [
            sines(n_series=2, n=48),  # s0, s1: known to the model, end 2013-12-01
            series("new", np.linspace(5, 9, 20), start="2015-03-01"),  # unseen: ends 2016-10-01
            series("short", np.ones(L - 1)),  # shorter than the lookback: padded, still forecast
        ],
        ignore_index=True,
    ).sample(frac=1.0, random_state=0)
    result = predict(trained, history, device="cpu")
    fc = result.frame

    assert result.skipped == {}
    assert list(fc.columns) == ["unique_id", "ds", "cutoff", "step", "yhat"]
    assert fc.groupby("unique_id").size().to_dict() == {"new": H, "s0": H, "s1": H, "short": H}
    last = history.groupby("unique_id")["ds"].max()
    for uid, g in fc.groupby("unique_id"):
        assert (g["cutoff"] == last[uid]).all()
        assert g["ds"].tolist() == list(pd.date_range(last[uid], periods=H + 1, freq=FREQ)[1:])
        assert g["step"].tolist() == list(range(1, H + 1))
    assert fc.loc[fc["unique_id"] == "new", "ds"].iloc[0] == pd.Timestamp("2016-11-01")
    assert np.isfinite(fc["yhat"]).all()


@pytest.mark.slow
def test_a_gap_at_the_end_of_the_window_is_carried_not_closed(trained: Checkpoint) -> None:
    # Dropping a month inside the last lookback changes the input (carried value, mask 0),
    # not the dates: the forecast still starts one month after the last observation.
    full = sines(n_series=1, n=48)
    gappy = full.drop(index=[45])
    a, b = predict(trained, full, device="cpu").frame, predict(trained, gappy, device="cpu").frame
    assert a["ds"].tolist() == b["ds"].tolist()
    assert not np.allclose(a["yhat"], b["yhat"])


def test_untrained_checkpoint_forecasts_seasonal_naive_in_original_units() -> None:
    history = pd.concat(
        [series("a", 100 + 10 * np.sin(np.arange(30.0))), series("b", np.arange(20.0) ** 2, start="2012-05-01")],
        ignore_index=True,
    )
    cfg = config()
    scaler, cov = fit_scalers(history, ())
    torch.manual_seed(0)
    net = LSTMForecaster(4, H, season_length=12, **cfg.model.model_dump())  # zero head: seasonal naive
    ckpt = Checkpoint(model=cfg.model, window=cfg.window, freq=FREQ, season_length=12, covariates=(),
                      scaler=scaler, cov_scalers=cov, state_dict=net.state_dict())
    fc = predict(ckpt, history, device="cpu").frame
    expected = seasonal_naive(history, H, FREQ, 12)
    pd.testing.assert_frame_equal(fc.drop(columns="yhat"), expected.drop(columns="yhat"))
    np.testing.assert_allclose(fc["yhat"], expected["yhat"], rtol=1e-5)


@pytest.mark.slow
def test_early_stopping_without_validation_windows_says_so(caplog: pytest.LogCaptureFixture) -> None:
    panel = sines(3, 60)
    # Every series misses the period where the validation split starts: no validation window.
    split = panel["ds"].max() - pd.DateOffset(months=H)
    result = fit(panel[panel["ds"] != split], config(train={"max_epochs": 2}), FREQ)
    assert result.n_val_windows == 0 and result.stopped_on == "training loss"
    assert "early stopping watches the training loss" in caplog.text
    validated = fit(panel, config(train={"max_epochs": 2}), FREQ)
    assert validated.n_val_windows > 0 and validated.stopped_on == "validation"
