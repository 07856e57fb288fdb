"""Softmax cross-entropy of logits and integer labels, with its gradient w.r.t. the logits."""

from __future__ import annotations

import numpy as np
from numba import njit

from reference.activations import _float_copy

REDUCTIONS = ("mean", "sum")


@njit(cache=True)
def reduction_scale(reduction, n):  # type: ignore[no-untyped-def]
    """Factor that turns a sum over the batch into the reduction with code `reduction` (index in REDUCTIONS)."""
    if reduction == 0:
        return 1.0 / n
    if reduction == 1:
        return 1.0
    raise ValueError("reduction code must be 0 (mean) or 1 (sum)")


@njit(cache=True)
def _cross_entropy(z, y, scale):  # type: ignore[no-untyped-def]
    """(scale * sum_i -log softmax(z)[i, y_i], scale * (softmax(z) - onehot(y))); see softmax_cross_entropy."""
    n, c = z.shape
    if y.shape[0] != n:
        raise ValueError("y must have one label per row of z")
    dz = np.empty_like(z)  # float: see softmax_cross_entropy
    loss = 0.0
    for i in range(n):
        label = y[i]
        if label < 0 or label >= c:
            raise ValueError("labels must lie in [0, C)")
        m = np.float64(z[i, 0])
        for j in range(1, c):
            m = max(m, np.float64(z[i, j]))
        total = 0.0
        for j in range(c):
            e = np.exp(np.float64(z[i, j]) - m)
            dz[i, j] = e
            total += e
        loss += (m - np.float64(z[i, label])) + np.log(total)  # exact for ties at large logits
        for j in range(c):
            p = np.float64(dz[i, j]) / total
            if j == label:
                p -= 1.0
            dz[i, j] = p * scale
    return loss * scale, dz


@njit(cache=True)
def softmax_cross_entropy(z, y, reduction="mean"):  # type: ignore[no-untyped-def]
    """Loss -log softmax(z)[i, y_i] reduced over the batch ("mean" or "sum"), and dL/dz.

    z is (N, C) logits, y is (N,) integer labels in [0, C). Returns (loss as float64,
    dz = (softmax(z) - onehot(y)) / N for "mean", without the 1/N for "sum", in z's dtype).
    Computed from log-sum-exp, so logits of |1e4| neither overflow nor give log(0).
    """
    logits = _float_copy(z)
    if reduction == "mean":
        return _cross_entropy(logits, y, 1.0 / z.shape[0])
    if reduction == "sum":
        return _cross_entropy(logits, y, 1.0)
    raise ValueError("reduction must be 'mean' or 'sum'")
