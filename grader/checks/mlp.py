"""Checks of mlp_forward(X, params) and mlp_loss(X, y, params, reg) -> (loss, grads).

Each gradient is scored on its own. A gradient that differs from the reference still earns part of
its points (credit carried forward, capped by the assignment's [scoring] carried_credit) when the
student's loss is a known mistake and the whole backward pass is that loss's exact gradient, judged on
fresh problems the submission cannot anticipate (grader.checks.ownloss states the rule).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from grader import cases
from grader.checks import ownloss
from grader.checks.base import CheckContext, CheckFailed, check
from grader.checks.diagnosis import (
    diagnose_gradient,
    diagnose_loss,
    diagnose_with,
    loss_mistake_sets,
    message,
    nonfinite_loss,
)
from grader.checks.values import (
    as_array,
    as_float,
    as_pair,
    as_param_dict,
    assert_close,
    assert_loss_close,
    assert_unchanged,
    conform,
    finite_or_fail,
    is_close,
)
from grader.truth import bugs, reference

MLPSpec, forward, loss_and_grads = reference.MLPSpec, reference.forward, reference.loss_and_grads

PARAMS = ("W1", "b1", "W2", "b2")
LARGE_SCORES = 1000.0  # the largest |score| of the stability check: exp overflows beyond about 709.8


def _spec(ctx: CheckContext, case: cases.Case) -> Any:
    x, _, params, reg = case.args
    return MLPSpec(
        (x.shape[1], params["W1"].shape[1], params["W2"].shape[1]),
        ctx.assignment.activation,
        ctx.assignment.reduction,
        reg,
    )


def _l2(ctx: CheckContext) -> float:
    """The L2 convention the student's code is written in (the binding's l2_scale): what diagnoses quote."""
    return ctx.problem.binding.l2_scale


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
    found = as_array(value, f"{ctx.signature} for X of shape {x.shape}")
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


@check("mlp_forward", "scores", "scores on random two-layer problems", weight=4)
def check_forward_scores(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_scores(ctx, _case(ctx, seed))


@check("mlp_forward", "batch_of_one", "a batch of a single example")
def check_forward_batch_of_one(ctx: CheckContext) -> None:
    _check_scores(ctx, _case(ctx, ctx.sub_seed("one"), batch=1))


@check("mlp_forward", "no_mutation", "does not modify X or params", role="property", mutation=True)
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
    loss, grads = as_pair(value, ctx.signature)
    return as_float(loss, "the loss"), as_param_dict(grads, "the gradient dict", _shapes(case))


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
        lambda f: diagnose_loss(f, expected, case.args, a.activation, a.reduction, ctx.tolerance(), _l2(ctx)),
        nonfinite_loss,
    )


@check("mlp_loss", "loss_value", "loss value (cross-entropy plus L2 penalty)", weight=3)
def check_loss_value(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_loss_value(ctx, _case(ctx, seed))


@check("mlp_loss", "loss_without_reg", "loss value with reg = 0 (data loss alone)")
def check_loss_without_reg(ctx: CheckContext) -> None:
    _check_loss_value(ctx, _case(ctx, ctx.sub_seed("noreg"), reg=0.0))


def _known_losses(ctx: CheckContext) -> list[ownloss.KnownLoss]:
    """The reference loss and every known mistake of it, each with its exact gradient."""
    a = ctx.assignment

    def compute(combo: tuple[str, ...]) -> Any:
        return lambda args: bugs.consistent_loss_and_grads(
            args[0], args[1], args[2], a.activation, a.reduction, float(args[3]), combo
        )

    mistakes = loss_mistake_sets(a.activation, a.reduction, _l2(ctx))
    return ownloss.known_losses(mistakes, compute, lambda m: message(m, a.activation, l2_scale=_l2(ctx)))


def _verdict(ctx: CheckContext) -> ownloss.Verdict:
    """Once per submission: which known loss the student computes, and whether the gradients are exact for it."""

    def student(case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
        value = ctx.call(*case.args).value
        loss, grads = as_pair(value, ctx.signature)
        return as_float(loss, "the loss"), as_param_dict(grads, "the gradient dict", _shapes(case))

    return ownloss.verdict(ctx, lambda seed: _case(ctx, seed), student, _known_losses(ctx), "your gradient")


def _check_gradient(ctx: CheckContext, case: cases.Case, name: str) -> None:
    """Pass when grads[name] matches the reference; fail with capped credit when it is carried forward."""
    _, ref_grads = _reference(ctx, case)
    loss, grads = _student_loss_and_grads(ctx, case)
    expected, found = ref_grads[name], grads[name]
    if is_close(found, expected, ctx.tolerance()):
        return
    activation, reduction = ctx.assignment.activation, ctx.assignment.reduction
    try:
        assert_close(
            found,
            expected,
            ctx.tolerance(),
            f"d{name}",
            case.details,
            lambda f: diagnose_gradient(
                grads, name, ref_grads, case.args, activation, reduction, ctx.tolerance(), _l2(ctx)
            ),
        )
    except CheckFailed as failure:
        known = _known_losses(ctx)
        raise ownloss.carry(ctx, failure, lambda: _verdict(ctx), known, case.args, (loss, grads), name) from None


def _grade_gradients(ctx: CheckContext, items: list[tuple[cases.Case, str]]) -> None:
    """Grade (case, gradient) pairs: a real failure fails at once; otherwise a carried one sets the credit."""
    ownloss.grade_gradients(functools.partial(_check_gradient, ctx, case, name) for case, name in items)


def _gradient_check(name: str):  # type: ignore[no-untyped-def]
    def run(ctx: CheckContext) -> None:
        _grade_gradients(ctx, [(_case(ctx, seed), name) for seed in ctx.case_seeds()])

    run.__name__ = f"check_grad_{name}"
    run.__doc__ = f"d{name} matches the reference on random problems."
    return run


for _name in PARAMS:
    check("mlp_loss", f"grad_{_name}", f"gradient d{_name}", weight=3)(_gradient_check(_name))


@check("mlp_loss", "square_weights", "every gradient when D == H (a transposed dW1 has the right shape)")
def check_square_weights(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("square"), square=True)
    _grade_gradients(ctx, [(case, name) for name in PARAMS])


@check(
    "mlp_loss",
    "gradient_matches_own_loss",
    "your gradient is the exact gradient of your own loss (the reference or a known mistake), on fresh problems",
    weight=2,
    role="property",
    seeded=False,  # judged on the probe seed's fresh problems, secret when grading
)
def check_gradient_matches_own_loss(ctx: CheckContext) -> None:
    verdict = _verdict(ctx)
    if not verdict.exact:
        raise CheckFailed(verdict.reason)


@check(
    "mlp_loss",
    "output_structure",
    "returns (loss as a number, dict of gradients shaped like the parameters)",
    role="property",
)
def check_output_structure(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("structure"))
    _, grads = _student_loss_and_grads(ctx, case)
    _, expected = _reference(ctx, case)
    for name in PARAMS:
        conform(
            grads[name],
            expected[name],
            ctx.tolerance(),
            f"d{name} (a gradient has the shape of its parameter)",
            case.details,
            _gradient_diagnosis(ctx, case, grads, expected, name),
        )


def _gradient_diagnosis(
    ctx: CheckContext, case: cases.Case, grads: dict[str, np.ndarray], expected: dict[str, np.ndarray], name: str
) -> Callable[[np.ndarray], str | None]:
    """The mistake behind a wrong gradient `name`, judged on the whole backward pass (for a wrong shape too)."""
    a = ctx.assignment
    return lambda _: diagnose_gradient(
        grads, name, expected, case.args, a.activation, a.reduction, ctx.tolerance(), _l2(ctx)
    )


def _large_scores_case(ctx: CheckContext) -> cases.Case:
    """A random problem (reg = 0) with the output weights scaled so that the largest score is +LARGE_SCORES (where
    exp overflows) and no score is below -LARGE_SCORES; the example with the largest score is labelled with its
    smallest one, whose probability underflows to 0."""
    base = _case(ctx, ctx.sub_seed("large"), reg=0.0)
    x, y, params, reg = base.args
    scores, _ = forward(x, params, _spec(ctx, base))
    top = scores.flat[int(np.argmax(np.abs(scores)))]
    scale = LARGE_SCORES / float(top)  # negative when the largest |score| is negative: the largest score becomes +1000
    large = {**params, "W2": params["W2"] * scale, "b2": params["b2"] * scale}
    row, _ = np.unravel_index(int(np.argmax(scores * scale)), scores.shape)
    y = y.copy()
    y[row] = int(np.argmin(scores[row] * scale))
    label = f"random two-layer problem with W2 and b2 scaled by {scale:.4g} (scores up to {LARGE_SCORES:g}), reg = 0"
    return cases.Case(label, base.seed, (x, y, large, reg), {**base.extra, "scale": scale}, base.names)


@check(
    "mlp_loss",
    "large_scores",
    f"finite loss and gradients for scores up to {LARGE_SCORES:g}, the loss equal to yours at moderate scores",
    weight=2,
    role="property",
)
def check_large_scores(ctx: CheckContext) -> None:
    """Stability alone: the loss at scores of 1000 must be the loss the submission computes at moderate scores (the
    reference, or the known mistake it is identified as on fresh problems), so a wrong loss is not charged twice."""
    case = _large_scores_case(ctx)
    found, grads = _student_loss_and_grads(ctx, case)
    identified = _verdict(ctx).loss
    known = {k.name: k for k in _known_losses(ctx)}
    expected = known[identified or ownloss.REFERENCE].compute(case.args)[0]
    overflowed = not all(np.isfinite(g).all() for g in grads.values())

    def unstable(_: float) -> str | None:
        """The loss is right at moderate scores, so the difference here comes from overflow or underflow."""
        if identified is None:
            return None
        return message("softmax_no_max_shift") if overflowed else message("loss_unstable")

    def nonfinite(value: float) -> str | None:
        if identified is None:
            return None
        return message("softmax_no_max_shift") if overflowed else nonfinite_loss(value)

    assert_loss_close(found, expected, ctx.tolerance(), case.details, unstable, nonfinite)
    for name in PARAMS:
        finite_or_fail(grads[name], f"d{name}", case.details, message("softmax_no_max_shift"))


@check("mlp_loss", "no_mutation", "does not modify X, y or params", role="property", mutation=True)
def check_loss_no_mutation(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("mutation"))
    result = ctx.call(*case.args, echo_args=True)
    assert_unchanged(case.args, result.args_after, ("X", "y", "params"), ctx.function)
