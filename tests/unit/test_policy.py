"""Every branch of the training and promotion decisions, and what the config hash covers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from lstm_pipeline.config import PolicyConfig, load_config
from lstm_pipeline.stages.policy import (
    ChampionFacts,
    choose_training,
    decide_promotion,
    model_config_hash,
)

NOW = datetime(2024, 6, 1, 12, 0)
POLICY = PolicyConfig(max_champion_age_days=90, degradation_ratio=1.5)
HASH = "abc123"


def champion(**changes: Any) -> ChampionFacts:
    facts: dict[str, Any] = {
        "version": "3", "trained_at": NOW - timedelta(days=10), "data_version": 7,
        "config_hash": HASH, "backtest_mase": 0.8, "live_mase": None,
    }
    return ChampionFacts(**{**facts, **changes})


def decide(requested: Any = "auto", champ: ChampionFacts | None = None, data_version: int = 7,
           config_hash: str = HASH) -> tuple[str, str]:
    d = choose_training(requested, champ, data_version, config_hash, POLICY, NOW)
    return d.action, d.reason


# --- choose_training ---------------------------------------------------------------


@pytest.mark.parametrize("requested", ["auto", "retrain"])
def test_no_champion_retrains(requested: str) -> None:
    assert decide(requested, None) == ("retrain", "no champion yet")


def test_no_champion_and_a_rejected_candidate_on_the_same_data_skips() -> None:
    rejected = champion(version="2", data_version=7)
    d = choose_training("auto", None, 7, HASH, POLICY, NOW, latest=rejected)
    assert (d.action, d.reason) == ("skip", "v2 was already trained on series table v7 and not promoted")
    # A champion that cannot be compared changes nothing when v2 was not compared with one either:
    # the same data and configuration would register the same rejected version again.
    d = choose_training("auto", None, 7, HASH, POLICY, NOW, latest=rejected, why_no_champion="champion v1 is broken")
    assert (d.action, d.reason) == ("skip", "v2 was already trained on series table v7 and not promoted")
    # ... but when v2 lost to a champion that can no longer be used, its gate would differ: retrain, saying why.
    lost_to_v1 = champion(version="2", data_version=7, compared_with_champion=True)
    d = choose_training("auto", None, 7, HASH, POLICY, NOW, latest=lost_to_v1, why_no_champion="champion v1 is broken")
    assert (d.action, d.reason) == ("retrain", "champion v1 is broken")


def test_no_champion_retrains_even_when_finetune_is_requested() -> None:
    action, reason = decide("finetune", None)
    assert action == "retrain" and "cannot fine-tune" in reason


def test_explicit_retrain_is_obeyed_even_when_nothing_changed() -> None:
    assert decide("retrain", champion()) == ("retrain", "retrain requested")


@pytest.mark.parametrize("requested", ["auto", "finetune"])
def test_config_hash_change_forces_retrain(requested: str) -> None:
    action, reason = decide(requested, champion(), config_hash="other")
    assert action == "retrain" and "configuration changed" in reason


def test_explicit_finetune_is_obeyed_when_possible() -> None:
    # even with no new data and an old champion
    old = champion(trained_at=NOW - timedelta(days=400))
    assert decide("finetune", old) == ("finetune", "fine-tune requested")


def test_too_old_champion_is_retrained() -> None:
    action, reason = decide("auto", champion(trained_at=NOW - timedelta(days=91)), data_version=8)
    assert action == "retrain" and reason == "the champion's last full retrain was 91 days ago (limit 90)"


def test_age_exactly_at_the_limit_is_not_too_old() -> None:
    assert decide("auto", champion(trained_at=NOW - timedelta(days=90)))[0] == "skip"


def test_degraded_live_error_retrains() -> None:
    action, reason = decide("auto", champion(backtest_mase=0.8, live_mase=1.21), data_version=8)
    assert action == "retrain" and "live MASE 1.210 exceeds 1.5 x backtest MASE 0.800" == reason


def test_live_error_within_the_ratio_does_not_retrain() -> None:
    assert decide("auto", champion(backtest_mase=0.8, live_mase=1.2), data_version=8)[0] == "finetune"


def test_new_data_finetunes() -> None:
    action, reason = decide("auto", champion(data_version=7), data_version=9)
    assert action == "finetune" and "v7 -> v9" in reason


def test_nothing_new_skips() -> None:
    action, reason = decide("auto", champion(data_version=7, live_mase=0.9), data_version=7)
    assert action == "skip" and "v7" in reason


# --- decide_promotion --------------------------------------------------------------

SNAIVE = {"seasonal_naive": 1.0, "naive": 1.4}


def test_diverged_candidate_is_not_promoted() -> None:
    p = decide_promotion(0.5, baselines=SNAIVE, champion_mase=None, margin=0.0, diverged=True)
    assert not p.promote and "diverged" in p.reason


@pytest.mark.parametrize("mase", [float("nan"), float("inf")])
def test_non_finite_candidate_is_not_promoted(mase: float) -> None:
    p = decide_promotion(mase, baselines=SNAIVE, champion_mase=None, margin=0.0, diverged=False)
    assert not p.promote and "diverged" in p.reason


@pytest.mark.parametrize("mase", [1.0, 1.2])
def test_candidate_must_beat_seasonal_naive(mase: float) -> None:
    p = decide_promotion(mase, baselines=SNAIVE, champion_mase=None, margin=0.0, diverged=False)
    assert not p.promote and "does not beat seasonal naive" in p.reason


def test_first_champion_is_promoted_when_it_beats_seasonal_naive() -> None:
    p = decide_promotion(0.9, baselines=SNAIVE, champion_mase=None, margin=0.05, diverged=False)
    assert p.promote and p.reason.startswith("first champion")


def test_candidate_within_the_margin_of_the_champion_is_not_promoted() -> None:
    # bar = 0.8 * (1 - 0.05) = 0.76
    p = decide_promotion(0.77, baselines=SNAIVE, champion_mase=0.8, margin=0.05, diverged=False)
    assert not p.promote and "does not beat champion" in p.reason and "0.7600" in p.reason


def test_candidate_equal_to_the_champion_without_margin_is_not_promoted() -> None:
    p = decide_promotion(0.8, baselines=SNAIVE, champion_mase=0.8, margin=0.0, diverged=False)
    assert not p.promote


def test_candidate_beating_the_champion_by_the_margin_is_promoted() -> None:
    p = decide_promotion(0.75, baselines=SNAIVE, champion_mase=0.8, margin=0.05, diverged=False)
    assert p.promote and "beats champion" in p.reason


def test_without_a_champion_the_candidate_must_beat_the_best_baseline() -> None:
    # AutoETS serves while no LSTM has passed: the first LSTM must beat it, not only seasonal naive.
    with_ets = {**SNAIVE, "auto_ets": 0.85, "theta": 0.9}
    p = decide_promotion(0.88, baselines=with_ets, champion_mase=None, margin=0.0, diverged=False)
    assert not p.promote and "best baseline, auto_ets 0.8500" in p.reason
    p = decide_promotion(0.8, baselines=with_ets, champion_mase=None, margin=0.0, diverged=False)
    assert p.promote and "auto_ets 0.8500" in p.reason and "seasonal naive 1.0000" in p.reason


def test_with_a_champion_the_bar_is_the_champion_not_the_best_baseline() -> None:
    # With an LSTM champion the bar is the champion (and seasonal naive), not AutoETS.
    with_ets = {**SNAIVE, "auto_ets": 0.7}
    p = decide_promotion(0.75, baselines=with_ets, champion_mase=0.8, margin=0.0, diverged=False,
                         champion_version="3")
    assert p.promote and "champion v3 0.8000" in p.reason


def test_candidate_beating_the_champion_but_not_seasonal_naive_is_not_promoted() -> None:
    p = decide_promotion(1.1, baselines=SNAIVE, champion_mase=1.5, margin=0.0, diverged=False)
    assert not p.promote and "seasonal naive" in p.reason


# --- model_config_hash -------------------------------------------------------------

BASE = {"model": {"hidden_size": 16, "num_layers": 1}, "window": {"lookback": 24, "horizon": 12}}


def cfg_hash(**sections: dict[str, Any]) -> str:
    overrides = {k: {**BASE.get(k, {}), **v} for k, v in {**BASE, **sections}.items()}
    return model_config_hash(load_config(overrides=overrides, environ={}))


def test_hash_is_stable_and_short() -> None:
    assert cfg_hash() == cfg_hash()
    assert len(cfg_hash()) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"hidden_size": 32}},
        {"model": {"num_layers": 2}},
        {"model": {"bidirectional": True}},
        {"model": {"proj_size": 8}},
        {"model": {"dropout": 0.3}},
        {"window": {"lookback": 36}},
        {"window": {"horizon": 6}},
        {"data": {"covariates": ["price"]}},
        {"train": {"loss": "mse"}},
        {"train": {"ensemble": 5}},
        {"backtest": {"n_windows": 5}},
        {"backtest": {"step": 6}},
    ],
)
def test_hash_changes_with_what_the_model_is_or_how_it_is_judged(change: dict[str, dict[str, Any]]) -> None:
    assert cfg_hash(**change) != cfg_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"train": {"max_epochs": 7}},
        {"train": {"finetune_epochs": 3, "lr": 0.1, "batch_size": 8, "seed": 1}},
        {"lake": {"root": "/elsewhere"}},
    ],
)
def test_hash_ignores_how_long_and_where_it_trains(change: dict[str, dict[str, Any]]) -> None:
    assert cfg_hash(**change) == cfg_hash()


def test_hash_includes_the_season_length() -> None:
    """``data.season_length`` decides the model's calendar inputs (n_features) and its
    seasonal-naive base: changing it must force a retrain, never a fine-tune."""
    assert cfg_hash(data={"season_length": 1}) != cfg_hash()
    # Configured or derived from the frequency, the same season is the same model.
    cfg = load_config(environ={})
    assert model_config_hash(cfg, "MS") == model_config_hash(cfg.with_overrides({"data": {"season_length": 12}}), "MS")


# --- a challenger already trained on this data ----------------------------------------


def test_a_rejected_challenger_on_the_same_data_and_config_means_skip() -> None:
    rejected = champion(version="4", data_version=8)
    d = choose_training("auto", champion(), 8, HASH, POLICY, NOW, latest=rejected)
    assert (d.action, d.reason) == ("skip", "v4 was already trained on series table v8 and not promoted")


@pytest.mark.parametrize(
    ("latest", "expected"),
    [
        (champion(version="4", data_version=7), "finetune"),  # trained before the newest data
        (champion(version="4", data_version=8, config_hash="other"), "finetune"),  # another config
        (champion(version="3", data_version=8), "finetune"),  # the challenger is the champion
    ],
)
def test_new_data_still_finetunes_when_the_challenger_does_not_cover_it(latest: ChampionFacts, expected: str) -> None:
    assert choose_training("auto", champion(), 8, HASH, POLICY, NOW, latest=latest).action == expected


def test_an_explicit_request_is_obeyed_even_after_a_rejected_challenger() -> None:
    rejected = champion(version="4", data_version=8)
    assert choose_training("finetune", champion(), 8, HASH, POLICY, NOW, latest=rejected).action == "finetune"
    assert choose_training("retrain", champion(), 8, HASH, POLICY, NOW, latest=rejected).action == "retrain"
