"""An independent, plain NumPy MLP used as an oracle for the Numba reference.

Written the textbook way (the cs231n two-layer-net assignment, generalised to any depth):
parameters are a dict {"W1": (D, H1), "b1": (H1,), ..., "WL": (H_{L-1}, C), "bL": (C,)},
the forward pass keeps a dict cache, the backward pass walks the layers in reverse and
returns a dict of gradients. Nothing here imports ``reference``; formulas are chosen to be
different from the reference's where a textbook alternative exists (sigmoid through
``logaddexp``, cross-entropy through fancy indexing of log-probabilities).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# ----------------------------------------------------------------------------- activations


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax along the last axis, shifted by the row max for stability."""
    shifted = scores - np.max(scores, axis=-1, keepdims=True)
    exp_scores = np.exp(shifted)
    return exp_scores / np.sum(exp_scores, axis=-1, keepdims=True)


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """log(softmax(scores)) = scores - logsumexp(scores), along the last axis."""
    shifted = scores - np.max(scores, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) written as exp(-softplus(-x)); logaddexp never overflows."""
    return np.exp(-np.logaddexp(0.0, -x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, x)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"relu": relu, "sigmoid": sigmoid, "tanh": tanh}


def activation_backward(dout: np.ndarray, u: np.ndarray, a: np.ndarray, activation: str) -> np.ndarray:
    """Upstream gradient dL/da of a hidden layer -> dL/du, given u and a = act(u)."""
    if activation == "relu":
        return dout * (u > 0)
    if activation == "sigmoid":
        return dout * a * (1.0 - a)
    if activation == "tanh":
        return dout * (1.0 - a**2)
    raise ValueError(f"unknown activation {activation!r}")


# ----------------------------------------------------------------------------- loss


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray, reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Cross-entropy of class scores (N, C) and labels (N,), and its gradient w.r.t. the scores."""
    num_train = scores.shape[0]
    rows = np.arange(num_train)
    log_probs = log_softmax(scores)
    loss = -np.sum(log_probs[rows, y])
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1.0
    if reduction == "mean":
        loss /= num_train
        dscores /= num_train
    elif reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}")
    return float(loss), dscores


# ----------------------------------------------------------------------------- network


def num_layers(params: dict[str, np.ndarray]) -> int:
    """Number of weight layers L in a {"W1", "b1", ..., "WL", "bL"} dict."""
    return sum(1 for name in params if name.startswith("W"))


def forward(X: np.ndarray, params: dict[str, np.ndarray], activation: str = "relu") -> tuple[np.ndarray, dict]:
    """Class scores and the cache {"a0": X, "u1": ..., "a1": ..., ..., "uL": scores}."""
    act = ACTIVATIONS[activation]
    L = num_layers(params)
    cache: dict[str, np.ndarray] = {"a0": X}
    a = X
    for layer in range(1, L + 1):
        u = a.dot(params[f"W{layer}"]) + params[f"b{layer}"]
        cache[f"u{layer}"] = u
        if layer < L:
            a = act(u)
            cache[f"a{layer}"] = a
    return cache[f"u{L}"], cache


def l2_penalty(params: dict[str, np.ndarray], reg: float) -> float:
    """0.5 * reg * sum of squared weights; biases are not regularized."""
    return 0.5 * reg * sum(float(np.sum(W * W)) for name, W in params.items() if name.startswith("W"))


def loss(
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, np.ndarray],
    activation: str = "relu",
    reduction: str = "mean",
    reg: float = 0.0,
) -> float:
    """Data loss + L2 penalty, no backward pass."""
    scores, _ = forward(X, params, activation)
    data_loss, _ = softmax_cross_entropy(scores, y, reduction)
    return data_loss + l2_penalty(params, reg)


def loss_and_grads(
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, np.ndarray],
    activation: str = "relu",
    reduction: str = "mean",
    reg: float = 0.0,
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and the gradient of every parameter, by backpropagation through the cache."""
    scores, cache = forward(X, params, activation)
    data_loss, dscores = softmax_cross_entropy(scores, y, reduction)
    L = num_layers(params)
    grads: dict[str, np.ndarray] = {}
    dout = dscores
    for layer in range(L, 0, -1):
        W = params[f"W{layer}"]
        a_prev = cache[f"a{layer - 1}"]
        grads[f"W{layer}"] = a_prev.T.dot(dout) + reg * W
        grads[f"b{layer}"] = np.sum(dout, axis=0)
        if layer > 1:
            da_prev = dout.dot(W.T)
            dout = activation_backward(da_prev, cache[f"u{layer - 1}"], a_prev, activation)
    return data_loss + l2_penalty(params, reg), grads


def init_params(sizes: tuple[int, ...], seed: int, weight_scale: float = 1.0, bias_scale: float = 0.5) -> dict:
    """Gaussian parameters for layer sizes (D, H1, ..., C): W ~ N(0, weight_scale^2 / fan_in)."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer in range(1, len(sizes)):
        fan_in, fan_out = sizes[layer - 1], sizes[layer]
        params[f"W{layer}"] = rng.standard_normal((fan_in, fan_out)) * weight_scale / np.sqrt(fan_in)
        params[f"b{layer}"] = rng.standard_normal(fan_out) * bias_scale
    return params


# ----------------------------------------------------------------------------- finite differences


def eval_numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """The classic loop: central difference at every index of x (perturbed in place, then restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old_value = x[ix]
        x[ix] = old_value + h
        fxph = f(x)
        x[ix] = old_value - h
        fxmh = f(x)
        x[ix] = old_value
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad
