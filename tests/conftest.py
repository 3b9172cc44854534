"""Shared fixtures: quiet, offline settings and small synthetic data with a known shape."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.config import PipelineConfig, load_config

# Before anything imports prefect or mlflow: no telemetry, no update checks, no waiting on
# the network; a long start-up limit for the local Prefect server on a loaded 2-core box.
for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "GIT_PYTHON_REFRESH": "quiet",
}.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("MLFLOW_TRACKING_URI", None)

_MLFLOW_URIS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _no_mlflow_uri_leaks() -> Any:
    """MLflow's fluent API writes its URIs into ``os.environ``; a test that leaves them there
    would point every later test's stores (and the CLI processes they start) at its own."""
    saved = {key: os.environ.get(key) for key in _MLFLOW_URIS}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "monthly_sample.csv"


def trend_seasonal(n_series: int = 8, n: int = 96, start: str = "2010-01-01", seed: int = 0) -> pd.DataFrame:
    """Monthly series with a linear trend, a yearly cycle and a little noise.

    Seasonal naive lags the trend by one season on these (MASE near 1), so a model that
    learns anything beats it clearly: the promotion gate has a known answer. The first
    ``n`` points do not depend on ``n``, so a longer call gives the same series, extended.
    """
    ds = pd.date_range(start, periods=n, freq="MS")
    t = np.arange(n)
    frames = []
    for i in range(n_series):
        # One generator per series: a longer ``n`` extends each series, it does not redraw it.
        rng = np.random.default_rng([seed, i])
        level, slope, amp = rng.uniform(50, 500), rng.uniform(0.5, 3.0), rng.uniform(5, 40)
        y = level + slope * t + amp * np.sin(2 * np.pi * (t + i) / 12) + rng.normal(0, 1.0, n)
        frames.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": ds, "y": np.round(y, 3)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., PipelineConfig]:
    """A small, fast configuration with its lake (and MLflow store) under tmp_path."""

    def make(**sections: Any) -> PipelineConfig:
        base: dict[str, Any] = {
            "lake": {"root": str(tmp_path / "lake")},
            "window": {"lookback": 24, "horizon": 12},
            "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
            "train": {"max_epochs": 15, "patience": 8, "batch_size": 64, "finetune_epochs": 5, "ensemble": 1},
            "backtest": {"n_windows": 1, "step": 12, "statistical_baselines": False},
            # The LSTM served alone: these tests follow an LSTM champion (the combination: test_forecast_that_ships).
            "combine": {"members": ["lstm"]},
        }
        for key, value in sections.items():
            base[key] = {**base.get(key, {}), **value}
        return load_config(overrides=base, environ={})

    return make


@pytest.fixture
def trend_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write :func:`trend_seasonal` data to a CSV under tmp_path and return its path."""

    def write(name: str = "trend.csv", **kwargs: Any) -> Path:
        path = tmp_path / name
        trend_seasonal(**kwargs).to_csv(path, index=False)
        return path

    return write
