"""The pipeline's steps: each wires the lake, the model code and the registry together.

Flows and the CLI call these; they hold no orchestration concerns (retries, schedules)
and take the whole configuration explicitly.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd

from lstm_pipeline import __version__, baselines, intervals, plots
from lstm_pipeline.backtest import BacktestResult, backtest, training_cutoff_frame
from lstm_pipeline.config import PipelineConfig, season_length_for
from lstm_pipeline.forecast import predict_ensemble
from lstm_pipeline.ingest import IngestReport, ingest
from lstm_pipeline.lake import FORECASTS, SERIES, Lake
from lstm_pipeline.policy import (
    Promotion,
    TrainingDecision,
    choose_training,
    decide_promotion,
    model_config_hash,
)
from lstm_pipeline.registry import (
    CHALLENGER,
    CHAMPION,
    ForecastModel,
    Registry,
    TrainingRun,
)
from lstm_pipeline.train import TrainResult, fit

__all__ = [
    "ForecastOutcome", "NoChampionError", "TrainOutcome",
    "run_forecast", "run_ingest", "run_training",
]

log = logging.getLogger(__name__)

CANDIDATE, CHAMPION_MODEL, SEASONAL_NAIVE = "candidate", "champion", "seasonal_naive"
_COMPARED = ["mase", "smape", "mae", "rmse", "r2", "mase_median", "n_series", "n_windows"]
# What the reviewer sees on the model version, in this order.
_REVIEW_COLUMNS = ["mase", "mase_median", "smape", "mae", "coverage_80", "coverage_95", "n_series", "n_windows"]


class NoChampionError(RuntimeError):
    """Forecasting needs a champion and there is none yet."""


@dataclass(frozen=True)
class TrainOutcome:
    decision: TrainingDecision
    tracking_uri: str
    version: str | None = None
    run_id: str | None = None
    promotion: Promotion | None = None
    comparison: pd.DataFrame | None = None
    training: TrainResult | None = None

    def summary(self) -> str:
        lines = [f"training: {self.decision.action} ({self.decision.reason})"]
        if self.training is not None:
            t = self.training
            lines.append(
                f"  {len(t.history)} epochs, {t.steps} steps on {t.device} in {t.seconds:.1f}s "
                f"(best epoch {t.best_epoch}, {t.n_train_windows} training windows)"
            )
        if self.comparison is not None:
            lines.append(self.comparison[["mase", "smape", "mae"]].to_string(float_format="%.4f"))
        if self.promotion is not None:
            verdict = "promoted to champion" if self.promotion.promote else "not promoted"
            lines.append(f"  version {self.version}: {verdict}: {self.promotion.reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ForecastOutcome:
    model_name: str
    model_version: str
    rows: int
    series: int
    skipped: dict[str, str]
    table_version: int

    def summary(self) -> str:
        text = (
            f"forecast: {self.series} series x horizon = {self.rows} rows from "
            f"{self.model_name} v{self.model_version} -> forecasts table v{self.table_version}"
        )
        if self.skipped:
            text += f"\n  {len(self.skipped)} series skipped: " + "; ".join(
                f"{uid}: {why}" for uid, why in list(self.skipped.items())[:10]
            )
        return text


def run_ingest(cfg: PipelineConfig, sources: Sequence[str | Path]) -> IngestReport:
    return ingest(Lake.from_config(cfg.lake), sources, cfg.data)


def run_training(
    cfg: PipelineConfig,
    mode: Literal["auto", "retrain", "finetune"] = "auto",
    now: datetime | None = None,
) -> TrainOutcome:
    """Decide, train, backtest against the champion and baselines, register, gate."""
    lake = Lake.from_config(cfg.lake)
    series, data_version = lake.read_series(), lake.version(SERIES)
    if series.empty or data_version is None:
        raise ValueError(f"the lake at {lake.root} holds no series yet: ingest data first")
    freq = cfg.data.freq or lake.freq()
    assert freq is not None, "ingest records the frequency with the first batch"
    registry = Registry(cfg.registry, cfg.lake.root)
    loaded = registry.load(CHAMPION)
    champion_model, champion_info = loaded if loaded else (None, None)
    decision = choose_training(
        mode, champion_info.facts() if champion_info else None, data_version, model_config_hash(cfg, freq),
        cfg.policy, now or datetime.now(UTC),
        latest=latest.facts() if (latest := registry.version(CHALLENGER)) else None,
    )
    log.info("training decision: %s (%s)", decision.action, decision.reason)
    if decision.action == "skip":
        return TrainOutcome(decision, registry.uri)

    H, K, step = cfg.window.horizon, cfg.backtest.n_windows, cfg.backtest.step
    season = cfg.data.season_length or season_length_for(freq)
    train_frame = training_cutoff_frame(series, H, K, step)
    tags = _data_tags(series, train_frame, data_version, decision, cfg, freq)
    run = registry.start_run(f"{decision.action}-{tags['data_end']}", tags)
    try:
        run.log_params(_params(cfg, freq, season))
        members = _fit_members(train_frame, cfg, freq, decision, champion_model, run, tags)
        result = members[0]
        forecasters = {
            CANDIDATE: lambda h: predict_ensemble([m.checkpoint for m in members], h).frame,
            SEASONAL_NAIVE: lambda h: baselines.seasonal_naive(h, H, freq, season),
            "naive": lambda h: baselines.naive(h, H, freq),
        }
        if cfg.backtest.statistical_baselines:
            forecasters.update(baselines.statistical(H, freq, season))
        if champion_model is not None:
            forecasters[CHAMPION_MODEL] = lambda h: champion_model.forecast(h).frame
        evaluation = backtest(series, forecasters, H, K, step, season, min_history=max(cfg.window.lookback, season))
        comparison = evaluation.summary()[_COMPARED].join(_coverage(evaluation))
        quantiles = intervals.fit_quantiles(_residuals(evaluation, CANDIDATE))
        _log_evaluation(run, result, evaluation, comparison, series)
        example = series.groupby("unique_id").tail(cfg.window.lookback).head(cfg.window.lookback)
        version = run.log_model([m.checkpoint for m in members], quantiles, example)
        promotion = decide_promotion(
            candidate_mase=comparison.loc[CANDIDATE, "mase"],
            baseline_mase=comparison.loc[SEASONAL_NAIVE, "mase"],
            champion_mase=comparison.loc[CHAMPION_MODEL, "mase"] if champion_model else None,
            margin=cfg.registry.promotion_margin,
            diverged=any(m.diverged for m in members),
        )
        steps_taken = sum(m.steps for m in members)
        effort = {"epochs": str(len(result.history)), "steps": str(steps_taken), "device": result.device,
                  "ensemble": str(len(members))}
        if decision.action == "finetune" and champion_info is not None:
            # What a full retrain cost, for the reviewer's comparison.
            effort["retrain_steps"] = champion_info.tags.get("retrain_steps", champion_info.tags.get("steps", ""))
        else:
            effort["retrain_steps"] = str(steps_taken)
        registry.record_decision(
            version, promotion, comparison[_REVIEW_COLUMNS],
            {**tags, **effort, "backtest_mase": f"{comparison.loc[CANDIDATE, 'mase']:.6f}", "run_id": run.run_id,
             "coverage_80": f"{comparison.loc[CANDIDATE, 'coverage_80']:.3f}",
             "coverage_95": f"{comparison.loc[CANDIDATE, 'coverage_95']:.3f}"},
        )
    except BaseException:
        run.finish(failed=True)
        raise
    run.finish()
    return TrainOutcome(decision, registry.uri, version, run.run_id, promotion, comparison, result)


def run_forecast(cfg: PipelineConfig) -> ForecastOutcome:
    """Forecast every series with the champion and append the vintage to ``forecasts``."""
    lake = Lake.from_config(cfg.lake)
    registry = Registry(cfg.registry, cfg.lake.root)
    loaded = registry.load(CHAMPION)
    if loaded is None:
        raise NoChampionError(
            f"no model has alias '{CHAMPION}' in {registry.name!r} at {registry.uri}: "
            "no trained model has beaten seasonal naive yet"
        )
    model, info = loaded
    result = model.forecast(lake.read_series())
    frame = result.frame.assign(
        model_name=registry.name,
        model_version=info.version,
        run_id=info.run_id,
        created_at=pd.Timestamp.now(tz="UTC").tz_localize(None),
    )
    written = lake.upsert(FORECASTS, frame, keys=["unique_id", "cutoff", "ds", "model_version"], compare=["yhat"])
    for uid, why in result.skipped.items():
        log.warning("no forecast for %s: %s", uid, why)
    return ForecastOutcome(
        registry.name, info.version, len(frame), frame["unique_id"].nunique(), result.skipped, written.version
    )


def _data_tags(
    series: pd.DataFrame, train_frame: pd.DataFrame, data_version: int, decision: TrainingDecision,
    cfg: PipelineConfig, freq: str,
) -> dict[str, str]:
    digest = hashlib.sha256(pd.util.hash_pandas_object(series[["unique_id", "ds", "y"]], index=False).to_numpy())
    return {
        "training_mode": decision.action,
        "training_reason": decision.reason,
        "data_version": str(data_version),
        "data_hash": digest.hexdigest()[:16],
        "data_end": str(series["ds"].max().date()),
        "training_cutoff": str(train_frame["ds"].max().date()),
        "n_series": str(series["unique_id"].nunique()),
        "seed": str(cfg.train.seed),
        "config_hash": model_config_hash(cfg, freq),
        "code_version": _code_version(),
    }


def _params(cfg: PipelineConfig, freq: str, season: int) -> dict[str, object]:
    params: dict[str, object] = {"freq": freq, "season_length": season}
    for section in ("window", "model", "train", "backtest"):
        for key, value in getattr(cfg, section).model_dump().items():
            params[f"{section}.{key}"] = value
    return params


def _fit_members(
    train_frame: pd.DataFrame, cfg: PipelineConfig, freq: str, decision: TrainingDecision,
    champion: ForecastModel | None, run: TrainingRun, tags: dict[str, str],
) -> list[TrainResult]:
    """``train.ensemble`` models with consecutive seeds; fine-tuning starts member k from the
    champion's member k. Only the first member's epochs are logged as the run's curves."""
    members = []
    for k in range(cfg.train.ensemble):
        member_cfg = cfg.with_overrides({"train": {"seed": cfg.train.seed + k}})
        init = champion.members[k % len(champion.members)] if decision.action == "finetune" and champion else None
        callbacks = [run.on_epoch] if k == 0 else []
        members.append(fit(train_frame, member_cfg, freq, init=init, callbacks=callbacks, meta=tags))
    return members


def _residuals(evaluation: BacktestResult, model: str) -> pd.DataFrame:
    p = evaluation.predictions
    return intervals.scaled_residuals(p[p["model"] == model], evaluation.scales)


def _coverage(evaluation: BacktestResult) -> pd.DataFrame:
    """Empirical coverage of each model's conformal intervals on the backtest windows."""
    rows = {}
    for model in evaluation.predictions["model"].unique():
        cov = intervals.coverage(_residuals(evaluation, model))
        rows[model] = {f"coverage_{level}": value for level, value in cov.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def _log_evaluation(
    run: TrainingRun, result: TrainResult, evaluation: BacktestResult, comparison: pd.DataFrame,
    series: pd.DataFrame,
) -> None:
    metrics = [c for c in comparison.columns if c not in ("n_series", "n_windows")]
    for model, row in comparison.iterrows():
        run.log_metrics({f"{model}_{metric}": row[metric] for metric in metrics})
    run.log_metrics({"backtest_mase": comparison.loc[CANDIDATE, "mase"], "best_epoch": result.best_epoch})
    by_step = evaluation.by_step()
    for step, row in by_step.loc[CANDIDATE].iterrows():
        run.log_metrics({"mase_by_step": row["mase"]}, step=int(step))
    run.log_table(evaluation.scores(), "backtest_scores.csv")
    run.log_table(by_step.reset_index(), "error_by_step.csv")
    sample = sorted(series["unique_id"].unique())[:4]
    figures = {
        "loss_curve.png": plots.loss_curve(result.history),
        "error_by_step.png": plots.error_by_step(by_step),
        "forecast_vs_actual.png": plots.forecast_vs_actual(evaluation.predictions, series, sample),
    }
    for name, figure in figures.items():
        run.log_figure(figure, name)
        plots.close(figure)


def _code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__
