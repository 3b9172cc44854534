"""What the policy reads off a model version: facts from its registry tags, no mlflow.

Lives with the registry, which produces these facts (``VersionInfo.facts``); the
training policy (:mod:`lstm_pipeline.stages.policy`) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ChampionFacts"]


@dataclass(frozen=True)
class ChampionFacts:
    """What the policy needs to know about the current champion (from its registry tags).

    ``trained_at`` is the time of its last *full retrain*: a fine-tune keeps its parent's,
    so a chain of fine-tunes cannot postpone the periodic retrain forever.
    """

    version: str
    trained_at: datetime
    data_version: int
    config_hash: str
    backtest_mase: float
    live_mase: float | None = None
    # Whether its gate compared it with a champion (tag champion_compared).
    compared_with_champion: bool = False
