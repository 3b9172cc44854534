"""Per-series scaling: pure functions with exact inverses, fitted on training data only.

Statistics are kept by series id so that they travel with the model weights and the
same transform is applied when the model forecasts later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Method", "SeriesScaler", "fit_scaler"]

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
        loc, scale = self.stats[uid]
        return (np.asarray(y, dtype=np.float64) - loc) / scale

    def inverse(self, uid: str, z: np.ndarray) -> np.ndarray:
        loc, scale = self.stats[uid]
        return np.asarray(z, dtype=np.float64) * scale + loc

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


