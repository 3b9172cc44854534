"""What a registered model version holds, and how it forecasts.

A version holds two sets of weights of the same training procedure
(:mod:`lstm_pipeline.evaluate.procedure`):

* **served** members, refit on all data up to each series' newest observation: they
  forecast;
* **evaluation** members, fit on the data up to the first backtest cutoff: while the
  version is champion, the next candidate's backtest scores these (the served ones have
  seen the backtest windows).

Plus the **weights** of the members its forecast combines (:mod:`lstm_pipeline.evaluate.members`:
``lstm`` is the served LSTM members' median, the statistical members are fitted per
series on the history each forecast is given), the conformal interval widths per horizon
step of that combined forecast, and a few facts (``meta``). On disk a bundle is a folder
of plain files (``torch.save`` checkpoints loadable with ``weights_only=True``, JSON),
which the MLflow model logs as its artifacts. A bundle written before combinations
existed has no weights file and forecasts with the LSTM alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lstm_pipeline.evaluate import members
from lstm_pipeline.evaluate.intervals import add_intervals
from lstm_pipeline.model import grid
from lstm_pipeline.model.checkpoint import Checkpoint
from lstm_pipeline.model.forecast import ForecastResult, predict_ensemble

__all__ = ["ModelBundle", "Served"]

_SERVED, _EVALUATION, _INTERVALS, _META, _WEIGHTS = "served", "evaluation", "intervals", "meta", "weights"
_BASELINE = "baseline"


@dataclass(frozen=True)
class Served:
    """A forecast without the LSTM: member weights and conformal quantiles per level and step.

    The version's best baseline (a statistical member, their combination or seasonal naive),
    served while no version has passed the gate.
    """

    weights: Mapping[str, float]
    quantiles: Mapping[int, Sequence[float]]
    name: str = ""

    def forecast(self, history: pd.DataFrame, horizon: int, freq: str, season_length: int,
                 n_jobs: int | None = None) -> pd.DataFrame:
        """``unique_id, ds, cutoff, step, yhat`` and interval columns, from ``history`` alone."""
        used = [m for m, w in self.weights.items() if w > 0]
        parts = members.statistical_forecasts(history, used, horizon, freq, season_length, n_jobs)
        frame = _stamped(members.combine(parts, self.weights), history, freq)
        return add_intervals(frame, history, self.quantiles, freq, season_length)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "weights": dict(self.weights),
                "quantiles": {str(k): list(v) for k, v in self.quantiles.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Served:
        weights = {str(k): float(v) for k, v in dict(d["weights"]).items()}  # type: ignore[call-overload]
        quantiles = {int(k): [float(q) for q in v] for k, v in dict(d["quantiles"]).items()}  # type: ignore[call-overload]
        return cls(weights, quantiles, str(d.get("name", "")))


@dataclass(frozen=True)
class ModelBundle:
    served: tuple[Checkpoint, ...]
    evaluation: tuple[Checkpoint, ...]
    quantiles: Mapping[int, Sequence[float]]
    meta: Mapping[str, str] = field(default_factory=dict)
    # Member -> weight of the served forecast (default: the LSTM alone).
    weights: Mapping[str, float] = field(default_factory=lambda: {members.LSTM: 1.0})
    # The best forecast without the LSTM on this version's backtest (served while none passed).
    baseline: Served | None = None

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

    @property
    def members(self) -> str:
        """The served forecast's members and weights, as written on forecast rows."""
        return members.describe(self.weights)

    def forecast(self, history: pd.DataFrame, device: str = "auto", n_jobs: int | None = None) -> ForecastResult:
        """The combined forecast of every series in ``history`` (``unique_id, ds, y``), with
        interval columns (``yhat_lo_80`` ...): the LSTM members on ``device``, the statistical
        members fitted here on ``history`` (on the CPU, ``n_jobs`` processes)."""
        parts: dict[str, pd.DataFrame] = {}
        skipped: dict[str, str] = {}
        if self.weights.get(members.LSTM, 0) > 0:
            result = predict_ensemble(self.served, history, device=device)
            parts[members.LSTM], skipped = result.frame, result.skipped
        local = [m for m, w in self.weights.items() if w > 0 and m != members.LSTM]
        if local:
            H, season = self.horizon, self.checkpoint.season_length
            parts.update(members.statistical_forecasts(history, local, H, self.freq, season, n_jobs))
        frame = parts[members.LSTM] if list(parts) == [members.LSTM] else \
            _stamped(members.combine(parts, self.weights), history, self.freq)
        frame = add_intervals(frame, history, self.quantiles, self.freq, self.checkpoint.season_length)
        return ForecastResult(frame, skipped)

    def evaluation_forecaster(self) -> members.Forecaster:
        """The evaluation LSTM members as a backtest forecaster (history in, forecast frame out)."""
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
                              (_META, dict(self.meta)), (_WEIGHTS, dict(self.weights)),
                              *(((_BASELINE, self.baseline.to_dict()),) if self.baseline else ())):
            path = folder / f"{name}.json"
            path.write_text(json.dumps(content, indent=1, sort_keys=True))
            paths[name] = str(path)
        return paths

    @classmethod
    def load(cls, artifacts: Mapping[str, str]) -> ModelBundle:
        """The bundle from its artifact paths (as :meth:`save` names them)."""

        def checkpoints(kind: str) -> tuple[Checkpoint, ...]:
            names = sorted((n for n in artifacts if n.startswith(f"{kind}_")), key=lambda n: int(n.rsplit("_", 1)[1]))
            return tuple(Checkpoint.load(artifacts[n]) for n in names)

        served = checkpoints(_SERVED)
        if not served:
            raise ValueError(f"no served checkpoint among the model's artifacts {sorted(artifacts)}")
        raw = json.loads(Path(artifacts[_INTERVALS]).read_text()) if _INTERVALS in artifacts else {}
        meta = json.loads(Path(artifacts[_META]).read_text()) if _META in artifacts else {}
        quantiles = {int(level): [float(q) for q in qs] for level, qs in raw.items()}
        weights = json.loads(Path(artifacts[_WEIGHTS]).read_text()) if _WEIGHTS in artifacts else {"lstm": 1.0}
        baseline = Served.from_dict(json.loads(Path(artifacts[_BASELINE]).read_text())) \
            if _BASELINE in artifacts else None
        return cls(served, checkpoints(_EVALUATION), quantiles, {str(k): str(v) for k, v in meta.items()},
                   {str(k): float(v) for k, v in weights.items()}, baseline)

    @classmethod
    def from_folder(cls, folder: str | Path) -> ModelBundle:
        """The bundle saved by :meth:`save` in ``folder``."""
        folder = Path(folder)
        return cls.load({p.stem: str(p) for p in folder.iterdir() if p.suffix in (".pt", ".json")})


def _stamped(frame: pd.DataFrame, history: pd.DataFrame, freq: str) -> pd.DataFrame:
    """``frame`` (``unique_id, ds, yhat``) with each series' ``cutoff`` (its last observation)
    and ``step`` (periods after it), in the forecast frame's column order."""
    last = history.groupby(history["unique_id"].astype(str))["ds"].max()
    out = frame.drop(columns=["cutoff", "step"], errors="ignore")
    out["cutoff"] = out["unique_id"].map(last).to_numpy()
    out["step"] = (grid.positions(out["ds"], freq) - grid.positions(out["cutoff"], freq)).astype("int32")
    return out[["unique_id", "ds", "cutoff", "step", "yhat"]].sort_values(["unique_id", "ds"], ignore_index=True)
