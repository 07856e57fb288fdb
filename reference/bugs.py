"""Quantities as common buggy implementations compute them, used only to diagnose submissions.

Each function mirrors the correct computation with named mistakes switched on, so a
diagnosis can ask "which mistake, or pair of mistakes, reproduces what the student
returned?". Plain NumPy on purpose: this is not a hot path, and each bug reads like the
student code it imitates. Reuses the reference kernels for everything the bug does not touch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from reference.activations import log_softmax, relu, sigmoid, sigmoid_grad, softmax, tanh, tanh_grad

SOFTMAX_BUGS = ("softmax_wrong_axis", "softmax_no_max_shift")
SIGMOID_GRAD_BUGS = ("sigmoid_applied_twice", "tanh_derivative")
CROSS_ENTROPY_BUGS = (
    "missing_1_over_n",
    "extra_1_over_n",
    "loss_summed",
    "loss_averaged",
    "dz_sign_flipped",
    "onehot_not_subtracted",
)
FORWARD_BUGS = ("b1_missing", "b2_missing", "activation_missing", "returns_probabilities")
LOSS_BUGS = (
    "loss_summed",
    "loss_averaged",
    "reg_missing_from_loss",
    "reg_without_half",
    "reg_extra_half",
    "reg_on_biases",
    "b1_missing",
    "b2_missing",
    "activation_missing",
)
# The gradient mistake that makes each loss mistake's gradient exact again: a loss written with the
# first and a backward pass written with the second are consistent (the gradient of the loss computed).
EXACT_GRADIENT_OF = {
    "loss_summed": "missing_1_over_n",
    "loss_averaged": "extra_1_over_n",
    "reg_missing_from_loss": "reg_missing",
    "reg_without_half": "reg_factor_2",
    "reg_extra_half": "reg_grad_half",
}
GRADIENT_BUGS = (
    "dz_sign_flipped",
    "onehot_not_subtracted",
    "missing_1_over_n",
    "extra_1_over_n",
    "reg_missing",
    "reg_factor_2",
    "reg_grad_half",
    "reg_on_biases",
    "bias_mean",
    "mask_missing",
    "mask_from_upstream",
    "w2_grad_from_preactivation",
    "activation_grad_of_preactivation",
    "backprop_tanh_derivative",  # sigmoid nets: a sigmoid_grad returning 1 - s**2, used in the backward pass
    "backprop_sigmoid_applied_twice",  # ... or one applying the sigmoid to h again
)


def softmax_variant(x: np.ndarray, bug: str) -> np.ndarray:
    """softmax(x) as written with the named mistake."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        if bug == "softmax_wrong_axis":
            axis = 0
            e = np.exp(x - x.max(axis=axis, keepdims=True))
            return e / e.sum(axis=axis, keepdims=True)
        if bug == "softmax_no_max_shift":
            e = np.exp(x)
            return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown softmax bug {bug!r}")


def sigmoid_grad_variant(s: np.ndarray, bug: str) -> np.ndarray:
    """sigmoid'(x) from s = sigmoid(x) as written with the named mistake."""
    s = np.asarray(s, dtype=np.float64)
    if bug == "sigmoid_applied_twice":
        t = sigmoid(s)
        return t * (1.0 - t)
    if bug == "tanh_derivative":
        return 1.0 - s * s
    raise ValueError(f"unknown sigmoid_grad bug {bug!r}")


def _hidden(u: np.ndarray, activation: str) -> np.ndarray:
    return {"relu": relu, "sigmoid": sigmoid, "tanh": tanh}[activation](u)


def _activation_grad(h: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return (h > 0).astype(np.float64)
    return sigmoid_grad(h) if activation == "sigmoid" else tanh_grad(h)


def _float_params(params: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    w1, b1, w2, b2 = (np.asarray(params[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2"))
    return w1, b1, w2, b2


def _layers(
    x: np.ndarray,
    w1: np.ndarray,
    b1: np.ndarray,
    w2: np.ndarray,
    b2: np.ndarray,
    activation: str,
    bugs: Collection[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-activation u, hidden h and scores z of the two-layer net with the named forward mistakes."""
    u = x @ w1 + (0.0 if "b1_missing" in bugs else b1)
    h = u if "activation_missing" in bugs else _hidden(u, activation)
    z = h @ w2 + (0.0 if "b2_missing" in bugs else b2)
    return u, h, z


def cross_entropy_variant(
    z: np.ndarray, y: np.ndarray, reduction: str, bugs: Collection[str] = ()
) -> tuple[float, np.ndarray]:
    """(loss, dz) of softmax cross-entropy with the named mistakes."""
    z = np.asarray(z, dtype=np.float64)
    n = z.shape[0]
    p = softmax(z)
    rows = np.arange(n)
    if "softmax_no_max_shift" in bugs:
        with np.errstate(divide="ignore", invalid="ignore"):
            losses = -np.log(softmax_variant(z, "softmax_no_max_shift")[rows, y])
    else:
        losses = -log_softmax(z)[rows, y]  # finite even where a probability underflows
    loss_scale = 1.0 / n if reduction == "mean" else 1.0
    if "loss_summed" in bugs:
        loss_scale = 1.0
    if "loss_averaged" in bugs:
        loss_scale = 1.0 / n
    onehot = np.zeros_like(p)
    onehot[rows, y] = 1.0
    dz = p.copy() if "onehot_not_subtracted" in bugs else p - onehot
    if "dz_sign_flipped" in bugs:
        dz = -dz
    grad_scale = 1.0 / n if reduction == "mean" else 1.0
    if "missing_1_over_n" in bugs:
        grad_scale = 1.0
    if "extra_1_over_n" in bugs:
        grad_scale = 1.0 / n
    return float(losses.sum() * loss_scale), dz * grad_scale


def forward_variant(x: np.ndarray, params: Mapping[str, np.ndarray], activation: str, bug: str) -> np.ndarray:
    """Scores of the two-layer net as written with the named mistake."""
    _, _, z = _layers(np.asarray(x, dtype=np.float64), *_float_params(params), activation, (bug,))
    if bug == "returns_probabilities":
        return softmax(z)
    if bug in FORWARD_BUGS:
        return z
    raise ValueError(f"unknown forward bug {bug!r}")


def two_layer_loss_and_grads(
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    activation: str,
    reduction: str,
    reg: float,
    bugs: Collection[str] = (),
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of the two-layer net (float64) with any combination of the named mistakes."""
    unknown = set(bugs) - set(LOSS_BUGS) - set(GRADIENT_BUGS)  # forward bugs are among LOSS_BUGS
    if unknown:
        raise ValueError(f"unknown bugs {sorted(unknown)}")
    x = np.asarray(x, dtype=np.float64)
    w1, b1, w2, b2 = _float_params(params)
    u, h, z = _layers(x, w1, b1, w2, b2, activation, bugs)
    data_loss, dz = cross_entropy_variant(z, y, reduction, [b for b in bugs if b in CROSS_ENTROPY_BUGS])
    weights = (w1**2).sum() + (w2**2).sum()
    biases = (b1**2).sum() + (b2**2).sum()
    # the L2 mistakes of both conventions, 0.5 * reg * sum(W**2) (its factor 0.5 left out: twice the penalty) and
    # reg * sum(W**2) (a factor 0.5 put in: half of it), each with the gradient that goes with it
    scale = 1.0 if "reg_without_half" in bugs else 0.25 if "reg_extra_half" in bugs else 0.5
    penalty = 0.0 if "reg_missing_from_loss" in bugs else reg * weights * scale
    if "reg_on_biases" in bugs:
        penalty += 0.5 * reg * biases
    reg_grad = (
        0.0
        if "reg_missing" in bugs
        else 2.0 * reg
        if "reg_factor_2" in bugs
        else 0.5 * reg
        if "reg_grad_half" in bugs
        else reg
    )
    bias_reg = reg if "reg_on_biases" in bugs else 0.0
    batch = (lambda g: g.mean(axis=0)) if "bias_mean" in bugs else (lambda g: g.sum(axis=0))
    dw2 = (u if "w2_grad_from_preactivation" in bugs else h).T @ dz + reg_grad * w2
    # a bias the forward pass leaves out does not change the loss: its gradient is the penalty's alone
    db2 = (np.zeros_like(b2) if "b2_missing" in bugs else batch(dz)) + bias_reg * b2
    dh = dz @ w2.T
    if "mask_missing" in bugs or "activation_missing" in bugs:
        du = dh
    elif "mask_from_upstream" in bugs:
        du = dh * (dh > 0)
    elif "activation_grad_of_preactivation" in bugs:
        du = dh * _activation_grad(u, activation)
    elif "backprop_tanh_derivative" in bugs:
        du = dh * (1.0 - h**2)
    elif "backprop_sigmoid_applied_twice" in bugs:
        du = dh * sigmoid_grad(sigmoid(h))
    else:
        du = dh * _activation_grad(h, activation)
    dw1 = x.T @ du + reg_grad * w1
    db1 = (np.zeros_like(b1) if "b1_missing" in bugs else batch(du)) + bias_reg * b1
    return float(data_loss + penalty), {"W1": dw1, "b1": db1, "W2": dw2, "b2": db2}


def consistent_loss_and_grads(
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    activation: str,
    reduction: str,
    reg: float,
    loss_bugs: Collection[str] = (),
) -> tuple[float, dict[str, np.ndarray]]:
    """The two-layer loss with the named loss (or forward) mistakes, and its exact gradient.

    What a student computes whose backward pass is right for the (wrong) loss they wrote.
    """
    return two_layer_loss_and_grads(x, y, params, activation, reduction, reg, with_exact_gradient(loss_bugs, LOSS_BUGS))


def with_exact_gradient(loss_bugs: Collection[str], known: Collection[str]) -> list[str]:
    """The loss mistakes (each one of `known`), with the gradient mistakes that make each one's gradient exact."""
    unknown = set(loss_bugs) - set(known)
    if unknown:
        raise ValueError(f"not loss mistakes: {sorted(unknown)}")
    return [*loss_bugs, *(EXACT_GRADIENT_OF[b] for b in loss_bugs if b in EXACT_GRADIENT_OF)]


def consistent_cross_entropy(
    z: np.ndarray, y: np.ndarray, reduction: str, loss_bugs: Collection[str] = ()
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy with the named reduction mistake, and its exact gradient dL/dz."""
    implied = [EXACT_GRADIENT_OF[b] for b in loss_bugs if b in EXACT_GRADIENT_OF]
    return cross_entropy_variant(z, y, reduction, [*loss_bugs, *implied])
