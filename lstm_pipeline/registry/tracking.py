"""MLflow: tracking runs, logging the model, the registry and its aliases.

This module (with ``serving.py``, the pyfunc file MLflow itself runs) is the only one
that imports mlflow. Promotion uses aliases (``challenger``, ``champion``), never the
deprecated stages, and every version carries the evidence of the decision made about it
in its description and tags.

What keeps a scheduled run safe when MLflow misbehaves:

* **Bounded waiting.** Every call goes through :meth:`Registry._call`: transient errors
  (connection refused, timeouts, 5xx, a locked SQLite store) are retried with backoff
  until ``registry.max_wait_s`` seconds of waiting are spent, then
  :class:`RegistryUnavailable` says so. MLflow's own HTTP retries are switched off
  (unless set in the environment), so nothing waits longer than that budget.
* **Registration that cannot half-happen.** A version is created with all its tags and
  its description in one call, ``promotion=pending`` among them; then the ``challenger``
  alias is moved, then (if it was promoted) the ``champion`` alias, then the tag becomes
  ``promotion=done``. A crash in between leaves a pending version whose tags say what
  should have happened: :meth:`Registry.repair` finishes it on the next run. Only those:
  an alias moved by hand (or by :meth:`Registry.rollback`) is left where it was put.
* **"Not found" is the only "no champion".** Reading an alias that is not set returns
  None; any other error raises (:class:`RegistryUnavailable` when MLflow cannot be
  reached, :class:`RegistryError` otherwise), so that a registry that refuses to answer
  is never mistaken for an empty one.
* **One resolution per load.** An alias is resolved to a version number once, and that
  number is loaded and reported, so a promotion meanwhile cannot mislabel forecasts.
* **A local copy of the champion.** Each model loaded is also kept on local disk, with a
  manifest (``versions.ModelCache``); :meth:`Registry.local_copy` returns it, whole, for
  the caller to serve when the registry cannot be read.
* **Metrics in batches.** Per-epoch losses are buffered and sent in batches; a batch
  that fails is kept and sent with the next one, so a short outage loses nothing.
"""

from __future__ import annotations

import fcntl
import getpass
import logging
import math
import os
import random
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from lstm_pipeline.config import RegistryConfig
from lstm_pipeline.errors import ModelLoadError, PipelineError
from lstm_pipeline.model.train import EpochLog
from lstm_pipeline.registry.bundle import ModelBundle
from lstm_pipeline.registry.versions import Loaded, ModelCache, VersionInfo, cache_dir

__all__ = [
    "CHALLENGER", "CHAMPION", "PROMOTION", "Loaded", "Registry", "RegistryError", "RegistryUnavailable",
    "TrainingRun", "VersionInfo", "resolve_tracking_uri",
]

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lstm_pipeline/, logged with the model
_SERVING_FILE = Path(__file__).resolve().with_name("serving.py")
# What loading the model needs; given explicitly so logging never infers them (slow).
# The served model fits its statistical members with statsforecast wherever it is loaded.
_RUNTIME_PACKAGES = ("torch", "pandas", "numpy", "pydantic", "pyyaml", "mlflow", "statsforecast")
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# What the registered model's page says about every version.
MODEL_DESCRIPTION = (
    "Rolling forecasts of every series in the lake, `horizon` periods ahead, with 80 % and 95 % conformal "
    "intervals. Each version combines a global LSTM with AutoETS and Theta (fitted per series on the history "
    "it is given) with equal weights, or serves a smaller combination or one member when the backtest says "
    "so clearly; its description says which, with every member's score.\n\n"
    "**How versions are judged.** Each version is scored on the same rolling-origin backtest windows as "
    "seasonal naive, every statistical member and the current `@champion`, every score out of sample for the "
    "model that produced it; it becomes `@champion` only when its MASE beats seasonal naive and the champion "
    "(or, with no champion, the best forecast without the LSTM, which is served meanwhile). `@challenger` is "
    "the newest version. Roll back with `lstm-pipeline rollback [VERSION]` or by moving `@champion` here."
)
# Errors that retrying cannot fix.
# ENDPOINT_NOT_FOUND: an HTTP 404 without MLflow's JSON, i.e. the URI names another service.
_PERMANENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "NOT_FOUND",
              "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_STATE", "ENDPOINT_NOT_FOUND"}
# Errors of a registry that refuses to answer (not of the model it would answer with).
_REFUSED = {"PERMISSION_DENIED", "UNAUTHENTICATED", "ENDPOINT_NOT_FOUND"}
# The tag that says whether the code finished moving a version's aliases (see repair).
PROMOTION = "promotion"
_PENDING, _DONE, _CANCELLED = "pending", "done", "cancelled"
_FLUSH_EVERY = 10  # epochs per metrics batch
T = TypeVar("T")


class RegistryError(PipelineError):
    """MLflow answered, but with an error that retrying cannot fix (a permission refused, a
    URI that names another service): the registry's state is unknown, not empty."""


class RegistryUnavailable(RegistryError):
    """MLflow could not be reached (or kept failing) within ``registry.max_wait_s``."""


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
        self.cfg = cfg
        self.uri = resolve_tracking_uri(cfg, lake_root)
        self.name = cfg.model_name
        self._lake_root = lake_root
        # Our own retries bound the waiting; MLflow's would add minutes per call.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(int(cfg.request_timeout_s), 1)))
        self._waited = 0.0
        self.cache = ModelCache(cache_dir(cfg, lake_root, self.uri))
        if self.uri.startswith("sqlite:///"):
            self.client = self._create_sqlite_store(Path(self.uri.removeprefix("sqlite:///")))
        else:
            self.client = MlflowClient(self.uri, self.uri)

    def _create_sqlite_store(self, db: Path) -> MlflowClient:
        """A client of a local SQLite store, created (or migrated) under a file lock: two
        processes doing it at once would both try to create the same tables. The client is
        made under the lock too: making one already creates the tables."""
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                client = MlflowClient(self.uri, self.uri)
                self._call("open the store", client.search_experiments, max_results=1)
                self._call("open the registry", client.search_registered_models, max_results=1)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return client

    @cached_property
    def experiment_id(self) -> str:
        local = self.uri.startswith("sqlite:") and "://" not in self._lake_root
        artifacts = (Path(self._lake_root).resolve() / "mlartifacts").as_uri() if local else None
        found = self._call("get the experiment", self.client.get_experiment_by_name, self.cfg.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self._call("create the experiment", self.client.create_experiment, self.cfg.experiment,
                                  artifact_location=artifacts))
        except MlflowException:  # created meanwhile by a concurrent run
            found = self._call("get the experiment", self.client.get_experiment_by_name, self.cfg.experiment)
            assert found is not None
            return str(found.experiment_id)

    # --- the one door to MLflow ------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retried with backoff on transient errors while this
        registry's waiting budget (``registry.max_wait_s``) lasts."""
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                self._waited += time.monotonic() - started
                if not _transient(exc):
                    raise
                left = self.cfg.max_wait_s - self._waited
                if left <= 0:
                    raise RegistryUnavailable(
                        f"MLflow at {_redacted(self.uri)} unavailable: could not {what} "
                        f"({_first_line(exc)}); gave up after {self._waited:.0f} s of waiting "
                        f"(registry.max_wait_s = {self.cfg.max_wait_s:g})"
                    ) from exc
                pause = min(delay * (1 + random.random()), left)
                log.warning("MLflow: could not %s (%s); retrying in %.1f s", what, _first_line(exc), pause)
                time.sleep(pause)
                self._waited += pause
                delay = min(delay * 2, 30.0)

    # --- reading ---------------------------------------------------------------------
    def version(self, alias: str) -> VersionInfo | None:
        """The version behind ``alias``; None only if MLflow says the model or the alias does
        not exist. RegistryUnavailable when MLflow cannot be reached, RegistryError for any
        other error: a registry that cannot answer is not an empty one."""
        try:
            # The model's alias map, not get_model_version_by_alias: MLflow reports a missing
            # alias as INVALID_PARAMETER_VALUE, the code of many other errors too.
            model = self._call(f"read {self.name}", self.client.get_registered_model, self.name)
            number = dict(model.aliases or {}).get(alias)
            if number is None:
                return None
            mv = self._call(f"read v{number}", self.client.get_model_version, self.name, str(number))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise self._error(f"resolve {self.name}@{alias}", exc) from exc
        return self._info(mv)

    def versions(self) -> list[VersionInfo]:
        """Every version of the model, oldest first (RegistryError if MLflow refuses)."""
        try:
            found = self._call("list versions", self.client.search_model_versions, f"name = '{self.name}'")
        except MlflowException as exc:
            raise self._error(f"list the versions of {self.name}", exc) from exc
        return sorted((self._info(mv) for mv in found), key=lambda v: int(v.version))

    def load(self, alias: str = CHAMPION) -> Loaded | None:
        """The version behind ``alias``, fully loaded (every member), or None if unset.

        The alias is resolved once; that version number is loaded and reported, and kept
        as the local copy. Raises RegistryUnavailable (an outage: the champion exists as
        far as anyone knows) or RegistryError when the registry cannot be read, and
        ModelLoadError when the version it names cannot be loaded (a broken model). It
        never serves the local copy itself: the caller decides (:meth:`local_copy`).
        """
        info = self.version(alias)
        if info is None:
            return None
        loaded = Loaded(self._load_bundle(info, alias), info)
        self.cache.store(alias, loaded.bundle, info)
        return loaded

    def local_copy(self, alias: str = CHAMPION) -> Loaded | None:
        """The local copy of the last model loaded as ``alias`` (``source="cache"``), if it
        is whole (its manifest checks out); None otherwise, with one log line saying why."""
        return self.cache.load(alias)

    def _load_bundle(self, info: VersionInfo, alias: str) -> ModelBundle:
        try:
            model = self._call(f"load v{info.version}", self._load_pyfunc, info.version)
        except RegistryUnavailable:
            raise
        except MlflowException as exc:
            if exc.error_code in _REFUSED:  # the registry would not hand it over: not a broken model
                raise self._error(f"load {self.name} v{info.version}", exc) from exc
            raise ModelLoadError(f"{self.name} v{info.version} (@{alias}) could not be loaded from "
                                 f"{_redacted(self.uri)}: {_first_line(exc)}") from exc
        except Exception as exc:
            raise ModelLoadError(f"{self.name} v{info.version} (@{alias}) could not be loaded from "
                                 f"{_redacted(self.uri)}: {_first_line(exc)}") from exc
        bundle = getattr(model.unwrap_python_model(), "bundle", None)
        if not isinstance(bundle, ModelBundle):
            raise ModelLoadError(f"{self.name} v{info.version} (@{alias}) is not a model of this pipeline")
        return bundle

    def _error(self, what: str, exc: MlflowException) -> RegistryError:
        # MLflow appends the response body (a whole HTML page from a wrong service): not here.
        reason = _first_line(exc).split(". Response body:")[0]
        return RegistryError(f"MLflow at {_redacted(self.uri)} could not {what}: {exc.error_code}: {reason}")

    def _load_pyfunc(self, version: str) -> Any:
        with _pointed_at(self.uri):
            return mlflow.pyfunc.load_model(f"models:/{self.name}/{version}")

    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(
            name=self.name, version=str(mv.version), run_id=mv.run_id or "", tags=dict(mv.tags),
            description=mv.description or "", created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
        )

    # --- writing ---------------------------------------------------------------------
    def start_run(self, run_name: str, tags: Mapping[str, str]) -> TrainingRun:
        run = self._call("start a run", self.client.create_run, self.experiment_id, run_name=run_name, tags=dict(tags))
        return TrainingRun(self, run.info.run_id)

    def register(self, run: TrainingRun, model_id: str, tags: Mapping[str, str], description: str) -> str:
        """A new version of the model logged by ``run``, born with its tags and description,
        and ``promotion=pending`` until :meth:`move_aliases` has moved its aliases."""
        try:
            self._call("create the registered model", self.client.create_registered_model, self.name,
                       description=MODEL_DESCRIPTION)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # The logged model's own artifact location: resolving "models:/<id>" would go through
        # MLflow's process-wide tracking URI, not this registry's.
        source = self._call("find the logged model", self.client.get_logged_model, model_id).artifact_location
        mv = self._call(
            "register the model", self.client.create_model_version, self.name, source=source,
            run_id=run.run_id, tags={**{k: str(v) for k, v in tags.items()}, PROMOTION: _PENDING},
            description=description, model_id=model_id,
        )
        return str(mv.version)

    def move_aliases(self, version: str, promoted: bool) -> None:
        """``challenger`` to ``version``, then ``champion`` too if it was promoted; then the
        version's ``promotion`` tag says ``done``."""
        self._call("set @challenger", self.client.set_registered_model_alias, self.name, CHALLENGER, version)
        if promoted:
            self._make_champion(version)
        self.tag_version(version, {PROMOTION: _DONE})

    def _make_champion(self, version: str) -> None:
        # The champion it replaces, recorded first: ``rollback`` goes back to it.
        current = self.version(CHAMPION)
        if current is not None and current.version != version:
            self.tag_version(version, {"previous_champion": current.version})
        self._call("set @champion", self.client.set_registered_model_alias, self.name, CHAMPION, version)

    def repair(self) -> list[str]:
        """Finish the promotion the code started and a crash interrupted, and only that.

        The newest version tagged ``promotion=pending`` gets the ``challenger`` alias (if
        the challenger is older) and, if its tags say it was promoted, ``champion`` (if the
        champion is older); then it is tagged ``done``. Older pending versions were
        overtaken by a later registration: tagged ``cancelled``, no alias moved. Aliases
        moved by hand, and versions without the tag (registered before it existed), are
        left alone. Returns what was fixed (nothing, normally); RegistryError if the
        registry cannot be read.
        """
        versions = self.versions()
        pending = [v for v in versions if v.tags.get(PROMOTION) == _PENDING]
        if not pending:
            return []
        newest, fixed = pending[-1], []
        for old in pending[:-1]:
            self.tag_version(old.version, {PROMOTION: _CANCELLED,
                                           "promotion_cancelled": f"overtaken by v{newest.version}"})
            fixed.append(f"v{old.version}'s unfinished promotion cancelled (overtaken by v{newest.version})")
        champion, challenger = self.version(CHAMPION), self.version(CHALLENGER)
        if challenger is None or int(challenger.version) < int(newest.version):
            self._call("set @challenger", self.client.set_registered_model_alias, self.name, CHALLENGER,
                       newest.version)
            fixed.append(f"challenger -> v{newest.version}")
        if newest.tags.get("promoted") == "true" and (champion is None or int(champion.version) < int(newest.version)):
            self._make_champion(newest.version)
            fixed.append(f"champion -> v{newest.version}")
        self.tag_version(newest.version, {PROMOTION: _DONE})
        for what in fixed:
            log.warning("registry repaired an interrupted promotion: %s", what)
        return fixed

    def rollback(self, version: str | None = None, reason: str = "") -> str:
        """Make ``version`` (default: the champion before the current one) the champion.

        The version is loaded first (a model that cannot be loaded is refused), then
        ``@champion`` moves, and both versions record who, when and from/to which version
        (tags ``rollback_*`` on the new champion, ``rolled_back_*`` on the old one). Any
        unfinished promotion is cancelled, so that the next run's :meth:`repair` does not
        undo the rollback; the local copy becomes the new champion's. The policy promotes
        only newly trained candidates, so the version rolled back from is not promoted
        again. Returns one line saying what was done. RegistryError when there is nothing
        to roll back to or the version does not exist.
        """
        current = self.version(CHAMPION)
        if version is None:
            if current is None:
                raise RegistryError(f"{self.name} has no champion to roll back from: name the version to serve")
            version = self._previous_champion(current)
        version = version.removeprefix("v")
        try:
            mv = self._call(f"read v{version}", self.client.get_model_version, self.name, version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"{self.name} has no version {version} in {_redacted(self.uri)}") from exc
            raise self._error(f"read {self.name} v{version}", exc) from exc
        target = self._info(mv)
        if current is not None and current.version == target.version:
            raise RegistryError(f"{self.name} v{version} is already the champion")
        bundle = self._load_bundle(target, f"v{version}")
        who, when = _operator(), datetime.now(UTC).isoformat(timespec="seconds")
        for other in self.versions():
            if other.tags.get(PROMOTION) == _PENDING:
                self.tag_version(other.version, {PROMOTION: _CANCELLED,
                                                 "promotion_cancelled": f"rollback to v{version} by {who} at {when}"})
        was = current.version if current is not None else "none"
        self.tag_version(version, {"rollback_at": when, "rollback_by": who, "rollback_from": was,
                                   "rollback_reason": reason or "-"})
        self._call("set @champion", self.client.set_registered_model_alias, self.name, CHAMPION, version)
        if current is not None:
            self.tag_version(current.version, {"rolled_back_at": when, "rolled_back_by": who,
                                               "rolled_back_to": version})
        info = self.version(CHAMPION)
        self.cache.store(CHAMPION, bundle, info if info is not None else target)
        done = (f"{self.name} @champion: {f'v{was}' if current is not None else 'none'} -> v{version} "
                f"(rollback by {who} at {when})")
        if current is not None and current.tags.get("config_hash") != target.tags.get("config_hash"):
            # The policy retrains a champion of another configuration: say so now.
            done += (f"; v{version} was trained with another model configuration than v{was}: the next "
                     f"scheduled run retrains, and may promote a model like v{was} again")
        log.warning("%s", done)
        return done

    def _previous_champion(self, current: VersionInfo) -> str:
        """The champion ``current`` replaced (its ``previous_champion`` tag), else the newest
        earlier version that was champion (promoted, or rolled back to) and was not itself
        rolled back from: a second rollback goes further back, it does not undo the first."""
        if current.tags.get("previous_champion"):
            return current.tags["previous_champion"]
        earlier = [v for v in self.versions() if int(v.version) < int(current.version)
                   and (v.tags.get("promoted") == "true" or "rollback_at" in v.tags)
                   and "rolled_back_at" not in v.tags]
        if not earlier:
            raise RegistryError(f"{self.name} v{current.version} has no earlier champion to roll back to: "
                                f"name the version to serve")
        return earlier[-1].version

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call("tag a version", self.client.set_model_version_tag, self.name, version, key, value)

    def log_live_accuracy(self, version: str, metrics: Mapping[str, float], step: int) -> bool:
        """Record the live accuracy of ``version``'s forecasts; False if already recorded.

        Each metric becomes a tag ``live_<key>`` on the version (the policy reads
        ``live_mase``) and a metric ``live_<key>`` at ``step`` in the version's training
        run, so its history shows how live error moved as actuals arrived. Non-finite
        values are left out. LookupError if the version does not exist; RegistryError if the
        registry cannot say.
        """
        try:
            mv = self._call("read a version", self.client.get_model_version, self.name, version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise self._error(f"read {self.name} v{version}", exc) from exc
            raise LookupError(f"{self.name} version {version} is not in the registry at {self.uri}") from exc
        finite = {key: float(value) for key, value in metrics.items() if math.isfinite(float(value))}
        tags = {f"live_{key}": f"{value:.6g}" for key, value in finite.items()}
        if all(mv.tags.get(key) == value for key, value in tags.items()):
            return False
        if mv.run_id:
            stamp = int(time.time() * 1000)
            self._call("log live metrics", self.client.log_batch, mv.run_id,
                       metrics=[Metric(f"live_{k}", v, stamp, step) for k, v in finite.items()])
        self.tag_version(version, tags)
        return True


class TrainingRun:
    """One MLflow run of one training: parameters, per-epoch losses, backtest, the model."""

    def __init__(self, registry: Registry, run_id: str) -> None:
        self.registry, self.run_id = registry, run_id
        self._pending: list[Metric] = []

    def log_params(self, params: Mapping[str, object]) -> None:
        items = [Param(key, str(value)) for key, value in params.items()]
        for i in range(0, len(items), 100):  # the tracking API takes at most 100 per batch
            self.registry._call("log parameters", self.registry.client.log_batch, self.run_id, params=items[i : i + 100])

    def on_epoch(self, epoch: EpochLog) -> None:
        """Training callback: per-epoch losses and learning rate, sent every few epochs.

        A batch that cannot be sent stays pending and goes with the next one: a short
        outage costs no metric and does not stop training.
        """
        stamp = int(time.time() * 1000)
        self._pending += [Metric(key, float(getattr(epoch, key)), stamp, epoch.epoch)
                          for key in ("train_loss", "val_loss", "lr")]
        if epoch.epoch % _FLUSH_EVERY == 0:
            try:
                self.flush()
            except RegistryUnavailable as exc:
                log.warning("epoch metrics kept for the next batch: %s", exc)

    def log_metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        stamp = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), stamp, step) for k, v in values.items() if math.isfinite(float(v))]

    def flush(self) -> None:
        """Send the pending metrics (at most 1,000 per request)."""
        while self._pending:
            batch = self._pending[:1000]
            self.registry._call("log metrics", self.registry.client.log_batch, self.run_id, metrics=batch)
            del self._pending[: len(batch)]

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            frame.to_csv(path, index=False)
            self.registry._call("log an artifact", self.registry.client.log_artifact, self.run_id, str(path))

    def log_figure(self, figure: Any, name: str) -> None:
        self.registry._call("log a figure", self.registry.client.log_figure, self.run_id, figure, name)

    def log_model(self, bundle: ModelBundle, example: pd.DataFrame) -> str:
        """Log the pyfunc model (from code: ``serving.py``) with the bundle as artifacts.

        Returns the logged model's id, for :meth:`Registry.register`.
        """
        self.flush()
        output = bundle.forecast(example).frame
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = bundle.save(tmp)

            def log_it() -> Any:
                with _pointed_at(self.registry.uri), mlflow.start_run(run_id=self.run_id), warnings.catch_warnings():
                    # The output's integer `step` column never holds missing values.
                    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
                    return mlflow.pyfunc.log_model(
                        name="model",
                        python_model=str(_SERVING_FILE),
                        artifacts=artifacts,
                        code_paths=[str(_PACKAGE_DIR)],
                        signature=infer_signature(example, output),
                        input_example=example,
                        pip_requirements=_pip_requirements(),
                    )

            info = self.registry._call("log the model", log_it)
        return str(info.model_id)

    def finish(self, failed: bool = False) -> None:
        try:
            self.flush()
        finally:
            self.registry._call("end the run", self.registry.client.set_terminated, self.run_id,
                                status="FAILED" if failed else "FINISHED")


def _transient(exc: BaseException) -> bool:
    """Worth retrying: network trouble, timeouts, 5xx, a busy database; not a bad request."""
    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("connection", "timeout", "timed out", "unavailable", "locked",
                                         "temporarily", "max retries", "refused", "reset by peer"))


def _operator() -> str:
    """Who acts, for the record: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _redacted(lines[0][:300] if lines else type(exc).__name__)


def _redacted(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host``."""
    import re

    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)


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


def _pip_requirements() -> list[str]:
    # Local build tags (torch "2.13.0+cpu") would pin a CPU-only wheel on a GPU host.
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in _RUNTIME_PACKAGES]
