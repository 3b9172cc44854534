"""The operator's view: what the lake holds, which models serve, how their forecasts fare.

Reads only: no table is written, and the registry is opened only if it exists (a local
SQLite store that is not there yet is reported as such, not created).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import (
    ACCURACY,
    BATCHES,
    FORECASTS,
    QUARANTINE,
    RUNS,
    SERIES,
    Lake,
)
from lstm_pipeline.stages.monitor import ACCURACY_COLUMNS, live_accuracy
from lstm_pipeline.stages.runs import last_failure

__all__ = ["ModelStatus", "Status", "TableStatus", "collect_status", "render_status"]

TABLES = (SERIES, QUARANTINE, BATCHES, FORECASTS, ACCURACY, RUNS)
ALIASES = ("champion", "challenger")
# Tags of a model version worth a glance, in this order.
_MODEL_TAGS = ("backtest_mase", "live_mase", "live_n_points", "training_mode", "data_version", "data_end")


@dataclass(frozen=True)
class TableStatus:
    name: str
    version: int | None  # None: the table does not exist yet
    rows: int = 0
    last_write: datetime | None = None
    operation: str = ""


@dataclass(frozen=True)
class ModelStatus:
    alias: str
    version: str
    created: datetime
    tags: dict[str, str]
    decision: str


@dataclass(frozen=True)
class Status:
    lake_root: str
    tables: tuple[TableStatus, ...]
    model_name: str
    tracking_uri: str | None  # None: no registry yet
    models: tuple[ModelStatus, ...]
    latest_cutoff: pd.Timestamp | None
    vintages: int  # distinct forecast cutoffs in the archive
    latest_vintage: pd.DataFrame  # per model_version: series, rows, created_at of the latest cutoff
    live_by_version: pd.DataFrame  # live_accuracy per model_version
    live_recent: pd.DataFrame = field(default_factory=pd.DataFrame)  # per (model_version, cutoff), recent cutoffs
    stale: dict[str, str] = field(default_factory=dict)  # unique_id -> last observation
    failure: dict[str, object] | None = None  # the last failed stage of a pipeline run
    registry_error: str | None = None  # why the registry could not be read, if it could not

    def render(self) -> str:
        out = [f"lake {self.lake_root}", f"  {'table':<11} {'version':>7} {'rows':>9}  last write (UTC)"]
        for t in self.tables:
            if t.version is None:
                out.append(f"  {t.name:<11} {'-':>7} {'-':>9}  (not created yet)")
            else:
                when = t.last_write.strftime("%Y-%m-%d %H:%M:%S") if t.last_write else "?"
                out.append(f"  {t.name:<11} {t.version:>7} {t.rows:>9}  {when} {t.operation}".rstrip())
        out.append("")
        if self.tracking_uri is None:
            out.append(f"registry: none yet (no model trained) for {self.model_name}")
        else:
            out.append(f"registry {self.model_name} at {self.tracking_uri}")
            if self.registry_error:
                out.append(f"  unreachable: {self.registry_error}")
            elif not self.models:
                out.append("  no champion or challenger yet")
            for m in self.models:
                facts = "  ".join(f"{k}={m.tags[k]}" for k in _MODEL_TAGS if k in m.tags)
                out.append(f"  {m.alias:<10} v{m.version}  created {m.created:%Y-%m-%d %H:%M}  {facts}".rstrip())
                if m.decision:
                    out.append(f"             decision: {m.decision}")
        out.append("")
        if self.latest_cutoff is None:
            out.append("forecasts: none yet")
        else:
            out.append(f"forecasts: latest cutoff {self.latest_cutoff.date()} ({self.vintages} cutoffs archived)")
            for (name, version), row in self.latest_vintage.iterrows():
                who = f"baseline {version} (no LSTM has passed the gate yet)" if name == "baseline" else f"v{version}"
                out.append(f"  {who}: {row['series']} series, {row['rows']} rows, written {row['created_at']}")
        if self.stale:
            shown = ", ".join(f"{uid} (last {last})" for uid, last in list(self.stale.items())[:10])
            out.append(f"  {len(self.stale)} stale series, not forecast: {shown}" + (" ..." if len(self.stale) > 10 else ""))
        out.append("")
        if self.live_by_version.empty:
            out.append("live accuracy: no forecast has reached its target dates yet")
        else:
            out.append("live accuracy per model version (mean over forecasts of MAE and MASE on realised steps):")
            out.append(_indent(_fmt(self.live_by_version)))
            out.append("recent cutoffs:")
            out.append(_indent(_fmt(self.live_recent)))
        out.append("")
        if self.failure is None:
            out.append("last failure: none recorded")
        else:
            f = self.failure
            what = "interrupted" if f.get("state") == "interrupted" else "failed"
            out.append(f"last failure: {f['stage']} {what} in run {f['run_id']} at {f['finished_at']}: {f['message']}")
        return "\n".join(out)


def collect_status(cfg: PipelineConfig, recent_cutoffs: int = 3) -> Status:
    """Gather the operator's view; ``recent_cutoffs``: how many forecast cutoffs to detail."""
    lake = Lake.from_config(cfg.lake)
    tables = tuple(_table(lake, name) for name in TABLES)

    forecasts = lake.read(FORECASTS, columns=["unique_id", "cutoff", "model_name", "model_version", "created_at"]) \
        if lake.exists(FORECASTS) else pd.DataFrame()
    latest_cutoff, vintages, latest = None, 0, pd.DataFrame(columns=["series", "rows", "created_at"])
    if not forecasts.empty:
        latest_cutoff = pd.Timestamp(forecasts["cutoff"].max())
        vintages = int(forecasts["cutoff"].nunique())
        # The latest run's vintage: the rows written last (series' cutoffs may differ).
        newest = forecasts[forecasts["created_at"] == forecasts["created_at"].max()]
        latest = newest.groupby(["model_name", "model_version"]).agg(
            series=("unique_id", "nunique"), rows=("unique_id", "size"), created_at=("created_at", "max")
        )

    accuracy = lake.read(ACCURACY, columns=ACCURACY_COLUMNS) if lake.exists(ACCURACY) else pd.DataFrame()
    if accuracy.empty:
        by_version, recent = pd.DataFrame(), pd.DataFrame()
    else:
        by_version = live_accuracy(accuracy)
        keep = sorted(accuracy["cutoff"].unique())[-recent_cutoffs:]
        recent = live_accuracy(accuracy[accuracy["cutoff"].isin(keep)], by=["model_version", "cutoff"])

    uri, models, registry_error = _models(cfg)
    stale: dict[str, str] = {}
    freq = cfg.data.freq or lake.freq()
    if freq and lake.exists(SERIES):
        from lstm_pipeline.stages.steps import max_staleness, stale_series

        stale = stale_series(lake.read(SERIES, columns=["unique_id", "ds"]), freq, max_staleness(cfg, freq))
    return Status(
        lake.root, tables, cfg.registry.model_name, uri, models, latest_cutoff, vintages, latest, by_version, recent,
        stale, dict(last_failure(lake) or {}) or None, registry_error,
    )


def render_status(cfg: PipelineConfig, recent_cutoffs: int = 3) -> str:
    return collect_status(cfg, recent_cutoffs).render()


def _table(lake: Lake, name: str) -> TableStatus:
    version = lake.version(name)
    if version is None:
        return TableStatus(name, None)
    first_column = lake.columns(name)[0]
    rows = len(lake.read(name, columns=[first_column]))
    history = lake.history(name)
    last = history[0] if history else {}
    when = datetime.fromtimestamp(last["timestamp"] / 1000, tz=UTC) if "timestamp" in last else None
    return TableStatus(name, version, rows, when, str(last.get("operation", "")))


def _models(cfg: PipelineConfig) -> tuple[str | None, tuple[ModelStatus, ...], str | None]:
    from lstm_pipeline.registry.tracking import (  # mlflow is heavy: import on use
        Registry,
        RegistryError,
        resolve_tracking_uri,
    )

    root = Lake.from_config(cfg.lake).root
    uri = resolve_tracking_uri(cfg.registry, root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None, (), None
    # Reading the registry must not keep the operator waiting: a short budget.
    registry = Registry(cfg.registry.model_copy(update={"max_wait_s": min(cfg.registry.max_wait_s, 10.0)}), root)
    models = []
    try:
        for alias in ALIASES:
            info = registry.version(alias)
            if info is not None:
                models.append(ModelStatus(alias, info.version, info.created, dict(info.tags),
                                          info.tags.get("decision", "")))
    except RegistryError as exc:  # an outage or any other registry error: the report goes on without it
        return registry.uri, (), str(exc)
    return registry.uri, tuple(models), None


def _fmt(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    shown = frame.copy()
    for col in ("last_cutoff", "last_ds"):
        if col in shown:
            shown[col] = pd.to_datetime(shown[col]).dt.date
    if "cutoff" in shown.index.names:
        shown = shown.rename(index=lambda v: v.date() if isinstance(v, pd.Timestamp) else v)
    return shown.to_string(float_format="%.4f")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
