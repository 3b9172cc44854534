"""Ingest source files into the lake: read as text, hash, validate, upsert.

Contract:

* Sources are files (CSV, CSV.gz, Parquet), directories (their csv / csv.gz / parquet
  files, sorted, not recursive: the default lake itself lives under ``data/``) and globs.
* Every cell is read as text first, so nothing is coerced before ``schema.validate``.
* ALL sources are read and validated before anything is written. A file that cannot be
  read as a table at all raises IngestError naming it, and nothing of the run lands.
* A source is identified by the sha256 of its bytes; bytes already recorded in
  ``batches`` (or seen earlier in the same run) are a "duplicate" and write nothing.
* Writes, each one atomic commit: good rows of all sources -> ``series`` (one merge; if
  two sources of a run hold the same key, the later source wins, as it would in two
  runs); rejected rows -> ``quarantine``; then, LAST, one ``batches`` row per source.
  A crash before the last commit leaves the sources unrecorded, and a rerun redoes them
  idempotently (same batch ids, unchanged rows are not rewritten).
* Frequency: ``cfg.freq`` if set, else the lake's, else inferred from this run's rows;
  a configured frequency that contradicts the lake's is an error.
"""

from __future__ import annotations

import glob
import hashlib
import io
import logging
import os
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lstm_pipeline import schema
from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake import BATCHES, QUARANTINE, SERIES, Lake

__all__ = ["IngestError", "IngestReport", "SourceReport", "ingest", "resolve_sources"]

_log = logging.getLogger(__name__)
_KEYS = ["unique_id", "ds"]
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


class IngestError(Exception):
    """A run that cannot proceed; the message names the file and the reason."""


@dataclass(frozen=True)
class SourceReport:
    """One source of a run. For a "duplicate" nothing was parsed and every count is 0.

    Inserted / updated / unchanged are counted as if the run's sources were ingested one
    after the other (a key in two sources: inserted by the first, updated by the second).
    """

    source: str
    content_hash: str
    batch_id: str
    status: Literal["ingested", "duplicate"]
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int]  # reason kind (without the value) -> rows
    series_added: int
    extra_columns: tuple[str, ...]  # columns in the file that the contract does not use


@dataclass(frozen=True)
class IngestReport:
    """A run. ``freq`` is None only if the lake has none yet and nothing was ingested."""

    sources: tuple[SourceReport, ...]
    freq: str | None
    series_version: int | None

    @property
    def ingested(self) -> tuple[SourceReport, ...]:
        return tuple(s for s in self.sources if s.status == "ingested")

    @property
    def duplicates(self) -> tuple[SourceReport, ...]:
        return tuple(s for s in self.sources if s.status == "duplicate")

    @property
    def rows_read(self) -> int:
        return sum(s.rows_read for s in self.sources)

    @property
    def rows_inserted(self) -> int:
        return sum(s.rows_inserted for s in self.sources)

    @property
    def rows_updated(self) -> int:
        return sum(s.rows_updated for s in self.sources)

    @property
    def rows_unchanged(self) -> int:
        return sum(s.rows_unchanged for s in self.sources)

    @property
    def rows_quarantined(self) -> int:
        return sum(s.rows_quarantined for s in self.sources)

    @property
    def series_added(self) -> int:
        return sum(s.series_added for s in self.sources)

    @property
    def quarantine_reasons(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.sources:
            total.update(s.quarantine_reasons)
        return dict(sorted(total.items()))

    def summary(self) -> str:
        """A few human-readable lines for the CLI and flow logs."""
        lines = [
            f"{len(self.ingested)} source(s) ingested, {len(self.duplicates)} duplicate(s) skipped;"
            f" freq {self.freq}; series table version {self.series_version}",
            f"rows: {self.rows_read} read, {self.rows_inserted} inserted, {self.rows_updated} updated,"
            f" {self.rows_unchanged} unchanged, {self.rows_quarantined} quarantined;"
            f" {self.series_added} new series",
        ]
        if self.quarantine_reasons:
            lines.append("quarantined: " + ", ".join(f"{k} ({n})" for k, n in self.quarantine_reasons.items()))
        for s in self.sources:
            detail = f"{s.rows_read} read, {s.rows_quarantined} quarantined" if s.status == "ingested" else "skipped"
            lines.append(f"  {s.source}: {s.status} [{s.batch_id}] {detail}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Loaded:
    path: Path
    content_hash: str
    frame: pd.DataFrame | None  # None: a duplicate, not parsed

    @property
    def batch_id(self) -> str:
        return self.content_hash[:16]


def resolve_sources(sources: Sequence[str | Path]) -> list[Path]:
    """Files named by ``sources``, in order, each once.

    A missing file or directory raises IngestError; a directory or glob with no table
    files resolves to nothing (a landing folder with no new data is normal).
    """
    found: list[Path] = []
    for source in sources:
        text = os.fspath(source)
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        elif Path(text).is_dir():
            matches = sorted(p for p in Path(text).iterdir() if p.is_file() and _is_table_file(p))
        elif Path(text).exists():
            matches = [Path(text)]
        else:
            raise IngestError(f"{text}: no such file or directory")
        if not matches:
            _log.warning("%s: no table files found", text)
        found.extend(matches)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path.absolute())  # absolute: lineage outlives the cwd
    return list(unique.values())


def ingest(lake: Lake, sources: Sequence[str | Path], cfg: DataConfig) -> IngestReport:
    """Read, validate and land ``sources`` in ``lake`` (see the module docstring)."""
    known = set(lake.read(BATCHES, columns=["content_hash"])["content_hash"]) if lake.exists(BATCHES) else set()
    loaded: list[_Loaded] = []
    for path in resolve_sources(sources):
        item = _load(path, cfg, known)
        known.add(item.content_hash)
        loaded.append(item)
    fresh = [item for item in loaded if item.frame is not None]
    freq = _resolve_freq(lake, cfg, fresh)
    checked = {item.path: _validate(item, item.frame, cfg, freq) for item in fresh if item.frame is not None}

    compare = ["y", *cfg.covariates]
    state = _snapshot(lake, compare)
    ingested_at = pd.Timestamp.now(tz="UTC").floor("us")
    reports: list[SourceReport] = []
    series_parts: list[pd.DataFrame] = []
    bad_parts: list[pd.DataFrame] = []
    for item in loaded:
        if item.frame is None:
            reports.append(SourceReport(
                str(item.path), item.content_hash, item.batch_id, "duplicate",
                0, 0, 0, 0, 0, {}, 0, (),
            ))
            continue
        result = checked[item.path]
        counts, added, state = _classify(state, result.good, compare)
        series_parts.append(result.good.assign(batch_id=item.batch_id, ingested_at=ingested_at))
        bad_parts.append(result.bad.assign(ingested_at=ingested_at))
        reasons = Counter(schema.reason_kind(r) for r in result.bad["reason"])
        reports.append(SourceReport(
            str(item.path), item.content_hash, item.batch_id, "ingested", len(item.frame),
            *counts, len(result.bad), dict(sorted(reasons.items())), added,
            schema.extra_columns(item.frame, cfg),
        ))

    series_rows = _concat(series_parts)
    if len(series_rows):
        # Within one run the later source wins a shared key, as it would across runs.
        series_rows = series_rows.drop_duplicates(_KEYS, keep="last")
        lake.upsert(SERIES, series_rows, keys=_KEYS, compare=compare)
    quarantined = _concat(bad_parts)
    if len(quarantined):
        lake.upsert(QUARANTINE, quarantined, keys=["batch_id", "row"], compare=["source", "reason", "raw"])
    if fresh:
        batches = pd.DataFrame([_batch_row(r, freq, ingested_at) for r in reports if r.status == "ingested"])
        lake.upsert(BATCHES, batches, keys=["content_hash"], compare=[str(c) for c in batches if c != "ingested_at"])
    report = IngestReport(tuple(reports), freq, lake.version(SERIES))
    _log.info("ingest finished:\n%s", report.summary())
    return report


def _is_table_file(path: Path) -> bool:
    # Skip hidden and marker files (.crc, _SUCCESS) that writers leave beside data files.
    return not path.name.startswith((".", "_")) and path.name.lower().endswith(_TABLE_SUFFIXES)


def _load(path: Path, cfg: DataConfig, known: set[str]) -> _Loaded:
    """Hash and parse one file (all cells as text); IngestError if it is not a table."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc}") from exc
    content_hash = hashlib.sha256(data).hexdigest()
    if content_hash in known:
        _log.info("%s: duplicate of an ingested source (%s), skipped", path, content_hash[:16])
        return _Loaded(path, content_hash, None)
    frame = _parse(path, data, cfg.csv_delimiter)
    try:
        schema.map_columns(frame, cfg)
    except schema.SchemaError as exc:
        raise IngestError(f"{path}: {exc}") from exc
    return _Loaded(path, content_hash, frame)


def _parse(path: Path, data: bytes, delimiter: str) -> pd.DataFrame:
    # Parsed from the hashed bytes, so the hash describes exactly what was read.
    is_parquet = data[:4] == b"PAR1" or path.name.lower().endswith((".parquet", ".pq"))
    kind = "Parquet" if is_parquet else "CSV"
    try:
        if is_parquet:
            table = pq.read_table(pa.BufferReader(data))
            as_text = pa.Table.from_arrays(
                [column.cast(pa.string()) for column in table.columns], names=table.column_names
            )
            frame: pd.DataFrame = as_text.to_pandas()
            return frame
        return pd.read_csv(
            io.BytesIO(data), sep=delimiter, dtype=str, keep_default_na=False, index_col=False,
            compression="gzip" if data[:2] == b"\x1f\x8b" else None, encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError as exc:
        raise IngestError(f"{path}: empty file, no header") from exc
    except (OSError, EOFError, ValueError, zlib.error, pa.ArrowException) as exc:
        raise IngestError(f"{path}: cannot be read as a {kind} table: {str(exc).strip()}") from exc


def _resolve_freq(lake: Lake, cfg: DataConfig, fresh: list[_Loaded]) -> str | None:
    try:
        configured = schema.normalize_freq(cfg.freq) if cfg.freq else None
    except ValueError as exc:
        raise IngestError(f"data.freq: {exc}") from exc
    recorded = lake.freq()
    if configured and recorded and configured != recorded:
        raise IngestError(f"data.freq {cfg.freq!r} contradicts the lake's frequency {recorded!r}")
    if configured or recorded or not fresh:
        return configured or recorded
    keys = pd.concat(
        [schema.map_columns(item.frame, cfg)[["unique_id", "ds"]] for item in fresh if item.frame is not None],
        ignore_index=True,
    )
    try:
        freq = schema.infer_freq(keys)
    except ValueError as exc:
        raise IngestError(f"{', '.join(str(i.path) for i in fresh)}: {exc}") from exc
    _log.info("frequency inferred from this first ingest: %s", freq)
    return freq


def _validate(item: _Loaded, frame: pd.DataFrame, cfg: DataConfig, freq: str | None) -> schema.Validated:
    try:
        return schema.validate(frame, cfg, freq, source=str(item.path), batch_id=item.batch_id)
    except ValueError as exc:
        raise IngestError(f"{item.path}: {exc}") from exc


def _snapshot(lake: Lake, compare: list[str]) -> pd.DataFrame:
    """Keys and compare values now in ``series`` (a compare column new to it: NaN)."""
    present = set(lake.columns(SERIES))
    state = lake.read(SERIES, columns=[c for c in [*_KEYS, *compare] if c in present]) if present else pd.DataFrame()
    dtypes = {"unique_id": "str", "ds": "datetime64[us]"}
    for column in [*_KEYS, *compare]:
        if column not in state.columns:
            state[column] = pd.Series(dtype=dtypes.get(column, "float64"))
    return state[[*_KEYS, *compare]]


def _classify(
    state: pd.DataFrame, good: pd.DataFrame, compare: list[str]
) -> tuple[tuple[int, int, int], int, pd.DataFrame]:
    """(inserted, updated, unchanged), new series and the state after landing ``good``."""
    merged = good[[*_KEYS, *compare]].merge(
        state, on=_KEYS, how="left", suffixes=("", "_old"), indicator=True
    )
    new = (merged["_merge"] == "left_only").to_numpy()
    same = ~new
    for column in compare:
        a, b = merged[column], merged[f"{column}_old"]
        same &= ((a == b) | (a.isna() & b.isna())).to_numpy()
    inserted, unchanged = int(new.sum()), int(same.sum())
    added = len(set(good["unique_id"]) - set(state["unique_id"]))
    rows = good[[*_KEYS, *compare]]
    after = pd.concat([state, rows], ignore_index=True) if len(state) else rows
    return (inserted, len(good) - inserted - unchanged, unchanged), added, after.drop_duplicates(_KEYS, keep="last")


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _batch_row(report: SourceReport, freq: str | None, ingested_at: pd.Timestamp) -> dict[str, object]:
    return {
        "content_hash": report.content_hash,
        "batch_id": report.batch_id,
        "source": report.source,
        "rows_read": report.rows_read,
        "rows_landed": report.rows_read - report.rows_quarantined,
        "rows_quarantined": report.rows_quarantined,
        "freq": freq or "",
        "ingested_at": ingested_at,
    }
