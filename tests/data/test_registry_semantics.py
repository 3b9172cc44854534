"""What an operator can rely on in the registry, against a real MLflow SQLite store.

One real training registers v1 of a real model (the slow part, once); the tests then
register that same logged model again under their own model names, through
``Registry.register`` and ``Registry.move_aliases`` as training does, so each test has
a registry of its own with versions whose aliases moved, or did not, as it needs.

* only a promotion the code started and did not finish is repaired; an alias moved by
  hand stays where it was put;
* ``rollback`` moves ``@champion`` back, records who, when and why, and survives the
  next run's repair;
* only "not found" means "no champion": a registry that answers with another error, or
  not at all, raises, and the forecast stage then forecasts from the local copy (or the
  best baseline), writes the vintage, and fails saying so.
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import FORECASTS, Lake
from lstm_pipeline.stages import steps
from lstm_pipeline.registry.tracking import CHALLENGER, CHAMPION, PROMOTION, Registry, RegistryError, RegistryUnavailable, \
    TrainingRun
from tests.data.conftest import N_SERIES, Trained

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).with_name("lstm-pipeline")


def registry_named(trained: Trained, name: str, **settings: object) -> Registry:
    """A registry of its own (model ``name``, own local copy) in the trained store."""
    cfg = trained.cfg.registry.model_copy(update={"model_name": name, "cache_dir": str(trained.tmp / name),
                                                  **settings})
    return Registry(cfg, trained.cfg.lake.root)


def register(trained: Trained, registry: Registry, promoted: bool, finish: bool = True) -> str:
    """A version as training registers it; ``finish=False``: a crash before its aliases moved."""
    version = registry.register(TrainingRun(registry, trained.run_id), trained.model_id,
                                {"promoted": str(promoted).lower(), "decision": "as the test says"}, "a test version")
    if finish:
        registry.move_aliases(version, promoted)
    return version


def alias(registry: Registry, name: str) -> str | None:
    info = registry.version(name)
    return info.version if info else None


def tags(registry: Registry, version: str) -> dict[str, str]:
    return dict(registry.client.get_model_version(registry.name, version).tags)


# --- repair: only what the code started ------------------------------------------------


def test_an_alias_moved_by_hand_is_left_where_it_was_put(trained: Trained) -> None:
    registry = registry_named(trained, "by-hand")
    register(trained, registry, promoted=True)
    register(trained, registry, promoted=True)
    assert alias(registry, CHAMPION) == "2" and tags(registry, "2")[PROMOTION] == "done"
    # The operator moves @champion back in the MLflow UI (the same API call).
    registry.client.set_registered_model_alias(registry.name, CHAMPION, "1")

    assert registry.repair() == []
    assert alias(registry, CHAMPION) == "1"


def test_repair_finishes_only_the_promotion_a_crash_interrupted(trained: Trained) -> None:
    registry = registry_named(trained, "interrupted")
    register(trained, registry, promoted=True)
    register(trained, registry, promoted=True, finish=False)  # registered, then the process died
    assert tags(registry, "2")[PROMOTION] == "pending" and alias(registry, CHAMPION) == "1"

    assert registry.repair() == ["challenger -> v2", "champion -> v2"]
    assert (alias(registry, CHAMPION), alias(registry, CHALLENGER)) == ("2", "2")
    assert tags(registry, "2")[PROMOTION] == "done" and tags(registry, "2")["previous_champion"] == "1"
    assert registry.repair() == []

    # Two crashed registrations: the older was overtaken; only the newer is finished.
    register(trained, registry, promoted=True, finish=False)
    register(trained, registry, promoted=False, finish=False)
    assert registry.repair() == ["v3's unfinished promotion cancelled (overtaken by v4)", "challenger -> v4"]
    assert tags(registry, "3")[PROMOTION] == "cancelled" and tags(registry, "4")[PROMOTION] == "done"
    assert (alias(registry, CHAMPION), alias(registry, CHALLENGER)) == ("2", "4")


# --- rollback -----------------------------------------------------------------------


def test_rollback_goes_back_to_the_previous_champion_records_it_and_survives_repair(trained: Trained) -> None:
    registry = registry_named(trained, "rollback")
    register(trained, registry, promoted=True)
    register(trained, registry, promoted=True)
    register(trained, registry, promoted=True, finish=False)  # an unfinished promotion of v3
    assert registry.repair() == ["challenger -> v3", "champion -> v3"]
    assert tags(registry, "3")["previous_champion"] == "2"
    register(trained, registry, promoted=True, finish=False)  # and v4 crashed before its aliases

    done = registry.rollback(reason="v3 forecasts negative sales")

    assert done.startswith(f"{registry.name} @champion: v3 -> v2 (rollback by ")
    assert alias(registry, CHAMPION) == "2"
    new, old = tags(registry, "2"), tags(registry, "3")
    assert (new["rollback_from"], new["rollback_reason"]) == ("3", "v3 forecasts negative sales")
    assert "@" in new["rollback_by"] and new["rollback_at"] == old["rolled_back_at"]
    assert old["rolled_back_to"] == "2" and old["rolled_back_by"] == new["rollback_by"]
    # v4's promotion was cancelled by the rollback: the next run's repair keeps v2.
    assert tags(registry, "4")[PROMOTION] == "cancelled"
    assert "rollback to v2" in tags(registry, "4")["promotion_cancelled"]
    assert registry.repair() == []
    assert alias(registry, CHAMPION) == "2"
    # The local copy is the rolled-back-to version's, whole: an outage now serves v2.
    copy = registry.local_copy(CHAMPION)
    assert copy is not None and copy.info.version == "2" and copy.source == "cache"

    # Once more: back to v1 (v2's previous champion), or to a named version.
    registry.rollback()
    assert alias(registry, CHAMPION) == "1"
    registry.rollback("v3")
    assert alias(registry, CHAMPION) == "3"


def test_rollback_refuses_what_it_cannot_do_with_one_line(trained: Trained) -> None:
    registry = registry_named(trained, "refused")
    with pytest.raises(RegistryError, match="^refused has no champion to roll back from: name the version to serve$"):
        registry.rollback()
    register(trained, registry, promoted=True)
    with pytest.raises(RegistryError, match="^refused v1 has no earlier champion to roll back to"):
        registry.rollback()
    with pytest.raises(RegistryError, match="^refused has no version 7 in sqlite:"):
        registry.rollback("7")
    with pytest.raises(RegistryError, match="^refused v1 is already the champion$"):
        registry.rollback("1")
    assert alias(registry, CHAMPION) == "1"


def test_the_rollback_command_moves_the_champion_and_the_next_training_keeps_it(trained: Trained) -> None:
    registry = Registry(trained.cfg.registry, trained.cfg.lake.root)  # the model the pipeline trains
    register(trained, registry, promoted=True)  # v2 (the same weights as v1, but a champion of its own)
    assert alias(registry, CHAMPION) == "2"
    env = {**os.environ, "LSTM_PIPELINE_REGISTRY__CACHE_DIR": trained.cfg.registry.cache_dir or "",
           "LSTM_PIPELINE_LOG_FILE": str(trained.tmp / "cli.log")}
    done = subprocess.run([str(CLI), "rollback", "--root", trained.cfg.lake.root, "--reason", "bad month"],
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lstm-forecaster @champion: v2 -> v1 (rollback by " in done.stdout
    # v2 carries no configuration hash (registered by hand here): the operator is warned.
    assert "v1 was trained with another model configuration than v2: the next scheduled run retrains" in done.stdout
    assert alias(registry, CHAMPION) == "1" and tags(registry, "1")["rollback_reason"] == "bad month"

    again = subprocess.run([str(CLI), "rollback", "--root", trained.cfg.lake.root], capture_output=True, text=True,
                           env=env, check=False, timeout=300)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith(
        "error: lstm-forecaster v1 has no earlier champion to roll back to: name the version to serve")
    assert "Traceback" not in again.stderr

    # The next scheduled training: no new data, so nothing is trained, repaired or promoted.
    outcome = steps.run_training(trained.cfg)
    assert outcome.repaired == () and outcome.version is None, outcome.summary()
    assert alias(registry, CHAMPION) == "1"


# --- only "not found" is "no champion" ---------------------------------------------------


@pytest.fixture
def other_service(tmp_path: Path) -> Iterator[str]:
    """A real web server that is not MLflow (a tracking URI pointing at the wrong service)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_only_not_found_means_no_champion(trained: Trained, other_service: str) -> None:
    never = registry_named(trained, "never-registered")
    assert never.version(CHAMPION) is None and never.load(CHAMPION) is None
    no_alias = registry_named(trained, "no-alias")
    register(trained, no_alias, promoted=False)
    assert (no_alias.version(CHAMPION), alias(no_alias, CHALLENGER)) == (None, "1")

    wrong = registry_named(trained, "lstm-forecaster", tracking_uri=other_service)
    with pytest.raises(RegistryError, match=r"could not resolve lstm-forecaster@champion: ENDPOINT_NOT_FOUND") as err:
        wrong.version(CHAMPION)
    assert not isinstance(err.value, RegistryUnavailable) and "\n" not in str(err.value)

    down = registry_named(trained, "lstm-forecaster", tracking_uri=closed_port(), max_wait_s=1.0)
    with pytest.raises(RegistryUnavailable, match="unavailable: could not read lstm-forecaster"):
        down.load(CHAMPION)


# --- the forecast stage when the registry cannot be read --------------------------------


def _forecast_config(trained: Trained, tmp: Path, **registry: object) -> PipelineConfig:
    """The trained lake and store, with a registry setting changed."""
    cfg = trained.cfg
    return cfg.model_copy(update={"registry": cfg.registry.model_copy(update=registry)})


def _new_month(trained: Trained, month: str) -> None:
    """One more month of actuals, so the next forecast is a new vintage (a new cutoff)."""
    path = trained.tmp / f"{month}.csv"
    data = trained.data
    data[pd.to_datetime(data["ds"]) == month].to_csv(path, index=False)
    steps.run_ingest(trained.cfg, [str(path)])


def test_a_registry_error_forecasts_from_the_local_copy_then_fails_the_stage(
    trained: Trained, other_service: str, tmp_path: Path
) -> None:
    steps.run_forecast(trained.cfg)  # a normal forecast: it keeps the champion's local copy
    champion = alias(Registry(trained.cfg.registry, trained.cfg.lake.root), CHAMPION)
    _new_month(trained, "2018-01-01")
    wrong = _forecast_config(trained, tmp_path, tracking_uri=other_service)

    with pytest.raises(steps.ForecastFromFallback) as err:
        steps.run_forecast(wrong)

    message = str(err.value)
    assert "\n" not in message and "could not resolve lstm-forecaster@champion: ENDPOINT_NOT_FOUND" in message
    assert message.endswith(f"forecasts were written from the local copy of v{champion} "
                            f"(forecasts table v{err.value.outcome.table_version})")
    assert (err.value.outcome.source, err.value.outcome.model_version) == ("cache", champion)
    forecasts = Lake(trained.cfg.lake.root).read(FORECASTS)
    newest = forecasts[forecasts["cutoff"] == pd.Timestamp("2018-01-01")]
    assert len(newest) == N_SERIES * 12 and set(newest["model_version"]) == {champion}
    assert "from the local copy (the registry could not be read)" in err.value.outcome.summary()
    # A flow run keeps a failed task's exception pickled: it comes back whole.
    again = pickle.loads(pickle.dumps(err.value))
    assert (str(again), again.outcome) == (message, err.value.outcome)


def test_an_outage_without_a_whole_local_copy_forecasts_the_baseline_then_fails_the_stage(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A local copy with a member missing: not whole, so not used; the baseline serves.
    copies = tmp_path / "copies"
    registry = registry_named(trained, "lstm-forecaster", cache_dir=str(copies))
    assert registry.load(CHAMPION) is not None
    (next((copies / CHAMPION / "bundle").glob("served_*.pt"))).unlink()
    _new_month(trained, "2018-02-01")
    down = _forecast_config(trained, tmp_path, tracking_uri=closed_port(), max_wait_s=1.0, cache_dir=str(copies))

    with caplog.at_level(logging.WARNING), pytest.raises(steps.ForecastFromFallback) as err:
        steps.run_forecast(down)

    outcome = err.value.outcome
    assert (outcome.source, outcome.model_name, outcome.model_version) == ("baseline", "baseline", "seasonal_naive")
    assert "unavailable" in str(err.value)
    assert str(err.value).endswith(f"forecasts were written from the baseline seasonal_naive "
                                   f"(forecasts table v{outcome.table_version})")
    not_used = [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]
    assert len(not_used) == 1 and "served_0.pt is missing" in not_used[0]
    forecasts = Lake(trained.cfg.lake.root).read(FORECASTS)
    newest = forecasts[forecasts["cutoff"] == pd.Timestamp("2018-02-01")]
    assert len(newest) == N_SERIES * 12 and set(newest["model_name"]) == {"baseline"}
    assert "baseline seasonal_naive (the registry could not be read)" in outcome.summary()


def test_a_run_whose_registry_cannot_be_read_ends_failed_and_status_says_why(
    trained: Trained, other_service: str
) -> None:
    _new_month(trained, "2018-03-01")
    root = trained.cfg.lake.root
    env = {**os.environ, "LSTM_PIPELINE_LOG_FILE": str(trained.tmp / "cli.log"),
           "LSTM_PIPELINE_REGISTRY__CACHE_DIR": trained.cfg.registry.cache_dir or ""}
    done = subprocess.run([str(CLI), "run", "--root", root], capture_output=True, text=True, check=False, timeout=600,
                          env={**env, "LSTM_PIPELINE_REGISTRY__TRACKING_URI": other_service})

    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = [s for s in done.stderr.splitlines() if s.startswith("error:")]
    assert "forecast failed: MLflow at " in line and "could not resolve lstm-forecaster@champion" in line
    assert "forecasts were written from the local copy of v" in line
    forecasts = Lake(root).read(FORECASTS)
    assert len(forecasts[forecasts["cutoff"] == pd.Timestamp("2018-03-01")]) == N_SERIES * 12

    status = subprocess.run([str(CLI), "status", "--root", root], capture_output=True, text=True, check=False,
                            timeout=300, env=env)
    assert status.returncode == 0, status.stderr[-3000:]
    (last,) = [s for s in status.stdout.splitlines() if s.startswith("last failure")]
    assert "forecast" in last and "ENDPOINT_NOT_FOUND" in last and "written from the local copy" in last
