"""lstm-pipeline: run the forecasting pipeline from a shell.

Each command first reads and checks what it was given (the files, the configuration,
the lake root) and reports a problem in one line before any work starts. With no Prefect
API configured (PREFECT_API_URL, or the active Prefect profile's), the work then runs in
this process; with one, or with --flow-run, each command is a Prefect flow run (with
--flow-run and no API, on a temporary local API that stops with the command).

Expected failures (a bad file, a missing column, no data, MLflow or the Prefect API out
of reach, an invalid setting) print one line naming the cause and exit 1; their
tracebacks go to the log file, or to the terminal with --verbose (accepted anywhere on
the command line). Anything else is a bug and shows its traceback.

Ctrl-C (SIGINT) or SIGTERM stops a command within seconds: nothing is registered or
promoted after the signal, the run is recorded as interrupted in the lake's runs table
(see status), and the exit code is 130 (143 for SIGTERM).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from typer.core import TyperGroup

from lstm_pipeline.config import LakeConfig, PipelineConfig, load_config
from lstm_pipeline.errors import Interrupted, PipelineError

__all__ = ["app"]

VERBOSE_FLAGS = ("--verbose", "-v")


class _Group(TyperGroup):
    """Accepts ``--verbose`` anywhere: before or after the command name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in VERBOSE_FLAGS]
        rest = [a for a in args[:end] if a not in VERBOSE_FLAGS] + args[end:]
        return super().parse_args(ctx, flags[:1] + rest)


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None,
                  pretty_exceptions_enable=False)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "monthly_sample.csv"
LANDING_ENV = "LSTM_PIPELINE_LANDING"
LOG_FILE = Path(os.environ.get("LSTM_PIPELINE_LOG_FILE", "~/.cache/lstm-pipeline/lstm-pipeline.log")).expanduser()
# Quiet, offline defaults for Prefect and MLflow; an explicit environment wins.
_OFFLINE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "lstm_pipeline",
    "GIT_PYTHON_REFRESH": "quiet",
    # MLflow's loggers go through ours (a file, and the console's filter), and no tqdm bars.
    "MLFLOW_CONFIGURE_LOGGING": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_state = {"verbose": False}


class Mode(str, Enum):
    auto = "auto"
    retrain = "retrain"
    finetune = "finetune"


Root = Annotated[str | None, typer.Option("--root", metavar="DIR", help="Lake root (folder or URI). Default: data/lake.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", metavar="FILE", exists=True, dir_okay=False, help="YAML config file.")
]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="auto (the policy decides), retrain or finetune.")]
FlowRun = Annotated[bool, typer.Option(
    "--flow-run", help="Run as a Prefect flow run even with no Prefect API configured (on a temporary local API).")]
# Described in each command's help: typer's Arguments panel would only add "<list[str]>".
Sources = Annotated[list[str] | None, typer.Argument(metavar="SOURCE", show_default=False, hidden=True)]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show log lines, Prefect's state lines and the tracebacks of expected failures.")] = False,
) -> None:
    _state["verbose"] = verbose


@app.command(short_help="Ingest, monitor, train by policy, forecast.")
def run(
    sources: Sources = None,
    root: Root = None,
    config: ConfigFile = None,
    mode: ModeOpt = Mode.auto,
    sample: Annotated[bool, typer.Option("--sample", help="Also ingest the bundled demo data.")] = False,
    flow_run: FlowRun = False,
) -> None:
    """Ingest -> monitor -> train (by policy) -> forecast.

    SOURCE: CSV or Parquet files, folders or globs. With none, the default lake
    (data/lake) gets the bundled demo data; any other lake gets the landing folder in
    LSTM_PIPELINE_LANDING if it is set, else nothing new.
    """
    cfg = _config(root, config, create_root=True)
    chosen = _run_sources(cfg, sources or [], sample)
    _make_root(cfg)
    with _interruptible(cfg, stage=None):  # the stages record an interruption themselves
        if _on_prefect(flow_run):
            results, failure = _pipeline_flow(cfg, chosen, mode)
        else:
            from lstm_pipeline.shell import local_run

            results, report = local_run.pipeline(cfg, chosen, mode.value)
            failure = report.message() if report.failed else None
    for stage in ("ingest", "monitor", "train", "forecast"):
        result = results.get(stage)
        if isinstance(result, dict) and result.get("summary") and (stage != "monitor" or result.get("realised")):
            typer.echo(result["summary"])
    if failure:
        _fail(failure)
    typer.echo("pipeline finished: every stage completed")
    _next_steps(cfg)


@app.command(short_help="Add files to the lake.")
def ingest(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE", show_default=False, hidden=True)],
    root: Root = None,
    config: ConfigFile = None,
    id_col: Annotated[str | None, typer.Option(metavar="NAME", help="Column holding the series id.")] = None,
    time_col: Annotated[str | None, typer.Option(metavar="NAME", help="Column holding the timestamp.")] = None,
    target_col: Annotated[str | None, typer.Option(metavar="NAME", help="Column holding the value to forecast.")] = None,
    delimiter: Annotated[str | None, typer.Option(metavar="CHAR", help="CSV delimiter.")] = None,
    freq: Annotated[str | None, typer.Option(
        metavar="ALIAS", help="pandas frequency (MS, D, h); inferred on the first ingest.")] = None,
    flow_run: FlowRun = False,
) -> None:
    """Add files to the lake (idempotent: the same bytes twice change nothing).

    SOURCE: CSV (.csv, .csv.gz) or Parquet files, folders or globs.
    """
    cfg = _config(root, config, create_root=True, id_col=id_col, time_col=time_col, target_col=target_col,
                  csv_delimiter=delimiter, freq=freq)
    _check_sources(sources)
    _make_root(cfg)

    def flow() -> Any:
        from flows.ingest import ingest_flow

        return ingest_flow(sources, config=cfg, return_state=True)

    from lstm_pipeline.shell import local_run

    result = _work(cfg, "ingest", lambda: local_run.ingest(cfg, sources), flow, flow_run)
    typer.echo(result["summary"])


@app.command(short_help="Retrain, fine-tune or skip; register and gate.")
def train(root: Root = None, config: ConfigFile = None, mode: ModeOpt = Mode.auto, flow_run: FlowRun = False) -> None:
    """Retrain or fine-tune (or skip, by policy): evaluate, refit, register and gate."""
    cfg = _config(root, config)

    def flow() -> Any:
        from flows.train import train_flow

        return train_flow(mode.value, config=cfg, return_state=True)

    from lstm_pipeline.shell import local_run

    with _training_progress(cfg, flow_run):
        result = _work(cfg, "train", lambda: local_run.train(cfg, mode.value), flow, flow_run)
    typer.echo(result["summary"])


@app.command(short_help="Forecast every current series.")
def forecast(root: Root = None, config: ConfigFile = None, flow_run: FlowRun = False) -> None:
    """Forecast every current series with the champion (or the best baseline) into the forecasts table."""
    cfg = _config(root, config)

    def flow() -> Any:
        from flows.forecast import forecast_flow

        return forecast_flow(config=cfg, return_state=True)

    from lstm_pipeline.shell import local_run

    result = _work(cfg, "forecast", lambda: local_run.forecast(cfg), flow, flow_run)
    typer.echo(result["summary"])


@app.command(short_help="Score stored forecasts against new actuals.")
def monitor(root: Root = None, config: ConfigFile = None, flow_run: FlowRun = False) -> None:
    """Score stored forecasts against actuals that arrived since; record live error per version."""
    cfg = _config(root, config)

    def flow() -> Any:
        from flows.monitor import monitor_flow

        return monitor_flow(config=cfg, return_state=True)

    from lstm_pipeline.shell import local_run

    result = _work(cfg, "monitor", lambda: local_run.monitor(cfg), flow, flow_run)
    typer.echo(result["summary"])


@app.command(short_help="What the lake, the registry and the forecasts hold.")
def status(root: Root = None, config: ConfigFile = None) -> None:
    """Print the lake's tables, the models serving, the latest forecasts, live accuracy, the last failure."""
    cfg = _config(root, config)
    _prepare(flows=False)
    from lstm_pipeline.stages.status import render_status

    try:  # only reads: no flow run
        text = render_status(cfg)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)
    typer.echo(text)


@app.command(short_help="Serve an earlier model version: move @champion back.")
def rollback(
    version: Annotated[str | None, typer.Argument(help="The version to serve. Default: the champion before the current one.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded on the version.")] = "",
    root: Root = None,
    config: ConfigFile = None,
) -> None:
    """Move @champion to VERSION (default: the previous champion), recording who, when and why.

    The version is loaded first; unfinished promotions are cancelled, so the next run keeps
    this champion. A newly trained candidate still replaces it if it beats it.
    """
    cfg = _config(root, config)
    _prepare(flows=False)
    from lstm_pipeline.registry.tracking import Registry

    try:  # the registry only: no flow run
        done = Registry(cfg.registry, cfg.lake.root).rollback(version, reason=reason)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)
    typer.echo(done)


@app.command(short_help="Draw the latest forecasts into one PNG.")
def plot(
    series: Annotated[list[str] | None, typer.Option(
        "--series", metavar="ID",
        help="A series to draw; repeat for more. Default: the worst live error, the largest and a random one.",
    )] = None,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", dir_okay=False, help="PNG to write.")] = Path(
        "forecast.png"),
    root: Root = None,
    config: ConfigFile = None,
) -> None:
    """Draw the latest forecasts (recent history, 80 % and 95 % bands, actuals since) into one PNG."""
    cfg = _config(root, config)
    _prepare(flows=False)
    from lstm_pipeline.lake.tables import Lake
    from lstm_pipeline.stages.forecast_plot import plot_forecasts

    try:  # only reads the lake: no flow run
        result = plot_forecasts(Lake.from_config(cfg.lake), out, series)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)
    typer.echo(result.summary())


def _config(root: str | None, config_file: Path | None, create_root: bool = False, **data: Any) -> PipelineConfig:
    """The configuration, checked; the lake root must exist unless ``create_root`` (ingest, run)."""
    for key, value in _OFFLINE_ENV.items():  # before MLflow or Prefect is imported
        os.environ.setdefault(key, value)
    _logging()
    overrides: dict[str, Any] = {}
    if root:
        overrides["lake"] = {"root": root}
    data = {k: v for k, v in data.items() if v is not None}
    if data:
        overrides["data"] = data
    try:
        cfg = load_config(config_file, overrides)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)
    lake_root = cfg.lake.root
    if "://" not in lake_root and not Path(lake_root).is_dir():
        if Path(lake_root).exists():
            _fail(f"the lake root {lake_root} is not a folder")
        if not create_root:
            _fail(f"the lake root {lake_root} does not exist (check --root; ingest or run creates it)")
    return cfg


def _make_root(cfg: PipelineConfig) -> None:
    """Create a local lake root (ingest and run), once their inputs are checked."""
    if "://" not in cfg.lake.root:
        Path(cfg.lake.root).mkdir(parents=True, exist_ok=True)


def _run_sources(cfg: PipelineConfig, sources: list[str], sample: bool) -> list[str]:
    """What ``run`` ingests: the sources given (and the sample if asked), else the sample
    into the default lake (``data/lake``, what ``make run`` fills), else the landing
    folder, else nothing; checked before any work."""
    chosen = [*sources, *([str(SAMPLE)] if sample else [])]
    if not chosen:
        if Path(cfg.lake.root) == Path(LakeConfig().root):
            chosen = [str(SAMPLE)]
        elif os.environ.get(LANDING_ENV, "").strip():
            chosen = [s.strip() for s in os.environ[LANDING_ENV].split(",") if s.strip()]
        else:
            typer.echo(f"no SOURCE, no --sample and no landing folder ({LANDING_ENV}): nothing new to ingest")
    _check_sources(chosen)
    return chosen


def _check_sources(sources: list[str]) -> None:
    """A missing local file fails now, in one line, before any work (URIs are listed by the ingest)."""
    from lstm_pipeline.lake.sources import resolve_sources

    try:
        resolve_sources([s for s in sources if "://" not in s])
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)


def _on_prefect(flow_run: bool) -> bool:
    from flows.local_api import configured_api_url

    return flow_run or configured_api_url() is not None


def _work(cfg: PipelineConfig, stage: str, local: Callable[[], dict[str, Any]], flow: Callable[[], Any],
          flow_run: bool) -> dict[str, Any]:
    """One stage's work, here or as a flow run; its result dict, or one line and exit 1."""
    with _interruptible(cfg, stage):
        if _on_prefect(flow_run):
            _prepare(flows=True)
            return _result(_flow(flow))
        _prepare(flows=False)
        try:
            return local()
        except Exception as exc:  # noqa: BLE001 - classified in _fail_with
            _fail_with(exc)


def _pipeline_flow(cfg: PipelineConfig, sources: list[str], mode: Mode) -> tuple[dict[str, Any], str | None]:
    _prepare(flows=True)
    from flows.pipeline import pipeline_flow

    with _training_progress(cfg, True):
        state = _flow(lambda: pipeline_flow(sources, mode=mode.value, config=cfg, return_state=True))
    results = state.result(raise_on_failure=False) if state.is_completed() else (state.data or {})
    results = results if isinstance(results, dict) else {}
    return results, None if state.is_completed() else (state.message or state.name)


@contextmanager
def _training_progress(cfg: PipelineConfig, flow_run: bool) -> Iterator[None]:
    """Progress for a flow run's training (the in-process path opens its own)."""
    if not _on_prefect(flow_run):
        yield
        return
    from lstm_pipeline.stages import console

    with console.training_progress(cfg.lstm_ensemble):
        yield


@contextmanager
def _interruptible(cfg: PipelineConfig, stage: str | None) -> Iterator[None]:
    """A signal stops the work where it is (:mod:`lstm_pipeline.shell.interrupts`); then the
    interruption is recorded in ``runs`` (``run`` records its stages itself: ``stage``
    None), one line says so, and the exit code is 128 + the signal's number."""
    from lstm_pipeline.shell import interrupts
    from lstm_pipeline.stages.runs import INTERRUPTED, RunReport, StageOutcome, interruption, record_run

    started = datetime.now(UTC)
    with interrupts.raising_signals():
        try:
            yield
        except (KeyboardInterrupt, Interrupted) as exc:
            interrupts.ignoring_signals()
            logging.getLogger("lstm_pipeline.shell.cli").info("interrupted", exc_info=exc, extra={"console": False})
            if stage is not None:
                from lstm_pipeline.lake.tables import Lake

                outcome = StageOutcome(stage, INTERRUPTED, interruption(exc))
                record_run(Lake.from_config(cfg.lake), RunReport(f"cli-{uuid.uuid4().hex[:12]}", (outcome,), started))
            if "train" in (stage, getattr(exc, "stage", None)):
                interrupts.cancel_unfinished_promotions(cfg, started, interruption(exc))
            during = f"run: {exc.stage}" if stage is None and hasattr(exc, "stage") else stage or "run"
            typer.secho(f"{during} {interruption(exc)}", fg="yellow", err=True)
            interrupts.exit_soon(interrupts.exit_code(exc))
            raise typer.Exit(interrupts.exit_code(exc)) from None


def _next_steps(cfg: PipelineConfig) -> None:
    """Where to look after a run: status, and the MLflow UI of a local store."""
    root = cfg.lake.root
    typer.echo(f"next: lstm-pipeline status{'' if root == LakeConfig().root else f' --root {root}'}")
    uri = cfg.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.startswith("http"):
        typer.echo(f"      the registry: {uri.rstrip('/')}/#/models/{cfg.registry.model_name}")
    elif "://" not in root:
        mlflow = Path(sys.executable).with_name("mlflow")
        shown = os.path.relpath(mlflow) if mlflow.is_relative_to(Path.cwd()) else str(mlflow)
        store = uri or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"
        typer.echo(f"      {shown} ui --backend-store-uri {store} --port 5000   "
                   f"# then http://127.0.0.1:5000/#/models/{cfg.registry.model_name}")


def _prepare(flows: bool = True) -> None:
    """Offline settings, logging, and (``flows``) Prefect's temporary API when none is configured."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    _logging()
    if flows:
        from flows import local_api

        if local_api.configured_api_url() is None:
            local_api.reap_orphans()
            try:
                local_api.start_tied_server(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
            except Exception as exc:  # noqa: BLE001
                _fail(f"Prefect's temporary local API did not start: {exc}")
        _logging()  # importing Prefect configured its logging: ours again


def _logging() -> None:
    from lstm_pipeline.stages import console

    console.configure_logging(LOG_FILE, _state["verbose"])


def _flow(call: Any) -> Any:
    """Run a flow (``return_state=True``); an API that cannot be reached is an expected failure."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)


def _result(state: Any) -> dict[str, Any]:
    """The flow's result, or one line naming why it failed."""
    if state.is_completed():
        result = state.result()
        return dict(result) if isinstance(result, dict) else {"result": result}
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        _fail_with(error)
    _fail(state.message or state.name)


def _fail_with(exc: BaseException) -> NoReturn:
    """Expected failures: one line (traceback to the log). Anything else: its traceback."""
    if _expected(exc):
        logging.getLogger("lstm_pipeline.shell.cli").error("%s", _one_line(exc), exc_info=exc, extra={"console": False})
        if _state["verbose"]:
            traceback.print_exception(exc)
        _fail(_one_line(exc))
    traceback.print_exception(exc)
    raise typer.Exit(1)


def _fail(message: str) -> NoReturn:
    hint = f" (details: {LOG_FILE})" if not _state["verbose"] and LOG_FILE.exists() else ""
    typer.secho(f"error: {message}{hint}", fg="red", err=True)
    raise typer.Exit(1)


def _expected(exc: BaseException) -> bool:
    from pydantic import ValidationError

    if isinstance(exc, PipelineError | ValidationError | FileNotFoundError):
        return True
    # The Prefect API (or its temporary local server) out of reach: httpx's transport
    # errors, raised as they are or wrapped by Prefect ("Failed to reach API at ...").
    cause: BaseException | None = exc
    while cause is not None:
        name = type(cause).__module__ + "." + type(cause).__name__
        if name.startswith("httpx.") or "PrefectHTTPStatusError" in name or str(cause).startswith("Failed to reach API"):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        return f"invalid configuration: {problems}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, PipelineError | FileNotFoundError):
        api = os.environ.get("PREFECT_API_URL") or "the temporary local API"
        return f"the Prefect API at {api} cannot be reached: {text}"
    return text
