"""Ctrl-C and SIGTERM stop a real ``lstm-pipeline`` process within its work.

Each test starts the console script in a session of its own, waits in its log file for
a moment of the work (ingest reading files, an epoch, the model being logged just
before registration), sends a real signal, and then reads what is left: the exit code,
the model versions and aliases in the real MLflow SQLite store, the lake's ``runs``
table, ``status``, and the processes still alive in the command's session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lstm_pipeline.lake.tables import RUNS, SERIES, Lake
from lstm_pipeline.shell import services
from tests.conftest import trend_seasonal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("lstm-pipeline"))
# Small and LSTM-only; training long enough to be interrupted (no early stop).
SMALL = {
    "LSTM_PIPELINE_TRAIN__ENSEMBLE": "1",
    "LSTM_PIPELINE_COMBINE__MEMBERS": "lstm",
    "LSTM_PIPELINE_BACKTEST__STATISTICAL_BASELINES": "false",
    "LSTM_PIPELINE_TRAIN__MAX_EPOCHS": "400",
    "LSTM_PIPELINE_TRAIN__PATIENCE": "400",
}
EPOCH_LINE = "lstm_pipeline.model.train: epoch "
# MLflow validates the model's input example while logging it, right before registration.
LOGGING_MODEL = "Validating input example"


class Cli:
    """One ``lstm-pipeline`` process in its own session, its log file, its environment."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str], ignore_sigint: bool = False) -> None:
        self.log = tmp / f"cli-{time.monotonic_ns()}.log"
        full = {**services.clean_env(), "PREFECT_HOME": str(tmp / "prefect"), "LSTM_PIPELINE_LOG_FILE": str(self.log),
                **SMALL, **env}

        def child() -> None:
            if ignore_sigint:  # as a background job of a script starts: SIGINT ignored
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.proc = subprocess.Popen([CLI, *args], env=full, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True, preexec_fn=child)

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                pytest.fail(f"exited {self.proc.returncode} before {text!r}:\n{out[-2000:]}\n{err[-3000:]}")
            time.sleep(0.05)
        self.proc.kill()
        pytest.fail(f"no {text!r} in the log within {timeout_s} s")

    def signal(self, signum: int, group: bool = False) -> float:
        """Send ``signum`` (to the whole session's group, as a terminal's Ctrl-C does); the time sent, in ms."""
        sent = time.time() * 1000
        os.killpg(self.proc.pid, signum) if group else os.kill(self.proc.pid, signum)
        return sent

    def finish(self, timeout_s: float = 120) -> tuple[int, str, str]:
        """Exit code, stdout, stderr; a process that does not stop is killed and fails the test."""
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"still running {timeout_s} s after the signal")
        return self.proc.returncode, out, err


def session_processes(pid: int) -> list[str]:
    """Processes left in the command's session, or Prefect API servers it started elsewhere."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[0] != "Z" and (int(stat[3]) == pid or int(stat[1]) == pid or int(stat[2]) == pid):
            left.append(f"{entry.name}: {cmdline}")
    return left


def pending_promotions(lake: Path) -> list[str]:
    """Versions whose promotion was started and not finished (the next run would finish it)."""
    from mlflow import MlflowClient

    db = lake / "mlflow.db"
    versions = MlflowClient(f"sqlite:///{db}", f"sqlite:///{db}").search_model_versions("name = 'lstm-forecaster'") if db.exists() else []
    return [v.version for v in versions if v.tags.get("promotion") == "pending"]


def registry_state(lake: Path) -> tuple[list[int], dict[str, str], list[str]]:
    """Model versions' creation times (ms), aliases, and the training runs' MLflow statuses."""
    from mlflow import MlflowClient

    db = lake / "mlflow.db"
    if not db.exists():
        return [], {}, []
    client = MlflowClient(f"sqlite:///{db}", f"sqlite:///{db}")
    versions = client.search_model_versions("name = 'lstm-forecaster'")
    aliases: dict[str, str] = {}
    for v in versions:
        for alias in v.aliases:
            aliases[alias] = v.version
    experiment = client.get_experiment_by_name("lstm-pipeline")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [v.creation_timestamp for v in versions], aliases, [r.info.status for r in runs]


def runs_rows(lake: Path) -> list[tuple[str, str, str]]:
    table = Lake(lake).read(RUNS)
    return list(table.sort_values("finished_at")[["stage", "state", "message"]].itertuples(index=False, name=None))


def status_text(tmp: Path, lake: Path) -> str:
    done = subprocess.run([CLI, "status", "--root", str(lake)], env=services.clean_env(), cwd=tmp,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def panel(tmp_path: Path) -> Path:
    path = tmp_path / "panel.csv"
    trend_seasonal(n_series=8, n=96).to_csv(path, index=False)
    return path


@pytest.fixture
def ingested(tmp_path: Path, panel: Path) -> Callable[[], Path]:
    def make() -> Path:
        lake = tmp_path / "lake"
        done = subprocess.run([CLI, "ingest", str(panel), "--root", str(lake)], env=services.clean_env(),
                              cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return lake
    return make


def test_sigint_during_ingest_stops_the_run_and_lands_a_whole_batch_or_nothing(tmp_path: Path) -> None:
    files = []
    for k in range(12):
        path = tmp_path / "drop" / f"part-{k:02d}.csv"
        path.parent.mkdir(exist_ok=True)
        trend_seasonal(n_series=300, n=120, seed=k).assign(unique_id=lambda f, k=k: f"p{k}-" + f["unique_id"]) \
            .to_csv(path, index=False)
        files.append(str(path))
    lake = tmp_path / "lake"
    cli = Cli(tmp_path, "run", *files, "--root", str(lake), env={})
    cli.wait_for(": read ")
    cli.signal(signal.SIGINT)
    code, out, err = cli.finish()

    assert code == 130, err[-3000:]
    assert "run: ingest interrupted by SIGINT" in err and "Traceback" not in err
    assert runs_rows(lake)[-1][:2] == ("ingest", "interrupted")
    series = Lake(lake)
    # One atomic commit: nothing landed, or every row of the batch did.
    assert series.version(SERIES) is None or len(series.read(SERIES)) == 12 * 300 * 120
    assert registry_state(lake) == ([], {}, [])
    assert session_processes(cli.proc.pid) == []


def test_sigint_during_training_registers_nothing_even_when_started_with_sigint_ignored(
    tmp_path: Path, ingested: Callable[[], Path]
) -> None:
    lake = ingested()
    cli = Cli(tmp_path, "run", "--root", str(lake), env={}, ignore_sigint=True)
    cli.wait_for(EPOCH_LINE)
    cli.signal(signal.SIGINT)
    code, out, err = cli.finish()

    assert code == 130, err[-3000:]
    assert "interrupted by SIGINT" in err and "Traceback" not in err
    versions, aliases, mlflow_runs = registry_state(lake)
    assert versions == [] and aliases == {}
    assert mlflow_runs == ["FAILED"]  # the training's MLflow run is closed as failed
    # The stages so far, and the one the signal stopped; no forecast after it.
    assert [row[:2] for row in runs_rows(lake)] == [("ingest", "skipped"), ("monitor", "completed"),
                                                     ("train", "interrupted")]
    shown = status_text(tmp_path, lake)
    assert "last failure: train interrupted in run local-" in shown and "interrupted by SIGINT" in shown
    assert session_processes(cli.proc.pid) == []


def test_sigterm_during_training_exits_143_and_records_it(tmp_path: Path, ingested: Callable[[], Path]) -> None:
    lake = ingested()
    cli = Cli(tmp_path, "train", "--mode", "retrain", "--root", str(lake), env={})
    cli.wait_for(EPOCH_LINE)
    cli.signal(signal.SIGTERM)
    code, out, err = cli.finish()

    assert code == 143, err[-3000:]
    assert "train interrupted by SIGTERM" in err
    assert registry_state(lake)[:2] == ([], {})
    assert runs_rows(lake)[-1][:2] == ("train", "interrupted") and "SIGTERM" in runs_rows(lake)[-1][2]
    assert session_processes(cli.proc.pid) == []


def test_sigint_while_the_model_is_logged_registers_and_promotes_nothing_after_it(
    tmp_path: Path, ingested: Callable[[], Path]
) -> None:
    lake = ingested()
    first = Cli(tmp_path, "train", "--mode", "retrain", "--root", str(lake),
                env={"LSTM_PIPELINE_TRAIN__MAX_EPOCHS": "3"})
    code, _, err = first.finish(timeout_s=600)
    assert code == 0, err[-3000:]
    before_versions, before_aliases, _ = registry_state(lake)

    cli = Cli(tmp_path, "train", "--mode", "retrain", "--root", str(lake), env={"LSTM_PIPELINE_TRAIN__MAX_EPOCHS": "3"})
    cli.wait_for(LOGGING_MODEL)
    sent = cli.signal(signal.SIGINT)
    code, out, err = cli.finish()

    assert code == 130, err[-3000:]
    versions, aliases, _ = registry_state(lake)
    assert [t for t in versions if t > sent] == []  # no version born after the signal
    assert aliases == before_aliases and len(versions) <= len(before_versions) + 1
    # A version the signal caught between registration and its aliases is not left for the
    # next run's repair to promote.
    assert pending_promotions(lake) == []
    assert runs_rows(lake)[-1][:2] == ("train", "interrupted")
    assert session_processes(cli.proc.pid) == []


def test_ctrl_c_to_a_flow_run_on_the_temporary_api_stops_it_and_leaves_no_server(
    tmp_path: Path, ingested: Callable[[], Path]
) -> None:
    lake = ingested()
    cli = Cli(tmp_path, "run", "--flow-run", "--root", str(lake), env={})
    cli.wait_for(EPOCH_LINE, timeout_s=600)
    cli.signal(signal.SIGINT, group=True)  # what a terminal's Ctrl-C sends
    code, out, err = cli.finish()

    assert code == 130, err[-3000:]
    assert registry_state(lake)[:2] == ([], {})
    assert runs_rows(lake)[-1][:2] == ("train", "interrupted")
    assert session_processes(cli.proc.pid) == []
    servers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _serves_prefect_home(p, tmp_path / "prefect")]
    assert servers == []


def _serves_prefect_home(proc: Path, home: Path) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes()
        environ = (proc / "environ").read_bytes()
    except OSError:
        return False
    return b"prefect.server.api.server:create_app" in cmdline and f"PREFECT_HOME={home}".encode() in environ


def test_a_version_registered_but_not_promoted_before_the_signal_is_not_promoted_later(tmp_path: Path) -> None:
    """The window between a version's registration and its alias moves, set up directly:
    the interrupted command cancels its pending promotion; an older pending one (a crash
    before this command) is left to the repair."""
    from datetime import UTC, datetime

    from mlflow import MlflowClient

    from lstm_pipeline.config import load_config
    from lstm_pipeline.shell import interrupts

    lake = tmp_path / "lake"
    lake.mkdir()
    uri = f"sqlite:///{lake / 'mlflow.db'}"
    # The store named outright: an MLFLOW_TRACKING_URI another test left in this process must not count.
    cfg = load_config(overrides={"lake": {"root": str(lake)}, "registry": {"tracking_uri": uri}}, environ={})
    client = MlflowClient(uri, uri)  # the registry too: the process-wide default may name another store
    client.create_registered_model("lstm-forecaster")
    source = tmp_path / "model"
    source.mkdir()
    older = client.create_model_version("lstm-forecaster", str(source), tags={"promotion": "pending"})
    time.sleep(2.5)
    started = datetime.now(UTC)
    mine = client.create_model_version("lstm-forecaster", str(source),
                                       tags={"promotion": "pending", "promoted": "true"})

    assert interrupts.cancel_unfinished_promotions(cfg, started, "interrupted by SIGINT") == [str(mine.version)]
    assert client.get_model_version("lstm-forecaster", mine.version).tags["promotion"] == "cancelled"
    assert client.get_model_version("lstm-forecaster", older.version).tags["promotion"] == "pending"
