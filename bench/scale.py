"""The whole pipeline on CPU at growing sizes: wall time and peak memory of every stage.

Synthetic monthly series (``--points`` each, 240 by default) go through the library's
stages, called directly (no Prefect, no MLflow: registering the model is left out):

    data      generate the source Parquet file
    ingest    lstm_pipeline.lake.ingest.ingest into a fresh Delta lake (checks, merge, batches)
    read      the series table back into pandas
    train     cut before the backtest windows, lstm_pipeline.model.train.fit for --epochs epochs
    backtest  LSTM, seasonal naive and naive on the last 3 windows, scored (summary table)
    forecast  lstm_pipeline.model.forecast.predict, 12 steps for every series

Memory method: every size runs in a fresh Python process (``--one N``), so no size
inherits another's heap. Inside it, each stage resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``) at its start and reads ``VmHWM`` at its end: the stage's peak
is the resident memory of the whole process at its highest during that stage (what is
still held from earlier stages included, the interpreter and torch included).

    .venv/bin/python bench/scale.py                          # 1k, 3k, 10k series
    .venv/bin/python bench/scale.py --sizes 1000 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from forecast_scale import GiB, PeakRSS, current_rss, process_peak

from lstm_pipeline.config import load_config
from lstm_pipeline.evaluate.backtest import backtest, cutoff_dates
from lstm_pipeline.evaluate.baselines import naive, seasonal_naive
from lstm_pipeline.lake.ingest import ingest
from lstm_pipeline.lake.tables import Lake
from lstm_pipeline.model.forecast import predict
from lstm_pipeline.model.train import fit

T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 3_000, 10_000], help="series counts")
    parser.add_argument("--points", type=int, default=240, help="monthly points per series")
    # A fixed, small training budget: one epoch of a small network. The stages' memory is
    # driven by the data, not the network; --hidden 64 --layers 2 is the pipeline's default.
    parser.add_argument("--epochs", type=int, default=1, help="training epochs")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--max-windows", type=int, default=0,
                        help="train.max_windows_per_epoch (default: the pipeline's; 0 keeps it, -1: no cap)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # run one size in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.points, args.epochs, args.hidden, args.layers, args.max_windows)))
        return

    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"{args.points} monthly points per series; model LSTM {args.layers} x {args.hidden}, lookback 24, "
          f"horizon 12; {args.epochs} epoch(s); windows per epoch: "
          f"{ {0: 'the default cap', -1: 'all'}.get(args.max_windows, args.max_windows)}; backtest 3 windows, 12 apart")
    runs = []
    for n in args.sizes:
        command = [sys.executable, __file__, "--one", str(n), "--points", str(args.points),
                   "--epochs", str(args.epochs), "--hidden", str(args.hidden), "--layers", str(args.layers),
                   "--max-windows", str(args.max_windows)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # progress on stderr
        if done.returncode != 0:
            raise SystemExit(f"size {n} failed (exit {done.returncode})")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {n:,} series done in {sum(s['seconds'] for s in runs[-1]['stages']):.0f}s", flush=True)
    report(runs)


def run_one(n_series: int, points: int, epochs: int, hidden: int, layers: int, max_windows: int = 0) -> dict[str, Any]:
    stages: list[dict[str, Any]] = []
    baseline = current_rss()  # interpreter + torch, pandas, pyarrow, deltalake imported

    def stage(name: str, work: Callable[[], T]) -> T:
        with PeakRSS() as memory:
            started = time.perf_counter()
            out = work()
            seconds = time.perf_counter() - started
        stages.append({"stage": name, "seconds": seconds, "start": memory.start, "peak": memory.peak,
                       "end": memory.end})
        print(f"    {n_series:,} series, {name}: {seconds:.1f}s, peak {memory.peak / GiB:.2f} GiB",
              file=sys.stderr, flush=True)
        return out

    with tempfile.TemporaryDirectory(prefix="lstm-scale-") as tmp:
        cfg = load_config(
            overrides={
                "lake": {"root": str(Path(tmp) / "lake")},
                "model": {"hidden_size": hidden, "num_layers": layers},
                "train": {"max_epochs": epochs, "device": "cpu",
                          **({"max_windows_per_epoch": None if max_windows < 0 else max_windows} if max_windows else {})},
            },
            environ={},
        )
        H, K, step = cfg.window.horizon, cfg.backtest.n_windows, cfg.backtest.step or cfg.window.horizon
        source = Path(tmp) / "series.parquet"
        stage("data", lambda: write_source(source, n_series, points))
        lake = Lake.from_config(cfg.lake)
        stage("ingest", lambda: ingest(lake, [source], cfg.data))
        series = stage("read", lake.read_series)
        freq = lake.freq() or "MS"
        cutoffs = cutoff_dates(series, freq, H, K, step)
        result = stage("train", lambda: fit(series[series["ds"] <= cutoffs[0]], cfg, freq))
        forecasters = {
            "lstm": lambda h: predict(result.checkpoint, h, device="cpu").frame,
            "seasonal_naive": lambda h: seasonal_naive(h, H, freq, 12),
            "naive": lambda h: naive(h, H, freq),
        }
        summary = stage("backtest", lambda: backtest(series, forecasters, cutoffs, H, freq, 12, 13).summary())
        forecast = stage("forecast", lambda: predict(result.checkpoint, series, device="cpu"))
    return {
        "series": n_series,
        "rows": len(series),
        "train_windows": result.n_train_windows,
        "steps": result.steps,
        "epochs": len(result.history),
        "mase": {str(k): float(v) for k, v in summary["mase"].items()},
        "forecast_rows": len(forecast.frame),
        "baseline": baseline,
        "process_peak": max(process_peak(), *(s["peak"] for s in stages)),
        "stages": stages,
    }


def write_source(path: Path, n_series: int, points: int) -> None:
    """Monthly series with a level, a trend, a yearly cycle and noise, as one Parquet file."""
    rng = np.random.default_rng(0)
    t = np.arange(points)
    y = (
        rng.uniform(50, 500, (n_series, 1)) + rng.uniform(0.1, 2, (n_series, 1)) * t
        + rng.uniform(5, 40, (n_series, 1)) * np.sin(2 * np.pi * (t + rng.integers(0, 12, (n_series, 1))) / 12)
        + rng.normal(0, 2, (n_series, points))
    )
    ids = pa.array([f"s{i:06d}" for i in range(n_series)]).take(pa.array(np.repeat(np.arange(n_series), points)))
    ds = np.tile(pd.date_range("2005-01-01", periods=points, freq="MS").to_numpy().astype("datetime64[us]"), n_series)
    pq.write_table(pa.table({"unique_id": ids, "ds": ds, "y": np.round(y.reshape(-1), 3)}), path)


def report(runs: list[dict[str, Any]]) -> None:
    sizes = [r["series"] for r in runs]
    print("\nper stage: wall seconds / peak RSS of the process during the stage (GiB)")
    print(f"{'stage':<10}" + "".join(f"{f'{n:,} series':>22}" for n in sizes))
    for i, name in enumerate(s["stage"] for s in runs[0]["stages"]):
        cells = [f"{r['stages'][i]['seconds']:>10.1f}s {r['stages'][i]['peak'] / GiB:>8.2f} GiB" for r in runs]
        print(f"{name:<10}" + "".join(f"{c:>22}" for c in cells))
    print(f"{'total':<10}" + "".join(
        f"{sum(s['seconds'] for s in r['stages']):>10.1f}s {max(s['peak'] for s in r['stages']) / GiB:>8.2f} GiB"
        for r in runs
    ))
    print("\nrows, training windows per epoch, forecast rows, backtest MASE (lstm / seasonal naive / naive):")
    for r in runs:
        m = r["mase"]
        print(f"  {r['series']:>6,} series: {r['rows']:,} rows, {r['train_windows']:,} windows, {r['epochs']} epoch(s)"
              f" of {r['steps'] // max(r['epochs'], 1):,} steps, "
              f"{r['forecast_rows']:,} forecast rows; MASE {m['lstm']:.3f} / {m['seasonal_naive']:.3f} / {m['naive']:.3f}")
    if len(runs) > 1:
        first, last = runs[0], runs[-1]
        growth = last["series"] / first["series"]
        above = [r["process_peak"] - r["baseline"] for r in (first, last)]
        print(f"\n{growth:.0f}x the series: process peak {first['process_peak'] / GiB:.2f} -> "
              f"{last['process_peak'] / GiB:.2f} GiB; above the {first['baseline'] / GiB:.2f} GiB of a process "
              f"with its imports done: {above[0] / GiB:.2f} -> {above[1] / GiB:.2f} GiB ({above[1] / above[0]:.1f}x)")


if __name__ == "__main__":
    main()
