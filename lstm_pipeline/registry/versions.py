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

from lstm_pipeline.config import RegistryConfig
from lstm_pipeline.registry.bundle import ModelBundle
from lstm_pipeline.registry.facts import ChampionFacts

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
            compared_with_champion=not self.tags.get("champion_compared", "none").startswith("none"),
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
    """Local copies of loaded model versions, one folder per alias: whole, or not used.

    A copy is ``<alias>/bundle/`` (whatever :meth:`ModelBundle.save` writes) plus
    ``<alias>/manifest.json``: the version's facts, every file under ``bundle/`` with its
    size and sha256, and the number of served and evaluation members. It is written in a
    staging folder, every file and folder fsynced, then renamed into place, so a crash
    leaves the old copy or the new one. :meth:`load` checks the copy against its manifest
    (no file missing, added, truncated or altered; the members all there) and refuses it,
    with one log line, otherwise: a partial model is never served.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def store(self, alias: str, bundle: ModelBundle, info: VersionInfo) -> None:
        target = self.folder / alias
        try:
            if self._manifest(target).get("info", {}).get("version") == info.version and self._check(target) is None:
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=self.folder))
            bundle.save(staging / _BUNDLE)
            manifest = {"info": info.to_dict(), "files": _files(staging / _BUNDLE), "members": _members(bundle)}
            (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            _fsync_tree(staging)
            old = self.folder / f".{alias}-old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(staging, target)
            _fsync(self.folder)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:  # a cache that cannot be written must not stop a forecast
            log.warning("could not keep a local copy of %s v%s in %s: %s", info.name, info.version, target, exc)

    def load(self, alias: str) -> Loaded | None:
        """The copy, or None: absent, or failing its manifest (one warning line says why)."""
        target = self.folder / alias
        if not target.exists():
            return None
        problem = self._check(target)
        if problem is None:
            manifest = self._manifest(target)
            try:
                bundle = ModelBundle.from_folder(target / _BUNDLE)
                found = _members(bundle)
                if found != manifest["members"]:
                    problem = f"members {found} where the manifest lists {manifest['members']}"
                else:
                    return Loaded(bundle, VersionInfo.from_dict(manifest["info"]), "cache")
            except Exception as exc:  # noqa: BLE001 - any failure to load means: not used
                problem = f"it does not load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("the local copy in %s is not used: %s", target, problem)
        return None

    def _manifest(self, target: Path) -> dict[str, Any]:
        try:
            found = json.loads((target / _MANIFEST).read_text())
            return found if isinstance(found, dict) else {}
        except (OSError, ValueError):
            return {}

    def _check(self, target: Path) -> str | None:
        """Why the copy in ``target`` is not whole, or None if its files match the manifest."""
        manifest = self._manifest(target)
        if not {"info", "files", "members"} <= set(manifest):
            return f"no readable {_MANIFEST} (a copy written before manifests, or a damaged one)"
        try:
            files = _files(target / _BUNDLE)
        except OSError as exc:
            return f"its files cannot be read: {exc}"
        expected: dict[str, Any] = manifest["files"]
        for name in sorted(set(expected) | set(files)):
            if name not in files:
                return f"{name} is missing"
            if name not in expected:
                return f"{name} is not in the manifest"
            if files[name] != expected[name]:
                return (f"{name} differs from the manifest (size {files[name]['size']}, "
                        f"expected {expected[name]['size']}; or its sha256)")
        return None


_BUNDLE, _MANIFEST = "bundle", "manifest.json"


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (relative path -> size and sha256), whatever wrote it."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        found[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return found


def _members(bundle: ModelBundle) -> dict[str, int]:
    return {"served": len(bundle.served), "evaluation": len(bundle.evaluation)}


def _fsync_tree(folder: Path) -> None:
    """fsync every file, then every folder (deepest first), so the rename publishes data
    that is on disk, not in the page cache."""
    paths = sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for path in [p for p in paths if p.is_file()] + [p for p in paths if p.is_dir()] + [folder]:
        _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_dir(cfg: RegistryConfig, lake_root: str, uri: str) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    key = hashlib.sha256(f"{uri}|{cfg.model_name}".encode()).hexdigest()[:12]
    if "://" not in lake_root:
        return Path(lake_root).resolve() / "_models" / key
    return Path.home() / ".cache" / "lstm-pipeline" / key


