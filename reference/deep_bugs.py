"""Loss and gradients of an MLP of any depth as buggy implementations compute them, used only to diagnose.

Row convention, as the reference: a_k = h_{k-1} @ W_k + b_k for k = 1 .. L+1 (h_0 = X), h_k = g(a_k) for the L
hidden layers, scores a_{L+1}; backprop goes down with delta_k = dL/da_k. A *layer* mistake is made where layer k's
gradients are computed (1-based; at the layers given, or at every layer), so it first shows in dW_k and db_k: the
activation derivative of h_k, the mask, the transpose of W_{k+1} bringing the gradient down to h_k, the activation
dW_k is built from. The other mistakes (1/N, the bias sum, L2) are the same at every layer. Plain NumPy, as
``reference.bugs``: each mistake reads like the student code it imitates.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from reference.bugs import CROSS_ENTROPY_BUGS, _activation_grad, _hidden, cross_entropy_variant, with_exact_gradient

LOSS_BUGS = (
    "loss_summed",
    "loss_averaged",
    "reg_missing_from_loss",
    "reg_without_half",
    "reg_extra_half",
    "reg_on_biases",
)
GRADIENT_BUGS = (
    "missing_1_over_n",
    "extra_1_over_n",
    "bias_mean",
    "reg_missing",
    "reg_factor_2",
    "reg_grad_half",
)
LAYER_BUGS = (
    "derivative_of_input",  # g' written in h (h * (1 - h)) given the pre-activation a: a * (1 - a)
    "derivative_of_output",  # g' written in a (sigmoid(a) * (1 - sigmoid(a))) given the output h
    "mask_from_upstream",  # ReLU: the mask of the upstream gradient, dh > 0, instead of a > 0
    "mask_missing",  # no activation derivative at all
    "upstream_not_transposed",  # dh_k = delta_{k+1} @ W_{k+1} (a square W_{k+1} only) instead of W_{k+1}.T
    "weight_grad_from_layer_below",  # dW_k from h_{k-2} (a list index off by one; h_{-1} wraps to h_L)
    "weight_grad_from_layer_above",  # dW_k from h_k (off by one the other way)
)
ONLY_FOR = {  # layer mistakes that exist for some activations only (for ReLU, g'(a) and g'(h) are one mask)
    "derivative_of_input": ("sigmoid", "tanh"),
    "derivative_of_output": ("sigmoid", "tanh"),
    "mask_from_upstream": ("relu",),
}


def applies(bug: str, activation: str) -> bool:
    """Whether a mistake can be made at all with this hidden activation."""
    return activation in ONLY_FOR.get(bug, (activation,))


def depth(params: Mapping[str, np.ndarray]) -> int:
    """The number of weight layers, L + 1, of parameters W1, b1, ..., W(L+1), b(L+1)."""
    return sum(1 for k in range(1, len(params) + 1) if f"W{k}" in params)


def _derivative(a: np.ndarray, h: np.ndarray, dh: np.ndarray, activation: str, bugs: Collection[str]) -> np.ndarray:
    """dh_k/da_k as the named mistake computes it (correct: g' written in the output h)."""
    if "mask_missing" in bugs:
        return np.ones_like(h)
    if "mask_from_upstream" in bugs:
        return (dh > 0).astype(np.float64)
    if "derivative_of_input" in bugs:
        return _activation_grad(a, activation)
    if "derivative_of_output" in bugs:
        return _activation_grad(_hidden(h, activation), activation)
    return _activation_grad(h, activation)


def loss_and_grads(
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    activation: str,
    reduction: str,
    reg: float,
    bugs: Collection[str] = (),
    layers: Collection[int] | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients (float64) of the MLP with the named mistakes; layer mistakes at `layers` (None: all).
    Raises ValueError or IndexError where the mistake cannot be made (a non-square W, a layer beyond the net)."""
    unknown = set(bugs) - set(LOSS_BUGS) - set(GRADIENT_BUGS) - set(LAYER_BUGS)
    if unknown:
        raise ValueError(f"unknown bugs {sorted(unknown)}")
    count = depth(params)
    ws = [np.asarray(params[f"W{k}"], dtype=np.float64) for k in range(1, count + 1)]
    bs = [np.asarray(params[f"b{k}"], dtype=np.float64) for k in range(1, count + 1)]
    hs, pre = [np.asarray(x, dtype=np.float64)], []
    for k in range(count):
        pre.append(hs[-1] @ ws[k] + bs[k])
        if k < count - 1:
            hs.append(_hidden(pre[-1], activation))
    data_loss, delta = cross_entropy_variant(pre[-1], y, reduction, [b for b in bugs if b in CROSS_ENTROPY_BUGS])
    weights = sum(float((w**2).sum()) for w in ws)
    scale = 1.0 if "reg_without_half" in bugs else 0.25 if "reg_extra_half" in bugs else 0.5
    penalty = 0.0 if "reg_missing_from_loss" in bugs else reg * weights * scale
    bias_reg = reg if "reg_on_biases" in bugs else 0.0
    penalty += 0.5 * bias_reg * sum(float((b**2).sum()) for b in bs)
    reg_grad = {"reg_missing": 0.0, "reg_factor_2": 2.0 * reg, "reg_grad_half": 0.5 * reg}
    w_reg = next((reg_grad[b] for b in bugs if b in reg_grad), reg)

    def here(k: int) -> set[str]:
        """The layer mistakes made at layer k."""
        return set(bugs) & set(LAYER_BUGS) if layers is None or k in layers else set()

    grads: dict[str, np.ndarray] = {}
    for k in range(count, 0, -1):
        source = hs[k - 1]
        if "weight_grad_from_layer_below" in here(k):
            source = hs[k - 2]
        if "weight_grad_from_layer_above" in here(k):
            source = hs[k]
        grads[f"W{k}"] = source.T @ delta
        if w_reg:  # (an off-by-one dW has another shape than W: code that adds reg * W fails unless reg is 0)
            grads[f"W{k}"] = grads[f"W{k}"] + w_reg * ws[k - 1]
        summed = delta.mean(axis=0) if "bias_mean" in bugs else delta.sum(axis=0)
        grads[f"b{k}"] = summed + bias_reg * bs[k - 1]
        if k > 1:
            w = ws[k - 1] if "upstream_not_transposed" in here(k - 1) else ws[k - 1].T
            dh = delta @ w
            delta = dh * _derivative(pre[k - 2], hs[k - 1], dh, activation, here(k - 1))
    ordered = {f"{p}{k}": grads[f"{p}{k}"] for k in range(1, count + 1) for p in "Wb"}
    return float(data_loss + penalty), ordered


def consistent_loss_and_grads(
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    activation: str,
    reduction: str,
    reg: float,
    loss_bugs: Collection[str] = (),
) -> tuple[float, dict[str, np.ndarray]]:
    """The loss with the named loss mistakes and its exact gradient: a right backward pass of a wrong loss."""
    return loss_and_grads(x, y, params, activation, reduction, reg, with_exact_gradient(loss_bugs, LOSS_BUGS))
