"""What a registered model version holds, and how it forecasts.

A version holds two sets of weights of the same training procedure
(:mod:`lstm_pipeline.procedure`):

* **served** members, refit on all data up to each series' newest observation: they
  forecast;
* **evaluation** members, fit on the data up to the first backtest cutoff: while the
  version is champion, the next candidate's backtest scores these (the served ones have
  seen the backtest windows).

Plus the conformal interval widths per horizon step and a few facts (``meta``). On disk
a bundle is a folder of plain files (``torch.save`` checkpoints loadable with
``weights_only=True``, JSON), which the MLflow model logs as its artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lstm_pipeline.backtest import Forecaster
from lstm_pipeline.checkpoint import Checkpoint
from lstm_pipeline.forecast import ForecastResult, predict_ensemble
from lstm_pipeline.intervals import add_intervals

__all__ = ["ModelBundle"]

_SERVED, _EVALUATION, _INTERVALS, _META = "served", "evaluation", "intervals", "meta"


@dataclass(frozen=True)
class ModelBundle:
    served: tuple[Checkpoint, ...]
    evaluation: tuple[Checkpoint, ...]
    quantiles: Mapping[int, Sequence[float]]
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def checkpoint(self) -> Checkpoint:
        """The first served member: what the model is (shape, frequency, horizon)."""
        return self.served[0]

    @property
    def horizon(self) -> int:
        return self.checkpoint.window.horizon

    @property
    def freq(self) -> str:
        return self.checkpoint.freq

    def forecast(self, history: pd.DataFrame, device: str = "auto") -> ForecastResult:
        """Point forecasts of the served members plus interval columns (``yhat_lo_80`` ...)."""
        result = predict_ensemble(self.served, history, device=device)
        frame = add_intervals(result.frame, history, self.quantiles, self.freq, self.checkpoint.season_length)
        return ForecastResult(frame, result.skipped)

    def evaluation_forecaster(self) -> Forecaster:
        """The evaluation members as a backtest forecaster (history in, forecast frame out)."""
        return lambda history: predict_ensemble(self.evaluation, history).frame

    def save(self, folder: str | Path) -> dict[str, str]:
        """Write the bundle's files into ``folder``; returns artifact name -> path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        for kind, members in ((_SERVED, self.served), (_EVALUATION, self.evaluation)):
            for k, member in enumerate(members):
                path = folder / f"{kind}_{k}.pt"
                member.save(path)
                paths[f"{kind}_{k}"] = str(path)
        for name, content in ((_INTERVALS, {str(k): list(v) for k, v in self.quantiles.items()}),
                              (_META, dict(self.meta))):
            path = folder / f"{name}.json"
            path.write_text(json.dumps(content, indent=1, sort_keys=True))
            paths[name] = str(path)
        return paths

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> ModelBundle:
        """The bundle from its artifact paths (as :meth:`save` names them)."""

        def members(kind: str) -> tuple[Checkpoint, ...]:
            names = sorted((n for n in artifacts if n.startswith(f"{kind}_")), key=lambda n: int(n.rsplit("_", 1)[1]))
            return tuple(Checkpoint.load(artifacts[n]) for n in names)

        served = members(_SERVED)
        if not served:
            raise ValueError(f"no served checkpoint among the model's artifacts {sorted(artifacts)}")
        raw = json.loads(Path(artifacts[_INTERVALS]).read_text()) if _INTERVALS in artifacts else {}
        meta = json.loads(Path(artifacts[_META]).read_text()) if _META in artifacts else {}
        quantiles = {int(level): [float(q) for q in qs] for level, qs in raw.items()}
        return cls(served, members(_EVALUATION), quantiles, {str(k): str(v) for k, v in meta.items()})

    @classmethod
    def from_folder(cls, folder: str | Path) -> ModelBundle:
        """The bundle saved by :meth:`save` in ``folder``."""
        folder = Path(folder)
        return cls.load({p.stem: str(p) for p in folder.iterdir() if p.suffix in (".pt", ".json")})
