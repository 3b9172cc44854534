"""Every read and write of tables: Delta Lake tables under one root (local folder or URI).

No other module touches Parquet or Delta. Each write is ONE atomic Delta commit, so a
crash leaves the previous version intact, and earlier versions stay readable (time
travel) for lineage: a model records the ``series`` version it was trained on.

Tables (one folder each under the root):

* ``series``      key (unique_id, ds): merge-upserted by ingest; columns unique_id (str),
  ds (timestamp, tz-naive UTC), y (float64), covariates (float64) and the lineage
  columns ``batch_id`` and ``ingested_at``.
* ``quarantine``  key (batch_id, row): rejected input rows with their reason.
* ``batches``     key content_hash: one row per ingested source file, with its ``freq``.
* ``forecasts``, ``accuracy``: written by forecast and monitor.
* ``runs``        key (run_id, stage): what each pipeline run's stages did (``lstm_pipeline.stages.runs``).

On S3 (``s3://`` roots; credentials and endpoint from the usual ``AWS_*`` variables or
``storage_options``) each commit is a conditional write of the next log entry
(``If-None-Match: *``), so two writers can never both commit the same version: the loser
gets a conflict, and the write is redone on the new table state. deltalake >= 1.6 does
this by itself and no longer supports a DynamoDB locking provider (docs/PRODUCTION.md).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from lstm_pipeline.config import LakeConfig
from lstm_pipeline.errors import PipelineError

__all__ = [
    "ACCURACY",
    "BATCHES",
    "FORECASTS",
    "LINEAGE_COLUMNS",
    "QUARANTINE",
    "RUNS",
    "SERIES",
    "Lake",
    "LakeError",
    "WriteResult",
]

SERIES, QUARANTINE, BATCHES, FORECASTS, ACCURACY, RUNS = (
    "series", "quarantine", "batches", "forecasts", "accuracy", "runs",
)
# Written by ingest on every series row; dropped by ``read_series``.
LINEAGE_COLUMNS = ("batch_id", "ingested_at")

_log = logging.getLogger(__name__)
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Concurrent writers (two flow runs, a backfill) make merges fail with CommitFailedError;
# the merge is then recomputed against the new table state, a few times with jitter.
_MAX_ATTEMPTS = 8
_BACKOFF_S = 0.05
_S3_SCHEMES = ("s3://", "s3a://")


class LakeError(PipelineError):
    """A table could not be read or written; the message names the table."""


@dataclass(frozen=True)
class WriteResult:
    """What one write did.

    ``version`` is the table version after the write; unchanged if nothing was written,
    and -1 if nothing was written and the table still does not exist.
    """

    table: str
    version: int
    inserted: int
    updated: int
    unchanged: int  # source rows that matched an existing row with equal compare values


class Lake:
    """Delta tables under ``root``: a local folder (made absolute) or an object-store URI."""

    def __init__(self, root: str | Path, storage_options: Mapping[str, str] | None = None) -> None:
        text = os.fspath(root)
        # Local paths are made absolute so that a flow's working directory does not matter.
        self.root: str = text.rstrip("/") if "://" in text else os.path.abspath(text)
        self._options: dict[str, str] | None = dict(storage_options) if storage_options else None
        if self.root.startswith(_S3_SCHEMES):
            _note_s3_commits(self.root, _s3_commit_settings(self._options or {}))

    @classmethod
    def from_config(cls, cfg: LakeConfig) -> Lake:
        return cls(cfg.root, cfg.storage_options)

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- reading ----------------------------------------------------------------------

    def uri(self, table: str) -> str:
        if not _TABLE_NAME.match(table):
            raise LakeError(f"invalid table name {table!r}")
        return f"{self.root}/{table}"

    def exists(self, table: str) -> bool:
        try:
            return bool(DeltaTable.is_deltatable(self.uri(table), self._options))
        except DeltaError as exc:
            raise LakeError(f"{table}: cannot check {self.uri(table)}: {exc}") from exc

    def version(self, table: str) -> int | None:
        """The table's latest version, None if the table does not exist."""
        if not self.exists(table):
            return None
        return self._open(table).version()

    def columns(self, table: str) -> list[str]:
        """Column names of the table's latest version; empty if it does not exist."""
        if not self.exists(table):
            return []
        return [field.name for field in self._open(table).schema().fields]

    def read(
        self, table: str, version: int | None = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The table (at ``version``, default latest) as a DataFrame.

        A table that does not exist reads as an empty frame (with ``columns`` if given).
        """
        if not self.exists(table):
            return pd.DataFrame(columns=list(columns) if columns is not None else None)
        dt = self._open(table, version)
        try:
            return dt.to_pandas(columns=list(columns) if columns is not None else None)
        except (DeltaError, pa.ArrowException, ValueError) as exc:
            raise LakeError(f"{table}: cannot read columns {columns}: {exc}") from exc

    def read_series(self, version: int | None = None) -> pd.DataFrame:
        """The series table in the data contract, sorted by (unique_id, ds).

        Columns unique_id (str), ds (datetime64, tz-naive UTC), y (float64) and the
        covariates; lineage columns are dropped. Empty (with those three columns) if
        the table does not exist.
        """
        if not self.exists(SERIES):
            return pd.DataFrame({
                "unique_id": pd.Series(dtype="str"),
                "ds": pd.Series(dtype="datetime64[us]"),
                "y": pd.Series(dtype="float64"),
            })
        frame = self.read(SERIES, version=version)
        frame = frame.drop(columns=[c for c in LINEAGE_COLUMNS if c in frame.columns])
        frame["y"] = frame["y"].astype("float64")
        return frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)

    def scan(
        self, table: str, columns: Sequence[str] | None = None, where: pc.Expression | None = None
    ) -> pa.Table:
        """The table's latest version as Arrow, only ``columns`` and the rows matching ``where``.

        Files whose statistics cannot match ``where`` are not read. A table that does
        not exist scans as an empty Arrow table without columns.
        """
        if not self.exists(table):
            return pa.table({})
        try:
            return self._open(table).to_pyarrow_table(
                columns=list(columns) if columns is not None else None, filters=where
            )
        except (DeltaError, pa.ArrowException, ValueError) as exc:
            raise LakeError(f"{table}: cannot scan columns {columns}: {exc}") from exc

    def history(self, table: str) -> list[dict[str, Any]]:
        """Delta commit history, newest first; empty if the table does not exist."""
        if not self.exists(table):
            return []
        entries = self._open(table).history()
        return sorted(entries, key=lambda entry: int(entry.get("version", -1)), reverse=True)

    def freq(self) -> str | None:
        """The lake's frequency as recorded by ingest in ``batches``; None on a new lake."""
        if "freq" not in self.columns(BATCHES):
            return None
        frame = self.read(BATCHES, columns=["freq", "ingested_at"])
        frame = frame[frame["freq"].notna() & (frame["freq"] != "")]
        if frame.empty:
            return None
        return str(frame.sort_values("ingested_at", kind="stable")["freq"].iloc[-1])

    # -- writing ----------------------------------------------------------------------

    def upsert(
        self,
        table: str,
        df: pd.DataFrame | pa.Table,
        keys: Sequence[str],
        compare: Sequence[str] | None = None,
        *,
        commit_metadata: Mapping[str, str] | None = None,
        keys_checked: bool = False,
    ) -> WriteResult:
        """Merge ``df`` (pandas or Arrow) into ``table`` on ``keys`` in ONE atomic commit.

        New keys are inserted; rows whose key exists and whose ``compare`` columns
        (default: every non-key column) differ are updated in all non-key columns;
        equal ones are not rewritten and count as unchanged. Nothing changed: no commit.
        The first write creates the table. ``df`` must not repeat a key: this is checked
        unless ``keys_checked`` says the caller has already proven it. Concurrent
        commits are retried with backoff; LakeError if they keep conflicting.
        ``commit_metadata`` is recorded in the commit (see ``history``).

        Only files whose statistics overlap the source's range of each timestamp or
        integer key are read and rewritten: new periods merge without touching old files.
        """
        keys = list(keys)
        data = _to_arrow(df)
        missing = [k for k in keys if k not in data.column_names]
        if not keys or missing:
            raise LakeError(f"{table}: upsert needs key columns in the frame, missing {missing or keys}")
        example = None if keys_checked else _repeated_key(data, keys)
        if example is not None:
            raise LakeError(f"{table}: upsert source repeats keys {keys}, e.g. {example}")
        others = [c for c in data.column_names if c not in keys]
        compare = others if compare is None else list(compare)
        if data.num_rows == 0:
            return WriteResult(table, self._version_or_minus_one(table), 0, 0, 0)
        properties = _commit_properties(commit_metadata)

        def attempt() -> WriteResult:
            if not self.exists(table) and self._create(table, data, properties):
                return WriteResult(table, self._open(table).version(), data.num_rows, 0, 0)
            return self._merge(table, data, keys, others, compare, properties)

        result = _retrying(table, "upsert", attempt)
        _log.info("%s: upsert -> %s", table, result)
        return result

    def append(
        self, table: str, df: pd.DataFrame | pa.Table, *, commit_metadata: Mapping[str, str] | None = None
    ) -> WriteResult:
        """Append ``df`` to ``table`` in one commit (creating it); an empty frame writes nothing.

        New columns are added to the table schema; retried on concurrent-commit conflicts.
        """
        data = _to_arrow(df)
        if data.num_rows == 0:
            return WriteResult(table, self._version_or_minus_one(table), 0, 0, 0)
        properties = _commit_properties(commit_metadata)

        def attempt() -> WriteResult:
            if not self.exists(table) and self._create(table, data, properties):
                return WriteResult(table, self._open(table).version(), data.num_rows, 0, 0)
            dt = self._open(table)
            write_deltalake(dt, data, mode="append", schema_mode="merge", commit_properties=properties)
            return WriteResult(table, dt.version(), data.num_rows, 0, 0)

        result = _retrying(table, "append", attempt)
        _log.info("%s: appended %d rows -> version %d", table, data.num_rows, result.version)
        return result

    # -- internals --------------------------------------------------------------------

    def _open(self, table: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self._options)
        except DeltaError as exc:
            at = "" if version is None else f" at version {version}"
            raise LakeError(f"{table}: cannot open {self.uri(table)}{at}: {exc}") from exc

    def _version_or_minus_one(self, table: str) -> int:
        version = self.version(table)
        return -1 if version is None else version

    def _create(self, table: str, data: pa.Table, properties: CommitProperties | None = None) -> bool:
        """Create the table with ``data``; False if another writer created it first."""
        try:
            write_deltalake(
                self.uri(table), data, mode="error", storage_options=self._options, commit_properties=properties
            )
        except DeltaError:
            if self.exists(table):
                return False  # lost the race: merge into the other writer's table instead
            raise
        return True

    def _merge(
        self,
        table: str,
        data: pa.Table,
        keys: list[str],
        others: list[str],
        compare: list[str],
        properties: CommitProperties | None = None,
    ) -> WriteResult:
        dt = self._open(table)
        target_columns = {field.name for field in dt.schema().fields}
        on = " AND ".join([f"t.`{k}` = s.`{k}`" for k in keys] + _key_ranges(data, keys))
        merger = dt.merge(
            data, predicate=on, source_alias="s", target_alias="t", merge_schema=True,
            commit_properties=properties,
        )
        if others and compare:
            if all(c in target_columns for c in compare):
                changed: str | None = " OR ".join(
                    # parenthesised: delta-rs 1.6 mis-parses `a IS DISTINCT FROM b OR ...`
                    f"(t.`{c}` IS DISTINCT FROM s.`{c}`)" for c in compare
                )
            else:
                changed = None  # a compare column is new to the table: every match differs
            merger = merger.when_matched_update({f"`{c}`": f"s.`{c}`" for c in others}, changed)
        # delta-rs makes no commit when a merge neither inserts nor updates (checked on 1.6).
        metrics = merger.when_not_matched_insert_all().execute()
        inserted = int(metrics["num_target_rows_inserted"])
        updated = int(metrics["num_target_rows_updated"])
        unchanged = int(metrics["num_source_rows"]) - inserted - updated
        return WriteResult(table, dt.version(), inserted, updated, unchanged)


def _retrying(table: str, what: str, attempt: Callable[[], WriteResult]) -> WriteResult:
    """Run one write; on a concurrent-commit conflict, back off with jitter and redo it.

    Each attempt recomputes the write against the table's new state, so nothing is lost.
    """
    for n in range(_MAX_ATTEMPTS):
        try:
            return attempt()
        except CommitFailedError as exc:
            _log.info("%s: concurrent commit (attempt %d): %s", table, n + 1, exc)
            time.sleep(_BACKOFF_S * 2**n * (1 + random.random()))
        except (DeltaError, pa.ArrowException, ValueError) as exc:
            raise LakeError(f"{table}: {what} failed: {exc}") from exc
    raise LakeError(f"{table}: {what} kept conflicting with concurrent commits ({_MAX_ATTEMPTS} attempts)")


def _s3_commit_settings(options: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The S3 commit settings of the older delta-rs log stores, from options or environment."""
    keys = ("AWS_S3_LOCKING_PROVIDER", "AWS_S3_ALLOW_UNSAFE_RENAME")
    given = {k.upper(): v for k, v in options.items()}
    return tuple((k, given.get(k, os.environ.get(k, ""))) for k in keys if given.get(k, os.environ.get(k)))


@functools.cache
def _note_s3_commits(root: str, settings: tuple[tuple[str, str], ...]) -> None:
    """Say once per root how its commits are kept safe, and which settings are ignored."""
    version = metadata.version("deltalake")
    _log.info("%s: commits are conditional writes (If-None-Match) with deltalake %s: safe with concurrent "
              "writers on S3 and on S3-compatible stores that support conditional writes", root, version)
    for key, value in settings:
        if key == "AWS_S3_LOCKING_PROVIDER":
            _log.warning("%s: %s=%s is ignored: deltalake %s no longer supports the DynamoDB locking provider "
                         "(commits use conditional writes instead)", root, key, value, version)
        elif value.lower() in ("1", "true", "yes"):
            _log.warning("%s: %s=%s does not change how deltalake %s commits (still conditional writes); "
                         "unset it", root, key, value, version)


def _to_arrow(df: pd.DataFrame | pa.Table) -> pa.Table:
    """The frame as Arrow, with timestamps in microseconds (Delta's only resolution)."""
    if isinstance(df, pa.Table):
        data = df
    else:
        data = pa.Table.from_arrays([_column_to_arrow(col) for _, col in df.items()], names=[str(c) for c in df.columns])
    fields = []
    for field in data.schema:
        if pa.types.is_timestamp(field.type) and field.type.unit != "us":
            field = field.with_type(pa.timestamp("us", tz=field.type.tz))
        fields.append(field)
    schema = pa.schema(fields)
    # safe=False: sub-microsecond parts are truncated rather than failing the write.
    return data if schema.equals(data.schema) else data.cast(schema, safe=False)


def _commit_properties(metadata: Mapping[str, str] | None) -> CommitProperties | None:
    return CommitProperties(custom_metadata=dict(metadata)) if metadata else None


def _repeated_key(data: pa.Table, keys: list[str]) -> list[Any] | None:
    """One key that ``data`` repeats, or None. Sorted sources are checked in one pass."""
    if data.num_rows < 2:
        return None
    columns = [data.column(k) for k in keys]
    if all(c.null_count == 0 for c in columns):
        # Strictly increasing keys (lexicographically, row to row) cannot repeat.
        greater = np.zeros(data.num_rows - 1, dtype=bool)
        equal = np.ones(data.num_rows - 1, dtype=bool)
        try:
            for column in columns:
                after, before = column.slice(1), column.slice(0, data.num_rows - 1)
                greater |= equal & np.asarray(pc.greater(after, before), dtype=bool)
                equal &= np.asarray(pc.equal(after, before), dtype=bool)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            greater[:] = False  # a type Arrow cannot order: use the general check below
        if greater.all():
            return None
    frame = data.select(keys).to_pandas()
    repeated = frame.duplicated(keys)
    return frame.loc[repeated, keys].iloc[0].tolist() if repeated.any() else None


def _key_ranges(data: pa.Table, keys: list[str]) -> list[str]:
    """``t.k >= lo AND t.k <= hi`` for each naive timestamp or integer key of ``data``.

    Redundant with the equality join, but it lets the merge skip every file whose
    statistics lie outside the source's range instead of reading the whole table.
    Text keys get none: Delta may truncate text statistics.
    """
    terms = []
    for key in keys:
        column = data.column(key)
        kind = column.type
        if column.null_count or not (
            (pa.types.is_timestamp(kind) and kind.tz is None) or pa.types.is_integer(kind)
        ):
            continue
        low, high = pc.min_max(column).values()
        if pa.types.is_timestamp(kind):
            as_text = [np.datetime_as_string(np.datetime64(v.value, kind.unit), unit="us") for v in (low, high)]
            bounds = [f"'{t}'" for t in as_text]
        else:
            bounds = [str(int(low.as_py())), str(int(high.as_py()))]
        terms += [f"t.`{key}` >= {bounds[0]}", f"t.`{key}` <= {bounds[1]}"]
    return terms


def _column_to_arrow(col: pd.Series) -> pa.Array:
    # pyarrow's pandas conversion calls Series.values on tz-aware columns, which pandas 3
    # deprecates: hand it the UTC instants and the zone instead.
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        utc = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        return pa.array(utc, type=pa.timestamp(col.dtype.unit, tz=str(col.dtype.tz)), from_pandas=True)
    return pa.array(col, from_pandas=True)
