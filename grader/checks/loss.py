"""Checks of softmax_cross_entropy(z, y) -> (loss, dz): each half scored separately."""

from __future__ import annotations

from typing import Any

import numpy as np

from grader import cases
from grader.checks.base import CheckContext, CheckFailed, check
from grader.checks.diagnosis import diagnose_with, message, nonfinite_loss
from grader.checks.gradcheck import assert_own_gradient
from grader.checks.values import (
    as_array,
    as_float,
    as_pair,
    assert_close,
    assert_loss_close,
    assert_unchanged,
    finite_or_fail,
)
from reference import bugs
from reference import softmax_cross_entropy as ref_cross_entropy


def _loss_and_dz(ctx: CheckContext, case: cases.Case) -> tuple[float, np.ndarray]:
    """The student's (loss, dz) for a case, called once per case and shared by the checks."""
    z, y = case.args
    value = ctx.memo_call(("ce", case.seed, case.label), z, y).value
    loss, dz = as_pair(value, "softmax_cross_entropy(z, y)")
    return as_float(loss, "the loss"), as_array(dz, f"dz for z of shape {z.shape}")


def _variants(case: cases.Case, reduction: str, part: int) -> dict[str, Any]:
    z, y = case.args
    names = [
        b
        for b in bugs.CROSS_ENTROPY_BUGS
        if not (reduction == "mean" and b in ("extra_1_over_n", "loss_averaged"))
        and not (reduction == "sum" and b in ("missing_1_over_n", "loss_summed"))
    ]
    return {n: (lambda n=n: np.asarray(bugs.cross_entropy_variant(z, y, reduction, (n,))[part])) for n in names}


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
    _, found = _loss_and_dz(ctx, case)
    finite_or_fail(found, "dz", case.details, message("softmax_no_max_shift"))
    diagnose = _variants(case, reduction, 1)
    assert_close(
        found,
        expected,
        ctx.tolerance(),
        "dz",
        case.details,
        lambda f: diagnose_with(f, expected, diagnose, ctx.tolerance()),
    )


@check("softmax_cross_entropy", "loss_value", "loss value on random logits", weight=3, randomized=True)
def check_ce_loss_value(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_loss(ctx, cases.classification(seed))


@check("softmax_cross_entropy", "gradient", "dz = dL/dz on random logits", weight=4, randomized=True)
def check_ce_gradient(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_dz(ctx, cases.classification(seed))


@check(
    "softmax_cross_entropy", "gradient_matches_own_loss", "dz agrees with finite differences of your own loss", weight=2
)
def check_ce_gradient_matches_own_loss(ctx: CheckContext) -> None:
    case = cases.classification(ctx.sub_seed("fd"))
    z, y = case.args
    _, dz = _loss_and_dz(ctx, case)
    if dz.shape != z.shape:
        raise CheckFailed(f"dz has shape {dz.shape}, expected {z.shape} (the shape of z)", details=case.details)

    def loss_at(point: np.ndarray) -> float:
        loss, _ = as_pair(ctx.call(point, y).value, "softmax_cross_entropy(z, y)")
        return as_float(loss, "the loss")

    assert_own_gradient(loss_at, dz, z, case.seed, "dz", case.details)


@check("softmax_cross_entropy", "extreme_logits", "finite, exact loss and dz for logits of +/-1e4", weight=2)
def check_ce_extreme_logits(ctx: CheckContext) -> None:
    case = cases.extreme_classification()
    _check_loss(ctx, case)
    _check_dz(ctx, case)


@check("softmax_cross_entropy", "no_mutation", "does not modify z or y")
def check_ce_no_mutation(ctx: CheckContext) -> None:
    case = cases.classification(ctx.sub_seed("mutation"))
    result = ctx.call(*case.args, echo_args=True)
    assert_unchanged(case.args, result.args_after, ("z", "y"), ctx.function)
