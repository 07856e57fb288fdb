"""Numerically stable activations and their derivatives, compiled with Numba.

Every function is ``@njit(cache=True)``. Elementwise functions take any shape, keep float32
as float32 and float64 as float64 (integers become float64), and evaluate in float64
internally so that a float32 result is the correctly rounded float64 value. Softmax and
log-softmax reduce along the last axis of 1-D or 2-D (or higher) arrays. (Plain njit
loops rather than @vectorize ufuncs: a cached ufunc still rebuilds its wrappers in every
new process, which cost more than half a second of start-up.)
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

# Scalar kernels: float64 in, float64 out. The array functions below apply them elementwise.


@njit(cache=True)
def sigmoid_scalar(v):  # type: ignore[no-untyped-def]
    """Logistic function 1 / (1 + exp(-v)); never evaluates exp of a positive number."""
    if v >= 0.0:
        return 1.0 / (1.0 + np.exp(-v))
    e = np.exp(v)
    return e / (1.0 + e)


@njit(cache=True)
def relu_scalar(v):  # type: ignore[no-untyped-def]
    """max(v, 0) (NaN stays NaN; never -0.0)."""
    if v > 0.0 or v != v:
        return v
    return 0.0


@njit(cache=True)
def relu_grad_scalar(v):  # type: ignore[no-untyped-def]
    """1 where v > 0, else 0 (the same mask whether v is the input x or the output relu(x))."""
    return 1.0 if v > 0.0 else 0.0


@njit(cache=True)
def sigmoid_grad_scalar(s):  # type: ignore[no-untyped-def]
    """s * (1 - s) for s = sigmoid(x)."""
    return s * (1.0 - s)


@njit(cache=True)
def tanh_grad_scalar(t):  # type: ignore[no-untyped-def]
    """1 - t**2 for t = tanh(x), as (1 - t) * (1 + t): within one ulp even where |t| is within 1e-16 of 1
    (1 - t*t cancels there: t*t is rounded before the subtraction)."""
    return (1.0 - t) * (1.0 + t)


def _float_copy(x):  # type: ignore[no-untyped-def]
    """A fresh C-contiguous float copy of x: float32 stays float32, anything else becomes float64."""
    raise NotImplementedError("only callable from compiled code")


@overload(_float_copy, jit_options={"cache": True})  # type: ignore[typeddict-unknown-key]
def _float_copy_impl(x):  # type: ignore[no-untyped-def]
    if isinstance(x, types.Array) and x.dtype == types.float32:
        return lambda x: np.asarray(x).copy()
    return lambda x: np.asarray(x).astype(np.float64)


_SIGMOID, _SIGMOID_GRAD, _RELU, _RELU_GRAD, _TANH, _TANH_GRAD = range(6)


@njit(cache=True)
def _scalar(op, v):  # type: ignore[no-untyped-def]
    """One elementwise function (by code) of one float64."""
    if op == _SIGMOID:
        return sigmoid_scalar(v)
    if op == _SIGMOID_GRAD:
        return sigmoid_grad_scalar(v)
    if op == _RELU:
        return relu_scalar(v)
    if op == _RELU_GRAD:
        return relu_grad_scalar(v)
    if op == _TANH:
        return np.tanh(v)
    return tanh_grad_scalar(v)


@njit(cache=True)
def _elementwise(x, op):  # type: ignore[no-untyped-def]
    """Apply an elementwise function to a float copy of x (any shape, float32 kept)."""
    out = _float_copy(x)
    flat = out.reshape(-1)
    for i in range(flat.size):
        flat[i] = _scalar(op, np.float64(flat[i]))
    return out


@njit(cache=True)
def sigmoid(x):  # type: ignore[no-untyped-def]
    """Elementwise logistic function, any shape; stable for |x| up to 1e4 and beyond."""
    return _elementwise(x, _SIGMOID)


@njit(cache=True)
def sigmoid_grad(s):  # type: ignore[no-untyped-def]
    """Derivative of the sigmoid, taking its OUTPUT s = sigmoid(x) (not x): s * (1 - s), elementwise.

    Unlike relu_grad, which takes the input x: pass sigmoid(x), never x itself.
    """
    return _elementwise(s, _SIGMOID_GRAD)


@njit(cache=True)
def relu(x):  # type: ignore[no-untyped-def]
    """Elementwise max(x, 0)."""
    return _elementwise(x, _RELU)


@njit(cache=True)
def relu_grad(x):  # type: ignore[no-untyped-def]
    """Derivative of relu, taking its INPUT x: 1 where x > 0, else 0, elementwise.

    Unlike sigmoid_grad and tanh_grad, which take the activation's output; relu(x) works here
    too, since relu(x) > 0 exactly where x > 0.
    """
    return _elementwise(x, _RELU_GRAD)


@njit(cache=True)
def tanh(x):  # type: ignore[no-untyped-def]
    """Elementwise hyperbolic tangent."""
    return _elementwise(x, _TANH)


@njit(cache=True)
def tanh_grad(t):  # type: ignore[no-untyped-def]
    """Derivative of tanh, taking its OUTPUT t = tanh(x) (not x): 1 - t**2, elementwise, to one ulp.

    Unlike relu_grad, which takes the input x: pass tanh(x), never x itself.
    """
    return _elementwise(t, _TANH_GRAD)


@njit(cache=True)
def _as_rows(x):  # type: ignore[no-untyped-def]
    """x as a float C-contiguous 2-D copy whose rows are the vectors along the last axis."""
    return _float_copy(x).reshape((-1, x.shape[-1]))


@njit(cache=True)
def _row_max_and_log_sum(row):  # type: ignore[no-untyped-def]
    """(m, log(sum(exp(row - m)))) with m the row max, in float64: log-sum-exp is m + the second."""
    m = np.float64(row[0])
    for j in range(1, row.shape[0]):
        if row[j] > m:
            m = np.float64(row[j])
    total = 0.0
    for j in range(row.shape[0]):
        total += np.exp(np.float64(row[j]) - m)
    return m, np.log(total)


@njit(cache=True)
def softmax(x):  # type: ignore[no-untyped-def]
    """Probabilities along the last axis; subtracts the row max, so logits of |1e4| are safe."""
    rows = _as_rows(x)
    for i in range(rows.shape[0]):
        m, log_sum = _row_max_and_log_sum(rows[i])
        for j in range(rows.shape[1]):
            rows[i, j] = np.exp((np.float64(rows[i, j]) - m) - log_sum)
    return rows.reshape(x.shape)


@njit(cache=True)
def log_softmax(x):  # type: ignore[no-untyped-def]
    """log(softmax(x)) along the last axis without forming softmax (no log(0) for large gaps)."""
    rows = _as_rows(x)
    for i in range(rows.shape[0]):
        m, log_sum = _row_max_and_log_sum(rows[i])
        for j in range(rows.shape[1]):
            rows[i, j] = (np.float64(rows[i, j]) - m) - log_sum
    return rows.reshape(x.shape)
