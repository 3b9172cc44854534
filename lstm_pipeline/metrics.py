"""Point-forecast error metrics: pure numpy, one number per call.

MASE is scaled by the in-sample mean absolute error of the seasonal naive forecast on
the history before the cutoff (Hyndman & Koehler, 2006), so 1.0 means "as good as
seasonal naive was in-sample" and values below 1 beat it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mae", "mase", "mase_scale", "r2", "rmse", "smape"]


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(yhat))))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(yhat)) ** 2)))


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Symmetric MAPE in percent, 0..200; a step where both are zero counts as 0."""
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    denom = np.abs(y) + np.abs(yhat)
    ratio = np.divide(2 * np.abs(y - yhat), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * np.mean(ratio))


def mase_scale(history: np.ndarray, season_length: int) -> float:
    """In-sample MAE of seasonal naive (naive when the history is not longer than one season)."""
    h = np.asarray(history, np.float64)
    m = season_length if len(h) > season_length else 1
    if len(h) <= m:
        return float("nan")
    return float(np.mean(np.abs(h[m:] - h[:-m])))


def mase(y: np.ndarray, yhat: np.ndarray, scale: float) -> float:
    """MAE divided by ``scale`` (see :func:`mase_scale`); NaN when the scale is zero."""
    return mae(y, yhat) / scale if scale > 0 else float("nan")


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """Coefficient of determination; NaN for a constant target."""
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
