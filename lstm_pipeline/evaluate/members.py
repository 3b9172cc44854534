"""The forecast's members and how they combine.

The served forecast is a weighted mean of **members**: the LSTM ensemble (``lstm``) and
local statistical models from ``statsforecast``, each fitted per series on the history it
is given (AutoETS, Theta, CES, ARIMA), plus seasonal naive and naive. Weights are fixed by
configuration (equal by default: simple averages are hard to beat, and a backtest of two
windows is too little data to learn weights from), so a combination's backtest score is
out of sample like any single member's.

Statistical members need contiguous series: missing periods are filled by carrying the
last observation forward (:func:`lstm_pipeline.model.grid.complete`), the same rule the LSTM's
inputs follow. A series a model cannot fit (too short, degenerate) gets seasonal naive
from that model (``statsforecast``'s fallback), so every series always has a forecast.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.model import grid, seasonal

__all__ = [
    "LSTM",
    "STATISTICAL",
    "combine",
    "describe",
    "equal_weights",
    "statistical_forecasts",
    "statistical_forecasters",
    "weighted_mean",
]

LSTM = "lstm"
# Local models by member name -> statsforecast class name (its forecast column).
STATISTICAL = {"auto_ets": "AutoETS", "theta": "Theta", "auto_ces": "CES", "auto_arima": "AutoARIMA"}
# Members computed here, on the grid (lstm_pipeline.model.seasonal).
NAIVE = ("seasonal_naive", "naive")

Forecaster = Callable[[pd.DataFrame], pd.DataFrame]


def equal_weights(members: Sequence[str]) -> dict[str, float]:
    """Each member with weight ``1 / len(members)``."""
    return {m: 1.0 / len(members) for m in members}


def describe(weights: Mapping[str, float]) -> str:
    """``{"lstm": 0.5, "auto_ets": 0.5}`` -> ``"lstm:0.5 auto_ets:0.5"`` (forecast rows, tags)."""
    return " ".join(f"{m}:{w:.3g}" for m, w in weights.items() if w > 0)


def combine(forecasts: Mapping[str, pd.DataFrame], weights: Mapping[str, float]) -> pd.DataFrame:
    """The weighted mean of the members' ``yhat`` on their common keys.

    Each frame has ``unique_id, ds, yhat`` (and may have ``cutoff, step``, kept from the
    first frame that has them). A row some member lacks (the LSTM skips a series it cannot
    forecast) is the weighted mean of the members that have it, weights renormalised.
    """
    used = [m for m, w in weights.items() if w > 0]
    missing = [m for m in used if m not in forecasts]
    if not used or missing:
        raise ValueError(f"cannot combine: no forecast from {missing or 'any member'}")
    keys = ["unique_id", "ds"]
    with_steps = [forecasts[m] for m in used if {"cutoff", "step"} <= set(forecasts[m].columns)]
    extra = with_steps[0][["unique_id", "ds", "cutoff", "step"]] if with_steps else None
    stacked = pd.concat([forecasts[m][[*keys, "yhat"]].assign(model=m) for m in used], ignore_index=True)
    stacked["unique_id"] = stacked["unique_id"].astype(str)
    wide = stacked.set_index([*keys, "model"])["yhat"].unstack("model")[used]  # [rows, members]
    out = weighted_mean(wide, weights).rename("yhat").reset_index()
    if extra is not None:
        extra = extra.astype({"unique_id": str}).drop_duplicates(keys)
        out = out.merge(extra, on=keys, how="left")
    return out


def weighted_mean(wide: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    """Row-wise weighted mean of ``wide``'s columns (members), over the members present."""
    w = np.array([weights[c] for c in wide.columns], dtype=np.float64)  # [M]
    values = wide.to_numpy(np.float64)  # [rows, M]
    present = np.isfinite(values)
    total = np.where(present, values, 0.0) @ w
    return pd.Series(total / (present @ w), index=wide.index)


def statistical_forecasts(
    history: pd.DataFrame, names: Sequence[str], horizon: int, freq: str, season_length: int, n_jobs: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Forecasts of the members ``names`` (statistical or naive), each fitted per series on
    ``history`` (``unique_id, ds, y``): name -> ``unique_id, ds, yhat``.

    The statsforecast models share one pass over the series, spread over ``n_jobs``
    processes (None: every core).
    """
    history = history[["unique_id", "ds", "y"]]
    out: dict[str, pd.DataFrame] = {}
    if "seasonal_naive" in names:
        out["seasonal_naive"] = seasonal.seasonal_naive(history, horizon, freq, season_length)
    if "naive" in names:
        out["naive"] = seasonal.naive(history, horizon, freq)
    wanted = [n for n in names if n in STATISTICAL]
    unknown = [n for n in names if n not in STATISTICAL and n not in NAIVE and n != LSTM]
    if unknown:
        raise ValueError(f"unknown member(s) {unknown}: choose from {[LSTM, *STATISTICAL, *NAIVE]}")
    if wanted and not history.empty:
        out.update(_statsforecast(history, wanted, horizon, freq, season_length, n_jobs))
    return {n: out[n] for n in names if n in out}


def statistical_forecasters(
    names: Sequence[str], horizon: int, freq: str, season_length: int, n_jobs: int | None = None,
) -> dict[str, Forecaster]:
    """Backtest forecasters for ``names``: history in, forecast out.

    The members fitted on the same history share one statsforecast pass: the first call
    for a history fits them all, the others read the result.
    """
    memo: dict[tuple[Any, ...], dict[str, pd.DataFrame]] = {}

    def key(history: pd.DataFrame) -> tuple[Any, ...]:
        return (len(history), history["ds"].max(), float(history["y"].sum()), history["unique_id"].nunique())

    def forecaster(name: str) -> Forecaster:
        def forecast(history: pd.DataFrame) -> pd.DataFrame:
            k = key(history)
            if k not in memo:
                memo.clear()  # one history (a backtest window) at a time
                memo[k] = statistical_forecasts(history, names, horizon, freq, season_length, n_jobs)
            return memo[k][name]

        return forecast

    return {name: forecaster(name) for name in names if name != LSTM}


def _statsforecast(
    history: pd.DataFrame, names: Sequence[str], horizon: int, freq: str, season_length: int, n_jobs: int | None,
) -> dict[str, pd.DataFrame]:
    from statsforecast import StatsForecast
    from statsforecast import models as sf

    m = max(int(season_length), 1)
    build = {
        "auto_ets": lambda: sf.AutoETS(season_length=m),
        "theta": lambda: sf.Theta(season_length=m),
        "auto_ces": lambda: sf.AutoCES(season_length=m),
        "auto_arima": lambda: sf.AutoARIMA(season_length=m),
    }
    contiguous = grid.complete(history, freq).drop(columns="observed")
    jobs = n_jobs if n_jobs is not None else (os.cpu_count() or 1)
    # Process start-up costs more than a few hundred small fits.
    jobs = 1 if contiguous["unique_id"].nunique() < 200 else jobs
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        sf_ = StatsForecast(models=[build[n]() for n in names], freq=freq, n_jobs=jobs,
                            fallback_model=sf.SeasonalNaive(season_length=m))
        raw = sf_.forecast(df=contiguous, h=horizon)
    raw = raw if "unique_id" in raw.columns else raw.reset_index()
    raw["unique_id"] = raw["unique_id"].astype(str)
    frames = {}
    for name in names:
        column = STATISTICAL[name]
        values = raw[column].to_numpy(np.float64)
        if not np.isfinite(values).all():  # a fit that returned NaN: seasonal naive for that series
            snaive = seasonal.seasonal_naive(history, horizon, freq, m).astype({"unique_id": str})
            fill = raw[["unique_id", "ds"]].merge(snaive, on=["unique_id", "ds"], how="left")["yhat"].to_numpy()
            values = np.where(np.isfinite(values), values, fill)
        frames[name] = pd.DataFrame({"unique_id": raw["unique_id"], "ds": raw["ds"], "yhat": values})
    return frames
