"""Forecast many series (a million by default) x 12 steps in chunks: series/s and peak memory.

A synthetic monthly history (``--points`` per series, cutoffs spread over three months,
one series in a thousand too short to forecast) is handed to
``lstm_pipeline.model.forecast.predict`` with a model of the pipeline's default size whose
scaler knows half of the series (the other half is scaled on its own history, as for
series the model has never seen). Printed: wall time, series per second, and peak
resident memory of the process before and during the call (and peak GPU memory on CUDA).

Peak memory of a section is measured by resetting the kernel's high-water mark
(``/proc/self/clear_refs``, Linux) at its start and reading ``VmHWM`` at its end; where
that is not possible, a thread samples ``VmRSS`` every 5 ms. Usage::

    .venv/bin/python bench/forecast_scale.py                     # 1,000,000 series, device auto
    .venv/bin/python bench/forecast_scale.py --series 100000 --device cpu
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import torch

from lstm_pipeline.config import ModelConfig, WindowConfig
from lstm_pipeline.model.checkpoint import Checkpoint
from lstm_pipeline.model.forecast import DEFAULT_CHUNK, chunk_for_device, predict
from lstm_pipeline.model.network import LSTMForecaster
from lstm_pipeline.model.scaling import SeriesScaler, fit_stats
from lstm_pipeline.model.train import pick_device

GiB = 2**30


class PeakRSS:
    """Peak resident set size of the process while the ``with`` block runs, in bytes."""

    def __enter__(self) -> PeakRSS:
        self.start = _status("VmRSS")
        self._sampler: threading.Thread | None = None
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            self._stop, self._seen = threading.Event(), self.start
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.end = _status("VmRSS")
        if self._sampler is None:
            self.peak = _status("VmHWM")
        else:
            self._stop.set()
            self._sampler.join()
            self.peak = max(self._seen, self.end)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._seen = max(self._seen, _status("VmRSS"))


def _status(field: str) -> int:
    """A memory line of /proc/self/status in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def current_rss() -> int:
    """Resident set size of the process now, in bytes."""
    return _status("VmRSS")


def process_peak() -> int:
    """Peak RSS of the process, in bytes (``ru_maxrss``: since the last PeakRSS reset, if any)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synthetic_history(n_series: int, points: int, lookback: int, seed: int = 0) -> pd.DataFrame:
    """Long-format monthly history, sorted by series then time, built without a Python loop.

    Series end on one of three consecutive months; every 1000th series keeps only
    ``lookback - 1`` points (too short to forecast).
    """
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"s{i:07d}" for i in range(n_series)], dtype="str")
    end = 300 - rng.integers(0, 3, n_series)  # months after 2000-01
    months = end[:, None] - points + 1 + np.arange(points)  # [S, P]
    t = np.arange(points)
    y = (
        rng.uniform(50, 500, (n_series, 1)) + rng.uniform(0.1, 2, (n_series, 1)) * t
        + rng.uniform(5, 40, (n_series, 1)) * np.sin(2 * np.pi * months / 12) + rng.normal(0, 2, (n_series, points))
    )
    keep = np.ones((n_series, points), dtype=bool)
    keep[::1000, : points - (lookback - 1)] = False
    series = np.repeat(np.arange(n_series), points)[keep.reshape(-1)]
    return pd.DataFrame({
        "unique_id": ids.take(series),
        "ds": (np.datetime64("2000-01", "M") + months[keep]).astype("datetime64[us]"),
        "y": y[keep],
    })


def make_checkpoint(history: pd.DataFrame, model: ModelConfig, window: WindowConfig, known_share: float) -> Checkpoint:
    """A model of the given size (head perturbed so the network matters) knowing part of the series."""
    codes, ids = pd.factorize(history["unique_id"], sort=True)
    n_known = int(len(ids) * known_share)
    rows = codes < n_known
    loc, spread = fit_stats(history["y"].to_numpy()[rows], codes[rows], n_known)
    scaler = SeriesScaler("standard", dict(zip(ids[:n_known], zip(loc.tolist(), spread.tolist()))))
    torch.manual_seed(0)
    net = LSTMForecaster(4, window.horizon, season_length=12, **model.model_dump())  # target, mask, 2 calendar
    last: torch.nn.Linear = net.head[-1]  # type: ignore[assignment]
    torch.nn.init.normal_(last.weight, std=0.05)
    return Checkpoint(model=model, window=window, freq="MS", season_length=12, covariates=(), scaler=scaler,
                      cov_scalers={}, state_dict=net.state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--points", type=int, help="points per series (default: lookback + horizon)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--hidden", type=int, default=ModelConfig().hidden_size)
    parser.add_argument("--layers", type=int, default=ModelConfig().num_layers)
    parser.add_argument("--lookback", type=int, default=WindowConfig().lookback)
    parser.add_argument("--horizon", type=int, default=WindowConfig().horizon)
    parser.add_argument("--known-share", type=float, default=0.5, help="share of series the scaler knows")
    args = parser.parse_args()

    device = pick_device(args.device)
    model = ModelConfig(hidden_size=args.hidden, num_layers=args.layers, dropout=0.0)
    window = WindowConfig(lookback=args.lookback, horizon=args.horizon)
    points = args.points or args.lookback + args.horizon
    print(f"device: {_describe(device)}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores")
    print(f"model: LSTM {args.layers} x {args.hidden}, lookback {args.lookback}, horizon {args.horizon}; "
          f"{args.series:,} series x {points} points; scaler knows {args.known_share:.0%}")

    started = time.perf_counter()
    history = synthetic_history(args.series, points, args.lookback)
    checkpoint = make_checkpoint(history, model, window, args.known_share)
    print(f"data: {len(history):,} rows built in {time.perf_counter() - started:.1f}s, "
          f"history frame {history.memory_usage(deep=True).sum() / GiB:.2f} GiB")
    chunk = chunk_for_device(checkpoint.build(device), device, args.lookback, checkpoint.n_features, args.chunk)
    predict(checkpoint, history.head(1000 * points), device=device.type, chunk=args.chunk)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    before = process_peak()  # building the data; PeakRSS resets this mark
    with PeakRSS() as memory:
        started = time.perf_counter()
        result = predict(checkpoint, history, device=device.type, chunk=args.chunk)
        seconds = time.perf_counter() - started
    forecast, n_done = result.frame, args.series - len(result.skipped)
    assert len(forecast) == n_done * args.horizon and np.isfinite(forecast["yhat"]).all()
    print(f"forecast: {n_done:,} series x {args.horizon} = {len(forecast):,} rows "
          f"({len(result.skipped):,} skipped as too short), chunk {chunk:,} windows")
    print(f"  time {seconds:.1f}s = {n_done / seconds:,.0f} series/s")
    print(f"  RSS before {memory.start / GiB:.2f} GiB, peak during predict {memory.peak / GiB:.2f} GiB "
          f"(+{(memory.peak - memory.start) / GiB:.2f} GiB), after {memory.end / GiB:.2f} GiB; "
          f"process peak {max(before, memory.peak) / GiB:.2f} GiB")
    if device.type == "cuda":
        print(f"  GPU peak allocated {torch.cuda.max_memory_allocated(device) / GiB:.2f} GiB, "
              f"reserved {torch.cuda.max_memory_reserved(device) / GiB:.2f} GiB")


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / GiB:.0f} GiB)"
    return "CPU"


if __name__ == "__main__":
    main()
