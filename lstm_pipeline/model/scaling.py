"""Per-series scaling: pure functions with exact inverses, fitted on training data only.

Statistics are kept by series id so that they travel with the model weights and the
same transform is applied when the model forecasts later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["Method", "SeriesScaler", "fit_scaler", "fit_stats", "scale", "unscale"]

Method = Literal["standard", "robust", "minmax"]

_EPS = 1e-8


@dataclass(frozen=True)
class SeriesScaler:
    """``z = (y - loc) / scale`` per series; ``y = z * scale + loc`` inverts it."""

    method: Method
    stats: Mapping[str, tuple[float, float]]  # unique_id -> (loc, scale)

    def __contains__(self, uid: object) -> bool:
        return uid in self.stats

    def transform(self, uid: str, y: np.ndarray) -> np.ndarray:
        loc, spread = self.stats[uid]
        return scale(y, loc, spread)

    def inverse(self, uid: str, z: np.ndarray) -> np.ndarray:
        loc, spread = self.stats[uid]
        return unscale(z, loc, spread)

    def lookup(self, ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Statistics of many series at once: ``loc`` and ``scale`` ``[S]`` float64, ``known`` ``[S]`` bool.

        Series without statistics get ``(0, 1)`` and ``known = False``.
        """
        pairs = [self.stats.get(uid) for uid in ids]
        known = np.fromiter((p is not None for p in pairs), dtype=bool, count=len(pairs))
        table = np.array([p if p is not None else (0.0, 1.0) for p in pairs], dtype=np.float64).reshape(-1, 2)
        return table[:, 0], table[:, 1], known

    def extended(self, values: Mapping[str, np.ndarray]) -> SeriesScaler:
        """Keep the known statistics; fit those of series seen for the first time."""
        new = {uid: y for uid, y in values.items() if uid not in self.stats}
        if not new:
            return self
        return SeriesScaler(self.method, {**self.stats, **fit_scaler(new, self.method).stats})

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "stats": {k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> SeriesScaler:
        stats = d["stats"]
        assert isinstance(stats, Mapping)
        method = d["method"]
        assert method in ("standard", "robust", "minmax")
        return cls(method, {str(k): (float(v[0]), float(v[1])) for k, v in stats.items()})


def fit_scaler(values: Mapping[str, np.ndarray], method: Method = "standard") -> SeriesScaler:
    """Fit one (loc, scale) per series from its training values."""
    return SeriesScaler(method, {uid: _fit_one(np.asarray(y, np.float64), method) for uid, y in values.items()})


def scale(y: np.ndarray, loc: np.ndarray | float, spread: np.ndarray | float) -> np.ndarray:
    """``(y - loc) / spread`` in float64; ``loc``/``spread`` broadcast (one per series or per row)."""
    return (np.asarray(y, dtype=np.float64) - loc) / spread


def unscale(z: np.ndarray, loc: np.ndarray | float, spread: np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`scale`: ``z * spread + loc`` in float64."""
    return np.asarray(z, dtype=np.float64) * spread + loc


def fit_stats(
    values: np.ndarray, groups: np.ndarray, n_groups: int, method: Method = "standard"
) -> tuple[np.ndarray, np.ndarray]:
    """``loc`` and ``scale`` ``[n_groups]`` of many series at once, without a per-series loop.

    ``values`` ``[n]`` holds the rows of all series and ``groups`` ``[n]`` (ints in
    ``0 .. n_groups - 1``) says which series each row belongs to; every group must have
    rows. Same statistics as :func:`fit_scaler` up to floating-point summation order.
    """
    y = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups, dtype=np.int64)
    count = np.bincount(g, minlength=n_groups)
    if (count == 0).any():
        raise ValueError("cannot fit a scaler on an empty series")
    if method == "standard":
        loc = np.bincount(g, weights=y, minlength=n_groups) / count
        spread = np.sqrt(np.bincount(g, weights=(y - loc[g]) ** 2, minlength=n_groups) / count)
    else:
        grouped = pd.Series(y).groupby(g, sort=True)
        if method == "robust":
            q = grouped.quantile([0.25, 0.5, 0.75]).to_numpy().reshape(n_groups, 3)
            loc, spread = q[:, 1], q[:, 2] - q[:, 0]
        else:
            lo = grouped.min().to_numpy()
            loc, spread = lo, grouped.max().to_numpy() - lo
    # The same rule as _fit_one for a series with no spread.
    spread = np.where(spread < _EPS, np.maximum(np.abs(loc), 1.0), spread)
    return loc, spread


def _fit_one(y: np.ndarray, method: Method) -> tuple[float, float]:
    if y.size == 0:
        raise ValueError("cannot fit a scaler on an empty series")
    if method == "standard":
        loc, scale = float(y.mean()), float(y.std())
    elif method == "robust":
        q25, q50, q75 = np.quantile(y, [0.25, 0.5, 0.75])
        loc, scale = float(q50), float(q75 - q25)
    else:
        loc, scale = float(y.min()), float(y.max() - y.min())
    # A constant series has no spread: scale by its level (or 1) so it maps to zero, not inf.
    if scale < _EPS:
        scale = max(abs(loc), 1.0)
    return loc, scale


