"""Live accuracy: stored forecasts scored against the actuals that arrived after them.

A forecast row (unique_id, cutoff, ds, step, yhat, model_version) is *realised* once the
``series`` table holds an actual for its (unique_id, ds). Its errors are

* ``abs_error = |y - yhat|``
* ``scaled_error = abs_error / scale``, where ``scale`` is the MASE denominator of that
  series' history up to and including the cutoff (:func:`lstm_pipeline.model.seasonal.mase_scales`),
  exactly what the backtest uses for its windows; null when the scale is zero or undefined.

The live MASE of a model version is the mean, over its realised forecasts (one per
series and cutoff), of each forecast's mean scaled error: the backtest's "mean over series
and windows", taken over the steps realised so far. Early in a forecast's life only its
near steps are realised, which are usually easier than the whole horizon.

:func:`run_monitor` upserts the realised rows into the ``accuracy`` table keyed
(unique_id, cutoff, ds, model_version), so running it again changes nothing unless an
actual was revised, and writes each version's aggregate on that version in the registry
(tag ``live_mase``, which the retrain policy reads).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.tables import ACCURACY, FORECASTS, Lake
from lstm_pipeline.model.seasonal import mase_scales

__all__ = [
    "ACCURACY_COLUMNS",
    "ACCURACY_KEYS",
    "MonitorOutcome",
    "live_accuracy",
    "realised_errors",
    "run_monitor",
]

log = logging.getLogger(__name__)

ACCURACY_KEYS = ["unique_id", "cutoff", "ds", "model_version"]
ACCURACY_COLUMNS = [
    *ACCURACY_KEYS, "step", "model_name", "y", "yhat", "abs_error", "scale", "scaled_error",
]
# Compared on rerun: a row is rewritten only when an actual (or a forecast) was revised.
_COMPARED = ["y", "yhat", "abs_error", "scale", "scaled_error"]


@dataclass(frozen=True)
class MonitorOutcome:
    """What one monitor run found and wrote."""

    realised: int  # forecast rows whose actual exists now
    pending: int  # forecast rows still waiting for their actual
    inserted: int  # accuracy rows new in this run
    updated: int  # accuracy rows rewritten because an actual or forecast was revised
    table_version: int  # accuracy table version after the run, -1 if it does not exist
    live: pd.DataFrame  # per model_version: see live_accuracy
    recorded: tuple[str, ...] = ()  # versions whose live accuracy was (re)written in the registry
    missing_versions: tuple[str, ...] = ()  # versions in the forecasts but not in the registry

    def live_table(self) -> pd.DataFrame:
        """``live`` for display: dates as ISO strings, metrics rounded."""
        shown = self.live.copy()
        for col in ("last_cutoff", "last_ds"):
            shown[col] = pd.to_datetime(shown[col]).dt.strftime("%Y-%m-%d")
        return shown.round({"mae": 4, "mase": 4})

    def summary(self) -> str:
        lines = [
            f"monitor: {self.realised} forecast rows realised ({self.inserted} new, {self.updated} revised), "
            f"{self.pending} waiting for actuals -> accuracy table v{self.table_version}"
        ]
        if not self.live.empty:
            lines.append(self.live[["n_forecasts", "n_points", "mae", "mase"]].to_string(float_format="%.4f"))
        if self.recorded:
            lines.append(f"  live accuracy recorded on version(s) {', '.join(self.recorded)}")
        if self.missing_versions:
            lines.append(f"  not in the registry (skipped): {', '.join(self.missing_versions)}")
        return "\n".join(lines)


def realised_errors(forecasts: pd.DataFrame, series: pd.DataFrame, freq: str, season_length: int) -> pd.DataFrame:
    """Forecast rows that have an actual in ``series``, with their realised errors.

    ``forecasts``: unique_id, cutoff, ds, step, yhat, model_version (model_name optional).
    ``series``: the data contract, unique_id, ds, y. Returns ACCURACY_COLUMNS, one row per
    realised forecast row, sorted by model_version, unique_id, cutoff, ds.
    """
    if forecasts.empty or series.empty:
        return _empty()
    f = forecasts.assign(
        unique_id=forecasts["unique_id"].astype(str),
        model_version=forecasts["model_version"].astype(str),
        ds=_timestamps(forecasts["ds"]),
        cutoff=_timestamps(forecasts["cutoff"]),
        model_name=forecasts["model_name"].astype(str) if "model_name" in forecasts else "",
    )
    actual = series[["unique_id", "ds", "y"]].assign(
        unique_id=series["unique_id"].astype(str), ds=_timestamps(series["ds"])
    )
    joined = f[["unique_id", "cutoff", "ds", "step", "model_version", "model_name", "yhat"]].merge(
        actual, on=["unique_id", "ds"], how="inner"
    )
    if joined.empty:
        return _empty()
    scales = _scales(actual, joined[["unique_id", "cutoff"]].drop_duplicates(), freq, season_length)
    joined = joined.merge(scales, on=["unique_id", "cutoff"], how="left")
    joined["y"] = joined["y"].astype("float64")
    joined["yhat"] = joined["yhat"].astype("float64")
    joined["step"] = joined["step"].astype("int32")
    joined["abs_error"] = (joined["y"] - joined["yhat"]).abs()
    usable = joined["scale"] > 0  # False for NaN too: no scaled error without a scale
    joined["scaled_error"] = (joined["abs_error"] / joined["scale"]).where(usable)
    return (
        joined[ACCURACY_COLUMNS]
        .sort_values(["model_version", "unique_id", "cutoff", "ds"], kind="stable")
        .reset_index(drop=True)
    )


def live_accuracy(errors: pd.DataFrame, by: Sequence[str] = ("model_version",)) -> pd.DataFrame:
    """Aggregate realised errors per group ``by`` (default: per model version).

    Each forecast (unique_id, cutoff) is first reduced to its mean absolute and mean
    scaled error over its realised rows in the group; ``mae`` and ``mase`` are the means
    of those over forecasts (a forecast without a scale is left out of ``mase`` only).
    Columns: n_forecasts, n_points, mae, mase, last_cutoff, last_ds.
    """
    by = list(by)
    columns = ["n_forecasts", "n_points", "mae", "mase", "last_cutoff", "last_ds"]
    forecast_keys = [*by, *(k for k in ("unique_id", "cutoff") if k not in by)]
    per_forecast = errors.groupby(forecast_keys, sort=True).agg(
        n_points=("abs_error", "size"), mae=("abs_error", "mean"), mase=("scaled_error", "mean"),
        last_ds=("ds", "max"),
    ).reset_index()
    if "cutoff" in by:
        per_forecast["last_cutoff"] = per_forecast["cutoff"]
    table = per_forecast.groupby(by, sort=True).agg(
        n_forecasts=("n_points", "size"), n_points=("n_points", "sum"), mae=("mae", "mean"),
        mase=("mase", "mean"), last_cutoff=("last_cutoff" if "cutoff" in by else "cutoff", "max"),
        last_ds=("last_ds", "max"),
    )
    return table[columns]


def run_monitor(cfg: PipelineConfig) -> MonitorOutcome:
    """Score every stored forecast that now has an actual; record live accuracy per version.

    Idempotent: rows already in ``accuracy`` with the same values are not rewritten, and a
    version's registry record is only rewritten when its aggregate changed.
    """
    lake = Lake.from_config(cfg.lake)
    forecasts = lake.read(FORECASTS)
    if forecasts.empty:
        log.info("monitor: no forecasts stored yet, nothing to score")
        return MonitorOutcome(0, 0, 0, 0, _version(lake), live_accuracy(_empty()))
    freq = cfg.data.freq or lake.freq()
    season = cfg.data.season(freq) if freq else 1
    errors = realised_errors(forecasts, lake.read_series(), freq, season) if freq else _empty()
    pending = len(forecasts) - len(errors)
    stamped = errors.assign(evaluated_at=pd.Timestamp.now(tz="UTC").tz_localize(None))
    written = lake.upsert(ACCURACY, stamped, keys=ACCURACY_KEYS, compare=_COMPARED)
    log.info("monitor: %d realised rows (%d new, %d revised), %d pending",
             len(errors), written.inserted, written.updated, pending)

    accuracy = lake.read(ACCURACY)
    live = live_accuracy(accuracy[ACCURACY_COLUMNS] if not accuracy.empty else _empty())
    recorded, missing = _record(cfg, live, accuracy) if not live.empty else ((), ())
    return MonitorOutcome(
        len(errors), pending, written.inserted, written.updated, _version(lake), live, recorded, missing
    )


def _record(cfg: PipelineConfig, live: pd.DataFrame, accuracy: pd.DataFrame) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Write each version's aggregate on that version (only this model name's versions)."""
    from lstm_pipeline.registry.tracking import (
        Registry,  # mlflow is heavy: only when there is something to record
    )

    registry = Registry(cfg.registry, cfg.lake.root)
    ours = set(accuracy.loc[accuracy["model_name"].isin(["", registry.name]), "model_version"].astype(str))
    recorded, missing = [], []
    for version, row in live.iterrows():
        if str(version) not in ours:
            continue
        metrics = {"mase": row["mase"], "mae": row["mae"], "n_points": row["n_points"],
                   "n_forecasts": row["n_forecasts"]}
        try:
            changed = registry.log_live_accuracy(str(version), metrics, step=int(row["n_points"]))
        except LookupError as exc:
            log.warning("monitor: %s", exc)
            missing.append(str(version))
            continue
        if changed:
            recorded.append(str(version))
    return tuple(recorded), tuple(missing)


def _scales(actual: pd.DataFrame, pairs: pd.DataFrame, freq: str, season_length: int) -> pd.DataFrame:
    """MASE scale of each series' history up to and including each cutoff in ``pairs``."""
    out = []
    for cutoff, wanted in pairs.groupby("cutoff", sort=True)["unique_id"]:
        history = actual[actual["unique_id"].isin(set(wanted)) & (actual["ds"] <= cutoff)]
        scale = mase_scales(history, freq, season_length)
        out.append(pd.DataFrame({"unique_id": scale.index, "cutoff": cutoff, "scale": scale.to_numpy()}))
    if not out:
        return pd.DataFrame({"unique_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[us]"),
                             "scale": pd.Series(dtype="float64")})
    return pd.concat(out, ignore_index=True).astype({"unique_id": "str", "cutoff": "datetime64[us]", "scale": "float64"})


def _timestamps(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).astype("datetime64[us]")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "unique_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[us]"),
        "ds": pd.Series(dtype="datetime64[us]"), "model_version": pd.Series(dtype="str"),
        "step": pd.Series(dtype="int32"), "model_name": pd.Series(dtype="str"),
        **{c: pd.Series(dtype="float64") for c in ("y", "yhat", "abs_error", "scale", "scaled_error")},
    })[ACCURACY_COLUMNS]


def _version(lake: Lake) -> int:
    version = lake.version(ACCURACY)
    return -1 if version is None else version
