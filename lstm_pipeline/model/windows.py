"""Input windows over a panel of series: pure functions, no I/O.

Every series is laid out on its frequency grid (:mod:`lstm_pipeline.model.grid`) and the
series are concatenated into one ``[T, F]`` array, the panel. Each series is preceded
by ``lookback - 1`` padding rows, so a series shorter than the lookback still makes
windows. A window is identified by the row of its *cutoff*, its last input step, and
reads the ``lookback`` rows ending there; it predicts the ``horizon`` rows after it.

Feature 0 is always the scaled target (carried forward over missing periods and back
over the padding), feature 1 the mask: 1 where the period was observed, 0 for a gap or
padding. Targets are scored only where observed, and only up to the window's
``limit``: the number of steps after the cutoff that lie inside the data the window
may learn from (fewer than ``horizon`` near a split or the end of a series).

A batch of windows is gathered from the panel with index arithmetic, on whichever
device the panel lives, with no per-sample Python loop or DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MASK", "TARGET", "Panel", "Windows", "gather", "windows"]

TARGET, MASK = 0, 1


@dataclass(frozen=True)
class Panel:
    """Series laid end to end: ``values[offsets[i] : offsets[i] + lengths[i]]`` is series i.

    Row ``r`` of series i sits at grid position ``start[i] + r - offsets[i]``; its first
    ``pad`` rows lie before the series' first observation.
    """

    ids: tuple[str, ...]
    values: np.ndarray  # [T, F] float32; feature 0 the scaled target, feature 1 the mask
    offsets: np.ndarray  # [S] int64
    lengths: np.ndarray  # [S] int64
    start: np.ndarray  # [S] int64 grid position of each series' first row
    pad: int = 0

    @property
    def observed(self) -> np.ndarray:
        """``[T]`` bool: the period was observed."""
        return self.values[:, MASK] > 0.5

    def local(self, positions: np.ndarray) -> np.ndarray:
        """``[S]`` row index within each series of grid positions ``[S]`` (may lie outside)."""
        return np.asarray(positions, dtype=np.int64) - self.start


@dataclass(frozen=True)
class Windows:
    """``starts`` ``[N]``: global row of each window's first input; ``limits`` ``[N]``: how
    many steps after its cutoff may be scored (1..horizon)."""

    starts: np.ndarray
    limits: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, index: np.ndarray) -> Windows:
        return Windows(self.starts[index], self.limits[index])


def windows(
    panel: Panel,
    lookback: int,
    horizon: int,
    last_target: np.ndarray,
    first_cutoff: np.ndarray | None = None,
    last_cutoff: np.ndarray | None = None,
) -> Windows:
    """Every window whose cutoff row is observed and whose scored targets are observed rows
    no later than ``last_target``.

    All arguments ``[S]`` are row indices local to each series. A window with cutoff ``c``
    (``first_cutoff <= c <= last_cutoff``, default: anywhere) scores targets
    ``c+1 .. c+limit`` with ``limit = min(horizon, last_target - c)``; it is kept only if
    at least one of them was observed.
    """
    n = panel.lengths
    last_target = np.minimum(np.asarray(last_target, dtype=np.int64), n - 1)
    lo = np.full(len(n), lookback - 1, dtype=np.int64)
    if first_cutoff is not None:
        lo = np.maximum(lo, np.asarray(first_cutoff, dtype=np.int64))
    hi = last_target - 1
    if last_cutoff is not None:
        hi = np.minimum(hi, np.asarray(last_cutoff, dtype=np.int64))
    count = np.maximum(hi - lo + 1, 0)
    if count.sum() == 0:
        return Windows(np.zeros(0, np.int64), np.zeros(0, np.int64))
    series = np.repeat(np.arange(len(n)), count)  # [N]
    first = np.cumsum(count) - count
    cutoff = lo[series] + np.arange(int(count.sum()), dtype=np.int64) - first[series]  # local
    limit = np.minimum(horizon, last_target[series] - cutoff)
    row = panel.offsets[series] + cutoff  # global row of the cutoff
    observed = panel.observed
    seen = np.concatenate([[0], np.cumsum(observed, dtype=np.int64)])  # observed rows before each row
    keep = observed[row] & (seen[row + limit + 1] - seen[row + 1] > 0)
    return Windows((row - lookback + 1)[keep], limit[keep])


def gather(
    values: torch.Tensor, batch: Windows | tuple[torch.Tensor, torch.Tensor], lookback: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of windows from the panel: inputs ``[B, L, F]``, targets ``[B, H]`` and
    target weights ``[B, H]`` (1 where observed and within the window's limit, else 0)."""
    starts, limits = (batch.starts, batch.limits) if isinstance(batch, Windows) else batch
    starts, limits = torch.as_tensor(starts, device=values.device), torch.as_tensor(limits, device=values.device)
    steps = torch.arange(lookback + horizon, device=values.device)
    # Rows past the panel's end only ever fall beyond a window's limit: clamp and mask them.
    rows = (starts[:, None] + steps[None, :]).clamp_(max=values.shape[0] - 1)  # [B] -> [B, L+H]
    block = values[rows]  # [T, F] -> [B, L+H, F]
    within = (steps[None, :horizon] < limits[:, None]).to(values.dtype)  # [B, H]
    return block[:, :lookback, :], block[:, lookback:, TARGET], block[:, lookback:, MASK] * within
