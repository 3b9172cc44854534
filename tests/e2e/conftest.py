"""Real servers and workers as subprocesses: started on 127.0.0.1, stopped by PID.

The processes are started by ``lstm_pipeline.shell.services``, the same code as ``make
services``: each runs in its own session (process group) so that stopping it also stops
what it started (a worker's flow-run processes), and its output goes to a log file that
failing tests attach to their message.

Session-wide: one PostgreSQL cluster and one S3-compatible store (moto's server). Each
test module that needs an MLflow server starts its own, on a database of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lstm_pipeline.shell import services
from lstm_pipeline.shell.services import QUIET_ENV, ObjectStore, Postgres, Service, free_port
from tests.conftest import ROOT

__all__ = [
    "QUIET_ENV",
    "PrefectServer",
    "Proc",
    "ProductionMlflow",
    "free_port",
    "prefect_bin",
    "start",
    "start_production_mlflow",
    "stop",
    "tail",
    "wait_healthy",
]

Proc = Service


def prefect_bin() -> str:
    return services._bin("prefect")


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def start(name: str, args: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> Service:
    return services.start_process(name, args, env=env, cwd=cwd, log=log)


def stop(proc: Service, grace_s: float = 30) -> None:
    services.stop(proc, grace_s)


def wait_healthy(proc: Service, url: str, timeout_s: float = 240) -> None:
    try:
        services._wait(proc, lambda: services._http_ok(f"{url}/health"), timeout_s, "healthy")
    except services.ServiceError as exc:
        raise RuntimeError(str(exc)) from exc


@dataclass
class PrefectServer:
    url: str  # the API URL, ending in /api
    home: Path
    env: dict[str, str]  # for CLI calls and workers against this server
    proc: Service
    others: list[Service] = field(default_factory=list)  # workers started against it

    def report(self) -> str:
        return "\n".join(p.report() for p in [self.proc, *self.others])

    def cli(self, *args: str, cwd: Path = ROOT, timeout: float = 300, extra_env: Mapping[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """``prefect ARGS`` against this server; fails the test with the output if it fails."""
        done = subprocess.run(
            [prefect_bin(), *args], cwd=cwd, env={**self.env, **(extra_env or {})}, capture_output=True,
            text=True, check=False, timeout=timeout,
        )
        if done.returncode != 0:
            pytest.fail(f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
                        f"{done.stderr[-4000:]}\n{self.report()}")
        return done

    def worker(self, pool: str, env: Mapping[str, str], log_dir: Path, cwd: Path = ROOT) -> Service:
        """A process worker on ``pool`` started in ``cwd`` with this server's env plus ``env``."""
        proc = start(f"worker {pool}", [prefect_bin(), "worker", "start", "--pool", pool],
                     {**self.env, **env}, cwd, log_dir / f"worker-{pool}.log")
        self.others.append(proc)
        return proc


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on 127.0.0.1 and a free port, fresh SQLite under a new PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-home")
    proc = services.start_prefect(home)
    # Nothing of the caller's Prefect, MLflow, pipeline or AWS set-up leaks into the subprocesses.
    env = services.clean_env({"PREFECT_HOME": str(home), "PREFECT_API_URL": proc.url})
    server = PrefectServer(proc.url, home, env, proc)
    try:
        yield server
    finally:
        for worker in reversed(server.others):
            stop(worker)
        stop(proc)


# --- PostgreSQL, the object store, MLflow on them -------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the session, in a folder the ``postgres`` user can reach."""
    base = Path(tempfile.mkdtemp(prefix="lstm-pipeline-pg-"))
    base.chmod(0o755)
    cluster = services.start_postgres(base)
    try:
        yield cluster
    finally:
        stop(cluster.service)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """moto's server (S3 and DynamoDB) for the session; each module uses buckets of its own."""
    store = services.start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield store
    finally:
        stop(store.service)


@dataclass
class ProductionMlflow:
    """An MLflow server on PostgreSQL with its artifacts in S3, as production runs it."""

    url: str
    database: str
    bucket: str
    postgres: Postgres
    store: ObjectStore
    log_dir: Path
    proc: Service

    def restart(self) -> None:
        """Stop the server and start it again on the same database, bucket and port."""
        stop(self.proc)
        self.proc = self._start(self.postgres, self.store, self.database, self.bucket, self.log_dir,
                                int(self.url.rsplit(":", 1)[1]))

    @staticmethod
    def _start(postgres: Postgres, store: ObjectStore, database: str, bucket: str, log_dir: Path,
               port: int | None = None) -> Service:
        return services.start_mlflow(log_dir, postgres.dsn(database), f"s3://{bucket}/mlartifacts",
                                     {**store.env(), "PGPASSFILE": str(postgres.passfile)}, port)


def start_production_mlflow(postgres: Postgres, store: ObjectStore, name: str, log_dir: Path) -> ProductionMlflow:
    """A new database and bucket called ``name``, and an MLflow server on them."""
    postgres.create_database(name)
    bucket = name.replace("_", "-")
    store.create_bucket(bucket)
    proc = ProductionMlflow._start(postgres, store, name, bucket, log_dir)
    return ProductionMlflow(proc.url, name, bucket, postgres, store, log_dir, proc)
