"""Decisions, as pure functions: whether to train, and whether a candidate is promoted."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lstm_pipeline.config import PipelineConfig, PolicyConfig, season_length_for

__all__ = [
    "ChampionFacts",
    "Promotion",
    "TrainingDecision",
    "choose_training",
    "decide_promotion",
    "model_config_hash",
]

Action = Literal["retrain", "finetune", "skip"]


@dataclass(frozen=True)
class ChampionFacts:
    """What the policy needs to know about the current champion (from its registry tags)."""

    version: str
    trained_at: datetime
    data_version: int
    config_hash: str
    backtest_mase: float
    live_mase: float | None = None


@dataclass(frozen=True)
class TrainingDecision:
    action: Action
    reason: str


@dataclass(frozen=True)
class Promotion:
    promote: bool
    reason: str


def model_config_hash(cfg: PipelineConfig, freq: str | None = None) -> str:
    """Hash of the settings that change what the model *is* (not how long it trains).

    The season length is taken resolved (configured, else from ``freq``): it fixes the
    model's calendar inputs and its seasonal-naive base.
    """
    season = cfg.data.season_length or (season_length_for(freq) if freq else None)
    shape = {
        "season_length": season,
        "model": cfg.model.model_dump(),
        "window": cfg.window.model_dump(),
        "covariates": list(cfg.data.covariates),
        "loss": cfg.train.loss,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def choose_training(
    requested: Literal["auto", "retrain", "finetune"],
    champion: ChampionFacts | None,
    data_version: int,
    config_hash: str,
    policy: PolicyConfig,
    now: datetime,
    latest: ChampionFacts | None = None,
) -> TrainingDecision:
    """Retrain, fine-tune or skip; ``requested`` other than ``auto`` is obeyed when possible.

    ``latest`` is the most recent candidate (the ``challenger``). When it was not promoted
    and was trained on this very data with this configuration, training again would only
    repeat it: the scheduled run skips until new data or a new configuration arrives.
    """
    if champion is None:
        why = "no champion yet"
        return TrainingDecision("retrain", why if requested != "finetune" else f"{why}: cannot fine-tune, retraining")
    if requested == "retrain":
        return TrainingDecision("retrain", "retrain requested")
    if champion.config_hash != config_hash:
        return TrainingDecision("retrain", "model configuration changed since the champion was trained")
    if requested == "finetune":
        return TrainingDecision("finetune", "fine-tune requested")
    if (
        latest is not None and latest.version != champion.version
        and latest.data_version == data_version and latest.config_hash == config_hash
    ):
        return TrainingDecision(
            "skip", f"v{latest.version} was already trained on series table v{data_version} and not promoted"
        )
    age = now - champion.trained_at
    if age > timedelta(days=policy.max_champion_age_days):
        return TrainingDecision("retrain", f"champion is {age.days} days old (limit {policy.max_champion_age_days:g})")
    if champion.live_mase is not None and champion.live_mase > policy.degradation_ratio * champion.backtest_mase:
        return TrainingDecision(
            "retrain",
            f"live MASE {champion.live_mase:.3f} exceeds {policy.degradation_ratio:g} x backtest MASE "
            f"{champion.backtest_mase:.3f}",
        )
    if data_version != champion.data_version:
        return TrainingDecision(
            "finetune", f"new data since the champion (series table v{champion.data_version} -> v{data_version})"
        )
    return TrainingDecision("skip", f"no new data since the champion (series table v{data_version})")


def decide_promotion(
    candidate_mase: float,
    baseline_mase: float,
    champion_mase: float | None,
    margin: float,
    diverged: bool,
) -> Promotion:
    """Champion only if the candidate beats seasonal naive and the champion (by ``margin``).

    All three MASE values come from the same backtest windows.
    """
    if diverged or not math.isfinite(candidate_mase):
        return Promotion(False, "training diverged (non-finite or exploding loss)")
    if not math.isfinite(baseline_mase) or (champion_mase is not None and not math.isfinite(champion_mase)):
        return Promotion(False, "no finite baseline or champion MASE to compare against")
    if candidate_mase >= baseline_mase:
        return Promotion(False, f"MASE {candidate_mase:.4f} does not beat seasonal naive {baseline_mase:.4f}")
    if champion_mase is None:
        return Promotion(True, f"first champion: MASE {candidate_mase:.4f} beats seasonal naive {baseline_mase:.4f}")
    bar = champion_mase * (1 - margin)
    if candidate_mase >= bar:
        return Promotion(
            False,
            f"MASE {candidate_mase:.4f} does not beat champion {champion_mase:.4f}"
            + (f" by the {margin:.1%} margin (needs < {bar:.4f})" if margin else ""),
        )
    return Promotion(
        True,
        f"MASE {candidate_mase:.4f} beats champion {champion_mase:.4f} and seasonal naive {baseline_mase:.4f}",
    )
