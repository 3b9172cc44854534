"""Forecast the next ``horizon`` steps of every series from its latest observation.

Built for many series: the history is handled as whole-frame arrays (one factorize, one
sort only when the frame is not sorted yet, one gather of each series' last ``lookback``
rows), features are built and scored chunk by chunk so memory stays flat, and no Python
loop runs per series. On CUDA each chunk goes through a pinned staging buffer with a
non-blocking copy, so the next chunk's features are built while the GPU works, and the
chunk is sized to the free device memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lstm_pipeline.model import grid
from lstm_pipeline.model.checkpoint import (
    Checkpoint,
    SeriesStats,
    scaled_features,
    series_stats,
)
from lstm_pipeline.model.network import LSTMForecaster
from lstm_pipeline.model.scaling import Method, fit_stats, unscale
from lstm_pipeline.model.train import pick_device

__all__ = [
    "DEFAULT_CHUNK", "ForecastResult", "chunk_for_device", "predict", "predict_ensemble"]

FORECAST_COLUMNS = ["unique_id", "ds", "cutoff", "step", "yhat"]
# Windows per forward pass: bounded so that inference memory stays flat however many
# series there are (cuDNN asks for far more workspace on one huge batch).
DEFAULT_CHUNK = 65_536
# On a CPU, small passes are faster (the step's working set stays in cache) and light:
# 2x the windows/s of 65,536-window passes for a 2 x 64 LSTM on one core of the 2-core
# bench box, and a fraction of the memory (bench/RESULTS.md).
_CPU_CHUNK = 2_048
# On CUDA a chunk may use at most this share of the device memory free at the start.
_DEVICE_MEMORY_SHARE = 0.5
# Bytes of cuDNN workspace and activations per (window, step, layer, direction, hidden unit)
# in inference, read off a failed 1 M-window call on an H100 (368 GiB asked for hidden 128,
# 2 layers, lookback 36: about 42 bytes) and rounded up.
_CUDNN_BYTES_PER_UNIT = 48


@dataclass(frozen=True)
class ForecastResult:
    frame: pd.DataFrame  # unique_id, ds, cutoff, step, yhat
    skipped: dict[str, str]  # unique_id -> why it got no forecast


@dataclass(frozen=True)
class _Latest:
    """The last ``lookback`` periods of every series on its grid, ending at its last observation.

    Periods before a short series began and missing periods carry the nearest observation
    and mask 0 (:func:`lstm_pipeline.model.grid.layout`).
    """

    ids: pd.Index  # [S] series ids (str), sorted
    y: np.ndarray  # [S, L] float64
    ds: np.ndarray  # [S, L] datetime64
    observed: np.ndarray  # [S, L] bool
    covs: np.ndarray  # [S, L, C] float64
    stats: SeriesStats  # [S] scaler statistics of each series


def predict(
    checkpoint: Checkpoint,
    history: pd.DataFrame,
    device: str = "auto",
    chunk: int = DEFAULT_CHUNK,
) -> ForecastResult:
    """One forecast per series in ``history`` (long format), starting after its last ``ds``.

    Every series with an observation is forecast: one shorter than the lookback is padded
    (masked) before its start, missing periods are carried over and masked. Series the
    model has not seen are scaled with statistics fitted on their history.
    ``chunk`` bounds the windows per forward pass; the device may lower it further
    (:func:`chunk_for_device`). It changes the result only by float rounding.
    """
    L, H = checkpoint.window.lookback, checkpoint.window.horizon
    latest, skipped = _latest(checkpoint, history, L)
    if latest is None:
        return ForecastResult(pd.DataFrame(columns=FORECAST_COLUMNS), skipped)

    dev = pick_device(device)
    net = checkpoint.build(dev)
    n, F = len(latest.ids), checkpoint.n_features

    def features(lo: int, hi: int) -> np.ndarray:
        rows = latest.stats.take(np.repeat(np.arange(lo, hi), L))  # per row of the chunk's windows
        x = scaled_features(
            latest.y[lo:hi].reshape(-1), latest.ds[lo:hi].reshape(-1),
            latest.covs[lo:hi].reshape((hi - lo) * L, latest.covs.shape[2]), latest.observed[lo:hi].reshape(-1),
            rows, checkpoint.season_length,
        )
        return x.reshape(hi - lo, L, F)  # [c*L, F] -> [c, L, F]

    z = _infer(net, dev, features, n, (L, F), chunk_for_device(net, dev, L, F, chunk))  # [S, H] float32
    yhat = unscale(z.astype(np.float64), latest.stats.loc[:, None], latest.stats.scale[:, None])  # [S, H]

    cutoffs = latest.ds[:, -1]  # [S] each series' last observation
    grid, which = np.unique(cutoffs, return_inverse=True)
    frame = pd.DataFrame(
        {
            "unique_id": latest.ids.take(np.repeat(np.arange(n), H)),
            "ds": _future_grid(grid, checkpoint.freq, H)[which.reshape(-1)].reshape(-1),
            "cutoff": np.repeat(cutoffs, H),
            "step": np.tile(np.arange(1, H + 1, dtype=np.int32), n),
            "yhat": yhat.reshape(-1),
        }
    )
    return ForecastResult(frame, skipped)


def chunk_for_device(net: LSTMForecaster, device: torch.device, lookback: int, n_features: int, chunk: int) -> int:
    """Windows per forward pass: at most ``chunk``; on a CPU at most a cache-sized pass,
    on CUDA at most what fits in the free device memory."""
    if device.type != "cuda":
        return max(min(int(chunk), _CPU_CHUNK), 1)
    free, _ = torch.cuda.mem_get_info(device)
    lstm = net.lstm
    directions = 2 if lstm.bidirectional else 1
    per_window = lookback * (
        lstm.num_layers * directions * lstm.hidden_size * _CUDNN_BYTES_PER_UNIT + n_features * 4
    )
    return max(1, min(int(chunk), int(free * _DEVICE_MEMORY_SHARE) // per_window))


def _latest(checkpoint: Checkpoint, history: pd.DataFrame, L: int) -> tuple[_Latest | None, dict[str, str]]:
    """Each series' last ``L`` grid periods in time order, and its statistics."""
    covariates = list(checkpoint.covariates)
    if history.empty:
        return None, {}
    codes, uniques = pd.factorize(history["unique_id"], sort=True)
    ids = pd.Index(uniques).astype(str)
    ds = history["ds"].to_numpy()
    # Row positions in (series, time) order, like sort_values(["unique_id", "ds"]); None: already so.
    order = None if _is_sorted(codes, ds) else np.lexsort((ds, codes))
    if order is not None:
        codes, ds = codes[order], ds[order]
    pos = grid.positions(ds, checkpoint.freq)
    last = np.full(len(ids), np.iinfo(np.int64).min)
    np.maximum.at(last, codes, pos)
    lay = grid.layout(codes, pos, last - L + 1, np.full(len(ids), L))
    rows = lay.source if order is None else order[lay.source]  # [S*L] -> rows of history
    y = history["y"].to_numpy(dtype=np.float64)
    covs = history[covariates].to_numpy(dtype=np.float64) if covariates else np.zeros((len(history), 0))
    sorted_rows = order if order is not None else np.arange(len(history))
    stats = series_stats(checkpoint.scaler, checkpoint.cov_scalers, checkpoint.covariates, list(ids))
    if not stats.known.all():
        stats = _fit_unseen(checkpoint, stats, ids, codes, np.arange(len(ids)), y[sorted_rows], covs[sorted_rows])
    stamps = grid.dates(lay.row_positions(), checkpoint.freq, like=pd.Timestamp(ds[0])).to_numpy()
    S = len(ids)
    latest = _Latest(ids, y[rows].reshape(S, L), stamps.reshape(S, L), lay.observed.reshape(S, L),
                     covs[rows].reshape(S, L, len(covariates)), stats)
    return latest, {}


def _fit_unseen(
    checkpoint: Checkpoint, stats: SeriesStats, kept_ids: pd.Index, codes: np.ndarray, keep: np.ndarray,
    y: np.ndarray, covs: np.ndarray,
) -> SeriesStats:
    """Fill in the statistics of series a scaler has not seen, fitted on all of their history.

    Scaler by scaler, as ``fit_scalers(..., base=checkpoint)`` does: known series keep the
    checkpoint's statistics.
    """
    ids = list(kept_ids)
    slot = np.full(int(codes.max()) + 1, -1, dtype=np.int64)  # series code -> kept position

    def refit(target: np.ndarray, column: np.ndarray, spread: np.ndarray, values: np.ndarray, method: Method) -> None:
        unseen = np.flatnonzero(~target)
        if len(unseen) == 0:
            return
        slot[:] = -1
        slot[keep[unseen]] = np.arange(len(unseen))
        row_slot = slot[codes]
        rows = row_slot >= 0
        column[unseen], spread[unseen] = fit_stats(values[rows], row_slot[rows], len(unseen), method)

    loc, spread = stats.loc.copy(), stats.scale.copy()
    refit(checkpoint.scaler.lookup(ids)[2], loc, spread, y, checkpoint.scaler.method)
    cov_loc, cov_scale = stats.cov_loc.copy(), stats.cov_scale.copy()
    for j, c in enumerate(checkpoint.covariates):
        cov_scaler = checkpoint.cov_scalers[c]
        loc_j, scale_j = cov_loc[:, j].copy(), cov_scale[:, j].copy()
        refit(cov_scaler.lookup(ids)[2], loc_j, scale_j, covs[:, j], cov_scaler.method)
        cov_loc[:, j], cov_scale[:, j] = loc_j, scale_j
    return SeriesStats(loc, spread, cov_loc, cov_scale, np.ones_like(stats.known))


def _is_sorted(codes: np.ndarray, ds: np.ndarray) -> bool:
    """True when rows are already ordered by series, then strictly by time."""
    if len(codes) < 2:
        return True
    step = np.diff(codes)
    return bool((step >= 0).all() and ((step > 0) | (ds[1:] > ds[:-1])).all())


def _infer(
    net: LSTMForecaster,
    device: torch.device,
    features: Callable[[int, int], np.ndarray],
    n: int,
    window: tuple[int, int],
    chunk: int,
) -> np.ndarray:
    """``net`` over ``n`` windows built ``features(lo, hi)`` at a time -> ``[n, H]`` float32."""
    cuda = device.type == "cuda"
    out = torch.empty((n, net.horizon), dtype=torch.float32, pin_memory=cuda)
    # Two pinned staging buffers: chunk i+1 is filled while chunk i is copied and scored.
    staging: list[torch.Tensor] = []
    copied: list[torch.cuda.Event | None] = [None, None]
    with torch.inference_mode():
        for j, lo in enumerate(range(0, n, chunk)):
            hi = min(lo + chunk, n)
            host = torch.from_numpy(features(lo, hi))  # [c, L, F]
            if cuda:
                slot = j % 2
                if len(staging) <= slot:
                    staging.append(torch.empty((chunk, *window), dtype=torch.float32, pin_memory=True))
                event = copied[slot]
                if event is not None:
                    event.synchronize()  # the copy that last read this buffer is done
                buffer = staging[slot][: hi - lo]
                buffer.copy_(host)
                x = buffer.to(device, non_blocking=True)
                event = torch.cuda.Event()  # type: ignore[no-untyped-call]
                event.record()
                copied[slot] = event
            else:
                x = host
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                out[lo:hi].copy_(net(x).float(), non_blocking=cuda)  # [c, L, F] -> [c, H]
        if cuda:
            torch.cuda.synchronize(device)
    return out.numpy()


def _future_grid(cutoffs: np.ndarray, freq: str, horizon: int) -> np.ndarray:
    """``[U, H]`` timestamps after each distinct cutoff: :func:`grid.future_dates`, vectorised."""
    base = grid.positions(cutoffs, freq)
    steps = (base[:, None] + np.arange(1, horizon + 1)[None, :]).reshape(-1)
    return grid.dates(steps, freq, like=pd.Timestamp(cutoffs[0])).to_numpy().reshape(len(base), horizon)


def predict_ensemble(checkpoints: Sequence[Checkpoint], history: pd.DataFrame, device: str = "auto") -> ForecastResult:
    """The median forecast of several models (an ensemble of seeds and input lengths) over
    the same history: robust to one member that went astray on a series."""
    results = [predict(c, history, device=device) for c in checkpoints]
    if len(results) == 1:
        return results[0]
    keys = ["unique_id", "ds", "cutoff", "step"]
    frame = pd.concat([r.frame for r in results]).groupby(keys, sort=False, as_index=False)["yhat"].median()
    return ForecastResult(frame, results[0].skipped)
