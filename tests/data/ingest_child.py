"""One ingest in a process of its own, for the crash and concurrency tests.

Usage: ``python tests/data/ingest_child.py LAKE FREQ READY GO SOURCE...``. Touches READY
once its imports are done, waits until GO exists (``-``: no wait), ingests the sources,
and prints the run's summary. No hook inside the product code: the tests kill it from
outside, watching the lake's folders.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from lstm_pipeline.config import DataConfig
from lstm_pipeline.lake.ingest import ingest
from lstm_pipeline.lake.tables import Lake


def main(argv: list[str]) -> int:
    lake, freq, ready, go, *sources = argv
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # retries show on stderr
    Path(ready).touch()
    while go != "-" and not os.path.exists(go):
        time.sleep(0.0005)
    report = ingest(Lake(lake), sources, DataConfig(freq=freq))
    print(report.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
