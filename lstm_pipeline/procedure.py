"""Evaluate the procedure, serve the refit.

Training a model for the registry is two fits of the same procedure (configuration,
seeds, ensemble):

1. **Evaluation.** Each member is fit on the data up to the first backtest cutoff (a
   date, :func:`lstm_pipeline.backtest.cutoff_dates`), with early stopping on its last
   ``horizon`` periods. These weights never saw any backtest window, so the rolling-origin
   backtest scores them, beside the comparators, out of sample.
2. **Refit.** Each member is fit again on all data up to each series' newest observation,
   for the epochs and learning rates its evaluation run chose. These are the weights that
   are registered and forecast; they are never scored on data they learnt from.

A fine-tune is the same two fits, each started from the champion's matching weights
(evaluation from evaluation, refit from served), so its backtest is out of sample too.
The evaluation weights are kept with the model: when this model is the champion, the
next candidate's backtest scores them (not its served weights, which have seen those
windows), on the windows whose cutoffs come after their training data ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from lstm_pipeline.backtest import BacktestResult, Forecaster, backtest, cutoff_dates
from lstm_pipeline.checkpoint import Checkpoint
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import NotEnoughData
from lstm_pipeline.forecast import predict_ensemble
from lstm_pipeline.train import Callback, TrainResult, fit

__all__ = ["CANDIDATE", "Development", "StartFrom", "develop", "min_history"]

CANDIDATE = "candidate"


@dataclass(frozen=True)
class StartFrom:
    """The champion's weights a fine-tune starts from: evaluation and served members."""

    evaluation: Sequence[Checkpoint]
    served: Sequence[Checkpoint]


@dataclass(frozen=True)
class Development:
    evaluation: tuple[TrainResult, ...]  # members fit on data up to the first cutoff
    served: tuple[TrainResult, ...]  # the same members refit on all data
    backtest: BacktestResult
    cutoffs: tuple[pd.Timestamp, ...]

    @property
    def diverged(self) -> bool:
        return any(m.diverged for m in (*self.evaluation, *self.served))

    @property
    def evaluation_end(self) -> pd.Timestamp:
        """The newest period the evaluation weights learnt from."""
        return max(m.train_end for m in self.evaluation)

    @property
    def served_end(self) -> pd.Timestamp:
        """The newest period the served weights learnt from."""
        return max(m.train_end for m in self.served)


def min_history(cfg: PipelineConfig, freq: str) -> int:
    """Observations a series needs up to a cutoff to take part in a backtest window: enough
    for a seasonal MASE scale (one season and one point), at least 3."""
    season = cfg.data.season(freq)
    return cfg.backtest.min_history or max(season + 1, 3)


def develop(
    series: pd.DataFrame,
    cfg: PipelineConfig,
    freq: str,
    comparators: Mapping[str, Forecaster] | Callable[[Sequence[pd.Timestamp]], Mapping[str, Forecaster]] | None = None,
    start_from: StartFrom | None = None,
    callbacks: Sequence[Callback] = (),
    meta: dict[str, str] | None = None,
) -> Development:
    """Evaluate the training procedure on ``series`` and refit it on all of it.

    ``comparators`` (baselines, the champion) are backtested beside the candidate on the
    same windows; a callable gets the cutoff dates first. ``callbacks`` see the first
    member's evaluation epochs.
    """
    H, K, step = cfg.window.horizon, cfg.backtest.n_windows, cfg.backtest.step or cfg.window.horizon
    season = cfg.data.season(freq)
    cutoffs = cutoff_dates(series, freq, H, K, step)
    known = series[series["ds"] <= cutoffs[0]]
    if known.empty:
        raise NotEnoughData(f"no observation up to the first backtest cutoff {cutoffs[0].date()}: "
                         f"the data span less than {H + (K - 1) * step} periods")

    evaluation = tuple(
        fit(known, _member(cfg, k, season), freq, init=start_from.evaluation[k % len(start_from.evaluation)]
            if start_from else None, callbacks=callbacks, meta=meta, member=k)
        for k in range(cfg.train.ensemble)
    )
    others = comparators(cutoffs) if callable(comparators) else dict(comparators or {})
    forecasters: dict[str, Forecaster] = {
        CANDIDATE: lambda h: predict_ensemble([m.checkpoint for m in evaluation], h).frame,
        **others,
    }
    result = backtest(series, forecasters, cutoffs, H, freq, season, min_history(cfg, freq))
    served = tuple(
        fit(series, _member(cfg, k, season), freq,
            init=start_from.served[k % len(start_from.served)] if start_from else None,
            epochs=max(m.best_epoch, 1), lr_schedule=m.lr_schedule, callbacks=callbacks, meta=meta, member=k)
        for k, m in enumerate(evaluation)
    )
    return Development(evaluation, served, result, tuple(cutoffs))


def _member(cfg: PipelineConfig, k: int, season: int) -> PipelineConfig:
    """Member ``k`` of the ensemble: consecutive seeds, and the input lengths in turn."""
    lengths = cfg.window.input_lengths(season)
    return cfg.with_overrides({"train": {"seed": cfg.train.seed + k},
                               "window": {"lookback": lengths[k % len(lengths)], "lookbacks": ()}})
