"""The data contract and its checks: pure functions on tables, no I/O.

Long format (Nixtla convention): ``unique_id`` (str), ``ds`` (datetime64[us], tz-naive
UTC), ``y`` (float64) and optional float64 covariates. One frequency per lake.

A table as read (CSV cells as text, or Parquet's own types) is parsed by
``lstm_pipeline.lake.columns`` (re-exported here: ``parse``, ``Parsed``, ``contract_columns``,
...) and then split here into good rows in the contract and bad rows with a short,
stable reason. Nothing is silently coerced or dropped: every input row ends up in exactly
one of the two. The checks are vectorised over Arrow arrays (10 M rows in about a
second); Python only runs per rejected row, to write its reason and raw cells, and per
distinct timestamp, for the grid.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.tseries.frequencies import to_offset

from lstm_pipeline.lake import columns
from lstm_pipeline.lake.columns import (
    Parsed,
    SchemaError,
    contract_columns,
    extra_columns,
    map_columns,
    parse,
)
from lstm_pipeline.config import DataConfig

__all__ = [
    "BAD_COLUMNS",
    "DUPLICATE",
    "REQUIRED",
    "Checked",
    "FrequencyVotes",
    "Parsed",
    "SchemaError",
    "Validated",
    "check",
    "contract_columns",
    "extra_columns",
    "frequency_votes",
    "infer_freq",
    "infer_freq_parsed",
    "map_columns",
    "normalize_freq",
    "lies_on",
    "parse",
    "period_of",
    "reason_kind",
    "validate",
]

REQUIRED = ("unique_id", "ds", "y")
BAD_COLUMNS = ("batch_id", "source", "row", "reason", "raw")
DUPLICATE = "duplicate (unique_id, ds) in batch"
# Inferring over every series of a large first batch costs seconds and adds nothing.
_MAX_SERIES_FOR_INFERENCE = 100


@dataclass(frozen=True)
class Validated:
    """``good``: rows in the contract. ``bad``: one row per rejected input row
    (columns ``BAD_COLUMNS``). ``freq``: the normalised frequency the grid was checked on."""

    good: pd.DataFrame
    bad: pd.DataFrame
    freq: str


@dataclass(frozen=True)
class FrequencyVotes:
    """``votes``: pandas alias -> series whose timestamps follow it. ``asked``: series with
    3 or more distinct timestamps that were asked (irregular ones abstain)."""

    votes: dict[str, int]
    asked: int

    def describe(self) -> str:
        """'MS (3 series), D (2 series)', most common first."""
        ranked = sorted(self.votes.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{alias} ({n} series)" for alias, n in ranked)


@dataclass(frozen=True)
class Checked:
    """``good``: an Arrow table in the contract (unique_id string, ds timestamp[us],
    y and covariates float64). ``bad``: rejected rows (``BAD_COLUMNS``), by row number."""

    good: pa.Table
    bad: pd.DataFrame
    freq: str | None
    series: pa.Array  # the distinct ids of the good rows (text)


def normalize_freq(freq: str) -> str:
    """The canonical pandas alias ('W' -> 'W-SUN'); ValueError if pandas does not know it."""
    try:
        # pandas 2 still accepts aliases that pandas 3 removed ('M', 'H'), with a warning:
        # refuse them on both, so a lake's frequency means the same on either.
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            return str(to_offset(freq).freqstr)
    except (ValueError, TypeError, FutureWarning) as exc:
        raise ValueError(f"unknown frequency {freq!r}: {exc}") from exc


def reason_kind(reason: str) -> str:
    """The stable part of a reason, without the offending value: 'y not finite: 'nan'' -> 'y not finite'."""
    return reason.split(": ", 1)[0]


def infer_freq(ds_by_series: pd.DataFrame) -> str:
    """The most common pandas alias across series (e.g. 'MS', 'D', 'h').

    ``ds_by_series`` has columns unique_id and ds (timestamps or ISO 8601 text; rows
    that do not parse are ignored). Each series with at least three distinct timestamps
    votes with ``pd.infer_freq`` (irregular ones abstain); at most the first 100 such
    series by id are asked. Ties go to the alphabetically first alias. Raises ValueError
    saying why when no series can vote.
    """
    if not {"unique_id", "ds"} <= set(ds_by_series.columns):
        raise ValueError("cannot infer the frequency: need columns unique_id and ds")
    ds = ds_by_series["ds"]
    if not pd.api.types.is_datetime64_any_dtype(ds):
        stamps = columns.parse_iso8601(pa.array(ds.astype("str").fillna("").str.strip(), type=pa.string()))
    elif isinstance(ds.dtype, pd.DatetimeTZDtype):
        stamps = ds.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    else:
        stamps = ds.to_numpy().astype("datetime64[us]")
    unique_id = pa.array([None if pd.isna(v) else str(v) for v in ds_by_series["unique_id"]], type=pa.string())
    ids, _ = columns.encode_ids(unique_id, "unique_id")
    codes = columns.id_codes(ids)
    return _infer(codes, ids.dictionary, stamps, codes >= 0)


def infer_freq_parsed(parts: Sequence[Parsed]) -> str:
    """``infer_freq`` over the rows of ``parts`` whose key parsed (see ``infer_freq``)."""
    return _winner(frequency_votes(parts))


def frequency_votes(parts: Sequence[Parsed]) -> FrequencyVotes:
    """How the series of ``parts`` vote (see ``infer_freq``): every parsed row counts,
    whatever the later checks (grid, values) make of it."""
    if len(parts) == 1:
        return _votes(parts[0].codes, parts[0].ids.dictionary, parts[0].ds, parts[0].key_ok())
    text = pa.concat_arrays([p.ids.dictionary.take(pa.array(np.maximum(p.codes, 0))) for p in parts] or
                            [pa.array([], type=pa.string())])
    ids = text.dictionary_encode()
    return _votes(columns.id_codes(ids), ids.dictionary,
                  np.concatenate([p.ds for p in parts]) if parts else np.array([], dtype="datetime64[us]"),
                  np.concatenate([p.key_ok() for p in parts]) if parts else np.array([], dtype=bool))


def lies_on(freq: str, grid: str) -> bool:
    """True if every point of ``freq``'s grid lies on ``grid``'s: the same grid under another
    alias (QS-JAN, QS-OCT) or a coarser one on it (QS on MS); not a finer one, nor another
    (ME on MS, W-MON on W-SUN). Checked on two years of ``freq``'s points."""
    points = pd.date_range("2001-01-01", periods=24, freq=freq)
    return bool(_on_grid(points, grid).all())


def period_of(freq: str) -> pd.Timedelta:
    """The mean length of one period of ``freq`` over twelve periods (a month: 30.4 days,
    whether it starts or ends the month), to order frequencies."""
    offset = to_offset(freq)
    on_grid = pd.Timestamp("2001-01-01") + offset  # anchored offsets roll onto their grid first
    return pd.Timedelta((on_grid + 12 * offset) - on_grid) / 12


def check(parsed: Parsed, freq: str | None, source: str, batch_id: str) -> Checked:
    """Finish the checks: the grid of ``freq`` and duplicate keys; split good and bad rows.

    Each rejected row gets the FIRST failing check, in this order: unique_id empty;
    ds missing / unparsable; ds off the grid; y missing / not a number / not finite;
    each covariate likewise; duplicate key. Duplicates of (unique_id, ds) inside the
    table are ALL rejected, whatever their values: we cannot know which copy is right,
    so none of them is allowed to land. ``freq`` may be None only when no row has a key
    (an empty table, or one whose every id or ds is missing or unparsable).
    """
    n = len(parsed)
    if freq is None and parsed.key_ok().any():
        raise ValueError("check needs a frequency for a table with keys")
    freq = normalize_freq(freq) if freq else None
    # The first failing check of each row, as an index into ``kinds``; -1 passes.
    kinds: list[str] = []
    first = np.full(n, -1, dtype=np.int16)

    def reject(mask: np.ndarray[Any, np.dtype[np.bool_]], kind: str) -> None:
        hit = mask & (first < 0)
        if hit.any():
            kinds.append(kind)
            first[hit] = len(kinds) - 1

    reject(parsed.id_empty, "unique_id empty")
    reject(parsed.ds_state == columns.DS_MISSING, "ds missing")
    reject(parsed.ds_state == columns.DS_UNPARSABLE, "ds unparsable")
    if freq is not None:
        reject(_off_grid(parsed.ds, freq), f"ds off the {freq} grid")
    key_ok = first < 0
    for column, states in parsed.value_states.items():
        reject(states == columns.MISSING, f"{column} missing")
        reject(states == columns.NOT_A_NUMBER, f"{column} not a number")
        reject(states == columns.NOT_FINITE, f"{column} not finite")
    reject(_duplicated(parsed.codes, parsed.ds, key_ok), DUPLICATE)

    good_mask = first < 0
    keep = slice(None) if good_mask.all() else good_mask
    if parsed.id_text is not None:  # the column as read: no need to rebuild the text
        ids = parsed.id_text if good_mask.all() else parsed.id_text.filter(pa.array(good_mask))
    else:
        ids = pa.chunked_array([parsed.ids.dictionary.take(pa.array(parsed.codes[keep]))])
    good = pa.table({
        "unique_id": ids,
        "ds": pa.array(parsed.ds[keep], type=pa.timestamp("us")),
        **{c: pa.array(v[keep], type=pa.float64()) for c, v in parsed.values.items()},
    })
    present = np.bincount(parsed.codes[good_mask], minlength=len(parsed.ids.dictionary)) > 0
    series = parsed.ids.dictionary.filter(pa.array(present))
    return Checked(good=good, bad=_bad_rows(parsed, first, kinds, source, batch_id), freq=freq, series=series)


def validate(
    frame: pd.DataFrame, cfg: DataConfig, freq: str | None, source: str, batch_id: str
) -> Validated:
    """Split a raw all-text table into good rows and quarantined rows (pandas in and out).

    ``frame``: the table as read, every cell text (None/NaN for a missing cell), columns
    named as in the file. Row numbers are 1-based positions in ``frame``. ``freq``: the
    grid to check; None infers it from this frame (``infer_freq``). Raises SchemaError
    if a required or covariate column is missing, ValueError if ``freq`` is unknown or
    cannot be inferred. See ``parse`` and ``check`` for the rules.
    """
    table = pa.Table.from_arrays(
        [pa.array([None if pd.isna(v) else str(v) for v in frame[c].astype(object)], type=pa.string())
         for c in frame.columns],
        names=[str(c) for c in frame.columns],
    )
    parsed = parse(table, cfg)
    freq = normalize_freq(freq) if freq is not None else infer_freq_parsed([parsed])
    result = check(parsed, freq, source, batch_id)
    good = result.good.to_pandas()
    good["unique_id"] = good["unique_id"].astype("str")
    good["ds"] = good["ds"].astype("datetime64[us]")
    return Validated(good=good, bad=result.bad, freq=freq)


# -- checks --------------------------------------------------------------------------


def _infer(
    codes: np.ndarray[Any, np.dtype[np.int32]],
    names: pa.Array,
    ds: np.ndarray[Any, np.dtype[np.datetime64]],
    valid: np.ndarray[Any, np.dtype[np.bool_]],
) -> str:
    return _winner(_votes(codes, names, ds, valid))


def _winner(found: FrequencyVotes) -> str:
    """The most common alias (ties: the alphabetically first); ValueError saying why if none."""
    if not found.votes:
        why = "series are irregular" if found.asked else "no series has 3 or more distinct timestamps"
        raise ValueError(f"cannot infer the frequency: {why}; set data.freq")
    return max(sorted(found.votes), key=lambda alias: found.votes[alias])


def _votes(
    codes: np.ndarray[Any, np.dtype[np.int32]],
    names: pa.Array,
    ds: np.ndarray[Any, np.dtype[np.datetime64]],
    valid: np.ndarray[Any, np.dtype[np.bool_]],
) -> FrequencyVotes:
    """Vote over series, in id order, each with 3 or more distinct timestamps.

    ``codes``: each row's index into ``names`` (the distinct ids); ``valid``: rows to use.
    """
    everything = bool(valid.all())
    valid = valid & (codes >= 0) & ~np.isnat(ds)
    everything = everything and bool(valid.all())
    used = codes if everything else codes[valid]
    present = np.bincount(used, minlength=len(names)) > 0 if len(used) else np.zeros(len(names), bool)
    text = np.asarray(names.to_pylist(), dtype=object)
    order = np.flatnonzero(present)[np.argsort(text[present].astype(str), kind="stable")]
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(order))
    votes: Counter[str] = Counter()
    asked = 0
    # Take ids in slices: a large first batch only pays for the series that get asked.
    step = _MAX_SERIES_FOR_INFERENCE
    for start in range(0, len(order), step):
        chosen = np.zeros(len(names) + 1, dtype=bool)
        chosen[order[start:start + step]] = True
        mask = chosen[codes] if everything else valid & chosen[codes]
        part = pd.DataFrame({"r": rank[codes[mask]], "ds": ds[mask]}).drop_duplicates()
        for _, stamps in part.sort_values(["r", "ds"], kind="stable").groupby("r", sort=True)["ds"]:
            if len(stamps) < 3:
                continue
            asked += 1
            alias = _infer_one(pd.DatetimeIndex(stamps))
            if alias is not None:
                votes[alias] += 1
            if asked >= _MAX_SERIES_FOR_INFERENCE:
                break
        if asked >= _MAX_SERIES_FOR_INFERENCE:
            break
    return FrequencyVotes(dict(votes), asked)


def _infer_one(stamps: pd.DatetimeIndex) -> str | None:
    # pandas 3 warns that infer_freq will return an offset and has an option to ask for
    # that form now; pandas 2 has no such option and returns the alias. Accept both.
    found: Any
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            found = pd.infer_freq(stamps)
    except pd.errors.OptionError:
        found = pd.infer_freq(stamps)
    if found is None:
        return None
    return str(found) if isinstance(found, str) else str(found.freqstr)


def _off_grid(ds: np.ndarray[Any, np.dtype[np.datetime64]], freq: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True where a timestamp lies off the ``freq`` grid (NaT counts as on it).

    Checked once per distinct timestamp (a lake has few), then mapped back to rows.
    """
    stamps = pa.array(ds, type=pa.timestamp("us"), from_pandas=True)
    distinct = pc.unique(stamps.drop_null())
    index = pd.DatetimeIndex(distinct.to_numpy(zero_copy_only=False).astype("datetime64[us]"))
    off = ~_on_grid(index, freq)
    if not off.any():
        return np.zeros(len(ds), dtype=bool)
    return np.asarray(pc.fill_null(pc.is_in(stamps, value_set=distinct.filter(pa.array(off))), False), dtype=bool)


def _on_grid(index: pd.DatetimeIndex, freq: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    offset = to_offset(freq)
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
    return np.asarray(on, dtype=bool)


def _duplicated(
    codes: np.ndarray[Any, np.dtype[np.int32]],
    ds: np.ndarray[Any, np.dtype[np.datetime64]],
    among: np.ndarray[Any, np.dtype[np.bool_]],
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Rows (of those in ``among``) whose (id code, ds) another row in ``among`` shares."""
    out = np.zeros(len(ds), dtype=bool)
    every = bool(among.all())
    positions = None if every else np.flatnonzero(among)
    ids = codes if positions is None else codes[positions]
    stamps = ds.view(np.int64) if positions is None else ds[positions].view(np.int64)
    if len(ids) < 2:
        return out
    # Fast path for the usual file, grouped by series and sorted by time: inside each run
    # of one id the time strictly increases, and no id starts two runs.
    same = ids[1:] == ids[:-1]
    if not (same & (stamps[1:] <= stamps[:-1])).any():
        heads = ids[np.concatenate([[True], ~same])]
        if not (np.bincount(heads) > 1).any():
            return out
    repeated = pd.DataFrame({"i": ids, "d": stamps}).duplicated(keep=False).to_numpy()
    if positions is None:
        return repeated
    out[positions[repeated]] = True
    return out


# -- rejected rows -------------------------------------------------------------------


def _bad_rows(
    parsed: Parsed, first: np.ndarray[Any, np.dtype[np.int16]], kinds: list[str], source: str, batch_id: str
) -> pd.DataFrame:
    bad = np.flatnonzero(first >= 0)
    taken = parsed.table.take(pa.array(bad, type=pa.int64())) if len(bad) else parsed.table.slice(0, 0)
    cells = {name: _as_text(taken.column(i)) for i, name in enumerate(taken.column_names)}
    reasons = []
    for j, position in enumerate(bad.tolist()):
        kind = kinds[first[position]]
        reasons.append(_reason(kind, j, cells, parsed.names, parsed.ds[position]))
    raw = [json.dumps({name: values[j] for name, values in cells.items()}, ensure_ascii=False) for j in range(len(bad))]
    return pd.DataFrame({
        "batch_id": pd.Series([batch_id] * len(bad), dtype="str"),
        "source": pd.Series([source] * len(bad), dtype="str"),
        "row": pd.Series(parsed.row_numbers(bad), dtype="int64"),
        "reason": pd.Series(reasons, dtype="str"),
        "raw": pd.Series(raw, dtype="str"),
    })


def _reason(kind: str, j: int, cells: dict[str, list[str | None]], names: dict[str, str], stamp: Any) -> str:
    """The message of one rejected row: its kind and, where useful, the offending value."""
    if kind == "ds unparsable":
        return f"ds unparsable: {_stripped(cells[names['ds']][j])!r}"
    if kind.startswith("ds off the"):
        return f"{kind}: {_fmt(pd.Timestamp(stamp))}"
    for suffix in (" not a number", " not finite"):
        if kind.endswith(suffix):
            column = kind[: -len(suffix)]
            return f"{kind}: {_stripped(cells[names[column]][j])!r}"
    return kind


def _stripped(cell: str | None) -> str:
    return "" if cell is None else cell.strip()


def _as_text(column: pa.ChunkedArray) -> list[str | None]:
    """Cells as text for the raw column: text as read, other types as Arrow prints them."""
    try:
        return list(column.cast(pa.string()).to_pylist())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return [None if v is None else str(v) for v in column.to_pylist()]


def _fmt(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.isoformat(sep=" ")
