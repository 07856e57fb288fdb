"""Checks of softmax, sigmoid and sigmoid_grad."""

from __future__ import annotations

import numpy as np

from grader import cases
from grader.checks.base import CheckContext, CheckFailed, Passed, check
from grader.checks.diagnosis import diagnose_with, message
from grader.checks.values import as_array, assert_close, assert_unchanged, case_label, finite_or_fail
from reference import bugs
from reference import sigmoid as ref_sigmoid
from reference import sigmoid_grad as ref_sigmoid_grad
from reference import softmax as ref_softmax

OVERFLOW_WARNING = "overflow"


def _call_on(ctx: CheckContext, case: cases.Case, echo: bool = False) -> tuple[np.ndarray, list[str]]:
    result = ctx.call(*case.args, echo_args=echo)
    x = case.args[0]
    return as_array(result.value, f"{ctx.function}(x) for x of shape {x.shape}", x.shape), result.warnings


def _softmax_diagnosis(x: np.ndarray, ctx: CheckContext):  # type: ignore[no-untyped-def]
    variants = {name: (lambda n=name: bugs.softmax_variant(x, n)) for name in bugs.SOFTMAX_BUGS}
    return lambda found: diagnose_with(found, ref_softmax(x), variants, ctx.tolerance(x.dtype))


def _softmax_values(ctx: CheckContext, ndim: int) -> None:
    for seed in ctx.case_seeds():
        case = cases.logits(seed, ndim)
        x = case.args[0]
        found, _ = _call_on(ctx, case)
        assert_close(found, ref_softmax(x), ctx.tolerance(), "softmax(x)", case.details, _softmax_diagnosis(x, ctx))


@check("softmax", "values_1d", "values on random 1-D logits", weight=2, randomized=True)
def check_softmax_values_1d(ctx: CheckContext) -> None:
    _softmax_values(ctx, 1)


@check("softmax", "values_2d", "values on random 2-D batches (one distribution per row)", weight=3, randomized=True)
def check_softmax_values_2d(ctx: CheckContext) -> None:
    _softmax_values(ctx, 2)


@check("softmax", "rows_sum_to_one", "every row is a probability distribution", role="property")
def check_softmax_rows_sum_to_one(ctx: CheckContext) -> None:
    case = cases.logits(ctx.sub_seed("rows"), 2)
    found, _ = _call_on(ctx, case)
    finite_or_fail(found, "softmax(x)", case.details)
    if (found < 0).any():
        raise CheckFailed(
            f"softmax(x) has negative entries ({case_label(case.details)}); probabilities are >= 0",
            details=case.details,
        )
    sums = found.sum(axis=-1)
    diagnose = _softmax_diagnosis(case.args[0], ctx)
    assert_close(
        sums, np.ones_like(sums), ctx.tolerance(), "softmax(x).sum(axis=-1)", case.details, lambda _: diagnose(found)
    )


@check("softmax", "shift_invariance", "adding a constant to a row does not change it (large shifts too)")
def check_softmax_shift_invariance(ctx: CheckContext) -> None:
    base = cases.logits(ctx.sub_seed("shift"), 2)
    x = base.args[0]
    shifts = np.linspace(-1000.0, 1000.0, x.shape[0]).reshape(-1, 1)
    case = cases.Case(
        "random 2-D logits shifted by constants up to +/-1000 per row", base.seed, (x + shifts,), names=("x",)
    )
    found, _ = _call_on(ctx, case)
    finite_or_fail(found, "softmax(x + c)", case.details, message("softmax_no_max_shift"))
    assert_close(
        found, ref_softmax(x), ctx.tolerance(), "softmax(x + c)", case.details, _softmax_diagnosis(x + shifts, ctx)
    )


@check("softmax", "extreme_logits", "finite, exact values for logits of +/-1e4, with no overflow warning", weight=2)
def check_softmax_extreme_logits(ctx: CheckContext) -> None:
    case = cases.extreme_logits()
    x = case.args[0]
    found, warned = _call_on(ctx, case)
    if not np.isfinite(found).all():
        raise CheckFailed(
            f"softmax(x) returns NaN/inf for {case.label}",
            diagnosis=message("softmax_no_max_shift"),
            details=case.details,
        )
    assert_close(found, ref_softmax(x), ctx.tolerance(), "softmax(x)", case.details, _softmax_diagnosis(x, ctx))
    overflow = [w for w in warned if OVERFLOW_WARNING in w]
    if overflow:
        raise CheckFailed(
            f"softmax(x) gives the right values for {case.label} but warns: {overflow[0]}",
            diagnosis=message("softmax_no_max_shift"),
            details=case.details,
        )


@check("softmax", "float32", "float32 input (logits up to 100, where float32 exp overflows)")
def check_softmax_float32(ctx: CheckContext) -> None:
    case = cases.logits(ctx.sub_seed("float32"), 2, dtype=np.float32, scale=40.0)
    x = case.args[0]
    found, _ = _call_on(ctx, case)
    finite_or_fail(found, "softmax(x) for float32 x", case.details, message("softmax_no_max_shift"))
    assert_close(
        found,
        ref_softmax(x.astype(np.float64)),
        ctx.tolerance(np.float32),
        "softmax(x) for float32 x",
        case.details,
        _softmax_diagnosis(x.astype(np.float64), ctx),
    )


def _no_mutation(ctx: CheckContext, case: cases.Case) -> None:
    result = ctx.call(*case.args, echo_args=True)
    assert_unchanged(case.args, result.args_after, ("x",), ctx.function)


@check("softmax", "no_mutation", "does not modify its input", role="property")
def check_softmax_no_mutation(ctx: CheckContext) -> None:
    _no_mutation(ctx, cases.logits(ctx.sub_seed("mutation"), 2))


# --------------------------------------------------------------------------- sigmoid


@check("sigmoid", "values", "values on random arrays of any shape", weight=3, randomized=True)
def check_sigmoid_values(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        case = cases.elementwise(seed)
        found, _ = _call_on(ctx, case)
        assert_close(found, ref_sigmoid(case.args[0]), ctx.tolerance(), "sigmoid(x)", case.details)


@check("sigmoid", "extreme_values", "finite, exact values for |x| up to 1e4", weight=2)
def check_sigmoid_extreme_values(ctx: CheckContext) -> Passed | None:
    case = cases.extreme_elementwise()
    found, warned = _call_on(ctx, case)
    finite_or_fail(found, "sigmoid(x)", case.details)
    assert_close(found, ref_sigmoid(case.args[0]), ctx.tolerance(), "sigmoid(x)", case.details)
    overflow = [w for w in warned if OVERFLOW_WARNING in w]
    if overflow:
        return Passed(
            f"correct, but it warns ({overflow[0]}); evaluate exp only of non-positive numbers, e.g. "
            "with np.where(x >= 0, 1 / (1 + exp(-x)), exp(x) / (1 + exp(x))) on exp(-|x|)"
        )
    return None


@check("sigmoid", "no_mutation", "does not modify its input", role="property")
def check_sigmoid_no_mutation(ctx: CheckContext) -> None:
    _no_mutation(ctx, cases.elementwise(ctx.sub_seed("mutation")))


# --------------------------------------------------------------------------- sigmoid_grad


def _sigmoid_grad_diagnosis(s: np.ndarray, ctx: CheckContext):  # type: ignore[no-untyped-def]
    variants = {name: (lambda n=name: bugs.sigmoid_grad_variant(s, n)) for name in bugs.SIGMOID_GRAD_BUGS}
    return lambda found: diagnose_with(found, ref_sigmoid_grad(s), variants, ctx.tolerance())


@check("sigmoid_grad", "values", "values as a function of s = sigmoid(x)", weight=4, randomized=True)
def check_sigmoid_grad_values(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        case = cases.sigmoid_outputs(seed)
        s = case.args[0]
        found, _ = _call_on(ctx, case)
        assert_close(
            found,
            ref_sigmoid_grad(s),
            ctx.tolerance(),
            "sigmoid_grad(s)",
            case.details,
            _sigmoid_grad_diagnosis(s, ctx),
        )


@check("sigmoid_grad", "known_points", "hand-worked values: s = 0.5 gives 0.25, s = 0 and s = 1 give 0")
def check_sigmoid_grad_known_points(ctx: CheckContext) -> None:
    s = np.array([0.5, 0.0, 1.0, 0.1, 0.9])
    expected = np.array([0.25, 0.0, 0.0, 0.09, 0.09])  # s * (1 - s) by hand
    case = cases.Case("s = [0.5, 0, 1, 0.1, 0.9]", 0, (s,), names=("s",))
    found, _ = _call_on(ctx, case)
    assert_close(found, expected, ctx.tolerance(), "sigmoid_grad(s)", case.details, _sigmoid_grad_diagnosis(s, ctx))


@check("sigmoid_grad", "no_mutation", "does not modify its input", weight=0.5, role="property")
def check_sigmoid_grad_no_mutation(ctx: CheckContext) -> None:
    _no_mutation(ctx, cases.sigmoid_outputs(ctx.sub_seed("mutation")))
