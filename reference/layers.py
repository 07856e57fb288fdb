"""Modular layers and computational-graph gates in plain NumPy: forward values and backward gradients, and the
gradients common mistakes compute instead (used only to name a student's mistake).

A layer's backward takes the upstream gradient `dout` and the layer's inputs (what a correct cache holds); a
gate's function takes its inputs and the upstream gradient and returns its output and each input's gradient.
Ties of the max gate route the whole gradient to the first input (``x >= y``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Grads = tuple[np.ndarray, ...]


def _flat(x: np.ndarray) -> np.ndarray:
    """x of shape (N, d1, ..., dk) as (N, D), as the affine layer reads it."""
    return x.reshape(x.shape[0], -1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """A logistic sigmoid that never overflows (exp of a non-positive number only)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# --------------------------------------------------------------------------- layers


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out = x.reshape(N, D) @ w + b."""
    return _flat(x) @ w + b


def affine_backward(dout: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Grads:
    """(dx shaped like x, dw, db) of sum(affine_forward(x, w, b) * dout)."""
    return (dout @ w.T).reshape(x.shape), _flat(x).T @ dout, dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """max(0, x) elementwise."""
    return np.maximum(0.0, x)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> Grads:
    """(dx,): the upstream gradient where the input was positive."""
    return (dout * (x > 0),)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) elementwise."""
    return _sigmoid(x)


def sigmoid_backward(dout: np.ndarray, x: np.ndarray) -> Grads:
    """(dx,) = dout * s * (1 - s) with s = sigmoid(x), the derivative taken at the input."""
    s = _sigmoid(x)
    return (dout * s * (1.0 - s),)


def _or_nan(compute: Callable[[], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """A mistake's result, or NaN (which matches nothing) where the mistake cannot even be computed."""
    try:
        return compute()
    except ValueError:
        return np.full(shape, np.nan)


# Each backward mistake, as a function of (dout, the inputs, the forward's output) -> the gradients it computes.
LayerBug = Callable[..., Grads]
LAYER_BUGS: dict[str, dict[str, LayerBug]] = {
    "affine": {
        "cache_holds_output": lambda dout, x, w, b, out: (  # the cache kept out where x belongs
            (dout @ w.T).reshape(x.shape),
            out.T @ dout,
            dout.sum(axis=0),
        ),
        "missing_transpose": lambda dout, x, w, b, out: (
            _or_nan(lambda: (dout @ w).reshape(x.shape), x.shape),  # dout @ w exists only for a square w
            dout.T @ _flat(x),
            dout.sum(axis=0),
        ),
        "db_not_summed": lambda dout, x, w, b, out: ((dout @ w.T).reshape(x.shape), _flat(x).T @ dout, dout),
        "db_averaged": lambda dout, x, w, b, out: (
            (dout @ w.T).reshape(x.shape),
            _flat(x).T @ dout,
            dout.mean(axis=0),
        ),
        "dx_not_reshaped": lambda dout, x, w, b, out: (dout @ w.T, _flat(x).T @ dout, dout.sum(axis=0)),
    },
    "relu": {
        "mask_from_dout": lambda dout, x, out: (dout * (dout > 0),),
        "no_mask": lambda dout, x, out: (dout,),
        "mask_without_dout": lambda dout, x, out: ((x > 0) * 1.0,),
    },
    "sigmoid": {
        "derivative_at_output": lambda dout, x, out: (dout * _sigmoid(out) * (1.0 - _sigmoid(out)),),
        "formula_on_input": lambda dout, x, out: (dout * x * (1.0 - x),),
        "missing_one_minus": lambda dout, x, out: (dout * out,),
        "sigmoid_without_dout": lambda dout, x, out: (out * (1.0 - out),),
    },
}


# --------------------------------------------------------------------------- gates


def add_gate(x: np.ndarray, y: np.ndarray, dout: np.ndarray) -> Grads:
    """(x + y, dx, dy): an add gate passes the upstream gradient to both inputs."""
    return x + y, dout * np.ones_like(x), dout * np.ones_like(y)


def multiply_gate(x: np.ndarray, y: np.ndarray, dout: np.ndarray) -> Grads:
    """(x * y, dx, dy): each input's gradient is the upstream gradient times the other input."""
    return x * y, dout * y, dout * x


def max_gate(x: np.ndarray, y: np.ndarray, dout: np.ndarray) -> Grads:
    """(max(x, y), dx, dy): the larger input gets the whole upstream gradient, the first one on a tie."""
    first = np.asarray(x) >= np.asarray(y)
    return np.maximum(x, y), dout * first, dout * ~first


def max_gate_split(x: np.ndarray, y: np.ndarray, dout: np.ndarray) -> Grads:
    """max_gate, but a tie splits the upstream gradient evenly (the other convention an assignment may accept)."""
    tie = 0.5 * (np.asarray(x) == np.asarray(y))
    return np.maximum(x, y), dout * ((np.asarray(x) > y) + tie), dout * ((np.asarray(y) > x) + tie)


def copy_gate(x: np.ndarray, dout1: np.ndarray, dout2: np.ndarray) -> Grads:
    """(x, x, dx): a fan-out copies its input and sums the upstream gradients of its copies."""
    return x, x, dout1 + dout2


def sigmoid_dot(w: np.ndarray, x: np.ndarray) -> Grads:
    """(f, df/dw, df/dx) of f = sigmoid(w . x), the lecture's small neuron (upstream gradient 1)."""
    s = float(_sigmoid(np.dot(w, x)))
    return np.asarray(s), s * (1.0 - s) * x, s * (1.0 - s) * w


GateBug = Callable[..., Grads]
GATE_BUGS: dict[str, dict[str, GateBug]] = {
    "add_gate": {
        "gate_without_dout": lambda x, y, dout: (x + y, np.ones_like(x), np.ones_like(y)),
        "add_scaled_by_inputs": lambda x, y, dout: (x + y, dout * y, dout * x),
    },
    "multiply_gate": {
        "multiply_own_input": lambda x, y, dout: (x * y, dout * x, dout * y),
        "gate_without_dout": lambda x, y, dout: (x * y, y, x),
        "multiply_passes_through": lambda x, y, dout: (x * y, dout, dout),
    },
    "max_gate": {
        "max_to_smaller": lambda x, y, dout: (np.maximum(x, y), dout * (x < y), dout * (x >= y)),
        "max_to_both": lambda x, y, dout: (np.maximum(x, y), dout, dout),
        "max_tie_to_both": lambda x, y, dout: (np.maximum(x, y), dout * (x >= y), dout * (y >= x)),
    },
    "copy_gate": {
        "fanout_first_only": lambda x, d1, d2: (x, x, d1),
        "fanout_averaged": lambda x, d1, d2: (x, x, (d1 + d2) / 2.0),
        "fanout_multiplied": lambda x, d1, d2: (x, x, d1 * d2),
    },
    "sigmoid_dot": {
        "missing_one_minus": lambda w, x: (*sigmoid_dot(w, x)[:1], sigmoid_dot(w, x)[0] * x, sigmoid_dot(w, x)[0] * w),
        "swapped_inputs": lambda w, x: (sigmoid_dot(w, x)[0], *sigmoid_dot(w, x)[:0:-1]),
        "missing_local_derivative": lambda w, x: (sigmoid_dot(w, x)[0], x, w),
    },
}
