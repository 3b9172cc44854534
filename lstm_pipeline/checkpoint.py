"""What a trained model is: weights plus everything needed to rebuild and feed it.

A checkpoint carries the model and window configuration, the frequency, the per-series
scaler statistics and the weights, so that a model trained on one machine (a GPU
worker) rebuilds and forecasts on another (a CPU-only box) with no other input.
It is saved with ``torch.save`` as plain containers and loads with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_pipeline.config import ModelConfig, WindowConfig
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.scaling import SeriesScaler, fit_scaler
from lstm_pipeline.windows import Panel, calendar_features

__all__ = ["FORMAT_VERSION", "Checkpoint", "build_panel", "fit_scalers"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    model: ModelConfig
    window: WindowConfig
    freq: str
    season_length: int
    covariates: tuple[str, ...]
    scaler: SeriesScaler
    cov_scalers: Mapping[str, SeriesScaler]
    state_dict: Mapping[str, torch.Tensor]
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        n_calendar = calendar_features(pd.DatetimeIndex([]), self.season_length).shape[1]
        return 1 + n_calendar + len(self.covariates)

    def build(self, device: str | torch.device = "cpu") -> LSTMForecaster:
        """The model in eval mode with the checkpoint's weights, on ``device``."""
        net = LSTMForecaster(
            self.n_features, self.window.horizon, season_length=self.season_length, **self.model.model_dump()
        )
        net.load_state_dict(self.state_dict)
        return net.to(device).eval()

    def save(self, path: str | Path) -> None:
        torch.save(
            {
                "format": FORMAT_VERSION,
                "model": self.model.model_dump(),
                "window": self.window.model_dump(),
                "freq": self.freq,
                "season_length": self.season_length,
                "covariates": list(self.covariates),
                "scaler": self.scaler.to_dict(),
                "cov_scalers": {k: v.to_dict() for k, v in self.cov_scalers.items()},
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
                "meta": dict(self.meta),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        raw: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if raw.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format {raw.get('format')!r}, expected {FORMAT_VERSION}")
        return cls(
            model=ModelConfig(**raw["model"]),
            window=WindowConfig(**raw["window"]),
            freq=raw["freq"],
            season_length=int(raw["season_length"]),
            covariates=tuple(raw["covariates"]),
            scaler=SeriesScaler.from_dict(raw["scaler"]),
            cov_scalers={k: SeriesScaler.from_dict(v) for k, v in raw["cov_scalers"].items()},
            state_dict=raw["state_dict"],
            meta=raw["meta"],
        )


def fit_scalers(
    frame: pd.DataFrame, covariates: Sequence[str], base: Checkpoint | None = None
) -> tuple[SeriesScaler, dict[str, SeriesScaler]]:
    """Scalers for the target and each covariate from ``frame`` (training rows only).

    With ``base`` (fine-tuning, or forecasting series the model has not seen), known
    series keep the base statistics and only new series are fitted.
    """
    groups = {uid: g for uid, g in frame.groupby("unique_id", sort=True)}
    target = {uid: g["y"].to_numpy() for uid, g in groups.items()}
    covs = {c: {uid: g[c].to_numpy() for uid, g in groups.items()} for c in covariates}
    if base is None:
        return fit_scaler(target), {c: fit_scaler(v) for c, v in covs.items()}
    return base.scaler.extended(target), {c: base.cov_scalers[c].extended(v) for c, v in covs.items()}


def build_panel(
    frame: pd.DataFrame,
    scaler: SeriesScaler,
    cov_scalers: Mapping[str, SeriesScaler],
    season_length: int,
    covariates: Sequence[str],
) -> Panel:
    """Features ``[scaled y, calendar..., scaled covariates...]`` of every series in ``frame``.

    ``frame`` is long format sorted by ``unique_id, ds``; every series must be in ``scaler``.
    """
    ids: list[str] = []
    arrays: list[np.ndarray] = []
    for uid, g in frame.groupby("unique_id", sort=True):
        uid = str(uid)
        cols = [scaler.transform(uid, g["y"].to_numpy())[:, None]]
        cols.append(calendar_features(g["ds"], season_length))
        cols.extend(cov_scalers[c].transform(uid, g[c].to_numpy())[:, None] for c in covariates)
        ids.append(uid)
        arrays.append(np.concatenate(cols, axis=1))
    return Panel.from_arrays(ids, arrays)
