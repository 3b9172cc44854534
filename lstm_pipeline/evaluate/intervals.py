"""Conformal prediction intervals from backtest residuals, one width per horizon step.

Residuals are scaled per series by the MASE denominator (in-sample seasonal naive MAE of
the history before the cutoff), so one set of quantiles serves series of any size: the
interval of series ``i`` at step ``h`` is ``yhat ± q_h * scale_i`` (split conformal with
normalised scores). Coverage is measured honestly: with several backtest windows, each
window's coverage uses quantiles fitted on the other windows only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lstm_pipeline.model.seasonal import mase_scales

__all__ = ["LEVELS", "add_intervals", "coverage", "fit_quantiles", "scaled_residuals"]

LEVELS = (80, 95)


def scaled_residuals(predictions: pd.DataFrame, scales: pd.DataFrame) -> pd.DataFrame:
    """``window, unique_id, step, score`` with ``score = |y - yhat| / scale``."""
    p = predictions.merge(scales, on=["window", "unique_id"])
    p = p[np.isfinite(p["scale"]) & (p["scale"] > 0)]
    return p.assign(score=(p["y"] - p["yhat"]).abs() / p["scale"])[["window", "unique_id", "step", "score"]]


def fit_quantiles(residuals: pd.DataFrame, levels: Sequence[int] = LEVELS) -> dict[int, list[float]]:
    """Per level, the conformal quantile of the scores at each horizon step (1..H)."""
    out: dict[int, list[float]] = {}
    for level in levels:
        qs = []
        for _, g in residuals.groupby("step", sort=True):
            scores = np.sort(g["score"].to_numpy())
            n = len(scores)
            # Finite-sample correction: the ceil((n + 1) * level)-th smallest score.
            k = min(math.ceil((n + 1) * level / 100), n)
            qs.append(float(scores[k - 1]))
        out[level] = qs
    return out


def coverage(residuals: pd.DataFrame, levels: Sequence[int] = LEVELS) -> dict[int, float]:
    """Share of backtest points inside the interval, per level.

    Leave-one-window-out when there are several windows (quantiles never see the points
    they are checked on); with a single window this is the in-sample coverage.
    """
    windows = sorted(residuals["window"].unique())
    hits: dict[int, list[bool]] = {level: [] for level in levels}
    for w in windows:
        fit_on = residuals[residuals["window"] != w] if len(windows) > 1 else residuals
        test = residuals[residuals["window"] == w]
        quantiles = fit_quantiles(fit_on, levels)
        for level in levels:
            q = np.asarray(quantiles[level])
            hits[level].extend((test["score"].to_numpy() <= q[test["step"].to_numpy() - 1]).tolist())
    return {level: float(np.mean(h)) if h else float("nan") for level, h in hits.items()}


def add_intervals(
    forecast: pd.DataFrame,
    history: pd.DataFrame,
    quantiles: Mapping[int, Sequence[float]],
    freq: str,
    season_length: int,
) -> pd.DataFrame:
    """``forecast`` with ``yhat_lo_<level>`` / ``yhat_hi_<level>`` columns added.

    A series without a MASE scale (constant history) gets intervals of zero width.
    """
    if forecast.empty or not quantiles:
        return forecast
    scale = mase_scales(history, freq, season_length)
    s = forecast["unique_id"].astype(str).map(scale).to_numpy(dtype=np.float64)
    s = np.where(np.isfinite(s), s, 0.0)
    step = forecast["step"].to_numpy() - 1
    out = forecast.copy()
    for level, q in sorted(quantiles.items()):
        width = np.asarray(q, dtype=np.float64)[step] * s
        out[f"yhat_lo_{level}"] = out["yhat"] - width
        out[f"yhat_hi_{level}"] = out["yhat"] + width
    return out
