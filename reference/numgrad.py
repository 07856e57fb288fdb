"""Central finite differences: of any scalar function (full, sampled, directional) and, compiled
end to end, of the reference MLP loss.

Central differences (f(x+h) - f(x-h)) / 2h are O(h^2) accurate; one-sided ones only O(h).
The MLP engine exploits the structure of the network: perturbing W_l[i, j] or b_l[j] moves one
column of u_l, so it updates only what that column touches and sums per-row loss changes
(log1p/expm1 forms) instead of differencing two large totals. It costs O(N*C) per
coordinate of a two-layer net instead of a forward pass, and is more accurate, not less.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from reference.activations import softmax
from reference.losses import check_labels, reduction_scale
from reference.mlp import (
    MLPSpec,
    Params,
    _affine_into,
    _apply_activation,
    _block,
    _forward,
    _layer,
    _layer_offset,
    _prepare,
)

ScalarFunction = Callable[[np.ndarray], float]


def _perturbed(f: ScalarFunction, x: np.ndarray, flat_index: int, h: float) -> float:
    """(f(x + h e_i) - f(x - h e_i)) / (x_+ - x_-); x is restored bit for bit afterwards, even if f raises.

    Dividing by the step actually stored (not 2h) keeps float32 x exact to first order.
    """
    flat = x.reshape(-1)
    old = flat[flat_index]
    try:
        flat[flat_index] = old + h
        upper = float(flat[flat_index])
        plus = float(f(x))
        flat[flat_index] = old - h
        lower = float(flat[flat_index])
        minus = float(f(x))
    finally:
        flat[flat_index] = old
    return (plus - minus) / (upper - lower)


def _check_writable(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point ndarray, got {type(x).__name__}")
    if not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("x must be a writeable C-contiguous array (it is perturbed in place and restored)")
    return x


def numerical_gradient(f: ScalarFunction, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of f at x, every coordinate; x is unchanged on return."""
    _check_writable(x)
    grad = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        grad[i] = _perturbed(f, x, i, h)
    return grad.reshape(x.shape)


def sampled_numerical_gradient(
    f: ScalarFunction, x: np.ndarray, count: int, seed: int, h: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences at `count` coordinates drawn without replacement (seeded).

    Returns (flat indices, derivatives); compare with analytic.ravel()[indices].
    """
    _check_writable(x)
    indices = sample_indices(x.size, count, seed)
    return indices, np.array([_perturbed(f, x, int(i), h) for i in indices], dtype=np.float64)


def sample_indices(size: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct flat indices out of `size` (all of them, sorted, when count >= size)."""
    if count >= size:
        return np.arange(size, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(size, size=count, replace=False)).astype(np.int64)


def rel_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-12) -> float:
    """max_i |a_i - b_i| / max(floor, |a_i| + |b_i|): 0 for equal arrays, near 1 for unrelated ones."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))))


@njit(cache=True)
def _row_loss_change(p_row, label, delta):  # type: ignore[no-untyped-def]
    """Change of -log softmax(z)[label] when the logits z (softmax p_row) move by delta."""
    acc = 0.0
    for c in range(p_row.shape[0]):
        if delta[c] != 0.0:
            acc += p_row[c] * np.expm1(delta[c])
    return np.log1p(acc) - delta[label]


@njit(cache=True)
def _hidden_activation_change(u_col, a_col, shift, activation, out):  # type: ignore[no-untyped-def]
    """out = act(u_col + shift) - a_col for one hidden column; shift is a vector of per-row shifts."""
    for r in range(u_col.shape[0]):
        out[r] = u_col[r] + shift[r]
    _apply_activation(out.reshape((1, out.shape[0])), activation)
    for r in range(u_col.shape[0]):
        out[r] -= a_col[r]


@njit(cache=True)
def _loss_change(x, y, theta, sizes, activation, pre, post, probs, layer, i, j, step):  # type: ignore[no-untyped-def]
    """Data-loss change (unscaled sum over rows) when u_layer[:, j] moves by step * a_{layer-1}[:, i] (i<0: bias)."""
    n = x.shape[0]
    depth = sizes.shape[0] - 1
    shift = np.full(n, step)
    if i >= 0:
        source = x if layer == 0 else _block(post, n, sizes, layer - 1)
        for r in range(n):
            shift[r] *= source[r, i]
    c = sizes[depth]
    delta = np.zeros(c)
    total = 0.0
    if layer == depth - 1:
        for r in range(n):
            if shift[r] != 0.0:
                delta[j] = shift[r]
                total += _row_loss_change(probs[r], y[r], delta)
        return total
    change = np.empty(n)
    _hidden_activation_change(
        _block(pre, n, sizes, layer)[:, j].copy(), _block(post, n, sizes, layer)[:, j].copy(), shift, activation, change
    )
    w_next, _ = _layer(theta, sizes, layer + 1)
    if layer + 1 == depth - 1:
        for r in range(n):
            if change[r] != 0.0:
                for k in range(c):
                    delta[k] = change[r] * w_next[j, k]
                total += _row_loss_change(probs[r], y[r], delta)
        return total
    # Deeper network: move the next pre-activation, then run the remaining layers in full.
    u = _block(pre, n, sizes, layer + 1).copy()
    for r in range(n):
        for k in range(u.shape[1]):
            u[r, k] += change[r] * w_next[j, k]
    a = u
    for nxt in range(layer + 1, depth - 1):
        _apply_activation(a, activation)
        w, b = _layer(theta, sizes, nxt + 1)
        out = np.empty((n, sizes[nxt + 2]))
        _affine_into(a, w, b, out)
        a = out
    logits = _block(pre, n, sizes, depth - 1)
    for r in range(n):
        for k in range(c):
            delta[k] = a[r, k] - logits[r, k]
        total += _row_loss_change(probs[r], y[r], delta)
    return total


@njit(cache=True)
def _mlp_numgrad(x, y, theta, sizes, activation, reduction, reg, h, indices):  # type: ignore[no-untyped-def]
    """Central differences of the MLP loss at the given flat indices (float64 throughout)."""
    n = x.shape[0]
    depth = sizes.shape[0] - 1
    scale = reduction_scale(reduction, n)
    post, pre = _forward(x, theta, sizes, activation, True)
    probs = softmax(_block(pre, n, sizes, depth - 1))
    out = np.empty(indices.shape[0])
    for k in range(indices.shape[0]):
        p = indices[k]
        layer = 0
        while layer + 1 < depth and p >= _layer_offset(sizes, layer + 1):
            layer += 1
        local = p - _layer_offset(sizes, layer)
        dout = sizes[layer + 1]
        weights = sizes[layer] * dout
        if local < weights:
            i, j = local // dout, local % dout
            w = theta[p]
            penalty = 0.5 * reg * ((w + h) * (w + h) - (w - h) * (w - h))
        else:
            i, j = -1, local - weights
            penalty = 0.0
        plus = _loss_change(x, y, theta, sizes, activation, pre, post, probs, layer, i, j, h)
        minus = _loss_change(x, y, theta, sizes, activation, pre, post, probs, layer, i, j, -h)
        out[k] = ((plus - minus) * scale + penalty) / (2.0 * h)
    return out


def mlp_numerical_gradient(
    x: np.ndarray,
    y: ArrayLike,
    params: Mapping[str, np.ndarray],
    spec: MLPSpec,
    h: float = 1e-5,
    indices: np.ndarray | None = None,
) -> Params | np.ndarray:
    """Central-difference gradient of the reference MLP loss, compiled end to end (float64).

    With indices=None: every coordinate, returned as Params (named like the parameters).
    With flat indices: the derivatives at those coordinates only, as a 1-D array.
    """
    x64, p = _prepare(np.asarray(x, dtype=np.float64), params, spec)
    p64 = Params.coerce(p, spec, np.dtype(np.float64))
    wanted = np.arange(spec.size, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    if wanted.size and (wanted.min() < 0 or wanted.max() >= spec.size):
        raise IndexError(f"indices must lie in [0, {spec.size}) for {spec.size} parameters")
    labels = check_labels(y, x64.shape[0], spec.sizes[-1], spec.reduction, "X")
    values = _mlp_numgrad(x64, labels, p64.flat, *spec.kernel_args, float(h), wanted)
    return Params(values, spec) if indices is None else values
