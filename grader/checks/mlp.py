"""Checks of mlp_forward(X, params) and mlp_loss(X, y, params, reg) -> (loss, grads).

Each gradient is scored on its own. A gradient that differs from the reference still earns
its points when it is the exact gradient of the student's own (wrong) loss: the backward
pass is right for the forward pass it was written for, and the forward pass already lost
its points in the loss check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader import cases
from grader.checks.base import CheckContext, CheckFailed, Passed, check
from grader.checks.diagnosis import diagnose_gradient, diagnose_loss, diagnose_with, nonfinite_loss
from grader.checks.gradcheck import assert_own_gradient, directional_check
from grader.checks.values import (
    as_array,
    as_float,
    as_pair,
    as_param_dict,
    assert_close,
    assert_loss_close,
    assert_unchanged,
    is_close,
)
from reference import MLPSpec, bugs, forward, loss_and_grads

PARAMS = ("W1", "b1", "W2", "b2")
# Credit is carried forward only for a gradient that points broadly where the true one does, or
# whose loss is explained by a known forward-pass mistake: the exact gradient of some unrelated
# function (or of a placeholder) is not a backward pass of this network.
CARRY_FORWARD_COSINE = 0.5


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two arrays seen as vectors (0 when either is zero)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.sum(a * b)) / norms if norms > 0 else 0.0


def _spec(ctx: CheckContext, case: cases.Case) -> MLPSpec:
    x, _, params, reg = case.args
    return MLPSpec(
        (x.shape[1], params["W1"].shape[1], params["W2"].shape[1]),
        ctx.assignment.activation,
        ctx.assignment.reduction,
        reg,
    )


def _case(ctx: CheckContext, seed: int, reg: float | None = None, **kwargs: Any) -> cases.Case:
    return cases.mlp(seed, ctx.assignment.reg if reg is None else reg, ctx.assignment.activation, **kwargs)


def _shapes(case: cases.Case) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in case.args[2].items()}


# --------------------------------------------------------------------------- mlp_forward


def _check_scores(ctx: CheckContext, case: cases.Case) -> None:
    x, _, params, _ = case.args
    spec = _spec(ctx, case)
    expected, _ = forward(x, params, spec)
    value = ctx.call(x, params).value
    found = as_array(value, f"mlp_forward(X, params) for X of shape {x.shape}")
    variants = {
        b: (lambda b=b: bugs.forward_variant(x, params, ctx.assignment.activation, b)) for b in bugs.FORWARD_BUGS
    }
    assert_close(
        found,
        expected,
        ctx.tolerance(),
        "the score matrix",
        case.details,
        lambda f: diagnose_with(f, expected, variants, ctx.tolerance(), ctx.assignment.activation),
    )


@check("mlp_forward", "scores", "scores on random two-layer problems", weight=4, randomized=True)
def check_forward_scores(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_scores(ctx, _case(ctx, seed))


@check("mlp_forward", "batch_of_one", "a batch of a single example")
def check_forward_batch_of_one(ctx: CheckContext) -> None:
    _check_scores(ctx, _case(ctx, ctx.sub_seed("one"), batch=1))


@check("mlp_forward", "no_mutation", "does not modify X or params")
def check_forward_no_mutation(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("mutation"))
    x, _, params, _ = case.args
    result = ctx.call(x, params, echo_args=True)
    assert_unchanged((x, params), result.args_after, ("X", "params"), ctx.function)


# --------------------------------------------------------------------------- mlp_loss


def _student_loss_and_grads(ctx: CheckContext, case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
    """The student's (loss, grads) for a case, called once and shared by every check of the problem."""
    x, y, params, reg = case.args
    value = ctx.memo_call(("mlp", case.seed, case.label, reg), x, y, params, reg).value
    loss, grads = as_pair(value, "mlp_loss(X, y, params, reg)")
    return as_float(loss, "the loss"), as_param_dict(grads, "the gradient dict", _shapes(case))


def _student_loss_at(ctx: CheckContext, case: cases.Case, name: str, value: np.ndarray) -> float:
    """The student's loss with one parameter replaced (for finite differences)."""
    x, y, params, reg = case.args
    loss, _ = as_pair(ctx.call(x, y, {**params, name: value}, reg).value, "mlp_loss(X, y, params, reg)")
    return as_float(loss, "the loss")


def _reference(ctx: CheckContext, case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
    x, y, params, _ = case.args
    loss, grads = loss_and_grads(x, y, params, _spec(ctx, case))
    return loss, {k: np.asarray(grads[k]) for k in PARAMS}


def _check_loss_value(ctx: CheckContext, case: cases.Case) -> None:
    expected, _ = _reference(ctx, case)
    found, _ = _student_loss_and_grads(ctx, case)
    a = ctx.assignment
    assert_loss_close(
        found,
        expected,
        ctx.tolerance(),
        case.details,
        lambda f: diagnose_loss(f, expected, case.args, a.activation, a.reduction, ctx.tolerance()),
        nonfinite_loss,
    )


@check("mlp_loss", "loss_value", "loss value (cross-entropy plus L2 penalty)", weight=3, randomized=True)
def check_loss_value(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_loss_value(ctx, _case(ctx, seed))


@check("mlp_loss", "loss_without_reg", "loss value with reg = 0 (data loss alone)")
def check_loss_without_reg(ctx: CheckContext) -> None:
    _check_loss_value(ctx, _case(ctx, ctx.sub_seed("noreg"), reg=0.0))


def _check_gradient(ctx: CheckContext, case: cases.Case, name: str) -> Passed | None:
    """Pass when grads[name] matches the reference, or is the exact gradient of the student's own loss."""
    ref_loss, ref_grads = _reference(ctx, case)
    loss, grads = _student_loss_and_grads(ctx, case)
    expected, found = ref_grads[name], grads[name]
    if is_close(found, expected, ctx.tolerance()):
        return None
    activation, reduction = ctx.assignment.activation, ctx.assignment.reduction
    try:
        assert_close(
            found,
            expected,
            ctx.tolerance(),
            f"d{name}",
            case.details,
            lambda f: diagnose_gradient(grads, name, ref_grads, case.args, activation, reduction, ctx.tolerance()),
        )
    except CheckFailed as failure:
        if found.shape == expected.shape and not is_close(np.asarray(loss), np.asarray(ref_loss), ctx.tolerance()):
            own = directional_check(
                lambda p: _student_loss_at(ctx, case, name, p), found, case.args[2][name], count=3, seed=case.seed
            )
            related = cosine(found, expected) >= CARRY_FORWARD_COSINE or diagnose_loss(
                loss, ref_loss, case.args, activation, reduction, ctx.tolerance()
            )
            if own.consistent and not own.flat and related:
                return Passed(
                    f"d{name} differs from the reference, but it is the exact gradient of your own loss, "
                    "whose value is wrong: credit carried forward from the forward pass",
                    details={**failure.details, "carried_forward": True},
                )
        raise
    return None


def _gradient_check(name: str):  # type: ignore[no-untyped-def]
    def run(ctx: CheckContext) -> Passed | None:
        notes = [_check_gradient(ctx, _case(ctx, seed), name) for seed in ctx.case_seeds()]
        return next((n for n in notes if n is not None), None)

    run.__name__ = f"check_grad_{name}"
    run.__doc__ = f"d{name} matches the reference on random problems."
    return run


for _name in PARAMS:
    check("mlp_loss", f"grad_{_name}", f"gradient d{_name}", weight=3, randomized=True)(_gradient_check(_name))


@check("mlp_loss", "square_weights", "every gradient when D == H (a transposed dW1 has the right shape)")
def check_square_weights(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("square"), square=True)
    for name in PARAMS:
        _check_gradient(ctx, case, name)  # a carried-forward note is fine here too


@check(
    "mlp_loss",
    "gradient_matches_own_loss",
    "your gradient agrees with finite differences of your own loss (gradcheck)",
    weight=2,
)
def check_gradient_matches_own_loss(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("gradcheck"))
    x, y, params, reg = case.args
    _, grads = _student_loss_and_grads(ctx, case)
    for name in PARAMS:
        if grads[name].shape != params[name].shape:
            raise CheckFailed(
                f"d{name} has shape {grads[name].shape}, expected {params[name].shape} (the shape of {name})",
                details=case.details,
            )
    flat = np.concatenate([params[k].ravel() for k in PARAMS])
    gradient = np.concatenate([grads[k].ravel() for k in PARAMS])
    sizes = np.cumsum([params[k].size for k in PARAMS])[:-1]

    def loss_at(theta: np.ndarray) -> float:
        parts = np.split(theta, sizes)
        new = {k: p.reshape(params[k].shape) for k, p in zip(PARAMS, parts, strict=False)}
        loss, _ = as_pair(ctx.call(x, y, new, reg).value, "mlp_loss(X, y, params, reg)")
        return as_float(loss, "the loss")

    assert_own_gradient(loss_at, gradient, flat, case.seed, "your gradient", case.details)


@check("mlp_loss", "output_structure", "returns (loss as a number, dict of gradients shaped like the parameters)")
def check_output_structure(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("structure"))
    _, grads = _student_loss_and_grads(ctx, case)
    _, expected = _reference(ctx, case)
    a = ctx.assignment
    for name, shape in _shapes(case).items():
        if grads[name].shape != shape:
            raise CheckFailed(
                f"d{name} has shape {grads[name].shape}; a gradient has the shape of its parameter, {shape}",
                diagnosis=diagnose_gradient(
                    grads, name, expected, case.args, a.activation, a.reduction, ctx.tolerance()
                ),
                details=case.details,
            )


@check("mlp_loss", "no_mutation", "does not modify X, y or params")
def check_loss_no_mutation(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("mutation"))
    result = ctx.call(*case.args, echo_args=True)
    assert_unchanged(case.args, result.args_after, ("X", "y", "params"), ctx.function)
