"""Real services past one machine, run locally on 127.0.0.1: PostgreSQL, an S3-compatible
object store (moto's server: S3 and DynamoDB on one port), an MLflow tracking server on
the two, and a Prefect server.

The end-to-end tests start them through these functions, and so does ``make services``
(``python -m lstm_pipeline.shell.services start|stop|env --dir .services``). Each process runs
in a session of its own with its output in a log file, and is stopped by PID: its stop
signal (SIGTERM; SIGINT for PostgreSQL, its fast shutdown), then SIGKILL of its process
group. Every start waits for the service to answer, with a time limit and an error that
ends with the log's last lines.

The database password never appears on a command line, in a log or in MLflow: the role
is created from a SCRAM verifier computed here (the server never sees the password), and
the MLflow server reads the password from a private passfile (``PGPASSFILE``), so its
backend URI carries none.

Importing this module has no side effects and imports only the standard library.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import hashlib
import hmac
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HOST",
    "QUIET_ENV",
    "ObjectStore",
    "Postgres",
    "Service",
    "ServiceError",
    "Stack",
    "clean_env",
    "free_port",
    "main",
    "read_stack",
    "start_mlflow",
    "start_moto",
    "start_postgres",
    "start_prefect",
    "start_process",
    "start_stack",
    "stop",
    "stop_stack",
]

HOST = "127.0.0.1"
# Quiet and offline, whatever the calling environment says.
QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GIT_PYTHON_REFRESH": "quiet",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# moto accepts any credentials; these only have to be present.
_S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables of the caller that must not leak into a service started here.
_FOREIGN_PREFIXES = ("PREFECT_", "MLFLOW_", "LSTM_PIPELINE_", "AWS_", "PG")
_PG_SUPERUSER = "postgres"
_STATE = "state.json"


class ServiceError(RuntimeError):
    """A service did not start or stop; the message ends with its log's last lines."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Prefect, MLflow, pipeline, AWS or PG settings,
    plus the quiet settings and ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES)}
    return {**base, **QUIET_ENV, **(extra or {})}


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} cannot be read)"


# --- processes ---------------------------------------------------------------------


@dataclass
class Service:
    """A started process: its PID (also its process group), log, address and argv."""

    name: str
    pid: int
    log: Path
    url: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    popen: subprocess.Popen[bytes] | None = None  # set only in the process that started it

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _same_process(self.pid, self.argv)

    def report(self) -> str:
        state = "running" if self.alive() else "not running"
        return f"--- {self.name} (pid {self.pid}, {state}), last lines of {self.log} ---\n{_tail(self.log)}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "log": str(self.log), "url": self.url, "argv": self.argv,
                "stop_signal": int(self.stop_signal)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Service:
        argv = data["argv"]
        assert isinstance(argv, list)
        return cls(str(data["name"]), int(str(data["pid"])), Path(str(data["log"])), str(data["url"]),
                   [str(a) for a in argv], int(str(data["stop_signal"])))


def _same_process(pid: int, argv: Sequence[str]) -> bool:
    """Whether ``pid`` runs and is still the process started with ``argv`` (not a reused PID)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # exited, not yet reaped
    running, started = raw.split(b"\0"), [a.encode() for a in argv]
    # A console script shows up behind its interpreter: python /venv/bin/prefect server start.
    return running[: len(started)] == started or running[1: len(started) + 1] == started


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    url: str = "",
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Service:
    """Start ``argv`` in a new session, output to ``log``; as ``user`` if given (root only)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd,
            start_new_session=True, user=user, group=user,
        )
    return Service(name, popen.pid, log, url, list(argv), stop_signal, popen)


def stop(service: Service, grace_s: float = 30) -> None:
    """Stop signal to the process group, SIGKILL to the group after ``grace_s``.

    A service recorded by another process is signalled only while its PID still runs
    the recorded command line, so a PID the system has since reused is left alone.
    """
    if service.popen is None and not service.alive():
        return
    try:
        os.killpg(service.pid, service.stop_signal)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while service.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:  # the process after the grace period, and what its group still holds
        os.killpg(service.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if service.popen is not None:
        service.popen.wait()


@contextlib.contextmanager
def _stop_on_error(service: Service) -> Iterator[Service]:
    """Stop ``service`` if the block fails: a start-up is all or nothing."""
    try:
        yield service
    except BaseException:
        stop(service)
        raise


def _wait(service: Service, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{service.name} exited before {what}\n{service.report()}")
        if ready():
            return
        time.sleep(0.25)
    raise ServiceError(f"{service.name}: not {what} after {timeout_s:.0f}s\n{service.report()}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _bin(name: str) -> str:
    """A console script of the interpreter running this module (its venv), else PATH's."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


# --- PostgreSQL --------------------------------------------------------------------


@dataclass
class Postgres:
    """A running cluster; ``role`` logs in over TCP with the password in ``passfile``."""

    service: Service
    port: int
    data_dir: Path
    socket_dir: Path
    role: str
    passfile: Path
    bin_dir: Path

    def dsn(self, database: str) -> str:
        """The URI of ``database`` as ``role``; it holds no password (libpq reads ``passfile``)."""
        return f"postgresql://{self.role}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` owned by ``role`` unless it exists; its URI."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.psql(f"SELECT 'CREATE DATABASE {name} OWNER {self.role}' "
                  f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')\\gexec\n")
        return self.dsn(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` (given on stdin, never on the command line) as the superuser; its
        output unaligned, without headers."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", _PG_SUPERUSER, "-d", database, "-f", "-"],
            input=sql, capture_output=True, text=True, check=False, timeout=60, env=clean_env(),
        )
        if done.returncode != 0:
            raise ServiceError(f"psql exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout


def postgres_bin_dir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``$PG_BIN``, PATH, or Debian's newest."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if debian:
        return Path(debian[-1]).parent
    raise ServiceError("PostgreSQL is not installed (no initdb): apt-get install postgresql, or set PG_BIN")


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677).

    ``ALTER ROLE ... PASSWORD '<verifier>'`` sets the password without sending it.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def start_postgres(
    base: Path, port: int | None = None, role: str = "mlflow", timeout_s: float = 120
) -> Postgres:
    """A cluster under ``base`` (made on first use, reused after), listening on 127.0.0.1.

    Run as root, ``initdb`` and ``postgres`` run as the ``postgres`` user, who must be
    able to reach ``base``. Each start gives ``role`` a new random password, written
    only to ``base/pgpass`` (mode 0600). The superuser is reachable only through the
    Unix socket in a private folder.
    """
    base = base.absolute()
    bin_dir = postgres_bin_dir()
    user = _PG_SUPERUSER if os.geteuid() == 0 else None
    base.mkdir(parents=True, exist_ok=True)
    data_dir, socket_dir = base / "data", base / "socket"
    for folder in (data_dir, socket_dir):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o700)
        if user is not None:
            shutil.chown(folder, user, user)
    if user is not None and subprocess.run(["test", "-w", str(data_dir)], user=user, check=False).returncode != 0:
        raise ServiceError(f"PostgreSQL runs as the '{user}' user, who cannot reach {data_dir}: "
                           "use a folder that user can traverse (e.g. under /tmp)")
    log = base / "postgres.log"
    if not (data_dir / "PG_VERSION").exists():
        done = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", _PG_SUPERUSER, "-E", "UTF8", "--no-locale",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
            capture_output=True, text=True, user=user, group=user, cwd=data_dir, env=clean_env(), check=False, timeout=120,
        )
        log.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise ServiceError(f"initdb exited {done.returncode}\n{_tail(log)}")
    port = port or free_port()
    argv = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(socket_dir),
            "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "password_encryption=scram-sha-256"]
    service = start_process("postgres", argv, env=clean_env(), cwd=data_dir, log=log,
                            url=f"postgresql://{HOST}:{port}", user=user, stop_signal=signal.SIGINT)

    def ready() -> bool:
        probe = [str(bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-t", "2"]
        return subprocess.run(probe, env=clean_env(), check=False, timeout=10).returncode == 0

    with _stop_on_error(service):
        _wait(service, ready, timeout_s, "accepting connections")
        password = secrets.token_urlsafe(24)
        passfile = base / "pgpass"
        passfile.touch(mode=0o600)
        passfile.chmod(0o600)
        passfile.write_text(f"{HOST}:{port}:*:{role}:{password}\n")
        cluster = Postgres(service, port, data_dir, socket_dir, role, passfile, bin_dir)
        cluster.psql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} LOGIN; END IF; END $$;\n"
            f"ALTER ROLE {role} PASSWORD '{scram_verifier(password)}';\n"
        )
    return cluster


# --- S3-compatible object store (moto) ---------------------------------------------


@dataclass
class ObjectStore:
    """moto's server: S3 and DynamoDB at ``endpoint``."""

    service: Service
    endpoint: str

    def env(self) -> dict[str, str]:
        """What clients of this store need: boto3, MLflow, pyarrow and delta-rs read these."""
        return {
            **_S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it exists already
                raise ServiceError(f"cannot create bucket {name}: HTTP {exc.code}\n{self.service.report()}") from exc


def start_moto(log_dir: Path, port: int | None = None, buckets: Sequence[str] = (), timeout_s: float = 60) -> ObjectStore:
    port = port or free_port()
    endpoint = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    service = start_process("moto", argv, env=clean_env(_S3_CREDENTIALS), cwd=log_dir, log=log_dir / "moto.log",
                            url=endpoint)
    with _stop_on_error(service):
        _wait(service, lambda: _http_ok(f"{endpoint}/moto-api/"), timeout_s, "answering")
        store = ObjectStore(service, endpoint)
        for bucket in buckets:
            store.create_bucket(bucket)
    return store


# --- MLflow and Prefect servers ----------------------------------------------------


def start_mlflow(
    log_dir: Path,
    backend_store_uri: str,
    artifacts_destination: str,
    env: Mapping[str, str],
    port: int | None = None,
    timeout_s: float = 300,
) -> Service:
    """``mlflow server`` with proxied artifacts: clients need only its URL, not the store's.

    ``env`` carries what the server itself needs (``PGPASSFILE``, the object store's
    ``AWS_*``). One worker and no job runner: 22 s and 500 MB instead of 74 s and 3 GB.
    A new database is migrated on the first start; later starts find it current.
    """
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "1",
            "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination]
    full_env = clean_env({**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    service = start_process("mlflow server", argv, env=full_env, cwd=log_dir, log=log_dir / "mlflow.log", url=url)
    with _stop_on_error(service):
        _wait(service, lambda: _http_ok(f"{url}/health"), timeout_s, "healthy")
    return service


def start_prefect(home: Path, port: int | None = None, ui: bool = False, timeout_s: float = 300) -> Service:
    """``prefect server start`` on SQLite under ``home``; the service's url is the API URL."""
    port = port or free_port()
    url = f"http://{HOST}:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    # The address goes through settings: with --port the UI keeps calling :4200.
    env = clean_env({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": str(ui).lower(),
        "PREFECT_SERVER_UI_ENABLED": str(ui).lower(),
    })
    service = start_process("prefect server", [_bin("prefect"), "server", "start"], env=env, cwd=home,
                            log=home / "server.log", url=url)
    with _stop_on_error(service):
        _wait(service, lambda: _http_ok(f"{url}/health"), timeout_s, "healthy")
    return service


# --- the whole stack (make services) -----------------------------------------------


@dataclass
class Stack:
    """The four services of one folder, and the environment their clients need."""

    directory: Path
    services: list[Service]  # in start order: postgres, moto, mlflow server, prefect server
    env: dict[str, str]

    def by_name(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)


_BUCKET = "lstm-pipeline"


def start_stack(directory: Path, ports: Mapping[str, int | None] | None = None, ui: bool = True) -> Stack:
    """PostgreSQL, moto, an MLflow server (database ``mlflow``, artifacts in
    ``s3://lstm-pipeline/mlartifacts``) and a Prefect server, state and logs in ``directory``.

    Writes ``state.json`` (PIDs) and ``env`` (the clients' variables, no password) there.
    moto keeps its objects in memory, so each start is a fresh lake and registry: the
    previous cluster's data is removed.
    """
    directory = directory.absolute()
    ports = dict(ports or {})
    if read_stack(directory) is not None:
        raise ServiceError(f"services of {directory} are running: stop them first (make services-stop)")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # the postgres user must reach postgres/ inside it
    for stale in ("postgres", "prefect"):
        shutil.rmtree(directory / stale, ignore_errors=True)
    started: list[Service] = []
    try:
        cluster = start_postgres(directory / "postgres", ports.get("postgres"))
        started.append(cluster.service)
        store = start_moto(directory, ports.get("s3"), buckets=[_BUCKET])
        started.append(store.service)
        mlflow = start_mlflow(directory, cluster.create_database("mlflow"), f"s3://{_BUCKET}/mlartifacts",
                              {**store.env(), "PGPASSFILE": str(cluster.passfile)}, ports.get("mlflow"))
        started.append(mlflow)
        prefect = start_prefect(directory / "prefect", ports.get("prefect"), ui=ui)
        started.append(prefect)
    except BaseException:
        for service in reversed(started):
            stop(service)
        raise
    env = {
        "PREFECT_API_URL": prefect.url,
        "MLFLOW_TRACKING_URI": mlflow.url,
        "LSTM_PIPELINE_LAKE__ROOT": f"s3://{_BUCKET}/lake",
        **store.env(),
        **{k: v for k, v in QUIET_ENV.items() if k != "GIT_PYTHON_REFRESH"},
    }
    stack = Stack(directory, started, env)
    (directory / _STATE).write_text(json.dumps({"services": [s.to_json() for s in started], "env": env}, indent=2))
    (directory / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return stack


def read_stack(directory: Path) -> Stack | None:
    """The stack recorded in ``directory`` if any of its processes still runs."""
    state = directory.absolute() / _STATE
    if not state.exists():
        return None
    data = json.loads(state.read_text())
    services = [Service.from_json(s) for s in data["services"]]
    if not any(s.alive() for s in services):
        return None
    return Stack(directory.absolute(), services, dict(data["env"]))


def stop_stack(directory: Path) -> list[str]:
    """Stop the services recorded in ``directory`` (newest first); the names stopped."""
    stack = read_stack(directory)
    stopped: list[str] = []
    if stack is not None:
        for service in reversed(stack.services):
            if service.alive():
                stop(service)
                stopped.append(f"{service.name} (pid {service.pid})")
    (directory.absolute() / _STATE).unlink(missing_ok=True)
    return stopped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_pipeline.shell.services", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "env"])
    parser.add_argument("--dir", type=Path, default=Path(".services"), help="state, logs and data (default .services)")
    for name in ("postgres", "s3", "mlflow", "prefect"):
        parser.add_argument(f"--{name}-port", type=int, default=None, help=f"{name} port (default: a free one)")
    args = parser.parse_args(argv)
    if args.command == "stop":
        stopped = stop_stack(args.dir)
        print("stopped: " + ", ".join(stopped) if stopped else f"no services running from {args.dir}")
        return 0
    if args.command == "start":
        ports = {name: getattr(args, f"{name}_port") for name in ("postgres", "s3", "mlflow", "prefect")}
        try:
            stack = start_stack(args.dir, ports)
        except ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for service in stack.services:
            print(f"{service.name:<15} pid {service.pid:<7} {service.url}   log {service.log}")
    stack_now = read_stack(args.dir)
    if stack_now is None:
        print(f"no services running from {args.dir} (start them: make services)", file=sys.stderr)
        return 1
    print(f"\n# the clients' environment (also in {stack_now.directory / 'env'}):")
    print("".join(f"export {k}={shlex.quote(v)}\n" for k, v in stack_now.env.items()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
