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
from lstm_pipeline.scaling import SeriesScaler, fit_scaler, scale
from lstm_pipeline.windows import Panel, calendar_features

__all__ = [
    "FORMAT_VERSION", "Checkpoint", "SeriesStats", "build_panel", "fit_scalers", "scaled_features", "series_stats",
]

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
        n_calendar = int(calendar_features(pd.DatetimeIndex([]), self.season_length).shape[1])
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
    Vectorised over the whole frame: no per-series Python loop.
    """
    if frame.empty:
        return Panel.from_arrays([], [])
    codes, uniques = pd.factorize(frame["unique_id"], sort=True)
    # Rows of a series must be contiguous; a stable sort keeps each series' own order.
    order = np.argsort(codes, kind="stable") if (np.diff(codes) < 0).any() else slice(None)
    codes = codes[order]
    ids = [str(u) for u in uniques]
    stats = series_stats(scaler, cov_scalers, covariates, ids)
    if not stats.known.all():
        raise KeyError(ids[int(np.argmin(stats.known))])
    values = scaled_features(
        frame["y"].to_numpy()[order],
        frame["ds"].to_numpy()[order],
        _covariate_matrix(frame, covariates)[order],
        stats.take(codes),
        season_length,
    )
    lengths = np.bincount(codes, minlength=len(ids)).astype(np.int64)
    offsets = (np.cumsum(lengths) - lengths).astype(np.int64)
    return Panel(tuple(ids), values, offsets, lengths)


@dataclass(frozen=True)
class SeriesStats:
    """Scaler statistics of many series (or of many rows) as arrays.

    ``loc``/``scale`` ``[S]`` for the target, ``cov_loc``/``cov_scale`` ``[S, C]`` for the
    covariates; ``known`` ``[S]`` is True where every statistic came from the scalers.
    """

    loc: np.ndarray
    scale: np.ndarray
    cov_loc: np.ndarray
    cov_scale: np.ndarray
    known: np.ndarray

    def take(self, index: np.ndarray | slice) -> SeriesStats:
        """The statistics of ``index`` (series positions), e.g. one entry per row."""
        return SeriesStats(
            self.loc[index], self.scale[index], self.cov_loc[index], self.cov_scale[index], self.known[index]
        )


def series_stats(
    scaler: SeriesScaler,
    cov_scalers: Mapping[str, SeriesScaler],
    covariates: Sequence[str],
    ids: Sequence[str],
) -> SeriesStats:
    """Look up the target and covariate statistics of ``ids`` in one pass each."""
    loc, spread, known = scaler.lookup(ids)
    cov_loc, cov_scale = np.zeros((len(ids), len(covariates))), np.ones((len(ids), len(covariates)))
    for j, c in enumerate(covariates):
        cov_loc[:, j], cov_scale[:, j], found = cov_scalers[c].lookup(ids)
        known &= found
    return SeriesStats(loc, spread, cov_loc, cov_scale, known)


def scaled_features(
    y: np.ndarray, ds: np.ndarray, covs: np.ndarray, stats: SeriesStats, season_length: int
) -> np.ndarray:
    """Model input rows ``[n, F]`` float32: ``[scaled y, calendar..., scaled covariates...]``.

    Everything is per row: ``y`` ``[n]``, ``ds`` ``[n]`` timestamps, ``covs`` ``[n, C]`` and
    ``stats`` holding the statistics of each row's series (``SeriesStats.take(codes)``).
    Scaling is done in float64 and rounded once, as :meth:`SeriesScaler.transform` does.
    """
    z = scale(y, stats.loc, stats.scale)[:, None]  # [n] -> [n, 1]
    calendar = calendar_features(pd.DatetimeIndex(ds), season_length)  # [n, 0 or 2]
    cov = scale(covs, stats.cov_loc, stats.cov_scale)  # [n, C]
    return np.concatenate([z, calendar, cov], axis=1).astype(np.float32)


def _covariate_matrix(frame: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    """``[n, C]`` float64 covariate values of ``frame`` (``[n, 0]`` without covariates)."""
    if not covariates:
        return np.zeros((len(frame), 0))
    return np.asarray(frame[list(covariates)].to_numpy(dtype=np.float64))
