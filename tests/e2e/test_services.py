"""``make services`` / ``make services-stop``: the user command that starts the four
services past one machine on 127.0.0.1, prints their clients' environment and stops
them by PID (``python -m lstm_pipeline.shell.services``, what the Makefile runs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from lstm_pipeline.lake.tables import Lake
from lstm_pipeline.shell.services import clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMMAND = [sys.executable, "-m", "lstm_pipeline.shell.services"]


def services(*args: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args, "--dir", str(directory)], capture_output=True, text=True,
                          env=clean_env(), check=False, timeout=600)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (exited ones awaiting their reaper
    do not count: they were reparented when ``start`` exited)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


@pytest.fixture
def directory() -> Iterator[Path]:
    """A folder the ``postgres`` user can reach (pytest's own temporary folders are private)."""
    base = Path(tempfile.mkdtemp(prefix="lstm-pipeline-services-"))
    base.chmod(0o755)
    try:
        yield base / ".services"
    finally:
        services("stop", directory=base / ".services")
        shutil.rmtree(base, ignore_errors=True)


def test_start_prints_the_environment_and_stop_ends_every_process(directory: Path) -> None:
    started = services("start", directory=directory)
    assert started.returncode == 0, started.stdout + started.stderr
    env = dict(line.removeprefix("export ").split("=", 1) for line in (directory / "env").read_text().splitlines())
    assert {"PREFECT_API_URL", "MLFLOW_TRACKING_URI", "LSTM_PIPELINE_LAKE__ROOT", "AWS_ENDPOINT_URL"} <= set(env)
    assert all(f"export {k}=" in started.stdout for k in env)
    assert env["LSTM_PIPELINE_LAKE__ROOT"] == "s3://lstm-pipeline/lake"
    pids = {s["name"]: s["pid"] for s in json.loads((directory / "state.json").read_text())["services"]}
    assert set(pids) == {"postgres", "moto", "mlflow server", "prefect server"}

    # Each answers at its address, and the lake works on the store.
    for url in (f"{env['MLFLOW_TRACKING_URI']}/health", f"{env['PREFECT_API_URL']}/health"):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    options = {k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                   "AWS_REGION")}
    lake = Lake(env["LSTM_PIPELINE_LAKE__ROOT"], options)
    assert lake.append("probe", pd.DataFrame({"x": [1.0]})).version == 0 and lake.read("probe")["x"].tolist() == [1.0]

    # The password is only in the private passfile.
    passfile = directory / "postgres" / "pgpass"
    password = passfile.read_text().strip().rsplit(":", 1)[1]
    assert passfile.stat().st_mode & 0o077 == 0
    assert password not in started.stdout + (directory / "env").read_text() + (directory / "state.json").read_text()
    assert password not in (directory / "mlflow.log").read_text()

    again = services("start", directory=directory)
    assert again.returncode == 1 and "are running" in again.stderr

    stopped = services("stop", directory=directory)
    assert stopped.returncode == 0, stopped.stderr
    assert all(name in stopped.stdout for name in pids)
    assert [name for name, pid in pids.items() if group_alive(pid)] == []
    assert "no services running" in services("stop", directory=directory).stdout
