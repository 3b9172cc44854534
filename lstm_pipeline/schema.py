"""The data contract and its checks: pure functions on DataFrames, no I/O.

Long format (Nixtla convention): ``unique_id`` (str), ``ds`` (datetime64[us], tz-naive
UTC), ``y`` (float64) and optional float64 covariates. One frequency per lake.

``validate`` takes a raw table whose cells are all text, exactly as read from a file,
and splits it into good rows in the contract and bad rows with a short, stable reason.
Nothing is silently coerced or dropped: every input row ends up in exactly one of the two.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from lstm_pipeline.config import DataConfig

__all__ = [
    "BAD_COLUMNS",
    "REQUIRED",
    "SchemaError",
    "Validated",
    "extra_columns",
    "infer_freq",
    "map_columns",
    "normalize_freq",
    "reason_kind",
    "validate",
]

REQUIRED = ("unique_id", "ds", "y")
BAD_COLUMNS = ("batch_id", "source", "row", "reason", "raw")
DUPLICATE = "duplicate (unique_id, ds) in batch"
# Inferring over every series of a large first batch costs seconds and adds nothing.
_MAX_SERIES_FOR_INFERENCE = 500


class SchemaError(ValueError):
    """The table as a whole breaks the contract (e.g. a required column is missing)."""


@dataclass(frozen=True)
class Validated:
    """``good``: rows in the contract. ``bad``: one row per rejected input row
    (columns ``BAD_COLUMNS``). ``freq``: the normalised frequency the grid was checked on."""

    good: pd.DataFrame
    bad: pd.DataFrame
    freq: str


def normalize_freq(freq: str) -> str:
    """The canonical pandas alias ('W' -> 'W-SUN'); ValueError if pandas does not know it."""
    try:
        return str(to_offset(freq).freqstr)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unknown frequency {freq!r}: {exc}") from exc


def reason_kind(reason: str) -> str:
    """The stable part of a reason, without the offending value: 'y not finite: 'nan'' -> 'y not finite'."""
    return reason.split(": ", 1)[0]


def map_columns(frame: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """The contract columns (unique_id, ds, y, covariates) renamed from ``cfg``'s names.

    Raises SchemaError naming what is missing or ambiguous; values are left as they are.
    """
    mapping = {cfg.id_col: "unique_id", cfg.time_col: "ds", cfg.target_col: "y"}
    columns = [str(c) for c in frame.columns]
    missing = [f"{t!r} (from {s!r})" if s != t else repr(t) for s, t in mapping.items() if s not in columns]
    missing += [repr(c) + " (covariate)" for c in cfg.covariates if c not in columns]
    if missing:
        raise SchemaError(f"missing column(s) {', '.join(missing)}; found {columns}")
    for source, target in mapping.items():
        if source != target and target in columns:
            raise SchemaError(f"column {target!r} is present and also mapped from {source!r}")
    wanted = [*mapping, *cfg.covariates]
    return frame[wanted].set_axis([*REQUIRED, *cfg.covariates], axis=1)


def extra_columns(frame: pd.DataFrame, cfg: DataConfig) -> tuple[str, ...]:
    """Columns of ``frame`` that the contract does not use (reported, not stored)."""
    used = {cfg.id_col, cfg.time_col, cfg.target_col, *cfg.covariates}
    return tuple(str(c) for c in frame.columns if c not in used)


def infer_freq(ds_by_series: pd.DataFrame) -> str:
    """The most common pandas alias across series (e.g. 'MS', 'D', 'h').

    ``ds_by_series`` has columns unique_id and ds (timestamps or ISO 8601 text; rows
    that do not parse are ignored). Each series with at least three distinct timestamps
    votes with ``pd.infer_freq`` (irregular ones abstain); at most the first 500 such
    series by id are asked. Ties go to the alphabetically first alias. Raises ValueError
    saying why when no series can vote.
    """
    if not {"unique_id", "ds"} <= set(ds_by_series.columns):
        raise ValueError("cannot infer the frequency: need columns unique_id and ds")
    ds = ds_by_series["ds"]
    if not pd.api.types.is_datetime64_any_dtype(ds):
        ds = _parse_ds(_text(ds))
    elif isinstance(ds.dtype, pd.DatetimeTZDtype):
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    keys = pd.DataFrame({"unique_id": ds_by_series["unique_id"].to_numpy(), "ds": ds.to_numpy()})
    keys = keys.dropna().drop_duplicates().sort_values(["unique_id", "ds"], kind="stable")
    votes: Counter[str] = Counter()
    asked = 0
    for _, stamps in keys.groupby("unique_id", sort=True)["ds"]:
        if len(stamps) < 3:
            continue
        asked += 1
        alias = _infer_one(pd.DatetimeIndex(stamps))
        if alias is not None:
            votes[alias] += 1
        if asked >= _MAX_SERIES_FOR_INFERENCE:
            break
    if not votes:
        why = "series are irregular" if asked else "no series has 3 or more distinct timestamps"
        raise ValueError(f"cannot infer the frequency: {why}; set data.freq")
    return max(sorted(votes), key=lambda alias: votes[alias])


def validate(
    frame: pd.DataFrame, cfg: DataConfig, freq: str | None, source: str, batch_id: str
) -> Validated:
    """Split a raw all-text table into good rows and quarantined rows.

    ``frame``: the table as read, every cell text (None/NaN for a missing cell), columns
    named as in the file. Row numbers are 1-based positions in ``frame`` (= data rows of
    the file, header excluded). Cells are stripped of surrounding whitespace. ``freq``:
    the grid to check; None infers it from this frame (``infer_freq``). Raises
    SchemaError if a required or covariate column is missing, ValueError if ``freq`` is
    unknown or cannot be inferred.

    Each rejected row gets the FIRST failing check, in this order: unique_id empty;
    ds missing / unparsable (ISO 8601 only, so '01/02/2020' is never guessed; an offset
    is converted to UTC, then dropped); ds off the grid; y missing / not a number / not
    finite; each covariate likewise; duplicate key. Duplicates of (unique_id, ds) inside
    the frame are ALL rejected, whatever their values: we cannot know which copy is
    right, so none of them is allowed to land.
    """
    mapped = map_columns(frame, cfg)
    n = len(mapped)
    reasons = np.full(n, None, dtype=object)

    def reject(mask: np.ndarray[Any, np.dtype[np.bool_]], messages: list[str] | str) -> None:
        mask = mask & pd.isna(reasons)
        if isinstance(messages, str):
            reasons[mask] = messages
        else:
            reasons[mask] = np.asarray(messages, dtype=object)[mask]

    ids = _text(mapped["unique_id"])
    reject((ids == "").to_numpy(), "unique_id empty")

    ds_text = _text(mapped["ds"])
    ds = _parse_ds(ds_text)
    unparsed = ds.isna().to_numpy()
    reject(unparsed & (ds_text == "").to_numpy(), "ds missing")
    reject(unparsed, [f"ds unparsable: {t!r}" for t in ds_text])

    if freq is None:
        ok = pd.isna(reasons)
        freq = infer_freq(pd.DataFrame({"unique_id": ids[ok], "ds": ds[ok]}))
    freq = normalize_freq(freq)
    off = (~unparsed) & ~_on_grid(ds, freq)
    reject(off, [f"ds off the {freq} grid: {_fmt(t)}" if o else "" for t, o in zip(ds, off, strict=True)])
    key_ok = pd.isna(reasons)

    values: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    for column in ("y", *cfg.covariates):
        text = _text(mapped[column])
        values[column], messages = _parse_float(column, text)
        reject(messages.notna().to_numpy(), messages.tolist())

    dup = pd.DataFrame({"u": ids, "d": ds}).duplicated(keep=False).to_numpy() & key_ok
    reject(dup, DUPLICATE)

    good_mask = pd.isna(reasons)
    good = pd.DataFrame({
        "unique_id": ids[good_mask].astype("str"),
        "ds": ds[good_mask].astype("datetime64[us]"),
        **{c: v[good_mask] for c, v in values.items()},
    }).reset_index(drop=True)
    bad_rows = np.flatnonzero(~good_mask)
    bad = pd.DataFrame({
        "batch_id": pd.Series([batch_id] * len(bad_rows), dtype="str"),
        "source": pd.Series([source] * len(bad_rows), dtype="str"),
        "row": pd.Series(bad_rows + 1, dtype="int64"),
        "reason": pd.Series(reasons[bad_rows], dtype="str"),
        "raw": pd.Series([_raw_json(frame, int(i)) for i in bad_rows], dtype="str"),
    })
    return Validated(good=good, bad=bad, freq=freq)


def _text(column: pd.Series) -> pd.Series:
    """Cells as stripped text, '' for a missing cell; positional (0..n-1) index."""
    return column.astype("str").fillna("").str.strip().reset_index(drop=True)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _parse_ds(text: pd.Series) -> pd.Series:
    """ISO 8601 text -> datetime64[us], tz-naive UTC (offsets converted per row); NaT if not."""
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    return parsed.dt.tz_convert(None).astype("datetime64[us]")


def _on_grid(ds: pd.Series, freq: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True where a timestamp lies on the ``freq`` grid (NaT counts as on it)."""
    offset = to_offset(freq)
    index = pd.DatetimeIndex(ds)
    if isinstance(offset, pd.offsets.Tick):
        on = index == index.floor(offset)
    elif isinstance(offset, pd.offsets.Day):
        # Calendar days (not a Tick since pandas 3): midnight. Multiples ('2D') have no
        # natural phase, so only the day boundary is checked.
        on = index == index.normalize()
    else:
        # Anchored offsets (MS, W-SUN, QS, B, ...): midnight, and stepping back one
        # period then forward again returns to the same instant only on the grid.
        on = (index == index.normalize()) & (index - offset + offset == index)
    return np.asarray(on | index.isna(), dtype=bool)


def _infer_one(stamps: pd.DatetimeIndex) -> str | None:
    # pandas 3 warns that infer_freq will return an offset; ask for that form now.
    with pd.option_context("future.infer_freq_returns_offset", True):
        found: Any = pd.infer_freq(stamps)
    if found is None:
        return None
    return str(found) if isinstance(found, str) else str(found.freqstr)


def _parse_float(
    column: str, text: pd.Series
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], pd.Series]:
    """Finite floats and, where a cell fails, the reason (None where it passes)."""
    numbers = pd.to_numeric(text.astype(object), errors="coerce")
    values = np.asarray(numbers, dtype="float64")
    reasons = pd.Series([None] * len(text), dtype=object)
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        reasons.iat[i] = _float_reason(column, str(text.iat[i]))
    return values, reasons


def _float_reason(column: str, cell: str) -> str:
    if cell == "":
        return f"{column} missing"
    try:
        number = float(cell)
    except ValueError:
        return f"{column} not a number: {cell!r}"
    # float() also takes forms pandas refuses ('1_000'); those are not numbers here.
    return f"{column} not finite: {cell!r}" if not math.isfinite(number) else f"{column} not a number: {cell!r}"


def _fmt(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.isoformat(sep=" ")


def _raw_json(frame: pd.DataFrame, position: int) -> str:
    """The input row as it was read, as JSON text: {column: cell or null}."""
    row = frame.iloc[position]
    cells = {str(k): (None if _missing(v) else str(v)) for k, v in row.items()}
    return json.dumps(cells, ensure_ascii=False)
