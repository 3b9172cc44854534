"""``lstm-pipeline``: start the pipeline's Prefect flows from a shell.

Every command but ``status`` (which only reads) runs as a Prefect flow run: against
``PREFECT_API_URL`` when one is set, otherwise on Prefect's local ephemeral API (nothing
to start by hand; it stops with the command, even when the command is killed).

Expected failures (a bad file, a missing column, no data, MLflow or the Prefect API out
of reach, an invalid setting) print one line naming the cause and exit 1; their
tracebacks go only to the log file (``--verbose`` shows them). Anything else is a bug
and shows its traceback.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.errors import PipelineError

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "monthly_sample.csv"
LOG_FILE = Path(os.environ.get("LSTM_PIPELINE_LOG_FILE", "~/.cache/lstm-pipeline/lstm-pipeline.log")).expanduser()
# Quiet, offline defaults for Prefect and MLflow; an explicit environment wins.
_OFFLINE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "lstm_pipeline",
    "GIT_PYTHON_REFRESH": "quiet",
}
_state = {"verbose": False}


class Mode(str, Enum):
    auto = "auto"
    retrain = "retrain"
    finetune = "finetune"


Root = Annotated[str | None, typer.Option("--root", help="Lake root (folder or URI). Default: data/lake.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="YAML config file.")
]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="auto (the policy decides), retrain or finetune.")]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks of expected failures too.")] = False,
) -> None:
    _state["verbose"] = verbose


@app.command()
def run(
    sources: Annotated[list[str] | None, typer.Argument(help="Files, folders or globs; default: the bundled sample.")] = None,
    root: Root = None,
    config: ConfigFile = None,
    mode: ModeOpt = Mode.auto,
) -> None:
    """Ingest -> monitor -> train (by policy) -> forecast, as one pipeline flow run."""
    cfg = _config(root, config)
    _prepare()
    from flows.pipeline import pipeline_flow

    state = _flow(lambda: pipeline_flow(sources or [str(SAMPLE)], mode=mode.value, config=cfg, return_state=True))
    results = state.result(raise_on_failure=False) if state.is_completed() else (state.data or {})
    results = results if isinstance(results, dict) else {}
    for stage in ("ingest", "train", "forecast"):
        if isinstance(results.get(stage), dict) and results[stage].get("summary"):
            typer.echo(results[stage]["summary"])
    if not state.is_completed():
        _fail(state.message or state.name)
    typer.echo("pipeline finished: every stage completed")


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="CSV (.csv, .csv.gz) or Parquet files, folders or globs.")],
    root: Root = None,
    config: ConfigFile = None,
    id_col: Annotated[str | None, typer.Option(help="Column holding the series id.")] = None,
    time_col: Annotated[str | None, typer.Option(help="Column holding the timestamp.")] = None,
    target_col: Annotated[str | None, typer.Option(help="Column holding the value to forecast.")] = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter.")] = None,
    freq: Annotated[str | None, typer.Option(help="pandas frequency (MS, D, h); inferred on first ingest.")] = None,
) -> None:
    """Add files to the lake (idempotent: the same bytes twice change nothing)."""
    cfg = _config(root, config, id_col=id_col, time_col=time_col, target_col=target_col,
                  csv_delimiter=delimiter, freq=freq)
    _prepare()
    from flows.ingest import ingest_flow

    result = _result(_flow(lambda: ingest_flow(sources, config=cfg, return_state=True)))
    typer.echo(result.pop("summary", ""))
    typer.echo(f"ingest finished: {result}")


@app.command()
def train(root: Root = None, config: ConfigFile = None, mode: ModeOpt = Mode.auto) -> None:
    """Retrain or fine-tune (or skip, by policy): evaluate, refit, register and gate."""
    cfg = _config(root, config)
    _prepare()
    from flows.train import train_flow

    result = _result(_flow(lambda: train_flow(mode.value, config=cfg, return_state=True)))
    typer.echo(result.pop("summary", ""))
    typer.echo(f"training finished: {result}")


@app.command()
def forecast(root: Root = None, config: ConfigFile = None) -> None:
    """Forecast every current series with the champion (or the best baseline) into ``forecasts``."""
    cfg = _config(root, config)
    _prepare()
    from flows.forecast import forecast_flow

    result = _result(_flow(lambda: forecast_flow(config=cfg, return_state=True)))
    typer.echo(result.pop("summary", ""))
    typer.echo(f"forecast finished: {result}")


@app.command()
def monitor(root: Root = None, config: ConfigFile = None) -> None:
    """Score stored forecasts against actuals that arrived since; record live error per version."""
    cfg = _config(root, config)
    _prepare()
    from flows.monitor import monitor_flow

    result = _result(_flow(lambda: monitor_flow(config=cfg, return_state=True)))
    typer.echo(f"monitor finished: {result}")


@app.command()
def status(root: Root = None, config: ConfigFile = None) -> None:
    """Print the lake's tables, the models serving, the latest forecasts, live accuracy, the last failure."""
    cfg = _config(root, config)
    _prepare(flows=False)
    from lstm_pipeline.status import render_status

    try:  # only reads: no flow run
        text = render_status(cfg)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)
    typer.echo(text)


@app.command()
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
    from lstm_pipeline.forecast_plot import plot_forecasts
    from lstm_pipeline.lake import Lake

    try:  # only reads the lake: no flow run
        result = plot_forecasts(Lake.from_config(cfg.lake), out, series)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)
    typer.echo(result.summary())


def _config(root: str | None, config_file: Path | None, **data: Any) -> PipelineConfig:
    _logging()
    overrides: dict[str, Any] = {}
    if root:
        overrides["lake"] = {"root": root}
    data = {k: v for k, v in data.items() if v is not None}
    if data:
        overrides["data"] = data
    try:
        return load_config(config_file, overrides)
    except Exception as exc:  # noqa: BLE001 - classified in _fail_with
        _fail_with(exc)


def _prepare(flows: bool = True) -> None:
    """Offline settings, logging, and (for flow commands) the local API tied to this process."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    _logging()
    if flows and not os.environ.get("PREFECT_API_URL"):
        from lstm_pipeline import local_api

        local_api.reap_orphans()
        try:
            local_api.start_tied_server(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
        except Exception as exc:  # noqa: BLE001
            _fail(f"Prefect's temporary local API did not start: {exc}")


def _logging() -> None:
    """The console shows log lines without tracebacks (unless --verbose); the file has them."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    try:
        LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(LOG_FILE, maxBytes=10_000_000, backupCount=3)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(to_file)
    except OSError:
        pass  # no log file: the console still says what failed
    console = _StderrHandler()
    console.setFormatter(_Console("%(asctime)s %(levelname)s %(name)s: %(message)s", _state["verbose"]))
    root.addHandler(console)
    for chatty in ("httpx", "alembic", "mlflow.store", "botocore", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


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
        logging.getLogger("lstm_pipeline.cli").error("%s", _one_line(exc), exc_info=exc)
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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a test runner may swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Console(logging.Formatter):
    """Log lines for the terminal: no tracebacks unless ``--verbose`` (the log file has them)."""

    def __init__(self, fmt: str, verbose: bool) -> None:
        super().__init__(fmt)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose or not (record.exc_info or record.exc_text):
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
