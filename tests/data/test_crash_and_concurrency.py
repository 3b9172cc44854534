"""Atomicity and concurrency, for real: ingest processes killed with SIGKILL mid-run, and
two ingest processes started at the same moment.

The child (tests/data/ingest_child.py) has no test hook: the parent watches the lake's
folders and kills it when a data file or a commit file appears, or after a delay.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.ingest import ingest
from lstm_pipeline.lake.tables import BATCHES, QUARANTINE, SERIES, Lake

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("ingest_child.py")
ROOT = Path(__file__).resolve().parents[2]
CFG = DataConfig(freq="MS")
Q_COLUMNS = ["batch_id", "source", "row", "reason", "raw"]


def monthly(ids: range, start: str, months: int, shift: float = 0.0, prefix: str = "c") -> pd.DataFrame:
    """Series ``prefix####`` with y = id * 1000 + month index + shift (exact in float64)."""
    ds = pd.date_range(start, periods=months, freq="MS")
    ids_arr = np.repeat(np.array([f"{prefix}{i:04d}" for i in ids]), months)
    y = np.repeat(np.array(list(ids), dtype=float) * 1000, months) + np.tile(np.arange(months), len(ids)) + shift
    return pd.DataFrame({"unique_id": ids_arr, "ds": np.tile(ds, len(ids)), "y": y})


def write_csv(frame: pd.DataFrame, path: Path, bad: Sequence[tuple[str, str, str]] = ()) -> Path:
    text = frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d")).to_csv(index=False)
    path.write_text(text + "".join(f"{u},{d},{y}\n" for u, d, y in bad), encoding="utf-8")
    return path


def quarantine(lake: Lake) -> pd.DataFrame:
    if not lake.exists(QUARANTINE):
        return pd.DataFrame(columns=Q_COLUMNS)
    return lake.read(QUARANTINE, columns=Q_COLUMNS).sort_values(["batch_id", "row"]).reset_index(drop=True)


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return len(a) == len(b) and a.reset_index(drop=True).astype(str).equals(b.reset_index(drop=True).astype(str))


def batch_hashes(lake: Lake) -> list[str]:
    return sorted(lake.read(BATCHES)["content_hash"]) if lake.exists(BATCHES) else []


def start_child(lake: Path, sources: list[Path], ready: Path, go: Path | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, str(CHILD), str(lake), CFG.freq or "", str(ready), str(go or "-"), *map(str, sources)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str], ready: Path) -> None:
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited before it was ready: {proc.communicate()}")
        time.sleep(0.001)


def run_and_kill(lake: Path, source: Path, tmp: Path, trigger: Callable[[], bool] | None, delay: float) -> int:
    """Start an ingest; SIGKILL it when ``trigger`` holds (or ``delay`` s after it is
    ready); return its exit status (-9 if the kill found it running)."""
    ready = tmp / f"ready-{time.monotonic_ns()}"
    proc = start_child(lake, [source], ready)
    wait_ready(proc, ready)
    started = time.monotonic()
    while proc.poll() is None:
        if (trigger() if trigger is not None else time.monotonic() - started >= delay):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0002)
    proc.communicate()
    return proc.returncode


def new_files(folder: Path, before: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        return folder.exists() and any(p.suffix == ".parquet" and p.name not in before for p in folder.iterdir())
    return check


def commit(table: Path, version: int) -> Callable[[], bool]:
    path = table / "_delta_log" / f"{version:020d}.json"
    return path.exists


@dataclass(frozen=True)
class CrashSetup:
    base_lake: Path
    source: Path
    base_series: pd.DataFrame
    final_series: pd.DataFrame  # after the run, from an ingest that was not interrupted
    final_quarantine: pd.DataFrame
    base_hashes: list[str]
    final_hashes: list[str]


@pytest.fixture(scope="module")
def crash_setup(tmp_path_factory: pytest.TempPathFactory) -> CrashSetup:
    """A base lake, the run's source, and the reference state after that run completes."""
    tmp = tmp_path_factory.mktemp("crash")
    base_lake = tmp / "base-lake"
    base_src = write_csv(monthly(range(400), "2000-01-01", 36), tmp / "base.csv")
    ingest(Lake(base_lake), [base_src], CFG)
    run = pd.concat([
        monthly(range(400), "2002-01-01", 12, shift=0.5),      # revisions of the last 12 months
        monthly(range(400), "2003-01-01", 24),                 # new months
        monthly(range(400, 1900), "2000-01-01", 200),          # new series
    ], ignore_index=True)
    bad = [(f"c{i:04d}", "2030-01-01", "oops") for i in range(40)]
    source = write_csv(run, tmp / "run.csv", bad)
    reference = tmp / "reference-lake"
    shutil.copytree(base_lake, reference)
    report = ingest(Lake(reference), [source], CFG)
    assert (report.rows_inserted, report.rows_updated, report.rows_quarantined) == (309_600, 4_800, 40)
    return CrashSetup(
        base_lake, source, Lake(base_lake).read_series(), Lake(reference).read_series(),
        quarantine(Lake(reference)), batch_hashes(Lake(base_lake)), batch_hashes(Lake(reference)),
    )


KILLS = {
    "right after start": (None, 0.0),
    "quarantine data file written": ("quarantine-file", 0.0),
    "quarantine committed": ("quarantine-commit", 0.0),
    "series data file written": ("series-file", 0.0),
    "series committed": ("series-commit", 0.0),
    "batches data file written": ("batches-file", 0.0),
    "after 0.3 s": (None, 0.3),
    "after 0.8 s": (None, 0.8),
}


@pytest.mark.parametrize("moment", list(KILLS))
def test_sigkill_at_any_moment_leaves_a_consistent_lake_and_a_rerun_completes_it(
    moment: str, crash_setup: CrashSetup, tmp_path: Path
) -> None:
    setup = crash_setup
    lake_path = tmp_path / "lake"
    shutil.copytree(setup.base_lake, lake_path)
    existing = {t: {p.name for p in (lake_path / t).glob("*.parquet")} for t in (SERIES, QUARANTINE, BATCHES)}
    kind, delay = KILLS[moment]
    triggers: dict[str, Callable[[], bool]] = {
        "quarantine-file": new_files(lake_path / QUARANTINE, existing[QUARANTINE]),
        "quarantine-commit": commit(lake_path / QUARANTINE, 0),
        "series-file": new_files(lake_path / SERIES, existing[SERIES]),
        "series-commit": commit(lake_path / SERIES, 1),
        "batches-file": new_files(lake_path / BATCHES, existing[BATCHES]),
    }
    status = run_and_kill(lake_path, setup.source, tmp_path, triggers.get(kind or ""), delay)
    if moment == "right after start":
        assert status == -signal.SIGKILL

    lake = Lake(lake_path)
    series, held = lake.read_series(), quarantine(lake)
    # Each table is at its previous version or fully applied: never part of the run.
    series_done = same(series, setup.final_series)
    assert series_done or same(series, setup.base_series)
    quarantine_done = same(held, setup.final_quarantine)
    assert quarantine_done or held.empty
    recorded = batch_hashes(lake)
    assert recorded in (setup.base_hashes, setup.final_hashes)
    # The order of the commits (quarantine, series, then batches) holds across tables.
    if recorded == setup.final_hashes:
        assert series_done and quarantine_done
    if series_done:
        assert quarantine_done
    for table in (SERIES, QUARANTINE, BATCHES):
        for entry in lake.history(table):  # every committed version still opens
            lake.read(table, version=int(entry["version"]))

    report = ingest(lake, [setup.source], CFG)
    assert [s.status for s in report.sources] == ["duplicate" if recorded == setup.final_hashes else "ingested"]
    after = lake.read_series()
    assert same(after, setup.final_series)
    assert not after.duplicated(["unique_id", "ds"]).any()
    assert same(quarantine(lake), setup.final_quarantine)
    assert batch_hashes(lake) == setup.final_hashes
    print(f"{moment}: exit {status}, series {'new' if series_done else 'old'},"
          f" quarantine {'new' if quarantine_done else 'empty'}, batches {len(recorded)}")


def test_sigkill_while_the_first_ingest_creates_the_tables(tmp_path: Path) -> None:
    source = write_csv(monthly(range(2000), "2000-01-01", 120), tmp_path / "first.csv", [("x", "2000-01-01", "?")])
    lake_path = tmp_path / "lake"
    status = run_and_kill(lake_path, source, tmp_path, new_files(lake_path / SERIES, set()), 0.0)
    lake = Lake(lake_path)
    assert lake.read_series().empty or len(lake.read_series()) == 240_000
    assert batch_hashes(lake) == [] or status == 0
    report = ingest(lake, [source], CFG)
    assert len(lake.read_series()) == 240_000 and not lake.read_series().duplicated(["unique_id", "ds"]).any()
    assert quarantine(lake)[["row", "reason"]].values.tolist() == [[240_001, "y not a number: '?'"]]
    assert len(batch_hashes(lake)) == 1 and report.sources[0].status in ("ingested", "duplicate")


def run_together(lake: Path, sources: list[Path], tmp: Path) -> list[tuple[int, str, str]]:
    """Start one ingest per source, release them at the same moment, wait for all."""
    go = tmp / f"go-{time.monotonic_ns()}"
    readies = [tmp / f"ready-{i}-{time.monotonic_ns()}" for i in range(len(sources))]
    procs = [start_child(lake, [src], ready, go) for src, ready in zip(sources, readies, strict=True)]
    for proc, ready in zip(procs, readies, strict=True):
        wait_ready(proc, ready)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    retries = sum(err.count("concurrent commit") for _, _, err in results)
    print(f"concurrent ingests: {retries} commit(s) retried after a conflict")
    return results


@pytest.mark.parametrize("round_", [1, 2])
def test_two_ingests_of_different_series_into_a_new_lake_both_land(tmp_path: Path, round_: int) -> None:
    one = monthly(range(300), "2010-01-01", 48)
    two = monthly(range(300, 600), "2010-01-01", 48)
    sources = [write_csv(one, tmp_path / "one.csv", [("bad1", "2010-01-01", "x")]),
               write_csv(two, tmp_path / "two.csv", [("bad2", "2010-01-01", "y")])]
    results = run_together(tmp_path / "lake", sources, tmp_path)
    assert [r[0] for r in results] == [0, 0], results
    lake = Lake(tmp_path / "lake")
    expected = pd.concat([one, two]).sort_values(["unique_id", "ds"], kind="stable")
    assert same(lake.read_series(), expected)
    assert len(batch_hashes(lake)) == 2
    assert sorted(quarantine(lake)["reason"]) == ["y not a number: 'x'", "y not a number: 'y'"]


@pytest.mark.parametrize("round_", [1, 2])
def test_two_ingests_of_the_same_series_at_other_dates_both_land(tmp_path: Path, round_: int) -> None:
    lake = Lake(tmp_path / "lake")
    base = monthly(range(300), "2016-01-01", 24)
    ingest(lake, [write_csv(base, tmp_path / "base.csv")], CFG)
    one = monthly(range(300), "2018-01-01", 24, shift=0.25)
    two = monthly(range(300), "2020-01-01", 24, shift=0.75)
    # A key in both files: the same value in one, different values in the other.
    shared_same = pd.DataFrame({"unique_id": ["c0000"], "ds": [pd.Timestamp("2023-01-01")], "y": [5.0]})
    shared_one = pd.DataFrame({"unique_id": ["c0001"], "ds": [pd.Timestamp("2023-01-01")], "y": [1.0]})
    shared_two = shared_one.assign(y=2.0)
    sources = [write_csv(pd.concat([one, shared_same, shared_one]), tmp_path / "one.csv"),
               write_csv(pd.concat([two, shared_same, shared_two]), tmp_path / "two.csv")]
    results = run_together(tmp_path / "lake", sources, tmp_path)
    assert [r[0] for r in results] == [0, 0], results
    out = lake.read_series()
    assert len(out) == 300 * 72 + 2 and not out.duplicated(["unique_id", "ds"]).any()
    last = out[out["ds"] == pd.Timestamp("2023-01-01")].set_index("unique_id")["y"].to_dict()
    assert last["c0000"] == 5.0 and last["c0001"] in (1.0, 2.0)
    rest = out[out["ds"] < pd.Timestamp("2023-01-01")].reset_index(drop=True)
    assert same(rest, pd.concat([base, one, two]).sort_values(["unique_id", "ds"], kind="stable"))
    assert len(batch_hashes(lake)) == 3
