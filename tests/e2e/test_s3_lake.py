"""The lake on S3-compatible storage, for real: moto's server on 127.0.0.1.

Each commit on S3 is a conditional write of the next log entry (``If-None-Match: *``):
two writers cannot both commit the same version. These tests drive that through ``Lake``
and real processes: an ingest, upserts and reads on an ``s3://`` root; two ingests
started at the same moment into the same tables; a writer killed with SIGKILL while it
commits; and the tables read back by a second engine (polars).
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.ingest import ingest
from lstm_pipeline.lake.tables import BATCHES, FORECASTS, QUARANTINE, SERIES, Lake
from lstm_pipeline.shell.services import ObjectStore, clean_env
from tests.conftest import ROOT
from tests.data.test_crash_and_concurrency import monthly, same, write_csv
from tests.e2e.relay import Relay

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHILD = ROOT / "tests" / "data" / "ingest_child.py"
BUCKET = "s3-lake-tests"
CFG = DataConfig(freq="MS")
# What delta-rs needs of the store; the Lake gets them as storage_options, children as env.
OPTION_KEYS = ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


@dataclass(frozen=True)
class S3:
    store: ObjectStore
    options: dict[str, str]
    client: Any  # boto3's S3 client, for looking at the objects themselves

    def root(self) -> str:
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"

    def lake(self, root: str) -> Lake:
        return Lake(root, self.options)

    def keys(self, prefix: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture(scope="module")
def s3(object_store: ObjectStore) -> S3:
    object_store.create_bucket(BUCKET)
    env = object_store.env()
    client = boto3.client("s3", endpoint_url=object_store.endpoint, region_name=env["AWS_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    return S3(object_store, {k: env[k] for k in OPTION_KEYS}, client)


def start_child(s3: S3, root: str, sources: list[Path], ready: Path, go: Path | None = None,
                endpoint: str | None = None) -> subprocess.Popen[str]:
    """An ingest process whose credentials come from the standard AWS_* variables."""
    command = [sys.executable, str(CHILD), root, CFG.freq or "", str(ready), str(go or "-"), *map(str, sources)]
    env = clean_env({**s3.store.env(), "PYTHONPATH": str(ROOT)})
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str], ready: Path) -> None:
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited before it was ready: {proc.communicate()}")
        time.sleep(0.001)


def run_together(s3: S3, root: str, sources: list[Path], tmp: Path) -> list[tuple[int, str, str]]:
    """One ingest process per source, released at the same moment; their exit codes and output."""
    go = tmp / f"go-{time.monotonic_ns()}"
    readies = [tmp / f"ready-{i}-{time.monotonic_ns()}" for i in range(len(sources))]
    procs = [start_child(s3, root, [src], ready, go) for src, ready in zip(sources, readies, strict=True)]
    for proc, ready in zip(procs, readies, strict=True):
        wait_ready(proc, ready)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    print(f"concurrent S3 ingests: {sum(e.count('concurrent commit') for _, _, e in results)} commit(s) retried")
    return results


def assert_versions_consistent(lake: Lake, table: str) -> None:
    """Versions 0..N, each opening, each a distinct commit object in the log."""
    versions = sorted(int(entry["version"]) for entry in lake.history(table))
    assert versions == list(range(len(versions))), versions
    for version in versions:
        lake.read(table, version=version)


def test_ingest_upsert_and_read_back_on_s3(s3: S3, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = s3.root()
    with caplog.at_level(logging.INFO, logger="lstm_pipeline.lake.tables"):
        lake = s3.lake(root)
    assert "commits are conditional writes (If-None-Match)" in caplog.text
    assert not lake.exists(SERIES) and lake.version(SERIES) is None and lake.read_series().empty

    first = monthly(range(20), "2015-01-01", 36)
    report = ingest(lake, [write_csv(first, tmp_path / "first.csv", [("zz", "2015-01-01", "n/a")])], CFG)
    assert (report.rows_inserted, report.rows_quarantined) == (720, 1)
    assert same(lake.read_series(), first.sort_values(["unique_id", "ds"], kind="stable"))
    assert lake.freq() == "MS" and lake.version(SERIES) == 0
    assert {"unique_id", "ds", "y", "batch_id", "ingested_at"} <= set(lake.columns(SERIES))
    assert lake.read(QUARANTINE)["reason"].tolist() == ["y not a number: 'n/a'"]

    # A revision of the last year and a new year: one merge commit.
    revised = monthly(range(20), "2017-01-01", 24, shift=0.5)
    lineage = {"batch_id": "manual", "ingested_at": lake.read(SERIES)["ingested_at"].iloc[0]}
    result = lake.upsert(SERIES, revised.assign(**lineage), keys=["unique_id", "ds"], compare=["y"])
    assert (result.version, result.inserted, result.updated, result.unchanged) == (1, 240, 240, 0)
    again = lake.upsert(SERIES, revised.assign(**lineage), keys=["unique_id", "ds"], compare=["y"])
    assert (again.version, again.inserted, again.updated, again.unchanged) == (1, 0, 0, 480)

    expected = pd.concat([first[first["ds"] < "2017-01-01"], revised]).sort_values(["unique_id", "ds"], kind="stable")
    assert same(lake.read_series(), expected)
    assert same(lake.read_series(version=0), first.sort_values(["unique_id", "ds"], kind="stable"))
    assert [entry["version"] for entry in lake.history(SERIES)] == [1, 0]
    # Text is not filtered in the scan: merges write it as string_view (see ingest._held_ids).
    scanned = lake.scan(SERIES, columns=["unique_id", "y"], where=pc.field("ds") >= pd.Timestamp("2016-01-01"))
    assert scanned.num_rows == 20 * 36 and scanned.column_names == ["unique_id", "y"]

    lake.append(FORECASTS, pd.DataFrame({"unique_id": ["c0000"], "yhat": [1.5]}))
    assert lake.read(FORECASTS)["yhat"].tolist() == [1.5]
    # The commits are objects in the bucket, one per version.
    log = sorted(k.rsplit("/", 1)[1] for k in s3.keys(f"{root.split('/', 3)[3]}/series/_delta_log/"))
    assert log == ["00000000000000000000.json", "00000000000000000001.json"]


def test_a_writer_one_version_behind_cannot_overwrite_the_commit_it_missed(s3: S3) -> None:
    """The commit protocol itself, with two handles opened at the same version."""
    uri = f"{s3.root()}/t"
    write_deltalake(uri, pa.table({"k": [1, 2], "v": [0.0, 0.0]}), storage_options=s3.options)
    first, stale = DeltaTable(uri, storage_options=s3.options), DeltaTable(uri, storage_options=s3.options)
    log_key = f"{uri.split('/', 3)[3]}/_delta_log/00000000000000000001.json"

    write_deltalake(first, pa.table({"k": [3], "v": [0.0]}), mode="append")
    committed = s3.client.get_object(Bucket=BUCKET, Key=log_key)["Body"].read()
    # An append from the stale handle cannot take version 1: it lands as version 2.
    write_deltalake(stale, pa.table({"k": [4], "v": [0.0]}), mode="append")
    assert s3.client.get_object(Bucket=BUCKET, Key=log_key)["Body"].read() == committed
    table = DeltaTable(uri, storage_options=s3.options)
    assert table.version() == 2 and sorted(table.to_pyarrow_table()["k"].to_pylist()) == [1, 2, 3, 4]

    # A merge from a stale view that changes what another writer changed is refused,
    # never applied over it: Lake then redoes the merge on the new state.
    old = DeltaTable(uri, storage_options=s3.options)
    table.merge(pa.table({"k": [1], "v": [1.0]}), "t.k = s.k", source_alias="s", target_alias="t") \
        .when_matched_update_all().execute()
    with pytest.raises(CommitFailedError):
        old.merge(pa.table({"k": [1], "v": [2.0]}), "t.k = s.k", source_alias="s", target_alias="t") \
            .when_matched_update_all().execute()
    final = DeltaTable(uri, storage_options=s3.options)
    assert final.version() == 3
    assert dict(zip(*final.to_pyarrow_table().select(["k", "v"]).to_pydict().values(), strict=True))[1] == 1.0


@pytest.mark.parametrize("case", ["new lake, different series", "same series, other dates"])
def test_two_concurrent_ingests_into_the_same_s3_tables_both_land(s3: S3, tmp_path: Path, case: str) -> None:
    root = s3.root()
    lake = s3.lake(root)
    if case == "new lake, different series":
        base = monthly(range(0), "2010-01-01", 0)
        one, two = monthly(range(400), "2010-01-01", 48), monthly(range(400, 800), "2010-01-01", 48)
    else:
        base = monthly(range(400), "2016-01-01", 24)
        ingest(lake, [write_csv(base, tmp_path / "base.csv")], CFG)
        one, two = monthly(range(400), "2018-01-01", 24, shift=0.25), monthly(range(400), "2020-01-01", 24, shift=0.75)
    sources = [write_csv(one, tmp_path / "one.csv", [("bad1", "2010-01-01", "x")]),
               write_csv(two, tmp_path / "two.csv", [("bad2", "2010-01-01", "y")])]

    results = run_together(s3, root, sources, tmp_path)

    assert [r[0] for r in results] == [0, 0], results
    expected = pd.concat([base, one, two]).sort_values(["unique_id", "ds"], kind="stable")
    out = lake.read_series()
    assert len(out) == len(expected) and not out.duplicated(["unique_id", "ds"]).any()
    assert same(out, expected)
    assert len(lake.read(BATCHES)) == (2 if base.empty else 3)
    assert sorted(lake.read(QUARANTINE)["reason"]) == ["y not a number: 'x'", "y not a number: 'y'"]
    for table in (SERIES, QUARANTINE, BATCHES):
        assert_versions_consistent(lake, table)
    # Each ingest merged into series once: one commit each (after the base, if any).
    assert lake.version(SERIES) == (1 if base.empty else 2)


@dataclass(frozen=True)
class CrashCase:
    base: pd.DataFrame
    run: pd.DataFrame
    final: pd.DataFrame


@pytest.fixture(scope="module")
def crash_case() -> CrashCase:
    base = monthly(range(200), "2000-01-01", 36)
    run = pd.concat([
        monthly(range(200), "2002-01-01", 12, shift=0.5),   # revisions of the last year
        monthly(range(200), "2003-01-01", 24),              # new months
        monthly(range(200, 500), "2000-01-01", 120),        # new series
    ], ignore_index=True)
    final = pd.concat([base[base["ds"] < "2002-01-01"], run]).sort_values(["unique_id", "ds"], kind="stable")
    return CrashCase(base.sort_values(["unique_id", "ds"], kind="stable"), run, final)


MOMENTS = {
    # (table whose commit is in flight at the kill, or None: kill after a delay)
    "its series commit in flight": SERIES,
    "its batches commit in flight": BATCHES,
    "after 0.6 s": None,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_during_an_s3_commit_keeps_the_previous_version_and_a_rerun_lands_once(
    s3: S3, tmp_path: Path, crash_case: CrashCase, moment: str
) -> None:
    root = s3.root()
    lake = s3.lake(root)
    ingest(lake, [write_csv(crash_case.base, tmp_path / "base.csv")], CFG)
    source = write_csv(crash_case.run, tmp_path / "run.csv")
    held = MOMENTS[moment]
    # The object store's end of the commit: the first PUT of a commit file of that table is
    # held, and dropped when released, as S3 discards an upload whose client died.
    relay = Relay(s3.store.endpoint, hold=rf"/{re.escape(root.split('/', 3)[3])}/{held}/_delta_log/\d{{20}}\.json",
                  methods=("PUT",))

    ready = tmp_path / "ready"
    proc = start_child(s3, root, [source], ready, endpoint=relay.endpoint)
    try:
        wait_ready(proc, ready)
        if held is not None:
            assert relay.arrived.wait(120), proc.communicate()
        else:
            time.sleep(0.6)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    finally:
        relay.close()

    # Readable, and either at its previous version or with the whole run: never part of it.
    series = lake.read_series()
    applied = same(series, crash_case.final)
    assert applied or same(series, crash_case.base)
    assert lake.version(SERIES) == (1 if applied else 0)
    assert same(lake.read_series(version=0), crash_case.base)
    recorded = len(lake.read(BATCHES))
    assert recorded in (1, 2) and (recorded == 1 or applied)
    if held is not None:
        assert proc.returncode == -signal.SIGKILL and recorded == 1
        assert applied == (held == BATCHES)  # the commits before the one in flight have landed
    for table in (SERIES, BATCHES):
        assert_versions_consistent(lake, table)

    report = ingest(lake, [source], CFG)
    assert [s.status for s in report.sources] == ["duplicate" if recorded == 2 else "ingested"]
    after = lake.read_series()
    assert same(after, crash_case.final) and not after.duplicated(["unique_id", "ds"]).any()
    assert len(lake.read(BATCHES)) == 2
    assert lake.version(SERIES) == 1  # the rerun found the series applied, or applied them: once
    print(f"{moment}: exit {proc.returncode}, series {'applied' if applied else 'previous version'}")


def test_a_second_engine_reads_the_same_rows(s3: S3, tmp_path: Path) -> None:
    root = s3.root()
    lake = s3.lake(root)
    first, later = monthly(range(30), "2012-01-01", 24), monthly(range(30), "2014-01-01", 12, shift=0.5)
    ingest(lake, [write_csv(first, tmp_path / "first.csv")], CFG)
    ingest(lake, [write_csv(later, tmp_path / "later.csv")], CFG)

    for version in (None, 0):
        ours = lake.read_series(version=version)
        theirs = (pl.read_delta(f"{root}/{SERIES}", version=version, storage_options=s3.options)
                  .select("unique_id", "ds", "y").sort("unique_id", "ds").to_pandas())
        assert len(theirs) == (len(first) + len(later) if version is None else len(first))
        pd.testing.assert_frame_equal(theirs, ours[["unique_id", "ds", "y"]], check_dtype=False)
    batches = pl.read_delta(f"{root}/{BATCHES}", storage_options=s3.options)
    assert sorted(batches["content_hash"].to_list()) == sorted(lake.read(BATCHES)["content_hash"])
