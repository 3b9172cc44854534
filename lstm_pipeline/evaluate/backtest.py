"""Rolling-origin backtest: every candidate forecasts the same windows of the same data.

Cutoffs are **dates**, the same for every series: window ``k`` of ``K`` has its cutoff
``horizon + (K - 1 - k) * step`` periods before the panel's newest period. Every
forecaster is handed the history up to the cutoff and scored on the actuals of the next
``horizon`` periods. So no series' training data can cover another's test window in
calendar time, whatever date each series ends at.

A series takes part in window ``k`` when it was observed at the cutoff, holds at least
``min_history`` observations up to it and has at least one actual after it; series that
ended early are scored on the actuals they have. The windows depend on the data and the
configuration only, so a challenger, the champion and the baselines are compared on
identical ground.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_pipeline.errors import NotEnoughData
from lstm_pipeline.evaluate import members, metrics
from lstm_pipeline.model import grid, seasonal

__all__ = ["BacktestResult", "Forecaster", "backtest", "cutoff_dates"]

# history -> forecast frame with at least unique_id, ds, yhat
Forecaster = Callable[[pd.DataFrame], pd.DataFrame]
METRICS = ("mae", "rmse", "smape", "mase", "r2")


@dataclass(frozen=True)
class BacktestResult:
    predictions: pd.DataFrame  # model, window, unique_id, cutoff, ds, step, y, yhat
    scales: pd.DataFrame  # window, unique_id, scale (MASE denominator; NaN where undefined)

    @property
    def cutoffs(self) -> list[pd.Timestamp]:
        return sorted(pd.Timestamp(c) for c in self.predictions["cutoff"].unique())

    def models(self) -> list[str]:
        return list(dict.fromkeys(self.predictions["model"]))

    def scores(self) -> pd.DataFrame:
        """One row per model, series and window with MAE, RMSE, sMAPE, MASE, R²."""
        p = self.predictions.merge(self.scales, on=["window", "unique_id"])
        keys = ["model", "window", "unique_id"]
        table = metrics.by_group(p, keys)
        cutoff = p.groupby(keys, sort=True)["cutoff"].first().reset_index()
        return table.merge(cutoff, on=keys)[[*keys, "cutoff", *METRICS]]

    def summary(self) -> pd.DataFrame:
        """Per model: the mean of each metric over series and windows, plus median MASE.

        Series-windows without a MASE scale (a constant history) are left out of the MASE
        mean only; ``n_unscaled`` counts them.
        """
        scores = self.scores()
        grouped = scores.groupby("model", sort=False)
        table = grouped[list(METRICS)].mean()
        table["mase_median"] = grouped["mase"].median()
        table["n_series"] = grouped["unique_id"].nunique()
        table["n_windows"] = grouped["window"].nunique()
        table["n_unscaled"] = grouped["mase"].apply(lambda s: int(s.isna().sum()))
        return table

    def by_step(self) -> pd.DataFrame:
        """Per model and horizon step: MAE and mean absolute scaled error."""
        p = self.predictions.merge(self.scales, on=["window", "unique_id"])
        p["abs_err"] = (p["y"] - p["yhat"]).abs()
        p["scaled_err"] = p["abs_err"] / p["scale"].where(p["scale"] > 0)
        return p.groupby(["model", "step"])[["abs_err", "scaled_err"]].mean().rename(
            columns={"abs_err": "mae", "scaled_err": "mase"}
        )

    def mase(self, model: str) -> float:
        return float(self.summary().loc[model, "mase"])

    def with_combinations(self, combinations: Mapping[str, Mapping[str, float]]) -> BacktestResult:
        """The result with each weighted mean of its models added as a model of its own.

        ``{"lstm+auto_ets": {"lstm": 0.5, "auto_ets": 0.5}}``: scored on the same series and
        target dates as its parts (a combination whose parts are not all here is left out).
        """
        p = self.predictions
        added = []
        for name, weights in combinations.items():
            parts = [m for m, w in weights.items() if w > 0]
            if name in set(p["model"]) or not set(parts) <= set(p["model"]):
                continue
            keys = ["window", "unique_id", "ds"]
            wide = p[p["model"].isin(parts)].set_index([*keys, "model"])["yhat"].unstack("model")[parts]  # [rows, parts]
            mean = members.weighted_mean(wide, weights).rename("yhat").reset_index()
            first = p[p["model"] == parts[0]].drop(columns="yhat")
            rows = first.merge(mean, on=keys, how="left")
            added.append(rows.assign(model=name)[p.columns])
        if not added:
            return self
        return BacktestResult(pd.concat([p, *added], ignore_index=True), self.scales)

    def restricted(self, windows: Sequence[int]) -> BacktestResult:
        """The same result on a subset of its windows."""
        keep = set(windows)
        return BacktestResult(self.predictions[self.predictions["window"].isin(keep)].reset_index(drop=True),
                              self.scales[self.scales["window"].isin(keep)].reset_index(drop=True))


def cutoff_dates(series: pd.DataFrame, freq: str, horizon: int, n_windows: int, step: int) -> list[pd.Timestamp]:
    """The ``n_windows`` cutoff dates, oldest first: ``horizon + (K - 1 - k) * step``
    periods before the newest period of ``series``."""
    newest = pd.Timestamp(series["ds"].max())
    back = [horizon + (n_windows - 1 - k) * step for k in range(n_windows)]
    return [grid.shift(newest, -b, freq) for b in back]


def backtest(
    series: pd.DataFrame,
    forecasters: Mapping[str, Forecaster],
    cutoffs: Sequence[pd.Timestamp],
    horizon: int,
    freq: str,
    season_length: int,
    min_history: int,
) -> BacktestResult:
    """Score every forecaster at each cutoff date of ``cutoffs`` on the next ``horizon`` periods.

    ``series`` is long format ``unique_id, ds, y`` plus any covariates, which forecasters
    see in the history up to each cutoff only. See the module doc for who takes part.
    """
    # Covariate columns stay: a forecaster may read them up to the cutoff (never after it).
    series = series.sort_values(["unique_id", "ds"], ignore_index=True)
    predictions, scales = [], []
    for k, cutoff in enumerate(cutoffs):
        cutoff = pd.Timestamp(cutoff)
        end = grid.shift(cutoff, horizon, freq)
        before = series["ds"] <= cutoff
        counts = series[before].groupby("unique_id").size()
        at_cutoff = set(series.loc[series["ds"] == cutoff, "unique_id"])
        after = set(series.loc[(series["ds"] > cutoff) & (series["ds"] <= end), "unique_id"])
        eligible = sorted(uid for uid in counts[counts >= min_history].index if uid in at_cutoff and uid in after)
        if not eligible:
            continue
        taking_part = series["unique_id"].isin(eligible)
        history = series[taking_part & before].reset_index(drop=True)
        actual = series.loc[taking_part & (series["ds"] > cutoff) & (series["ds"] <= end), ["unique_id", "ds", "y"]]
        scale = seasonal.mase_scales(history, freq, season_length)
        scales.append(pd.DataFrame({"window": k, "unique_id": scale.index, "scale": scale.to_numpy()}))
        for name, forecaster in forecasters.items():
            fc = forecaster(history)[["unique_id", "ds", "yhat"]]
            joined = actual.merge(fc.astype({"unique_id": str}), on=["unique_id", "ds"], how="left")
            if joined["yhat"].isna().any():
                missing = joined.loc[joined["yhat"].isna(), "unique_id"].unique()[:5]
                raise ValueError(f"forecaster {name!r} gave no forecast for {list(missing)} in window {k}")
            joined["cutoff"] = cutoff
            joined["step"] = (grid.positions(joined["ds"], freq) - grid.positions([cutoff], freq)[0]).astype(np.int32)
            joined["model"], joined["window"] = name, k
            predictions.append(joined)
    if not predictions:
        raise NotEnoughData(
            f"no series can be backtested: none is observed at a cutoff ({', '.join(str(c.date()) for c in cutoffs)}) "
            f"with {min_history} observations up to it and actuals after it"
        )
    cols = ["model", "window", "unique_id", "cutoff", "ds", "step", "y", "yhat"]
    return BacktestResult(pd.concat(predictions, ignore_index=True)[cols], pd.concat(scales, ignore_index=True))

