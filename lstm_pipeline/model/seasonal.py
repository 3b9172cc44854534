"""Seasonal naive and the MASE scale: the one home of both, and of their short-history rules.

Both work on the frequency grid (:mod:`lstm_pipeline.model.grid`), so a series with missing
periods is never treated as contiguous:

* **Seasonal naive** repeats the last season: the forecast ``h`` steps after the cutoff
  ``T`` is the value at ``T - m + 1 + (h - 1) mod m`` (carried forward over a missing
  period). A series whose history spans fewer than ``m`` periods gets naive (its last
  value): :func:`forecast_season`.
* **The MASE scale** of a history is the mean absolute seasonal difference
  ``|y_t - y_{t-m}|`` over the pairs of periods that were both observed (Hyndman &
  Koehler, 2006); with no such pair (a history of ``m`` periods or fewer, or gaps), the
  mean absolute first difference; with none of those either, undefined (NaN). A scale
  that is zero or negligible next to the series' level (a constant series) is reported
  as undefined too: dividing by it would let one flat series dominate a mean MASE.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_pipeline.model import grid

__all__ = ["forecast_season", "mase_scale", "mase_scales", "naive", "seasonal_naive"]

# A scale below this fraction of the series' mean absolute level counts as zero.
_NEGLIGIBLE = 1e-8


def forecast_season(span: int | np.ndarray, season_length: int) -> int | np.ndarray:
    """The period seasonal naive repeats: ``m`` when the history spans at least ``m``
    periods, else 1 (naive)."""
    m = max(int(season_length), 1)
    if isinstance(span, np.ndarray):
        return np.where(span >= m, m, 1)
    return m if span >= m else 1


def mase_scale(history: np.ndarray, season_length: int) -> float:
    """The MASE scale of one history on a complete grid (``NaN`` marks a missing period)."""
    y = np.asarray(history, dtype=np.float64)
    frame = pd.DataFrame({"unique_id": np.zeros(len(y), dtype=np.int64), "pos": np.arange(len(y)), "y": y})
    frame = frame[np.isfinite(y)]
    if frame.empty:
        return float("nan")
    return float(_scales(np.zeros(len(frame), np.int64), frame["pos"].to_numpy(), frame["y"].to_numpy(), 1,
                         season_length)[0])


def mase_scales(history: pd.DataFrame, freq: str, season_length: int) -> pd.Series:
    """The MASE scale of every series of a long frame (``unique_id, ds, y``), by id."""
    frame = history.sort_values(["unique_id", "ds"], kind="stable")
    codes, ids = pd.factorize(frame["unique_id"], sort=True)
    pos = grid.positions(frame["ds"], freq)
    scales = _scales(codes, pos, frame["y"].to_numpy(np.float64), len(ids), season_length)
    return pd.Series(scales, index=pd.Index([str(u) for u in ids], name="unique_id"), name="scale")


def naive(history: pd.DataFrame, horizon: int, freq: str) -> pd.DataFrame:
    """Each series' last value repeated: seasonal naive with a season of one period."""
    return seasonal_naive(history, horizon, freq, season_length=1)


def seasonal_naive(history: pd.DataFrame, horizon: int, freq: str, season_length: int) -> pd.DataFrame:
    """Seasonal naive from each series' last observation: ``unique_id, ds, cutoff, step, yhat``."""
    frame = history.sort_values(["unique_id", "ds"], kind="stable")
    codes, ids = pd.factorize(frame["unique_id"], sort=True)
    pos = grid.positions(frame["ds"], freq)
    first = np.full(len(ids), np.iinfo(np.int64).max)
    np.minimum.at(first, codes, pos)
    last = np.full(len(ids), np.iinfo(np.int64).min)
    np.maximum.at(last, codes, pos)
    m = np.asarray(forecast_season(last - first + 1, season_length))  # [S]
    # The last m periods of each series, carried forward over gaps.
    season = grid.layout(codes, pos, last - m + 1, m)
    y = frame["y"].to_numpy(np.float64)[season.source]  # [sum m]
    step = np.arange(1, horizon + 1)  # [H]
    pick = season.offsets[:, None] + (step[None, :] - 1) % m[:, None]  # [S, H] rows of the last season
    cutoffs = pd.DatetimeIndex(grid.dates(last, freq, like=frame["ds"].iloc[0]))
    target = grid.dates((last[:, None] + step[None, :]).reshape(-1), freq, like=frame["ds"].iloc[0])
    return pd.DataFrame({
        "unique_id": np.repeat(np.asarray([str(u) for u in ids], dtype=object), horizon),
        "ds": target,
        "cutoff": np.repeat(cutoffs, horizon),
        "step": np.tile(step.astype(np.int32), len(ids)),
        "yhat": y[pick].reshape(-1),
    })


def _scales(codes: np.ndarray, pos: np.ndarray, y: np.ndarray, n_series: int, season_length: int) -> np.ndarray:
    """``[S]`` MASE scales from observed rows (sorted by code, then position)."""
    m = max(int(season_length), 1)
    width = int(pos.max() - pos.min() + m + 2) if len(pos) else 1
    keys = codes.astype(np.int64) * width + (pos - (pos.min() if len(pos) else 0))

    def mean_abs_diff(lag: int) -> tuple[np.ndarray, np.ndarray]:
        at = np.searchsorted(keys, keys - lag)
        paired = (at < len(keys)) & (keys[np.minimum(at, len(keys) - 1)] == keys - lag)
        diff = np.abs(y - y[np.minimum(at, len(keys) - 1)])
        count = np.bincount(codes[paired], minlength=n_series)
        total = np.bincount(codes[paired], weights=diff[paired], minlength=n_series)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count, count

    seasonal, n_seasonal = mean_abs_diff(m) if m > 1 else (np.full(n_series, np.nan), np.zeros(n_series))
    first_diff, n_first = mean_abs_diff(1)
    scale = np.where(n_seasonal > 0, seasonal, np.where(n_first > 0, first_diff, np.nan))
    level = np.bincount(codes, weights=np.abs(y), minlength=n_series) / np.maximum(np.bincount(codes, minlength=n_series), 1)
    return np.where(scale > _NEGLIGIBLE * np.maximum(level, 1e-300), scale, np.nan)
