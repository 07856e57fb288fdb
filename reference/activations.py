"""Numerically stable activations and their derivatives, compiled with Numba.

Elementwise functions are Numba ufuncs (``@vectorize``, cached on disk): they take
any shape, keep float32 as float32 and float64 as float64, and evaluate in float64
internally so that a float32 result is the correctly rounded float64 value.
Softmax and log-softmax reduce along the last axis of 1-D or 2-D (or higher) arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, vectorize

_FLOAT_SIGNATURES = ["float32(float32)", "float64(float64)"]


@vectorize(_FLOAT_SIGNATURES, cache=True)
def sigmoid(x):  # type: ignore[no-untyped-def]
    """Logistic function 1 / (1 + exp(-x)); never evaluates exp of a positive number."""
    v = np.float64(x)
    if v >= 0.0:
        return 1.0 / (1.0 + np.exp(-v))
    e = np.exp(v)
    return e / (1.0 + e)


@vectorize(_FLOAT_SIGNATURES, cache=True)
def sigmoid_grad(s):  # type: ignore[no-untyped-def]
    """Derivative of the sigmoid written in its output s = sigmoid(x): s * (1 - s)."""
    v = np.float64(s)
    return v * (1.0 - v)


@vectorize(_FLOAT_SIGNATURES, cache=True)
def relu(x):  # type: ignore[no-untyped-def]
    """max(x, 0)."""
    return x if x > 0 else x * 0


@vectorize(_FLOAT_SIGNATURES, cache=True)
def relu_grad(x):  # type: ignore[no-untyped-def]
    """Derivative of relu at x (or at relu(x): the masks agree): 1 where x > 0, else 0."""
    return 1.0 if x > 0 else 0.0


@vectorize(_FLOAT_SIGNATURES, cache=True)
def tanh(x):  # type: ignore[no-untyped-def]
    """Hyperbolic tangent."""
    return np.tanh(np.float64(x))


@vectorize(_FLOAT_SIGNATURES, cache=True)
def tanh_grad(t):  # type: ignore[no-untyped-def]
    """Derivative of tanh written in its output t = tanh(x): 1 - t**2."""
    v = np.float64(t)
    return 1.0 - v * v


@njit(cache=True)
def _as_rows(x):  # type: ignore[no-untyped-def]
    """View x as a C-contiguous 2-D array whose rows are the vectors along the last axis."""
    return np.ascontiguousarray(x).reshape((-1, x.shape[-1]))


@njit(cache=True)
def _row_max_and_logsumexp(row):  # type: ignore[no-untyped-def]
    """(max, log(sum(exp(row)))) of one row, computed in float64 after shifting by the max."""
    m = np.float64(row[0])
    for j in range(1, row.shape[0]):
        if row[j] > m:
            m = np.float64(row[j])
    total = 0.0
    for j in range(row.shape[0]):
        total += np.exp(np.float64(row[j]) - m)
    return m, m + np.log(total)


@njit(cache=True)
def softmax(x):  # type: ignore[no-untyped-def]
    """Probabilities along the last axis; subtracts the row max, so logits of |1e4| are safe."""
    rows = _as_rows(x)
    out = np.empty_like(rows)
    for i in range(rows.shape[0]):
        _, lse = _row_max_and_logsumexp(rows[i])
        for j in range(rows.shape[1]):
            out[i, j] = np.exp(np.float64(rows[i, j]) - lse)
    return out.reshape(x.shape)


@njit(cache=True)
def log_softmax(x):  # type: ignore[no-untyped-def]
    """log(softmax(x)) along the last axis without forming softmax (no log(0) for large gaps)."""
    rows = _as_rows(x)
    out = np.empty_like(rows)
    for i in range(rows.shape[0]):
        _, lse = _row_max_and_logsumexp(rows[i])
        for j in range(rows.shape[1]):
            out[i, j] = np.float64(rows[i, j]) - lse
    return out.reshape(x.shape)
