"""Ingest throughput: ``lstm_pipeline.lake.ingest`` of one N-row file into a fresh lake, beside
a bare ``deltalake`` write of the same frame, in the same run.

A panel of ``--series`` daily series (N rows in all; y with three decimals) is written
once as CSV (no quoting) and as Parquet in a temporary folder. Then, for each format,
``--rounds`` times in turn, each measurement in a fresh child process (so that its peak
memory is its own), into a fresh lake:

* ``bare write``: ``write_deltalake`` of the frame already parsed and typed (unique_id
  string, ds timestamp[us], y float64). Timed: the write only. The issue's yardstick.
* ``bare read+write``: pyarrow reads the file into that typed frame, then
  ``write_deltalake``. Timed: read + write. No hashing, no checks, no lineage.
* ``ingest``: ``ingest(Lake(root), [file], DataConfig())``, a first ingest (frequency
  inferred). Timed: the whole call: read and hash the bytes, read the columns in the
  contract's types (a clean CSV; one with bad rows is read again as text), check the contract (ids, ISO 8601 parse, grid, finite y,
  duplicate keys), add lineage columns, write ``series`` and ``batches``, report.
* ``ingest, next day``: then one more day of every series (``--series`` rows) ingested
  into that full lake: a merge that reads none of the old files.

Rows per second are computed from the fastest round of each (the machine is shared;
the fastest round is the least disturbed one); the ratio is ingest / bare write. CPU s
is the child's CPU time over the timed part (all threads). Peak memory is the child's
peak resident set (imports included; for ``bare write`` the parsed frame is included,
it is read before the timer starts). Usage::

    .venv/bin/python bench/ingest.py                 # 10 M rows, CSV and Parquet, 3 rounds
    .venv/bin/python bench/ingest.py --rows 1000000 --formats csv --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
MODES = ("bare write", "bare read+write", "ingest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the file (default 10 M)")
    parser.add_argument("--series", type=int, default=10_000, help="series in the panel (default 10,000)")
    parser.add_argument("--formats", nargs="+", choices=["csv", "parquet"], default=["csv", "parquet"])
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each, in turn (default 3)")
    parser.add_argument("--workdir", type=Path, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FILE", "LAKE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.workdir))
    try:
        _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> None:
    points = max(1, args.rows // args.series)
    rows = points * args.series
    started = time.perf_counter()
    files = _write_files(workdir, args.series, points, args.formats)
    print(f"# {rows:,} rows ({args.series:,} daily series x {points:,} days) written in "
          f"{time.perf_counter() - started:.1f} s: " + ", ".join(f"{f.name} {f.stat().st_size / 2**20:.0f} MiB" for f in files.values()))
    print(f"# {platform.node()}: {os.cpu_count()} cores, python {platform.python_version()}, pyarrow {pa.__version__},"
          f" deltalake {_version('deltalake')}; load average at start {os.getloadavg()[0]:.1f}")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for fmt, path in files.items():
        if fmt == "next":
            continue
        for round_ in range(args.rounds):
            for mode in MODES:
                lake = workdir / f"lake-{fmt}-{mode.replace(' ', '').replace('+', '')}-{round_}"
                results.setdefault((fmt, mode), []).append(_spawn(mode, path, lake))
                if mode == "ingest":
                    results.setdefault((fmt, "ingest, next day"), []).append(_spawn("next day", files["next"], lake))
                shutil.rmtree(lake, ignore_errors=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}\n")
    print("| format | what | rows | best s | rows/s | CPU s | peak RSS MiB | ratio to bare write | ratio to bare read+write |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for fmt in files:
        if fmt == "next":
            continue
        bare = min(r["seconds"] for r in results[(fmt, "bare write")])
        bare_rw = min(r["seconds"] for r in results[(fmt, "bare read+write")])
        for mode in (*MODES, "ingest, next day"):
            runs = results[(fmt, mode)]
            best = min(runs, key=lambda r: r["seconds"])
            n = args.series if mode == "ingest, next day" else rows
            ratio = f"**{bare / best['seconds']:.2f}**" if mode == "ingest" else ""
            ratio_rw = f"{bare_rw / best['seconds']:.2f}" if mode == "ingest" else ""
            print(f"| {fmt} | {mode} | {n:,} | {best['seconds']:.2f} | {n / best['seconds']:,.0f} | {best['cpu']:.2f}"
                  f" | {max(r['maxrss_mb'] for r in runs):,.0f} | {ratio} | {ratio_rw} |")
    print("\nall rounds (s): " + "; ".join(
        f"{fmt} {mode}: " + " ".join(f"{r['seconds']:.2f}" for r in runs) for (fmt, mode), runs in results.items()))


def _write_files(workdir: Path, n_series: int, points: int, formats: list[str]) -> dict[str, Path]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    def panel(start: np.datetime64, days: int) -> pa.Table:
        ids = np.repeat(np.array([f"s{i:06d}" for i in range(n_series)]), days)
        ds = np.tile(start + np.arange(days).astype("timedelta64[D]"), n_series)
        y = np.round(np.random.default_rng(days).normal(100.0, 10.0, n_series * days), 3)
        return pa.table({"unique_id": ids, "ds": pa.array(ds.astype("datetime64[us]")), "y": y})

    table = panel(np.datetime64("2000-01-01"), points)
    files = {}
    if "csv" in formats:
        files["csv"] = workdir / "panel.csv"
        # Dates as YYYY-MM-DD, the form such files usually have.
        as_dates = table.set_column(1, "ds", table.column("ds").cast(pa.date32()))
        pacsv.write_csv(as_dates, files["csv"], pacsv.WriteOptions(quoting_style="none"))
    if "parquet" in formats:
        files["parquet"] = workdir / "panel.parquet"
        pq.write_table(table, files["parquet"])
    files["next"] = workdir / "next.csv"
    nxt = panel(np.datetime64("2000-01-01") + np.timedelta64(points, "D"), 1)
    pacsv.write_csv(nxt.set_column(1, "ds", nxt.column("ds").cast(pa.date32())), files["next"],
                    pacsv.WriteOptions(quoting_style="none"))
    return files


def _spawn(mode: str, path: Path, lake: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(lake)],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _child(mode: str, file: str, lake: str) -> dict[str, float]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    from lstm_pipeline.config import DataConfig
    from lstm_pipeline.lake.ingest import ingest
    from lstm_pipeline.lake.tables import Lake

    def read_typed() -> pa.Table:
        if file.endswith(".parquet"):
            return pq.read_table(file)
        types = {"unique_id": pa.string(), "ds": pa.timestamp("us"), "y": pa.float64()}
        return pacsv.read_csv(file, convert_options=pacsv.ConvertOptions(column_types=types))

    frame = read_typed() if mode == "bare write" else None
    cpu, wall = time.process_time(), time.perf_counter()
    if mode == "bare write":
        write_deltalake(lake, frame)
    elif mode == "bare read+write":
        write_deltalake(lake, read_typed())
    else:  # "ingest" into a fresh lake, or "next day" into the lake that ingest filled
        report = ingest(Lake(lake), [file], DataConfig())
        assert report.rows_quarantined == 0 and report.rows_landed == report.rows_read, report.summary()
    seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "maxrss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` starts afresh at exec;
    ``ru_maxrss`` would carry over the parent's (it holds the generated table)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
