"""``lstm-pipeline ingest`` as a user runs it: a real process, exit code and messages.

Each call is a real process (with no Prefect API configured, the command runs in it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lstm_pipeline.lake.tables import BATCHES, QUARANTINE, Lake

pytestmark = pytest.mark.slow

CLI = Path(sys.executable).with_name("lstm-pipeline")


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    return subprocess.run([str(CLI), "ingest", *args, "--root", str(tmp_path / "lake")],
                          capture_output=True, text=True, env=env, check=False, timeout=400, cwd=tmp_path)


def test_the_cli_lands_good_rows_quarantines_bad_ones_and_fails_an_unreadable_file(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("unique_id,ds,y\na,2020-01-01,1\na,2020-02-01,x\na,2020-03-01,3\n", encoding="utf-8")
    done = run_cli(tmp_path, str(mixed), "--freq", "MS")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rows: 3 read, 2 landed (2 inserted, 0 updated, 0 unchanged), 1 quarantined" in done.stdout + done.stderr
    lake = Lake(tmp_path / "lake")
    assert lake.read_series()["y"].tolist() == [1.0, 3.0]
    assert lake.read(QUARANTINE)[["row", "reason"]].values.tolist() == [[2, "y not a number: 'x'"]]

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    failed = run_cli(tmp_path, str(broken))
    assert failed.returncode == 1
    assert f"error: {broken}: cannot be read as a Parquet table" in failed.stderr
    assert len(lake.read(BATCHES)) == 1 and lake.version(QUARANTINE) == 0


def _months(ids: list[str], start: str, n: int, fmt: object = "%Y-%m-%d") -> str:
    stamps = pd.date_range(start, periods=n, freq="MS")
    return "unique_id,ds,y\n" + "".join(
        f"{uid},{(fmt(d) if callable(fmt) else d.strftime(fmt))},{k}\n" for uid in ids for k, d in enumerate(stamps))


def test_a_first_file_that_would_mislead_is_refused_and_the_right_one_then_lands(tmp_path: Path) -> None:
    # Day-first dates except in the quarter months: what parses looks quarterly (QS-OCT),
    # and used to fix the lake's frequency; a correct monthly file then lost every row.
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(_months(["a", "b", "c"], "2018-01-01", 36,
                             lambda d: d.strftime("%Y-%m-%d" if d.month % 3 == 1 else "%d/%m/%Y")), encoding="utf-8")
    refused = run_cli(tmp_path, str(mixed))
    assert refused.returncode == 1
    (line,) = [s for s in refused.stderr.splitlines() if s.startswith("error:")]
    assert line.startswith(f"error: {mixed}: 72 of 108 rows would be quarantined (67%, more than "
                           "data.max_quarantine_share = 50%): ds unparsable (72); first: row 2, ds unparsable: "
                           "'01/02/2018'; nothing was ingested")
    assert "Traceback" not in refused.stderr
    lake = Lake(tmp_path / "lake")
    assert lake.freq() is None and not lake.exists(BATCHES)

    monthly = tmp_path / "monthly.csv"
    monthly.write_text(_months(["a", "b", "c"], "2021-01-01", 12), encoding="utf-8")
    landed = run_cli(tmp_path, str(monthly))
    assert landed.returncode == 0, landed.stderr[-2000:]
    assert lake.freq() == "MS" and len(lake.read_series()) == 36 and not lake.exists(QUARANTINE)


def test_daily_rows_into_a_monthly_lake_are_refused_and_the_lake_is_untouched(tmp_path: Path) -> None:
    monthly = tmp_path / "monthly.csv"
    monthly.write_text(_months(["m1", "m2"], "2020-01-01", 24), encoding="utf-8")
    assert run_cli(tmp_path, str(monthly)).returncode == 0
    lake = Lake(tmp_path / "lake")
    before = {t: lake.version(t) for t in ("series", "quarantine", "batches")}

    daily = tmp_path / "daily.csv"
    days = pd.date_range("2021-01-01", periods=90, freq="D")
    daily.write_text("unique_id,ds,y\n" + "".join(f"{u},{d.date()},{k}\n" for u in ("d0", "d1")
                                                  for k, d in enumerate(days)), encoding="utf-8")
    refused = run_cli(tmp_path, str(daily))
    assert refused.returncode == 1
    (line,) = [s for s in refused.stderr.splitlines() if s.startswith("error:")]
    assert line.startswith(f"error: {daily}: its series follow D (2 series), finer than the lake's frequency MS; "
                           "nothing was ingested")
    assert {t: lake.version(t) for t in ("series", "quarantine", "batches")} == before
    assert set(lake.read_series()["unique_id"]) == {"m1", "m2"}
