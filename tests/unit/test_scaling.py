"""Per-series scalers: known statistics, exact inverses, safe on constant series."""

from __future__ import annotations

import json
import math
from typing import get_args

import numpy as np
import pytest

from lstm_pipeline.model.scaling import Method, SeriesScaler, fit_scaler

METHODS: tuple[Method, ...] = get_args(Method)
Y = np.array([1.0, 2.0, 3.0, 4.0, 10.0])


def test_standard_stats_are_mean_and_population_std() -> None:
    scaler = fit_scaler({"a": Y}, "standard")
    assert scaler.stats["a"] == pytest.approx((4.0, math.sqrt(10.0)))  # var = (9+4+1+0+36)/5


def test_robust_stats_are_median_and_iqr() -> None:
    scaler = fit_scaler({"a": Y}, "robust")
    assert scaler.stats["a"] == (3.0, 2.0)  # q25 = 2, q50 = 3, q75 = 4


def test_minmax_stats_are_min_and_range() -> None:
    scaler = fit_scaler({"a": Y}, "minmax")
    assert scaler.stats["a"] == (1.0, 9.0)
    np.testing.assert_allclose(scaler.transform("a", Y), (Y - 1.0) / 9.0)
    assert scaler.transform("a", Y).min() == 0.0 and scaler.transform("a", Y).max() == 1.0


def test_default_method_is_standard() -> None:
    assert fit_scaler({"a": Y}).method == "standard"


@pytest.mark.parametrize("method", METHODS)
def test_transform_then_inverse_round_trips(method: Method) -> None:
    rng = np.random.default_rng(1)
    values = {"a": rng.normal(50, 10, 40), "b": rng.exponential(3, 25) - 7}
    scaler = fit_scaler(values, method)
    for uid, y in values.items():
        z = scaler.transform(uid, y)
        assert not np.allclose(z, y)  # it really transformed
        np.testing.assert_allclose(scaler.inverse(uid, z), y, rtol=1e-12, atol=1e-12)


def test_series_are_scaled_independently() -> None:
    scaler = fit_scaler({"a": np.array([0.0, 2.0]), "b": np.array([100.0, 300.0])}, "standard")
    np.testing.assert_allclose(scaler.transform("a", [0.0, 2.0]), [-1.0, 1.0])
    np.testing.assert_allclose(scaler.transform("b", [100.0, 300.0]), [-1.0, 1.0])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("level", "expected_scale"), [(5.0, 5.0), (-3.0, 3.0), (0.0, 1.0), (0.25, 1.0)])
def test_constant_series_maps_to_zero_and_back(method: Method, level: float, expected_scale: float) -> None:
    y = np.full(6, level)
    scaler = fit_scaler({"c": y}, method)
    assert scaler.stats["c"] == (level, expected_scale)  # scaled by |level|, at least 1
    z = scaler.transform("c", y)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z, np.zeros(6))
    np.testing.assert_array_equal(scaler.inverse("c", z), y)


def test_empty_series_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        fit_scaler({"a": np.array([])})


def test_extended_keeps_known_stats_and_fits_only_new_ids() -> None:
    base = fit_scaler({"a": np.array([0.0, 2.0])}, "minmax")
    grown = base.extended({"a": np.array([-100.0, 100.0]), "b": np.array([10.0, 30.0])})
    assert grown.method == "minmax"
    assert grown.stats["a"] == (0.0, 2.0)  # not refitted on the new values
    assert grown.stats["b"] == (10.0, 20.0)
    assert "b" in grown and "b" not in base  # the original is untouched
    assert set(grown.stats) == {"a", "b"}


def test_extended_with_nothing_new_returns_the_same_scaler() -> None:
    base = fit_scaler({"a": Y})
    assert base.extended({"a": Y * 3}) is base


def test_contains_tests_series_ids() -> None:
    scaler = fit_scaler({"a": Y})
    assert "a" in scaler and "z" not in scaler


@pytest.mark.parametrize("method", METHODS)
def test_to_dict_from_dict_round_trip(method: Method) -> None:
    scaler = fit_scaler({"a": Y, "b": Y[::-1] * 2 + 1, "c": np.full(3, 7.0)}, method)
    d = json.loads(json.dumps(scaler.to_dict()))  # plain containers, JSON-safe
    restored = SeriesScaler.from_dict(d)
    assert restored == scaler
    np.testing.assert_array_equal(restored.transform("b", Y), scaler.transform("b", Y))
