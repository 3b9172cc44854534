"""The outcome table of docs/INGEST.md, one case per row, each fed through ``ingest`` on a
fresh lake (or on a lake holding BASE first), then the lake, the quarantine and the
error read back: no good row missing, no bad row in ``series``, every bad row in
``quarantine`` with its reason, and an unreadable file changes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.ingest import IngestError, ingest
from lstm_pipeline.lake.tables import BATCHES, QUARANTINE, SERIES, Lake

Row = tuple[str, str, float]
BASE = "unique_id,ds,y\na,2020-01-01,1\na,2020-02-01,2\na,2020-03-01,3\nb,2020-01-01,10\nb,2020-02-01,20\nb,2020-03-01,30\n"
BASE_ROWS: list[Row] = [
    ("a", "2020-01-01", 1.0), ("a", "2020-02-01", 2.0), ("a", "2020-03-01", 3.0),
    ("b", "2020-01-01", 10.0), ("b", "2020-02-01", 20.0), ("b", "2020-03-01", 30.0),
]
HEADER = "unique_id,ds,y\n"


@dataclass(frozen=True)
class Case:
    """``make`` writes the source into a folder and returns its path.

    Expected: ``series`` the whole table afterwards; ``quarantine`` (row, reason) of this
    run; ``counts`` (read, inserted, updated, unchanged, quarantined, series added); or
    ``error``, a regex the IngestError message must match (after the file's path).
    """

    make: Callable[[Path], Path]
    series: list[Row] = field(default_factory=list)
    quarantine: list[tuple[int, str]] = field(default_factory=list)
    counts: tuple[int, int, int, int, int, int] | None = None
    error: str | None = None
    base: bool = False  # ingest BASE first
    # Each case shows what happens to each row: the refusal of a mostly quarantined file
    # (data.max_quarantine_share) is off here and has cases of its own below.
    cfg: DataConfig = DataConfig(freq="MS", max_quarantine_share=1.0)


def text(name: str, body: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(body.encode(encoding))
        return path
    return make


def raw_bytes(name: str, body: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(body)
        return path
    return make


def parquet(name: str, table: pa.Table, cut: int = 0) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        pq.write_table(table, path)
        if cut:
            path.write_bytes(path.read_bytes()[:-cut])
        return path
    return make


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(range(256)) * 4

CASES: dict[str, Case] = {
    "empty file": Case(raw_bytes("empty.csv", b""), error="empty file, no header"),
    "header only": Case(text("head.csv", HEADER), counts=(0, 0, 0, 0, 0, 0)),
    "wrong delimiter": Case(
        text("semi.csv", "unique_id;ds;y\na;2020-01-01;1\n"),
        error=r"missing column\(s\) 'unique_id', 'ds', 'y'; found \['unique_id;ds;y'\] "
              r"\(the header looks semicolon-separated: is data.csv_delimiter ';'\?\)",
    ),
    "non-UTF-8 bytes": Case(
        raw_bytes("latin.csv", "unique_id,ds,y\nzoë,2020-01-01,1\nz,2020-01-01,2\n".encode("latin-1")),
        series=[("z", "2020-01-01", 2.0)],
        quarantine=[(1, "not valid UTF-8: unique_id")],
        counts=(2, 1, 0, 0, 1, 1),
    ),
    "missing required column": Case(
        text("noy.csv", "unique_id,ds,value\na,2020-01-01,1\n"),
        error=r"missing column\(s\) 'y'; found \['unique_id', 'ds', 'value'\]",
    ),
    "unknown extra columns": Case(
        text("extra.csv", "unique_id,note,ds,y,colour\na,x,2020-01-01,1,red\n"),
        series=[("a", "2020-01-01", 1.0)],
        counts=(1, 1, 0, 0, 0, 1),
    ),
    "non-numeric y": Case(
        text("abc.csv", HEADER + "a,2020-01-01,abc\na,2020-02-01,1,5\na,2020-03-01,\"1,5\"\na,2020-04-01,4\n"),
        series=[("a", "2020-04-01", 4.0)],
        quarantine=[(1, "y not a number: 'abc'"), (2, "wrong number of fields: 4, the header has 3"),
                    (3, "y not a number: '1,5'")],
        counts=(4, 1, 0, 0, 3, 1),
    ),
    "NaN and inf y": Case(
        text("inf.csv", HEADER + "a,2020-01-01,nan\na,2020-02-01,inf\na,2020-03-01,-Infinity\n"
                                 "a,2020-04-01,1e999\na,2020-05-01,\na,2020-06-01,6\n"),
        series=[("a", "2020-06-01", 6.0)],
        quarantine=[(1, "y not finite: 'nan'"), (2, "y not finite: 'inf'"), (3, "y not finite: '-Infinity'"),
                    (4, "y not finite: '1e999'"), (5, "y missing")],
        counts=(6, 1, 0, 0, 5, 1),
    ),
    "unparsable ds": Case(
        text("ds.csv", HEADER + "a,2020-13-01,1\na,01/02/2020,2\na,,3\na,2020-03-01,4\n"),
        series=[("a", "2020-03-01", 4.0)],
        quarantine=[(1, "ds unparsable: '2020-13-01'"), (2, "ds unparsable: '01/02/2020'"), (3, "ds missing")],
        counts=(4, 1, 0, 0, 3, 1),
    ),
    "mixed timezones": Case(
        text("tz.csv", HEADER + "a,2020-01-01T02:00:00+02:00,1\na,2020-01-01T01:00:00Z,2\n"
                                "a,2020-01-01 02:00:00,3\na,2020-01-01T00:00:00-03:00,4\na,2020-01-01T04:30:00+00:00,5\n"),
        series=[("a", "2020-01-01", 1.0), ("a", "2020-01-01 01:00", 2.0),
                ("a", "2020-01-01 02:00", 3.0), ("a", "2020-01-01 03:00", 4.0)],
        quarantine=[(5, "ds off the h grid: 2020-01-01 04:30:00")],
        counts=(5, 4, 0, 0, 1, 1),
        cfg=DataConfig(freq="h", max_quarantine_share=1.0),
    ),
    "duplicate key in a batch": Case(
        text("dup.csv", HEADER + "a,2020-01-01,1\na,2020-01-01,1\na,2020-02-01,2\nb,2020-01-01,5\na,2020-01-01,9\n"),
        series=[("a", "2020-02-01", 2.0), ("b", "2020-01-01", 5.0)],
        quarantine=[(1, "duplicate (unique_id, ds) in batch"), (2, "duplicate (unique_id, ds) in batch"),
                    (5, "duplicate (unique_id, ds) in batch")],
        counts=(5, 2, 0, 0, 3, 2),
    ),
    "off-grid timestamps": Case(
        text("grid.csv", HEADER + "a,2020-01-15,1\na,2020-02-01 06:00,2\na,2020-03-01,3\n"),
        series=[("a", "2020-03-01", 3.0)],
        quarantine=[(1, "ds off the MS grid: 2020-01-15"), (2, "ds off the MS grid: 2020-02-01 06:00:00")],
        counts=(3, 1, 0, 0, 2, 1),
    ),
    "revised value": Case(
        text("rev.csv", HEADER + "a,2020-02-01,2.5\na,2020-03-01,3\n"),
        series=[r if r[:2] != ("a", "2020-02-01") else ("a", "2020-02-01", 2.5) for r in BASE_ROWS],
        counts=(2, 0, 1, 1, 0, 0), base=True,
    ),
    "brand-new series": Case(
        text("new.csv", HEADER + "c,2020-01-01,7\nc,2020-02-01,8\n"),
        series=sorted([*BASE_ROWS, ("c", "2020-01-01", 7.0), ("c", "2020-02-01", 8.0)]),
        counts=(2, 2, 0, 0, 0, 1), base=True,
    ),
    "late data older than the newest": Case(
        text("late.csv", HEADER + "a,2019-06-01,-1\nb,2019-12-01,-2\n"),
        series=sorted([*BASE_ROWS, ("a", "2019-06-01", -1.0), ("b", "2019-12-01", -2.0)]),
        counts=(2, 2, 0, 0, 0, 0), base=True,
    ),
    "gaps inside a series": Case(
        text("gaps.csv", HEADER + "g,2020-01-01,1\ng,2020-04-01,4\ng,2021-01-01,13\n"),
        series=[("g", "2020-01-01", 1.0), ("g", "2020-04-01", 4.0), ("g", "2021-01-01", 13.0)],
        counts=(3, 3, 0, 0, 0, 1),
    ),
    "empty or null series id": Case(
        parquet("ids.parquet", pa.table({
            "unique_id": pa.array(["", None, "  ", "k"], type=pa.string()),
            "ds": ["2020-01-01"] * 4, "y": [1.0, 2.0, 3.0, 4.0],
        })),
        series=[("k", "2020-01-01", 4.0)],
        quarantine=[(1, "unique_id empty"), (2, "unique_id empty"), (3, "unique_id empty")],
        counts=(4, 1, 0, 0, 3, 1),
    ),
    "not a table: binary": Case(raw_bytes("image.csv", PNG), error=r"cannot be read as a CSV table: it holds NUL bytes"),
    "not a table: prose": Case(
        text("notes.csv", "Dear team,\nplease find the numbers attached.\n"),
        error=r"missing column\(s\) 'unique_id', 'ds', 'y'; found \['Dear team'",
    ),
    "truncated Parquet": Case(
        parquet("cut.parquet", pa.table({"unique_id": ["a"], "ds": ["2020-01-01"], "y": [1.0]}), cut=30),
        error="cannot be read as a Parquet table",
    ),
    "truncated gzip": Case(
        raw_bytes("cut.csv.gz", gzip.compress((HEADER + "a,2020-01-01,1\n").encode())[:-12]),
        error="cannot be read as a gzip file",
    ),
    "gzip CSV": Case(
        raw_bytes("ok.csv.gz", gzip.compress((HEADER + "a,2020-01-01,1\na,2020-02-01,x\n").encode())),
        series=[("a", "2020-01-01", 1.0)], quarantine=[(2, "y not a number: 'x'")], counts=(2, 1, 0, 0, 1, 1),
    ),
    "typed Parquet": Case(
        parquet("typed.parquet", pa.table({
            "unique_id": pa.array([7, 7, 7], type=pa.int64()),
            "ds": pa.array([pd.Timestamp("2020-01-01", tz="Europe/Paris"), pd.Timestamp("2020-02-01", tz="UTC"), None],
                           type=pa.timestamp("us", tz="Europe/Paris")),
            "y": pa.array([1, 2, 3], type=pa.int32()),
        })),
        # Midnight in Paris is 23:00 UTC the day before: off the month-start grid in UTC.
        series=[("7", "2020-02-01", 2.0)],
        quarantine=[(1, "ds off the MS grid: 2019-12-31 23:00:00"), (3, "ds missing")],
        counts=(3, 1, 0, 0, 2, 1),
    ),
    # -- whole files that would mislead: refused before anything lands (default settings) --
    "mixed frequencies in a first file": Case(
        text("mixedfreq.csv", HEADER + "m,2020-01-01,1\nm,2020-02-01,2\nm,2020-03-01,3\nm,2020-04-01,4\n"
                                       "d,2020-01-01,1\nd,2020-01-02,2\nd,2020-01-03,3\nd,2020-01-04,4\n"),
        error=r"mixed frequencies found: D \(1 series\), MS \(1 series\); nothing was ingested",
        cfg=DataConfig(),
    ),
    "mixed date formats": Case(
        # Only the quarter months are ISO: what parses looks quarterly, but most rows do not.
        text("formats.csv", HEADER + "".join(
            f"a,{f'2020-{m:02d}-01' if m % 3 == 1 else f'01/{m:02d}/2020'},{m}\n" for m in range(1, 13))),
        error=r"8 of 12 rows would be quarantined \(67%, more than data.max_quarantine_share = 50%\): "
              r"ds unparsable \(8\); first: row 2, ds unparsable: '01/02/2020'; nothing was ingested",
        cfg=DataConfig(),
    ),
    "daily rows into a monthly lake": Case(
        text("daily.csv", HEADER + "".join(f"d,2020-01-{day:02d},{day}\n" for day in range(1, 32))),
        error=r"its series follow D \(1 series\), finer than the lake's frequency MS; nothing was ingested",
        base=True, cfg=DataConfig(),
    ),
    "month-end rows into a month-start lake": Case(
        text("month_end.csv", HEADER + "e,2020-01-31,1\ne,2020-02-29,2\ne,2020-03-31,3\ne,2020-04-30,4\n"),
        error=r"its series follow ME \(1 series\), not the lake's frequency MS; nothing was ingested",
        base=True, cfg=DataConfig(),
    ),
    "a quarterly series in a monthly lake": Case(
        text("quarterly.csv", HEADER + "q,2020-01-01,1\nq,2020-04-01,2\nq,2020-07-01,3\nq,2020-10-01,4\n"),
        series=sorted([*BASE_ROWS, ("q", "2020-01-01", 1.0), ("q", "2020-04-01", 2.0), ("q", "2020-07-01", 3.0),
                       ("q", "2020-10-01", 4.0)]),
        counts=(4, 4, 0, 0, 0, 1), base=True, cfg=DataConfig(),
    ),
    "mostly quarantined file": Case(
        text("mostly.csv", HEADER + "a,2020-01-01,x\na,2020-02-01,y\na,2020-03-01,3\n"),
        error=r"2 of 3 rows would be quarantined \(67%, more than data.max_quarantine_share = 50%\): "
              r"y not a number \(2\); first: row 1, y not a number: 'x'; nothing was ingested",
        base=True, cfg=DataConfig(freq="MS"),
    ),
    "half quarantined file": Case(
        text("half.csv", HEADER + "a,2020-04-01,x\na,2020-05-01,5\n"),
        series=sorted([*BASE_ROWS, ("a", "2020-05-01", 5.0)]),
        quarantine=[(1, "y not a number: 'x'")],
        counts=(2, 1, 0, 0, 1, 0), base=True, cfg=DataConfig(freq="MS"),
    ),
}


def series_rows(lake: Lake) -> list[Row]:
    out = lake.read_series()
    return [(u, _fmt(d), y) for u, d, y in zip(out["unique_id"], out["ds"], out["y"], strict=True)]


def _fmt(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.strftime("%Y-%m-%d %H:%M")


def versions(lake: Lake) -> dict[str, int | None]:
    return {t: lake.version(t) for t in (SERIES, QUARANTINE, BATCHES)}


@pytest.mark.parametrize("name", list(CASES))
def test_outcome(name: str, lake: Lake, tmp_path: Path) -> None:
    case = CASES[name]
    if case.base:
        base = tmp_path / "base.csv"
        base.write_text(BASE, encoding="utf-8")
        ingest(lake, [base], case.cfg)
    before = versions(lake)
    source = case.make(tmp_path)
    if case.error is not None:
        with pytest.raises(IngestError, match=f"^{source}: {case.error}"):
            ingest(lake, [source], case.cfg)
        assert versions(lake) == before  # nothing of it landed, not even a batches row
        return

    report = ingest(lake, [source], case.cfg)
    assert series_rows(lake) == case.series
    (only,) = report.sources
    batch_id = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    assert (only.status, only.batch_id) == ("ingested", batch_id)
    assert case.counts == (only.rows_read, only.rows_inserted, only.rows_updated, only.rows_unchanged,
                           only.rows_quarantined, only.series_added)
    quarantine = lake.read(QUARANTINE) if lake.exists(QUARANTINE) else pd.DataFrame(
        columns=["batch_id", "source", "row", "reason", "raw"])
    mine = quarantine[quarantine["batch_id"] == batch_id].sort_values("row")
    assert list(zip(mine["row"].tolist(), mine["reason"].tolist(), strict=True)) == case.quarantine
    assert set(mine["source"]) <= {str(source)}
    assert all(isinstance(json.loads(raw), dict) for raw in mine["raw"])
    # The batch is recorded, so the same bytes again are a no-op reported as such.
    again = ingest(lake, [source], case.cfg)
    assert [s.status for s in again.sources] == ["duplicate"]
    assert versions(lake) == {t: v for t, v in report.versions.items()}


def test_the_outcome_table_in_the_docs_lists_every_case() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "INGEST.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1].strip() for line in doc.splitlines() if line.startswith("| ") and "|" in line[2:]]
    assert set(CASES) <= set(rows)


def test_a_revision_keeps_the_old_value_reachable_in_history(lake: Lake, tmp_path: Path) -> None:
    base = tmp_path / "base.csv"
    base.write_text(BASE, encoding="utf-8")
    ingest(lake, [base], DataConfig())
    CASES["revised value"].make(tmp_path)
    report = ingest(lake, [tmp_path / "rev.csv"], DataConfig())
    old = lake.read_series(version=0)
    assert old.loc[(old["unique_id"] == "a") & (old["ds"] == "2020-02-01"), "y"].tolist() == [2.0]
    assert report.series_version == 1 and lake.history(SERIES)[0]["version"] == 1


def test_a_file_that_cannot_be_read_stops_the_whole_run(lake: Lake, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(BASE, encoding="utf-8")
    broken = CASES["truncated Parquet"].make(tmp_path)
    with pytest.raises(IngestError, match=f"^{broken}: cannot be read as a Parquet table"):
        ingest(lake, [good, broken], DataConfig())
    assert versions(lake) == {SERIES: None, QUARANTINE: None, BATCHES: None}


def test_sources_by_file_uri_and_glob(lake: Lake, tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "one.csv").write_text(HEADER + "u,2020-01-01,1\n", encoding="utf-8")
    (folder / "two.csv").write_text(HEADER + "u,2020-02-01,2\n", encoding="utf-8")
    (folder / "skip.txt").write_text("not a table", encoding="utf-8")
    report = ingest(lake, [f"file://{folder}/*.csv"], DataConfig(freq="MS"))
    assert [s.source for s in report.sources] == [f"file://{folder}/one.csv", f"file://{folder}/two.csv"]
    assert series_rows(lake) == [("u", "2020-01-01", 1.0), ("u", "2020-02-01", 2.0)]
    again = ingest(lake, [f"file://{folder}"], DataConfig(freq="MS"))  # a folder URI: its table files
    assert [s.status for s in again.sources] == ["duplicate", "duplicate"]
    with pytest.raises(IngestError, match="nothing.csv: no such file or directory"):
        ingest(lake, [f"file://{folder}/nothing.csv"], DataConfig(freq="MS"))


def test_commits_name_the_batches_they_land(lake: Lake, tmp_path: Path) -> None:
    src = tmp_path / "mixed.csv"
    src.write_text(BASE + "a,2020-04-01,x\n", encoding="utf-8")
    report = ingest(lake, [src], DataConfig())
    batch_id = report.sources[0].batch_id
    for table in (SERIES, QUARANTINE, BATCHES):
        (commit,) = lake.history(table)
        assert commit["lstm_pipeline.lake.ingest"] == batch_id
    assert report.versions == {SERIES: 0, QUARANTINE: 0, BATCHES: 0}
    assert lake.read(BATCHES)[["rows_read", "rows_landed", "rows_quarantined", "series_version"]].values.tolist() == [
        [7, 6, 1, 0]]


@pytest.mark.slow
def test_a_million_row_file_lands_every_row(lake: Lake, tmp_path: Path) -> None:
    n_series, n_days = 2_000, 500
    ids = np.repeat(np.array([f"s{i:04d}" for i in range(n_series)]), n_days)
    ds = np.tile(np.arange(n_days).astype("timedelta64[D]") + np.datetime64("2020-01-01"), n_series)
    y = np.repeat(np.arange(n_series) * 1000.0, n_days) + np.tile(np.arange(n_days) / 4, n_series)
    source = tmp_path / "million.csv"
    pacsv.write_csv(pa.table({"unique_id": ids, "ds": ds.astype("datetime64[D]"), "y": y}), source,
                    pacsv.WriteOptions(quoting_style="none"))
    report = ingest(lake, [source], DataConfig())
    assert (report.rows_read, report.rows_inserted, report.rows_quarantined) == (1_000_000, 1_000_000, 0)
    assert (report.freq, report.series_added) == ("D", 2_000)
    out = lake.read_series()
    assert len(out) == 1_000_000 and not out.duplicated(["unique_id", "ds"]).any()
    spots = out.set_index(["unique_id", "ds"])["y"]
    assert spots[("s0000", pd.Timestamp("2020-01-01"))] == 0.0
    assert spots[("s1234", pd.Timestamp("2020-01-11"))] == 1_234_002.5
    assert spots[("s1999", pd.Timestamp("2021-05-14"))] == 1_999_124.75
    assert not lake.exists(QUARANTINE)
