"""Throughput of the pipeline's trainer and forecaster against a bare cuDNN loop, same model.

For each device (the CPU, then CUDA when there is one) and each batch size, in one process:

* training: ``lstm_pipeline.model.train.fit`` on a synthetic monthly panel (windows gathered
  from the panel on the device, AdamW, clipping, bf16 autocast on CUDA), timed over the
  epochs after the first, against a bare loop (``nn.LSTM`` + ``nn.Linear`` on random
  tensors already on the device, Adam, the same precision) over the same number of
  windows. An epoch of ``fit`` also scores its validation windows (one per series).
* inference: ``lstm_pipeline.model.forecast.predict`` on a history frame (pandas in, pandas
  out: ids, scaling, features, transfer, model, output frame) against a bare chunked
  forward pass over random tensors already on the device.

Windows per second of each and their ratio (pipeline / bare) are printed: medians over
per-epoch (training) or per-call (inference) rates from ``--rounds`` alternating runs. Usage::

    .venv/bin/python bench/throughput.py                          # CPU, then CUDA if present
    .venv/bin/python bench/throughput.py --device cuda --batch 4096 8192
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from lstm_pipeline.config import load_config
from lstm_pipeline.model.forecast import DEFAULT_CHUNK, chunk_for_device, predict
from lstm_pipeline.model.train import EpochLog, TrainResult, default_batch_size, fit

FREQ, SEASON = "MS", 12
N_FEATURES = 4  # scaled target, observed mask, sin/cos of the month
# Per device: training windows per epoch, timed epochs, inference windows.
SIZES = {"cpu": (4_608, 1, 16_384), "cuda": (524_288, 3, 1_000_000)}


@dataclass(frozen=True)
class Model:
    hidden: int
    layers: int
    lookback: int
    horizon: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, then CUDA when present")
    parser.add_argument("--batch", type=int, nargs="*", help="training batch sizes (default: the device's default)")
    parser.add_argument("--train-windows", type=int, help="training windows per epoch")
    parser.add_argument("--epochs", type=int, help="timed epochs per round (after one warm-up epoch)")
    parser.add_argument("--rounds", type=int, default=2, help="pipeline/bare pairs, run alternately; medians printed")
    parser.add_argument("--infer-windows", type=int, help="series (= windows) to forecast")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lookback", type=int, default=36)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--points", type=int, default=240, help="points per training series")
    args = parser.parse_args()

    model = Model(args.hidden, args.layers, args.lookback, args.horizon)
    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            raise SystemExit("--device cuda: no CUDA device here")
        devices.remove("cuda")
        print("no CUDA device here: CPU only\n")
    for name in devices:
        device = torch.device(name)
        windows, epochs, infer = SIZES[name]
        run_device(
            device, model, args.batch or [default_batch_size(device)], args.train_windows or windows,
            args.epochs or epochs, args.infer_windows or infer, args.points, args.rounds,
        )


def run_device(
    device: torch.device, model: Model, batches: list[int], windows: int, epochs: int, infer: int, points: int,
    rounds: int,
) -> None:
    print(describe(device))
    print(f"model: LSTM {model.layers} x {model.hidden}, lookback {model.lookback}, horizon {model.horizon}, "
          f"{N_FEATURES} features, dropout 0; precision: {'bf16 autocast' if device.type == 'cuda' else 'fp32'}")
    # Training windows of one series in fit: every observed cutoff with a target before the
    # validation split (the last horizon points); short series are padded, not skipped.
    per_series = points - model.horizon - 1
    if per_series < 1:
        raise SystemExit(f"--points {points} is too short for a horizon of {model.horizon}")
    print("\ntraining     batch   windows/epoch   pipeline w/s       bare w/s   ratio")
    checkpoint = None
    for batch in batches:
        # fit caps the batch so that an epoch has at least 16 steps: give it enough windows.
        frame = synthetic_panel(math.ceil(max(windows, 16 * batch) / per_series), points, seed=0)
        pipeline, bare = [], []
        for _ in range(rounds):  # alternate, so that load from other processes hits both alike
            result, rates = time_fit(frame, device, model, batch, epochs)
            pipeline += rates
            bare += bare_training(device, model, result.n_train_windows, batch, epochs)
        checkpoint = result.checkpoint
        pipeline_rate, bare_rate = float(np.median(pipeline)), float(np.median(bare))
        print(f"{'':12} {batch:>5} {result.n_train_windows:>15,} {pipeline_rate:>14,.0f} {bare_rate:>14,.0f}"
              f" {pipeline_rate / bare_rate:>7.2f}")

    assert checkpoint is not None
    history = synthetic_panel(infer, model.lookback + model.horizon, seed=1)
    net = checkpoint.build(device)
    chunk = chunk_for_device(net, device, model.lookback, N_FEATURES, DEFAULT_CHUNK)
    predict(checkpoint, history.head(1000 * (model.lookback + model.horizon)), device=device.type)  # warm-up
    pipeline, bare = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        forecast = predict(checkpoint, history, device=device.type).frame
        pipeline.append(infer / (time.perf_counter() - started))
        assert len(forecast) == infer * model.horizon
        bare.append(bare_inference(device, model, infer, chunk))
    pipeline_rate, bare_rate = float(np.median(pipeline)), float(np.median(bare))
    print("\ninference    chunk         windows   pipeline w/s       bare w/s   ratio")
    print(f"{'':8} {chunk:>9,} {infer:>15,} {pipeline_rate:>14,.0f} {bare_rate:>14,.0f} {pipeline_rate / bare_rate:>7.2f}")
    print()


def time_fit(
    frame: pd.DataFrame, device: torch.device, model: Model, batch: int, epochs: int
) -> tuple[TrainResult, list[float]]:
    """``fit`` for 1 + ``epochs`` epochs; windows/s of each epoch after the first."""
    cfg = load_config(
        overrides={
            "window": {"lookback": model.lookback, "horizon": model.horizon},
            "model": {"hidden_size": model.hidden, "num_layers": model.layers, "dropout": 0.0},
            "train": {"max_epochs": 1 + epochs, "patience": 1000, "batch_size": batch, "device": device.type},
        },
        environ={},
    )
    seen: list[EpochLog] = []
    result = fit(frame, cfg, FREQ, callbacks=[seen.append])
    return result, [result.n_train_windows / e.seconds for e in seen[1:]]


def bare_training(device: torch.device, model: Model, n: int, batch: int, epochs: int) -> list[float]:
    """The same network shape trained on random tensors already on the device: the reference."""
    torch.manual_seed(0)
    lstm = nn.LSTM(N_FEATURES, model.hidden, model.layers, batch_first=True).to(device)
    head = nn.Linear(model.hidden, model.horizon).to(device)
    params = [*lstm.parameters(), *head.parameters()]
    cuda = device.type == "cuda"
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=cuda)
    x = torch.randn(n, model.lookback, N_FEATURES, device=device)
    y = torch.randn(n, model.horizon, device=device)

    def epoch() -> None:
        for i in range(0, n, batch):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                _, (h_n, _) = lstm(x[i : i + batch])  # [B, L, F] -> h_n [layers, B, hidden]
                loss = (head(h_n[-1]).float() - y[i : i + batch]).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    rates = []
    for _ in range(epochs):
        sync(device)
        started = time.perf_counter()
        epoch()
        sync(device)
        rates.append(n / (time.perf_counter() - started))
    return rates


@torch.inference_mode()
def bare_inference(device: torch.device, model: Model, n: int, chunk: int) -> float:
    torch.manual_seed(0)
    lstm = nn.LSTM(N_FEATURES, model.hidden, model.layers, batch_first=True).to(device).eval()
    head = nn.Linear(model.hidden, model.horizon).to(device).eval()
    x = torch.randn(n, model.lookback, N_FEATURES, device=device)
    cuda = device.type == "cuda"

    def forward(part: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            _, (h_n, _) = lstm(part)
            out: torch.Tensor = head(h_n[-1]).float()  # [c, H]
            return out

    forward(x[:1000])  # warm-up
    sync(device)
    started = time.perf_counter()
    for i in range(0, n, chunk):
        forward(x[i : i + chunk])
    sync(device)
    return n / (time.perf_counter() - started)


def synthetic_panel(n_series: int, points: int, seed: int) -> pd.DataFrame:
    """Monthly series: level, trend, yearly cycle, noise; long format, sorted."""
    rng = np.random.default_rng(seed)
    t = np.arange(points)
    level = rng.uniform(50, 500, (n_series, 1))
    y = level + rng.uniform(0.1, 2, (n_series, 1)) * t + rng.uniform(5, 40, (n_series, 1)) * np.sin(
        2 * np.pi * (t + rng.integers(0, 12, (n_series, 1))) / 12
    ) + rng.normal(0, 2, (n_series, points))
    ids = pd.Index([f"s{i:07d}" for i in range(n_series)])
    return pd.DataFrame({
        "unique_id": ids.take(np.repeat(np.arange(n_series), points)),
        "ds": np.tile(pd.date_range("2000-01-01", periods=points, freq=FREQ).to_numpy(), n_series),
        "y": y.reshape(-1),
    })


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"== device: {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")  # type: ignore[no-untyped-call]
    return (f"== device: CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
