"""reference.numgrad: generic, sampled and directional central differences, rel_error, and the compiled
finite-difference gradient of the MLP loss, against analytic gradients and each other."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import numpy_mlp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference_cases import H, as_dict, assert_grads_close, hidden_kink_distance, make_smooth_problem

import reference as R
from grader.checks.directions import directional_derivatives

EPS64 = float(np.finfo(np.float64).eps)

SIZES_BY_DEPTH = {1: (4, 3), 2: (4, 5, 3), 3: (4, 5, 4, 3)}
MATRIX = [
    pytest.param(depth, activation, reduction, reg, id=f"depth{depth}-{activation}-{reduction}-reg{reg}")
    for depth, activation, reduction, reg in itertools.product(SIZES_BY_DEPTH, R.ACTIVATIONS, R.REDUCTIONS, [0.0, 0.3])
]

# Central differences of the MLP loss (|loss| <= ~20 here) with h = 1e-5 against backprop:
# truncation h^2 |f'''| / 6 ~ 1e-11 * |f'''| plus rounding eps * |f| / h ~ 2e-11 * |f| gives a few
# 1e-10 at most (observed <= 2e-10); FD_ATOL keeps a 50x margin, FD_RTOL covers the largest entries.
FD_RTOL, FD_ATOL = 1e-7, 1e-8


def quadratic(seed: int, n: int = 6):
    """f(x) = 0.5 x^T A x + b^T x with symmetric A, and its gradient A x + b."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A, b = M + M.T, rng.standard_normal(n)
    return (lambda x: 0.5 * float(x.ravel() @ A @ x.ravel()) + float(b @ x.ravel())), (lambda x: A @ x.ravel() + b)


def reference_loss_of_flat(X, y, spec):
    """theta (flat parameter vector) -> reference loss, for the generic finite-difference functions."""
    return lambda theta: R.loss(X, y, R.Params(theta, spec), spec)


# ----------------------------------------------------------------------------- generic numerical_gradient


def test_numerical_gradient_of_a_quadratic_is_exact_up_to_rounding():
    f, grad = quadratic(0)
    x = np.random.default_rng(1).standard_normal(6)
    # Central differences have no truncation error on quadratics (f''' = 0); rounding: eps * |f| / h.
    np.testing.assert_allclose(R.numerical_gradient(f, x), grad(x), rtol=0, atol=1e-9)


def test_numerical_gradient_keeps_the_shape_of_x():
    f, grad = quadratic(2, n=6)
    x = np.random.default_rng(3).standard_normal((2, 3))
    g = R.numerical_gradient(f, x)
    assert g.shape == (2, 3) and g.dtype == np.float64
    np.testing.assert_allclose(g.ravel(), grad(x), rtol=0, atol=1e-9)


def test_numerical_gradient_restores_x_bit_for_bit():
    # Values whose +h / -h round trip is not exact in floating point (0.1 + 1e-5 - 1e-5 != 0.1).
    x = np.array([0.1, 1 / 3, -2.7, 1e-17, 12345.678])
    before = x.copy()
    R.numerical_gradient(lambda v: float(np.sum(np.sin(v))), x)
    assert x.tobytes() == before.tobytes()


def test_numerical_gradient_moves_one_coordinate_at_a_time_by_plus_then_minus_h_in_place():
    x = np.array([1.0, 2.0, 3.0])
    seen = []
    R.numerical_gradient(lambda v: seen.append(v.copy()) or 0.0, x, h=0.25)
    expected = []
    for i in range(3):
        for step in (0.25, -0.25):
            moved = np.array([1.0, 2.0, 3.0])
            moved[i] += step
            expected.append(moved)
    np.testing.assert_array_equal(np.array(seen), np.array(expected))


def test_numerical_gradient_refuses_arrays_it_cannot_perturb_in_place():
    f, _ = quadratic(4, n=4)
    with pytest.raises(ValueError):
        R.numerical_gradient(f, np.zeros((4, 2))[:, 0])  # not contiguous
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        R.numerical_gradient(f, read_only)
    with pytest.raises(TypeError):
        R.numerical_gradient(f, np.zeros(4, dtype=np.int64))


@pytest.mark.parametrize("which", ["numerical_gradient", "sampled_numerical_gradient"])
def test_numerical_gradient_restores_x_even_when_f_raises(which):
    x = np.array([1.0, 2.0, 3.0])
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("student code failed")
        return float(v.sum())

    with pytest.raises(RuntimeError):
        if which == "numerical_gradient":
            R.numerical_gradient(f, x)
        else:
            R.sampled_numerical_gradient(f, x, count=3, seed=0)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


def test_numerical_gradient_of_float32_x_uses_the_step_actually_taken():
    x = np.random.default_rng(0).standard_normal(20).astype(np.float32)
    numeric = R.numerical_gradient(lambda v: float(np.sum(v.astype(np.float64) ** 2)), x)
    # f is evaluated in float64, so the only float32 effect left would be the rounding of the step.
    np.testing.assert_allclose(numeric, 2.0 * x.astype(np.float64), rtol=1e-8, atol=1e-8)


# ----------------------------------------------------------------------------- sampled and directional


def test_sampled_numerical_gradient_is_seeded_and_equals_the_full_gradient_at_its_indices():
    f, grad = quadratic(5, n=30)
    x = np.random.default_rng(6).standard_normal(30)
    indices, values = R.sampled_numerical_gradient(f, x, count=7, seed=11)
    again, values_again = R.sampled_numerical_gradient(f, x, count=7, seed=11)
    other, _ = R.sampled_numerical_gradient(f, x, count=7, seed=12)
    np.testing.assert_array_equal(indices, again)
    np.testing.assert_array_equal(values, values_again)
    assert not np.array_equal(indices, other)
    assert len(set(indices.tolist())) == 7 and np.all(np.diff(indices) > 0) and indices.max() < 30
    # Same quotient, same evaluations: bit for bit equal to the full gradient at those coordinates.
    np.testing.assert_array_equal(values, R.numerical_gradient(f, x)[indices])
    np.testing.assert_allclose(values, grad(x)[indices], rtol=0, atol=1e-9)


def test_sample_indices_returns_every_index_when_count_is_at_least_size():
    np.testing.assert_array_equal(R.sample_indices(5, 5, seed=0), np.arange(5))
    np.testing.assert_array_equal(R.sample_indices(5, 50, seed=0), np.arange(5))
    assert R.sample_indices(100, 10, seed=3).dtype == np.int64


def test_sampled_numerical_gradient_of_the_mlp_loss_agrees_with_backprop():
    X, y, params, spec = make_smooth_problem((4, 5, 3), "relu", reg=0.1, n=6)
    _, grads = R.loss_and_grads(X, y, params, spec)
    indices, values = R.sampled_numerical_gradient(reference_loss_of_flat(X, y, spec), params.flat, 12, seed=0, h=H)
    np.testing.assert_allclose(values, grads.flat[indices], rtol=FD_RTOL, atol=FD_ATOL)


def test_directional_derivatives_are_seeded_unit_directions_matching_the_gradient():
    X, y, params, spec = make_smooth_problem((4, 5, 4, 3), "tanh", reduction="sum", reg=0.2, n=6)
    _, grads = R.loss_and_grads(X, y, params, spec)
    theta = params.flat.copy()
    f = reference_loss_of_flat(X, y, spec)
    directions, values = directional_derivatives(f, theta, count=5, seed=3, h=H)
    directions_again, values_again = directional_derivatives(f, theta, count=5, seed=3, h=H)
    np.testing.assert_array_equal(directions, directions_again)
    np.testing.assert_array_equal(values, values_again)
    assert directions.shape == (5, spec.size)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=0, atol=4 * EPS64)
    np.testing.assert_array_equal(theta, params.flat)  # not modified
    # v . grad for unit v: the same central-difference error budget as one coordinate.
    np.testing.assert_allclose(values, directions @ grads.flat, rtol=FD_RTOL, atol=FD_ATOL)


def test_directional_derivatives_keep_the_shape_of_x_in_the_directions():
    f, grad = quadratic(7, n=6)
    x = np.random.default_rng(8).standard_normal((3, 2))
    directions, values = directional_derivatives(f, x, count=4, seed=0)
    assert directions.shape == (4, 3, 2)
    # Quadratic: exact up to rounding (eps * |f| / h).
    np.testing.assert_allclose(values, np.tensordot(directions, grad(x).reshape(3, 2), 2), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- rel_error


def test_rel_error_of_equal_arrays_is_0_and_of_opposite_arrays_is_1():
    a = np.array([1.0, -2.0, 3.5])
    assert R.rel_error(a, a) == 0.0
    assert R.rel_error(a, -a) == 1.0
    assert R.rel_error(np.zeros(3), np.zeros(3)) == 0.0  # the floor keeps 0 / 0 away
    assert R.rel_error(np.zeros(2), np.array([0.0, 5.0])) == 1.0


def test_rel_error_is_the_worst_entry_of_abs_difference_over_abs_sum():
    assert R.rel_error(np.array([1.0, 1.0]), np.array([1.0, 1.1])) == pytest.approx(0.1 / 2.1, rel=4 * EPS64)
    # Below the floor the denominator is the floor: 1e-13 / max(1e-12, 1e-13) = 0.1.
    assert R.rel_error(np.array([0.0]), np.array([1e-13])) == pytest.approx(0.1, rel=4 * EPS64)
    assert R.rel_error(np.array([0.0]), np.array([1e-13]), floor=1e-20) == 1.0
    assert R.rel_error(np.zeros(0), np.zeros(0)) == 0.0


def test_rel_error_refuses_arrays_of_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        R.rel_error(np.zeros(3), np.zeros((3, 1)))


@settings(max_examples=50, deadline=None)
@given(
    pair=st.integers(1, 10).flatmap(
        lambda n: st.tuples(*[hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6, allow_nan=False))] * 2)
    )
)
def test_rel_error_is_symmetric_bounded_and_invariant_to_scaling_by_powers_of_2(pair):
    a, b = pair
    e = R.rel_error(a, b)
    assert e == R.rel_error(b, a)
    assert 0.0 <= e <= 1.0
    # Scaling by 2^10 is exact; keep away from the floor so the denominators scale too.
    if np.all(np.abs(a) + np.abs(b) > 1e-6):
        assert R.rel_error(1024.0 * a, 1024.0 * b) == e


# ----------------------------------------------------------------------------- mlp_numerical_gradient


@pytest.mark.parametrize(("depth", "activation", "reduction", "reg"), MATRIX)
def test_mlp_numerical_gradient_agrees_with_loss_and_grads(depth, activation, reduction, reg):
    X, y, params, spec = make_smooth_problem(SIZES_BY_DEPTH[depth], activation, reduction=reduction, reg=reg, n=6)
    _, grads = R.loss_and_grads(X, y, params, spec)
    numeric = R.mlp_numerical_gradient(X, y, params, spec, h=H)
    assert isinstance(numeric, R.Params) and list(numeric) == list(params)
    assert_grads_close(numeric, grads, FD_RTOL, FD_ATOL, what=f"{spec}")


@pytest.mark.parametrize(("depth", "activation", "reduction", "reg"), MATRIX)
def test_mlp_numerical_gradient_agrees_with_the_generic_numerical_gradient(depth, activation, reduction, reg):
    X, y, params, spec = make_smooth_problem(SIZES_BY_DEPTH[depth], activation, reduction=reduction, reg=reg, n=6)
    compiled = R.mlp_numerical_gradient(X, y, params, spec, h=H)
    generic = R.numerical_gradient(reference_loss_of_flat(X, y, spec), params.copy().flat, h=H)
    # Both are the same central-difference quotient with the same h, so they differ only by the
    # generic one's rounding, eps * |f| / h ~ 2e-11 * |f| (observed <= 2e-10).
    np.testing.assert_allclose(compiled.flat, generic, rtol=0, atol=2e-9)


def test_mlp_numerical_gradient_is_a_central_difference_with_step_h():
    # With a large step both estimators carry the same O(h^2) truncation error, far above rounding:
    # they agree with each other to rounding (eps * |f| / h ~ 1e-14) and both miss backprop by ~h^2.
    X, y, params, spec = make_smooth_problem((4, 5, 4, 3), "sigmoid", n=6)
    _, grads = R.loss_and_grads(X, y, params, spec)
    big_h = 0.05
    compiled = R.mlp_numerical_gradient(X, y, params, spec, h=big_h).flat
    generic = R.numerical_gradient(reference_loss_of_flat(X, y, spec), params.copy().flat, h=big_h)
    np.testing.assert_allclose(compiled, generic, rtol=0, atol=1e-12)
    assert 1e-7 < np.max(np.abs(compiled - grads.flat)) < 1e-2


@pytest.mark.parametrize(("depth", "activation"), list(itertools.product(SIZES_BY_DEPTH, R.ACTIVATIONS)))
def test_mlp_numerical_gradient_agrees_with_the_classic_loop_over_the_numpy_oracle(depth, activation):
    # Fully independent check: the cs231n-style loop differencing the NumPy oracle's loss.
    X, y, params, spec = make_smooth_problem(SIZES_BY_DEPTH[depth], activation, reduction="sum", reg=0.2, n=5)
    oracle_params = as_dict(params)
    numeric = {}
    for name, value in oracle_params.items():
        numeric[name] = numpy_mlp.eval_numerical_gradient(
            lambda _: numpy_mlp.loss(X, y, oracle_params, activation, "sum", 0.2), value, h=H
        )
    # Same quotient on two independent implementations of the loss: their rounding, eps * |f| / h.
    assert_grads_close(R.mlp_numerical_gradient(X, y, params, spec, h=H), numeric, rtol=0, atol=2e-9, what="loop")


def test_mlp_numerical_gradient_at_indices_is_the_full_gradient_at_those_indices():
    X, y, params, spec = make_smooth_problem((4, 5, 4, 3), "relu", reg=0.3, n=6)
    full = R.mlp_numerical_gradient(X, y, params, spec, h=H)
    indices = R.sample_indices(spec.size, 15, seed=4)
    at = R.mlp_numerical_gradient(X, y, params, spec, h=H, indices=indices)
    assert isinstance(at, np.ndarray) and at.shape == (15,)
    # Each coordinate is computed independently by the same code: bit for bit.
    np.testing.assert_array_equal(at, full.flat[indices])
    for flat_index, value in zip(indices, at, strict=True):
        name, index = spec.locate(int(flat_index))
        assert full[name][index] == value


OUT_OF_RANGE_CHILD = textwrap.dedent(
    """
    import numpy as np
    import reference as R

    spec = R.MLPSpec((4, 5, 3), "tanh", reg=0.5)
    params = R.init_params(spec, 0, bias_scale=0.3)
    X, y = np.random.default_rng(0).standard_normal((6, 4)), np.arange(6) % 3
    accepted = []
    for index in (-1, spec.size, 10**6):
        print("trying", index, flush=True)
        try:
            value = R.mlp_numerical_gradient(X, y, params, spec, indices=np.array([index]))
        except (IndexError, ValueError):
            continue
        accepted.append((index, float(value[0])))
    print("accepted", accepted)
    raise SystemExit(1 if accepted else 0)
    """
)


def test_mlp_numerical_gradient_rejects_out_of_range_indices_without_crashing():
    # In a child process: out-of-bounds memory access can crash the interpreter today.
    proc = subprocess.run([sys.executable, "-c", OUT_OF_RANGE_CHILD], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout}{proc.stderr[-2000:]}"


def test_mlp_numerical_gradient_of_float32_parameters_is_computed_in_float64():
    X, y, params, spec = make_smooth_problem((4, 5, 3), "tanh", n=6)
    X32, params32 = X.astype(np.float32), R.Params(params.flat.astype(np.float32), spec)
    numeric = R.mlp_numerical_gradient(X32, y, params32, spec, h=H)
    assert numeric.flat.dtype == np.float64
    # The float32 numbers, read exactly into float64: the float64 answer for the same inputs.
    _, grads = R.loss_and_grads(X32.astype(np.float64), y, R.Params(params32.flat.astype(np.float64), spec), spec)
    assert_grads_close(numeric, grads, FD_RTOL, FD_ATOL, what="float32 inputs")


def test_mlp_numerical_gradient_accepts_a_plain_dict_and_leaves_it_unchanged():
    X, y, params, spec = make_smooth_problem((4, 5, 3), "sigmoid", reg=0.1, n=6)
    plain = as_dict(params)
    numeric = R.mlp_numerical_gradient(X, y, plain, spec, h=H)
    np.testing.assert_array_equal(numeric.flat, R.mlp_numerical_gradient(X, y, params, spec, h=H).flat)
    for name in plain:
        np.testing.assert_array_equal(plain[name], params[name])


def test_smooth_relu_problems_really_avoid_the_kink():
    # The guard behind every relu finite-difference test above.
    for depth in (2, 3):
        X, _, params, _ = make_smooth_problem(SIZES_BY_DEPTH[depth], "relu", n=6)
        assert hidden_kink_distance(X, params, "relu") > 100 * H
