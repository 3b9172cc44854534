"""The training step: decide, evaluate the procedure, refit, register, gate.

One run (see :mod:`lstm_pipeline.evaluate.procedure` for the two fits):

1. Read the ``series`` table once, at one version: the data trained on and the
   ``data_version`` recorded are the same snapshot.
2. Repair an interrupted promotion, load the champion, let the policy decide (retrain,
   fine-tune or skip).
3. Evaluate the procedure on the backtest windows beside seasonal naive, naive, AutoETS
   and Theta (when installed) and the champion's evaluation weights, then refit on all
   data. The champion is compared only on windows whose cutoff comes after its own
   evaluation data ended, so its score is out of sample too; if no window qualifies, or
   its horizon or frequency differ, it is not compared and the decision says why.
4. Log the run, register a version carrying its evidence, move the aliases.
"""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd

from lstm_pipeline import __version__
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import ModelLoadError, NotEnoughData
from lstm_pipeline.evaluate import intervals, members
from lstm_pipeline.evaluate.backtest import BacktestResult, Forecaster
from lstm_pipeline.lake.tables import SERIES, Lake
from lstm_pipeline.model import grid
from lstm_pipeline.registry import plots
from lstm_pipeline.registry.bundle import ModelBundle, Served
from lstm_pipeline.stages.forecast_plot import choose_series
from lstm_pipeline.stages.policy import (
    Promotion,
    TrainingDecision,
    choose_training,
    decide_promotion,
    model_config_hash,
)
from lstm_pipeline.evaluate.procedure import Development, StartFrom, best_choice, develop, weights_of
from lstm_pipeline.model.train import Callback
from lstm_pipeline.registry.tracking import CHALLENGER, CHAMPION, Loaded, Registry, RegistryUnavailable, TrainingRun

__all__ = ["CHAMPION_MODEL", "TrainOutcome", "run_training"]

log = logging.getLogger(__name__)

CHAMPION_MODEL = "champion"
CHAMPION_LSTM = "champion_lstm"  # the champion's evaluation LSTM, one part of its forecast
_COMPARED = ["mase", "smape", "mae", "rmse", "r2", "mase_median", "n_series", "n_windows", "n_unscaled"]
# What the reviewer sees on the model version, in this order.
_REVIEW_COLUMNS = ["mase", "mase_median", "smape", "mae", "coverage_80", "coverage_95", "n_series", "n_windows"]
# Their headings on the version page, with units.
_HEADINGS = {"mase": "MASE", "mase_median": "median MASE", "smape": "sMAPE (%)", "mae": "MAE (series units)",
             "coverage_80": "80 % interval coverage", "coverage_95": "95 % interval coverage",
             "n_series": "series", "n_windows": "windows"}


@dataclass(frozen=True)
class TrainOutcome:
    decision: TrainingDecision
    tracking_uri: str
    version: str | None = None
    run_id: str | None = None
    promotion: Promotion | None = None
    comparison: pd.DataFrame | None = None
    development: Development | None = None
    repaired: tuple[str, ...] = ()

    choice: str | None = None  # what the version serves (a member or a combination)

    def summary(self) -> str:
        lines = [f"training: {self.decision.action} ({self.decision.reason})"]
        lines += [f"  registry repaired: {what}" for what in self.repaired]
        if self.development is not None:
            first, refit = self.development.evaluation[0], self.development.served[0]
            lines.append(
                f"  LSTM: {len(self.development.evaluation)} member(s) on {first.device}; evaluation "
                f"{len(first.history)} epochs (best {first.best_epoch}) on data up to "
                f"{self.development.evaluation_end.date()}; refit {len(refit.history)} epochs on data "
                f"up to {self.development.served_end.date()}"
            )
        if self.comparison is not None:
            table = self.comparison[["mase", "smape", "mae"]].rename(columns={"smape": "smape %"}).rename_axis(None)
            marks = [" <- served" if name == self.choice else "" for name in table.index]
            text = table.to_string(float_format="%.4f").splitlines()
            lines += [text[0], *(row + mark for row, mark in zip(text[1:], marks, strict=True))]
        if self.promotion is not None:
            verdict = "promoted to champion" if self.promotion.promote else "not promoted"
            lines.append(f"  version {self.version} ({self.choice}): {verdict}: {self.promotion.reason}")
        return "\n".join(lines)


def run_training(
    cfg: PipelineConfig,
    mode: Literal["auto", "retrain", "finetune"] = "auto",
    now: datetime | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainOutcome:
    """Decide, evaluate the procedure, refit, register and gate (see the module doc).

    ``callbacks`` see every epoch of every member's fits (progress display); the MLflow
    run records the first member's evaluation epochs.
    """
    now = now or datetime.now(UTC)
    lake = Lake.from_config(cfg.lake)
    # One snapshot: the rows trained on and the data_version recorded come from the same version.
    data_version = lake.version(SERIES)
    series = lake.read_series(version=data_version) if data_version is not None else lake.read_series()
    if series.empty or data_version is None:
        raise NotEnoughData(f"the lake at {lake.root} holds no series yet: ingest data first")
    freq = cfg.data.freq or lake.freq()
    assert freq is not None, "ingest records the frequency with the first batch"
    registry = Registry(cfg.registry, cfg.lake.root)
    repaired = tuple(registry.repair())
    champion, why_not, unavailable = _champion(registry, cfg, freq)
    challenger = registry.version(CHALLENGER)
    decision = choose_training(
        mode, champion.info.facts() if champion else None, data_version, model_config_hash(cfg, freq),
        cfg.policy, now, latest=challenger.facts() if challenger else None,
        why_no_champion=why_not or unavailable,
    )
    log.info("training decision: %s (%s)", decision.action, decision.reason)
    if decision.action == "skip":
        return TrainOutcome(decision, registry.uri, repaired=repaired)

    season = cfg.data.season(freq)
    tags = _data_tags(series, data_version, decision, cfg, freq, now, champion)
    run = registry.start_run(f"{decision.action}-{tags['data_end']}", tags)
    try:
        run.log_params(_params(cfg, freq, season))
        others: dict[str, Forecaster] = {}
        combinations: dict[str, dict[str, float]] = {}
        if champion is not None:  # its own forecast: its evaluation LSTM with its weights
            others[CHAMPION_LSTM] = champion.bundle.evaluation_forecaster()
            combinations[CHAMPION_MODEL] = {CHAMPION_LSTM if m == members.LSTM else m: w
                                            for m, w in champion.bundle.weights.items()}
        start_from = StartFrom(champion.bundle.evaluation, champion.bundle.served) \
            if decision.action == "finetune" and champion else None
        dev = develop(series, cfg, freq, others, start_from, callbacks=[_first_member(run.on_epoch), *callbacks],
                      meta=tags, combinations=combinations)
        compared, windows_note = _compared_windows(dev.backtest, champion, cfg.window.horizon)
        comparison = compared.summary()[_COMPARED].join(_coverage(compared)).drop(index=CHAMPION_LSTM, errors="ignore")
        choice = best_choice(compared, dev.choices, cfg.combine.selection_margin)
        champion_mase = float(comparison.loc[CHAMPION_MODEL, "mase"]) \
            if champion is not None and CHAMPION_MODEL in comparison.index else None
        if champion is not None and champion_mase is None:
            why_not = windows_note
        baseline_mase = _baselines(comparison)
        promotion = decide_promotion(
            float(comparison.loc[choice, "mase"]), baseline_mase, champion_mase, cfg.registry.promotion_margin,
            _diverged(dev), champion_version=champion.info.version if champion else None, choice=choice,
            champion_unavailable=unavailable,
        )
        _log_evaluation(run, dev, comparison, series, choice)
        best = min(baseline_mase, key=lambda b: baseline_mase[b])
        bundle = ModelBundle(
            tuple(m.checkpoint for m in dev.served), tuple(m.checkpoint for m in dev.evaluation),
            intervals.fit_quantiles(_residuals(dev.backtest, choice)),
            {"evaluation_end": str(dev.evaluation_end.date()), "served_end": str(dev.served_end.date()),
             "evaluation_data_end": str(dev.evaluation_data_end.date()), "data_version": str(data_version),
             "choice": choice},
            weights_of(choice),
            baseline=Served(weights_of(best), intervals.fit_quantiles(_residuals(dev.backtest, best)), best),
        )
        longest = max(cfg.window.input_lengths(season))
        example = series.groupby("unique_id").tail(longest).head(longest)[["unique_id", "ds", "y",
                                                                            *cfg.data.covariates]]
        model_id = run.log_model(bundle, example)
        version_tags = {
            **tags, **_effort(dev, decision, champion),
            "evaluation_end": str(dev.evaluation_end.date()), "served_end": str(dev.served_end.date()),
            "evaluation_data_end": str(dev.evaluation_data_end.date()),
            "backtest_cutoffs": ",".join(str(c.date()) for c in compared.cutoffs),
            "compared": ",".join(comparison.index), "champion_compared": champion.info.version
            if champion_mase is not None and champion else f"none: {why_not or 'no champion yet'}",
            "served": choice, "members": bundle.members, "early_stopping": dev.evaluation[0].stopped_on,
            **{k: str(v) for k, v in dev.windows.items()},
            "best_baseline": best, "best_baseline_mase": f"{baseline_mase[best]:.6f}",
            "backtest_mase": f"{comparison.loc[choice, 'mase']:.6f}", "run_id": run.run_id,
            "coverage_80": f"{comparison.loc[choice, 'coverage_80']:.3f}",
            "coverage_95": f"{comparison.loc[choice, 'coverage_95']:.3f}",
            "promoted": str(promotion.promote).lower(), "decision": promotion.reason,
        }
        description = _description(promotion, comparison, compared, dev, champion, champion_mase, why_not,
                                   data_version, choice, cfg)
        version = registry.register(run, model_id, version_tags, description)
        registry.move_aliases(version, promotion.promote)
    except BaseException:
        try:
            run.finish(failed=True)
        except Exception as exc:  # noqa: BLE001 - the original error is the one to report
            log.warning("could not mark MLflow run %s failed: %s", run.run_id, exc)
        raise
    run.finish()
    return TrainOutcome(decision, registry.uri, version, run.run_id, promotion, comparison, dev, repaired, choice)


def _first_member(callback: Callback) -> Callback:
    """``callback`` for the first member's evaluation epochs only (the loss curve on record)."""
    return lambda epoch: callback(epoch) if epoch.member == 0 and epoch.fit == "evaluation" else None


def _champion(registry: Registry, cfg: PipelineConfig, freq: str) -> tuple[Loaded | None, str | None, str | None]:
    """The champion if it can be loaded and compared, else None and why not; the third
    value says why it could not even be read (an outage): then nothing may be promoted."""
    # Only "not found" means no champion. An outage leaves the champion in the gate's way:
    # train, promote nothing. Any other registry error fails the step (RegistryError).
    try:
        info = registry.version(CHAMPION)
    except RegistryUnavailable as exc:
        log.warning("the champion could not be read (%s): training, but promoting nothing", exc)
        return None, None, f"the champion could not be read from the registry ({_first_line(exc)})"
    if info is None:
        return None, None, None
    try:
        loaded = registry.load(CHAMPION)
    except RegistryUnavailable as exc:
        log.warning("champion v%s could not be loaded (%s): training, but promoting nothing", info.version, exc)
        return None, None, f"champion v{info.version} could not be loaded from the registry ({_first_line(exc)})"
    except ModelLoadError as exc:  # a broken champion is replaced, not fatal
        log.warning("champion v%s could not be loaded (%s): retraining from scratch", info.version, exc)
        return None, f"champion v{info.version} could not be loaded ({_first_line(exc)})", None
    if loaded is None:
        return None, None, None
    ck = loaded.bundle.checkpoint
    if ck.window.horizon != cfg.window.horizon or ck.freq != freq:
        return None, (f"champion v{info.version} forecasts {ck.window.horizon} steps of {ck.freq}, "
                      f"the configuration asks for {cfg.window.horizon} of {freq}"), None
    if not loaded.bundle.evaluation:
        return None, f"champion v{info.version} has no evaluation weights to score out of sample", None
    return loaded, None, None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _baselines(comparison: pd.DataFrame) -> dict[str, float]:
    """MASE of every forecast without the LSTM (the statistical members alone and combined,
    seasonal naive, naive): the best of them is served while no version has passed."""
    names = [m for m in comparison.index
             if m not in (CHAMPION_MODEL, CHAMPION_LSTM) and members.LSTM not in str(m).split("+")]
    return {m: float(comparison.loc[m, "mase"]) for m in names}


def _diverged(dev: Development) -> str | None:
    """Which LSTM member diverged in which fit and epoch, or None."""
    for kind, fits in (("evaluation", dev.evaluation), ("refit", dev.served)):
        for k, m in enumerate(fits):
            if m.diverged:
                epoch = len(m.history)
                return f"LSTM member {k} diverged in its {kind} fit at epoch {epoch} (non-finite or exploding loss)"
    return None


def _compared_windows(
    result: BacktestResult, champion: Loaded | None, horizon: int,
) -> tuple[BacktestResult, str | None]:
    """The windows the gate compares: all, or with a champion only those whose targets all
    lie after every period its evaluation weights looked at, early-stopping periods included
    (cutoff on or after their ``evaluation_data_end``)."""
    if champion is None:
        return result, None
    meta = champion.bundle.meta
    if "evaluation_data_end" in meta:
        end = pd.Timestamp(meta["evaluation_data_end"])
    else:  # versions before the tag: their early stopping looked at `horizon` periods past evaluation_end
        end = grid.shift(pd.Timestamp(meta.get("evaluation_end", "2262-01-01")), horizon, champion.bundle.freq)
    usable = [k for k, c in enumerate(result.cutoffs) if c >= end]
    if not usable:
        without = ~result.predictions["model"].isin([CHAMPION_MODEL, CHAMPION_LSTM])
        pruned = BacktestResult(result.predictions[without].reset_index(drop=True), result.scales)
        return pruned, (f"champion v{champion.info.version}'s evaluation weights looked at data up to "
                        f"{end.date()}, after every backtest cutoff")
    return result.restricted(usable), None


def _description(
    promotion: Promotion, comparison: pd.DataFrame, compared: BacktestResult, dev: Development,
    champion: Loaded | None, champion_mase: float | None, why_not: str | None, data_version: int,
    choice: str, cfg: PipelineConfig,
) -> str:
    verdict = "PROMOTED to champion" if promotion.promote else "NOT promoted"
    cutoffs = ", ".join(str(c.date()) for c in compared.cutoffs)
    first = dev.evaluation[0]
    weights = ", ".join(f"{m} {w:.3g}" for m, w in weights_of(choice).items())
    fits = [
        f"- LSTM (this version's evaluation weights, {len(dev.evaluation)} member(s)): data up to "
        f"{dev.evaluation_end.date()} (series table v{data_version}), early stopping on the next periods up to "
        f"{dev.evaluation_data_end.date()}; it chose epoch {first.best_epoch}",
        "- statistical members and baselines: fitted per series at each cutoff on the history up to it",
        "- combinations (`a+b`): equal-weight means of their members, weights fixed before the backtest",
    ]
    if champion is not None and champion_mase is not None:
        fits.append(f"- champion v{champion.info.version}: its evaluation LSTM (data looked at up to "
                    f"{champion.bundle.meta.get('evaluation_data_end', champion.bundle.meta.get('evaluation_end', '?'))})"
                    f" with its own members and weights ({members.describe(champion.bundle.weights)})")
    absent = [f"- champion: {why_not or 'there is no champion yet'}"] if champion_mase is None else []
    if not cfg.backtest.statistical_baselines:
        absent.append("- AutoETS and Theta as baselines: `backtest.statistical_baselines` is off")
    table = comparison[_REVIEW_COLUMNS].rename(columns=_HEADINGS)
    table.index = [f"**{m}** (served)" if m == choice else m for m in table.index]
    return (
        f"**{verdict}**: {promotion.reason}.\n\n"
        f"**Serves** `{choice}`: {weights} (the equal-weight combination of "
        f"{', '.join(cfg.combine.members)}, unless a smaller combination or one member scores a MASE lower by "
        f"more than {cfg.combine.selection_margin:.0%}: then the lowest of those).\n\n"
        f"Backtest on {len(compared.cutoffs)} rolling-origin windows with cutoffs {cutoffs}; the same series and "
        "target dates for every model; means over series and windows, MASE scaled by each series' in-sample "
        "seasonal-naive MAE:\n\n"
        f"{markdown_table(table)}\n\n"
        "Fit on:\n" + "\n".join(fits) + "\n\n"
        + ("Not compared:\n" + "\n".join(absent) + "\n\n" if absent else "")
        + f"**Served LSTM weights**: refit on all data up to {dev.served_end.date()} "
        f"({len(dev.served[0].history)} epochs); never scored on data they learnt from.\n"
    )


def _effort(dev: Development, decision: TrainingDecision, champion: Loaded | None) -> dict[str, str]:
    steps = sum(m.steps for m in (*dev.evaluation, *dev.served))
    effort = {"epochs": str(len(dev.evaluation[0].history)), "best_epoch": str(dev.evaluation[0].best_epoch),
              "steps": str(steps), "device": dev.evaluation[0].device, "ensemble": str(len(dev.evaluation))}
    if decision.action == "finetune" and champion is not None:
        # What a full retrain cost, for the reviewer's comparison.
        effort["retrain_steps"] = champion.info.tags.get("retrain_steps", champion.info.tags.get("steps", ""))
    else:
        effort["retrain_steps"] = str(steps)
    return effort


def _data_tags(
    series: pd.DataFrame, data_version: int, decision: TrainingDecision, cfg: PipelineConfig, freq: str,
    now: datetime, champion: Loaded | None,
) -> dict[str, str]:
    digest = hashlib.sha256(pd.util.hash_pandas_object(series[["unique_id", "ds", "y"]], index=False).to_numpy())
    # The age policy counts from the last full retrain: a fine-tune inherits its parent's.
    retrained_at = champion.info.tags.get("retrained_at", champion.info.created.isoformat()) \
        if decision.action == "finetune" and champion else now.isoformat()
    return {
        "training_mode": decision.action,
        "training_reason": decision.reason,
        "data_version": str(data_version),
        "data_hash": digest.hexdigest()[:16],
        "data_end": str(series["ds"].max().date()),
        "n_series": str(series["unique_id"].nunique()),
        "seed": str(cfg.train.seed),
        "config_hash": model_config_hash(cfg, freq),
        "code_version": _code_version(),
        "retrained_at": retrained_at,
    }


def _params(cfg: PipelineConfig, freq: str, season: int) -> dict[str, object]:
    params: dict[str, object] = {"freq": freq, "season_length": season}
    for section in ("window", "model", "train", "backtest"):
        for key, value in getattr(cfg, section).model_dump().items():
            params[f"{section}.{key}"] = value
    return params


def _residuals(evaluation: BacktestResult, model: str) -> pd.DataFrame:
    p = evaluation.predictions
    return intervals.scaled_residuals(p[p["model"] == model], evaluation.scales)


def _coverage(evaluation: BacktestResult) -> pd.DataFrame:
    """Empirical coverage of each model's conformal intervals on the backtest windows."""
    rows = {}
    for model in evaluation.models():
        cov = intervals.coverage(_residuals(evaluation, model))
        rows[model] = {f"coverage_{level}": value for level, value in cov.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def _log_evaluation(
    run: TrainingRun, dev: Development, comparison: pd.DataFrame, series: pd.DataFrame, choice: str,
) -> None:
    metrics = [c for c in comparison.columns if c not in ("n_series", "n_windows", "n_unscaled")]
    for model, row in comparison.iterrows():
        # MLflow metric names allow no "+": a combination is logged as lstm-auto_ets-theta.
        run.log_metrics({f"{str(model).replace('+', '-')}_{metric}": row[metric] for metric in metrics})
    run.log_metrics({"backtest_mase": comparison.loc[choice, "mase"], "best_epoch": dev.evaluation[0].best_epoch})
    by_step = dev.backtest.by_step()
    for step, row in by_step.loc[choice].iterrows():
        run.log_metrics({"mase_by_step": row["mase"]}, step=int(step))
    run.log_table(dev.backtest.scores(), "backtest_scores.csv")
    run.log_table(by_step.reset_index(), "error_by_step.csv")
    # The same choice as `lstm-pipeline plot`: the worst backtest error, the largest, a random one.
    errors = dev.backtest.scores().query("model == @choice").groupby("unique_id")["mase"].mean()
    sample = [c.unique_id for c in choose_series(series, errors, count=4, error_name="backtest MASE")]
    figures = {
        "loss_curve.png": plots.loss_curve(dev.evaluation[0].history),
        "error_by_step.png": plots.error_by_step(by_step),
        "forecast_vs_actual.png": plots.forecast_vs_actual(dev.backtest.predictions, series, sample, choice),
    }
    for name, figure in figures.items():
        run.log_figure(figure, name)
        plots.close(figure)


def _code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table (model versions' descriptions, flow artifacts)."""
    cols = list(frame.columns)
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in frame.iterrows():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4f}" if isinstance(value, float) else str(value)

