"""Decisions, as pure functions: whether to train, and whether a candidate is promoted."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lstm_pipeline.config import PipelineConfig, PolicyConfig
from lstm_pipeline.registry.facts import ChampionFacts

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
class TrainingDecision:
    action: Action
    reason: str


@dataclass(frozen=True)
class Promotion:
    promote: bool
    reason: str


def model_config_hash(cfg: PipelineConfig, freq: str | None = None) -> str:
    """Hash of the settings that change what the model *is* or how it is judged (not how
    long it trains): its shape and inputs, its loss, its ensemble, and the backtest.

    The season length is taken resolved (configured, else from ``freq``): it fixes the
    model's calendar inputs and its seasonal-naive base.
    """
    season = cfg.data.season(freq) if freq else cfg.data.season_length
    shape = {
        "season_length": season,
        "model": cfg.model.model_dump(),
        "window": cfg.window.model_dump(),
        "covariates": list(cfg.data.covariates),
        "loss": cfg.train.loss,
        "loss_weighting": cfg.train.loss_weighting,
        "ensemble": cfg.lstm_ensemble,
        "members": list(cfg.combine.members),
        "selection_margin": cfg.combine.selection_margin,
        "backtest": cfg.backtest.model_dump(),
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
    why_no_champion: str | None = None,
) -> TrainingDecision:
    """Retrain, fine-tune or skip; ``requested`` other than ``auto`` is obeyed when possible.

    ``latest`` is the most recent candidate (the ``challenger``). When it was not promoted
    and was trained on this very data with this configuration, training again would only
    repeat it: the scheduled run skips until new data or a new configuration arrives.
    """
    repeat = (
        latest is not None and (champion is None or latest.version != champion.version)
        and latest.data_version == data_version and latest.config_hash == config_hash
    )
    if champion is None:
        # Unchanged data and configuration give the same rejected version again: skip, unless
        # that version lost to a champion that can no longer be compared (then the gate differs).
        if requested == "auto" and repeat and latest is not None \
                and not (why_no_champion and latest.compared_with_champion):
            return TrainingDecision(
                "skip", f"v{latest.version} was already trained on series table v{data_version} and not promoted"
            )
        why = why_no_champion or "no champion yet"
        return TrainingDecision("retrain", why if requested != "finetune" else f"{why}: cannot fine-tune, retraining")
    if requested == "retrain":
        return TrainingDecision("retrain", "retrain requested")
    if champion.config_hash != config_hash:
        return TrainingDecision("retrain", "model configuration changed since the champion was trained")
    if requested == "finetune":
        return TrainingDecision("finetune", "fine-tune requested")
    if repeat:
        assert latest is not None
        return TrainingDecision(
            "skip", f"v{latest.version} was already trained on series table v{data_version} and not promoted"
        )
    age = now - champion.trained_at
    if age > timedelta(days=policy.max_champion_age_days):
        return TrainingDecision(
            "retrain", f"the champion's last full retrain was {age.days} days ago (limit {policy.max_champion_age_days:g})"
        )
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
    baselines: Mapping[str, float],
    champion_mase: float | None,
    margin: float,
    diverged: bool | str | None,
    champion_version: str | None = None,
    choice: str = "candidate",
    champion_unavailable: str | None = None,
) -> Promotion:
    """Champion only if the candidate's forecast (``choice``) beats seasonal naive and the
    current champion.

    The current champion is the registered champion (``champion_mase``, to beat by
    ``margin``) or, while there is none (or it could not be compared), the best baseline,
    whose forecasts are served meanwhile. Every MASE comes from the same backtest windows.
    ``diverged`` (or a message saying which member diverged where) and
    ``champion_unavailable`` (the champion exists but the registry could not be read)
    forbid promotion.
    """
    if diverged or not math.isfinite(candidate_mase):
        why = diverged if isinstance(diverged, str) else "training diverged (non-finite or exploding loss)"
        return Promotion(False, why)
    if champion_unavailable:
        return Promotion(False, f"{champion_unavailable}: a version cannot be promoted over a champion it "
                                f"could not be compared with (MASE {candidate_mase:.4f})")
    finite = {name: value for name, value in baselines.items() if math.isfinite(value)}
    snaive = finite.get("seasonal_naive")
    if snaive is None or (champion_mase is not None and not math.isfinite(champion_mase)):
        return Promotion(False, "no finite seasonal-naive or champion MASE to compare against")
    if candidate_mase >= snaive:
        return Promotion(False, f"{choice} MASE {candidate_mase:.4f} does not beat seasonal naive {snaive:.4f}")
    if champion_mase is None:
        best = min(finite, key=lambda name: finite[name])
        if candidate_mase >= finite[best]:
            return Promotion(False, f"{choice} MASE {candidate_mase:.4f} does not beat the best baseline, {best} "
                                    f"{finite[best]:.4f}, whose forecasts are served meanwhile")
        return Promotion(True, f"first champion: {choice} MASE {candidate_mase:.4f} beats the best baseline, {best} "
                               f"{finite[best]:.4f}" + (f", and seasonal naive {snaive:.4f}" if best != "seasonal_naive" else ""))
    name = f"champion v{champion_version}" if champion_version else "champion"
    bar = champion_mase * (1 - margin)
    if candidate_mase >= bar:
        return Promotion(
            False,
            f"{choice} MASE {candidate_mase:.4f} does not beat {name} {champion_mase:.4f}"
            + (f" by the {margin:.1%} margin (needs < {bar:.4f})" if margin else ""),
        )
    return Promotion(True, f"{choice} MASE {candidate_mase:.4f} beats {name} {champion_mase:.4f} and seasonal naive "
                           f"{snaive:.4f}")
