"""The contract's columns: found in a file's header, their cells parsed into typed arrays.

Pure functions on Arrow tables, no I/O; ``schema`` checks what comes out of here. Cells
are read as text (CSV) or in their own types (Parquet) and only coerced where nothing can
be misread: ids are stripped text, ``ds`` is ISO 8601 text (never '01/02/2020') or a
timestamp / date, converted to tz-naive UTC, and ``y`` and covariates are decimal text or
numbers. A value that does not parse is not an error here: it gets a state (missing,
unparsable, not a number, not finite) that ``schema.check`` turns into a reason. Only a
column whose type cannot hold the contract's values at all raises SchemaError. The work is
vectorised over Arrow arrays; pandas parses ISO 8601 text that Arrow's fast cast refuses,
once per distinct value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lstm_pipeline.config import DataConfig

__all__ = [
    "DS_MISSING",
    "DS_UNPARSABLE",
    "MISSING",
    "NOT_A_NUMBER",
    "NOT_FINITE",
    "Parsed",
    "SchemaError",
    "contract_columns",
    "encode_ids",
    "extra_columns",
    "id_codes",
    "map_columns",
    "parse",
    "parse_iso8601",
]

# A decimal number, or nan / inf spelt as Arrow and Python accept them (any case).
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^(?i:[+-]?(?:nan|inf|infinity))$"
# Per-value states (0: ok).
_OK, MISSING, NOT_A_NUMBER, NOT_FINITE = 0, 1, 2, 3
DS_MISSING, DS_UNPARSABLE = 1, 2


class SchemaError(ValueError):
    """The table as a whole breaks the contract (e.g. a required column is missing)."""


@dataclass(frozen=True)
class Parsed:
    """A table's contract columns parsed, before the grid and duplicate checks.

    Every array has one entry per table row. ``ds`` is NaT where ``ds_state`` is not 0;
    ``ds_state`` holds 0 (ok), ``DS_MISSING`` or ``DS_UNPARSABLE``; ``value_states``
    hold 0 (ok), ``MISSING``, ``NOT_A_NUMBER`` or ``NOT_FINITE``.
    """

    table: pa.Table  # the cells as read, kept for the raw column of rejected rows
    names: dict[str, str]  # contract column -> column of ``table``
    rows: np.ndarray[Any, np.dtype[np.int64]] | None  # 1-based row number of each table row; None: 1..n
    ids: pa.DictionaryArray  # stripped text; its dictionary holds each distinct id once
    codes: np.ndarray[Any, np.dtype[np.int32]]  # the ids' dictionary indices, -1 for a missing id
    id_text: pa.ChunkedArray | None  # the id column as read when it is already stripped text
    id_empty: np.ndarray[Any, np.dtype[np.bool_]]
    ds: np.ndarray[Any, np.dtype[np.datetime64]]
    ds_state: np.ndarray[Any, np.dtype[np.int8]]
    values: dict[str, np.ndarray[Any, np.dtype[np.float64]]]
    value_states: dict[str, np.ndarray[Any, np.dtype[np.int8]]]

    def __len__(self) -> int:
        return len(self.ds)

    def row_numbers(self, positions: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.int64]]:
        return positions + 1 if self.rows is None else self.rows[positions]

    def key_ok(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        return ~self.id_empty & (self.ds_state == 0)


def contract_columns(columns: Sequence[str], cfg: DataConfig) -> dict[str, str]:
    """``{contract column: source column}`` for unique_id, ds, y and the covariates.

    Raises SchemaError naming what is missing, ambiguous or repeated in the header.
    """
    mapping = {cfg.id_col: "unique_id", cfg.time_col: "ds", cfg.target_col: "y"}
    columns = [str(c) for c in columns]
    missing = [f"{t!r} (from {s!r})" if s != t else repr(t) for s, t in mapping.items() if s not in columns]
    missing += [repr(c) + " (covariate)" for c in cfg.covariates if c not in columns]
    if missing:
        raise SchemaError(f"missing column(s) {', '.join(missing)}; found {columns}")
    for source, target in mapping.items():
        if source != target and target in columns:
            raise SchemaError(f"column {target!r} is present and also mapped from {source!r}")
    counts = Counter(columns)
    repeated = [c for c in [*mapping, *cfg.covariates] if counts[c] > 1]
    if repeated:
        raise SchemaError(f"column(s) {', '.join(map(repr, repeated))} appear more than once in the header")
    return {**{t: s for s, t in mapping.items()}, **{c: c for c in cfg.covariates}}


def map_columns(frame: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """The contract columns (unique_id, ds, y, covariates) renamed from ``cfg``'s names.

    Raises SchemaError naming what is missing or ambiguous; values are left as they are.
    """
    names = contract_columns([str(c) for c in frame.columns], cfg)
    return frame[list(names.values())].set_axis(list(names), axis=1)


def extra_columns(frame: pd.DataFrame | pa.Table | Sequence[str], cfg: DataConfig) -> tuple[str, ...]:
    """Columns of ``frame`` that the contract does not use (reported, not stored)."""
    if isinstance(frame, pa.Table):
        columns: Sequence[Any] = frame.column_names
    elif isinstance(frame, pd.DataFrame):
        columns = list(frame.columns)
    else:
        columns = frame
    used = {cfg.id_col, cfg.time_col, cfg.target_col, *cfg.covariates}
    return tuple(str(c) for c in columns if c not in used)


def parse(table: pa.Table, cfg: DataConfig, rows: np.ndarray[Any, np.dtype[np.int64]] | None = None) -> Parsed:
    """Parse the contract columns of ``table`` (its cells as read).

    Text cells are stripped of surrounding whitespace. ``ds``: ISO 8601 text only (so
    '01/02/2020' is never guessed), an offset is converted to UTC and then dropped, naive
    text is kept as it is; or a Parquet timestamp (zone-aware: to UTC) or date. ``y`` and
    covariates: decimal text, or Parquet numbers. ``rows``: the row number of each table
    row (default 1..n). Raises SchemaError for a missing column, or a column whose type
    cannot hold the contract's values (e.g. a boolean ``y``).
    """
    names = contract_columns(table.column_names, cfg)
    n = table.num_rows
    if rows is not None and len(rows) != n:
        raise ValueError(f"rows has {len(rows)} entries for {n} table rows")
    ids, id_text = encode_ids(_column(table, names["unique_id"]), names["unique_id"])
    codes = id_codes(ids)
    # Per distinct id, then per row; the extra last entry answers for code -1 (no id).
    empty = np.append(np.asarray(pc.fill_null(pc.equal(ids.dictionary, ""), True), dtype=bool), True)
    id_empty = empty[codes]
    ds, ds_state = _ds_column(_column(table, names["ds"]), names["ds"])
    values, states = {}, {}
    for column in ("y", *cfg.covariates):
        values[column], states[column] = _value_column(_column(table, names[column]), names[column])
    return Parsed(table, names, rows, ids, codes, id_text, id_empty, ds, ds_state, values, states)


# -- parsing one column --------------------------------------------------------------


_Column = pa.Array | pa.ChunkedArray


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    return table.column(table.column_names.index(name))


def _plain(array: _Column) -> _Column:
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def _cast(array: _Column, kind: pa.DataType, safe: bool = True) -> _Column:
    return array if array.type == kind else array.cast(kind, safe=safe)


def _numpy(array: _Column, dtype: str) -> np.ndarray[Any, Any]:
    """One contiguous NumPy array (nulls as NaN / NaT), copied only when it must be."""
    values = array.to_numpy() if isinstance(array, pa.ChunkedArray) else array.to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False)


def encode_ids(array: _Column, name: str) -> tuple[pa.DictionaryArray, pa.ChunkedArray | None]:
    """Ids dictionary-encoded, each distinct id stripped once: the checks then compare
    integers, and only the (short) dictionary is text. Second: the column itself when it
    is plain text that needs no stripping (else None)."""
    text = None
    if pa.types.is_dictionary(array.type) and pa.types.is_string(array.type.value_type):
        encoded = array
    else:
        array = _plain(array)
        if pa.types.is_integer(array.type):
            array = array.cast(pa.string())
        if not pa.types.is_string(array.type):
            raise SchemaError(f"column {name!r} (unique_id) has type {array.type}; expected text or integers")
        encoded = pc.dictionary_encode(array)
        text = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
    if isinstance(encoded, pa.ChunkedArray):
        if encoded.num_chunks == 0:
            return pa.array([], type=pa.string()).dictionary_encode(), None
        encoded = encoded.unify_dictionaries().combine_chunks() if encoded.num_chunks > 1 else encoded.chunk(0)
    stripped = pc.utf8_trim_whitespace(encoded.dictionary)
    if text is not None and stripped.equals(encoded.dictionary):
        return encoded, text  # our own encoding has each entry once, and none needs stripping
    # Stripping can make two entries equal (' a', 'a'): encode the stripped entries again.
    again = stripped.dictionary_encode()
    return pa.DictionaryArray.from_arrays(again.indices.take(encoded.indices), again.dictionary), None


def id_codes(ids: pa.DictionaryArray) -> np.ndarray[Any, np.dtype[np.int32]]:
    indices = ids.indices if not ids.indices.null_count else pc.fill_null(ids.indices, -1)
    return indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def _ds_column(
    array: _Column, name: str
) -> tuple[np.ndarray[Any, np.dtype[np.datetime64]], np.ndarray[Any, np.dtype[np.int8]]]:
    array = _plain(array)
    kind = array.type
    if pa.types.is_timestamp(kind):
        # Arrow keeps zone-aware instants in UTC: dropping the zone keeps the UTC wall time.
        stamps = _numpy(_cast(_cast(array, pa.timestamp(kind.unit)), pa.timestamp("us"), safe=False), "datetime64[us]")
    elif pa.types.is_date(kind):
        stamps = _numpy(array.cast(pa.timestamp("us")), "datetime64[us]")
    elif pa.types.is_string(kind):
        try:
            # Arrow's own parser takes the common naive forms, fast; it refuses anything odd.
            stamps = _numpy(array.cast(pa.timestamp("us")), "datetime64[us]")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pc.utf8_trim_whitespace(array)
            stamps = parse_iso8601(text)
            state = np.where(np.isnat(stamps), DS_UNPARSABLE, 0).astype(np.int8)
            state[np.asarray(pc.fill_null(pc.equal(text, ""), True), dtype=bool)] = DS_MISSING
            return stamps, state
    else:
        raise SchemaError(f"column {name!r} (ds) has type {kind}; expected timestamps, dates or ISO 8601 text")
    return stamps, np.isnat(stamps).astype(np.int8) * DS_MISSING


def parse_iso8601(text: _Column) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """Stripped ISO 8601 text -> datetime64[us], tz-naive UTC; NaT where it does not parse.

    pandas' ISO 8601 parser, once per distinct text (offsets converted per value).
    """
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    encoded = text.dictionary_encode()
    distinct = pd.Series(encoded.dictionary.to_pylist(), dtype=object)
    parsed = pd.to_datetime(distinct, utc=True, format="ISO8601", errors="coerce")
    lookup = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[us]")
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    present = ~np.asarray(encoded.indices.is_null(), dtype=bool)
    out[present] = lookup[indices[present].astype(np.int64)]
    return out


def _value_column(
    array: _Column, name: str
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.int8]]]:
    array = _plain(array)
    kind = array.type
    if pa.types.is_string(kind):
        try:
            numbers = array.cast(pa.float64())  # fast path: every cell a number
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pc.utf8_trim_whitespace(array)
            is_number = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
            numbers = pc.if_else(is_number, text, pa.scalar(None, pa.string())).cast(pa.float64())
            empty = np.asarray(pc.fill_null(pc.equal(text, ""), True), dtype=bool)
            values = _numpy(numbers, "float64")
            states = np.where(np.asarray(is_number, dtype=bool), _OK, NOT_A_NUMBER).astype(np.int8)
            states[empty] = MISSING
            states[(states == _OK) & ~np.isfinite(values)] = NOT_FINITE
            return values, states
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers = _cast(array, pa.float64(), safe=False)
    else:
        raise SchemaError(f"column {name!r} has type {kind}; expected numbers or decimal text")
    values = _numpy(numbers, "float64")
    states = (~np.isfinite(values)).astype(np.int8) * NOT_FINITE
    if numbers.null_count:
        states[np.asarray(numbers.is_null(), dtype=bool)] = MISSING
    return values, states
