"""Run the checks that grade each problem and turn them into outcomes.

Importing this module registers every check (one module per group of problems).
"""

from __future__ import annotations

import contextlib
import dataclasses
import traceback
from collections.abc import Mapping
from typing import Any

from grader import truth
from grader.assignment import EXPECTED, Assignment
from grader.checks import activations, deep, gradcheck, layers, loss, mlp, numgrad  # noqa: F401  (importing them registers their checks)
from grader.checks.base import (
    REGISTRY,
    CheckContext,
    CheckFailed,
    Outcome,
    Passed,
    PlannedCheck,
    Session,
    derive_seed,
    plan,
)
from grader.sandbox.exceptions import SandboxError

__all__ = ["REGISTRY", "Outcome", "gate_properties", "gate_visible_on_hidden", "plan", "run_check", "run_checks"]

PROPERTY_WITHOUT_VALUES = (
    "{message} But no points: none of {function}()'s value checks earns points, and a property such as this "
    "one (which code that computes nothing also has) counts only when the values are at least partly right: "
    "make the values match first."
)

VISIBLE_WITHOUT_HIDDEN = (
    "No points: {function}() is right on the visible inputs but wrong on hidden inputs of the same kind: the points "
    "of the visible case count only when the hidden case passes too. Make it right for any input (the hidden "
    "case's message says where it goes wrong)."
)

SHAPE_SLIP_CREDIT = "Right values in the wrong shape earn {share:.0%} of this check's points in this assignment."
SHAPE_SLIP_NO_CREDIT = "Right values in the wrong shape earn no points in this assignment."


def _shape_slip_credit(failure: CheckFailed, planned: PlannedCheck, assignment: Assignment) -> CheckFailed:
    """A value check whose answer has the right values in a wrong shape earns the assignment's shape_slip_credit,
    and its message says so (either way)."""
    if planned.check.role != "value" or not failure.details.get("right_values_wrong_shape"):
        return failure
    share = assignment.shape_slip_credit
    note = SHAPE_SLIP_CREDIT.format(share=share) if share > 0 else SHAPE_SLIP_NO_CREDIT
    return CheckFailed(
        f"{failure.message} {note}",
        failure.diagnosis,
        failure.details,
        failure.status,
        max(failure.credit, share),
    )


def run_check(
    planned: PlannedCheck,
    session: Session,
    assignment: Assignment,
    seed: int,
    memo: dict[Any, Any],
    probe_seed: int | None = None,
) -> Outcome:
    """Run one planned check; every failure, including a grader bug, becomes an outcome."""
    probe = seed if probe_seed is None else probe_seed
    ctx = CheckContext(session, assignment, planned.problem, seed, planned.hidden, memo, probe, planned.check.forms)
    base: dict[str, Any] = dict(
        id=planned.id,
        problem=planned.problem.name,
        check=planned.check.name,
        title=planned.title,
        max_score=planned.points,
        hidden=planned.hidden,
        role=planned.check.role,
    )
    # Every check starts from its own random state, so that code which draws random numbers gets the
    # same inputs whatever ran before (visible results never depend on the hidden seed). When the
    # notebook's process is gone, the check's own calls will say so.
    with contextlib.suppress(SandboxError):
        session.seed(derive_seed(seed, planned.id))
    try:
        note = planned.check.func(ctx)
    except truth.NotLocal as missing:  # a student's install: the reference's answer was not recorded for this input
        return Outcome(status="skipped", score=0.0, message=str(missing), **base)
    except CheckFailed as raised:
        failure = _shape_slip_credit(raised, planned, assignment)
        return Outcome(
            status=failure.status,
            score=planned.points * failure.credit,
            message=failure.message,
            diagnosis=failure.diagnosis,
            details={**failure.details, "seed": failure.details.get("seed", seed)},
            **base,
        )
    except Exception as exc:  # a bug in the grader must not cost the grade of everything else
        return Outcome(
            status="error",
            score=0.0,
            message=f"internal grader error in this check: {exc!r}; please report it to the course staff",
            details={"traceback": traceback.format_exc()[-3000:]},
            **base,
        )
    if isinstance(note, Passed):
        return Outcome(
            status="passed", score=planned.points * note.credit, message=note.message, details=note.details, **base
        )
    return Outcome(status="passed", score=planned.points, **base)


def run_checks(
    session: Session, assignment: Assignment, hidden_seed: int | None, problems: list[str] | None = None
) -> list[Outcome]:
    """Run every planned check (visible ones with the assignment's seed, hidden ones with hidden_seed).

    Fresh problems (the probes behind credit carried forward) come from the hidden seed when there is one,
    so that a submission cannot know them in advance.
    """
    memo: dict[Any, Any] = {}
    outcomes = []
    probe_seed = derive_seed(assignment.visible_seed if hidden_seed is None else hidden_seed, "probes")
    with truth.answers_for(assignment.directory / EXPECTED):
        for planned in plan(assignment, include_hidden=hidden_seed is not None):
            if problems is not None and planned.problem.name not in problems:
                continue
            seed = hidden_seed if planned.hidden and hidden_seed is not None else assignment.visible_seed
            outcomes.append(run_check(planned, session, assignment, seed, memo, probe_seed))
    functions = {p.name: p.binding.function for p in assignment.problems}
    return gate_properties(gate_visible_on_hidden(outcomes, functions), functions)


def gate_visible_on_hidden(outcomes: list[Outcome], functions: Mapping[str, str] | None = None) -> list[Outcome]:
    """A visible entry keeps its points only when its hidden twin earns some (when hidden cases are graded).

    Code right on the public inputs and wrong on fresh ones of the same kind is a table of answers or a bug.
    `functions` names each problem's function as the student wrote it (default: the problem's name).
    """
    hidden_wrong = {o.id.removesuffix("[hidden]") for o in outcomes if o.hidden and o.max_score > 0 and o.score == 0}
    return [
        dataclasses.replace(
            o,
            score=0.0,
            status="failed",
            message=" ".join(
                filter(
                    None,
                    (VISIBLE_WITHOUT_HIDDEN.format(function=(functions or {}).get(o.problem, o.problem)), o.message),
                )
            ),
            details={**o.details, "hidden_twin_failed": True},
        )
        if not o.hidden and o.id in hidden_wrong and o.score > 0
        else o
        for o in outcomes
    ]


def gate_properties(outcomes: list[Outcome], functions: Mapping[str, str] | None = None) -> list[Outcome]:
    """Property checks keep their points only in problems where some value check earned points.

    A stub that returns shaped zeros and leaves its inputs alone has every property and no right value.
    `functions` names each problem's function as the student wrote it (default: the problem's name).
    """
    right = {o.problem for o in outcomes if o.role == "value" and (o.score > 0 or o.status == "skipped")}
    return [
        o
        if o.role == "value" or o.problem in right or o.score == 0
        else dataclasses.replace(
            o,
            score=0.0,
            status="failed",
            message=PROPERTY_WITHOUT_VALUES.format(
                message=_sentence(o.message or "This property holds."),
                function=(functions or {}).get(o.problem, o.problem),
            ),
            details={**o.details, "gated": True},
        )
        for o in outcomes
    ]


def _sentence(text: str) -> str:
    return text if text.endswith(".") else f"{text}."
