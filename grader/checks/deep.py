"""Checks of deep_mlp_loss(X, y, params, reg) -> (loss, grads): a network of L hidden layers (the assignment's
[reference] hidden_layers and activation) with parameters W1, b1, ..., W(L+1), b(L+1).

Each layer's dW and db is a check of its own, weighted so that the gradients keep the same share of the problem's
points whatever the depth. A wrong gradient is localized: the student's gradients are compared with the reference
layer by layer from the output down, and the cause at the first wrong layer is found by reproducing it with a
mistake made at that layer (reference.deep_bugs). Self-consistency costs a few calls whatever the depth (central
differences of the student's own loss along random directions of all the parameters at once), and credit is
carried forward by grader.checks.ownloss's rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from grader import cases
from grader.assignment import MAX_HIDDEN_LAYERS, Assignment, Tolerance
from grader.checks import ownloss
from grader.checks.base import CheckContext, CheckFailed, check, derive_seed
from grader.checks.diagnosis import applies, bug_sets, first_match, message, nonfinite_loss
from grader.checks.directions import directional_derivatives
from grader.checks.mlp import LARGE_SCORES
from grader.checks.values import (
    as_float,
    as_pair,
    as_param_dict,
    assert_close,
    assert_loss_close,
    assert_unchanged,
    finite_or_fail,
    is_close,
)
from grader.truth import NotLocal, deep_bugs, reference

MLPSpec, forward, loss_and_grads = reference.MLPSpec, reference.forward, reference.loss_and_grads
KIND = "deep_mlp_loss"
GRADIENT_WEIGHTS = {"W": 8.0, "b": 4.0}  # split evenly among the layers: a deeper net keeps the same share
WIDTHS = (2, 13)  # batch size and layer widths are drawn distinct from this range (extended for deep nets)
DIRECTIONS = 3  # random directions of the self-consistency check: 1 + 2 * DIRECTIONS calls whatever the depth
STEP = {"float64": (1e-5, 1e-5), "float32": (1e-2, 5e-2)}  # (finite-difference step, relative tolerance)

_DERIVATIVE = {"relu": "1 where a > 0, else 0", "sigmoid": "h * (1 - h)", "tanh": "1 - h**2"}
CAUSES = {
    "derivative_of_input": "the activation derivative at layer {k} is computed from a^({k}) instead of h^({k}): "
    "g'(a^({k})) written in the output is {derivative} with h = h^({k}) = g(a^({k})); that formula applied to "
    "a^({k}) is not the derivative",
    "derivative_of_output": "the activation derivative at layer {k} uses h instead of a: g' is applied to the output "
    "h^({k}) (g'(g(a))); it is g'(a^({k})), which in the output is {derivative}",
    "mask_from_upstream": "the ReLU mask at layer {k} is taken from the upstream gradient (dh > 0); it must come from "
    "the forward pass: a^({k}) > 0",
    "mask_missing": "the activation derivative at layer {k} is missing: multiply the gradient of h^({k}) by "
    "g'(a^({k})) = {derivative}",
    "upstream_not_transposed": "the gradient brought down to h^({k}) multiplies by W{above} instead of its "
    "transpose (W{above} is square, so the shapes do not show it)",
    "weight_grad_from_layer_below": "dW{k} is built from h^({below}) instead of h^({previous}): the layer index is off "
    "by one",
    "weight_grad_from_layer_above": "dW{k} is built from h^({k}) instead of h^({previous}): the layer index is off by "
    "one",
    "missing_1_over_n": "every layer's gradient is wrong by the same factor N (here {n}): the gradient at the output "
    "pre-activation lacks 1/N; the loss averages over the mini-batch, so it is -(e(y) - f(x)) / N",
    "transposed": "dW{k} is transposed: return it in the shape of W{k}",
    "bias_not_summed": "db{k} is not summed over the mini-batch: it is the sum of layer {k}'s pre-activation "
    "gradients over the examples",
}
# The L2 mistakes in the words of a net of any depth (grader.checks.diagnosis speaks of W1 and W2); the others as
# the diagnosis says them.
L2_WORDS = {
    "reg_missing_from_loss": "the L2 penalty {penalty} is missing from the loss",
    "reg_without_half": "the L2 penalty lacks its factor 0.5: it is {penalty}",
    "reg_extra_half": "the L2 penalty has a factor 0.5 too many: in this assignment it is {penalty}",
    "reg_on_biases": "the biases are regularized: the L2 penalty applies to the weights W1 ... W{depth} only",
    "reg_missing": "the regularization gradient {gradient} is missing from every dW",
}
EVERY_LAYER = " (the same mistake is made at every layer below it too)"
UNKNOWN_CAUSE = "the grader does not recognize the mistake: compare that layer's backward step with the recursion"
LOCALIZED = "{right}layer {k}{output}'s {which} {verb} wrong: {cause}"
WRONG_SHAPE = "d{name} has shape {found}; a gradient has the shape of its parameter, {expected}"
NOT_CONSISTENT = (
    "your gradient is not the derivative of your own loss: along a random direction v of all the parameters, "
    "(L(θ + εv) - L(θ - εv)) / 2ε = {numeric:.8g} but grads · v = {analytic:.8g} (relative error {error:.2g}, "
    "tolerance {tolerance:g}); the backward pass does not differentiate your forward pass"
)


def words(mistake: str, activation: str, l2_scale: float, depth: int) -> str:
    """A known mistake (or '+'-joined pair) as a message, the L2 ones over every layer's weights."""
    penalty = f"{l2_scale:g} * reg * (sum(W1**2) + ... + sum(W{depth}**2))"
    gradient = "reg * W" if l2_scale == 0.5 else f"{2 * l2_scale:g} * reg * W"
    return "; and ".join(
        L2_WORDS[m].format(penalty=penalty, gradient=gradient, depth=depth)
        if m in L2_WORDS
        else message(m, activation, l2_scale=l2_scale)
        for m in mistake.split("+")
    )


def _depth(assignment: Assignment) -> int:
    return assignment.hidden_layers + 1


def _names(depth: int) -> list[str]:
    return [f"{p}{k}" for k in range(1, depth + 1) for p in "Wb"]


def _l2(ctx: CheckContext) -> float:
    return ctx.problem.binding.l2_scale


# --------------------------------------------------------------------------- cases


def _biases(rng: np.random.Generator, s: np.ndarray, activation: str) -> np.ndarray:
    """Biases of a layer whose pre-activation without them is s; for ReLU every pre-activation stays KINK_MARGIN
    away from 0 (finite differences never straddle a kink)."""
    b = np.asarray(rng.standard_normal(s.shape[1])) * 0.5
    for j in range(len(b) if activation == "relu" else 0):
        for _ in range(200):
            if np.abs(s[:, j] + b[j]).min() >= cases.KINK_MARGIN:
                break
            b[j] = rng.standard_normal() * 0.5
    return b


def make_case(
    seed: int, layers: int, reg: float, activation: str, square: bool = False, batch: int | None = None
) -> cases.Case:
    """A random problem for a net of `layers` hidden layers: batch size and widths all different (a wrong axis or
    a transpose shows as a wrong shape), or with one square hidden weight matrix (W_k with k >= 2, or W1 when L = 1)
    so that a transpose does not; for ReLU, every layer has units on both sides of 0, away from the kink."""
    rng = np.random.default_rng(seed)
    n, *sizes = (int(v) for v in rng.permutation(np.arange(WIDTHS[0], WIDTHS[1] + layers))[: layers + 3])
    if square:
        k = int(rng.integers(2, layers + 1)) if layers >= 2 else 1
        sizes[k] = sizes[k - 1]
    n = batch or n
    for _ in range(100):
        x = rng.standard_normal((n, sizes[0]))
        params, h, mixed = {}, x, True
        for k in range(1, len(sizes)):
            w = rng.standard_normal((sizes[k - 1], sizes[k])) / np.sqrt(sizes[k - 1])
            params[f"W{k}"], params[f"b{k}"] = w, _biases(rng, h @ w, activation)
            a = h @ w + params[f"b{k}"]
            mixed = mixed and (k == len(sizes) - 1 or ((a < 0).any() and (a > 0).any()) or n == 1)
            h = deep_bugs._hidden(a, activation)
        if activation != "relu" or mixed:
            break
    y = rng.integers(0, sizes[-1], size=n).astype(np.int64)
    shape = "-".join(map(str, sizes))
    label = f"random problem with layer widths {shape}" + (" (a square layer)" if square else "")
    label += f", batch of {n}" if batch else ""
    return cases.Case(
        label,
        seed,
        (x, y, params, float(reg)),
        {"reg": float(reg), "N": n, "widths": shape},
        ("X", "y", "params", "reg"),
    )


def _case(ctx: CheckContext, seed: int, reg: float | None = None, **kwargs: Any) -> cases.Case:
    a = ctx.assignment
    return make_case(seed, a.hidden_layers, a.reg if reg is None else reg, a.activation, **kwargs)


def _details(ctx: CheckContext, case: cases.Case) -> dict[str, Any]:
    """The case as a report names it, its shapes in the student's convention (X and every W transposed in the
    column convention)."""
    details = case.details
    if ctx.problem.binding.convention == "column":
        turned = {k: v[::-1] if k == "X" or k.startswith("W") else v for k, v in details["shapes"].items()}
        details["shapes"] = turned
    return details


def _shapes(case: cases.Case) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in case.args[2].items()}


def _reference(ctx: CheckContext, case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
    x, y, params, reg = case.args
    sizes = (x.shape[1], *(params[f"W{k}"].shape[1] for k in range(1, deep_bugs.depth(params) + 1)))
    loss, grads = loss_and_grads(x, y, params, MLPSpec(sizes, ctx.assignment.activation, ctx.assignment.reduction, reg))
    return loss, {k: np.asarray(grads[k]) for k in params}


def _answer(ctx: CheckContext, value: Any, case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
    loss, grads = as_pair(value, ctx.signature)
    return as_float(loss, "the loss"), as_param_dict(grads, "the gradient dict", _shapes(case))


def _student(ctx: CheckContext, case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
    """The student's (loss, grads) for a case, called once and shared by every check of the problem."""
    return _answer(ctx, ctx.memo_call(("deep", case.seed, case.label, case.args[3]), *case.args).value, case)


# --------------------------------------------------------------------------- localizing a wrong layer


def _agrees(found: np.ndarray, expected: np.ndarray, tol: Tolerance) -> bool:
    return found.shape == expected.shape and is_close(found, expected, tol)


def _shape_cause(found: np.ndarray, expected: np.ndarray, name: str, n: int, tol: Tolerance) -> str | None:
    """A mistake that shows in the shape (or, for a square W, in a transpose of the values)."""
    if name.startswith("W") and found.shape == expected.shape[::-1] and found.shape != expected.shape:
        return "transposed"
    if name.startswith("W") and expected.shape[0] == expected.shape[1] and _agrees(found, expected.T, tol):
        return "transposed"
    if name.startswith("b") and found.shape != expected.shape and (found.ndim == 2 or found.shape == (n,)):
        return "bias_not_summed"
    return None


def _candidates(activation: str, reduction: str, l2_scale: float, layer: int) -> list[tuple[str, Any]]:
    """(mistake, layers it is made at) to try: the same-everywhere mistakes, then each layer mistake at `layer`."""
    same = [(b, None) for b in deep_bugs.GRADIENT_BUGS if applies(b, activation, reduction, l2_scale)]
    return same + [(b, (layer,)) for b in deep_bugs.LAYER_BUGS if deep_bugs.applies(b, activation)]


def localize(
    found: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    args: tuple[Any, ...],
    activation: str,
    reduction: str,
    tol: Tolerance,
    l2_scale: float = 0.5,
) -> str | None:
    """'layers 3 and 4 are right; layer 2's dW is wrong: <cause>', from the output down (None: every layer right)."""
    x, y, params, reg = args
    depth = deep_bugs.depth(params)
    for k in range(depth, 0, -1):
        wrong = [p for p in "Wb" if not _agrees(found[f"{p}{k}"], expected[f"{p}{k}"], tol)]
        if wrong:
            break
    else:
        return None
    n = np.shape(x)[0]
    cause = next(
        (c for p in wrong if (c := _shape_cause(found[f"{p}{k}"], expected[f"{p}{k}"], f"{p}{k}", n, tol))), None
    )
    every = ""
    if cause is None:
        best: tuple[int, str, Any] | None = None
        for bug, layers in _candidates(activation, reduction, l2_scale, k):
            try:
                variant = deep_bugs.loss_and_grads(x, y, params, activation, reduction, float(reg), (bug,), layers)[1]
            except (ValueError, IndexError, NotLocal):
                continue  # the mistake cannot be made here (a non-square W, a layer beyond the net), or not recorded
            names = [f"{p}{k}" for p in wrong]
            if any(not _agrees(found[m], variant[m], tol) or _agrees(variant[m], expected[m], tol) for m in names):
                continue
            agree = sum(_agrees(found[m], variant[m], tol) for m in found)
            if best is None or agree > best[0]:
                best = (agree, bug, layers)
        if best is not None:
            _, cause, layers = best
            if layers is not None and best[0] < len(found):
                try:
                    everywhere = deep_bugs.loss_and_grads(x, y, params, activation, reduction, float(reg), (cause,))[1]
                    every = EVERY_LAYER if all(_agrees(found[m], everywhere[m], tol) for m in found) else ""
                except (ValueError, IndexError, NotLocal):
                    pass
    count = depth - k
    right = (
        ""
        if count == 0
        else f"layer {depth} is right; "
        if count == 1
        else f"layers {', '.join(map(str, range(k + 1, depth)))} and {depth} are right; "
    )
    text = (
        CAUSES[cause].format(
            k=k,
            above=k + 1,
            below=(k - 2) % depth,
            previous=k - 1,
            n=n,
            derivative=_DERIVATIVE[activation],
        )
        if cause in CAUSES
        else words(cause, activation, l2_scale, depth)
        if cause
        else UNKNOWN_CAUSE
    )
    return LOCALIZED.format(
        right=right,
        k=k,
        output=" (the output layer)" if k == depth else "",
        which=" and ".join(f"d{p}" for p in wrong),
        verb="is" if len(wrong) == 1 else "are",
        cause=text + every,
    )


# --------------------------------------------------------------------------- loss


def _loss_mistakes(ctx: CheckContext) -> list[tuple[str, ...]]:
    a = ctx.assignment
    return bug_sets(b for b in deep_bugs.LOSS_BUGS if applies(b, a.activation, a.reduction, _l2(ctx)))


def _check_loss_value(ctx: CheckContext, case: cases.Case) -> None:
    expected, _ = _reference(ctx, case)
    found, _ = _student(ctx, case)
    a = ctx.assignment
    x, y, params, reg = case.args

    def variant(combo: tuple[str, ...]) -> Callable[[], np.ndarray]:
        return lambda: np.asarray(deep_bugs.loss_and_grads(x, y, params, a.activation, a.reduction, reg, combo)[0])

    def diagnose(value: float) -> str | None:
        candidates = (("+".join(c), variant(c)) for c in _loss_mistakes(ctx))
        hit = first_match(np.asarray(value), candidates, np.asarray(expected), ctx.tolerance())
        return words(hit, a.activation, _l2(ctx), _depth(a)) if hit else None

    assert_loss_close(found, expected, ctx.tolerance(), _details(ctx, case), diagnose, nonfinite_loss)


@check(KIND, "loss_value", "loss value (cross-entropy averaged over the mini-batch plus L2 penalty)", weight=3)
def check_loss_value(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _check_loss_value(ctx, _case(ctx, seed))


@check(KIND, "loss_without_reg", "loss value with reg = 0 (data loss alone)")
def check_loss_without_reg(ctx: CheckContext) -> None:
    _check_loss_value(ctx, _case(ctx, ctx.sub_seed("noreg"), reg=0.0))


# --------------------------------------------------------------------------- gradients, layer by layer


def _known_losses(ctx: CheckContext) -> list[ownloss.KnownLoss]:
    """The reference loss and every known mistake of it, each with its exact gradient."""
    a = ctx.assignment

    def compute(combo: tuple[str, ...]) -> Any:
        return lambda args: deep_bugs.consistent_loss_and_grads(
            args[0], args[1], args[2], a.activation, a.reduction, float(args[3]), combo
        )

    return ownloss.known_losses(_loss_mistakes(ctx), compute, lambda m: words(m, a.activation, _l2(ctx), _depth(a)))


def _verdict(ctx: CheckContext) -> ownloss.Verdict:
    """Once per submission: which known loss the student computes, and whether the gradients are exact for it."""

    def student(case: cases.Case) -> tuple[float, dict[str, np.ndarray]]:
        return _answer(ctx, ctx.call(*case.args).value, case)

    return ownloss.verdict(ctx, lambda seed: _case(ctx, seed), student, _known_losses(ctx), "your gradient")


def _localized(ctx: CheckContext, case: cases.Case, grads: dict[str, np.ndarray]) -> str | None:
    """The localization of this case's wrong gradients, computed once per case."""
    key = ("deep localization", ctx.problem.name, case.seed, case.label)
    if key not in ctx.memo:
        _, expected = _reference(ctx, case)
        a = ctx.assignment
        ctx.memo[key] = localize(grads, expected, case.args, a.activation, a.reduction, ctx.tolerance(), _l2(ctx))
    result = ctx.memo[key]
    return result if isinstance(result, str) else None


def _check_gradient(ctx: CheckContext, case: cases.Case, name: str) -> None:
    """Pass when grads[name] matches the reference; fail with capped credit when it is carried forward."""
    _, expected = _reference(ctx, case)
    loss, grads = _student(ctx, case)
    if _agrees(grads[name], expected[name], ctx.tolerance()):
        return
    view = functools.partial(ctx.problem.binding.student_param, name)  # messages speak the student's convention
    try:
        assert_close(
            view(grads[name]),
            view(expected[name]),
            ctx.tolerance(),
            f"d{name}",
            _details(ctx, case),
            lambda _: _localized(ctx, case, grads),
        )
    except CheckFailed as failure:
        raise ownloss.carry(
            ctx, failure, lambda: _verdict(ctx), _known_losses(ctx), case.args, (loss, grads), name
        ) from None


def _grade_gradients(ctx: CheckContext, items: list[tuple[cases.Case, str]]) -> None:
    ownloss.grade_gradients(functools.partial(_check_gradient, ctx, case, name) for case, name in items)


def _layer_weight(prefix: str, layer: int) -> Callable[[Assignment], float]:
    """The weight of layer `layer`'s d<prefix> check: its share of the gradients' weight (0 beyond the net)."""
    return lambda a: GRADIENT_WEIGHTS[prefix] / _depth(a) if layer <= _depth(a) else 0.0


def _gradient_check(name: str) -> Callable[[CheckContext], None]:
    def run(ctx: CheckContext) -> None:
        _grade_gradients(ctx, [(_case(ctx, seed), name) for seed in ctx.case_seeds()])

    run.__name__ = f"check_grad_{name}"
    run.__doc__ = f"d{name} matches the reference on random problems."
    return run


for _layer in range(1, MAX_HIDDEN_LAYERS + 2):
    for _prefix in "Wb":
        _name = f"{_prefix}{_layer}"
        check(KIND, f"grad_{_name}", f"gradient d{_name}", weight=_layer_weight(_prefix, _layer))(
            _gradient_check(_name)
        )


@check(KIND, "square_layer", "every gradient with a square hidden weight matrix (a transpose has the right shape)")
def check_square_layer(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("square"), square=True)
    _grade_gradients(ctx, [(case, name) for name in _names(_depth(ctx.assignment))])


@check(KIND, "batch_of_one", "loss and every gradient for a mini-batch of a single example")
def check_batch_of_one(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("one"), batch=1)
    _check_loss_value(ctx, case)
    _grade_gradients(ctx, [(case, name) for name in _names(_depth(ctx.assignment))])


# --------------------------------------------------------------------------- properties


@check(
    KIND,
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
    KIND,
    "directional_derivatives",
    f"finite differences of your own loss along {DIRECTIONS} random directions agree with your gradient",
    role="property",
    seeded=False,
)
def check_directional_derivatives(ctx: CheckContext) -> None:
    """(L(θ + εv) - L(θ - εv)) / 2ε against grads · v on a fresh problem: 1 + 2 * DIRECTIONS calls at any depth."""
    case = _case(ctx, derive_seed(ctx.probe_seed, ctx.problem.name, "directions"))
    x, y, params, reg = case.args
    _, grads = _answer(ctx, ctx.call(*case.args).value, case)
    view = ctx.problem.binding.student_param  # shapes as the student's convention has them
    for name, g in grads.items():
        if g.shape != params[name].shape:
            shapes = {"found": view(name, g).shape, "expected": view(name, params[name]).shape}
            raise CheckFailed(WRONG_SHAPE.format(name=name, **shapes))
    names = list(params)
    sizes = np.cumsum([params[k].size for k in names])[:-1]

    def loss(theta: np.ndarray) -> float:
        moved = {k: v.reshape(params[k].shape) for k, v in zip(names, np.split(theta, sizes), strict=True)}
        return _answer(ctx, ctx.call(x, y, moved, reg).value, case)[0]

    step, tolerance = STEP[ctx.problem.binding.dtype or "float64"]
    theta = np.concatenate([params[k].ravel() for k in names])
    seed = derive_seed(ctx.probe_seed, ctx.problem.name, "direction")
    directions, numeric = directional_derivatives(loss, theta, DIRECTIONS, seed, step)
    analytic = directions @ np.concatenate([grads[k].ravel() for k in names])
    for fd, an in zip(numeric, analytic, strict=True):
        error = abs(fd - an) / max(abs(fd) + abs(an), 1e-8)
        if not error <= tolerance:
            raise CheckFailed(NOT_CONSISTENT.format(numeric=fd, analytic=an, error=error, tolerance=tolerance))


def _large_scores_case(ctx: CheckContext) -> cases.Case:
    """A random problem (reg = 0) whose output layer is scaled so that the largest score is +LARGE_SCORES, the
    example with it labelled with its smallest score (a probability that underflows to 0)."""
    base = _case(ctx, ctx.sub_seed("large"), reg=0.0)
    x, y, params, reg = base.args
    depth = _depth(ctx.assignment)
    sizes = (x.shape[1], *(params[f"W{k}"].shape[1] for k in range(1, depth + 1)))
    scores, _ = forward(x, params, MLPSpec(sizes, ctx.assignment.activation, ctx.assignment.reduction))
    scale = LARGE_SCORES / float(scores.flat[int(np.argmax(np.abs(scores)))])
    large = {**params, f"W{depth}": params[f"W{depth}"] * scale, f"b{depth}": params[f"b{depth}"] * scale}
    row, _ = np.unravel_index(int(np.argmax(scores * scale)), scores.shape)
    y = y.copy()
    y[row] = int(np.argmin(scores[row] * scale))
    label = f"{base.label} with W{depth} and b{depth} scaled by {scale:.4g} (scores up to {LARGE_SCORES:g}), reg = 0"
    return cases.Case(label, base.seed, (x, y, large, reg), {**base.extra, "scale": scale}, base.names)


@check(
    KIND,
    "large_scores",
    f"finite loss and gradients for scores up to {LARGE_SCORES:g}, the loss equal to yours at moderate scores",
    weight=2,
    role="property",
)
def check_large_scores(ctx: CheckContext) -> None:
    """Stability alone: the loss at scores of 1000 must be the one the submission computes at moderate scores."""
    case = _large_scores_case(ctx)
    found, grads = _student(ctx, case)
    identified = _verdict(ctx).loss
    known = {k.name: k for k in _known_losses(ctx)}
    expected = known[identified or ownloss.REFERENCE].compute(case.args)[0]
    overflowed = not all(np.isfinite(g).all() for g in grads.values())
    unstable = message("softmax_no_max_shift") if overflowed else message("loss_unstable")

    def nonfinite(value: float) -> str | None:
        """An overflow explains it only when the loss is right at moderate scores."""
        return None if identified is None else unstable if overflowed else nonfinite_loss(value)

    assert_loss_close(
        found,
        expected,
        ctx.tolerance(),
        _details(ctx, case),
        lambda _: None if identified is None else unstable,
        nonfinite,
    )
    for name, g in grads.items():
        finite_or_fail(g, f"d{name}", _details(ctx, case), message("softmax_no_max_shift"))


@check(KIND, "no_mutation", "does not modify X, y or params", role="property", mutation=True)
def check_no_mutation(ctx: CheckContext) -> None:
    case = _case(ctx, ctx.sub_seed("mutation"))
    result = ctx.call(*case.args, echo_args=True)
    assert_unchanged(case.args, result.args_after, ("X", "y", "params"), ctx.function)
