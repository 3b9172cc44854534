"""What a trained model is: weights plus everything needed to rebuild and feed it.

A checkpoint carries the model and window configuration, the frequency, the per-series
scaler statistics and the weights, so that a model trained on one machine (a GPU
worker) rebuilds and forecasts on another (a CPU-only box) with no other input.
It is saved with ``torch.save`` as plain containers and loads with ``weights_only=True``.

Model inputs per grid period (see :mod:`lstm_pipeline.model.windows`): the scaled target, the
observed mask, calendar features, then the scaled covariates.
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
from lstm_pipeline.model import grid
from lstm_pipeline.model.network import LSTMForecaster
from lstm_pipeline.model.scaling import SeriesScaler, fit_scaler, scale
from lstm_pipeline.model.windows import Panel

__all__ = [
    "FORMAT_VERSION", "Checkpoint", "SeriesStats", "build_panel", "fit_scalers", "scaled_features", "series_stats",
]

# 2: inputs gained the observed mask (feature 1).
FORMAT_VERSION = 2


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
        n_calendar = int(grid.calendar_features(pd.DatetimeIndex([]), self.season_length).shape[1])
        return 2 + n_calendar + len(self.covariates)

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
    freq: str,
    pad: int = 0,
) -> Panel:
    """Every series of ``frame`` laid out on the ``freq`` grid as model inputs.

    ``frame`` is long format (sorted or not); every series must be in ``scaler``. Each
    series spans its first to its last observation, preceded by ``pad`` padding rows;
    missing periods and padding carry the nearest observation and mask 0 (see
    :mod:`lstm_pipeline.model.grid`). Vectorised over the whole frame: no per-series loop.
    """
    if frame.empty:
        return Panel((), np.zeros((0, 2), np.float32), *(np.zeros(0, np.int64) for _ in range(3)), pad)
    frame = frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    codes, uniques = pd.factorize(frame["unique_id"], sort=True)
    ids = [str(u) for u in uniques]
    stats = series_stats(scaler, cov_scalers, covariates, ids)
    if not stats.known.all():
        raise KeyError(ids[int(np.argmin(stats.known))])
    pos = grid.positions(frame["ds"], freq)
    bounds = np.flatnonzero(np.diff(codes, prepend=-1, append=len(ids)))  # first row of each series, then the end
    first, last = pos[bounds[:-1]], pos[bounds[1:] - 1]
    lengths = last - first + 1 + pad
    lay = grid.layout(codes, pos, first - pad, lengths)
    grid_codes = np.repeat(np.arange(len(ids)), lengths)
    values = scaled_features(
        frame["y"].to_numpy(np.float64)[lay.source],
        grid.dates(lay.row_positions(), freq, like=frame["ds"].iloc[0]),
        _covariate_matrix(frame, covariates)[lay.source],
        lay.observed,
        stats.take(grid_codes),
        season_length,
    )
    return Panel(tuple(ids), values, lay.offsets, lengths.astype(np.int64), first - pad, pad)


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
    y: np.ndarray, ds: np.ndarray | pd.DatetimeIndex, covs: np.ndarray, observed: np.ndarray, stats: SeriesStats,
    season_length: int,
) -> np.ndarray:
    """Model input rows ``[n, F]`` float32: ``[scaled y, mask, calendar..., scaled covariates...]``.

    Everything is per grid row: ``y`` ``[n]`` (carried over gaps), ``ds`` ``[n]`` timestamps,
    ``covs`` ``[n, C]``, ``observed`` ``[n]`` bool and ``stats`` holding the statistics of
    each row's series (``SeriesStats.take(codes)``). Scaling is done in float64 and rounded
    once, as :meth:`SeriesScaler.transform` does.
    """
    z = scale(y, stats.loc, stats.scale)[:, None]  # [n] -> [n, 1]
    mask = np.asarray(observed, dtype=np.float64)[:, None]  # [n, 1]
    calendar = grid.calendar_features(pd.DatetimeIndex(ds), season_length)  # [n, 0 or 2]
    cov = scale(covs, stats.cov_loc, stats.cov_scale)  # [n, C]
    return np.concatenate([z, mask, calendar, cov], axis=1).astype(np.float32)


def _covariate_matrix(frame: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    """``[n, C]`` float64 covariate values of ``frame`` (``[n, 0]`` without covariates)."""
    if not covariates:
        return np.zeros((len(frame), 0))
    return np.asarray(frame[list(covariates)].to_numpy(dtype=np.float64))
