"""``lstm-pipeline ingest`` as a user runs it: a real process, exit code and messages.

Slow: each call starts Prefect's temporary local server (20-30 s on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_pipeline.lake import BATCHES, QUARANTINE, Lake

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
    assert "rows: 3 read, 2 landed (2 inserted, 0 updated, 0 unchanged), 1 quarantined" in done.stderr
    lake = Lake(tmp_path / "lake")
    assert lake.read_series()["y"].tolist() == [1.0, 3.0]
    assert lake.read(QUARANTINE)[["row", "reason"]].values.tolist() == [[2, "y not a number: 'x'"]]

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    failed = run_cli(tmp_path, str(broken))
    assert failed.returncode == 1
    assert f"error: {broken}: cannot be read as a Parquet table" in failed.stderr
    assert len(lake.read(BATCHES)) == 1 and lake.version(QUARANTINE) == 0
