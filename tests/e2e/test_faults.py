"""Faults injected for real into running pipelines, each with its defined outcome.

Every fault is real: a real ``mlflow server`` killed with SIGKILL in the middle of a
training, a forecast process killed while it writes, two ``lstm-pipeline run`` processes
on one lake at once, a model artifact corrupted on disk, the registry's alias requests
refused by a relay in front of the server. The commands run as a user runs them (the
``lstm-pipeline`` console script, against a real ``prefect server``), and the lake and
registry are read back afterwards. docs/RELIABILITY.md lists each fault with its outcome.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from lstm_pipeline.config import load_config
from lstm_pipeline.lake.tables import BATCHES, FORECASTS, QUARANTINE, RUNS, SERIES, Lake
from lstm_pipeline.registry.tracking import CHAMPION, Registry
from lstm_pipeline.shell import services
from lstm_pipeline.stages.steps import FORECAST_KEYS
from tests.conftest import ROOT, trend_seasonal
from tests.e2e.conftest import PrefectServer, stop
from tests.e2e.relay import Relay

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

CLI = str(Path(sys.executable).with_name("lstm-pipeline"))
MODEL = "lstm-forecaster"
TINY = {
    "window": {"lookback": 12, "horizon": 6},
    "model": {"hidden_size": 16, "num_layers": 1},
    "train": {"max_epochs": 30, "patience": 30, "batch_size": 32, "finetune_epochs": 20, "ensemble": 1},
    "backtest": {"n_windows": 1, "statistical_baselines": False},
    # The LSTM served alone: these tests follow an LSTM champion (the combination: test_forecast_that_ships).
    "combine": {"members": ["lstm"]},
    # Faults should end in seconds, not minutes.
    "registry": {"max_wait_s": 6, "request_timeout_s": 3},
}
KEYS = {SERIES: ["unique_id", "ds"], FORECASTS: FORECAST_KEYS, BATCHES: ["content_hash"],
        QUARANTINE: ["batch_id", "row"], RUNS: ["run_id", "stage"]}


@dataclass
class World:
    tmp: Path
    prefect: PrefectServer
    lake: Path
    config: Path

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600,
            background: bool = False) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
        # One thread per process: two runs at once on two cores must not oversubscribe them.
        full = {**self.prefect.env, "LSTM_PIPELINE_LOG_FILE": str(self.tmp / "cli.log"), "OMP_NUM_THREADS": "1",
                **(env or {})}
        command = [CLI, *args, "--root", str(self.lake), "--config", str(self.config)]
        if background:
            return subprocess.Popen(command, env=full, cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        return subprocess.run(command, env=full, cwd=self.tmp, capture_output=True, text=True, check=False, timeout=timeout)

    def data(self, name: str, months: int, since: int = 0) -> Path:
        frame = trend_seasonal(n_series=6, n=months)
        frame = frame[frame.groupby("unique_id").cumcount() >= since]
        path = self.tmp / name
        frame.to_csv(path, index=False)
        return path


def make_world(tmp: Path, prefect: PrefectServer, name: str = "pipeline", **overrides: dict[str, object]) -> World:
    config = {k: {**v, **overrides.get(k, {})} for k, v in TINY.items()}
    config.update({k: v for k, v in overrides.items() if k not in config})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return World(tmp, prefect, tmp / "lake", path)


@pytest.fixture
def world(tmp_path: Path, prefect_server: PrefectServer) -> World:
    return make_world(tmp_path, prefect_server)


@dataclass
class Mlflow:
    url: str
    proc: services.Service
    backend: str
    artifacts: Path
    port: int
    log_dir: Path

    def kill(self) -> None:
        os.killpg(self.proc.popen.pid, signal.SIGKILL)
        self.proc.popen.wait()

    def restart(self) -> None:
        stop(self.proc)
        self.proc = services.start_mlflow(self.log_dir, self.backend, str(self.artifacts), {}, self.port)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[Mlflow]:
    """A real ``mlflow server`` on SQLite with local artifacts, for one test."""
    log_dir = tmp_path / "mlflow"
    log_dir.mkdir()
    port = services.free_port()
    backend, artifacts = f"sqlite:///{log_dir / 'mlflow.db'}", log_dir / "artifacts"
    proc = services.start_mlflow(log_dir, backend, str(artifacts), {}, port)
    server = Mlflow(proc.url, proc, backend, artifacts, port, log_dir)
    try:
        yield server
    finally:
        stop(server.proc)


def assert_clean_failure(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 1, one ``error:`` line naming the cause, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def no_duplicate_keys(lake: Lake) -> None:
    for table, keys in KEYS.items():
        if lake.exists(table):
            frame = lake.read(table, columns=keys)
            assert not frame.duplicated(keys).any(), f"{table} repeats a key"


def test_a_lake_no_lstm_can_beat_gets_baseline_forecasts_until_an_lstm_beats_them(world: World) -> None:
    # A learning rate of 1e-12 leaves the LSTM exactly seasonal naive, served alone: it cannot
    # beat the best forecast without it (seasonal naive, naive, AutoETS, Theta).
    frozen = make_world(world.tmp, world.prefect, "frozen", train={"lr": 1e-12, "max_epochs": 1},
                        combine={"members": ["lstm"]})
    first = frozen.cli("run", str(world.data("first.csv", 96)))
    assert first.returncode == 0, first.stderr[-3000:]
    lake = Lake(world.lake)
    forecasts = lake.read(FORECASTS)
    registry = Registry(load_config(world.config, {"lake": {"root": str(world.lake)}}).registry, str(world.lake))
    rejected = registry.versions()[-1]
    assert set(forecasts["model_name"]) == {"baseline"} and rejected.tags["promoted"] == "false"
    assert set(forecasts["model_version"]) == {rejected.tags["best_baseline"]}  # the best without the LSTM
    assert rejected.tags["best_baseline"] in {"seasonal_naive", "naive", "auto_ets", "theta"}
    assert forecasts[["yhat_lo_80", "yhat_hi_95"]].notna().all().all()  # with its conformal intervals
    assert forecasts.groupby("unique_id").size().tolist() == [6] * 6
    assert registry.version(CHAMPION) is None
    status = frozen.cli("status")
    assert "no LSTM has passed the gate yet" in status.stdout

    # The next run (a model that learns) beats the baseline and takes over.
    second = world.cli("run", str(world.data("first.csv", 96)), "--mode", "retrain")
    assert second.returncode == 0, second.stderr[-3000:]
    latest = lake.read(FORECASTS)
    newest = latest[latest["created_at"] == latest["created_at"].max()]
    assert set(newest["model_name"]) == {MODEL} and set(newest["model_version"]) == {"2"}


def test_mlflow_killed_during_training_fails_the_run_but_forecasts_from_the_champion(
    world: World, mlflow_server: Mlflow
) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url}
    first = world.cli("run", str(world.data("first.csv", 96)), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    assert client.get_model_version_by_alias(MODEL, CHAMPION).version == "1"
    runs_before = len(client.search_runs(client.get_experiment_by_name("lstm-pipeline").experiment_id))

    # Next day: new data; kill the server as soon as the new training run has started.
    proc = world.cli("run", str(world.data("second.csv", 102, since=96)), env=env, background=True)
    assert isinstance(proc, subprocess.Popen)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = client.search_runs(client.get_experiment_by_name("lstm-pipeline").experiment_id)
        if len(found) > runs_before:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    mlflow_server.kill()
    out, err = proc.communicate(timeout=600)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    assert_clean_failure(done, "train failed", "MLflow", "forecasts were written")
    lake = Lake(world.lake)
    forecasts = lake.read(FORECASTS)
    assert forecasts["cutoff"].nunique() == 2  # yesterday's vintage and today's
    newest = forecasts[forecasts["cutoff"] == forecasts["cutoff"].max()]
    assert set(newest["model_version"]) == {"1"} and len(newest) == 6 * 6  # the champion served the day
    failure = lake.read(RUNS).query("state == 'failed'")
    assert sorted(failure["stage"].tolist()) == ["forecast", "train"]  # the forecast came from the local copy

    # The server comes back: the next run trains again and decides normally.
    mlflow_server.restart()
    third = world.cli("run", env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    versions = {v.version: v for v in client.search_model_versions(f"name='{MODEL}'")}
    champion = client.get_model_version_by_alias(MODEL, CHAMPION).version
    assert versions[champion].tags["promoted"] == "true"
    # The killed training left no version behind, let alone a champion.
    assert all(v.tags.get("promoted") in ("true", "false") for v in versions.values())
    no_duplicate_keys(lake)


def test_sigkill_during_the_forecast_write_keeps_the_previous_version(world: World) -> None:
    first = world.cli("run", str(world.data("first.csv", 96)))
    assert first.returncode == 0, first.stderr[-3000:]
    lake = Lake(world.lake)
    ingested = world.cli("ingest", str(world.data("second.csv", 99, since=96)))
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    before_version, before = lake.version(FORECASTS), lake.read(FORECASTS)
    files_before = set((world.lake / FORECASTS).glob("*.parquet"))

    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys; from lstm_pipeline.config import load_config; from lstm_pipeline.stages.steps import run_forecast; "
            "run_forecast(load_config(sys.argv[1], {'lake': {'root': sys.argv[2]}}))"),
         str(world.config), str(world.lake)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300
    while not (set((world.lake / FORECASTS).glob("*.parquet")) - files_before):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    child.send_signal(signal.SIGKILL)  # the data file is there, its commit is not
    child.wait()

    assert lake.version(FORECASTS) == before_version
    pd.testing.assert_frame_equal(lake.read(FORECASTS), before)
    rerun = world.cli("forecast")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = lake.read(FORECASTS)
    assert len(after) == len(before) + 6 * 6
    no_duplicate_keys(lake)


def test_two_runs_at_once_on_one_lake_corrupt_nothing(world: World) -> None:
    source = world.data("first.csv", 96)
    procs = [world.cli("run", str(source), background=True) for _ in range(2)]
    results = []
    for proc in procs:
        assert isinstance(proc, subprocess.Popen)
        out, err = proc.communicate(timeout=900)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    for done in results:
        if done.returncode != 0:
            assert_clean_failure(done)
    assert any(done.returncode == 0 for done in results), [d.stderr[-2000:] for d in results]
    lake = Lake(world.lake)
    no_duplicate_keys(lake)
    assert len(lake.read(SERIES)) == 6 * 96
    assert len(lake.read(BATCHES)) == 1
    forecasts = lake.read(FORECASTS)
    assert forecasts.groupby(["unique_id", "model_version"]).size().eq(6).all()


def test_a_corrupted_model_artifact_is_a_clear_error_and_leaves_the_forecasts_alone(world: World) -> None:
    first = world.cli("run", str(world.data("first.csv", 96)))
    assert first.returncode == 0, first.stderr[-3000:]
    (served,) = list((world.lake / "mlartifacts").rglob("served_0.pt"))
    served.write_bytes(b"not a checkpoint any more")
    lake = Lake(world.lake)
    before = lake.version(FORECASTS)

    # The local copy of yesterday's champion is not used to hide a broken version.
    done = world.cli("forecast")

    assert_clean_failure(done, "could not be loaded")
    assert lake.version(FORECASTS) == before


def test_an_interrupted_promotion_is_finished_by_the_next_run(world: World, mlflow_server: Mlflow) -> None:
    # A relay in front of the server refuses every alias change: the version is registered
    # with its decision, then the promotion cannot complete.
    relay = Relay(mlflow_server.url, refuse=r"/registered-models/alias")
    try:
        ingested = world.cli("ingest", str(world.data("first.csv", 96)))
        assert ingested.returncode == 0, ingested.stderr[-3000:]
        done = world.cli("train", env={"MLFLOW_TRACKING_URI": relay.endpoint})
        assert_clean_failure(done, "MLflow", "set @challenger")
        assert relay.refused
    finally:
        relay.close()
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    (version,) = client.search_model_versions(f"name='{MODEL}'")
    assert version.tags["promoted"] == "true" and not version.aliases

    again = world.cli("train", env={"MLFLOW_TRACKING_URI": mlflow_server.url})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "registry repaired" in again.stdout
    assert client.get_model_version_by_alias(MODEL, CHAMPION).version == version.version
    # The repaired version covers this data: training is not repeated, nothing is skipped.
    assert "no new data since the champion" in again.stdout
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1


def test_a_killed_cli_leaves_no_local_api_server_behind(tmp_path: Path) -> None:
    env = services.clean_env({"PREFECT_HOME": str(tmp_path / "prefect"), "LSTM_PIPELINE_LOG_FILE": str(tmp_path / "l")})
    source = tmp_path / "first.csv"
    trend_seasonal(n_series=2, n=48).to_csv(source, index=False)
    # --flow-run: with no Prefect API configured, only a flow run starts the temporary API.
    proc = subprocess.Popen([CLI, "ingest", str(source), "--root", str(tmp_path / "lake"), "--flow-run"], env=env,
                            cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = _wait_for_child_server(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _gone_within(server, 15), f"ephemeral server {server} outlived the killed CLI"


def test_the_next_cli_run_stops_a_server_an_earlier_killed_run_left(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    env = services.clean_env({"PREFECT_HOME": str(home), "LSTM_PIPELINE_LOG_FILE": str(tmp_path / "l")})
    # An earlier run without the guard: Prefect's own ephemeral server, its parent killed.
    starter = subprocess.Popen(
        [sys.executable, "-c", "from prefect.server.api.server import SubprocessASGIServer as S; "
         "import time; s = S(); s.start(); print(s.server_process.pid, flush=True); time.sleep(600)"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    assert starter.stdout is not None
    orphan = int(starter.stdout.readline())
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    time.sleep(1)
    assert Path(f"/proc/{orphan}").exists(), "the orphan should still be running before the next run"

    source = tmp_path / "first.csv"
    trend_seasonal(n_series=2, n=48).to_csv(source, index=False)
    done = subprocess.run([CLI, "ingest", str(source), "--root", str(tmp_path / "lake"), "--flow-run"], env=env,
                          cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _gone_within(orphan, 10)
    assert f"pid {orphan}" in done.stderr


def _wait_for_child_server(parent: int, timeout_s: float = 300) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"prefect.server.api.server:create_app" in cmdline:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError("the CLI started no ephemeral server")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False

