"""The pipeline's ingest and forecast steps: each wires the lake, the model and the registry.

Flows and the CLI call these (and :func:`lstm_pipeline.stages.training.run_training`); they hold
no orchestration concerns (retries, schedules) and take the whole configuration.

The forecast step always forecasts: with the champion when there is one, and while no
version has passed the gate with the best forecast without the LSTM of the last backtest
(a statistical member, their combination or seasonal naive; seasonal naive when nothing
has been backtested yet), labelled as such in ``model_name`` / ``model_version``. Every
row says which members and weights produced it (``members``). Series whose last
observation lies more than ``forecast.max_staleness`` periods behind the lake's newest
are stale: they are reported and not forecast again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import NotEnoughData, PipelineError
from lstm_pipeline.evaluate import intervals, members
from lstm_pipeline.evaluate.backtest import backtest, cutoff_dates
from lstm_pipeline.evaluate.procedure import min_history
from lstm_pipeline.lake.ingest import IngestReport, ingest
from lstm_pipeline.lake.tables import FORECASTS, SERIES, Lake
from lstm_pipeline.model import grid
from lstm_pipeline.registry.bundle import Served
from lstm_pipeline.registry.tracking import CHALLENGER, CHAMPION, Registry, RegistryError
from lstm_pipeline.stages.training import TrainOutcome, run_training

__all__ = [
    "BASELINE", "ForecastFromFallback", "ForecastOutcome", "TrainOutcome", "max_staleness", "run_forecast", "run_ingest", "run_training",
    "stale_series",
]

log = logging.getLogger(__name__)

# model_name of forecasts written by a baseline (model_version then names the baseline).
BASELINE = "baseline"
FORECAST_KEYS = ["unique_id", "cutoff", "ds", "model_version"]


@dataclass(frozen=True)
class ForecastOutcome:
    model_name: str
    model_version: str
    rows: int
    series: int
    skipped: dict[str, str]
    table_version: int
    source: str = "registry"  # registry, cache (the registry could not be read) or baseline
    stale: dict[str, str] = field(default_factory=dict)  # unique_id -> last observation
    registry_error: str = ""  # why the champion could not be read, when it could not

    def summary(self) -> str:
        if self.model_name == BASELINE:
            why = "the registry could not be read" if self.registry_error else "no LSTM has passed the gate yet"
            origin = f"baseline {self.model_version} ({why})"
        else:
            origin = f"{self.model_name} v{self.model_version}" + (
                " from the local copy (the registry could not be read)" if self.source == "cache" else "")
        text = (f"forecast: {self.series} series x horizon = {self.rows} rows from {origin} "
                f"-> forecasts table v{self.table_version}")
        if self.stale:
            text += f"\n  {len(self.stale)} stale series not forecast (last observation long before the newest): " \
                + ", ".join(f"{uid} ({last})" for uid, last in list(self.stale.items())[:10]) \
                + (" ..." if len(self.stale) > 10 else "")
        if self.skipped:
            text += f"\n  {len(self.skipped)} series skipped: " + "; ".join(
                f"{uid}: {why}" for uid, why in list(self.skipped.items())[:10]
            )
        return text


def run_ingest(cfg: PipelineConfig, sources: Sequence[str | Path]) -> IngestReport:
    return ingest(Lake.from_config(cfg.lake), sources, cfg.data)


def max_staleness(cfg: PipelineConfig, freq: str) -> int:
    """Periods a series may lag the lake's newest period and still be forecast."""
    season = cfg.data.season(freq)
    return cfg.forecast.max_staleness if cfg.forecast.max_staleness is not None else max(2 * season, 2)


def stale_series(series: pd.DataFrame, freq: str, limit: int) -> dict[str, str]:
    """Series whose last observation lies more than ``limit`` periods before the newest."""
    if series.empty:
        return {}
    last = series.groupby("unique_id", sort=True)["ds"].max()
    lag = grid.positions([series["ds"].max()], freq)[0] - grid.positions(last.to_numpy(), freq)
    old = last[lag > limit]
    return {str(uid): str(pd.Timestamp(ds).date()) for uid, ds in old.items()}


class ForecastFromFallback(RegistryError):
    """The champion could not be read from the registry (an outage, or any error but "not
    found"): the forecasts were written from the local copy, or the best baseline, and the
    stage fails so that the run and ``status`` say so. ``outcome``: what was written."""

    def __init__(self, message: str, outcome: ForecastOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome

    def __reduce__(self) -> tuple[type[ForecastFromFallback], tuple[str, ForecastOutcome]]:
        # Pickled with its state (Prefect keeps a failed task's exception): both arguments.
        return type(self), (str(self), self.outcome)


def run_forecast(cfg: PipelineConfig) -> ForecastOutcome:
    """Forecast every current series and append the vintage to ``forecasts`` (keyed, idempotent).

    Only a champion the registry says does not exist means the baseline. When the registry
    cannot be read (RegistryUnavailable, RegistryError), the whole local copy of the last
    champion loaded forecasts, else the best baseline; the vintage is written, then
    ForecastFromFallback says which and why. A champion that cannot be loaded
    (ModelLoadError) raises before anything is written: no copy hides a broken version.
    """
    lake = Lake.from_config(cfg.lake)
    series = lake.read_series(version=lake.version(SERIES))
    if series.empty:
        raise NotEnoughData(f"the lake at {lake.root} holds no series yet: ingest data first")
    freq = cfg.data.freq or lake.freq()
    assert freq is not None, "ingest records the frequency with the first batch"
    stale = stale_series(series, freq, max_staleness(cfg, freq))
    current = series[~series["unique_id"].isin(stale)] if stale else series
    for uid, last in list(stale.items())[:20]:
        log.info("stale, not forecast: %s (last observation %s)", uid, last)

    registry = Registry(cfg.registry, cfg.lake.root)
    unrepaired: RegistryError | None = None
    problem: RegistryError | None = None
    try:
        registry.repair()
    except RegistryError as exc:
        unrepaired = exc
    try:
        loaded = registry.load(CHAMPION)
    except RegistryError as exc:  # the error raised after the forecast says it: not logged twice
        problem, loaded = exc, registry.local_copy(CHAMPION)
        log.info("the champion could not be read from the registry: forecasting from %s",
                 f"the local copy of v{loaded.info.version}" if loaded else "the best baseline (no whole local copy)")
    if unrepaired is not None and problem is None:
        log.warning("could not check the registry for an interrupted promotion: %s", unrepaired)
    if loaded is not None:
        result = loaded.bundle.forecast(current)
        frame, skipped = result.frame, result.skipped
        name, version, run_id, source = registry.name, loaded.info.version, loaded.info.run_id, loaded.source
        used = loaded.bundle.members
    else:
        name, source, run_id = BASELINE, "baseline", ""
        version, frame, used = _baseline_forecast(cfg, registry, current, freq)
        skipped = {}
        if problem is None:
            log.warning("no champion yet: forecasting with the baseline %s", version)
    stamped = frame.assign(
        model_name=name, model_version=version, members=used, run_id=run_id,
        created_at=pd.Timestamp.now(tz="UTC").tz_localize(None),
    )
    written = lake.upsert(FORECASTS, stamped, keys=FORECAST_KEYS, compare=["yhat"])
    outcome = ForecastOutcome(name, version, len(stamped), int(stamped["unique_id"].nunique()), skipped,
                              written.version, source, stale, str(problem) if problem else "")
    if problem is not None:
        served = f"the local copy of v{version}" if source == "cache" else f"the baseline {version}"
        raise ForecastFromFallback(f"{problem}; forecasts were written from {served} "
                                   f"(forecasts table v{written.version})", outcome)
    return outcome


def _baseline_forecast(
    cfg: PipelineConfig, registry: Registry, history: pd.DataFrame, freq: str
) -> tuple[str, pd.DataFrame, str]:
    """The best forecast without the LSTM on the latest backtest (the challenger's
    ``baseline``: a statistical member, their combination or seasonal naive) with its
    conformal intervals; before any backtest, seasonal naive with intervals from its own
    backtest on the configured windows. Returns its name, the frame and its members."""
    H, season = cfg.window.horizon, cfg.data.season(freq)
    try:
        latest = registry.load(CHALLENGER)
    except (RegistryError, PipelineError) as exc:
        log.warning("could not read the last backtest's best baseline (%s): using seasonal naive", exc)
        latest = None
    served = latest.bundle.baseline if latest is not None else None
    if served is None:
        served = Served({"seasonal_naive": 1.0}, _seasonal_naive_quantiles(cfg, history, freq), "seasonal_naive")
    frame = served.forecast(history, H, freq, season, cfg.combine.n_jobs)
    return served.name or "+".join(served.weights), frame, members.describe(served.weights)


def _seasonal_naive_quantiles(cfg: PipelineConfig, history: pd.DataFrame, freq: str) -> dict[int, list[float]]:
    """Conformal quantiles of seasonal naive from its backtest on the configured windows
    (none when the history is too short for one)."""
    H, season = cfg.window.horizon, cfg.data.season(freq)
    K, step = cfg.backtest.n_windows, cfg.backtest.step or H
    snaive = members.statistical_forecasters(["seasonal_naive"], H, freq, season)
    try:
        result = backtest(history, snaive, cutoff_dates(history, freq, H, K, step), H, freq, season,
                          min_history(cfg, freq))
    except NotEnoughData:
        return {}
    return intervals.fit_quantiles(intervals.scaled_residuals(result.predictions, result.scales))
