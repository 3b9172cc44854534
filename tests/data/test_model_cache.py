"""The champion's local copy is whole or not used (``versions.ModelCache``).

A real model (the trained fixture's champion, loaded from the real MLflow store) is kept
as a local copy; then the copy is damaged on disk in each way a crash, a full disk or a
hand can damage it, and loading it must refuse it with one log line naming the damage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from lstm_pipeline.registry.bundle import ModelBundle
from lstm_pipeline.registry.tracking import CHAMPION, Registry
from lstm_pipeline.registry.versions import Loaded, ModelCache
from tests.data.conftest import Trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(trained: Trained) -> Loaded:
    loaded = Registry(trained.cfg.registry, trained.cfg.lake.root).load(CHAMPION)
    assert loaded is not None
    return loaded


def test_a_copy_lists_every_file_the_bundle_wrote_and_loads_whole(champion: Loaded, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "copies")
    cache.store(CHAMPION, champion.bundle, champion.info)

    written = champion.bundle.save(tmp_path / "reference")  # what the bundle writes, whatever it is
    manifest = json.loads((tmp_path / "copies" / CHAMPION / "manifest.json").read_text())
    assert set(manifest["files"]) == {Path(p).relative_to(tmp_path / "reference").as_posix() for p in written.values()}
    for name, entry in manifest["files"].items():
        assert entry["size"] == (tmp_path / "copies" / CHAMPION / "bundle" / name).stat().st_size
        assert len(entry["sha256"]) == 64
    assert manifest["members"] == {"served": len(champion.bundle.served),
                                   "evaluation": len(champion.bundle.evaluation)}
    assert manifest["info"]["version"] == champion.info.version
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == [CHAMPION]  # no staging left behind

    copy = cache.load(CHAMPION)
    assert copy is not None and copy.source == "cache" and copy.info.version == champion.info.version
    assert len(copy.bundle.served) == len(champion.bundle.served)
    assert len(copy.bundle.evaluation) == len(champion.bundle.evaluation)
    assert dict(copy.bundle.quantiles) == dict(champion.bundle.quantiles)


def _first(pattern: str) -> Callable[[Path], Path]:
    return lambda bundle: sorted(bundle.glob(pattern))[0]


def _truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"{path.name} differs from the manifest"


def _flip(path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    return f"{path.name} differs from the manifest"


DAMAGE: dict[str, Callable[[Path], str]] = {
    "a served member missing": lambda b: (_first("served_*.pt")(b).unlink(), "served_0.pt is missing")[1],
    "an evaluation member missing": lambda b: (_first("evaluation_*.pt")(b).unlink(), "evaluation_0.pt is missing")[1],
    "the intervals missing": lambda b: ((b / "intervals.json").unlink(), "intervals.json is missing")[1],
    "a member truncated": lambda b: _truncate(_first("served_*.pt")(b)),
    "a member altered, same size": lambda b: _flip(_first("served_*.pt")(b)),
    "an extra member added": lambda b: ((b / "served_9.pt").write_bytes(_first("served_*.pt")(b).read_bytes()),
                                        "served_9.pt is not in the manifest")[1],
    "the manifest missing": lambda b: ((b.parent / "manifest.json").unlink(), "no readable manifest.json")[1],
    "the manifest garbled": lambda b: ((b.parent / "manifest.json").write_text("{not json"),
                                       "no readable manifest.json")[1],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_copy_is_not_used_and_one_line_says_why(
    damage: str, champion: Loaded, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ModelCache(tmp_path / "copies")
    cache.store(CHAMPION, champion.bundle, champion.info)
    why = DAMAGE[damage](tmp_path / "copies" / CHAMPION / "bundle")

    with caplog.at_level(logging.WARNING, logger="lstm_pipeline.registry.versions"):
        assert cache.load(CHAMPION) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"the local copy in {tmp_path / 'copies' / CHAMPION} is not used: {why}")
    assert "\n" not in line

    # The next load from the registry replaces the damaged copy with a whole one.
    cache.store(CHAMPION, champion.bundle, champion.info)
    assert cache.load(CHAMPION) is not None


def test_a_copy_whose_members_do_not_match_the_manifest_is_not_used(
    champion: Loaded, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Files and checksums agree, but the manifest promised another ensemble: an edited
    # manifest, or a bundle format that loads fewer members than it wrote.
    cache = ModelCache(tmp_path / "copies")
    cache.store(CHAMPION, champion.bundle, champion.info)
    path = tmp_path / "copies" / CHAMPION / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["members"]["served"] += 1
    path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline.registry.versions"):
        assert cache.load(CHAMPION) is None
    assert "is not used: members" in caplog.records[0].getMessage()


def test_no_copy_is_none_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert ModelCache(tmp_path / "nothing").load(CHAMPION) is None
    assert not caplog.records


def test_the_bundle_round_trips_through_its_folder(champion: Loaded, tmp_path: Path) -> None:
    # What the copy relies on: the files save writes are the bundle from_folder reads.
    champion.bundle.save(tmp_path / "b")
    again = ModelBundle.from_folder(tmp_path / "b")
    assert (len(again.served), len(again.evaluation)) == (len(champion.bundle.served), len(champion.bundle.evaluation))
