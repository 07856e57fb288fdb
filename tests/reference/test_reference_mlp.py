"""reference.mlp (spec, init, forward, loss, backprop) against a hand-worked net and the NumPy oracle."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy_mlp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_cases import as_dict, assert_grads_close, make_problem

import reference as R

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)

SIZES_BY_DEPTH = {1: (4, 3), 2: (4, 5, 3), 3: (4, 5, 4, 3)}
MATRIX = [
    pytest.param(depth, activation, reduction, reg, id=f"depth{depth}-{activation}-{reduction}-reg{reg}")
    for depth, activation, reduction, reg in itertools.product(SIZES_BY_DEPTH, R.ACTIVATIONS, R.REDUCTIONS, [0.0, 0.3])
]

# Reference vs oracle in float64: the same formulas evaluated in a different order, through dot
# products of <= 6 terms and <= 3 layers; a few tens of eps relative, well under these.
ORACLE_RTOL, ORACLE_ATOL = 1e-12, 1e-14


# ----------------------------------------------------------------------------- a net checked by hand

# D = 2, H = 2, C = 2, relu, one sample x = (1, 2) with label 0.
#   u1 = x W1 + b1 = (1*1 + 2*0.5 + 0, 1*(-1) + 2*(-1) + 1) = (2, -2)      a1 = relu(u1) = (2, 0)
#   z  = a1 W2 + b2 = (2*1 + 0*2 + 0, 2*(-1) + 0*3 + 1)      = (2, -1)
#   p  = softmax(z) = (1 - q, q) with q = 1 / (1 + e^3);       loss = -log(1 - q) = log(1 + e^-3)
#   dz = p - onehot(0) = (-q, q)
#   dW2 = a1^T dz = [[-2q, 2q], [0, 0]]                        db2 = (-q, q)
#   da1 = dz W2^T = (-q*1 + q*(-1), -q*2 + q*3) = (-2q, q)     du1 = da1 * [u1 > 0] = (-2q, 0)
#   dW1 = x^T du1 = [[-2q, 0], [-4q, 0]]                        db1 = (-2q, 0)
# With reg = 0.1 the loss gains 0.05 * (sum W1^2 + sum W2^2) = 0.05 * (3.25 + 15) = 0.9125 and
# every dW gains 0.1 * W; the biases' gradients do not change.
HAND_X = np.array([[1.0, 2.0]])
HAND_Y = np.array([0])
HAND_PARAMS = {
    "W1": np.array([[1.0, -1.0], [0.5, -1.0]]),
    "b1": np.array([0.0, 1.0]),
    "W2": np.array([[1.0, -1.0], [2.0, 3.0]]),
    "b2": np.array([0.0, 1.0]),
}
# 40-digit decimal arithmetic: q = 0.047425873177566780878..., log(1 + e^-3) = 0.048587351573742058758...
# (log1p: log(1.0 + e**-3) would lose ~1e-15 to the rounding of 1 + e^-3).
Q = 1.0 / (1.0 + math.e**3)
HAND_LOSS = math.log1p(math.exp(-3.0))
HAND_ATOL = 16 * EPS64  # see test_hand_worked_two_layer_relu_net_loss_and_gradients
HAND_GRADS = {
    "W1": np.array([[-2 * Q, 0.0], [-4 * Q, 0.0]]),
    "b1": np.array([-2 * Q, 0.0]),
    "W2": np.array([[-2 * Q, 2 * Q], [0.0, 0.0]]),
    "b2": np.array([-Q, Q]),
}


def test_hand_worked_two_layer_relu_net_forward_values():
    spec = R.MLPSpec((2, 2, 2), "relu")
    logits, hidden = R.forward(HAND_X, HAND_PARAMS, spec)
    # Small integers and halves: every operation is exact.
    np.testing.assert_array_equal(logits, [[2.0, -1.0]])
    assert len(hidden) == 1
    np.testing.assert_array_equal(hidden[0], [[2.0, 0.0]])


def test_hand_worked_two_layer_relu_net_loss_and_gradients():
    assert math.isclose(Q, 0.04742587317756678, rel_tol=1e-15)
    assert math.isclose(HAND_LOSS, 0.04858735157374206, rel_tol=1e-15)
    loss, grads = R.loss_and_grads(HAND_X, HAND_Y, HAND_PARAMS, R.MLPSpec((2, 2, 2), "relu"))
    # The loss is log(1 + e^-3) to a few eps. The reference forms -q as p_0 - 1 with p_0 ~ 0.95, an
    # absolute error of ~eps, then multiplies it by at most 4 (x and a1 entries): HAND_ATOL.
    assert loss == pytest.approx(HAND_LOSS, rel=8 * EPS64)
    assert_grads_close(grads, HAND_GRADS, rtol=8 * EPS64, atol=HAND_ATOL, what="hand-worked net")


def test_hand_worked_net_with_reg_adds_half_reg_sum_w_squared_and_reg_w_but_nothing_to_biases():
    loss, grads = R.loss_and_grads(HAND_X, HAND_Y, HAND_PARAMS, R.MLPSpec((2, 2, 2), "relu", reg=0.1))
    assert loss == pytest.approx(HAND_LOSS + 0.9125, rel=8 * EPS64)
    expected = dict(HAND_GRADS)
    expected["W1"] = HAND_GRADS["W1"] + 0.1 * HAND_PARAMS["W1"]
    expected["W2"] = HAND_GRADS["W2"] + 0.1 * HAND_PARAMS["W2"]
    assert_grads_close(grads, expected, rtol=8 * EPS64, atol=HAND_ATOL, what="reg=0.1")


def test_hand_worked_net_on_a_duplicated_sample_mean_keeps_and_sum_doubles_loss_and_gradients():
    X2, y2 = np.vstack([HAND_X, HAND_X]), np.array([0, 0])
    mean_loss, mean_grads = R.loss_and_grads(X2, y2, HAND_PARAMS, R.MLPSpec((2, 2, 2), "relu", "mean"))
    sum_loss, sum_grads = R.loss_and_grads(X2, y2, HAND_PARAMS, R.MLPSpec((2, 2, 2), "relu", "sum"))
    assert mean_loss == pytest.approx(HAND_LOSS, rel=8 * EPS64)
    assert sum_loss == pytest.approx(2 * HAND_LOSS, rel=8 * EPS64)
    assert_grads_close(mean_grads, HAND_GRADS, rtol=8 * EPS64, atol=HAND_ATOL, what="mean over 2 copies")
    doubled = {k: 2 * v for k, v in HAND_GRADS.items()}
    assert_grads_close(sum_grads, doubled, rtol=8 * EPS64, atol=2 * HAND_ATOL, what="sum over 2 copies")


# ----------------------------------------------------------------------------- against the NumPy oracle


@pytest.mark.parametrize(("depth", "activation", "reduction", "reg"), MATRIX)
def test_loss_and_grads_match_the_numpy_oracle(depth, activation, reduction, reg):
    X, y, params, spec = make_problem(SIZES_BY_DEPTH[depth], activation, reduction, reg, seed=depth, n=6)
    loss, grads = R.loss_and_grads(X, y, params, spec)
    expected_loss, expected_grads = numpy_mlp.loss_and_grads(X, y, as_dict(params), activation, reduction, reg)
    assert loss == pytest.approx(expected_loss, rel=ORACLE_RTOL, abs=ORACLE_ATOL)
    assert_grads_close(grads, expected_grads, ORACLE_RTOL, ORACLE_ATOL, what=spec.activation)
    assert R.loss(X, y, params, spec) == pytest.approx(loss, rel=4 * EPS64)


@pytest.mark.parametrize(("depth", "activation"), list(itertools.product(SIZES_BY_DEPTH, R.ACTIVATIONS)))
def test_forward_returns_the_logits_and_every_hidden_activation(depth, activation):
    X, _, params, spec = make_problem(SIZES_BY_DEPTH[depth], activation, seed=10 + depth, n=5)
    logits, hidden = R.forward(X, params, spec)
    expected_logits, cache = numpy_mlp.forward(X, as_dict(params), activation)
    np.testing.assert_allclose(logits, expected_logits, rtol=ORACLE_RTOL, atol=ORACLE_ATOL)
    assert len(hidden) == depth - 1
    for layer, a in enumerate(hidden, start=1):
        np.testing.assert_allclose(a, cache[f"a{layer}"], rtol=ORACLE_RTOL, atol=ORACLE_ATOL)


@pytest.mark.parametrize(
    ("depth", "activation", "reduction"), list(itertools.product([2, 3], R.ACTIVATIONS, R.REDUCTIONS))
)
def test_biases_are_not_regularized(depth, activation, reduction):
    X, y, params, _ = make_problem(SIZES_BY_DEPTH[depth], activation, reduction, seed=20 + depth, n=5)
    loss0, grads0 = R.loss_and_grads(X, y, params, R.MLPSpec(SIZES_BY_DEPTH[depth], activation, reduction, 0.0))
    loss1, grads1 = R.loss_and_grads(X, y, params, R.MLPSpec(SIZES_BY_DEPTH[depth], activation, reduction, 0.7))
    penalty = 0.5 * 0.7 * sum(float(np.sum(params[k] ** 2)) for k in params if k.startswith("W"))
    # loss1 = loss0 + penalty up to the rounding of the sum (a few eps of the larger term).
    assert loss1 == pytest.approx(loss0 + penalty, rel=8 * EPS64)
    for name in params:
        if name.startswith("b"):
            np.testing.assert_array_equal(grads1[name], grads0[name], err_msg=f"{name} is regularized")
        else:
            # dW gains reg * W: one extra rounded addition per entry.
            np.testing.assert_allclose(grads1[name], grads0[name] + 0.7 * params[name], rtol=4 * EPS64, atol=4 * EPS64)


@settings(max_examples=50, deadline=None)  # deadline=None: the first example may compile
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    activation=st.sampled_from(R.ACTIVATIONS),
    reduction=st.sampled_from(R.REDUCTIONS),
    reg=st.sampled_from([0.0, 0.1]),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_gradients_have_the_parameter_shapes_and_match_the_oracle_for_random_architectures(
    sizes, activation, reduction, reg, n, seed
):
    X, y, params, spec = make_problem(tuple(sizes), activation, reduction, reg, seed=seed, n=n)
    loss, grads = R.loss_and_grads(X, y, params, spec)
    assert list(grads) == list(params) == list(spec.shapes)
    for name in params:
        assert grads[name].shape == params[name].shape == spec.shapes[name]
        assert grads[name].dtype == np.float64
    expected_loss, expected_grads = numpy_mlp.loss_and_grads(X, y, as_dict(params), activation, reduction, reg)
    assert np.isfinite(loss)
    # Depth up to 4 and widths up to 6: the same few-tens-of-eps budget as the fixed matrix.
    assert loss == pytest.approx(expected_loss, rel=ORACLE_RTOL, abs=ORACLE_ATOL)
    assert_grads_close(grads, expected_grads, ORACLE_RTOL, ORACLE_ATOL, what=str(spec))


# ----------------------------------------------------------------------------- dtypes and parameter containers


@pytest.mark.parametrize(("depth", "activation"), list(itertools.product(SIZES_BY_DEPTH, R.ACTIVATIONS)))
def test_float32_inputs_give_float32_gradients_at_float32_accuracy(depth, activation):
    X, y, params, spec = make_problem(SIZES_BY_DEPTH[depth], activation, "mean", 0.3, seed=30 + depth, n=6)
    X32, params32 = X.astype(np.float32), R.Params(params.flat.astype(np.float32), spec)
    loss32, grads32 = R.loss_and_grads(X32, y, params32, spec)
    logits32, hidden32 = R.forward(X32, params32, spec)
    assert grads32.flat.dtype == np.float32 and logits32.dtype == np.float32
    assert all(a.dtype == np.float32 for a in hidden32)
    # Same float32-representable inputs, evaluated in float64.
    params64 = R.Params(params32.flat.astype(np.float64), spec)
    loss64, grads64 = R.loss_and_grads(X32.astype(np.float64), y, params64, spec)
    # Every intermediate is rounded to float32 (eps32 = 1.2e-7) through <= 3 layers and sums of <= 6
    # terms: a bound of ~30 eps32 relative to the largest gradient (observed: <= 2 eps32).
    tolerance = 32 * EPS32
    assert loss32 == pytest.approx(loss64, rel=tolerance)
    scale = float(np.abs(grads64.flat).max())
    assert_grads_close(grads32, grads64, rtol=tolerance, atol=tolerance * scale, what="float32")


def test_mixed_float32_and_float64_inputs_are_computed_in_float64():
    X, y, params, spec = make_problem((4, 5, 3), "tanh", seed=40)
    _, grads_a = R.loss_and_grads(X.astype(np.float32), y, params, spec)
    _, grads_b = R.loss_and_grads(X, y, R.Params(params.flat.astype(np.float32), spec), spec)
    assert grads_a.flat.dtype == np.float64 and grads_b.flat.dtype == np.float64


def test_a_plain_dict_of_arrays_gives_the_same_result_as_params():
    X, y, params, spec = make_problem((4, 5, 3), "sigmoid", reg=0.2, seed=41)
    loss_p, grads_p = R.loss_and_grads(X, y, params, spec)
    loss_d, grads_d = R.loss_and_grads(X, y, as_dict(params), spec)
    # Same kernel on the same numbers: bit for bit.
    assert loss_p == loss_d
    np.testing.assert_array_equal(grads_p.flat, grads_d.flat)


def test_loss_and_grads_does_not_modify_x_or_the_parameters():
    X, y, params, spec = make_problem((4, 5, 4, 3), "relu", reg=0.2, seed=42)
    X_before, flat_before = X.copy(), params.flat.copy()
    R.loss_and_grads(X, y, params, spec)
    R.forward(X, params, spec)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(params.flat, flat_before)


def test_huge_pre_activations_give_a_finite_exact_loss_and_finite_gradients():
    # One input of 1; hidden pre-activations +-1e4 saturate sigmoid to exactly 1 and 0, so the logits
    # are exactly (1e4, -1e4) and the loss with label 1 is 2e4.
    spec = R.MLPSpec((1, 2, 2), "sigmoid", "mean")
    params = {
        "W1": np.array([[1e4, -1e4]]),
        "b1": np.zeros(2),
        "W2": np.array([[1e4, -1e4], [0.0, 0.0]]),
        "b2": np.zeros(2),
    }
    with np.errstate(all="raise"):
        loss, grads = R.loss_and_grads(np.array([[1.0]]), np.array([1]), params, spec)
    assert loss == 2e4
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    np.testing.assert_array_equal(grads["b2"], [1.0, -1.0])


# ----------------------------------------------------------------------------- spec, init, layout


def test_init_params_is_seeded_with_zero_biases_by_default():
    spec = R.MLPSpec((6, 5, 4, 3), "relu")
    a, b, c = R.init_params(spec, 7), R.init_params(spec, 7), R.init_params(spec, 8)
    np.testing.assert_array_equal(a.flat, b.flat)
    assert not np.array_equal(a.flat, c.flat)
    assert all(np.all(a[name] == 0.0) for name in a if name.startswith("b"))
    assert R.init_params(spec, 7, dtype=np.float32).flat.dtype == np.float32
    assert np.any(R.init_params(spec, 7, bias_scale=0.1)["b1"] != 0.0)


def test_params_are_named_views_into_one_flat_vector_in_w1_b1_w2_b2_order():
    spec = R.MLPSpec((3, 4, 2), "tanh")
    params = R.init_params(spec, 0, bias_scale=1.0)
    assert list(params) == ["W1", "b1", "W2", "b2"]
    assert spec.size == 3 * 4 + 4 + 4 * 2 + 2
    np.testing.assert_array_equal(params.flat, np.concatenate([params[k].ravel() for k in params]))
    assert spec.locate(0) == ("W1", (0, 0))
    assert spec.locate(12) == ("b1", (0,))
    assert spec.locate(spec.size - 1) == ("b2", (1,))
    params["W2"][1, 1] = 123.0
    assert params.flat[spec.slices["W2"]][3] == 123.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sizes": (3,)},
        {"sizes": (3, 0, 2)},
        {"sizes": (3, 2), "activation": "gelu"},
        {"sizes": (3, 2), "reduction": "max"},
        {"sizes": (3, 2), "reg": -1.0},
        {"sizes": (3, 2), "reg": float("nan")},
    ],
)
def test_invalid_specs_are_rejected(kwargs):
    with pytest.raises(ValueError):
        R.MLPSpec(**kwargs)


def test_wrong_input_width_or_missing_parameters_are_rejected_with_a_message():
    X, y, params, spec = make_problem((4, 5, 3), "relu")
    with pytest.raises(ValueError, match="X must have shape"):
        R.loss_and_grads(X[:, :3], y, params, spec)
    incomplete = as_dict(params)
    del incomplete["b2"]
    with pytest.raises(KeyError, match="b2"):
        R.loss_and_grads(X, y, incomplete, spec)
