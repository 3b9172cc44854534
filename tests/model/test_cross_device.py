"""A model trained on one device forecasts the same after it is saved and loaded on a CPU.

The CPU half runs everywhere. The GPU half (train on CUDA, forecast on the CPU) needs a
GPU and is skipped where there is none: CI has no GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.model.checkpoint import Checkpoint
from lstm_pipeline.model.forecast import predict
from lstm_pipeline.model.train import fit

pytestmark = pytest.mark.slow  # every test forecasts with a model fitted for it

FREQ, L, H = "MS", 12, 6


def config(device: str) -> PipelineConfig:
    return load_config(
        overrides={
            "window": {"lookback": L, "horizon": H},
            "data": {"covariates": ("price",)},
            "model": {"hidden_size": 16, "num_layers": 2, "dropout": 0.0},
            "train": {"max_epochs": 3, "batch_size": 32, "device": device, "seed": 0},
        },
        environ={},
    )


def panel(n_series: int, n: int, seed: int, prefix: str = "s") -> pd.DataFrame:
    """Trend, yearly cycle, noise and a covariate, on a level that differs per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.concat(
        [
            pd.DataFrame({
                "unique_id": f"{prefix}{i}",
                "ds": pd.date_range("2012-01-01", periods=n, freq=FREQ),
                "y": 50.0 * (i + 1) + 0.5 * t + 5 * np.sin(2 * np.pi * (t + i) / 12) + rng.normal(0, 1, n),
                "price": rng.normal(10 + i, 2, n),
            })
            for i in range(n_series)
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    # Known series and two the model never saw (scaled on their own history at forecast time).
    return pd.concat([panel(4, 60, seed=1), panel(2, 30, seed=2, prefix="new")], ignore_index=True)


@pytest.fixture(scope="module")
def cpu_checkpoint() -> Checkpoint:
    return fit(panel(4, 60, seed=1), config("cpu"), FREQ).checkpoint


def test_checkpoint_forecasts_identically_after_save_and_load(
    tmp_path: Path, cpu_checkpoint: Checkpoint, history: pd.DataFrame
) -> None:
    path = tmp_path / "model.pt"
    cpu_checkpoint.save(path)
    loaded = Checkpoint.load(path)

    before = predict(cpu_checkpoint, history, device="cpu").frame
    after = predict(loaded, history, device="cpu").frame
    assert len(after) == 6 * H and set(after["unique_id"]) == {"s0", "s1", "s2", "s3", "new0", "new1"}
    assert cpu_checkpoint.state_dict["head.2.weight"].abs().sum() > 0  # trained: not just seasonal naive
    pd.testing.assert_frame_equal(after, before)


def test_saved_file_holds_only_cpu_tensors(tmp_path: Path, cpu_checkpoint: Checkpoint) -> None:
    # Loadable on a CPU-only machine even without map_location: no tensor remembers a GPU.
    path = tmp_path / "model.pt"
    cpu_checkpoint.save(path)
    raw = torch.load(path, weights_only=True)
    devices = {t.device.type for t in raw["state_dict"].values()}
    assert devices == {"cpu"}
    assert raw["state_dict"].keys() == cpu_checkpoint.state_dict.keys()


def test_forecast_does_not_depend_on_the_chunk_size(cpu_checkpoint: Checkpoint, history: pd.DataFrame) -> None:
    whole = predict(cpu_checkpoint, history, device="cpu").frame
    one_by_one = predict(cpu_checkpoint, history, device="cpu", chunk=1).frame
    pd.testing.assert_frame_equal(one_by_one.drop(columns="yhat"), whole.drop(columns="yhat"))
    # Only float32 rounding differs with the batch size of the forward pass.
    np.testing.assert_allclose(one_by_one["yhat"], whole["yhat"], rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_model_trained_on_gpu_forecasts_the_same_on_cpu(tmp_path: Path, history: pd.DataFrame) -> None:
    result = fit(panel(4, 60, seed=1), config("cuda"), FREQ)
    assert result.device.startswith("cuda")
    path = tmp_path / "model.pt"
    result.checkpoint.save(path)
    loaded = Checkpoint.load(path)
    assert {t.device.type for t in loaded.state_dict.values()} == {"cpu"}

    on_cpu = predict(loaded, history, device="cpu").frame
    pd.testing.assert_frame_equal(on_cpu, predict(result.checkpoint, history, device="cpu").frame)
    on_gpu = predict(result.checkpoint, history, device="cuda").frame  # bf16 autocast
    pd.testing.assert_frame_equal(on_gpu.drop(columns="yhat"), on_cpu.drop(columns="yhat"))
    # bf16 keeps about 3 significant digits of the network's correction: compare in scaled units.
    spread = history.groupby("unique_id")["y"].std().reindex(on_cpu["unique_id"]).to_numpy()
    assert np.max(np.abs(on_gpu["yhat"].to_numpy() - on_cpu["yhat"].to_numpy()) / spread) < 0.05
