"""Real servers and workers as subprocesses: started on 127.0.0.1, stopped by PID.

Each process runs in its own session (process group) so that stopping it also stops what
it started (a worker's flow-run processes); its output goes to a log file that failing
tests attach to their message.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Quiet and offline, whatever the calling environment says.
QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GIT_PYTHON_REFRESH": "quiet",
}


def prefect_bin() -> str:
    """The ``prefect`` console script of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "prefect"
    return str(candidate if candidate.exists() else "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


@dataclass
class Proc:
    """A started subprocess with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def report(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"--- {self.name} (pid {self.popen.pid}, {state}), last lines of {self.log} ---\n{tail(self.log)}"


def start(name: str, args: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> Proc:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True,
        )
    return Proc(name, popen, log)


def stop(proc: Proc, grace_s: float = 30) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace_s``."""
    if proc.popen.poll() is None:
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever the group still holds (flow-run processes of a worker)
        os.killpg(proc.popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.popen.wait()


@dataclass
class PrefectServer:
    url: str  # the API URL, ending in /api
    home: Path
    env: dict[str, str]  # for CLI calls and workers against this server
    proc: Proc
    others: list[Proc] = field(default_factory=list)  # workers started against it

    def report(self) -> str:
        return "\n".join(p.report() for p in [self.proc, *self.others])

    def cli(self, *args: str, cwd: Path = ROOT, timeout: float = 300, extra_env: Mapping[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """``prefect ARGS`` against this server; fails the test with the output if it fails."""
        done = subprocess.run(
            [prefect_bin(), *args], cwd=cwd, env={**self.env, **(extra_env or {})}, capture_output=True,
            text=True, timeout=timeout,
        )
        if done.returncode != 0:
            pytest.fail(f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
                        f"{done.stderr[-4000:]}\n{self.report()}")
        return done

    def worker(self, pool: str, env: Mapping[str, str], log_dir: Path) -> Proc:
        proc = start(f"worker {pool}", [prefect_bin(), "worker", "start", "--pool", pool],
                     {**self.env, **env}, ROOT, log_dir / f"worker-{pool}.log")
        self.others.append(proc)
        return proc


def wait_healthy(proc: Proc, url: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited before it was healthy\n{proc.report()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{proc.name} not healthy after {timeout_s}s\n{proc.report()}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on 127.0.0.1 and a free port, fresh SQLite under a new PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    # Nothing of the caller's Prefect or MLflow set-up leaks into the subprocesses.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "LSTM_PIPELINE_"))}
    env = {
        **base, **QUIET_ENV,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    proc = start("prefect server", [prefect_bin(), "server", "start"], env, home, home / "server.log")
    server = PrefectServer(url, home, env, proc)
    try:
        wait_healthy(proc, url)
        yield server
    finally:
        for worker in reversed(server.others):
            stop(worker)
        stop(proc)
