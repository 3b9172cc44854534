"""Point metrics against values worked out by hand (the MASE scale: tests/unit/test_seasonal.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstm_pipeline.evaluate.metrics import mae, mase, r2, rmse, smape

Y = np.array([1.0, 2.0, 3.0])
YHAT = np.array([2.0, 2.0, 5.0])  # errors 1, 0, 2


def test_mae_is_the_mean_absolute_error() -> None:
    assert mae(Y, YHAT) == 1.0  # (1 + 0 + 2) / 3
    assert mae(Y, Y) == 0.0


def test_rmse_is_the_root_mean_squared_error() -> None:
    assert rmse(Y, YHAT) == pytest.approx(math.sqrt(5 / 3))  # sqrt((1 + 0 + 4) / 3)
    assert rmse([3.0, 3.0], [0.0, 0.0]) == 3.0


def test_metrics_accept_plain_lists() -> None:
    assert mae([1, 2, 3], [2, 2, 5]) == 1.0


def test_smape_hand_computed() -> None:
    # 2|y - yhat| / (|y| + |yhat|): 2*1/3, 0, 2*2/8  -> mean 11/36 -> x100
    assert smape(Y, YHAT) == pytest.approx(100 * (2 / 3 + 0 + 0.5) / 3)


def test_smape_step_where_both_are_zero_counts_as_zero() -> None:
    assert smape([0.0, 0.0], [0.0, 0.0]) == 0.0
    # one perfect zero step and one step with ratio 2*1/3
    assert smape([0.0, 1.0], [0.0, 2.0]) == pytest.approx(100 * (0 + 2 / 3) / 2)


def test_smape_is_bounded_by_0_and_200() -> None:
    assert smape([5.0, -2.0], [5.0, -2.0]) == 0.0
    assert smape([1.0], [-1.0]) == 200.0  # opposite signs: the upper bound
    assert smape([0.0], [7.0]) == 200.0  # zero against anything non-zero
    rng = np.random.default_rng(0)
    value = smape(rng.normal(size=1000), rng.normal(size=1000))
    assert 0.0 <= value <= 200.0


def test_mase_divides_mae_by_the_scale() -> None:
    assert mase(Y, YHAT, 0.5) == 2.0
    assert mase(Y, Y, 4.0) == 0.0


@pytest.mark.parametrize("scale", [0.0, float("nan")])
def test_mase_is_nan_without_a_positive_scale(scale: float) -> None:
    assert math.isnan(mase(Y, YHAT, scale))


def test_r2_hand_computed() -> None:
    # ss_res = 1, ss_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert r2([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]) == pytest.approx(0.8)


def test_r2_is_one_for_a_perfect_forecast_and_zero_for_the_mean() -> None:
    y = np.array([2.0, 7.0, 1.0, 4.0])
    assert r2(y, y) == 1.0
    assert r2(y, np.full(4, y.mean())) == 0.0


def test_r2_is_negative_when_worse_than_the_mean() -> None:
    # ss_res = 2 * 9 = 18, ss_tot = 2 -> 1 - 9
    assert r2([1.0, 3.0], [4.0, 0.0]) == -8.0


def test_r2_is_nan_for_a_constant_target() -> None:
    assert math.isnan(r2([5.0, 5.0, 5.0], [5.0, 5.0, 5.0]))
