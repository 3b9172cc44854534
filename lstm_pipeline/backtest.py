"""Rolling-origin backtest: every candidate forecasts the same windows of the same data.

Window ``k`` of ``K`` cuts each series ``horizon + (K - 1 - k) * step`` points before its
end, hands every forecaster the history up to that cutoff, and scores the next
``horizon`` points. The windows depend on the data and the configuration only, so a
challenger, the champion and the baselines are compared on identical ground.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_pipeline import metrics

__all__ = ["BacktestResult", "Forecaster", "backtest", "training_cutoff_frame"]

# history -> forecast frame with at least unique_id, ds, yhat
Forecaster = Callable[[pd.DataFrame], pd.DataFrame]
METRICS = ("mae", "rmse", "smape", "mase", "r2")


@dataclass(frozen=True)
class BacktestResult:
    predictions: pd.DataFrame  # model, window, unique_id, cutoff, ds, step, y, yhat
    scales: pd.DataFrame  # window, unique_id, scale (MASE denominator)

    def scores(self) -> pd.DataFrame:
        """One row per model, series and window with MAE, RMSE, sMAPE, MASE, R²."""
        rows = []
        scale = self.scales.set_index(["window", "unique_id"])["scale"]
        for (model, window, uid), g in self.predictions.groupby(["model", "window", "unique_id"], sort=True):
            y, yhat = g["y"].to_numpy(), g["yhat"].to_numpy()
            rows.append(
                {
                    "model": model, "window": window, "unique_id": uid, "cutoff": g["cutoff"].iloc[0],
                    "mae": metrics.mae(y, yhat), "rmse": metrics.rmse(y, yhat), "smape": metrics.smape(y, yhat),
                    "mase": metrics.mase(y, yhat, scale[(window, uid)]), "r2": metrics.r2(y, yhat),
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Per model: the mean of each metric over series and windows, plus median MASE."""
        scores = self.scores()
        table = scores.groupby("model")[list(METRICS)].mean()
        table["mase_median"] = scores.groupby("model")["mase"].median()
        table["n_series"] = scores.groupby("model")["unique_id"].nunique()
        table["n_windows"] = scores.groupby("model")["window"].nunique()
        return table

    def by_step(self) -> pd.DataFrame:
        """Per model and horizon step: MAE and mean absolute scaled error."""
        p = self.predictions.merge(self.scales, on=["window", "unique_id"])
        p["abs_err"] = (p["y"] - p["yhat"]).abs()
        p["scaled_err"] = p["abs_err"] / p["scale"]
        return p.groupby(["model", "step"])[["abs_err", "scaled_err"]].mean().rename(
            columns={"abs_err": "mae", "scaled_err": "mase"}
        )

    def mase(self, model: str) -> float:
        return float(self.summary().loc[model, "mase"])


def _cut_positions(series: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position in its series and its series' length (frame sorted by id, ds)."""
    grouped = series.groupby("unique_id", sort=True)
    return grouped.cumcount().to_numpy(), grouped["y"].transform("size").to_numpy()


def training_cutoff_frame(series: pd.DataFrame, horizon: int, n_windows: int, step: int) -> pd.DataFrame:
    """The rows a candidate may train on: everything before each series' first backtest cutoff."""
    series = series.sort_values(["unique_id", "ds"], ignore_index=True)
    pos, n = _cut_positions(series)
    return series[pos < n - horizon - (n_windows - 1) * step].reset_index(drop=True)


def backtest(
    series: pd.DataFrame,
    forecasters: Mapping[str, Forecaster],
    horizon: int,
    n_windows: int,
    step: int,
    season_length: int,
    min_history: int,
) -> BacktestResult:
    """Score every forecaster on the last ``n_windows`` rolling origins of ``series``.

    A series takes part in window ``k`` only if its history up to that cutoff has at
    least ``min_history`` points; the same series take part for every forecaster.
    """
    series = series.sort_values(["unique_id", "ds"], ignore_index=True)
    pos, n = _cut_positions(series)
    predictions, scales = [], []
    for k in range(n_windows):
        cut = n - horizon - (n_windows - 1 - k) * step  # per row: its series' cutoff position
        eligible = series["unique_id"][cut >= min_history].unique()
        in_window = series["unique_id"].isin(eligible).to_numpy()
        history = series[in_window & (pos < cut)]
        actual = series[in_window & (pos >= cut) & (pos < cut + horizon)]
        if history.empty:
            continue
        scales.append(
            pd.DataFrame(
                {
                    "window": k,
                    "unique_id": [str(u) for u, _ in history.groupby("unique_id", sort=True)],
                    "scale": [metrics.mase_scale(g["y"].to_numpy(), season_length)
                              for _, g in history.groupby("unique_id", sort=True)],
                }
            )
        )
        cutoff = history.groupby("unique_id")["ds"].max().rename("cutoff")
        for name, forecaster in forecasters.items():
            fc = forecaster(history)[["unique_id", "ds", "yhat"]]
            joined = actual[["unique_id", "ds", "y"]].merge(fc, on=["unique_id", "ds"], how="left")
            if joined["yhat"].isna().any():
                missing = joined.loc[joined["yhat"].isna(), "unique_id"].unique()[:5]
                raise ValueError(f"forecaster {name!r} gave no forecast for {list(missing)} in window {k}")
            joined = joined.join(cutoff, on="unique_id")
            joined["step"] = joined.groupby("unique_id").cumcount() + 1
            joined["model"], joined["window"] = name, k
            predictions.append(joined)
    if not predictions:
        raise ValueError(f"no series is long enough to backtest (needs {min_history} points before the first cutoff)")
    cols = ["model", "window", "unique_id", "cutoff", "ds", "step", "y", "yhat"]
    return BacktestResult(pd.concat(predictions, ignore_index=True)[cols], pd.concat(scales, ignore_index=True))
