"""Figures for the reviewer: built from results, returned as matplotlib figures, not saved."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from lstm_pipeline.model.train import EpochLog

__all__ = ["close", "error_by_step", "forecast_vs_actual", "loss_curve"]


def close(figure: Figure) -> None:
    plt.close(figure)


def loss_curve(history: Sequence[EpochLog]) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([e.epoch for e in history], [e.train_loss for e in history], label="train")
    ax.plot([e.epoch for e in history], [e.val_loss for e in history], label="validation")
    ax.set(xlabel="epoch", ylabel="loss (scaled units)", title="Training loss")
    ax.legend()
    fig.tight_layout()
    return fig


def error_by_step(by_step: pd.DataFrame) -> Figure:
    """``by_step``: index (model, step), column ``mase`` (see BacktestResult.by_step)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for model, g in by_step.reset_index().groupby("model"):
        ax.plot(g["step"], g["mase"], marker="o", label=str(model))
    ax.set(xlabel="horizon step", ylabel="mean scaled abs. error", title="Backtest error by horizon step")
    ax.legend()
    fig.tight_layout()
    return fig


def forecast_vs_actual(
    predictions: pd.DataFrame, history: pd.DataFrame, series: Sequence[str], served: str,
    others: Sequence[str] = ("seasonal_naive", "champion"),
) -> Figure:
    """Backtest forecasts of the served model (and ``others``, where present) beside the
    actuals, one panel per series."""
    colors = {served: "tab:blue", "champion": "tab:green", "seasonal_naive": "tab:orange"}
    shown = predictions[predictions["model"].isin([served, *others])]
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.6 * len(series)), squeeze=False)
    for ax, uid in zip(axes[:, 0], series):
        h = history[history["unique_id"] == uid].tail(72)
        ax.plot(h["ds"], h["y"], color="black", linewidth=1, label="actual")
        p = shown[shown["unique_id"] == uid]
        for (model, window), g in p.groupby(["model", "window"]):
            ax.plot(g["ds"], g["yhat"], linewidth=1.6 if model == served else 1,
                    label=str(model) if window == p["window"].min() else None,
                    color=colors.get(str(model), "tab:gray"))
        ax.set_title(uid, fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
