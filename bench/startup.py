"""Prefect's share of ``lstm-pipeline run`` on the bundled sample: as a flow run on the
temporary local API (``--flow-run``, what every command did before) against the
in-process path (the default with no Prefect API configured).

    .venv/bin/python bench/startup.py            # about 3-4 minutes on 2 cores

Each measured run is a process of its own running the command line's ``run --sample
--root <fresh lake>`` with the four stage functions (ingest, monitor, training, forecast)
timed. Its wall time counts from the process's start to its end. What lies outside the
stages is the command's overhead: for the flow run, Prefect's import, the temporary
API's start and stop, flow and task runs and artifacts; for the in-process path, the
same command without Prefect (configuration, the ``runs`` record). Prefect's share is
the flow run's extra overhead over the in-process path's, out of the flow run's wall
time; after, it is what the in-process path spends on Prefect: nothing if it never
imports it. A first flow run on a fresh ``PREFECT_HOME`` (creating the API's database)
is made and not counted, as on any machine after its first run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = {  # module, function: what each stage spends in the library
    "ingest": ("lstm_pipeline.stages.steps", "run_ingest"),
    "monitor": ("lstm_pipeline.stages.monitor", "run_monitor"),
    "train": ("lstm_pipeline.stages.training", "run_training"),
    "forecast": ("lstm_pipeline.stages.steps", "run_forecast"),
}


def child(flow_run: bool, lake: str) -> None:
    """One run in this process; prints the stage times and whether Prefect was imported."""
    import importlib

    spent: dict[str, float] = {}
    for stage, (module_name, name) in STAGES.items():
        module = importlib.import_module(module_name)
        real = getattr(module, name)

        def timed(*args: object, _real=real, _stage=stage, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                spent[_stage] = spent.get(_stage, 0.0) + time.perf_counter() - t0

        setattr(module, name, timed)
        if module_name == "lstm_pipeline.stages.training":  # steps re-exports it
            importlib.import_module("lstm_pipeline.stages.steps").run_training = timed  # type: ignore[attr-defined]
    from lstm_pipeline.shell import cli

    try:  # outside standalone mode, click returns the exit code of a typer.Exit
        returned = cli.app(["run", "--sample", "--root", lake, *(["--flow-run"] if flow_run else [])],
                           standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    print(json.dumps({"stages": spent, "code": code, "prefect_imported": "prefect" in sys.modules}))


def measure(flow_run: bool, env: dict[str, str], scratch: Path) -> dict[str, object]:
    lake = tempfile.mkdtemp(prefix="lake-", dir=scratch)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", "flow" if flow_run else "local", lake], env=env,
                          cwd=scratch, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
    try:
        facts = json.loads(last)
    except json.JSONDecodeError:
        facts = {}
    if done.returncode != 0 or facts.get("code", 1) != 0:
        raise SystemExit(f"the run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    stages = sum(facts["stages"].values())
    return {"wall": wall, "stages": stages, "outside": wall - stages, "prefect_imported": facts["prefect_imported"]}


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LSTM_PIPELINE_", "MLFLOW_"))}
    env.update({"PREFECT_HOME": str(scratch / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "LSTM_PIPELINE_LOG_FILE": str(scratch / "cli.log"), "PYTHONPATH": str(ROOT)})
    measure(True, env, scratch)  # creates the temporary API's database; not counted
    before = measure(True, env, scratch)
    after = measure(False, env, scratch)
    prefect_before = before["outside"] - after["outside"]  # type: ignore[operator]
    prefect_after = after["outside"] if after["prefect_imported"] else 0.0
    print(f"lstm-pipeline run --sample (bundled sample, defaults), {os.cpu_count()} cores")
    print(f"{'':34}{'flow run (before)':>20}{'in process (after)':>20}")
    for label, key in (("wall time, s", "wall"), ("in the four stages, s", "stages"),
                       ("outside the stages, s", "outside")):
        print(f"{label:34}{before[key]:>20.1f}{after[key]:>20.1f}")
    print(f"{'Prefect imported':34}{str(before['prefect_imported']):>20}{str(after['prefect_imported']):>20}")
    print(f"{'Prefect, s':34}{prefect_before:>20.1f}{prefect_after:>20.1f}")
    print(f"{'Prefect share of wall time':34}{prefect_before / before['wall']:>20.1%}"  # type: ignore[operator]
          f"{prefect_after / after['wall']:>20.1%}")  # type: ignore[operator]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2] == "flow", sys.argv[3])
    else:
        main()
