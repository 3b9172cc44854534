"""Baseline forecasters with the same call shape as the model: history in, forecast out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.forecast import future_dates

__all__ = ["naive", "seasonal_naive", "statistical"]


def seasonal_naive(history: pd.DataFrame, horizon: int, freq: str, season_length: int) -> pd.DataFrame:
    """Repeat each series' last season; falls back to naive for series shorter than one season."""
    parts = []
    for uid, g in history.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=True):
        y = g["y"].to_numpy()
        m = season_length if len(y) >= season_length else 1
        last_season = y[-m:]
        cutoff = g["ds"].iloc[-1]
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": future_dates(cutoff, freq, horizon),
                    "cutoff": cutoff,
                    "step": np.arange(1, horizon + 1, dtype=np.int32),
                    "yhat": np.resize(last_season, horizon).astype(np.float64),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def naive(history: pd.DataFrame, horizon: int, freq: str) -> pd.DataFrame:
    """Repeat each series' last value."""
    return seasonal_naive(history, horizon, freq, season_length=1)


def statistical(horizon: int, freq: str, season_length: int) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """AutoETS and Theta from ``statsforecast``, if that optional extra is installed.

    Returns forecasters by name (``auto_ets``, ``theta``), or nothing without statsforecast.
    Both models are fitted per series on the history each call receives.
    """
    try:
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS, Theta
    except ImportError:
        return {}

    def make(model: Any, column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
        def forecast(history: pd.DataFrame) -> pd.DataFrame:
            sf = StatsForecast(models=[model], freq=freq, n_jobs=1)
            out = sf.forecast(df=history[["unique_id", "ds", "y"]], h=horizon)
            return out.reset_index().rename(columns={column: "yhat"})[["unique_id", "ds", "yhat"]]

        return forecast

    return {
        "auto_ets": make(AutoETS(season_length=season_length), "AutoETS"),
        "theta": make(Theta(season_length=season_length), "Theta"),
    }
