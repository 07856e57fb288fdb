"""Run the checks that grade each problem and turn them into outcomes.

Importing this module registers every check (one module per group of problems).
"""

from __future__ import annotations

import contextlib
import traceback
from typing import Any

from grader.assignment import Assignment
from grader.checks import activations, loss, mlp, numgrad  # noqa: F401  (importing them registers their checks)
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

__all__ = ["REGISTRY", "Outcome", "plan", "run_check", "run_checks"]


def run_check(
    planned: PlannedCheck, session: Session, assignment: Assignment, seed: int, memo: dict[Any, Any]
) -> Outcome:
    """Run one planned check; every failure, including a grader bug, becomes an outcome."""
    ctx = CheckContext(session, assignment, planned.problem, seed, planned.hidden, memo)
    base: dict[str, Any] = dict(
        id=planned.id,
        problem=planned.problem.name,
        check=planned.check.name,
        title=planned.title,
        max_score=planned.points,
        hidden=planned.hidden,
    )
    # Every check starts from its own random state, so that code which draws random numbers gets the
    # same inputs whatever ran before (visible results never depend on the hidden seed). When the
    # notebook's process is gone, the check's own calls will say so.
    with contextlib.suppress(SandboxError):
        session.seed(derive_seed(seed, planned.id))
    try:
        note = planned.check.func(ctx)
    except CheckFailed as failure:
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
    """Run every planned check (visible ones with the assignment's seed, hidden ones with hidden_seed)."""
    memo: dict[Any, Any] = {}
    outcomes = []
    for planned in plan(assignment, include_hidden=hidden_seed is not None):
        if problems is not None and planned.problem.name not in problems:
            continue
        seed = hidden_seed if planned.hidden and hidden_seed is not None else assignment.visible_seed
        outcomes.append(run_check(planned, session, assignment, seed, memo))
    return outcomes
