"""MLflow: tracking runs, the model as a pyfunc, the registry and its aliases.

This is the only module that imports mlflow. Promotion uses aliases (``challenger``,
``champion``), never the deprecated stages, and every version carries the evidence of
the decision made about it in its description and tags.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from lstm_pipeline.checkpoint import Checkpoint
from lstm_pipeline.config import RegistryConfig
from lstm_pipeline.forecast import ForecastResult, predict_ensemble
from lstm_pipeline.intervals import add_intervals
from lstm_pipeline.policy import ChampionFacts, Promotion
from lstm_pipeline.train import EpochLog

__all__ = ["CHALLENGER", "CHAMPION", "ForecastModel", "Registry", "TrainingRun", "VersionInfo", "resolve_tracking_uri"]

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
_PACKAGE_DIR = Path(__file__).resolve().parent
# What loading the model needs; given explicitly so logging never infers them (slow).
_RUNTIME_PACKAGES = ("torch", "pandas", "numpy", "pydantic", "pyyaml")
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class ForecastModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """pyfunc wrapper: a history frame (unique_id, ds, y) in, the forecast frame out."""

    members: list[Checkpoint]  # one model, or an ensemble of seeds averaged
    quantiles: dict[int, list[float]]

    @property
    def checkpoint(self) -> Checkpoint:
        return self.members[0]

    def load_context(self, context: Any) -> None:
        names = sorted((k for k in context.artifacts if k.startswith("checkpoint")), key=_member_index)
        self.members = [Checkpoint.load(context.artifacts[name]) for name in names]
        path = context.artifacts.get("intervals")
        raw = json.loads(Path(path).read_text()) if path else {}
        self.quantiles = {int(level): [float(q) for q in qs] for level, qs in raw.items()}

    def forecast(self, history: pd.DataFrame) -> ForecastResult:
        """Point forecasts plus conformal interval columns (``yhat_lo_80`` ... ``yhat_hi_95``)."""
        result = predict_ensemble(self.members, history)
        frame = add_intervals(result.frame, history, self.quantiles, self.checkpoint.season_length)
        return ForecastResult(frame, result.skipped)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.forecast(model_input).frame


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    tags: Mapping[str, str]
    description: str
    created: datetime

    def facts(self) -> ChampionFacts:
        """The policy's view of this version, read from its tags."""
        return ChampionFacts(
            version=self.version,
            trained_at=self.created,
            data_version=int(self.tags.get("data_version", -1)),
            config_hash=self.tags.get("config_hash", ""),
            backtest_mase=float(self.tags.get("backtest_mase", "nan")),
            live_mase=float(self.tags["live_mase"]) if "live_mase" in self.tags else None,
        )


def resolve_tracking_uri(cfg: RegistryConfig, lake_root: str) -> str:
    """Config, else ``MLFLOW_TRACKING_URI``, else a SQLite store beside the local lake."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if "://" in lake_root:
        raise ValueError("the lake is remote: set registry.tracking_uri or MLFLOW_TRACKING_URI to an MLflow server")
    root = Path(lake_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


class Registry:
    def __init__(self, cfg: RegistryConfig, lake_root: str) -> None:
        self.uri = resolve_tracking_uri(cfg, lake_root)
        self.name = cfg.model_name
        self.client = MlflowClient(self.uri, self.uri)
        local = self.uri.startswith("sqlite:") and "://" not in lake_root
        artifacts = (Path(lake_root).resolve() / "mlartifacts").as_uri() if local else None
        self.experiment_id = self._experiment(cfg.experiment, artifacts)

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException:  # created meanwhile by a concurrent run
            found = self.client.get_experiment_by_name(name)
            assert found is not None
            return str(found.experiment_id)

    # --- reading -------------------------------------------------------------------
    def version(self, alias: str) -> VersionInfo | None:
        try:
            mv = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None
        return VersionInfo(
            name=self.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            tags=dict(mv.tags),
            description=mv.description or "",
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
        )

    def load(self, alias: str = CHAMPION) -> tuple[ForecastModel, VersionInfo] | None:
        """The pyfunc model behind ``models:/NAME@alias`` and its version, or None."""
        info = self.version(alias)
        if info is None:
            return None
        with _pointed_at(self.uri):
            model = mlflow.pyfunc.load_model(f"models:/{self.name}@{alias}")
        wrapper = model.unwrap_python_model()
        assert isinstance(wrapper, ForecastModel)
        return wrapper, info

    # --- writing -------------------------------------------------------------------
    def start_run(self, run_name: str, tags: Mapping[str, str]) -> TrainingRun:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        return TrainingRun(self, run.info.run_id)

    def record_decision(self, version: str, promotion: Promotion, comparison: pd.DataFrame, tags: Mapping[str, str]) -> None:
        """Write the decision and its evidence on the version, then move the aliases."""
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)
        verdict = "PROMOTED to champion" if promotion.promote else "NOT promoted"
        description = (
            f"**{verdict}**: {promotion.reason}.\n\n"
            "Backtest on identical rolling-origin windows (mean over series and windows):\n\n"
            f"{_markdown(comparison)}\n"
        )
        self.client.update_model_version(self.name, version, description=description)
        for key, value in {**tags, "promoted": str(promotion.promote).lower(), "decision": promotion.reason}.items():
            self.client.set_model_version_tag(self.name, version, key, value)
        if promotion.promote:
            self.client.set_registered_model_alias(self.name, CHAMPION, version)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def log_live_accuracy(self, version: str, metrics: Mapping[str, float], step: int) -> bool:
        """Record the live accuracy of ``version``'s forecasts; False if already recorded.

        Each metric becomes a tag ``live_<key>`` on the version (the policy reads
        ``live_mase``) and a metric ``live_<key>`` at ``step`` in the version's training
        run, so its history shows how live error moved as actuals arrived. Non-finite
        values are left out. LookupError if the version does not exist.
        """
        try:
            mv = self.client.get_model_version(self.name, version)
        except MlflowException as exc:
            raise LookupError(f"{self.name} version {version} is not in the registry at {self.uri}") from exc
        finite = {key: float(value) for key, value in metrics.items() if math.isfinite(float(value))}
        tags = {f"live_{key}": f"{value:.6g}" for key, value in finite.items()}
        if all(mv.tags.get(key) == value for key, value in tags.items()):
            return False
        if mv.run_id:
            for key, value in finite.items():
                self.client.log_metric(mv.run_id, f"live_{key}", value, step=step)
        self.tag_version(version, tags)
        return True


class TrainingRun:
    """One MLflow run of one training: parameters, per-epoch losses, backtest, the model."""

    def __init__(self, registry: Registry, run_id: str) -> None:
        self.registry, self.run_id = registry, run_id
        self.client = registry.client

    def log_params(self, params: Mapping[str, object]) -> None:
        items = list(params.items())
        for i in range(0, len(items), 100):  # the tracking API takes at most 100 per batch
            for key, value in items[i : i + 100]:
                self.client.log_param(self.run_id, key, str(value))

    def on_epoch(self, epoch: EpochLog) -> None:
        """Training callback: per-epoch losses and learning rate as step metrics."""
        for key in ("train_loss", "val_loss", "lr"):
            self.client.log_metric(self.run_id, key, float(getattr(epoch, key)), step=epoch.epoch)

    def log_metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        for key, value in values.items():
            self.client.log_metric(self.run_id, key, float(value), step=step)

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            frame.to_csv(path, index=False)
            self.client.log_artifact(self.run_id, str(path))

    def log_figure(self, figure: Any, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def log_model(
        self, members: Sequence[Checkpoint], quantiles: Mapping[int, list[float]], example: pd.DataFrame
    ) -> str:
        """Log the pyfunc model (weights, scaler, interval widths) and register it.

        Returns the new version number.
        """
        with tempfile.TemporaryDirectory() as tmp:
            paths = {_member_name(k): Path(tmp) / f"{_member_name(k)}.pt" for k in range(len(members))}
            for member, path in zip(members, paths.values()):
                member.save(path)
            intervals = Path(tmp) / "intervals.json"
            intervals.write_text(json.dumps({str(k): v for k, v in quantiles.items()}))
            model = ForecastModel()
            model.members, model.quantiles = list(members), dict(quantiles)
            output = model.forecast(example).frame
            with _pointed_at(self.registry.uri), mlflow.start_run(run_id=self.run_id), warnings.catch_warnings():
                # The output's integer `step` column never holds missing values.
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=ForecastModel(),
                    artifacts={**{name: str(p) for name, p in paths.items()}, "intervals": str(intervals)},
                    code_paths=[str(_PACKAGE_DIR)],
                    signature=infer_signature(example, output),
                    input_example=example,
                    pip_requirements=_pip_requirements(),
                    registered_model_name=self.registry.name,
                )
        assert info.registered_model_version is not None
        return str(info.registered_model_version)

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


@contextmanager
def _pointed_at(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide URIs at ``uri`` for one fluent call, then put them back.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment;
    left there, it would silently redirect the next pipeline run in this process (a
    long-lived worker, a test session) to this run's store.
    """
    saved_env = {key: os.environ.get(key) for key in _URI_ENV}
    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _member_name(k: int) -> str:
    return "checkpoint" if k == 0 else f"checkpoint_{k}"


def _member_index(name: str) -> int:
    return int(name.rsplit("_", 1)[1]) if "_" in name else 0


def _pip_requirements() -> list[str]:
    # Local build tags (torch "2.13.0+cpu") would pin a CPU-only wheel on a GPU host.
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in _RUNTIME_PACKAGES]


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in frame.iterrows():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4f}" if isinstance(value, float) else str(value)
