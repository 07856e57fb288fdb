"""Checks of softmax, sigmoid and sigmoid_grad."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grader import cases
from grader.checks import shapes
from grader.checks.base import CheckContext, CheckFailed, Passed, check
from grader.checks.diagnosis import diagnose_with, message
from grader.checks.values import as_array, assert_close, assert_unchanged, case_label, conform, finite_or_fail
from grader.truth import bugs, reference

ref_sigmoid = reference.sigmoid
ref_sigmoid_grad = reference.sigmoid_grad
ref_softmax = reference.softmax

OVERFLOW_WARNING = "overflow"

shapes.declare("softmax", shapes.ROWS)
shapes.declare("sigmoid", shapes.ELEMENTWISE)
shapes.declare("sigmoid_grad", shapes.ELEMENTWISE)


def _call_on(ctx: CheckContext, case: cases.Case, expected: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The student's result for a case, of the expected shape (a wrong shape fails here, with the slip named)."""
    result = ctx.call(*case.args)
    what = f"{ctx.function}(x) for {_describe_input(case.args[0])}"
    found = as_array(result.value, what, np.shape(expected), check_shape=False)
    conform(found, np.asarray(expected, dtype=np.float64), ctx.tolerance(), what, case.details)
    return found, result.warnings


def _describe_input(x: object) -> str:
    return f"x of shape {x.shape}" if isinstance(x, np.ndarray) else f"the number x = {x!r}"


def _softmax_diagnosis(x: np.ndarray, ctx: CheckContext) -> Callable[[np.ndarray], str | None]:
    variants = {name: (lambda n=name: bugs.softmax_variant(x, n)) for name in bugs.SOFTMAX_BUGS}
    return lambda found: diagnose_with(found, ref_softmax(x), variants, ctx.tolerance(x.dtype))


def _made_on(diagnose: Callable[[np.ndarray], str | None], result: np.ndarray) -> Callable[[np.ndarray], str | None]:
    """The diagnosis of a quantity derived from a result (such as its row sums), made on the result itself."""
    return lambda _: diagnose(result)


def _grade_softmax(ctx: CheckContext, base: cases.Case, expected: np.ndarray, what: str = "softmax(x)") -> list[str]:
    """Grade softmax on a case in every input form (finite first, then exact); the warnings it emitted."""
    warned: list[str] = []
    tol = ctx.tolerance(base.args[0].dtype)
    for case, target in ctx.every_form(base, expected):
        x = case.args[0]
        found, warnings = _call_on(ctx, case, target)
        warned += warnings
        finite_or_fail(found, what, case.details, message("softmax_no_max_shift"))
        assert_close(found, target, tol, what, case.details, _softmax_diagnosis(x.astype(np.float64), ctx))
    return warned


def _softmax_values(ctx: CheckContext, ndim: int) -> None:
    for seed in ctx.case_seeds():
        case = cases.logits(seed, ndim)
        _grade_softmax(ctx, case, ref_softmax(case.args[0]))


@check("softmax", "values_1d", "values on random 1-D logits", weight=2, forms=("1-D",))
def check_softmax_values_1d(ctx: CheckContext) -> None:
    _softmax_values(ctx, 1)


@check(
    "softmax",
    "values_2d",
    "values on random 2-D batches (one distribution per row)",
    weight=3,
    forms=("2-D",),
)
def check_softmax_values_2d(ctx: CheckContext) -> None:
    _softmax_values(ctx, 2)


@check("softmax", "rows_sum_to_one", "every row is a probability distribution (1-D and 2-D input)", role="property")
def check_softmax_rows_sum_to_one(ctx: CheckContext) -> None:
    base = cases.logits(ctx.sub_seed("rows"), 2)
    for case, target in ctx.every_form(base, ref_softmax(base.args[0])):
        found, _ = _call_on(ctx, case, target)
        finite_or_fail(found, "softmax(x)", case.details)
        if (found < 0).any():
            raise CheckFailed(
                f"softmax(x) has negative entries ({case_label(case.details)}); probabilities are >= 0",
                details=case.details,
            )
        sums = found.sum(axis=-1)
        explain = _made_on(_softmax_diagnosis(case.args[0], ctx), found)
        assert_close(sums, np.ones_like(sums), ctx.tolerance(), "softmax(x).sum(axis=-1)", case.details, explain)


@check("softmax", "shift_invariance", "adding a constant to a row does not change it (large shifts too)")
def check_softmax_shift_invariance(ctx: CheckContext) -> None:
    base = cases.logits(ctx.sub_seed("shift"), 2)
    x = base.args[0]
    shifts = np.linspace(-1000.0, 1000.0, x.shape[0]).reshape(-1, 1)
    case = cases.Case(
        "random 2-D logits shifted by constants up to +/-1000 per row", base.seed, (x + shifts,), names=("x",)
    )
    _grade_softmax(ctx, case, ref_softmax(x), "softmax(x + c)")


@check(
    "softmax",
    "extreme_logits",
    "finite, exact values for logits of +/-1e4 (1-D and 2-D), with no overflow warning",
    weight=2,
)
def check_softmax_extreme_logits(ctx: CheckContext) -> None:
    case = cases.extreme_logits(ctx.sub_seed("extreme"))
    warned = _grade_softmax(ctx, case, ref_softmax(case.args[0]))
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
    _grade_softmax(ctx, case, ref_softmax(case.args[0].astype(np.float64)), "softmax(x) for float32 x")


def _no_mutation(ctx: CheckContext, base: cases.Case) -> None:
    for case, _ in ctx.every_form(base, base.args[0]):
        result = ctx.call(*case.args, echo_args=True)
        assert_unchanged(case.args, result.args_after, ("x",), ctx.function)


@check("softmax", "no_mutation", "does not modify its input", role="property", mutation=True)
def check_softmax_no_mutation(ctx: CheckContext) -> None:
    _no_mutation(ctx, cases.logits(ctx.sub_seed("mutation"), 2))


# --------------------------------------------------------------------------- sigmoid


def _sigmoid_grad_diagnosis(s: np.ndarray | float, ctx: CheckContext) -> Callable[[np.ndarray], str | None]:
    """Which known mistake reproduces sigmoid_grad's result on s (a number or an array of any shape)."""
    flat = np.asarray(s, dtype=np.float64).reshape(-1)
    shape = np.shape(s)
    variants = {
        n: (lambda n=n: np.asarray(bugs.sigmoid_grad_variant(flat, n)).reshape(shape)) for n in bugs.SIGMOID_GRAD_BUGS
    }
    expected = np.asarray(ref_sigmoid_grad(flat)).reshape(shape)
    return lambda found: diagnose_with(found, expected, variants, ctx.tolerance())


def _grade_elementwise(
    ctx: CheckContext, base: cases.Case, expected: np.ndarray, what: str, diagnose: bool = False
) -> list[str]:
    """Grade an elementwise function on a case in every input form; the warnings it emitted."""
    warned: list[str] = []
    for case, target in ctx.every_form(base, expected):
        found, warnings = _call_on(ctx, case, target)
        warned += warnings
        finite_or_fail(found, what, case.details)
        explain = _sigmoid_grad_diagnosis(case.args[0], ctx) if diagnose else None
        assert_close(found, target, ctx.tolerance(), what, case.details, explain)
    return warned


@check("sigmoid", "values", "values on random arrays of every rank (0-d to 3-D)", weight=3)
def check_sigmoid_values(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        case = cases.elementwise(seed)
        _grade_elementwise(ctx, case, ref_sigmoid(case.args[0]), "sigmoid(x)")


@check(
    "sigmoid",
    "extreme_values",
    "finite, exact values for |x| up to 1e4, in arrays of every rank (0-d to 3-D)",
    weight=2,
)
def check_sigmoid_extreme_values(ctx: CheckContext) -> Passed | None:
    case = cases.extreme_elementwise(ctx.sub_seed("extreme"))
    warned = _grade_elementwise(ctx, case, ref_sigmoid(case.args[0]), "sigmoid(x)")
    overflow = [w for w in warned if OVERFLOW_WARNING in w]
    if overflow:
        return Passed(
            f"correct, but it warns ({overflow[0]}); evaluate exp only of non-positive numbers, e.g. "
            "with np.where(x >= 0, 1 / (1 + exp(-x)), exp(x) / (1 + exp(x))) on exp(-|x|)"
        )
    return None


@check("sigmoid", "no_mutation", "does not modify its input", role="property", mutation=True)
def check_sigmoid_no_mutation(ctx: CheckContext) -> None:
    _no_mutation(ctx, cases.elementwise(ctx.sub_seed("mutation")))


# --------------------------------------------------------------------------- sigmoid_grad


@check(
    "sigmoid_grad",
    "values",
    "values as a function of s = sigmoid(x), in arrays of every rank (0-d to 3-D)",
    weight=4,
)
def check_sigmoid_grad_values(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        case = cases.sigmoid_outputs(seed)
        _grade_elementwise(ctx, case, ref_sigmoid_grad(case.args[0]), "sigmoid_grad(s)", diagnose=True)


@check(
    "sigmoid_grad",
    "known_points",
    "hand-worked values: s = 0.5 gives 0.25, s = 0 and s = 1 give 0, s and 1 - s give s (1 - s)",
)
def check_sigmoid_grad_known_points(ctx: CheckContext) -> None:
    rng = ctx.rng("known")
    u = float(rng.uniform(0.05, 0.45))
    order = rng.permutation(5)
    s = np.array([0.5, 0.0, 1.0, u, 1.0 - u])[order]
    expected = np.array([0.25, 0.0, 0.0, u * (1.0 - u), u * (1.0 - u)])[order]  # s * (1 - s) by hand
    case = cases.Case(f"s = {np.round(s, 4).tolist()}", ctx.sub_seed("known"), (s,), names=("s",))
    _grade_elementwise(ctx, case, expected, "sigmoid_grad(s)", diagnose=True)


@check("sigmoid_grad", "no_mutation", "does not modify its input", weight=0.5, role="property", mutation=True)
def check_sigmoid_grad_no_mutation(ctx: CheckContext) -> None:
    _no_mutation(ctx, cases.sigmoid_outputs(ctx.sub_seed("mutation")))
