"""Is a student's gradient the exact gradient of the loss they computed? The rule behind credit carried forward.

A gradient that differs from the reference may still be a right backward pass of a wrong forward pass.
Judging that from the student's own answers to probing calls can be farmed (a constant gradient and a loss
that is linear around the first point it saw are perfectly "consistent"), so the grader never trusts the
student's loss as the ground truth. Instead, once per submission and problem:

1. It draws fresh problems (new inputs and parameters, same distribution as the graded cases) from the
   probe seed, which comes from the secret hidden seed; each is an independent point, never a perturbation
   of an earlier call, and the student is called once on each.
2. It identifies the student's loss on every fresh problem among the losses it can compute itself: the
   reference and the known mistakes of ``reference.bugs`` (singles and compatible pairs).
3. It compares every returned gradient with the exact gradient of that identified loss, computed by the
   grader. All gradients of the backward pass together: one verdict for all of them.

Credit is carried only when the identified loss is a known *mistake* and the whole backward pass is its
exact gradient, on the fresh problems and on the graded case itself; it is capped by the assignment's
``[scoring] carried_credit``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader import cases, truth
from grader.checks.base import CheckContext, CheckFailed
from grader.checks.values import same_values
from grader.truth import NotLocal

FRESH_PROBLEMS = 3
REFERENCE = ""  # the name of the reference among the known losses (a mistake is '+'-joined bug names)

UNKNOWN_LOSS = (
    "your loss matches neither the reference nor any known mistake on fresh random problems, so the grader "
    "cannot confirm which loss your gradient is the gradient of; compute the loss as specified"
)
NOT_OWN_GRADIENT = (
    "{what} is not the gradient of your own loss: on fresh random problems your loss is {loss}, "
    "but {what} differs from the exact gradient of that loss; check the backward pass against your forward pass"
)
PROBE_FAILED = "on a fresh random problem, {message}"
CARRIED = (
    "d{name} differs from the reference, but your whole backward pass is the exact gradient of your own loss, "
    "which is {loss}: credit carried forward, {share:.0%} of this check's points (fix the loss for the rest)"
)

Gradients = dict[str, np.ndarray]
StudentCall = Callable[[cases.Case], tuple[float, Gradients]]


@dataclass(frozen=True)
class KnownLoss:
    """A loss the grader computes with its exact gradient: the reference, or a named mistake ('a+b' for two)."""

    name: str
    compute: Callable[[tuple[Any, ...]], tuple[float, Gradients]]
    words: str = ""  # the mistake as the kind's diagnoses say it (empty for the reference)


@dataclass(frozen=True)
class Verdict:
    """The judgment of one submission's backward pass, made once on fresh problems."""

    loss: str | None  # the known loss that reproduces the student's on every fresh problem (None: none does)
    exact: bool  # every returned gradient is that loss's exact gradient on every fresh problem
    reason: str = ""  # why not, for messages

    @property
    def carries(self) -> bool:
        """Credit may be carried forward: an exact backward pass of a known wrong loss."""
        return self.exact and self.loss not in (None, REFERENCE)


def known_losses(
    mistakes: Iterable[tuple[str, ...]],
    compute: Callable[[tuple[str, ...]], Callable[[tuple[Any, ...]], tuple[float, Gradients]]],
    words: Callable[[str], str],
) -> list[KnownLoss]:
    """The reference loss, then each known mistake (a tuple of names: one, or a compatible pair), each with its
    exact gradient (`compute(mistake)`) and its words (`words("a+b")`, as the kind's diagnoses say it).

    While the reference's answers are recorded (grader.truth), computing one of them on some inputs computes all
    of them there: a students' install replaying the record then knows whichever loss a submission turns out to
    have, on every fresh problem and graded case, not only the losses of the submissions recorded."""
    computes = [compute(m) for m in [(), *mistakes]]
    expanded: list[tuple[Any, ...]] = []  # the inputs every known loss was computed on (kept alive: keyed by id)

    def eager(own: Callable[[tuple[Any, ...]], tuple[float, Gradients]]) -> Callable[..., tuple[float, Gradients]]:
        def run(args: tuple[Any, ...]) -> tuple[float, Gradients]:
            if truth.recording_now() and all(args is not seen for seen in expanded):
                expanded.append(args)
                for other in computes:
                    with contextlib.suppress(Exception):  # a mistake that cannot be made here is asked for nowhere
                        other(args)
            return own(args)

        return run

    return [
        KnownLoss("+".join(m), eager(c), words("+".join(m)) if m else "")
        for m, c in zip([(), *mistakes], computes, strict=True)
    ]


def describe(loss: KnownLoss) -> str:
    """'the reference loss', or the known mistake in the words of the diagnosis."""
    return "the reference loss" if loss.name == REFERENCE else f"a loss with a known mistake ({loss.words})"


def matches(
    truth: tuple[float, Gradients],
    loss: float,
    grads: Mapping[str, np.ndarray] | None,
    ctx: CheckContext,
) -> bool:
    """The student's loss (and every gradient, unless `grads` is None) equals a known loss's `truth` here (a
    gradient of the right values in a wrong shape counts: the shape is charged where shapes are checked)."""
    true_loss, true_grads = truth
    tol = ctx.tolerance()
    if not same_values(np.asarray(loss, dtype=np.float64), np.asarray(true_loss), tol):
        return False
    return grads is None or all(same_values(grads[k], np.asarray(g), tol) for k, g in true_grads.items())


def verdict(
    ctx: CheckContext,
    fresh_case: Callable[[int], cases.Case],
    student: StudentCall,
    known: Sequence[KnownLoss],
    what: str,
) -> Verdict:
    """The submission's verdict for this problem, judged on fresh problems once and shared by every check."""
    key = ("own-loss verdict", ctx.problem.name)
    if key not in ctx.memo:
        ctx.memo[key] = _judge(ctx, fresh_case, student, known, what)
    result = ctx.memo[key]
    assert isinstance(result, Verdict)
    return result


def _judge(
    ctx: CheckContext,
    fresh_case: Callable[[int], cases.Case],
    student: StudentCall,
    known: Sequence[KnownLoss],
    what: str,
) -> Verdict:
    losses = list(known)
    exact = list(known)
    for seed in ctx.fresh_seeds(FRESH_PROBLEMS):
        case = fresh_case(seed)
        try:
            loss, grads = student(case)
        except CheckFailed as failure:
            return Verdict(None, False, PROBE_FAILED.format(message=failure.message))
        truths = {k.name: k.compute(case.args) for k in losses}
        losses = [k for k in losses if matches(truths[k.name], loss, None, ctx)]
        exact = [k for k in exact if k in losses and matches(truths[k.name], loss, grads, ctx)]
    if exact:
        return Verdict(exact[0].name, True)
    if not losses:
        return Verdict(None, False, UNKNOWN_LOSS)
    return Verdict(
        losses[0].name,
        False,
        NOT_OWN_GRADIENT.format(what=what, loss=describe(losses[0])),
    )


def carried_at(
    ctx: CheckContext, found: Verdict, known: Sequence[KnownLoss], args: tuple[Any, ...], loss: float, grads: Gradients
) -> bool:
    """Credit is carried forward on this graded case: the verdict carries, and here too the student's loss is
    that known mistake and every gradient its exact gradient."""
    if truth.recording_now():  # record every known loss here too (known_losses computes them all on one call)
        known[0].compute(args)
    if not found.carries:
        return False
    return any(matches(k.compute(args), loss, grads, ctx) for k in known if k.name == found.loss)


def carry(
    ctx: CheckContext,
    failure: CheckFailed,
    judged: Callable[[], Verdict],
    known: Sequence[KnownLoss],
    case: tuple[Any, ...],
    answer: tuple[float, Gradients],
    name: str,
) -> CheckFailed:
    """What a failed gradient check of `name` becomes: capped carried credit when the verdict carries and holds on
    this graded case too, else the failure itself. `judged` is called only when the gradient is wrong."""
    loss, grads = answer
    try:
        found = judged()
        if not carried_at(ctx, found, known, case, loss, grads):
            return failure
    except NotLocal:  # the known losses were not recorded for these problems: only the grader can carry credit
        return failure
    assert found.loss is not None
    share = ctx.assignment.carried_credit
    return CheckFailed(
        CARRIED.format(name=name, loss=describe(next(k for k in known if k.name == found.loss)), share=share),
        details={**failure.details, "carried_forward": found.loss},
        credit=share,
    )


def grade_gradients(graders: Iterable[Callable[[], None]]) -> None:
    """Run gradient graders over several cases: a failure that is not carried forward fails at once; otherwise the
    first carried one sets the check's credit."""
    carried: CheckFailed | None = None
    for grade in graders:
        try:
            grade()
        except CheckFailed as failure:
            if "carried_forward" not in failure.details:
                raise
            carried = carried or failure
    if carried is not None:
        raise carried
