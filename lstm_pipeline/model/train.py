"""Fit or fine-tune the global LSTM: one code path, device and precision chosen here.

Two kinds of run share the code:

* **with validation** (``epochs=None``): the last ``horizon`` periods before the data's
  newest date are the time-based validation split. Training windows score only targets
  before it, the scaler never sees it, and each epoch's loss on it drives early stopping;
  the best epoch's weights are kept (by default an exponential moving average of the
  weights over the steps). This is the run a backtest evaluates.
* **fixed** (``epochs=N``, ``lr_schedule``): every observation is training data, for a
  given number of epochs and learning rates (those the validated run chose), and the
  last weights are kept. This is the refit that serves: the same procedure on all data.

Fine-tuning is the same function started from a checkpoint (``init``), with its own
epochs and learning rate. Side effects (logging to MLflow, progress) go through callbacks.
Missing periods and short series are handled by the panel (:mod:`lstm_pipeline.model.windows`):
a target counts only where it was observed.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import NotEnoughData
from lstm_pipeline.model import grid, seasonal
from lstm_pipeline.model.checkpoint import Checkpoint, build_panel, fit_scalers
from lstm_pipeline.model.network import LSTMForecaster
from lstm_pipeline.model.scaling import SeriesScaler
from lstm_pipeline.model.windows import Panel, Windows, gather, windows

__all__ = ["EpochLog", "TrainResult", "default_batch_size", "fit", "pick_device"]

log = logging.getLogger(__name__)

Mode = Literal["retrain", "finetune"]
# A loss this many times the first epoch's marks a run that blew up.
_EXPLODED = 1e3
_MIN_STEPS = 16


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    lr: float
    seconds: float
    member: int = 0  # which ensemble member
    fit: str = "evaluation"  # "evaluation" (early stopping) or "refit" (fixed epochs)
    max_epochs: int = 0  # the most epochs this fit may run


Callback = Callable[[EpochLog], None]


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint
    mode: Mode
    history: tuple[EpochLog, ...]
    best_epoch: int
    steps: int
    device: str
    diverged: bool
    n_train_windows: int
    n_val_windows: int
    seconds: float
    cpu_seconds: float  # process CPU time of the fit, every thread
    data_end: pd.Timestamp  # the newest period of the data given
    train_end: pd.Timestamp  # the newest period whose value the weights learnt from
    skipped_series: dict[str, str] = field(default_factory=dict)
    # What early stopping watched: "validation", "training loss" (no series observed in the
    # validation periods) or "fixed epochs" (a refit).
    stopped_on: str = "validation"

    @property
    def lr_schedule(self) -> tuple[float, ...]:
        """The learning rate of each epoch up to the best one: what a refit replays."""
        return tuple(e.lr for e in self.history[: self.best_epoch])


def pick_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def default_batch_size(device: torch.device) -> int:
    # Small CPU batches converge in fewer passes; the GPU needs large ones to stay busy.
    return 4096 if device.type == "cuda" else 256


def fit(
    frame: pd.DataFrame,
    cfg: PipelineConfig,
    freq: str,
    init: Checkpoint | None = None,
    callbacks: Sequence[Callback] = (),
    meta: dict[str, str] | None = None,
    epochs: int | None = None,
    lr_schedule: Sequence[float] | None = None,
    member: int = 0,
) -> TrainResult:
    """Train on ``frame`` (long format: the rows this run may use) and return the result.

    ``epochs=None``: early stopping on the last ``horizon`` periods (see the module doc).
    ``epochs=N``: N epochs on every row, at the learning rates ``lr_schedule`` (one per
    epoch; default the configured rate). With ``init`` the run fine-tunes: weights and
    scaler statistics start from the checkpoint, and ``train.finetune_epochs`` /
    ``train.finetune_lr`` apply.

    On a CPU the fit runs on ``train.cpu_threads`` threads (default 1): a small LSTM's
    operations are too short to share between threads, and spare threads that spin on a
    busy machine cost many times the CPU time (bench/RESULTS.md, "Training cost").
    """
    threads = torch.get_num_threads()
    if pick_device(cfg.train.device).type == "cpu" and cfg.train.cpu_threads:
        torch.set_num_threads(cfg.train.cpu_threads)
    try:
        return _fit(frame, cfg, freq, init, callbacks, meta, epochs, lr_schedule, member)
    finally:
        torch.set_num_threads(threads)


def _fit(
    frame: pd.DataFrame,
    cfg: PipelineConfig,
    freq: str,
    init: Checkpoint | None,
    callbacks: Sequence[Callback],
    meta: dict[str, str] | None,
    epochs: int | None,
    lr_schedule: Sequence[float] | None,
    member: int,
) -> TrainResult:
    started, cpu_started = time.perf_counter(), time.process_time()
    cfg = cfg.for_training()
    season = cfg.data.season(freq)
    # One model: the configured lookback, else the first of the ensemble's input lengths.
    if cfg.window.lookback is None:
        cfg = cfg.with_overrides({"window": {"lookback": cfg.window.input_lengths(season)[0], "lookbacks": ()}})
    tc, H = cfg.train, cfg.window.horizon
    L = int(cfg.window.lookback or 1)
    mode: Mode = "finetune" if init is not None else "retrain"
    torch.manual_seed(tc.seed)
    device = pick_device(tc.device)
    covariates = tuple(cfg.data.covariates)
    if init is not None:
        _check_compatible(init, cfg, season, covariates)
    if frame.empty:
        raise NotEnoughData("no data to train on")

    frame = frame.sort_values(["unique_id", "ds"], ignore_index=True)
    data_end = pd.Timestamp(frame["ds"].max())
    validated = epochs is None
    # Validated runs learn from periods up to `train_end`; the next `validation` periods
    # (default H; fewer on a short history, see procedure.plan) are the validation split.
    train_end = grid.shift(data_end, -(tc.validation_periods or H), freq) if validated else data_end
    fit_rows = (frame["ds"] <= train_end).to_numpy()
    late = sorted(set(frame["unique_id"]) - set(frame.loc[fit_rows, "unique_id"]))
    skipped = {str(u): f"no observation up to {train_end.date()}, before the validation split" for u in late}
    if late:
        keep = ~frame["unique_id"].isin(late).to_numpy()
        frame, fit_rows = frame[keep].reset_index(drop=True), fit_rows[keep]
    if frame.empty:
        raise NotEnoughData(f"no series has an observation up to {train_end.date()} to train on")

    scaler, cov_scalers = fit_scalers(frame[fit_rows], covariates, base=init)
    panel = build_panel(frame, scaler, cov_scalers, season, covariates, freq, pad=L - 1)
    values = _to_device(torch.from_numpy(panel.values), device)
    weights = _to_device(torch.from_numpy(_row_weights(frame[fit_rows], panel, scaler, freq, season,
                                                       tc.loss_weighting)), device)
    split = panel.local(np.full(len(panel.ids), grid.positions([train_end], freq)[0]))
    train_w = windows(panel, L, H, last_target=split)
    val_w = windows(panel, L, H, last_target=panel.lengths - 1, first_cutoff=split, last_cutoff=split) \
        if validated else Windows(np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(train_w) == 0:
        raise NotEnoughData("no series has two observations up to the training cutoff: nothing to learn from")
    stopped_on = "validation" if len(val_w) else "training loss" if validated else "fixed epochs"
    if validated and not len(val_w):
        log.warning("no series is observed in the %d validation periods after %s: early stopping watches the "
                    "training loss instead", H, train_end.date())
    train_idx = _windows_to_device(train_w, device)
    val_idx = _windows_to_device(val_w, device)

    net = LSTMForecaster(panel.values.shape[1], H, season_length=season, **cfg.model.model_dump()).to(device)
    if init is not None:
        net.load_state_dict(init.state_dict)
    if epochs is None:
        epochs = tc.finetune_epochs if init is not None else tc.max_epochs
    lr = tc.finetune_lr if init is not None else tc.lr
    rates = list(lr_schedule) if lr_schedule is not None else None
    # On CUDA the fused kernel updates all parameters in a few launches instead of many.
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=tc.weight_decay, fused=device.type == "cuda")
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(tc.patience // 3, 1))
    loss_fn = {"mae": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}[tc.loss](reduction="none")
    # Few windows (one short series) would make an epoch one or two optimiser steps and
    # stop training before it starts: cap the batch so an epoch has at least _MIN_STEPS.
    per_epoch = min(len(train_w), tc.max_windows_per_epoch or len(train_w))
    batch = max(min(tc.batch_size or default_batch_size(device), math.ceil(per_epoch / _MIN_STEPS)), 1)
    generator = torch.Generator(device=device).manual_seed(tc.seed)
    amp = device.type == "cuda"

    # Scored and kept: a moving average of the weights over the steps. It is smoother than
    # the last step's weights, so early stopping is less often fooled by one lucky epoch.
    ema = None
    if tc.ema_decay > 0:
        average = torch.optim.swa_utils.get_ema_multi_avg_fn(tc.ema_decay)
        ema = torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=average)
    history: list[EpochLog] = []
    best_state, best_loss, best_epoch, steps, diverged = None, math.inf, 0, 0, False
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        if rates is not None:
            for group in optimizer.param_groups:
                group["lr"] = rates[min(epoch, len(rates)) - 1]
        net.train()
        # A large panel has more windows than an epoch needs: a fresh random sample each
        # epoch keeps an epoch's cost bounded whatever the number and length of series.
        order = torch.randperm(len(train_w), device=device, generator=generator)[:per_epoch]
        # Summed on the device (float64, the same arithmetic as Python floats): reading
        # the loss back every step would make the CPU wait for the GPU at each batch.
        total = torch.zeros((), dtype=torch.float64, device=device)
        for i in range(0, len(order), batch):
            pick = order[i : i + batch]
            starts = train_idx[0][pick]
            x, y, w = gather(values, (starts, train_idx[1][pick]), L, H)  # [B, L, F], [B, H], [B, H]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = _weighted(loss_fn, net(x).float(), y, w, weights[starts])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(net)
            total += loss.detach().double() * len(starts)
            steps += 1
        train_loss = float(total) / max(len(order), 1)
        scored = net if ema is None else ema.module
        val_loss = _evaluate(scored, values, weights, val_idx, L, H, loss_fn, batch, amp) if len(val_w) else train_loss
        history.append(EpochLog(epoch, train_loss, val_loss, optimizer.param_groups[0]["lr"], time.perf_counter() - t0,
                                member, "evaluation" if validated else "refit", epochs))
        log.debug(
            "epoch %d/%d: train %.4f, validation %.4f (%s, %.1fs)", epoch, epochs, train_loss, val_loss,
            mode, history[-1].seconds,
        )
        for callback in callbacks:
            callback(history[-1])

        if not math.isfinite(train_loss) or train_loss > _EXPLODED * max(history[0].train_loss, 1e-6):
            log.warning("training diverged at epoch %d (train loss %s)", epoch, train_loss)
            diverged = True
            break
        if not validated:  # a fixed run keeps its last weights
            best_state, best_epoch = scored.state_dict(), epoch
            continue
        if rates is None:
            schedule.step(val_loss)
        if val_loss < best_loss - 1e-6:
            best_state, best_loss, best_epoch = copy.deepcopy(scored.state_dict()), val_loss, epoch
        elif epoch - best_epoch >= tc.patience:
            break

    if best_state is None:  # diverged before any usable epoch: keep what there is, flagged
        best_state, diverged = net.state_dict(), True
    checkpoint = Checkpoint(
        model=cfg.model,
        window=cfg.window,
        freq=freq,
        season_length=season,
        covariates=covariates,
        scaler=scaler,
        cov_scalers=cov_scalers,
        state_dict={k: v.detach().cpu() for k, v in best_state.items()},
        meta=dict(meta or {}),
    )
    return TrainResult(
        checkpoint=checkpoint,
        mode=mode,
        history=tuple(history),
        best_epoch=best_epoch,
        steps=steps,
        device=str(device),
        diverged=diverged,
        n_train_windows=len(train_w),
        n_val_windows=len(val_w),
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        data_end=data_end,
        train_end=train_end,
        skipped_series=skipped,
        stopped_on=stopped_on,
    )


def _check_compatible(init: Checkpoint, cfg: PipelineConfig, season: int, covariates: tuple[str, ...]) -> None:
    """Fine-tuning needs the same network shape and inputs as the checkpoint."""
    ours = {"model": cfg.model, "window": cfg.window, "season_length": season, "covariates": covariates}
    theirs = {"model": init.model, "window": init.window, "season_length": init.season_length,
              "covariates": init.covariates}
    differ = [key for key in ours if ours[key] != theirs[key]]
    if differ:
        raise ValueError(f"cannot fine-tune from this checkpoint: {', '.join(differ)} differ; retrain instead")


@torch.no_grad()
def _evaluate(
    net: LSTMForecaster,
    values: torch.Tensor,
    weights: torch.Tensor,
    idx: tuple[torch.Tensor, torch.Tensor],
    lookback: int,
    horizon: int,
    loss_fn: nn.Module,
    batch: int,
    amp: bool,
) -> float:
    net.eval()
    total = torch.zeros((), dtype=torch.float64, device=values.device)
    n = len(idx[0])
    for i in range(0, n, batch):
        starts, limits = idx[0][i : i + batch], idx[1][i : i + batch]
        x, y, w = gather(values, (starts, limits), lookback, horizon)
        with torch.autocast(values.device.type, dtype=torch.bfloat16, enabled=amp):
            total += _weighted(loss_fn, net(x).float(), y, w, weights[starts]).double() * len(starts)
    return float(total) / n


def _weighted(
    loss_fn: nn.Module, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Mean over the scored targets ``[B, H]`` (``mask`` 1) of the loss times its series' weight ``[B]``."""
    per_step = loss_fn(pred, target) * mask * weight[:, None]  # [B, H]
    return per_step.sum() / mask.sum().clamp(min=1.0)


def _row_weights(
    fit_frame: pd.DataFrame, panel: Panel, scaler: SeriesScaler, freq: str, season: int, weighting: str
) -> np.ndarray:
    """Per panel row, the loss weight of the series it belongs to (``[T]`` float32).

    With ``"mase"``, an error in scaled units is converted into units of the series'
    in-sample seasonal-naive MAE (the MASE denominator), so training minimises what the
    backtest and the promotion gate measure. Weights are clipped and averaged to one; a
    series without a MASE scale (constant, or a single point) gets the average.
    """
    if weighting == "none":
        return np.ones(len(panel.values), dtype=np.float32)
    scales = seasonal.mase_scales(fit_frame, freq, season).reindex(list(panel.ids)).to_numpy()
    w = np.array([scaler.stats[uid][1] for uid in panel.ids]) / scales
    w = np.where(np.isfinite(w) & (w > 0), w, np.nan)
    w = np.clip(w, *np.nanquantile(w, [0.02, 0.98])) if np.isfinite(w).any() else np.ones(len(w))
    w = np.where(np.isfinite(w), w, np.nanmean(w)) / np.nanmean(w)
    return np.repeat(w, panel.lengths).astype(np.float32)


def _windows_to_device(found: Windows, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(found.starts).to(device), torch.from_numpy(found.limits).to(device)


def _to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device``; to CUDA through pinned memory, without blocking the host."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
