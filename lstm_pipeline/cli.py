"""``lstm-pipeline``: start the pipeline's Prefect flows from a shell.

Every command but ``status`` (which only reads) runs as a Prefect flow run: against
``PREFECT_API_URL`` when one is set, otherwise on Prefect's local ephemeral API (nothing
to start by hand).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from lstm_pipeline.config import PipelineConfig, load_config

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "monthly_sample.csv"
# Quiet, offline defaults for Prefect and MLflow; an explicit environment wins.
_OFFLINE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "lstm_pipeline",
    "GIT_PYTHON_REFRESH": "quiet",
}

Root = Annotated[str | None, typer.Option("--root", help="Lake root (folder or URI). Default: data/lake.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="YAML config file.")
]
ModeOpt = Annotated[str, typer.Option("--mode", help="auto (policy decides), retrain or finetune.")]


def _config(root: str | None, config_file: Path | None, **data: Any) -> PipelineConfig:
    overrides: dict[str, Any] = {}
    if root:
        overrides["lake"] = {"root": root}
    data = {k: v for k, v in data.items() if v is not None}
    if data:
        overrides["data"] = data
    return load_config(config_file, overrides)


def _prepare() -> None:
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "alembic", "mlflow.store"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _mode(value: str) -> Literal["auto", "retrain", "finetune"]:
    if value not in ("auto", "retrain", "finetune"):
        raise typer.BadParameter("choose auto, retrain or finetune", param_hint="--mode")
    return value  # type: ignore[return-value]


def _fail(exc: BaseException) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(1)


@app.command()
def run(
    sources: Annotated[list[str] | None, typer.Argument(help="Files, folders or globs; default: the bundled sample.")] = None,
    root: Root = None,
    config: ConfigFile = None,
    mode: ModeOpt = "auto",
) -> None:
    """Ingest -> train (by policy) -> forecast, as one pipeline flow run."""
    _prepare()
    from flows.pipeline import pipeline_flow

    cfg = _config(root, config)
    try:
        result = pipeline_flow(sources or [str(SAMPLE)], mode=_mode(mode), config=cfg)
    except Exception as exc:  # the flow has logged the traceback; say what failed
        _fail(exc)
    ingested = result.get("ingest")
    if isinstance(ingested, dict):
        typer.echo(ingested.pop("summary", ""))
    typer.echo(f"pipeline finished: {result}")


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
    _prepare()
    from flows.ingest import ingest_flow

    cfg = _config(root, config, id_col=id_col, time_col=time_col, target_col=target_col,
                  csv_delimiter=delimiter, freq=freq)
    try:
        result = ingest_flow(sources, config=cfg)
    except Exception as exc:
        _fail(exc)
    typer.echo(result.pop("summary", ""))
    typer.echo(f"ingest finished: {result}")


@app.command()
def train(root: Root = None, config: ConfigFile = None, mode: ModeOpt = "auto") -> None:
    """Retrain or fine-tune (or skip, by policy), backtest, register and gate."""
    _prepare()
    from flows.train import train_flow

    try:
        result = train_flow(_mode(mode), config=_config(root, config))
    except Exception as exc:
        _fail(exc)
    typer.echo(f"training finished: {result}")


@app.command()
def forecast(root: Root = None, config: ConfigFile = None) -> None:
    """Forecast every series with the champion and append them to the forecasts table."""
    _prepare()
    from flows.forecast import forecast_flow

    try:
        result = forecast_flow(config=_config(root, config))
    except Exception as exc:
        _fail(exc)
    typer.echo(f"forecast finished: {result}")


@app.command()
def monitor(root: Root = None, config: ConfigFile = None) -> None:
    """Score stored forecasts against actuals that arrived since; record live error per version."""
    _prepare()
    from flows.monitor import monitor_flow

    try:
        result = monitor_flow(config=_config(root, config))
    except Exception as exc:
        _fail(exc)
    typer.echo(f"monitor finished: {result}")


@app.command()
def status(root: Root = None, config: ConfigFile = None) -> None:
    """Print the lake's tables, the champion and challenger, the latest forecasts, live accuracy."""
    _prepare()
    from lstm_pipeline.status import render_status

    # Only reads: no flow run.
    try:
        text = render_status(_config(root, config))
    except Exception as exc:
        _fail(exc)
    typer.echo(text)


