"""One typed configuration object, made of sections, loaded once at the entry point.

Precedence, lowest to highest: the defaults below < a YAML config file < environment
variables < explicit overrides (command-line options, flow parameters).

Environment variables are named ``LSTM_PIPELINE_<SECTION>__<FIELD>``, for example
``LSTM_PIPELINE_MODEL__HIDDEN_SIZE=128`` or ``LSTM_PIPELINE_LAKE__ROOT=/srv/lake``.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lstm_pipeline.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "BacktestConfig",
    "CombineConfig",
    "DataConfig",
    "ForecastConfig",
    "LakeConfig",
    "ModelConfig",
    "PipelineConfig",
    "PolicyConfig",
    "RegistryConfig",
    "TrainConfig",
    "WindowConfig",
    "load_config",
    "season_length_for",
]

ENV_PREFIX = "LSTM_PIPELINE_"
_UNIONS = (typing.Union, types.UnionType)

# Season length per pandas frequency alias, used by seasonal naive and MASE.
_SEASON_LENGTHS = {
    "MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4,
    "W": 52, "D": 7, "B": 5, "h": 24, "H": 24, "min": 60, "YS": 1, "YE": 1, "Y": 1,
}


def season_length_for(freq: str) -> int:
    """Season length for a pandas frequency alias ('MS' -> 12, 'D' -> 7, 'h' -> 24)."""
    base = freq.split("-")[0].lstrip("0123456789") or freq
    return _SEASON_LENGTHS.get(base, 1)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeConfig(_Section):
    """Where the Delta tables live: a local folder or an object-store URI."""

    root: str = "data/lake"
    storage_options: dict[str, str] = Field(default_factory=dict)


class DataConfig(_Section):
    """How incoming files map onto the long format ``unique_id, ds, y``."""

    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"
    covariates: tuple[str, ...] = ()
    # None: inferred on the first ingest and then fixed for the lake.
    freq: str | None = None
    season_length: int | None = None
    csv_delimiter: str = ","
    # A file with more than this share of its rows quarantined is refused whole (nothing
    # of the run lands): it is the wrong file, not a file with a few bad rows. 1 disables.
    max_quarantine_share: float = Field(0.5, gt=0, le=1)

    def season(self, freq: str) -> int:
        """The season length in use: ``season_length`` if set, else the usual one of ``freq``."""
        return self.season_length or season_length_for(freq)


class WindowConfig(_Section):
    """The horizon and the input lengths (see :meth:`input_lengths`)."""

    # One input length for every member (None: the members' lengths come from lookbacks).
    lookback: int | None = Field(None, ge=1)
    horizon: int = Field(12, ge=1)
    # The members' input lengths, in turn (empty: 1.25 seasons, 2 and 3 horizons).
    lookbacks: tuple[int, ...] = ()

    def input_lengths(self, season_length: int) -> tuple[int, ...]:
        """The input lengths the ensemble's members take in turn.

        ``lookbacks`` if set, else ``lookback``, else one and a quarter seasons (one horizon
        without a season), two horizons and three horizons: 15, 24, 36 for monthly data
        with horizon 12; 5, 16, 24 for quarterly with horizon 8.
        """
        if self.lookbacks:
            return self.lookbacks
        if self.lookback is not None:
            return (self.lookback,)
        H = self.horizon
        first = math.ceil(1.25 * season_length) if season_length > 1 else H
        return tuple(dict.fromkeys((first, 2 * H, 3 * H)))


class ModelConfig(_Section):
    """Options of the global LSTM; each maps onto ``torch.nn.LSTM``."""

    hidden_size: int = Field(32, ge=1)
    num_layers: int = Field(1, ge=1)
    # Between stacked layers (nn.LSTM's own option): no effect with one layer.
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bidirectional: bool = False
    proj_size: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _proj_below_hidden(self) -> ModelConfig:
        if self.proj_size >= self.hidden_size:
            raise ValueError("model.proj_size must be smaller than model.hidden_size")
        return self


class TrainConfig(_Section):
    max_epochs: int = Field(200, ge=1)
    # None: 256 on CPU, 4096 on CUDA.
    batch_size: int | None = Field(None, ge=1)
    # An epoch is at most this many training windows, drawn afresh each epoch (None: all).
    # It bounds an epoch's cost on large panels (M4-sized: millions of windows).
    max_windows_per_epoch: int | None = Field(100_000, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    # Epochs without a better validation loss before early stopping ends a fit (None: 4 in a
    # combination, 8 for the LSTM alone; see PipelineConfig.for_training).
    patience: int | None = Field(None, ge=1)
    loss: Literal["mae", "mse", "huber"] = "mae"
    # "mase": weight each series' loss by scale / seasonal-naive MAE, i.e. train on MASE.
    loss_weighting: Literal["mase", "none"] = "mase"
    seed: int = 42
    # Weights scored and kept: an exponential moving average over steps (0: the raw weights).
    ema_decay: float = Field(0.98, ge=0, lt=1)
    # Members trained with seeds seed, seed+1, ... and the input lengths of window in turn;
    # their forecasts' median is the LSTM's forecast. Costs that many trainings. None: 3 when
    # the LSTM is served alone, 1 inside a combination (its partners already average out
    # one network's errors).
    ensemble: int | None = Field(None, ge=1)
    # True: the refit that serves starts from the evaluation weights and trains refit_share of
    # the evaluation's epochs on all data; False: from scratch, the evaluation's whole
    # schedule again. None: warm in a combination, from scratch for the LSTM alone.
    refit_warm_start: bool | None = None
    refit_share: float = Field(0.15, gt=0, le=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Periods at the end of an evaluation fit's data that early stopping watches (None: the
    # horizon; fewer on a history too short for it, see lstm_pipeline.evaluate.procedure.plan).
    validation_periods: int | None = Field(None, ge=1)
    # Threads a CPU fit uses (None: torch's default, one per core).
    cpu_threads: int | None = Field(1, ge=1)
    # Fine-tuning: the same code path, started from the champion, with its own budget.
    finetune_epochs: int = Field(30, ge=1)
    finetune_lr: float = Field(1e-3, gt=0)


class BacktestConfig(_Section):
    """Rolling-origin evaluation over the last ``n_windows`` cutoff dates, ``step`` periods apart."""

    n_windows: int = Field(2, ge=1)
    # None: the horizon (windows side by side, each period scored once).
    step: int | None = Field(None, ge=1)
    # Observations a series needs up to a cutoff to be scored there (None: season + 1, at least 3).
    min_history: int | None = Field(None, ge=2)
    # AutoETS and Theta on the same windows, when the optional statsforecast is installed.
    statistical_baselines: bool = True


class CombineConfig(_Section):
    """What the served forecast is made of (:mod:`lstm_pipeline.evaluate.members`).

    The gate scores the equal-weight combination of every subset of ``members`` (all of
    them, the pairs, each alone) and the champion on the same backtest windows; the
    version serves the combination of all members unless a smaller one is better by more
    than ``selection_margin``. ``("lstm",)`` serves the LSTM alone.
    """

    members: tuple[str, ...] = ("lstm", "auto_ets", "theta")
    # A smaller combination (or one member) is served instead of all members only when its
    # backtest MASE is lower by more than this share: two windows are little evidence.
    selection_margin: float = Field(0.03, ge=0, lt=1)
    # Processes for the statistical members' per-series fits (None: every core).
    n_jobs: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _known_members(self) -> CombineConfig:
        known = ("lstm", "auto_ets", "theta", "auto_ces", "auto_arima", "seasonal_naive", "naive")
        unknown = [m for m in self.members if m not in known]
        if not self.members or unknown or len(set(self.members)) != len(self.members):
            raise ValueError(f"combine.members must name distinct members among {', '.join(known)}; "
                             f"got {', '.join(self.members) or 'none'}")
        return self


class RegistryConfig(_Section):
    model_name: str = "lstm-forecaster"
    experiment: str = "lstm-pipeline"
    # None: MLFLOW_TRACKING_URI if set, else a SQLite store inside the lake root.
    tracking_uri: str | None = None
    # A challenger must beat the champion's MASE by this relative margin (0.02 = 2 %).
    promotion_margin: float = Field(0.0, ge=0)
    # The most seconds one run spends waiting on MLflow (retries and their timeouts) before
    # the step that needs it fails; each request times out after request_timeout_s.
    max_wait_s: float = Field(120.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    # Local copies of loaded models, served when MLflow is unreachable (None: beside a
    # local lake, else ~/.cache/lstm-pipeline).
    cache_dir: str | None = None


class ForecastConfig(_Section):
    """What the scheduled forecast covers."""

    # Series whose last observation lies more than this many periods behind the lake's
    # newest are stale: listed, not forecast again (None: two seasons, at least 2).
    max_staleness: int | None = Field(None, ge=0)


class PolicyConfig(_Section):
    """When the scheduled run retrains, fine-tunes or skips training."""

    max_champion_age_days: float = Field(90.0, gt=0)
    # Retrain when live MASE exceeds backtest MASE by this factor.
    degradation_ratio: float = Field(1.5, gt=1)


class PipelineConfig(_Section):
    lake: LakeConfig = LakeConfig()
    data: DataConfig = DataConfig()
    window: WindowConfig = WindowConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    backtest: BacktestConfig = BacktestConfig()
    combine: CombineConfig = CombineConfig()
    registry: RegistryConfig = RegistryConfig()
    policy: PolicyConfig = PolicyConfig()
    forecast: ForecastConfig = ForecastConfig()

    @property
    def lstm_ensemble(self) -> int:
        """LSTM members to train: ``train.ensemble``, else 3 alone and 1 in a combination."""
        return int(self.for_training().train.ensemble or 1)

    def for_training(self) -> PipelineConfig:
        """This configuration with the LSTM's budget resolved where unset.

        Served alone, the LSTM trains as it did before combinations (3 members, patience 8,
        a refit from scratch): that is what its accuracy was measured with. In a combination
        its partners average out one network's errors, so 1 member, patience 4 and a
        warm-started refit cost a fifth as much for the same combined accuracy
        (bench/RESULTS.md, "The forecast that ships").
        """
        t = self.train
        alone = self.combine.members == ("lstm",)
        resolved = {"ensemble": t.ensemble or (3 if alone else 1), "patience": t.patience or (8 if alone else 4),
                    "refit_warm_start": (not alone) if t.refit_warm_start is None else t.refit_warm_start}
        if resolved == {"ensemble": t.ensemble, "patience": t.patience, "refit_warm_start": t.refit_warm_start}:
            return self
        return self.with_overrides({"train": resolved})

    def with_overrides(self, overrides: Mapping[str, Any]) -> PipelineConfig:
        """A validated copy with nested ``{"section": {"field": value}}`` overrides."""
        return PipelineConfig.model_validate(_deep_merge(self.model_dump(), overrides))


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Build the configuration: defaults < YAML file < environment < overrides.

    A file that cannot be read or parsed raises :class:`ConfigError` naming the file (and
    for a YAML syntax error, the line and column); invalid values raise pydantic's
    ``ValidationError``.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _deep_merge(values, _read_yaml(Path(path)))
    values = _deep_merge(values, _env_values(os.environ if environ is None else environ))
    values = _deep_merge(values, overrides or {})
    return PipelineConfig.model_validate(values)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # only when a file is given: a bare training box may lack PyYAML

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {exc.problem or exc.context}") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
    return loaded


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """``LSTM_PIPELINE_MODEL__HIDDEN_SIZE=128`` -> ``{"model": {"hidden_size": "128"}}``.

    Values stay strings; pydantic coerces them ("128" -> 128, "true" -> True). A field
    holding several values (a tuple or list: ``window.lookbacks``, ``data.covariates``)
    takes a comma list or a JSON list: ``15,24`` and ``[15,24]`` are both (15, 24), and
    an empty value is the empty tuple. A mapping field takes a JSON object.
    """
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, field = key[len(ENV_PREFIX):].lower().split("__", 1)
        value: Any = raw
        kind = _field_kind(section, field)
        if kind == "sequence":
            text = raw.strip()
            value = _json(key, text) if text.startswith("[") else tuple(v.strip() for v in text.split(",") if v.strip())
        elif kind == "mapping" and raw.strip().startswith("{"):
            value = _json(key, raw)
        out.setdefault(section, {})[field] = value
    return out


def _field_kind(section: str, field: str) -> str:
    """"sequence", "mapping" or "scalar": the shape of ``section.field``'s type (unknown: scalar)."""
    holder = PipelineConfig.model_fields.get(section)
    model = holder.annotation if holder is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or field not in model.model_fields:
        return "scalar"  # an unknown name: validation names it
    annotation = model.model_fields[field].annotation
    kinds = {get_origin(a) or a for a in (get_args(annotation) if get_origin(annotation) in _UNIONS else (annotation,))}
    if kinds & {tuple, list, set, frozenset}:
        return "sequence"
    return "mapping" if dict in kinds else "scalar"


def _json(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: not valid JSON ({exc.msg} at character {exc.pos + 1}): {text!r}") from exc


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
