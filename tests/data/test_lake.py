"""The lake: one atomic Delta commit per write, upserts that only rewrite what changed."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from deltalake.exceptions import CommitFailedError

from lstm_pipeline.config import LakeConfig
from lstm_pipeline.lake import tables as lake_module
from lstm_pipeline.lake.tables import BATCHES, SERIES, Lake, LakeError, WriteResult

KEYS = ["unique_id", "ds"]


def series(rows: list[tuple[str, str, float]], batch: str = "b1") -> pd.DataFrame:
    return pd.DataFrame({
        "unique_id": pd.Series([r[0] for r in rows], dtype="str"),
        "ds": pd.to_datetime([r[1] for r in rows]).as_unit("us"),
        "y": [r[2] for r in rows],
        "batch_id": batch,
        "ingested_at": pd.Timestamp("2026-01-01", tz="UTC"),
    })


def values(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
    return [(u, d.strftime("%Y-%m-%d"), y) for u, d, y in zip(frame["unique_id"], frame["ds"], frame["y"], strict=True)]


FIRST = [("a", "2020-01-01", 1.0), ("a", "2020-02-01", 2.0), ("b", "2020-01-01", 3.0)]


def test_a_missing_table_reads_empty(lake: Lake) -> None:
    assert not lake.exists(SERIES)
    assert lake.version(SERIES) is None
    assert lake.read(SERIES).empty
    assert list(lake.read(SERIES, columns=["y"]).columns) == ["y"]
    assert lake.history(SERIES) == []
    assert lake.freq() is None
    empty = lake.read_series()
    assert list(empty.columns) == ["unique_id", "ds", "y"] and empty.empty


def test_root_is_made_absolute_and_tables_live_under_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lake = Lake.from_config(LakeConfig(root="rel/lake"))
    assert lake.root == str(tmp_path / "rel" / "lake")
    assert lake.uri(SERIES) == f"{tmp_path}/rel/lake/series"
    assert Lake("s3://bucket/lake/").uri("forecasts") == "s3://bucket/lake/forecasts"
    with pytest.raises(LakeError, match="invalid table name"):
        lake.uri("../x")


def test_first_upsert_creates_the_table(lake: Lake) -> None:
    result = lake.upsert(SERIES, series(FIRST), keys=KEYS, compare=["y"])
    assert result == WriteResult(SERIES, version=0, inserted=3, updated=0, unchanged=0)
    assert lake.exists(SERIES) and lake.version(SERIES) == 0
    back = lake.read(SERIES)
    assert list(back.columns) == ["unique_id", "ds", "y", "batch_id", "ingested_at"]
    assert back["ds"].dtype == "datetime64[us]" and back["y"].dtype == "float64"


def test_upsert_inserts_new_keys_updates_changed_rows_only(lake: Lake) -> None:
    lake.upsert(SERIES, series(FIRST), keys=KEYS, compare=["y"])
    revision = series([("a", "2020-02-01", 2.5), ("b", "2020-01-01", 3.0), ("c", "2020-01-01", 9.0)], batch="b2")
    result = lake.upsert(SERIES, revision, keys=KEYS, compare=["y"])
    assert result == WriteResult(SERIES, version=1, inserted=1, updated=1, unchanged=1)
    back = lake.read(SERIES).sort_values(KEYS)
    assert values(back) == [
        ("a", "2020-01-01", 1.0), ("a", "2020-02-01", 2.5), ("b", "2020-01-01", 3.0), ("c", "2020-01-01", 9.0),
    ]
    # Only the updated and inserted rows carry the new batch; the equal row kept its lineage.
    assert back["batch_id"].tolist() == ["b1", "b2", "b1", "b2"]


def test_a_noop_upsert_makes_no_commit(lake: Lake) -> None:
    lake.upsert(SERIES, series(FIRST), keys=KEYS, compare=["y"])
    # A different batch id is not a change: only the compare columns count.
    result = lake.upsert(SERIES, series(FIRST, batch="b9"), keys=KEYS, compare=["y"])
    assert result == WriteResult(SERIES, version=0, inserted=0, updated=0, unchanged=3)
    assert lake.version(SERIES) == 0 and len(lake.history(SERIES)) == 1
    assert set(lake.read(SERIES)["batch_id"]) == {"b1"}


def test_time_travel_returns_the_old_value(lake: Lake) -> None:
    lake.upsert(SERIES, series(FIRST), keys=KEYS, compare=["y"])
    lake.upsert(SERIES, series([("a", "2020-02-01", 20.0)]), keys=KEYS, compare=["y"])
    assert values(lake.read_series(version=0)) == FIRST
    assert values(lake.read_series()) == [("a", "2020-01-01", 1.0), ("a", "2020-02-01", 20.0), ("b", "2020-01-01", 3.0)]
    assert [h["version"] for h in lake.history(SERIES)] == [1, 0]
    with pytest.raises(LakeError, match="at version 7"):
        lake.read(SERIES, version=7)


def test_read_series_drops_lineage_and_sorts(lake: Lake) -> None:
    lake.upsert(SERIES, series(list(reversed(FIRST))), keys=KEYS)
    out = lake.read_series()
    assert list(out.columns) == ["unique_id", "ds", "y"]
    assert values(out) == FIRST and list(out.index) == [0, 1, 2]


def test_compare_defaults_to_every_non_key_column(lake: Lake) -> None:
    lake.upsert(SERIES, series(FIRST), keys=KEYS)
    result = lake.upsert(SERIES, series(FIRST, batch="b2"), keys=KEYS)
    assert (result.updated, result.unchanged, result.version) == (3, 0, 1)


def test_upsert_refuses_repeated_keys_and_writes_nothing(lake: Lake) -> None:
    with pytest.raises(LakeError, match="repeats keys"):
        lake.upsert(SERIES, series([("a", "2020-01-01", 1.0), ("a", "2020-01-01", 2.0)]), keys=KEYS)
    assert not lake.exists(SERIES)


def test_an_empty_upsert_writes_nothing(lake: Lake) -> None:
    assert lake.upsert(SERIES, series([]), keys=KEYS) == WriteResult(SERIES, -1, 0, 0, 0)
    assert not lake.exists(SERIES)


def test_append_adds_rows_in_one_commit_each(lake: Lake) -> None:
    frame = pd.DataFrame({"unique_id": ["a", "b"], "step": [1, 2]})
    assert lake.append("forecasts", frame) == WriteResult("forecasts", 0, 2, 0, 0)
    assert lake.append("forecasts", frame) == WriteResult("forecasts", 1, 2, 0, 0)
    assert lake.append("forecasts", frame.iloc[:0]) == WriteResult("forecasts", 1, 0, 0, 0)
    assert sorted(lake.read("forecasts")["step"].tolist()) == [1, 1, 2, 2]


def test_freq_is_the_latest_recorded_in_batches(lake: Lake) -> None:
    lake.upsert(BATCHES, pd.DataFrame({
        "content_hash": ["h1"], "freq": ["MS"], "ingested_at": [pd.Timestamp("2026-01-01", tz="UTC")],
    }), keys=["content_hash"])
    assert lake.freq() == "MS"


def test_concurrent_upserts_all_land(lake: Lake) -> None:
    lake.upsert(SERIES, series(FIRST), keys=KEYS, compare=["y"])
    errors: list[BaseException] = []

    def writer(uid: str) -> None:
        try:
            for month in range(1, 5):
                # Every write also touches the shared row a/2020-01-01, so they conflict.
                rows = [(uid, f"2021-0{month}-01", float(month)), ("a", "2020-01-01", 1.0)]
                lake.upsert(SERIES, series(rows), keys=KEYS, compare=["y"])
        except BaseException as exc:  # collected, asserted empty below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(uid,)) for uid in ("x", "z")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    out = lake.read_series()
    assert len(out) == 3 + 8
    assert out.groupby("unique_id").size().to_dict() == {"a": 2, "b": 1, "x": 4, "z": 4}


def test_upsert_gives_up_after_repeated_conflicts(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    lake.upsert(SERIES, series(FIRST), keys=KEYS)
    calls: list[int] = []

    def always_conflicts(*args: object, **kwargs: object) -> WriteResult:
        calls.append(1)
        raise CommitFailedError("a concurrent transaction added new data")

    monkeypatch.setattr(lake, "_merge", always_conflicts)
    monkeypatch.setattr(lake_module, "_BACKOFF_S", 0.0)
    with pytest.raises(LakeError, match="kept conflicting"):
        lake.upsert(SERIES, series([("a", "2020-01-01", 5.0)]), keys=KEYS)
    assert len(calls) == lake_module._MAX_ATTEMPTS
    assert lake.version(SERIES) == 0
