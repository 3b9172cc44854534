"""Ingest: files land exactly, bad rows are quarantined with reasons, reruns are no-ops."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.ingest import IngestError, ingest
from lstm_pipeline.lake.sources import load_source, read_as_text
from lstm_pipeline.lake.tables import BATCHES, QUARANTINE, SERIES, Lake

CFG = DataConfig()
GOOD = (
    "unique_id,ds,y\na,2020-01-01,1\na,2020-02-01,2\na,2020-03-01,3\n"
    "b,2020-01-01,10\nb,2020-02-01,20\nb,2020-03-01,30\n"
)
TABLES = (SERIES, QUARANTINE, BATCHES)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows(lake: Lake, version: int | None = None) -> list[tuple[str, str, float]]:
    out = lake.read_series(version)
    return [(u, d.strftime("%Y-%m-%d"), y) for u, d, y in zip(out["unique_id"], out["ds"], out["y"], strict=True)]


def versions(lake: Lake) -> dict[str, int | None]:
    return {t: lake.version(t) for t in TABLES}


EXPECTED_GOOD = [
    ("a", "2020-01-01", 1.0), ("a", "2020-02-01", 2.0), ("a", "2020-03-01", 3.0),
    ("b", "2020-01-01", 10.0), ("b", "2020-02-01", 20.0), ("b", "2020-03-01", 30.0),
]


def test_a_good_csv_lands_exactly(lake: Lake, tmp_path: Path) -> None:
    src = write(tmp_path / "good.csv", GOOD)
    report = ingest(lake, [src], CFG)
    assert rows(lake) == EXPECTED_GOOD
    (only,) = report.sources
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert (only.status, only.content_hash, only.batch_id) == ("ingested", digest, digest[:16])
    assert (only.rows_read, only.rows_inserted, only.rows_updated, only.rows_unchanged) == (6, 6, 0, 0)
    assert (only.rows_quarantined, only.series_added, only.extra_columns) == (0, 2, ())
    assert (report.freq, report.series_version) == ("MS", 0)
    assert lake.freq() == "MS" and not lake.exists(QUARANTINE)
    batch = lake.read(BATCHES).iloc[0]
    assert (batch["content_hash"], batch["source"], batch["rows_read"], batch["rows_landed"], batch["freq"]) == (
        digest, str(src), 6, 6, "MS")
    assert set(lake.read(SERIES)["batch_id"]) == {digest[:16]}
    assert report.summary().splitlines()[:3] == [
        "1 source(s) ingested, 0 duplicate(s) skipped; freq MS; series table version 0",
        "rows: 6 read, 6 landed (6 inserted, 0 updated, 0 unchanged), 0 quarantined; 2 new series",
        "lake versions: series 0, quarantine -, batches 0",
    ]


def test_the_same_file_twice_is_a_duplicate_and_writes_nothing(lake: Lake, tmp_path: Path) -> None:
    src = write(tmp_path / "good.csv", GOOD)
    ingest(lake, [src], CFG)
    before = versions(lake)
    copy = write(tmp_path / "renamed.csv", GOOD)  # same bytes under another name
    report = ingest(lake, [src, copy], CFG)
    assert [s.status for s in report.sources] == ["duplicate", "duplicate"]
    assert (report.rows_read, report.rows_inserted, report.series_version) == (0, 0, 0)
    assert versions(lake) == before and len(lake.read(SERIES)) == 6


def test_bad_rows_are_quarantined_with_reason_and_row_number(lake: Lake, tmp_path: Path) -> None:
    text = (
        "unique_id,ds,y\n"
        "a,2020-01-01,1\n"     # 1 good
        "a,2020-02-01,nan\n"   # 2
        "a,2020-13-01,3\n"     # 3
        "a,2020-03-15,4\n"     # 4
        "b,2020-01-01,5\n"     # 5 duplicate
        "b,2020-01-01,6\n"     # 6 duplicate
        ",2020-01-01,7\n"      # 7
        "b,2020-02-01,8\n"     # 8 good
    )
    src = write(tmp_path / "mixed.csv", text)
    report = ingest(lake, [src], DataConfig(freq="MS", max_quarantine_share=1.0))  # 6 of 8 rows are bad
    assert rows(lake) == [("a", "2020-01-01", 1.0), ("b", "2020-02-01", 8.0)]
    quarantine = lake.read(QUARANTINE).sort_values("row")
    assert list(zip(quarantine["row"], quarantine["reason"], strict=True)) == [
        (2, "y not finite: 'nan'"),
        (3, "ds unparsable: '2020-13-01'"),
        (4, "ds off the MS grid: 2020-03-15"),
        (5, "duplicate (unique_id, ds) in batch"),
        (6, "duplicate (unique_id, ds) in batch"),
        (7, "unique_id empty"),
    ]
    assert set(quarantine["source"]) == {str(src)}
    assert json.loads(quarantine["raw"].iloc[0]) == {"unique_id": "a", "ds": "2020-02-01", "y": "nan"}
    assert report.rows_quarantined == 6 and report.rows_inserted == 2
    assert report.quarantine_reasons == {
        "duplicate (unique_id, ds) in batch": 2, "ds off the MS grid": 1, "ds unparsable": 1,
        "unique_id empty": 1, "y not finite": 1,
    }
    assert lake.read(BATCHES)["rows_quarantined"].tolist() == [6]


def test_a_clean_csv_read_in_types_parses_as_its_text_does(tmp_path: Path) -> None:
    src = write(tmp_path / "clean.csv", 'unique_id,ds,y,note\n" a",2020-01-01,1.50,x\nb,2020-02-01T00:00,+2e1,y\n')
    typed = load_source(src, CFG, set())
    text = read_as_text(typed, CFG)
    assert typed.read is not None and typed.read.typed and text.read is not None and not text.read.typed
    assert typed.parsed is not None and text.parsed is not None
    assert typed.parsed.ids.dictionary.to_pylist() == text.parsed.ids.dictionary.to_pylist() == ["a", "b"]
    assert typed.parsed.ds.tolist() == text.parsed.ds.tolist()
    assert typed.parsed.values["y"].tolist() == text.parsed.values["y"].tolist() == [1.5, 20.0]


def test_rows_that_fail_a_later_check_are_quarantined_with_the_files_text(lake: Lake, tmp_path: Path) -> None:
    # Every cell converts, so the file is first read in types; the grid and duplicate
    # checks then reject rows, whose raw cells must be the file's own text.
    src = write(tmp_path / "late.csv", "unique_id,ds,y\na,2020-01-01,1.50\na,2020-01-15,2.50\nb,2020-01-01,3\nb,2020-01-01,3\n")
    report = ingest(lake, [src], DataConfig(freq="MS", max_quarantine_share=1.0))  # 3 of 4 rows are bad
    assert rows(lake) == [("a", "2020-01-01", 1.5)]
    quarantine = lake.read(QUARANTINE).sort_values("row")
    assert [json.loads(raw) for raw in quarantine["raw"]] == [
        {"unique_id": "a", "ds": "2020-01-15", "y": "2.50"},
        {"unique_id": "b", "ds": "2020-01-01", "y": "3"},
        {"unique_id": "b", "ds": "2020-01-01", "y": "3"},
    ]
    assert quarantine["row"].tolist() == [2, 3, 4] and report.rows_quarantined == 3


def test_a_file_that_changes_between_its_two_reads_is_refused(tmp_path: Path) -> None:
    src = write(tmp_path / "moving.csv", GOOD)
    typed = load_source(src, CFG, set())
    write(src, GOOD + "c,2020-01-01,5\n")
    with pytest.raises(IngestError, match="changed while it was being ingested"):
        read_as_text(typed, CFG)


def test_a_revision_updates_the_value_and_the_old_version_keeps_the_old_one(lake: Lake, tmp_path: Path) -> None:
    ingest(lake, [write(tmp_path / "v1.csv", GOOD)], CFG)
    revision = write(tmp_path / "v2.csv", "unique_id,ds,y\na,2020-02-01,2.5\na,2020-03-01,3\na,2020-04-01,4\n")
    report = ingest(lake, [revision], CFG)
    (only,) = report.sources
    assert (only.rows_inserted, only.rows_updated, only.rows_unchanged, only.series_added) == (1, 1, 1, 0)
    assert report.series_version == 1
    assert ("a", "2020-02-01", 2.5) in rows(lake) and len(rows(lake)) == 7
    assert rows(lake, version=0) == EXPECTED_GOOD


@pytest.mark.parametrize("bad", ["binary", "truncated_parquet", "empty", "missing_column"])
def test_an_unreadable_file_fails_the_run_and_nothing_lands(lake: Lake, tmp_path: Path, bad: str) -> None:
    ingest(lake, [write(tmp_path / "first.csv", GOOD)], CFG)
    before = versions(lake)
    good = write(tmp_path / "more.csv", "unique_id,ds,y\nc,2020-01-01,1\n")
    if bad == "binary":
        broken, why = tmp_path / "noise.csv", "cannot be read as a CSV table"
        broken.write_bytes(bytes(range(256)) * 8)
    elif bad == "truncated_parquet":
        broken, why = tmp_path / "cut.parquet", "cannot be read as a Parquet table"
        pq.write_table(pa.table({"unique_id": ["c"], "ds": ["2020-02-01"], "y": [1.0]}), broken)
        broken.write_bytes(broken.read_bytes()[:-20])
    elif bad == "empty":
        broken, why = tmp_path / "empty.csv", "empty file, no header"
        broken.write_bytes(b"")
    else:
        broken, why = write(tmp_path / "cols.csv", "unique_id,date,y\nc,2020-01-01,1\n"), "missing column\\(s\\) 'ds'"
    with pytest.raises(IngestError, match=f"{broken}: {why}"):
        ingest(lake, [good, broken], CFG)
    assert versions(lake) == before and len(lake.read(SERIES)) == 6


def test_csv_quirks_byte_order_mark_blank_lines_short_rows_and_quoting(lake: Lake, tmp_path: Path) -> None:
    src = tmp_path / "quirks.csv"
    src.write_bytes("\ufeffunique_id,ds,y\n\n\"x,1\",2020-01-01,1\na,2020-01-01\n\na,2020-02-01,2\n".encode())
    report = ingest(lake, [src], DataConfig(freq="MS"))
    assert rows(lake) == [("a", "2020-02-01", 2.0), ("x,1", "2020-01-01", 1.0)]
    # Row numbers count data records: blank lines are not rows. A short record is not padded.
    assert lake.read(QUARANTINE)[["row", "reason"]].values.tolist() == [
        [2, "wrong number of fields: 2, the header has 3"]]
    assert json.loads(lake.read(QUARANTINE)["raw"].iloc[0]) == {"_text": "a,2020-01-01"}
    assert report.rows_read == 3


def test_a_header_only_file_is_recorded_and_lands_nothing(lake: Lake, tmp_path: Path) -> None:
    report = ingest(lake, [write(tmp_path / "head.csv", "unique_id,ds,y\n")], DataConfig(freq="MS"))
    assert (report.sources[0].status, report.rows_read, report.series_version) == ("ingested", 0, None)
    assert not lake.exists(SERIES) and lake.read(BATCHES)["rows_read"].tolist() == [0]


def test_a_missing_path_fails_naming_it(lake: Lake, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"nope.csv: no such file or directory"):
        ingest(lake, [tmp_path / "nope.csv"], CFG)
    assert not lake.exists(SERIES)


def test_a_second_file_with_a_new_series_adds_it(lake: Lake, tmp_path: Path) -> None:
    ingest(lake, [write(tmp_path / "first.csv", GOOD)], CFG)
    report = ingest(lake, [write(tmp_path / "new.csv", "unique_id,ds,y\nc,2020-01-01,7\nc,2020-02-01,8\n")], CFG)
    assert (report.series_added, report.rows_inserted, report.series_version) == (1, 2, 1)
    assert sorted(set(lake.read_series()["unique_id"])) == ["a", "b", "c"]


def test_a_parquet_source_with_typed_columns_works(lake: Lake, tmp_path: Path) -> None:
    src = tmp_path / "typed.parquet"
    stamps = pd.to_datetime(["2020-01-01", "2020-02-01", "2020-03-01"]).as_unit("us")
    pq.write_table(pa.table({
        "unique_id": ["p", "p", "p"],
        "ds": pa.array(stamps.to_numpy(), type=pa.timestamp("us", tz="UTC")),
        "y": pa.array([1.5, None, 3.0], type=pa.float64()),
    }), src)
    report = ingest(lake, [src], CFG)
    assert rows(lake) == [("p", "2020-01-01", 1.5), ("p", "2020-03-01", 3.0)]
    assert lake.read(QUARANTINE)["reason"].tolist() == ["y missing"]
    assert report.freq == "MS"


def test_column_mapping_and_delimiter(lake: Lake, tmp_path: Path) -> None:
    cfg = DataConfig(id_col="series", time_col="date", target_col="value", csv_delimiter=";", freq="D")
    src = write(tmp_path / "mapped.csv", "series;date;value;note\ns1;2020-01-01;4;x\ns1;2020-01-02;5;y\n")
    report = ingest(lake, [src], cfg)
    assert rows(lake) == [("s1", "2020-01-01", 4.0), ("s1", "2020-01-02", 5.0)]
    assert report.sources[0].extra_columns == ("note",) and report.freq == "D"


def test_a_directory_is_read_in_name_order_and_the_later_file_wins_a_shared_key(lake: Lake, tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    write(folder / "a.csv", GOOD)
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"unique_id,ds,y\na,2020-03-01,33\n"))
    write(folder / "notes.txt", "not a table")
    report = ingest(lake, [folder], CFG)
    assert [Path(s.source).name for s in report.sources] == ["a.csv", "b.csv.gz"]
    assert [(s.rows_inserted, s.rows_updated) for s in report.sources] == [(6, 0), (0, 1)]
    assert ("a", "2020-03-01", 33.0) in rows(lake)
    assert lake.version(SERIES) == 0  # both files in one commit


def test_a_later_batch_on_another_grid_is_quarantined(lake: Lake, tmp_path: Path) -> None:
    ingest(lake, [write(tmp_path / "monthly.csv", GOOD)], CFG)
    report = ingest(lake, [write(tmp_path / "daily.csv", "unique_id,ds,y\na,2020-04-01,1\na,2020-04-02,2\n")], CFG)
    assert report.freq == "MS" and report.rows_inserted == 1
    assert lake.read(QUARANTINE)["reason"].tolist() == ["ds off the MS grid: 2020-04-02"]
    with pytest.raises(IngestError, match=r"data.freq 'D' contradicts the lake's frequency 'MS'"):
        ingest(lake, [write(tmp_path / "x.csv", "unique_id,ds,y\na,2020-05-01,1\n")], DataConfig(freq="D"))


def test_a_crash_before_the_batches_commit_is_redone_idempotently(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write(tmp_path / "mixed.csv", GOOD + "a,2020-04-01,nan\n")
    real_upsert = lake.upsert

    def crash_on_batches(table: str, *args: object, **kwargs: object) -> object:
        if table == BATCHES:
            raise OSError("disk gone")
        return real_upsert(table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lake, "upsert", crash_on_batches)
    with pytest.raises(OSError, match="disk gone"):
        ingest(lake, [src], CFG)
    monkeypatch.undo()
    assert not lake.exists(BATCHES)
    report = ingest(lake, [src], CFG)
    (only,) = report.sources
    assert (only.status, only.rows_inserted, only.rows_unchanged, only.rows_quarantined) == ("ingested", 0, 6, 1)
    assert versions(lake) == {SERIES: 0, QUARANTINE: 0, BATCHES: 0}
    assert len(lake.read(QUARANTINE)) == 1


def test_first_ingest_without_an_inferable_frequency_fails_clearly(lake: Lake, tmp_path: Path) -> None:
    src = write(tmp_path / "one.csv", "unique_id,ds,y\na,2020-01-01,1\nb,2020-01-01,2\n")
    with pytest.raises(IngestError, match=r"one.csv: cannot infer the frequency.*set data.freq"):
        ingest(lake, [src], CFG)
    assert ingest(lake, [src], DataConfig(freq="MS")).rows_inserted == 2


def test_a_first_file_whose_every_row_is_bad_is_refused_unless_the_share_allows_it(lake: Lake, tmp_path: Path) -> None:
    src = write(tmp_path / "bad.csv", "unique_id,ds,y\na,junk,1\n,2020-01-01,2\n")
    with pytest.raises(IngestError, match=r"bad.csv: 2 of 2 rows would be quarantined \(100%.*nothing was ingested"):
        ingest(lake, [src], CFG)
    assert versions(lake) == {SERIES: None, QUARANTINE: None, BATCHES: None}
    report = ingest(lake, [src], DataConfig(max_quarantine_share=1.0))
    assert (report.freq, report.rows_quarantined, report.series_version) == (None, 2, None)
    assert lake.read(QUARANTINE).sort_values("row")["reason"].tolist() == ["ds unparsable: 'junk'", "unique_id empty"]
    assert lake.freq() is None and not lake.exists(SERIES)


# --- a landing folder that keeps every file it ever received -----------------------------


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (page cache included)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _landing(folder: Path, n: int, start: int = 0, series: int = 1) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    ds = list(pd.date_range("2015-01-01", periods=60, freq="MS").strftime("%Y-%m-%d"))
    for i in range(start, start + n):
        frame = pd.DataFrame({"unique_id": [f"f{i:04d}-{s}" for s in range(series) for _ in ds], "ds": ds * series,
                              "y": [float(i * 100 + k) for _ in range(series) for k in range(60)]})
        paths.append(folder / f"day-{i:04d}.csv")
        frame.to_csv(paths[-1], index=False)
    return paths


def test_files_already_ingested_are_not_read_again(lake: Lake, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    old = _landing(folder, 100, series=20)  # about 5 MB
    ingest(lake, [folder], CFG)
    old_bytes = sum(p.stat().st_size for p in old)
    new = _landing(folder, 1, start=100)

    before = _bytes_read()
    report = ingest(lake, [folder], CFG)
    read = _bytes_read() - before

    assert [s.source for s in report.ingested] == [str(new[0])]
    assert len(report.duplicates) == 100 and report.not_read == 100
    # The old files' bytes were not read: what was read is the new file plus the lake's own
    # tables and logs, far less than the old files.
    assert read < old_bytes / 5, (read, old_bytes)


def test_a_touched_file_is_hashed_once_then_known_by_its_new_fingerprint(lake: Lake, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    (path,) = _landing(folder, 1)
    ingest(lake, [folder], CFG)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # same bytes, newer mtime

    touched = ingest(lake, [folder], CFG)
    assert [s.status for s in touched.sources] == ["duplicate"] and touched.not_read == 0  # read and hashed
    again = ingest(lake, [folder], CFG)
    assert [s.status for s in again.sources] == ["duplicate"] and again.not_read == 1  # now known without reading
    assert len(lake.read(BATCHES)) == 1


def test_a_file_rewritten_in_place_with_new_bytes_is_ingested(lake: Lake, tmp_path: Path) -> None:
    path = write(tmp_path / "daily.csv", GOOD)
    ingest(lake, [path], CFG)
    stat = path.stat()
    write(path, GOOD.replace("a,2020-03-01,3", "a,2020-03-01,4"))  # same size, new content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))

    report = ingest(lake, [path], CFG)

    assert [s.status for s in report.sources] == ["ingested"]
    assert ("a", "2020-03-01", 4.0) in rows(lake)
