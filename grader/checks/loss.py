"""Checks of softmax_cross_entropy(z, y) -> (loss, dz): each half scored separately."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from grader import cases
from grader.checks import ownloss
from grader.checks.base import CheckContext, CheckFailed, check
from grader.checks.diagnosis import diagnose_with, message, nonfinite_loss
from grader.checks.values import (
    as_array,
    as_float,
    as_pair,
    assert_close,
    assert_loss_close,
    assert_unchanged,
    finite_or_fail,
)
from grader.truth import bugs, reference

ref_cross_entropy = reference.softmax_cross_entropy


def _loss_and_dz(ctx: CheckContext, case: cases.Case) -> tuple[float, np.ndarray]:
    """The student's (loss, dz) for a case, called once per case and shared by the checks."""
    z, y = case.args
    return _parse(ctx, ctx.memo_call(("ce", case.seed, case.label), z, y).value, case)


def _parse(ctx: CheckContext, value: Any, case: cases.Case) -> tuple[float, np.ndarray]:
    loss, dz = as_pair(value, ctx.signature)
    return as_float(loss, "the loss"), as_array(dz, f"dz for z of shape {case.args[0].shape}")


def _variants_names(reduction: str) -> list[str]:
    """The cross-entropy mistakes possible with this reduction."""
    return [
        b
        for b in bugs.CROSS_ENTROPY_BUGS
        if not (reduction == "mean" and b in ("extra_1_over_n", "loss_averaged"))
        and not (reduction == "sum" and b in ("missing_1_over_n", "loss_summed"))
    ]


def _variants(case: cases.Case, reduction: str, part: int) -> dict[str, Any]:
    z, y = case.args
    return {
        n: (lambda n=n: np.asarray(bugs.cross_entropy_variant(z, y, reduction, (n,))[part]))
        for n in _variants_names(reduction)
    }


def _check_loss(ctx: CheckContext, case: cases.Case) -> None:
    z, y = case.args
    reduction = ctx.assignment.reduction
    expected, _ = ref_cross_entropy(z, y, reduction)
    found, _ = _loss_and_dz(ctx, case)
    variants = _variants(case, reduction, 0)
    assert_loss_close(
        found,
        expected,
        ctx.tolerance(),
        case.details,
        lambda f: diagnose_with(np.asarray(f), np.asarray(expected), variants, ctx.tolerance()),
        nonfinite_loss,
    )


def _check_dz(ctx: CheckContext, case: cases.Case) -> None:
    z, y = case.args
    reduction = ctx.assignment.reduction
    _, expected = ref_cross_entropy(z, y, reduction)
    loss, found = _loss_and_dz(ctx, case)
    finite_or_fail(found, "dz", case.details, message("softmax_no_max_shift"))
    diagnose = _variants(case, reduction, 1)
    try:
        assert_close(
            found,
            expected,
            ctx.tolerance(),
            "dz",
            case.details,
            lambda f: diagnose_with(f, expected, diagnose, ctx.tolerance()),
        )
    except CheckFailed as failure:
        known = _known_losses(reduction)
        raise ownloss.carry(ctx, failure, lambda: _verdict(ctx), known, case.args, (loss, {"z": found}), "z") from None


@check("softmax_cross_entropy", "loss_value", "loss value on random logits", weight=3)
def check_ce_loss_value(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_loss(ctx, cases.classification(seed))


@check("softmax_cross_entropy", "gradient", "dz = dL/dz on random logits", weight=4)
def check_ce_gradient(ctx: CheckContext) -> None:
    ownloss.grade_gradients(functools.partial(_check_dz, ctx, cases.classification(s)) for s in ctx.case_seeds())


def _known_losses(reduction: str) -> list[ownloss.KnownLoss]:
    """The reference cross-entropy and its reduction mistakes, each with its exact gradient dL/dz."""
    mistakes = [b for b in ("loss_summed", "loss_averaged") if b in _variants_names(reduction)]

    def compute(combo: tuple[str, ...]) -> Any:
        def run(args: tuple[Any, ...]) -> tuple[float, dict[str, np.ndarray]]:
            loss, dz = bugs.consistent_cross_entropy(args[0], args[1], reduction, combo)
            return loss, {"z": dz}

        return run

    return ownloss.known_losses([(m,) for m in mistakes], compute, message)


def _verdict(ctx: CheckContext) -> ownloss.Verdict:
    """Once per submission: which known cross-entropy the student computes, and whether dz is exact for it."""

    def student(case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
        loss, dz = _parse(ctx, ctx.call(*case.args).value, case)
        return loss, {"z": dz}

    return ownloss.verdict(ctx, cases.classification, student, _known_losses(ctx.assignment.reduction), "dz")


@check(
    "softmax_cross_entropy",
    "gradient_matches_own_loss",
    "dz is the exact gradient of your own loss (the reference or a known mistake), on fresh logits",
    weight=2,
    role="property",
    seeded=False,  # judged on the probe seed's fresh problems, secret when grading
)
def check_ce_gradient_matches_own_loss(ctx: CheckContext) -> None:
    verdict = _verdict(ctx)
    if not verdict.exact:
        raise CheckFailed(verdict.reason)


@check("softmax_cross_entropy", "extreme_logits", "finite, exact loss and dz for logits of +/-1e4", weight=2)
def check_ce_extreme_logits(ctx: CheckContext) -> None:
    case = cases.extreme_classification(ctx.sub_seed("extreme"))
    _check_loss(ctx, case)
    _check_dz(ctx, case)


@check("softmax_cross_entropy", "no_mutation", "does not modify z or y", role="property", mutation=True)
def check_ce_no_mutation(ctx: CheckContext) -> None:
    case = cases.classification(ctx.sub_seed("mutation"))
    result = ctx.call(*case.args, echo_args=True)
    assert_unchanged(case.args, result.args_after, ("z", "y"), ctx.function)
