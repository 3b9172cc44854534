"""Point-forecast error metrics: pure numpy, one number per call.

MASE is scaled by the in-sample mean absolute error of the seasonal naive forecast on
the history before the cutoff (Hyndman & Koehler, 2006), so 1.0 means "as good as
seasonal naive was in-sample" and values below 1 beat it; the scale itself is defined
in :mod:`lstm_pipeline.model.seasonal`. :func:`by_group` computes the same five metrics for
many groups of rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lstm_pipeline.model.seasonal import mase_scale

__all__ = ["by_group", "mae", "mase", "mase_scale", "r2", "rmse", "smape"]


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


def mase(y: np.ndarray, yhat: np.ndarray, scale: float) -> float:
    """MAE divided by ``scale`` (see :func:`mase_scale`); NaN when the scale is zero or NaN."""
    return mae(y, yhat) / scale if scale > 0 else float("nan")


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """Coefficient of determination; NaN for a constant target."""
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


def by_group(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """MAE, RMSE, sMAPE, MASE and R² per group of rows (columns ``y``, ``yhat``, ``scale``).

    The functions above, vectorised: one row per group, columns ``keys`` then the metrics.
    """
    y, yhat = frame["y"].to_numpy(np.float64), frame["yhat"].to_numpy(np.float64)
    err = y - yhat
    denom = np.abs(y) + np.abs(yhat)
    parts = frame[list(keys)].assign(
        abs_err=np.abs(err), sq_err=err**2, y=y,
        ape=np.divide(2 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0),
    )
    parts["dev2"] = (y - parts.groupby(list(keys), sort=True)["y"].transform("mean").to_numpy()) ** 2
    g = parts.groupby(list(keys), sort=True)
    table = g.agg(mae=("abs_err", "mean"), mse=("sq_err", "mean"), ape=("ape", "mean"),
                  sst=("dev2", "sum"), n=("y", "size")).reset_index()
    scale = frame.groupby(list(keys), sort=True)["scale"].first().to_numpy(np.float64)
    sst = table["sst"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["r2"] = np.where(sst > 0, 1 - table["mse"].to_numpy() * table["n"].to_numpy() / sst, np.nan)
        table["mase"] = np.where(scale > 0, table["mae"].to_numpy() / scale, np.nan)
    table["rmse"] = np.sqrt(table["mse"])
    table["smape"] = 100 * table["ape"]
    return table[[*keys, "mae", "rmse", "smape", "mase", "r2"]]
