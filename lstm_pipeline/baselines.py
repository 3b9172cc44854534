"""Baseline forecasters with the same call shape as the model: history in, forecast out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_pipeline.forecast import future_dates

__all__ = ["naive", "seasonal_naive"]


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
