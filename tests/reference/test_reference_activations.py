"""reference.activations against hand-worked values, the NumPy oracle, finite differences and extreme inputs."""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import numpy_mlp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as R

EPS64 = float(np.finfo(np.float64).eps)  # 2.2e-16
EPS32 = float(np.finfo(np.float32).eps)  # 1.2e-7
H = 1e-5

PROPERTY = settings(max_examples=50, deadline=None)  # deadline=None: the first example may compile


@contextmanager
def strict_floating_point(under: str = "raise"):
    """Every NumPy floating-point event raises and every warning is an error (underflow: see `under`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under=under):
            yield


def logit_rows(max_abs: float = 50.0, max_rows: int = 5, max_cols: int = 8):
    """2-D float64 arrays of logits in [-max_abs, max_abs]."""
    shapes = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    return hnp.arrays(np.float64, shapes, elements=st.floats(-max_abs, max_abs, allow_nan=False))


# ----------------------------------------------------------------------------- softmax, log-softmax


def test_softmax_of_1_2_3_matches_hand_computed_values():
    e = math.e
    denominator = e + e**2 + e**3
    expected = np.array([e / denominator, e**2 / denominator, e**3 / denominator])
    # The same numbers written out: 1/(1+e+e^2), e/(1+e+e^2), e^2/(1+e+e^2).
    np.testing.assert_allclose(expected, [0.09003057317038046, 0.24472847105479767, 0.6652409557748219], rtol=1e-15)
    # Both sides are a few correctly rounded float64 operations apart: a few eps of relative error.
    np.testing.assert_allclose(R.softmax(np.array([1.0, 2.0, 3.0])), expected, rtol=8 * EPS64)
    np.testing.assert_allclose(R.softmax(np.array([[1.0, 2.0, 3.0]])), expected[None, :], rtol=8 * EPS64)


def test_log_softmax_of_1_2_3_is_k_minus_log_of_e_plus_e2_plus_e3():
    e = math.e
    expected = np.array([1.0, 2.0, 3.0]) - math.log(e + e**2 + e**3)
    # log(1 + 1/e + 1/e^2) = 0.40760596444438030448... (40-digit decimal arithmetic).
    by_hand = [-2.4076059644443803, -1.4076059644443803, -0.4076059644443803]
    np.testing.assert_allclose(expected, by_hand, rtol=4 * EPS64)
    # |values| ~ 1..3 from one subtraction of a log: absolute error of a few eps.
    np.testing.assert_allclose(R.log_softmax(np.array([1.0, 2.0, 3.0])), expected, rtol=0, atol=8 * EPS64)


@pytest.mark.parametrize("shape", [(7,), (4, 6), (2, 3, 5)], ids=["1-D", "2-D", "3-D"])
def test_softmax_and_log_softmax_reduce_along_the_last_axis_like_the_numpy_oracle(shape):
    x = np.random.default_rng(0).normal(scale=5.0, size=shape)
    # Same math, different operation order: differences are float64 rounding on O(1) values.
    np.testing.assert_allclose(R.softmax(x), numpy_mlp.softmax(x), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(R.log_softmax(x), numpy_mlp.log_softmax(x), rtol=1e-13, atol=1e-13)
    assert R.softmax(x).shape == shape and R.log_softmax(x).shape == shape


def test_softmax_does_not_modify_its_input():
    x = np.random.default_rng(1).standard_normal((3, 4))
    before = x.copy()
    R.softmax(x)
    R.log_softmax(x)
    np.testing.assert_array_equal(x, before)


@PROPERTY
@given(x=logit_rows(), shift=st.floats(-1e3, 1e3))
def test_softmax_is_invariant_to_adding_a_constant_to_every_logit(x, shift):
    # x + shift is rounded to within eps * 1e3 ~ 2e-13 of the exact sum; that error enters the
    # exponent, so probabilities (<= 1) move by about 2e-13 at most.
    np.testing.assert_allclose(R.softmax(x + shift), R.softmax(x), rtol=0, atol=1e-12)


def softmax_error_bound(x: np.ndarray) -> float:
    """Absolute error of the reference's probabilities: it forms exp(x - lse) with lse = max + log(sum),
    so the rounding of lse (eps * |max| / 2) enters every exponent; plus a few eps per term of a row sum."""
    return 4 * EPS64 * (max(1.0, float(np.max(np.abs(x)))) + x.shape[-1])


@PROPERTY
@given(x=logit_rows(max_abs=1e4))
def test_softmax_rows_are_probabilities_summing_to_1(x):
    p = R.softmax(x)
    assert np.all(p >= 0.0) and np.all(p <= 1.0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=softmax_error_bound(x))


@PROPERTY
@given(x=logit_rows(max_abs=1e4))
def test_log_softmax_is_the_log_of_softmax(x):
    # exp of log_softmax has a relative error of |log_softmax| * eps; values below 1e-300 underflow
    # in one and not the other, so compare absolutely at the scale of a probability.
    np.testing.assert_allclose(np.exp(R.log_softmax(x)), R.softmax(x), rtol=1e-12, atol=1e-300)


def test_softmax_of_tied_logits_at_1e4_is_one_half_to_a_few_eps():
    x = np.array([[1e4, 1e4, -1e4]])
    np.testing.assert_allclose(R.softmax(x), [[0.5, 0.5, 0.0]], rtol=4 * EPS64, atol=0)
    np.testing.assert_allclose(R.log_softmax(x)[:, :2], -math.log(2.0), rtol=4 * EPS64, atol=0)


def test_softmax_of_integer_logits_is_computed_in_float64():
    expected = R.softmax(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(R.softmax(np.array([1, 2, 3])), expected, rtol=8 * EPS64)
    np.testing.assert_allclose(R.log_softmax(np.array([1, 2, 3])), np.log(expected), rtol=8 * EPS64)


# ----------------------------------------------------------------------------- sigmoid, tanh, relu


def test_sigmoid_of_0_is_one_half_and_of_log_3_is_three_quarters():
    # sigmoid(log 3) = 1 / (1 + 1/3) = 3/4; log 3 is rounded, so allow a couple of eps.
    np.testing.assert_allclose(R.sigmoid(np.array([0.0, math.log(3.0)])), [0.5, 0.75], rtol=4 * EPS64)


@PROPERTY
@given(x=hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-50, 50, allow_nan=False)))
def test_sigmoid_of_minus_x_is_1_minus_sigmoid_of_x(x):
    s = R.sigmoid(x)
    assert np.all((s >= 0.0) & (s <= 1.0))
    # Each side is within ~2 eps of a number in [0, 1]; 1 - s adds one more rounding.
    np.testing.assert_allclose(R.sigmoid(-x), 1.0 - s, rtol=0, atol=8 * EPS64)


@PROPERTY
@given(x=hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-50, 50, allow_nan=False)))
def test_sigmoid_tanh_relu_match_the_numpy_oracle(x):
    # The oracle's exp(-logaddexp(0, -x)) has relative error ~ eps * |x| <= 50 eps ~ 1e-14.
    np.testing.assert_allclose(R.sigmoid(x), numpy_mlp.sigmoid(x), rtol=1e-13)
    # Both call a libm-quality tanh: at most a few ulps apart.
    np.testing.assert_allclose(R.tanh(x), np.tanh(x), rtol=8 * EPS64, atol=8 * EPS64)
    np.testing.assert_array_equal(R.relu(x), numpy_mlp.relu(x))


def test_sigmoid_grad_and_tanh_grad_take_the_activation_output():
    x = np.linspace(-6.0, 6.0, 25)
    s, t = R.sigmoid(x), R.tanh(x)
    np.testing.assert_allclose(R.sigmoid_grad(s), s * (1.0 - s), rtol=4 * EPS64)
    np.testing.assert_allclose(R.tanh_grad(t), 1.0 - t**2, rtol=4 * EPS64, atol=4 * EPS64)


def exact_relative_error(found: np.ndarray, exact: list[Fraction]) -> np.ndarray:
    """|found - exact| / |exact| entry by entry, in exact rational arithmetic (0 where exact is 0)."""
    return np.array(
        [float(abs(Fraction(float(f)) - e) / abs(e)) if e else 0.0 for f, e in zip(found, exact, strict=True)]
    )


def test_tanh_grad_is_accurate_to_one_ulp_where_tanh_saturates():
    # t = tanh(x) for |x| up to 18.5 comes within 1e-16 of +/-1, where 1 - t*t cancels catastrophically.
    x = np.linspace(-18.5, 18.5, 371)
    t = np.tanh(x)
    exact = [1 - Fraction(float(v)) ** 2 for v in t]  # independent: rational arithmetic, no rounding at all
    # (1 - t) is exact near |t| = 1 and (1 + t) costs one rounding, the product another: <= eps relative.
    worst = exact_relative_error(R.tanh_grad(t), exact).max()
    assert worst <= EPS64, f"tanh_grad is {worst / EPS64:.3g} eps off (relative) near |t| = 1"
    # The textbook form loses ~|log2(1 - t)| bits there: the points above really are hard.
    assert exact_relative_error(1.0 - t * t, exact).max() > 1e6 * EPS64


def test_gradient_docstrings_say_which_argument_each_function_takes():
    # sigmoid_grad and tanh_grad take the activation's output; relu_grad takes its input.
    for name, argument in [("sigmoid_grad", "OUTPUT s = sigmoid(x)"), ("tanh_grad", "OUTPUT t = tanh(x)")]:
        assert argument in getattr(R, name).__doc__
    assert "INPUT x" in R.relu_grad.__doc__


@pytest.mark.parametrize(("act", "act_grad"), [("sigmoid", "sigmoid_grad"), ("tanh", "tanh_grad")])
def test_activation_gradients_match_central_differences_of_the_activation(act, act_grad):
    f, g = getattr(R, act), getattr(R, act_grad)
    x = np.linspace(-6.0, 6.0, 49)
    numeric = (f(x + H) - f(x - H)) / (2 * H)
    # Truncation error h^2 |f'''| / 6 < 1e-10 (|f'''| <= 2 for tanh); rounding eps * |f| / h ~ 2e-11.
    np.testing.assert_allclose(g(f(x)), numeric, rtol=0, atol=1e-9)


def test_relu_grad_is_1_for_positive_inputs_and_0_at_and_below_0():
    x = np.array([-2.0, -1e-300, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(R.relu_grad(x), [0.0, 0.0, 0.0, 1.0, 1.0])
    # The mask computed from relu(x) is the same as the one from x.
    np.testing.assert_array_equal(R.relu_grad(R.relu(x)), R.relu_grad(x))
    np.testing.assert_array_equal(R.relu(x), [0.0, 0.0, 0.0, 1e-300, 3.0])


@pytest.mark.parametrize("name", ["sigmoid", "sigmoid_grad", "relu", "relu_grad", "tanh", "tanh_grad"])
def test_elementwise_functions_keep_float32_and_round_the_float64_result_once(name):
    f = getattr(R, name)
    x32 = np.random.default_rng(2).uniform(-4, 4, size=(3, 5)).astype(np.float32)
    out = f(x32)
    assert out.dtype == np.float32 and out.shape == x32.shape
    # Documented: evaluated in float64 and rounded once to float32, so bit-for-bit equal.
    np.testing.assert_array_equal(out, f(x32.astype(np.float64)).astype(np.float32))


def test_softmax_keeps_float32_at_float32_accuracy():
    x32 = np.random.default_rng(3).normal(scale=3.0, size=(4, 6)).astype(np.float32)
    p32 = R.softmax(x32)
    assert p32.dtype == np.float32 and R.log_softmax(x32).dtype == np.float32
    # Computed in float64 and rounded once: within half a float32 ulp of the float64 result.
    np.testing.assert_allclose(p32, R.softmax(x32.astype(np.float64)), rtol=EPS32 / 2)


# ----------------------------------------------------------------------------- extreme inputs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_of_logits_plus_minus_1e4_is_exact_and_warning_free(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    with strict_floating_point():
        p = R.softmax(x)
        logp = R.log_softmax(x)
    assert p.dtype == dtype and np.all(np.isfinite(p)) and np.all(np.isfinite(logp))
    tie_tolerance = max(softmax_error_bound(x), 4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(p[0], [1.0, 0.0, 0.0])
    # Ties at 1e4 are 1/2 to a few eps (see test_softmax_of_tied_logits_at_1e4_is_one_half_to_a_few_eps).
    np.testing.assert_allclose(p[2], [0.5, 0.5, 0.0], rtol=0, atol=tie_tolerance)
    # Ties are 1/3 to within the same rounding of lse = -1e4 + log 3 (or one float32 rounding).
    np.testing.assert_allclose(p[1], np.full(3, 1 / 3), rtol=0, atol=tie_tolerance)
    np.testing.assert_array_equal(logp[0], [0.0, -2e4, -1e4])


def test_sigmoid_and_tanh_at_plus_minus_1e4_are_exactly_0_and_1_without_warnings():
    x = np.array([-1e4, 1e4])
    # Underflow of exp(-1e4) to 0 is the correctly rounded answer, and NumPy's default ignores it;
    # every other floating-point event raises here (trapping underflow too: see the test below).
    with strict_floating_point(under="ignore"):
        s, t = R.sigmoid(x), R.tanh(x)
        s32 = R.sigmoid(x.astype(np.float32))
        grads = R.sigmoid_grad(s), R.tanh_grad(t)
    np.testing.assert_array_equal(s, [0.0, 1.0])
    np.testing.assert_array_equal(s32, np.array([0.0, 1.0], dtype=np.float32))
    np.testing.assert_array_equal(t, [-1.0, 1.0])
    np.testing.assert_array_equal(grads[0], [0.0, 0.0])
    np.testing.assert_array_equal(grads[1], [0.0, 0.0])


def test_tanh_and_relu_at_plus_minus_1e4_raise_nothing_even_with_underflow_trapped():
    x = np.array([-1e4, 1e4])
    with strict_floating_point():
        np.testing.assert_array_equal(R.tanh(x), [-1.0, 1.0])
        np.testing.assert_array_equal(R.relu(x), [0.0, 1e4])
        np.testing.assert_array_equal(R.relu_grad(x), [0.0, 1.0])


def test_sigmoid_at_plus_minus_1e4_raises_nothing_even_with_underflow_trapped():
    with strict_floating_point():
        s = R.sigmoid(np.array([-1e4, 1e4]))
    np.testing.assert_array_equal(s, [0.0, 1.0])


def test_relu_of_minus_infinity_is_0():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = R.relu(np.array([-np.inf, np.inf]))
    np.testing.assert_array_equal(out, [0.0, np.inf])


def test_relu_of_a_negative_number_is_positive_zero():
    out = R.relu(np.array([-3.0, -1e-300]))
    assert not np.any(np.signbit(out)), f"relu returned {out!r}"
