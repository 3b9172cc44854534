"""Fixtures for tests against real Delta tables in a temporary folder, and a real MLflow
SQLite store with a trained model in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.lake.tables import Lake
from tests.conftest import trend_seasonal

N_SERIES = 8


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


@dataclass(frozen=True)
class Trained:
    cfg: PipelineConfig
    tmp: Path
    data: pd.DataFrame  # 100 months; the lake holds the first 96
    model_id: str  # the logged model of v1, registered again by the tests
    run_id: str


def _cfg(tmp: Path, **registry: object) -> PipelineConfig:
    return load_config(overrides={
        "lake": {"root": str(tmp / "lake")},
        "window": {"lookback": 24, "horizon": 12},
        "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "train": {"max_epochs": 6, "patience": 4, "batch_size": 64, "ensemble": 1},
        "backtest": {"n_windows": 1, "step": 12, "statistical_baselines": False},
        "combine": {"members": ["lstm"]},
        "registry": {"cache_dir": str(tmp / "copies"), **registry},
    }, environ={})


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """v1 of a real model, trained on 96 months of a small panel, as champion."""
    from lstm_pipeline.registry.tracking import Registry
    from lstm_pipeline.stages import steps  # torch and mlflow: only for the tests that ask

    tmp = tmp_path_factory.mktemp("registry")
    cfg = _cfg(tmp)
    data = trend_seasonal(n_series=N_SERIES, n=100)
    data[pd.to_datetime(data["ds"]) < "2018-01-01"].to_csv(tmp / "history.csv", index=False)
    steps.run_ingest(cfg, [str(tmp / "history.csv")])
    outcome = steps.run_training(cfg, mode="retrain")
    assert outcome.version == "1" and outcome.run_id, outcome.summary()
    registry = Registry(cfg.registry, cfg.lake.root)
    if registry.version("champion") is None:  # the gate is not what these tests are about
        registry.move_aliases("1", promoted=True)
    (logged,) = registry.client.search_logged_models(experiment_ids=[registry.experiment_id])
    return Trained(cfg, tmp, data, str(logged.model_id), outcome.run_id)
