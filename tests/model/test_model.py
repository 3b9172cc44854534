"""The LSTM module: shapes, the seasonal-naive starting point, and checkpoint round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_pipeline.model import grid
from lstm_pipeline.model.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    build_panel,
    fit_scalers,
)
from lstm_pipeline.config import ModelConfig, WindowConfig
from lstm_pipeline.model.network import LSTMForecaster

B, L, H, F = 5, 12, 7, 4  # features: target, mask, two more


def window(seed: int = 0, batch: int = B, lookback: int = L, n_features: int = F, observed: int | None = None
           ) -> torch.Tensor:
    """Random windows; feature 1 is the mask: the last ``observed`` steps observed (default all)."""
    x = torch.randn(batch, lookback, n_features, generator=torch.Generator().manual_seed(seed))
    if n_features > 1:
        x[:, :, 1] = 0.0
        x[:, lookback - (lookback if observed is None else observed):, 1] = 1.0
    return x


@pytest.mark.parametrize(
    ("bidirectional", "proj_size", "num_layers"),
    [(False, 0, 1), (True, 0, 2), (False, 8, 2), (True, 8, 1)],
)
def test_output_shape_is_batch_by_horizon(bidirectional: bool, proj_size: int, num_layers: int) -> None:
    torch.manual_seed(0)
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=num_layers, bidirectional=bidirectional,
                         proj_size=proj_size, season_length=4)
    out = net(window())
    assert out.shape == (B, H)
    assert out.dtype == torch.float32
    assert net.head[0].in_features == (proj_size or 16) * (2 if bidirectional else 1)


def test_target_and_mask_only_and_a_batch_of_one() -> None:
    net = LSTMForecaster(2, H, hidden_size=16, num_layers=1)
    assert net(window(batch=1, n_features=2)).shape == (1, H)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_untrained_model_is_seasonal_naive(bidirectional: bool) -> None:
    torch.manual_seed(0)
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=2, bidirectional=bidirectional, season_length=4).eval()
    x = window()
    y = x[:, :, 0]
    # last season (4 steps) repeated to 7: positions -4, -3, -2, -1, -4, -3, -2
    expected = torch.cat([y[:, -4:], y[:, -4:-1]], dim=1)
    assert torch.equal(net(x), expected)


@pytest.mark.parametrize("season_length", [1, L + 1, 52])
def test_untrained_model_is_naive_without_a_season_that_fits_the_window(season_length: int) -> None:
    torch.manual_seed(0)
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=1, season_length=season_length).eval()
    x = window()
    assert torch.equal(net(x), x[:, -1:, 0].expand(B, H))


def test_untrained_model_is_naive_when_the_window_holds_less_than_a_season_of_the_series() -> None:
    # A short series, padded: 3 observed steps (mask 1) after 9 of padding, season 4.
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=1, season_length=4).eval()
    x = window(observed=3)
    assert torch.equal(net(x), x[:, -1:, 0].expand(B, H))
    x = window(observed=4)  # one whole season since the series began: seasonal naive
    assert torch.equal(net(x), torch.cat([x[:, -4:, 0], x[:, -4:-1, 0]], dim=1))


def test_a_window_shifted_and_stretched_gives_the_forecast_shifted_and_stretched() -> None:
    # Inputs are taken relative to the window's last value and scaled by its mean absolute
    # change, and the output is scaled back: a * x + b in, a * forecast + b out (a > 0).
    torch.manual_seed(0)
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=1, season_length=4).eval()
    torch.nn.init.normal_(net.head[-1].weight)  # a "trained" head
    x = window()
    moved = x.clone()
    moved[:, :, 0] = 3.0 * x[:, :, 0] + 50.0
    torch.testing.assert_close(net(moved), 3.0 * net(x) + 50.0, rtol=1e-5, atol=1e-4)


def test_untrained_model_season_equal_to_lookback_repeats_the_whole_window() -> None:
    net = LSTMForecaster(F, 2 * L + 1, hidden_size=16, num_layers=1, season_length=L).eval()
    x = window()
    y = x[:, :, 0]
    assert torch.equal(net(x), torch.cat([y, y, y[:, :1]], dim=1))


def test_forecast_does_not_depend_on_other_windows_in_the_batch() -> None:
    torch.manual_seed(0)
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=2, dropout=0.0, season_length=4).eval()
    torch.nn.init.normal_(net.head[-1].weight)
    x = window()
    torch.testing.assert_close(net(x)[2:3], net(x[2:3]))


@pytest.mark.slow  # trains
def test_training_moves_away_from_seasonal_naive() -> None:
    torch.manual_seed(0)
    net = LSTMForecaster(F, H, hidden_size=16, num_layers=1, season_length=4)
    x, target = window(), torch.zeros(B, H)
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(net(x), target))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), target)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * before
    assert net.head[-1].weight.abs().sum() > 0


def make_checkpoint(season_length: int = 12, proj_size: int = 0, bidirectional: bool = False) -> Checkpoint:
    frame = pd.DataFrame({
        "unique_id": ["a"] * 30 + ["b"] * 30,
        "ds": list(pd.date_range("2020-01-01", periods=30, freq="MS")) * 2,
        "y": np.r_[np.arange(30.0), np.sin(np.arange(30.0)) * 5 + 100],
    })
    scaler, cov = fit_scalers(frame, ())
    model_cfg = ModelConfig(hidden_size=16, num_layers=2, dropout=0.0, proj_size=proj_size,
                            bidirectional=bidirectional)
    n_features = 2 + (2 if season_length == 12 else 0)
    torch.manual_seed(3)
    net = LSTMForecaster(n_features, 6, season_length=season_length, **model_cfg.model_dump())
    torch.nn.init.normal_(net.head[-1].weight)  # a "trained" head: output is not just the baseline
    return Checkpoint(
        model=model_cfg, window=WindowConfig(lookback=12, horizon=6), freq="MS", season_length=season_length,
        covariates=(), scaler=scaler, cov_scalers=cov, state_dict=net.state_dict(), meta={"run_id": "r1"},
    )


@pytest.mark.parametrize(("season_length", "proj_size", "bidirectional"), [(12, 0, False), (1, 8, True)])
def test_checkpoint_save_load_rebuilds_an_identical_model(
    tmp_path: Path, season_length: int, proj_size: int, bidirectional: bool
) -> None:
    ckpt = make_checkpoint(season_length, proj_size, bidirectional)
    path = tmp_path / "model.pt"
    ckpt.save(path)
    loaded = Checkpoint.load(path)

    assert loaded.model == ckpt.model and loaded.window == ckpt.window
    assert (loaded.freq, loaded.season_length, loaded.covariates) == ("MS", season_length, ())
    assert loaded.scaler == ckpt.scaler and dict(loaded.meta) == {"run_id": "r1"}
    assert loaded.n_features == ckpt.n_features == (4 if season_length == 12 else 2)

    original, rebuilt = ckpt.build(), loaded.build()
    assert not rebuilt.training
    x = window(seed=1, lookback=12, n_features=ckpt.n_features)
    out = rebuilt(x)
    assert torch.equal(out, original(x))
    assert not torch.equal(out, x[:, -1:, 0].expand(-1, 6))  # the head really contributes


def test_checkpoint_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    make_checkpoint().save(path)
    raw = torch.load(path, weights_only=True)
    raw["format"] = FORMAT_VERSION + 1
    torch.save(raw, path)
    with pytest.raises(ValueError, match="format"):
        Checkpoint.load(path)


def test_build_panel_features_are_scaled_target_mask_then_calendar() -> None:
    frame = pd.DataFrame({
        "unique_id": ["b"] * 3 + ["a"] * 2,
        "ds": list(pd.date_range("2020-01-01", periods=3, freq="MS")) + list(pd.date_range("2020-04-01", periods=2, freq="MS")),
        "y": [1.0, 2.0, 3.0, 10.0, 30.0],
    })
    scaler, cov = fit_scalers(frame, ())
    panel = build_panel(frame, scaler, cov, 12, (), "MS")
    assert panel.ids == ("a", "b") and panel.values.shape == (5, 4)
    np.testing.assert_allclose(panel.values[:, 0], [-1.0, 1.0, -np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    assert panel.values[:, 1].tolist() == [1.0] * 5  # every period observed
    np.testing.assert_allclose(panel.values[0, 2:], [1.0, 0.0], atol=1e-6)  # April
    np.testing.assert_allclose(panel.values[2, 2:], [0.0, 1.0], atol=1e-6)  # January


def test_build_panel_pads_short_series_and_marks_gaps() -> None:
    frame = pd.DataFrame({
        "unique_id": ["a"] * 3,
        "ds": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-04-01"]),  # March missing
        "y": [1.0, 2.0, 4.0],
    })
    scaler, cov = fit_scalers(frame, ())
    panel = build_panel(frame, scaler, cov, 12, (), "MS", pad=2)
    assert panel.lengths.tolist() == [6] and panel.start.tolist() == [int(grid.positions(frame["ds"], "MS")[0]) - 2]
    assert panel.values[:, 1].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]  # padding, padding, Jan, Feb, gap, Apr
    z = scaler.transform("a", np.array([1.0, 1.0, 1.0, 2.0, 2.0, 4.0]))  # carried back, then forward
    np.testing.assert_allclose(panel.values[:, 0], z, rtol=1e-6)
    march = grid.calendar_features(pd.DatetimeIndex(["2020-03-01"]), 12)[0]
    np.testing.assert_allclose(panel.values[4, 2:], march, atol=1e-6)  # the gap is still March...
    np.testing.assert_allclose(panel.values[0, 2:], grid.calendar_features(pd.DatetimeIndex(["2019-11-01"]), 12)[0],
                               atol=1e-6)  # ... and the padding November, December
