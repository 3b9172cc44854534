"""Baseline forecasters with the same call shape as the model: history in, forecast out.

Seasonal naive and naive come from :mod:`lstm_pipeline.seasonal` (their one home).
AutoETS and Theta need contiguous series: missing periods are filled by carrying the
last observation forward (:func:`lstm_pipeline.grid.complete`), the same rule the
model's inputs follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from lstm_pipeline import grid, seasonal

__all__ = ["BASELINES", "forecasters", "naive", "seasonal_naive", "statistical"]

# Every baseline the gate may compare against, in order of preference when tied.
BASELINES = ("seasonal_naive", "naive", "auto_ets", "theta")


def seasonal_naive(history: pd.DataFrame, horizon: int, freq: str, season_length: int) -> pd.DataFrame:
    """Repeat each series' last season (naive for a history shorter than one season)."""
    return seasonal.seasonal_naive(history, horizon, freq, season_length)


def naive(history: pd.DataFrame, horizon: int, freq: str) -> pd.DataFrame:
    """Repeat each series' last value."""
    return seasonal.seasonal_naive(history, horizon, freq, season_length=1)


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
            contiguous = grid.complete(history[["unique_id", "ds", "y"]], freq).drop(columns="observed")
            sf = StatsForecast(models=[model], freq=freq, n_jobs=1)
            out = sf.forecast(df=contiguous, h=horizon)
            out = out if "unique_id" in out.columns else out.reset_index()
            return out.rename(columns={column: "yhat"})[["unique_id", "ds", "yhat"]]

        return forecast

    return {
        "auto_ets": make(AutoETS(season_length=season_length), "AutoETS"),
        "theta": make(Theta(season_length=season_length), "Theta"),
    }


def forecasters(
    horizon: int, freq: str, season_length: int, statistical_models: bool = True
) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """Every baseline by name: seasonal naive, naive, and AutoETS and Theta when
    ``statistical_models`` is set and statsforecast is installed."""
    found: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
        "seasonal_naive": lambda h: seasonal_naive(h, horizon, freq, season_length),
        "naive": lambda h: naive(h, horizon, freq),
    }
    if statistical_models:
        found.update(statistical(horizon, freq, season_length))
    return found
