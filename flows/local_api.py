"""Prefect's temporary local API for command-line runs, tied to the process that needs it.

With no ``PREFECT_API_URL``, a CLI run uses Prefect's ephemeral API: a ``uvicorn`` child
process that Prefect stops at interpreter exit. A CLI killed hard (SIGKILL, the OOM
killer, ``timeout -s KILL``) never reaches that exit, and the server (about 190 MB) lived
on. Two guards, Linux only (elsewhere both are no-ops):

* :func:`start_tied_server` starts the server from the main thread with
  ``PR_SET_PDEATHSIG``: the kernel sends it SIGTERM the moment the CLI process dies. It
  runs in a process group of its own, so that a Ctrl-C at the terminal reaches only the
  CLI, which then reports the interrupted run to it before stopping it.
* :func:`reap_orphans`, called by every CLI run, stops ephemeral servers that an earlier
  run left behind: processes running Prefect's ephemeral API for the same
  ``PREFECT_HOME`` whose parent is gone (re-parented to init).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["configured_api_url", "reap_orphans", "start_tied_server"]

log = logging.getLogger(__name__)

_APP = "prefect.server.api.server:create_app"
_PR_SET_PDEATHSIG = 1


def configured_api_url(environ: dict[str, str] | None = None) -> str | None:
    """The Prefect API this process would use: ``PREFECT_API_URL``, else the active
    profile's (``PREFECT_PROFILE`` or the profiles file's ``active``), else None.

    Read without importing Prefect (seconds), so that a command can decide cheaply
    whether it runs as a flow run.
    """
    import tomllib

    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return env["PREFECT_API_URL"]
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = env.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


def start_tied_server(timeout_s: float | None = None) -> Any:
    """Start Prefect's ephemeral API now, as a child that dies with this process.

    Later Prefect calls in this process find it running and use it. Returns the server.
    """
    from prefect.server.api import server as module

    class _Tied(module.SubprocessASGIServer):  # type: ignore[misc,name-defined]
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            real = subprocess.Popen

            def tied(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
                return real(*args, preexec_fn=_die_with_parent, **kwargs)

            module.subprocess.Popen = tied  # type: ignore[misc]
            try:
                return super()._run_uvicorn_command()  # type: ignore[no-any-return]
            finally:
                module.subprocess.Popen = real  # type: ignore[misc]

    server = _Tied()
    server.start(timeout=int(timeout_s) if timeout_s else None)
    return server


def reap_orphans(prefect_home: str | Path | None = None) -> list[int]:
    """Stop ephemeral Prefect API servers of ``prefect_home`` whose parent died; their PIDs."""
    if not sys.platform.startswith("linux"):
        return []
    home = str(Path(prefect_home or os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser())
    stopped = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if _APP.encode() not in cmdline:
                continue
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            environ = dict(
                item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item
            )
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        ours = environ.get(b"PREFECT__SERVER_EPHEMERAL") == b"1" and \
            str(Path(environ.get(b"PREFECT_HOME", str(Path.home() / ".prefect").encode()).decode()).expanduser()) == home
        if ours and ppid == 1:
            _stop(pid)
            stopped.append(pid)
    for pid in stopped:
        log.warning("stopped Prefect's temporary API server (pid %d) left by an earlier run that was killed", pid)
    return stopped


def _die_with_parent() -> None:
    """In the child, before exec: a process group of its own (a terminal's Ctrl-C is for
    the CLI), and SIGTERM when the parent dies (Linux ``prctl``)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(pid: int, grace_s: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or "Z" in _state(pid):
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"
