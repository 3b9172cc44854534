"""Input windows over a panel of series: pure functions, no I/O.

All series are concatenated into one ``[T, F]`` array (the panel) and a window is just
the index of its first step. A batch of windows is gathered from the panel with index
arithmetic, so windows are built wherever the panel lives (CPU memory or the GPU) and
no per-sample Python loop or DataLoader is involved.

Feature 0 is always the scaled target; the others are calendar features (sin/cos of
the position in the season) and scaled covariates, all known at the window's steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

__all__ = ["Panel", "calendar_features", "gather", "window_starts"]


@dataclass(frozen=True)
class Panel:
    """Series laid end to end: ``values[offsets[i] : offsets[i] + lengths[i]]`` is series i."""

    ids: tuple[str, ...]
    values: np.ndarray  # [T, F] float32
    offsets: np.ndarray  # [S] int64
    lengths: np.ndarray  # [S] int64

    @classmethod
    def from_arrays(cls, ids: Sequence[str], arrays: Sequence[np.ndarray]) -> Panel:
        """Stack per-series ``[n_i, F]`` arrays into one panel."""
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        values = np.concatenate(arrays).astype(np.float32) if arrays else np.zeros((0, 1), np.float32)
        return cls(tuple(ids), values, offsets, lengths)


def calendar_features(ds: pd.DatetimeIndex | pd.Series, season_length: int) -> np.ndarray:
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


def window_starts(
    panel: Panel,
    lookback: int,
    horizon: int,
    target_end: np.ndarray,
    target_begin: np.ndarray | None = None,
) -> np.ndarray:
    """Global start indices of every window whose targets lie in ``[begin_i, end_i)``.

    ``target_end`` and ``target_begin`` are per-series local positions (``[S]``). A window
    starting at local ``t`` reads ``t .. t+lookback-1`` and predicts
    ``t+lookback .. t+lookback+horizon-1``.
    """
    begin = np.zeros_like(target_end) if target_begin is None else target_begin
    starts: list[np.ndarray] = []
    for off, lo, hi in zip(panel.offsets, begin, np.minimum(target_end, panel.lengths)):
        first = max(int(lo) - lookback, 0)
        last = int(hi) - lookback - horizon  # inclusive
        if last >= first:
            starts.append(off + np.arange(first, last + 1, dtype=np.int64))
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def gather(
    values: torch.Tensor, starts: torch.Tensor, lookback: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of windows from the panel: inputs ``[B, L, F]`` and targets ``[B, H]``."""
    steps = torch.arange(lookback + horizon, device=values.device)
    rows = starts[:, None] + steps[None, :]  # [B] -> [B, L+H]
    block = values[rows]  # [T, F] -> [B, L+H, F]
    return block[:, :lookback, :], block[:, lookback:, 0]
