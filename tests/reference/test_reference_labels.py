"""Labels and batch size at every public entry point of the reference that takes labels.

One rule everywhere: labels are a 1-D array (or list) of N class indices in [0, C); integer
dtypes are taken as they are, floats only when every value is a whole number (never truncated);
a mean over an empty batch is refused (it is undefined), a sum over one is 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from reference_cases import make_problem

import reference as R

CLASSES = 3
Call = Callable[[object, int, str], object]


def call_cross_entropy(y: object, n: int, reduction: str) -> object:
    z = np.random.default_rng(0).normal(size=(n, CLASSES))
    return R.softmax_cross_entropy(z, y, reduction)


def call_mlp(function: Callable) -> Call:
    """Call function(X, y, params, spec) on a small 2-layer net with n rows and the given reduction."""

    def call(y: object, n: int, reduction: str) -> object:
        X, _, params, spec = make_problem((4, 5, CLASSES), "tanh", reduction, reg=0.1, n=n)
        return function(X, y, params, spec)

    return call


ENTRY_POINTS = {
    "softmax_cross_entropy": call_cross_entropy,
    "loss": call_mlp(R.loss),
    "loss_and_grads": call_mlp(R.loss_and_grads),
    "mlp_numerical_gradient": call_mlp(R.mlp_numerical_gradient),
}
each_entry_point = pytest.mark.parametrize("call", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())


def numbers(result: object) -> np.ndarray:
    """Every number a result holds (a loss, (loss, dz), (loss, Params) or Params), as one float64 vector."""
    parts = result if isinstance(result, tuple) else (result,)
    flat = [np.asarray(part.flat if isinstance(part, R.Params) else part, dtype=np.float64).ravel() for part in parts]
    return np.concatenate(flat)


@each_entry_point
@pytest.mark.parametrize("reduction", R.REDUCTIONS)
def test_whole_float_labels_and_lists_give_the_same_numbers_as_int64_labels(call, reduction):
    expected = numbers(call(np.array([2, 0, 1, 2], dtype=np.int64), 4, reduction))
    for y in ([2, 0, 1, 2], np.array([2.0, 0.0, 1.0, 2.0]), np.array([2, 0, 1, 2], dtype=np.uint8)):
        np.testing.assert_array_equal(numbers(call(y, 4, reduction)), expected)


@each_entry_point
def test_fractional_float_labels_are_refused_never_truncated(call):
    with pytest.raises(ValueError, match=r"whole numbers.*found 1\.5 at index 2"):
        call(np.array([2.0, 0.0, 1.5, 2.0]), 4, "mean")
    with pytest.raises(ValueError, match=r"whole numbers.*found nan at index 0"):
        call(np.array([np.nan, 0.0, 1.0, 2.0]), 4, "mean")


@each_entry_point
@pytest.mark.parametrize(
    ("labels", "found"),
    [
        (np.array([0, 1, 3, 2]), "found 3 at index 2"),
        (np.array([0, -1, 1, 2]), "found -1 at index 1"),
        (np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64), "found 18446744073709551615 at index 3"),
        (np.array([0.0, 1.0, np.inf, 2.0]), "found inf at index 2"),
    ],
    ids=["C", "negative", "uint64_max", "inf"],
)
def test_labels_outside_0_to_c_are_refused_naming_the_first_bad_one(call, labels, found):
    with pytest.raises(ValueError, match=rf"\[0, {CLASSES}\).*{found}.*0-based"):
        call(labels, 4, "sum")


@each_entry_point
@pytest.mark.parametrize(
    ("labels", "what"),
    [
        (np.array([True, False, True, True]), "dtype bool"),
        (np.array(["2", "0", "1", "2"]), "dtype <U1"),
        (np.array([2 + 0j, 0, 1, 2]), "dtype complex128"),
    ],
    ids=["bool", "str", "complex"],
)
def test_labels_that_are_not_numbers_are_refused_with_a_type_error(call, labels, what):
    with pytest.raises(TypeError, match=rf"integer class indices.*found {what}"):
        call(labels, 4, "mean")


@each_entry_point
@pytest.mark.parametrize(
    ("labels", "shape", "hint"),
    [
        (np.array([[2], [0], [1], [2]]), r"\(4, 1\)", r"np\.ravel\(y\)"),
        (np.eye(CLASSES)[[2, 0, 1, 2]], r"\(4, 3\)", r"one-hot.*argmax\(axis=1\)"),
        (np.array([2, 0, 1]), r"\(3,\)", "one label per row"),
    ],
    ids=["column", "one_hot", "too_short"],
)
def test_labels_of_the_wrong_shape_are_refused_with_the_fix(call, labels, shape, hint):
    with pytest.raises(ValueError, match=rf"1-D array of 4 class indices.*found shape {shape}.*{hint}"):
        call(labels, 4, "mean")


@each_entry_point
def test_a_mean_over_an_empty_batch_is_refused_as_undefined(call):
    with pytest.raises(ValueError, match=r"empty batch.*mean over zero examples is undefined.*reduction='sum'"):
        call(np.array([], dtype=np.int64), 0, "mean")


def test_a_sum_over_an_empty_batch_is_0_with_an_empty_gradient():
    loss, dz = R.softmax_cross_entropy(np.zeros((0, CLASSES)), np.array([], dtype=np.int64), "sum")
    assert loss == 0.0 and dz.shape == (0, CLASSES)


@pytest.mark.parametrize("function", [R.loss_and_grads, R.mlp_numerical_gradient], ids=["backprop", "numgrad"])
def test_an_mlp_summed_over_an_empty_batch_is_only_the_penalty(function):
    X, _, params, spec = make_problem((4, 5, CLASSES), "tanh", "sum", reg=0.1, n=0)
    grads = function(X, [], params, spec)
    grads = grads[1] if isinstance(grads, tuple) else grads
    # No data: the loss is 0.5 * reg * sum(W**2), its gradient reg * W for weights and 0 for biases.
    expected = {name: 0.1 * value if name.startswith("W") else np.zeros_like(value) for name, value in params.items()}
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)
    penalty = 0.05 * sum(float(np.sum(params[name] ** 2)) for name in ("W1", "W2"))
    assert R.loss(X, [], params, spec) == pytest.approx(penalty, rel=1e-14)


@pytest.mark.parametrize("logits", [np.zeros(CLASSES), np.zeros((2, 2, CLASSES))], ids=["1-D", "3-D"])
def test_cross_entropy_of_logits_that_are_not_2_d_is_refused_with_the_fix(logits):
    with pytest.raises(ValueError, match=r"\(N, C\).*found shape.*z\.reshape\(1, -1\)"):
        R.softmax_cross_entropy(logits, np.array([0]), "mean")


@pytest.mark.parametrize("logits", [np.array([["1", "2"]]), np.array([[1 + 0j, 2]])], ids=["str", "complex"])
def test_cross_entropy_of_logits_that_are_not_real_numbers_is_refused_with_a_type_error(logits):
    with pytest.raises(TypeError, match=r"real numbers; found dtype"):
        R.softmax_cross_entropy(logits, np.array([0]), "mean")
