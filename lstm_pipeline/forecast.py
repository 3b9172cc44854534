"""Forecast the next ``horizon`` steps of every series from its latest observation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lstm_pipeline.checkpoint import Checkpoint, build_panel, fit_scalers
from lstm_pipeline.train import pick_device

__all__ = ["ForecastResult", "future_dates", "predict"]

FORECAST_COLUMNS = ["unique_id", "ds", "cutoff", "step", "yhat"]
# Windows per forward pass: bounded so that inference memory stays flat however many
# series there are (cuDNN asks for far more workspace on one huge batch).
DEFAULT_CHUNK = 65_536


@dataclass(frozen=True)
class ForecastResult:
    frame: pd.DataFrame  # unique_id, ds, cutoff, step, yhat
    skipped: dict[str, str]  # unique_id -> why it got no forecast


def future_dates(cutoff: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``cutoff`` on the ``freq`` grid."""
    return pd.date_range(cutoff, periods=horizon + 1, freq=freq)[1:]


def predict(
    checkpoint: Checkpoint,
    history: pd.DataFrame,
    device: str = "auto",
    chunk: int = DEFAULT_CHUNK,
) -> ForecastResult:
    """One forecast per series in ``history`` (long format), starting after its last ``ds``.

    Series shorter than the lookback get no forecast and are listed in ``skipped``.
    Series the model has not seen are scaled with statistics fitted on their history.
    """
    L, H = checkpoint.window.lookback, checkpoint.window.horizon
    history = history.sort_values(["unique_id", "ds"], ignore_index=True)
    lengths = history.groupby("unique_id", sort=True).size()
    short = lengths[lengths < L]
    skipped = {str(u): f"{n} points, needs at least {L} (lookback)" for u, n in short.items()}
    # Only the last L points of each series are read by the model.
    recent = history[~history["unique_id"].isin(short.index)].groupby("unique_id", sort=True).tail(L)
    if recent.empty:
        return ForecastResult(pd.DataFrame(columns=FORECAST_COLUMNS), skipped)

    fit_on = history[~history["unique_id"].isin(short.index)]
    scaler, cov_scalers = fit_scalers(fit_on, checkpoint.covariates, base=checkpoint)
    panel = build_panel(recent, scaler, cov_scalers, checkpoint.season_length, checkpoint.covariates)
    dev = pick_device(device)
    net = checkpoint.build(dev)
    x_all = torch.from_numpy(panel.values.reshape(len(panel.ids), L, -1))  # [S*L, F] -> [S, L, F]
    outputs = []
    with torch.inference_mode():
        for i in range(0, len(x_all), chunk):
            x = x_all[i : i + chunk].to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                outputs.append(net(x).float().cpu())
    z = torch.cat(outputs).numpy().astype(np.float64)  # [S, H]

    cutoffs = recent.groupby("unique_id", sort=True)["ds"].max()
    parts = []
    for row, uid in enumerate(panel.ids):
        cutoff = cutoffs[uid]
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": future_dates(cutoff, checkpoint.freq, H),
                    "cutoff": cutoff,
                    "step": np.arange(1, H + 1, dtype=np.int32),
                    "yhat": scaler.inverse(uid, z[row]),
                }
            )
        )
    return ForecastResult(pd.concat(parts, ignore_index=True), skipped)
