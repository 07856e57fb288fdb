"""reference.softmax_cross_entropy against hand-worked values, the NumPy oracle and finite differences."""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy_mlp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as R

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
H = 1e-5


def random_logits(n: int, c: int, seed: int, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=(n, c)), rng.integers(0, c, size=n).astype(np.int64)


def one_hot(y: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((y.shape[0], c))
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def test_cross_entropy_of_logits_1_2_3_with_label_2_is_log_of_1_plus_1_over_e_plus_1_over_e2():
    e = math.e
    # -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2) = 0.40760596444438030448... (decimal arithmetic)
    loss, dz = R.softmax_cross_entropy(np.array([[1.0, 2.0, 3.0]]), np.array([2]), "mean")
    assert isinstance(loss, float)
    assert loss == pytest.approx(0.4076059644443803, rel=4 * EPS64)
    # dz = p - onehot(2) with p = (e, e^2, e^3) / (e + e^2 + e^3).
    p = np.array([e, e**2, e**3]) / (e + e**2 + e**3)
    np.testing.assert_allclose(dz, [[p[0], p[1], p[2] - 1.0]], rtol=8 * EPS64)
    np.testing.assert_allclose(dz, [[0.09003057317038046, 0.24472847105479767, -0.3347590442251781]], rtol=8 * EPS64)


def test_cross_entropy_gradient_is_p_k_minus_1_if_y_equals_k_over_n_for_mean():
    z, y = random_logits(6, 4, seed=0)
    p = numpy_mlp.softmax(z)
    _, dz_sum = R.softmax_cross_entropy(z, y, "sum")
    _, dz_mean = R.softmax_cross_entropy(z, y, "mean")
    # Entries are O(1) differences of a probability and 0 or 1: a few eps of absolute error.
    np.testing.assert_allclose(dz_sum, p - one_hot(y, 4), rtol=0, atol=8 * EPS64)
    np.testing.assert_allclose(dz_mean, (p - one_hot(y, 4)) / 6, rtol=0, atol=8 * EPS64)
    # Every row of the gradient sums to 0 (probabilities sum to 1, minus the one-hot 1).
    np.testing.assert_allclose(dz_sum.sum(axis=1), 0.0, rtol=0, atol=16 * EPS64)


def test_sum_reduction_is_n_times_the_mean():
    z, y = random_logits(7, 3, seed=1)
    loss_mean, dz_mean = R.softmax_cross_entropy(z, y, "mean")
    loss_sum, dz_sum = R.softmax_cross_entropy(z, y, "sum")
    # Scaling by N or 1/N costs one rounding each.
    assert loss_sum == pytest.approx(7 * loss_mean, rel=4 * EPS64)
    np.testing.assert_allclose(dz_sum, 7 * dz_mean, rtol=4 * EPS64, atol=1e-300)


def test_default_reduction_is_mean():
    z, y = random_logits(5, 3, seed=2)
    loss_default, dz_default = R.softmax_cross_entropy(z, y)
    loss_mean, dz_mean = R.softmax_cross_entropy(z, y, "mean")
    assert loss_default == loss_mean
    np.testing.assert_array_equal(dz_default, dz_mean)


@settings(max_examples=50, deadline=None)  # deadline=None: the first example may compile
@given(
    z=hnp.arrays(
        np.float64, st.tuples(st.integers(1, 6), st.integers(2, 6)), elements=st.floats(-30, 30, allow_nan=False)
    ),
    data=st.data(),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_cross_entropy_matches_the_numpy_oracle(z, data, reduction):
    y = np.array(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=z.shape[0], max_size=z.shape[0])))
    loss, dz = R.softmax_cross_entropy(z, y, reduction)
    expected_loss, expected_dz = numpy_mlp.softmax_cross_entropy(z, y, reduction)
    # Same math in a different order; the loss sums N terms of size <= 60, each with error ~ eps * 60.
    assert loss == pytest.approx(expected_loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(dz, expected_dz, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_matches_central_differences_in_the_logits(reduction):
    z, y = random_logits(4, 5, seed=3)
    _, dz = R.softmax_cross_entropy(z, y, reduction)

    def f(logits):
        return numpy_mlp.softmax_cross_entropy(logits, y, reduction)[0]

    numeric = numpy_mlp.eval_numerical_gradient(f, z.copy(), h=H)
    # Central differences: truncation h^2 |f'''| / 6 ~ 1e-11, rounding eps * |f| / h ~ 1e-10 (|f| ~ 10 for sum).
    np.testing.assert_allclose(dz, numeric, rtol=0, atol=1e-8)


def test_cross_entropy_does_not_modify_the_logits():
    z, y = random_logits(3, 4, seed=4)
    before = z.copy()
    R.softmax_cross_entropy(z, y, "sum")
    np.testing.assert_array_equal(z, before)


def test_batch_of_one_gives_the_same_numbers_for_mean_and_sum():
    z, y = random_logits(1, 4, seed=5)
    mean, sum_ = R.softmax_cross_entropy(z, y, "mean"), R.softmax_cross_entropy(z, y, "sum")
    assert mean[0] == sum_[0]
    np.testing.assert_array_equal(mean[1], sum_[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_of_logits_plus_minus_1e4_is_exact_and_warning_free(dtype):
    z = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 1e4]], dtype=dtype)
    y = np.array([1, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            loss, dz = R.softmax_cross_entropy(z, y, "sum")
    # Row losses: 1e4 - (-1e4) = 2e4, 0, 1e4 - 0 = 1e4 (the other exponentials underflow to 0 exactly).
    assert loss == 3e4
    assert dz.dtype == dtype
    np.testing.assert_array_equal(dz, [[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]])


def test_cross_entropy_of_tied_logits_at_1e4_is_log_2_to_a_few_eps():
    loss, _ = R.softmax_cross_entropy(np.array([[1e4, 1e4]]), np.array([0]), "mean")
    assert loss == pytest.approx(math.log(2.0), rel=4 * EPS64, abs=0)


def test_cross_entropy_of_integer_logits_has_a_float64_gradient():
    _, dz = R.softmax_cross_entropy(np.array([[1, 2, 3]]), np.array([2]), "mean")
    _, expected = R.softmax_cross_entropy(np.array([[1.0, 2.0, 3.0]]), np.array([2]), "mean")
    np.testing.assert_allclose(dz, expected, rtol=8 * EPS64)


def test_cross_entropy_of_large_logits_is_accurate_to_eps_times_the_largest_logit():
    # A weaker bound than the tie test above, for any large logits: absolute error <= eps * |max logit|.
    loss, _ = R.softmax_cross_entropy(np.array([[1e4, 1e4]]), np.array([0]), "mean")
    assert loss == pytest.approx(math.log(2.0), rel=0, abs=EPS64 * 1e4)


def test_float32_logits_give_float32_gradients_at_float32_accuracy():
    z, y = random_logits(5, 4, seed=6)
    z32 = z.astype(np.float32)
    loss32, dz32 = R.softmax_cross_entropy(z32, y, "mean")
    loss64, dz64 = R.softmax_cross_entropy(z32.astype(np.float64), y, "mean")
    assert dz32.dtype == np.float32 and isinstance(loss32, float)
    # The loss is accumulated in float64 from the same (float32-representable) logits.
    assert loss32 == pytest.approx(loss64, rel=1e-14)
    # Each entry is rounded to float32 about twice (the exponential is stored, then the ratio):
    # about one float32 ulp of the largest entry.
    np.testing.assert_allclose(dz32, dz64, rtol=2 * EPS32, atol=2 * EPS32 * np.abs(dz64).max())


def test_labels_outside_0_to_c_and_unknown_reductions_are_rejected():
    z, _ = random_logits(2, 3, seed=7)
    with pytest.raises(ValueError):
        R.softmax_cross_entropy(z, np.array([0, 3]), "mean")
    with pytest.raises(ValueError):
        R.softmax_cross_entropy(z, np.array([-1, 0]), "mean")
    with pytest.raises(ValueError):
        R.softmax_cross_entropy(z, np.array([0, 1]), "median")
