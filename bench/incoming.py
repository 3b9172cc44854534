"""A scheduled ingest over a landing folder that keeps every file it ever received.

The landing folder holds ``--files`` files that were ingested on earlier days, plus one
new file. Measured side by side, each round on a fresh copy of the same lake:

* **folder**: ingest the whole folder (what the scheduled run does);
* **new file only**: ingest just the new file (the floor: what the day's data costs).

Old files whose path, size and modification time match their ``batches`` row are not
read at all; the figures show bytes read by the process (``rchar``) beside wall time.

    .venv/bin/python bench/incoming.py --files 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.ingest import ingest
from lstm_pipeline.lake.tables import Lake


def bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def day_file(folder: Path, day: int, series: int) -> Path:
    """One day's file: one new month for ``series`` series (ids s0000 ...)."""
    ds = (pd.Timestamp("2000-01-01") + pd.DateOffset(months=day)).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"unique_id": [f"s{i:04d}" for i in range(series)], "ds": ds,
                          "y": np.round(np.arange(series) * 10.0 + day, 3)})
    path = folder / f"{ds}.csv"
    frame.to_csv(path, index=False)
    return path


def timed(lake: Lake, sources: list[Path | str]) -> tuple[float, int, int]:
    before, started = bytes_read(), time.perf_counter()
    report = ingest(lake, sources, DataConfig(freq="MS"))
    return time.perf_counter() - started, bytes_read() - before, report.not_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000, help="files already ingested in the folder")
    parser.add_argument("--series", type=int, default=200, help="rows per file (one month of each series)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lstm-incoming-") as tmp:
        root = Path(tmp)
        folder = root / "incoming"
        folder.mkdir()
        for day in range(args.files):
            day_file(folder, day, args.series)
        seeded = root / "seeded"
        started = time.perf_counter()
        ingest(Lake(seeded), [folder], DataConfig(freq="MS"))
        print(f"{args.files} files x {args.series} rows ingested once in {time.perf_counter() - started:.1f} s "
              f"({sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.1f} MB)")
        new = day_file(root, args.files, args.series)
        shutil.copy2(new, folder / new.name)
        rows: dict[str, list[tuple[float, int, int]]] = {"folder": [], "new file only": []}
        for _ in range(args.rounds):
            for what, sources in (("folder", [folder]), ("new file only", [folder / new.name])):
                lake_dir = root / f"lake-{what.replace(' ', '-')}"
                shutil.rmtree(lake_dir, ignore_errors=True)
                shutil.copytree(seeded, lake_dir)
                rows[what].append(timed(Lake(lake_dir), list(sources)))
        print("\n| ingest | files in the folder | median s | all rounds (s) | MB read | old files not read |")
        print("|---|---:|---:|---|---:|---:|")
        for what, results in rows.items():
            seconds = [r[0] for r in results]
            print(f"| {what} | {args.files + 1 if what == 'folder' else 1} | {statistics.median(seconds):.2f} | "
                  f"{' '.join(f'{s:.2f}' for s in seconds)} | {statistics.median(r[1] for r in results) / 1e6:.2f} | "
                  f"{results[0][2]} |")


if __name__ == "__main__":
    main()
