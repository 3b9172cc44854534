"""Evaluate the procedure, serve the refit; score every member and their combination.

Training a model for the registry is two fits of the same procedure (configuration,
seeds, ensemble):

1. **Evaluation.** Each LSTM member is fit on the data up to the first backtest cutoff
   (a date, :func:`lstm_pipeline.evaluate.backtest.cutoff_dates`), with early stopping on its last
   ``horizon`` periods. These weights never saw any backtest window, so the rolling-origin
   backtest scores them, beside the comparators, out of sample.
2. **Refit.** Each member is then trained on all data up to each series' newest
   observation: by default started from its evaluation weights, for a share
   (``train.refit_share``) of the epochs its evaluation chose, at the learning rate it
   ended with; these are the weights that are registered and forecast, never scored on
   data they learnt from. (``train.refit_warm_start: false`` refits from scratch for the
   whole schedule.)

The statistical members (:mod:`lstm_pipeline.evaluate.members`) are fitted at each cutoff on the
history up to it. The backtest scores every member alone, seasonal naive and naive, and
the equal-weight **combinations**: all members (the candidate forecast), and all but the
LSTM (what the forecast would be without it). A combination is named by its members,
``lstm+auto_ets+theta``. Its weights are fixed in advance, so its score is out of sample.

A fine-tune is the same two fits, each started from the champion's matching weights
(evaluation from evaluation, refit from served), so its backtest is out of sample too.
The evaluation weights are kept with the model: when this model is the champion, the
next candidate's backtest scores them (not its served weights, which have seen those
windows), on the windows whose targets come after every period they saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import itertools
import logging
from dataclasses import dataclass, field

import pandas as pd

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import NotEnoughData
from lstm_pipeline.evaluate import members
from lstm_pipeline.evaluate.backtest import BacktestResult, Forecaster, backtest, cutoff_dates
from lstm_pipeline.model import grid
from lstm_pipeline.model.checkpoint import Checkpoint
from lstm_pipeline.model.forecast import predict_ensemble
from lstm_pipeline.model.train import Callback, TrainResult, fit

__all__ = [
    "Development", "StartFrom", "best_choice", "choice_name", "choices", "comparators", "develop", "min_history", "minimum_span", "plan",
    "weights_of",
]

log = logging.getLogger(__name__)

# Always scored beside the members: the bar every forecast must clear.
NAIVE = ("seasonal_naive", "naive")


@dataclass(frozen=True)
class StartFrom:
    """The champion's weights a fine-tune starts from: evaluation and served members."""

    evaluation: Sequence[Checkpoint]
    served: Sequence[Checkpoint]


@dataclass(frozen=True)
class Development:
    evaluation: tuple[TrainResult, ...]  # LSTM members fit on data up to the first cutoff
    served: tuple[TrainResult, ...]  # the same members refit on all data
    backtest: BacktestResult
    cutoffs: tuple[pd.Timestamp, ...]
    choices: tuple[str, ...]  # the forecasts that may be served: the combination, each member alone
    # The backtest and validation in use (shrunk on a short history, see plan).
    windows: dict[str, int] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return any(m.diverged for m in (*self.evaluation, *self.served))

    @property
    def evaluation_data_end(self) -> pd.Timestamp:
        """The newest period the evaluation fits looked at, early-stopping periods included."""
        return max(m.data_end for m in self.evaluation)

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


def minimum_span(horizon: int) -> int:
    """The fewest periods the longest series must span to train: ``horizon`` to backtest
    on, then before them at least 2 to learn from and 1 to validate on."""
    return horizon + 3


def plan(series: pd.DataFrame, cfg: PipelineConfig, freq: str) -> PipelineConfig:
    """``cfg`` with its backtest and validation shrunk to what ``series`` allows.

    The longest series' span ``S`` (periods) decides: backtest windows are dropped (down to
    one) until the data before the first cutoff holds a full validation split and two
    periods to learn from; then the validation split shrinks to half of that data; the
    observations a series needs to be scored at a cutoff shrink to what lies before it
    (at least 3). Below :func:`minimum_span`, NotEnoughData names the minimum, what the data
    has and the setting to change. Explicit settings are kept where the data allows them.
    """
    H, step = cfg.window.horizon, cfg.backtest.step or cfg.window.horizon
    first, newest = grid.positions([series["ds"].min(), series["ds"].max()], freq)
    span = int(newest - first + 1)
    if span < minimum_span(H):
        raise NotEnoughData(
            f"the longest series spans {span} periods ({freq}); training needs at least {minimum_span(H)} "
            f"(window.horizon {H} to backtest on, 2 to learn from and 1 to validate on): add history or lower "
            f"window.horizon")
    K = cfg.backtest.n_windows
    validation = cfg.train.validation_periods or H
    while K > 1 and span - H - (K - 1) * step < validation + 2:
        K -= 1
    before = span - H - (K - 1) * step  # periods up to the first cutoff
    if before < validation + 2:  # as much to learn from as to validate on
        validation = max(1, before // 2)
    history = min(min_history(cfg, freq), max(before, 3))
    changes = {"backtest": {"n_windows": K, "min_history": history}, "train": {"validation_periods": validation}}
    if (K, validation) != (cfg.backtest.n_windows, cfg.train.validation_periods or H):
        log.warning("a short history (%d periods): %d backtest window(s), %d validation period(s), series scored "
                    "from %d observations", span, K, validation, history)
    return cfg.with_overrides(changes)


def choice_name(names: Sequence[str]) -> str:
    """The name of the equal-weight combination of ``names``: ``lstm+auto_ets+theta``."""
    return "+".join(names)


def weights_of(choice: str) -> dict[str, float]:
    """The members and weights of a choice named by :func:`choice_name`."""
    return members.equal_weights(choice.split("+"))


def choices(cfg: PipelineConfig) -> tuple[str, ...]:
    """What the gate may serve: the equal-weight combination of every non-empty subset of
    the members, largest first (all of them, then the pairs, then each member alone)."""
    names = cfg.combine.members
    return tuple(choice_name(c) for k in range(len(names), 0, -1) for c in itertools.combinations(names, k))


def comparators(cfg: PipelineConfig) -> tuple[str, ...]:
    """Scored beside the choices, never served by this version: seasonal naive, naive, and
    AutoETS and Theta when ``backtest.statistical_baselines``."""
    extra = ("auto_ets", "theta") if cfg.backtest.statistical_baselines else ()
    return tuple(n for n in dict.fromkeys([*NAIVE, *extra]) if n not in cfg.combine.members)


def best_choice(result: BacktestResult, candidates: Sequence[str], margin: float = 0.0) -> str:
    """The choice to serve: the first candidate (the combination of every member) unless
    another's mean MASE on ``result`` is lower by more than ``margin`` (relative), then
    the lowest of those. Two backtest windows are little evidence: leaving the full
    combination takes a clear difference."""
    mase = result.summary()["mase"]
    scored = [c for c in candidates if c in mase.index and pd.notna(mase[c])]
    if not scored:
        raise NotEnoughData(f"none of {', '.join(candidates)} has a backtest MASE")
    first = scored[0]
    better = [c for c in scored[1:] if mase[c] < mase[first] * (1 - margin)]
    return min(better, key=lambda c: (mase[c], candidates.index(c))) if better else first


def develop(
    series: pd.DataFrame,
    cfg: PipelineConfig,
    freq: str,
    others: Mapping[str, Forecaster] | Callable[[Sequence[pd.Timestamp]], Mapping[str, Forecaster]] | None = None,
    start_from: StartFrom | None = None,
    callbacks: Sequence[Callback] = (),
    meta: dict[str, str] | None = None,
    combinations: Mapping[str, Mapping[str, float]] | None = None,
) -> Development:
    """Evaluate the training procedure on ``series``, backtest it beside every member and
    comparator, and refit it on all of it.

    ``others`` (the champion's LSTM) are backtested on the same windows; a callable gets
    the cutoff dates first. ``combinations`` adds weighted means of backtested models
    (the champion's own forecast). ``callbacks`` see every member's epochs.
    """
    cfg = plan(series, cfg.for_training(), freq)
    H, K, step = cfg.window.horizon, cfg.backtest.n_windows, cfg.backtest.step or cfg.window.horizon
    season = cfg.data.season(freq)
    cutoffs = cutoff_dates(series, freq, H, K, step)
    known = series[series["ds"] <= cutoffs[0]]

    evaluation = tuple(
        fit(known, _member(cfg, k, season), freq, init=start_from.evaluation[k % len(start_from.evaluation)]
            if start_from else None, callbacks=callbacks, meta=meta, member=k)
        for k in range(cfg.lstm_ensemble)
    )
    # A diverged LSTM forecasts nothing usable: the backtest goes on without it, and the
    # gate refuses the version naming the member and epoch (training.py).
    lstm_ok = not any(m.diverged for m in evaluation)
    extra = others(cutoffs) if callable(others) else dict(others or {})
    # Every subset's combination (the one without the LSTM among them), and the champion's.
    combos = {c: weights_of(c) for c in choices(cfg) if "+" in c} | dict(combinations or {})
    # Every statistical model a forecast here needs, fitted once per window.
    needed = [*cfg.combine.members, *comparators(cfg), *(m for w in combos.values() for m in w)]
    local = [m for m in dict.fromkeys(needed) if m in members.STATISTICAL or m in NAIVE]
    forecasters: dict[str, Forecaster] = {
        **({members.LSTM: lambda h: predict_ensemble([m.checkpoint for m in evaluation], h).frame} if lstm_ok else {}),
        **members.statistical_forecasters(local, H, freq, season, cfg.combine.n_jobs),
        **extra,
    }
    result = backtest(series, forecasters, cutoffs, H, freq, season, min_history(cfg, freq)).with_combinations(combos)
    served = tuple(_refit(series, cfg, k, season, freq, m, start_from, callbacks, meta) if lstm_ok else m
                   for k, m in enumerate(evaluation))
    servable = tuple(c for c in choices(cfg) if lstm_ok or members.LSTM not in c.split("+"))
    windows = {"backtest_windows": K, "validation_periods": int(cfg.train.validation_periods or H),
               "min_history": min_history(cfg, freq)}
    return Development(evaluation, served, result, tuple(cutoffs), servable or (NAIVE[0],), windows)


def _refit(
    series: pd.DataFrame, cfg: PipelineConfig, k: int, season: int, freq: str, evaluated: TrainResult,
    start_from: StartFrom | None, callbacks: Sequence[Callback], meta: dict[str, str] | None,
) -> TrainResult:
    """Member ``k`` trained on all of ``series``: from its evaluation weights for a share of
    their epochs (the new periods are what it has to learn), or the whole schedule again."""
    member_cfg = _member(cfg, k, season)
    schedule = evaluated.lr_schedule or (cfg.train.lr,)
    if cfg.train.refit_warm_start and not evaluated.diverged:
        epochs = max(1, round(cfg.train.refit_share * max(evaluated.best_epoch, 1)))
        return fit(series, member_cfg, freq, init=evaluated.checkpoint, epochs=epochs, lr_schedule=schedule[-1:],
                   callbacks=callbacks, meta=meta, member=k)
    return fit(series, member_cfg, freq, init=start_from.served[k % len(start_from.served)] if start_from else None,
               epochs=max(evaluated.best_epoch, 1), lr_schedule=schedule, callbacks=callbacks, meta=meta, member=k)


def _member(cfg: PipelineConfig, k: int, season: int) -> PipelineConfig:
    """Member ``k`` of the ensemble: consecutive seeds, and the input lengths in turn."""
    lengths = cfg.window.input_lengths(season)
    return cfg.with_overrides({"train": {"seed": cfg.train.seed + k},
                               "window": {"lookback": lengths[k % len(lengths)], "lookbacks": ()}})
