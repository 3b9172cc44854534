"""Ingest source files into the lake: hash, read, validate, then land in ordered commits.

Contract (docs/INGEST.md has the outcome table):

* Finding, hashing and reading the sources (files, directories, globs, URIs; CSV as text
  cells, Parquet) is ``lstm_pipeline.lake.sources``; the checks are ``lstm_pipeline.lake.schema``.
* ALL sources are read and validated before anything is written. A file that cannot be
  read as a table at all raises IngestError naming it, and nothing of the run lands.
* A source is identified by the sha256 of its bytes; bytes already recorded in
  ``batches`` (or seen earlier in the same run) are a "duplicate" and write nothing.
  A file whose path, size and modification time (ns) match a ``batches`` row is not
  even read: a landing folder that keeps every file it ever received costs a
  ``stat`` per old file, not a read and a hash.
* Writes, each ONE atomic Delta commit, in this order: rejected rows -> ``quarantine``;
  good rows of all sources -> ``series`` (one merge; if two sources of a run hold the
  same key, the later source wins, as it would in two runs); then, LAST, one ``batches``
  row per source. ``batches`` is the run's commit marker: a crash before it leaves the
  sources unrecorded, and a rerun redoes them idempotently (same batch ids, keyed
  merges, unchanged rows not rewritten). Concurrent runs retry conflicting commits.
* Frequency: ``cfg.freq`` if set, else the lake's, else inferred from this run's rows
  (every row whose key parses votes, before the checks); a configured frequency that
  contradicts the lake's, a file whose series follow a finer frequency or another grid,
  or a first ingest whose series follow several, is refused before anything is written.
* A file with more than ``cfg.max_quarantine_share`` of its rows rejected refuses the
  whole run, before anything is written, naming the count and the top reasons.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake import schema
from lstm_pipeline.lake.tables import BATCHES, QUARANTINE, SERIES, Lake
from lstm_pipeline.lake.sources import (
    IngestError,
    LoadedSource,
    fingerprint,
    load_source,
    read_as_text,
    resolve_sources,
)

__all__ = ["IngestError", "IngestReport", "SourceReport", "ingest", "resolve_sources"]

_log = logging.getLogger(__name__)
_KEYS = ["unique_id", "ds"]


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

    @property
    def rows_landed(self) -> int:
        return self.rows_inserted + self.rows_updated + self.rows_unchanged


@dataclass(frozen=True)
class IngestReport:
    """A run. ``freq`` is None only if the lake has none yet and nothing was ingested.

    ``versions``: each ingest table's version after the run (None: it does not exist).
    """

    sources: tuple[SourceReport, ...]
    freq: str | None
    series_version: int | None
    versions: dict[str, int | None] = field(default_factory=dict)
    not_read: int = 0  # duplicates known by path, size and mtime: not read at all

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
    def rows_landed(self) -> int:
        return sum(s.rows_landed for s in self.sources)

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
            f"{len(self.ingested)} source(s) ingested, {len(self.duplicates)} duplicate(s) skipped"
            + (f" ({self.not_read} unchanged since ingested, not read)" if self.not_read else "")
            + f"; freq {self.freq}; series table version {self.series_version}",
            f"rows: {self.rows_read} read, {self.rows_landed} landed ({self.rows_inserted} inserted,"
            f" {self.rows_updated} updated, {self.rows_unchanged} unchanged), {self.rows_quarantined} quarantined;"
            f" {self.series_added} new series",
        ]
        if self.quarantine_reasons:
            lines.append("quarantined: " + ", ".join(f"{k} ({n})" for k, n in self.quarantine_reasons.items()))
        if self.versions:
            lines.append("lake versions: " + ", ".join(
                f"{t} {'-' if v is None else v}" for t, v in self.versions.items()
            ))
        skipped = 0
        for s in self.sources:
            if s.status != "ingested":
                skipped += 1
                if skipped > 20:
                    continue
            detail = f"{s.rows_read} read, {s.rows_quarantined} quarantined" if s.status == "ingested" else "skipped"
            lines.append(f"  {s.source}: {s.status} [{s.batch_id}] {detail}")
        if skipped > 20:
            lines.append(f"  ... and {skipped - 20} more duplicates")
        return "\n".join(lines)


def ingest(lake: Lake, sources: Sequence[str | Path], cfg: DataConfig) -> IngestReport:
    """Read, validate and land ``sources`` in ``lake`` (see the module docstring)."""
    recorded = _recorded(lake)
    known = set(recorded["content_hash"])
    by_stats = {(s, n, t): h for h, s, n, t in recorded.itertuples(index=False) if n is not None and t is not None}
    loaded: list[LoadedSource] = []
    for source in resolve_sources(sources):
        stats = fingerprint(source)
        if stats is not None and (str(source), *stats) in by_stats:
            loaded.append(LoadedSource(str(source), by_stats[(str(source), *stats)], source, fingerprint=stats,
                                       unchanged=True))
            continue
        item = dataclasses.replace(load_source(source, cfg, known), fingerprint=stats)
        known.add(item.content_hash)
        loaded.append(item)
    not_read = sum(item.unchanged for item in loaded)
    if not_read:
        _log.info("%d source(s) unchanged since they were ingested (same path, size and mtime): not read", not_read)
    freq = _resolve_freq(lake, cfg, [item for item in loaded if item.parsed is not None])
    checked = {}
    for i, item in enumerate(loaded):
        if item.parsed is None:
            continue
        checked[item.batch_id] = _check(item, freq)
        if len(checked[item.batch_id].bad) and item.read is not None and item.read.typed:
            # Rows will be quarantined, with the file's own text: read it again as text.
            loaded[i] = dataclasses.replace(read_as_text(item, cfg), fingerprint=item.fingerprint)
            checked[item.batch_id] = _check(loaded[i], freq)
    fresh = [item for item in loaded if item.parsed is not None]
    _refuse_mostly_quarantined(fresh, checked, cfg.max_quarantine_share)

    compare = ["y", *cfg.covariates]
    ingested_at = pd.Timestamp.now(tz="UTC").floor("us")
    goods = [checked[item.batch_id].good for item in fresh]
    counts = _count(lake, goods, [checked[item.batch_id].series for item in fresh], compare)
    bad_parts = []
    for item in fresh:
        assert item.read is not None
        rejected = item.read.rejected.assign(batch_id=item.batch_id, source=item.name)
        bad = pd.concat([checked[item.batch_id].bad, rejected[list(schema.BAD_COLUMNS)]], ignore_index=True)
        bad_parts.append(bad.sort_values("row", kind="stable").reset_index(drop=True))

    metadata = {"lstm_pipeline.lake.ingest": ",".join(item.batch_id for item in fresh)}
    quarantined = _concat(bad_parts)
    if len(quarantined):
        quarantined["ingested_at"] = ingested_at
        lake.upsert(QUARANTINE, quarantined, keys=["batch_id", "row"], compare=["source", "reason", "raw"],
                    commit_metadata=metadata)
    series_rows = _series_rows(fresh, goods, ingested_at)
    written = None
    if series_rows.num_rows:
        # Keys are unique: schema.check rejects every repeated key in a source, and
        # _series_rows keeps only the later of a key that two sources share.
        written = lake.upsert(SERIES, series_rows, keys=_KEYS, compare=compare, commit_metadata=metadata,
                              keys_checked=True)
    if len(counts) == 1 and counts[0][0] < 0:  # one source into an existing table: the merge counted
        merged = (written.inserted, written.updated, written.unchanged) if written else (0, 0, 0)
        counts = [(*merged, counts[0][3])]

    reports: list[SourceReport] = []
    fresh_counts = iter(zip(fresh, bad_parts, counts, strict=True))
    for item in loaded:
        if item.parsed is None:
            reports.append(SourceReport(item.name, item.content_hash, item.batch_id, "duplicate",
                                        0, 0, 0, 0, 0, {}, 0, ()))
            continue
        _, bad, (inserted, updated, unchanged, added) = next(fresh_counts)
        assert item.read is not None
        reasons = Counter(schema.reason_kind(r) for r in bad["reason"])
        reports.append(SourceReport(
            item.name, item.content_hash, item.batch_id, "ingested", item.read.rows_read,
            inserted, updated, unchanged, len(bad), dict(sorted(reasons.items())), added,
            schema.extra_columns(item.read.table, cfg),
        ))
    if fresh:
        version = written.version if written is not None else lake.version(SERIES)
        stats = {item.content_hash: item.fingerprint for item in fresh}
        landed = [r for r in reports if r.status == "ingested"]
        batches = pd.DataFrame([_batch_row(r, freq, version, ingested_at) for r in landed])
        # The fingerprint a later run compares before it reads the file (null: unknown).
        for k, column in enumerate(("size", "mtime_ns")):
            batches[column] = pd.array([(stats[r.content_hash] or (None, None))[k] for r in landed], dtype="Int64")
        lake.upsert(BATCHES, batches, keys=["content_hash"], compare=[str(c) for c in batches if c != "ingested_at"],
                    commit_metadata=metadata)
    _refresh_fingerprints(lake, recorded, loaded)
    versions = {table: lake.version(table) for table in (SERIES, QUARANTINE, BATCHES)}
    report = IngestReport(tuple(reports), freq, versions[SERIES], versions, not_read)
    _log.info("ingest finished:\n%s", report.summary())
    return report


# -- checking, counting and writing --------------------------------------------------


def _resolve_freq(lake: Lake, cfg: DataConfig, fresh: list[LoadedSource]) -> str | None:
    """The run's frequency; IngestError, before anything is written, for data that does not
    fit it: a file whose series follow a finer frequency than the lake's (daily rows into a
    monthly lake) or another grid (month ends into month starts), or a first ingest whose
    series disagree (the frequencies found are named).

    Every row whose key parsed votes, before the grid or the values are checked: the
    frequency is that of the file as written, not of the rows that happen to survive.
    """
    try:
        configured = schema.normalize_freq(cfg.freq) if cfg.freq else None
    except ValueError as exc:
        raise IngestError(f"data.freq: {exc}") from exc
    recorded = lake.freq()
    if configured and recorded and configured != recorded:
        raise IngestError(f"data.freq {cfg.freq!r} contradicts the lake's frequency {recorded!r}")
    voters = [item for item in fresh if item.parsed is not None and item.parsed.key_ok().any()]
    found = {item.name: schema.frequency_votes([item.parsed]) for item in voters if item.parsed is not None}
    target = configured or recorded
    if target:
        whose = "the lake's frequency" if recorded else "data.freq"
        for name, votes in found.items():
            # A coarser frequency on the lake's grid lands (a quarterly series in a monthly
            # lake); a finer one, or another grid (ME for MS), does not.
            off = [alias for alias in votes.votes if not schema.lies_on(alias, target)]
            if off:
                finer = any(schema.period_of(alias) < schema.period_of(target) for alias in off)
                raise IngestError(f"{name}: its series follow {votes.describe()}, "
                                  f"{'finer than' if finer else 'not'} {whose} {target}; nothing was ingested "
                                  f"(a lake holds one frequency: ingest this data into a lake of its own)")
        return target
    if not voters:
        return None  # no row has a key that could lie on a grid: nothing to infer from
    everyone = schema.FrequencyVotes({}, 0)
    for votes in found.values():
        everyone = schema.FrequencyVotes(dict(Counter(everyone.votes) + Counter(votes.votes)),
                                         everyone.asked + votes.asked)
    aliases = list(everyone.votes)
    # Two aliases of one grid (QS-JAN, QS-OCT) agree; anything else is mixed, coarser or not.
    if any(not (schema.lies_on(a, b) and schema.lies_on(b, a)) for a in aliases for b in aliases):
        names = ", ".join(f"{name} ({votes.describe()})" if len(found) > 1 else name
                          for name, votes in found.items() if votes.votes)
        raise IngestError(f"{names}: mixed frequencies found: {everyone.describe()}; nothing was ingested "
                          f"(a lake holds one frequency: set data.freq, or split the data)")
    try:
        # Series may span files: a series too short to vote in each file may vote here.
        freq = schema.infer_freq_parsed([item.parsed for item in voters if item.parsed is not None])
    except ValueError as exc:
        raise IngestError(f"{', '.join(item.name for item in voters)}: {exc}") from exc
    _log.info("frequency inferred from this first ingest: %s", freq)
    return freq


def _refuse_mostly_quarantined(fresh: list[LoadedSource], checked: dict[str, schema.Checked],
                               share: float) -> None:
    """IngestError for the first file with more than ``share`` of its rows quarantined,
    naming the count and the most common reasons; called before anything is written."""
    for item in fresh:
        assert item.read is not None
        bad = checked[item.batch_id].bad
        reasons = Counter(schema.reason_kind(r) for r in bad["reason"])
        reasons.update(schema.reason_kind(r) for r in item.read.rejected["reason"])
        total, rows = sum(reasons.values()), item.read.rows_read
        if rows and total / rows > share:
            top = ", ".join(f"{kind} ({n})" for kind, n in reasons.most_common(3))
            first = bad.sort_values("row").iloc[0] if len(bad) else None
            example = f"; first: row {first['row']}, {first['reason']}" if first is not None else ""
            raise IngestError(
                f"{item.name}: {total} of {rows} rows would be quarantined ({total / rows:.0%}, more than "
                f"data.max_quarantine_share = {share:.0%}): {top}{example}; nothing was ingested"
            )


def _check(item: LoadedSource, freq: str | None) -> schema.Checked:
    assert item.parsed is not None
    try:
        return schema.check(item.parsed, freq, source=item.name, batch_id=item.batch_id)
    except ValueError as exc:
        raise IngestError(f"{item.name}: {exc}") from exc


def _series_rows(fresh: list[LoadedSource], goods: list[pa.Table], ingested_at: pd.Timestamp) -> pa.Table:
    """Good rows of all sources with their lineage; a key in two sources: the later wins."""
    parts = []
    for item, good in zip(fresh, goods, strict=True):
        if good.num_rows:
            parts.append(good.append_column("batch_id", _constant_text(item.batch_id, good.num_rows))
                         .append_column("ingested_at", _constant_stamp(ingested_at, good.num_rows)))
    if not parts:
        return pa.table({})
    rows = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        later = rows.select(_KEYS).to_pandas().duplicated(_KEYS, keep="last").to_numpy()
        rows = rows.filter(pa.array(~later))
    return rows


def _constant_text(value: str, n: int) -> pa.Array:
    """``value`` n times, built from buffers (pa.repeat goes value by value)."""
    data = value.encode()
    if len(data) * n >= 2**31:
        return pa.repeat(pa.scalar(value, pa.large_string()), n).cast(pa.string())
    offsets = np.arange(0, (n + 1) * len(data), len(data), dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


def _constant_stamp(value: pd.Timestamp, n: int) -> pa.Array:
    micros = np.full(n, value.as_unit("us").value, dtype=np.int64)
    return pa.Array.from_buffers(pa.timestamp("us", tz="UTC"), n, [None, pa.py_buffer(micros)])


def _count(
    lake: Lake, goods: list[pa.Table], series: list[pa.Array], compare: list[str]
) -> list[tuple[int, int, int, int]]:
    """(inserted, updated, unchanged, series added) per source, as if landed one by one.

    ``series``: each source's distinct ids among its good rows.

    For one source into an existing table the first three are -1: the merge counts them
    exactly (and cheaply), so they are taken from it.
    """
    exists = lake.exists(SERIES)
    if not exists and len(goods) == 1:
        return [(goods[0].num_rows, 0, 0, len(series[0]))]
    held = _held_ids(lake, series) if exists else set()
    if len(goods) == 1:
        return [(-1, -1, -1, len(set(series[0].to_pylist()) - held))]
    state = _snapshot(lake, goods, compare) if exists else _empty_state(compare)
    counts = []
    for good in goods:
        rows = good.select([*_KEYS, *compare]).to_pandas()
        merged = rows.merge(state, on=_KEYS, how="left", suffixes=("", "_old"), indicator=True)
        new = (merged["_merge"] == "left_only").to_numpy()
        same = ~new
        for column in compare:
            a, b = merged[column], merged[f"{column}_old"]
            same &= ((a == b) | (a.isna() & b.isna())).to_numpy()
        inserted, unchanged = int(new.sum()), int(same.sum())
        ids = set(rows["unique_id"])
        counts.append((inserted, len(rows) - inserted - unchanged, unchanged, len(ids - held)))
        held |= ids
        state = pd.concat([state, rows], ignore_index=True).drop_duplicates(_KEYS, keep="last")
    return counts


def _held_ids(lake: Lake, series: list[pa.Array]) -> set[str]:
    """The run's series ids that the ``series`` table already holds."""
    ids = pc.unique(pa.concat_arrays([*series, pa.array([], type=pa.string())]))
    # Matched here, not in the scan: an is_in filter on text fails on files that merges
    # wrote as string_view (pyarrow 25 with deltalake 1.6).
    held = lake.scan(SERIES, ["unique_id"])
    if not held.num_rows or not len(ids):
        return set()
    present = pc.unique(held.column("unique_id").cast(pa.string()))
    return set(ids.filter(pc.is_in(ids, value_set=present)).to_pylist())


def _empty_state(compare: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "unique_id": pd.Series(dtype="str"), "ds": pd.Series(dtype="datetime64[us]"),
        **{c: pd.Series(dtype="float64") for c in compare},
    })


def _snapshot(lake: Lake, goods: list[pa.Table], compare: list[str]) -> pd.DataFrame:
    """Keys and compare values of ``series`` rows that the run's keys could match."""
    ids = pa.concat_arrays([g.column("unique_id").combine_chunks() for g in goods if g.num_rows] or
                           [pa.array([], type=pa.string())])
    stamps = pa.concat_arrays([g.column("ds").combine_chunks() for g in goods if g.num_rows] or
                              [pa.array([], type=pa.timestamp("us"))])
    if not len(ids):
        return _empty_state(compare)
    low, high = pc.min_max(stamps).values()
    present = set(lake.columns(SERIES))
    # Files outside the run's time range are not read; ids are matched here (``_held_ids``).
    found_table = lake.scan(SERIES, [c for c in [*_KEYS, *compare] if c in present],
                            (pc.field("ds") >= low) & (pc.field("ds") <= high))
    if found_table.num_rows:
        wanted = pc.is_in(found_table.column("unique_id").cast(pa.string()), value_set=pc.unique(ids))
        found_table = found_table.filter(wanted)
    found = found_table.to_pandas()
    state = _empty_state(compare)
    if len(found):
        state = found.reindex(columns=list(state.columns)).astype(state.dtypes.to_dict())  # new column: NaN
    return state


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _recorded(lake: Lake) -> pd.DataFrame:
    """``content_hash, source, size, mtime_ns`` of every ingested source, as Python objects
    (exact integers; None where a row has no fingerprint)."""
    columns = ["content_hash", "source", "size", "mtime_ns"]
    present = lake.columns(BATCHES)
    table = lake.scan(BATCHES, columns=[c for c in columns if c in present]) if present else None
    # Arrow to Python, not to pandas: a nanosecond mtime (about 1.7e18) does not survive float64.
    values = {c: table.column(c).to_pylist() if table is not None and c in present else
              [None] * (table.num_rows if table is not None else 0) for c in columns}
    return pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in values.items()})


def _refresh_fingerprints(lake: Lake, recorded: pd.DataFrame, loaded: list[LoadedSource]) -> None:
    """A duplicate found by its hash at the path recorded for it, but with another size or
    mtime (copied back, touched, or ingested before fingerprints were kept): record its
    fingerprint, so that the next run need not read it."""
    rows = recorded.set_index("content_hash")
    stale = []
    for item in loaded:
        if item.parsed is not None or item.unchanged or item.fingerprint is None or item.content_hash not in rows.index:
            continue
        row = rows.loc[item.content_hash]
        if row["source"] == item.name and (row["size"], row["mtime_ns"]) != item.fingerprint:
            stale.append((item.content_hash, *item.fingerprint))
    if stale:
        hashes, sizes, mtimes = zip(*stale, strict=True)
        update = pd.DataFrame({"content_hash": list(hashes), "size": pd.array(sizes, dtype="Int64"),
                               "mtime_ns": pd.array(mtimes, dtype="Int64")})
        lake.upsert(BATCHES, update, keys=["content_hash"], compare=["size", "mtime_ns"])


def _batch_row(
    report: SourceReport, freq: str | None, series_version: int | None, ingested_at: pd.Timestamp
) -> dict[str, object]:
    return {
        "content_hash": report.content_hash,
        "batch_id": report.batch_id,
        "source": report.source,
        "rows_read": report.rows_read,
        "rows_landed": report.rows_landed,
        "rows_quarantined": report.rows_quarantined,
        "freq": freq or "",
        "series_version": -1 if series_version is None else series_version,
        "ingested_at": ingested_at,
    }
