"""The frequency grid: where timestamps sit on it, and series laid out on it densely.

Every series lives on the lake's frequency grid (``MS``, ``QS``, ``D``, ``h``, ...). A
timestamp's *position* is its integer index on that grid (months since 1970-01 for
``MS``, days for ``D``), so "k periods later" is ``position + k`` whatever the calendar
does, and a gap in a series is a jump of more than one position.

Missing periods are never treated as contiguous. Wherever a model or a baseline needs a
value at every period (model inputs, seasonal naive), a series is laid out on its grid:
each period takes the last observed value at or before it (the first observation for
periods before the series starts), and a mask says which periods were observed.
Targets and scores use observed periods only. :func:`layout` is that one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

__all__ = [
    "Layout", "calendar_features", "complete", "dates", "future_dates", "layout", "positions", "shift",
]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Offsets whose grid timestamps sit at the end of their period (the period's last day).
_AT_END = ("MonthEnd", "QuarterEnd", "YearEnd", "Week")


def _period(freq: str) -> tuple[str, int, bool]:
    """``(period alias, multiple, timestamps at the period's end)`` for a pandas offset alias."""
    offset = to_offset(freq)
    kind = type(offset).__name__
    rule = offset.rule_code
    if kind in ("MonthBegin", "MonthEnd"):
        alias = "M"
    elif kind == "QuarterBegin":  # quarters starting in month s end in month s - 1
        alias = f"Q-{_MONTHS[(offset.startingMonth - 2) % 12]}"
    elif kind == "QuarterEnd":
        alias = f"Q-{_MONTHS[offset.startingMonth - 1]}"
    elif kind == "YearBegin":
        alias = f"Y-{_MONTHS[(offset.month - 2) % 12]}"
    elif kind == "YearEnd":
        alias = f"Y-{_MONTHS[offset.month - 1]}"
    else:  # Week (W-SUN ...), Day, BusinessDay, Hour, Minute, Second
        alias = rule
    return alias, int(offset.n), kind in _AT_END


def positions(ds: pd.Series | pd.DatetimeIndex | np.ndarray | Sequence[pd.Timestamp], freq: str) -> np.ndarray:
    """``[n]`` int64 grid positions of timestamps that lie on the ``freq`` grid."""
    alias, n, _ = _period(freq)
    ordinals = pd.DatetimeIndex(ds).to_period(alias).asi8
    return ordinals // n if n > 1 else ordinals


def dates(pos: np.ndarray, freq: str, like: pd.Timestamp | None = None) -> pd.DatetimeIndex:
    """The timestamps at grid positions ``pos`` (the inverse of :func:`positions`).

    ``like``, any timestamp on the grid, fixes the phase of a multiple frequency
    (``15min``) and the time of day of a daily grid; by default the phase is 0.
    """
    alias, n, at_end = _period(freq)
    ordinals = np.asarray(pos, dtype=np.int64) * n
    if like is not None and n > 1:
        ordinals = ordinals + int(pd.DatetimeIndex([like]).to_period(alias).asi8[0]) % n
    periods = pd.PeriodIndex.from_ordinals(ordinals, freq=alias)
    stamps = periods.to_timestamp(how="end").normalize() if at_end else periods.to_timestamp(how="start")
    if like is not None and alias in ("D", "B") and not at_end:
        stamps = stamps + (pd.Timestamp(like) - pd.Timestamp(like).normalize())
    return pd.DatetimeIndex(stamps).as_unit("us")


def shift(ds: pd.Timestamp, periods: int, freq: str) -> pd.Timestamp:
    """``ds`` moved by ``periods`` steps of the grid (negative: back)."""
    return pd.Timestamp(dates(positions([ds], freq) + periods, freq, like=ds)[0])


def future_dates(cutoff: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``cutoff`` on the ``freq`` grid."""
    return dates(positions([cutoff], freq)[0] + np.arange(1, horizon + 1), freq, like=cutoff)


def calendar_features(ds: pd.DatetimeIndex | pd.Series | np.ndarray, season_length: int) -> np.ndarray:
    """``[n, 2]`` sin/cos of each timestamp's position in the season (none if m <= 1).

    The position is taken from the timestamp itself (month for m=12, weekday for m=7,
    hour for m=24, quarter for m=4), so it is the same whatever the window's start.
    """
    idx = pd.DatetimeIndex(ds)
    if season_length <= 1:
        return np.zeros((len(idx), 0), dtype=np.float32)
    if season_length == 12:
        position = np.asarray(idx.month) - 1
    elif season_length == 4:
        position = np.asarray(idx.quarter) - 1
    elif season_length in (5, 7):
        position = np.asarray(idx.day_of_week)
    elif season_length == 24:
        position = np.asarray(idx.hour)
    else:  # no calendar reading for this season length
        return np.zeros((len(idx), 0), dtype=np.float32)
    angle = 2 * np.pi * np.asarray(position, dtype=np.float64) / season_length
    return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


class Layout:
    """Series of a long frame laid out on the grid, each over a span of positions.

    ``source[r]`` is the frame row whose value grid row ``r`` takes (the last
    observation at or before its period; the series' first observation before it
    starts) and ``observed[r]`` says whether that period was observed. Grid rows are
    series after series, ``lengths[i]`` rows from position ``start[i]`` for series i.
    """

    def __init__(self, source: np.ndarray, observed: np.ndarray, start: np.ndarray, lengths: np.ndarray) -> None:
        self.source, self.observed, self.start, self.lengths = source, observed, start, lengths

    @property
    def offsets(self) -> np.ndarray:
        return (np.cumsum(self.lengths) - self.lengths).astype(np.int64)

    def row_positions(self) -> np.ndarray:
        """``[T]`` the grid position of every grid row."""
        local = np.arange(int(self.lengths.sum()), dtype=np.int64) - np.repeat(self.offsets, self.lengths)
        return np.repeat(self.start, self.lengths) + local


def layout(codes: np.ndarray, pos: np.ndarray, start: np.ndarray, lengths: np.ndarray) -> Layout:
    """Lay out series ``codes`` (``[n]``, 0..S-1, rows sorted by code then position) on the grid.

    ``pos`` ``[n]`` are the rows' grid positions; series i is laid out over positions
    ``start[i] .. start[i] + lengths[i] - 1`` (any span: before its first observation,
    after its last, or across gaps). Every series must have at least one row.
    """
    codes = np.asarray(codes, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    start = np.asarray(start, dtype=np.int64)
    n_series = len(lengths)
    base = int(min(pos.min(), start.min())) if len(pos) else 0
    width = int(max(pos.max(), (start + lengths).max()) - base + 2) if len(pos) else 1
    # One sorted key per frame row: series first, then position within it.
    keys = codes * width + (pos - base)
    first_row = np.searchsorted(codes, np.arange(n_series), side="left")
    grid_codes = np.repeat(np.arange(n_series, dtype=np.int64), lengths)
    local = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid_pos = np.repeat(start, lengths) + local
    found = np.searchsorted(keys, grid_codes * width + (grid_pos - base), side="right") - 1
    # Before the series' first observation `found` points into the previous series (or -1).
    before = (found < 0) | (codes[np.maximum(found, 0)] != grid_codes)
    source = np.where(before, first_row[grid_codes], found)
    observed = ~before & (pos[source] == grid_pos)
    return Layout(source, observed, start, lengths)


def complete(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """``frame`` (``unique_id, ds, y``) with every missing period between each series' first
    and last observation added, carrying the last observed value: for methods that need
    contiguous series (AutoETS, Theta). Adds a bool column ``observed``."""
    frame = frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    if frame.empty:
        return frame.assign(observed=pd.Series(dtype=bool))
    codes, uniques = pd.factorize(frame["unique_id"], sort=True)
    pos = positions(frame["ds"], freq)
    bounds = np.flatnonzero(np.diff(codes, prepend=-1, append=len(uniques)))
    first, last = pos[bounds[:-1]], pos[bounds[1:] - 1]
    lay = layout(codes, pos, first, last - first + 1)
    return pd.DataFrame({
        "unique_id": np.repeat(np.asarray(uniques, dtype=object), lay.lengths),
        "ds": dates(lay.row_positions(), freq, like=frame["ds"].iloc[0]),
        "y": frame["y"].to_numpy(np.float64)[lay.source],
        "observed": lay.observed,
    })
