"""Seeded problems (data, labels, parameters) for testing the reference MLP, and comparison helpers."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy_mlp

import reference as R

# Finite-difference step used throughout, and how far every hidden pre-activation of a relu
# net must stay from the kink at 0. Perturbing one parameter by H moves a pre-activation by
# about H * |input| * |downstream weights|, i.e. a few H for unit-scale data and weights; a
# margin of 100 * H leaves the difference quotient on one linear piece of relu.
H = 1e-5
KINK_MARGIN = 100 * H


def as_dict(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Independent copies of the named arrays (what a student or the NumPy oracle would hold)."""
    return {name: np.array(value) for name, value in params.items()}


def hidden_kink_distance(X: np.ndarray, params: Mapping[str, np.ndarray], activation: str) -> float:
    """Smallest |u| over all hidden pre-activations (inf for nets without hidden layers)."""
    _, cache = numpy_mlp.forward(X, as_dict(params), activation)
    hidden = [cache[f"u{layer}"] for layer in range(1, numpy_mlp.num_layers(params))]
    return min((float(np.min(np.abs(u))) for u in hidden), default=np.inf)


def make_problem(
    sizes: tuple[int, ...],
    activation: str = "relu",
    reduction: str = "mean",
    reg: float = 0.0,
    seed: int = 0,
    n: int = 4,
    dtype: type = np.float64,
    bias_scale: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, R.Params, R.MLPSpec]:
    """(X, y, params, spec): X ~ N(0, 1) of shape (n, D), labels uniform in [0, C), reference init."""
    spec = R.MLPSpec(sizes, activation, reduction, reg)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n).astype(np.int64)
    params = R.init_params(spec, seed + 1000, dtype=dtype, bias_scale=bias_scale)
    return X, y, params, spec


def make_smooth_problem(sizes: tuple[int, ...], activation: str, **kwargs) -> tuple:
    """make_problem with the first seed (from kwargs' seed on) whose relu pre-activations avoid the kink.

    For sigmoid and tanh every seed is smooth and the first one is returned. Deterministic.
    """
    start = kwargs.pop("seed", 0)
    for seed in range(start, start + 100):
        X, y, params, spec = make_problem(sizes, activation, seed=seed, **kwargs)
        if activation != "relu" or hidden_kink_distance(X, params, activation) > KINK_MARGIN:
            return X, y, params, spec
    raise AssertionError(f"no seed in [{start}, {start + 100}) keeps {sizes} away from relu kinks")


def assert_grads_close(
    actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], rtol: float, atol: float, what: str = ""
) -> None:
    """Same parameter names and shapes, and every array close (the message names the parameter)."""
    assert sorted(actual) == sorted(expected), f"{what}: parameter names differ"
    for name in expected:
        a, e = np.asarray(actual[name]), np.asarray(expected[name])
        assert a.shape == e.shape, f"{what}: {name} has shape {a.shape}, expected {e.shape}"
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"{what}: gradient of {name}")
