"""Name the most likely cause of a wrong result by reproducing it with known mistakes.

The reference's bug variants (``reference.bugs``) compute what a buggy implementation would
return; a diagnosis is the first variant (or pair of variants) that reproduces the
student's value within tolerance, with a message that says what to change.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from grader.assignment import Tolerance
from grader.checks.values import is_close
from grader.truth import NotLocal, bugs

_BACKPROP = {
    "relu": "du = dh * (u > 0)",
    "sigmoid": "du = dh * h * (1 - h)",
    "tanh": "du = dh * (1 - h**2)",
}

MESSAGES: dict[str, str] = {
    "softmax_wrong_axis": "softmax is normalized over the wrong axis: normalize each row (axis=-1, keepdims=True), "
    "not each column",
    "softmax_no_max_shift": "exp overflows for large logits: subtract the row maximum before exponentiating "
    "(softmax(x) = softmax(x - max(x)))",
    "loss_unstable": "the loss is right for moderate scores but not for scores near 1000: exp overflowed or a "
    "probability underflowed to 0; compute log-softmax directly, log p = (z - max z) - log(sum(exp(z - max z)))",
    "log_of_softmax": "the loss takes the log of a probability that underflowed to 0 (-log(0) = inf): compute "
    "log-softmax directly, log p = (z - max z) - log(sum(exp(z - max z)))",
    "sigmoid_applied_twice": "sigmoid_grad applies the sigmoid again: its argument is already s = sigmoid(x), "
    "so return s * (1 - s)",
    "tanh_derivative": "this is the derivative of tanh, 1 - s**2; the sigmoid's is s * (1 - s)",
    "missing_1_over_n": "missing 1/N: the loss averages over the batch, so dL/dz = (softmax(z) - onehot(y)) / N",
    "extra_1_over_n": "extra 1/N: the loss is summed over the batch, so dL/dz = softmax(z) - onehot(y), "
    "not divided by N",
    "loss_summed": "the loss is summed over the batch instead of averaged: divide the sum by N",
    "loss_averaged": "the loss is averaged over the batch instead of summed: do not divide by N",
    "dz_sign_flipped": "the sign of dz is flipped: dL/dz = softmax(z) - onehot(y)",
    "onehot_not_subtracted": "the one-hot labels are not subtracted: dL/dz = softmax(z) - onehot(y)",
    "reg_missing_from_loss": "the L2 penalty {penalty} is missing from the loss",
    "reg_without_half": "the L2 penalty lacks its factor 0.5: it is 0.5 * reg * (sum(W1**2) + sum(W2**2))",
    "reg_extra_half": "the L2 penalty has a factor 0.5 too many: in this assignment it is reg * (sum(W1**2) + "
    "sum(W2**2))",
    "reg_on_biases": "the biases are regularized: the L2 penalty applies to W1 and W2 only",
    "reg_missing": "the regularization gradient {reg_grad} is missing from dW1 and dW2",
    "reg_factor_2": "the regularization gradient is 2 * reg * W; for the penalty 0.5 * reg * sum(W**2) it is reg * W",
    "reg_grad_half": "the regularization gradient is reg * W; for the penalty reg * sum(W**2) it is 2 * reg * W",
    "bias_mean": "the bias gradient averages over the batch; sum it instead (any 1/N is already in dz)",
    "mask_missing": "the activation's derivative is missing in backprop: {backprop}",
    "mask_from_upstream": "the ReLU mask is taken from the upstream gradient (dh > 0); it must come from the "
    "forward pass: du = dh * (u > 0)",
    "backprop_tanh_derivative": "the backward pass multiplies by the derivative of tanh, 1 - h**2; the sigmoid's is "
    "h * (1 - h) (is sigmoid_grad right? it gets s = sigmoid(x) and returns s * (1 - s))",
    "backprop_sigmoid_applied_twice": "the backward pass applies the sigmoid again to h, which already is "
    "sigmoid(u): its derivative is h * (1 - h) (is sigmoid_grad right? its argument is already s = sigmoid(x))",
    "w2_grad_from_preactivation": "dW2 uses the pre-activation u instead of the hidden activation h: dW2 = h.T @ dz",
    "activation_grad_of_preactivation": "the activation's derivative is evaluated on the pre-activation u; written "
    "in the output h it is {backprop}",
    "b1_missing": "the hidden layer does not add the bias b1: u = X @ W1 + b1",
    "b2_missing": "the output layer does not add the bias b2: z = h @ W2 + b2",
    "activation_missing": "the hidden layer has no activation: h = act(X @ W1 + b1)",
    "returns_probabilities": "mlp_forward returns probabilities (softmax applied); it must return the raw scores z",
    "transposed": "the gradient is transposed: it must have the shape of its parameter ({shape}); "
    "for z = h @ W, dW = h.T @ dz",
    "bias_not_summed": "the bias gradient is not summed over the batch: db = dz.sum(axis=0)",
    "bias_wrong_axis": "the bias gradient is summed over the wrong axis: sum over the batch, axis=0",
}


# The L2 penalty as a course writes it (the binding's l2_scale), and its gradient: what the messages quote.
_L2 = {
    0.5: ("0.5 * reg * (sum(W1**2) + sum(W2**2))", "reg * W"),
    1.0: ("reg * (sum(W1**2) + sum(W2**2))", "2 * reg * W"),
}
# The mistakes of each convention: writing the other one (a factor 0.5 left out, or one put in).
_L2_MISTAKES = {0.5: ("reg_without_half", "reg_factor_2"), 1.0: ("reg_extra_half", "reg_grad_half")}


def _l2(l2_scale: float) -> tuple[str, str]:
    return _L2.get(l2_scale, (f"{l2_scale:g} * reg * (sum(W1**2) + sum(W2**2))", f"{2 * l2_scale:g} * reg * W"))


def message(name: str, activation: str = "relu", shape: tuple[int, ...] = (), l2_scale: float = 0.5) -> str:
    """The student-facing explanation of one named mistake (or '; '-joined pair), in the assignment's L2 convention."""
    penalty, reg_grad = _l2(l2_scale)
    return "; and ".join(
        MESSAGES[p].format(backprop=_BACKPROP[activation], shape=shape, penalty=penalty, reg_grad=reg_grad)
        for p in name.split("+")
    )


def first_match(
    found: np.ndarray,
    candidates: Iterable[tuple[str, Callable[[], np.ndarray]]],
    expected: np.ndarray,
    tol: Tolerance,
) -> str | None:
    """Name of the first candidate that reproduces `found` while differing from `expected`."""
    for name, compute in candidates:
        try:
            variant = np.asarray(compute(), dtype=np.float64)
        except (ValueError, FloatingPointError, IndexError, NotLocal):  # NotLocal: a mistake not recorded here
            continue
        if variant.shape != found.shape or not np.isfinite(variant).all():
            continue
        if variant.shape == expected.shape and is_close(variant, expected, tol):
            continue  # this mistake does not change this quantity: it cannot explain the difference
        if is_close(found, variant, tol):
            return name
    return None


def bug_sets(names: Iterable[str], pairs: bool = True) -> list[tuple[str, ...]]:
    """Single mistakes, then compatible pairs (one of each mutually exclusive group at most)."""
    names = list(names)
    exclusive = [
        {"missing_1_over_n", "extra_1_over_n"},
        {"reg_missing", "reg_factor_2", "reg_grad_half"},
        {
            "mask_missing",
            "mask_from_upstream",
            "activation_grad_of_preactivation",
            "backprop_tanh_derivative",
            "backprop_sigmoid_applied_twice",
        },
        {"loss_summed", "loss_averaged"},
        {"reg_missing_from_loss", "reg_without_half", "reg_extra_half"},
        {"dz_sign_flipped", "onehot_not_subtracted"},
    ]
    singles: list[tuple[str, ...]] = [(n,) for n in names]
    if not pairs:
        return singles
    combos: list[tuple[str, ...]] = [
        (a, b) for a, b in itertools.combinations(names, 2) if not any(a in g and b in g for g in exclusive)
    ]
    return singles + combos


def diagnose_gradient(
    found_all: Mapping[str, np.ndarray],
    name: str,
    expected_all: Mapping[str, np.ndarray],
    case_args: tuple[Any, ...],
    activation: str,
    reduction: str,
    tol: Tolerance,
    l2_scale: float = 0.5,
) -> str | None:
    """The most likely mistake behind the wrong gradient `name` (W1, b1, W2 or b2) of the two-layer net.

    Judged on all four gradients together: among the mistakes (or pairs) that reproduce this one,
    the one that also reproduces most of the others wins (with a summed loss, averaging db over
    the batch and an extra 1/N give the same db, but only one of them leaves dW right).
    """
    x, y, params, reg = case_args
    found, expected = found_all[name], expected_all[name]
    n = np.shape(x)[0]
    if name.startswith("W") and found.shape == expected.shape[::-1] and found.shape != expected.shape:
        return message("transposed", shape=expected.shape)
    if name.startswith("b") and found.shape == (n, expected.shape[0]):
        return message("bias_not_summed")
    if name.startswith("b") and found.shape == (n,) and n != expected.shape[0]:
        return message("bias_wrong_axis")
    square = found.shape == expected.shape and expected.ndim == 2 and expected.shape[0] == expected.shape[1]
    if name.startswith("W") and square and is_close(found, expected.T, tol):
        return message("transposed", shape=expected.shape)
    # a transposed gradient packed into a flat vector comes back in the parameter's shape, its entries in the
    # transpose's order
    if name.startswith("W") and found.shape == expected.shape and is_close(found, expected.T.reshape(found.shape), tol):
        return message("transposed", shape=expected.shape)
    names = [b for b in bugs.GRADIENT_BUGS if applies(b, activation, reduction, l2_scale)]
    best: tuple[int, int, tuple[str, ...]] | None = None
    for rank, combo in enumerate(bug_sets(names)):
        try:
            variant = bugs.two_layer_loss_and_grads(x, y, params, activation, reduction, float(reg), combo)[1]
        except NotLocal:  # a mistake whose gradients were not recorded for this input (students' install)
            continue
        mine = variant[name]
        if mine.shape != found.shape or is_close(mine, expected, tol) or not is_close(found, mine, tol):
            continue
        agree = sum(f.shape == variant[k].shape and is_close(f, variant[k], tol) for k, f in found_all.items())
        if best is None or (agree, -rank) > best[:2]:
            best = (agree, -rank, combo)
    return message("+".join(best[2]), activation, l2_scale=l2_scale) if best else None


def nonfinite_loss(value: float) -> str:
    """Why a loss came out NaN or infinite: overflow in exp (NaN) or the log of an underflowed probability (inf)."""
    return message("softmax_no_max_shift") if np.isnan(value) else message("log_of_softmax")


def diagnose_loss(
    found: float,
    expected: float,
    case_args: tuple[Any, ...],
    activation: str,
    reduction: str,
    tol: Tolerance,
    l2_scale: float = 0.5,
) -> str | None:
    """The most likely mistake behind a wrong loss value of the two-layer net."""
    x, y, params, reg = case_args
    assert isinstance(params, Mapping)

    def variant(combo: tuple[str, ...]) -> Callable[[], np.ndarray]:
        return lambda: np.asarray(
            bugs.two_layer_loss_and_grads(x, y, params, activation, reduction, float(reg), combo)[0]
        )

    hit = first_match(
        np.asarray(found),
        (("+".join(c), variant(c)) for c in loss_mistake_sets(activation, reduction, l2_scale)),
        np.asarray(expected),
        tol,
    )
    return message(hit, activation, l2_scale=l2_scale) if hit else None


def loss_mistake_sets(activation: str, reduction: str, l2_scale: float = 0.5) -> list[tuple[str, ...]]:
    """The known mistakes of the two-layer loss (forward pass included) possible in this configuration:
    single ones, then compatible pairs."""
    return bug_sets(b for b in bugs.LOSS_BUGS if applies(b, activation, reduction, l2_scale))


def applies(bug: str, activation: str, reduction: str, l2_scale: float = 0.5) -> bool:
    """Whether a mistake is possible at all in this configuration (the L2 ones: in its convention only)."""
    for scale, mistakes in _L2_MISTAKES.items():
        if bug in mistakes:
            return l2_scale == scale
    if bug in ("missing_1_over_n", "loss_summed"):
        return reduction == "mean"
    if bug in ("extra_1_over_n", "loss_averaged"):
        return reduction == "sum"
    if bug == "mask_from_upstream":
        return activation == "relu"
    if bug == "activation_grad_of_preactivation":
        return activation != "relu"
    if bug in ("backprop_tanh_derivative", "backprop_sigmoid_applied_twice"):
        return activation == "sigmoid"
    return True


def diagnose_with(
    found: np.ndarray,
    expected: np.ndarray,
    variants: Mapping[str, Callable[[], np.ndarray]],
    tol: Tolerance,
    activation: str = "relu",
) -> str | None:
    """First named variant (from a mapping) that reproduces `found`, as a message."""
    hit = first_match(found, variants.items(), expected, tol)
    return message(hit, activation) if hit else None
