"""What the registry hands out: a version's facts, a fully loaded model, its local copy.

No mlflow here: the local copy of the champion (:class:`ModelCache`) is what forecasting
falls back on when MLflow cannot be reached, so it must load without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lstm_pipeline.bundle import ModelBundle
from lstm_pipeline.config import RegistryConfig
from lstm_pipeline.policy import ChampionFacts

__all__ = ["Loaded", "ModelCache", "VersionInfo", "cache_dir"]

log = logging.getLogger(__name__)


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
        retrained = self.tags.get("retrained_at")
        return ChampionFacts(
            version=self.version,
            trained_at=datetime.fromisoformat(retrained) if retrained else self.created,
            data_version=int(self.tags.get("data_version", -1)),
            config_hash=self.tags.get("config_hash", ""),
            backtest_mase=float(self.tags.get("backtest_mase", "nan")),
            live_mase=float(self.tags["live_mase"]) if "live_mase" in self.tags else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "tags": dict(self.tags),
                "description": self.description, "created": self.created.isoformat()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VersionInfo:
        return cls(d["name"], d["version"], d["run_id"], dict(d["tags"]), d["description"],
                   datetime.fromisoformat(d["created"]))


@dataclass(frozen=True)
class Loaded:
    """A fully loaded model version; ``source`` is ``registry`` or ``cache`` (MLflow was down)."""

    bundle: ModelBundle
    info: VersionInfo
    source: str = "registry"


class ModelCache:
    """Local copies of loaded model versions, one folder per alias, replaced atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def store(self, alias: str, bundle: ModelBundle, info: VersionInfo) -> None:
        target = self.folder / alias
        try:
            if (target / "version.json").exists() and \
                    json.loads((target / "version.json").read_text())["version"] == info.version:
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=self.folder))
            bundle.save(staging / "bundle")
            (staging / "version.json").write_text(json.dumps(info.to_dict()))
            old = self.folder / f".{alias}-old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:  # a cache that cannot be written must not stop a forecast
            log.warning("could not keep a local copy of %s v%s in %s: %s", info.name, info.version, target, exc)

    def load(self, alias: str) -> Loaded | None:
        target = self.folder / alias
        try:
            info = VersionInfo.from_dict(json.loads((target / "version.json").read_text()))
            return Loaded(ModelBundle.from_folder(target / "bundle"), info, "cache")
        except (OSError, ValueError, KeyError):
            return None


def cache_dir(cfg: RegistryConfig, lake_root: str, uri: str) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    key = hashlib.sha256(f"{uri}|{cfg.model_name}".encode()).hexdigest()[:12]
    if "://" not in lake_root:
        return Path(lake_root).resolve() / "_models" / key
    return Path.home() / ".cache" / "lstm-pipeline" / key


