"""The one result model: a graded submission, and its canonical JSON form.

Every report format renders the dict built here (``SubmissionResult.to_dict``); the JSON
Schema in ``grader/reports/report.schema.json`` documents it. Top-level keys follow
Gradescope's results.json, so the canonical report can be handed to Gradescope as is.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import grader
from grader.assignment import Assignment
from grader.checks.base import Outcome
from grader.notebook import Tamper
from grader.sandbox.session import ExecutionRecord

SCHEMA_VERSION = 2  # 2: root_causes, tamper and each test's cause
ROUND = 4  # decimals kept for points
SCORING_RULE = (
    "Each check is worth a whole multiple of {step:g} points, and a problem's checks add up exactly to its points. "
    "A check that fails earns nothing, except: a gradient that is exact for a known wrong loss earns "
    "{carried:.0%} of its points (credit carried forward), and right values in a wrong shape earn {slip:.0%}. "
    "Property checks count only when a value check of the same function earns points. When hidden cases are "
    "graded, a visible case counts only when its hidden case (fresh inputs of the same kind) earns points too."
)


def _versions() -> dict[str, str]:
    """The versions a grade depends on (read from package metadata: a students' check never imports Numba)."""
    return {
        "jitgrade": grader.__version__,
        "numpy": importlib.metadata.version("numpy"),
        "numba": importlib.metadata.version("numba"),
        "python": platform.python_version(),
    }


@dataclass
class SubmissionResult:
    """A graded (or ungradable) submission."""

    student: str
    notebook: str
    notebook_sha256: str | None
    assignment: Assignment
    hidden_seed: int | None
    outcomes: list[Outcome] = field(default_factory=list)
    execution: ExecutionRecord | None = None
    root_causes: list[dict[str, Any]] = field(default_factory=list)  # cells that failed (grading.root_causes)
    tamper: Tamper | None = None  # locked cells compared with the template (None: no template)
    error: str | None = None
    wall_seconds: float = 0.0

    @property
    def score(self) -> float:
        """Points earned."""
        return round(sum(o.score for o in self.outcomes), ROUND)

    @property
    def max_score(self) -> float:
        """Points available."""
        return self.assignment.max_score

    def problem_scores(self) -> list[dict[str, Any]]:
        """Points per problem, in assignment order."""
        rows = []
        for problem in self.assignment.problems:
            mine = [o for o in self.outcomes if o.problem == problem.name]
            rows.append(
                {
                    "name": problem.name,
                    "score": round(sum(o.score for o in mine), ROUND),
                    "max_score": problem.points,
                    "passed": sum(o.status == "passed" for o in mine),
                    "checks": len(mine),
                }
            )
        return rows

    def scoring(self) -> dict[str, Any]:
        """How points were apportioned and what partial credit exists: the assignment's [scoring], with the rule
        in words (for the report's readers)."""
        a = self.assignment
        return {
            "point_step": a.point_step,
            "carried_credit": a.carried_credit,
            "shape_slip_credit": a.shape_slip_credit,
            "rule": SCORING_RULE.format(step=a.point_step, carried=a.carried_credit, slip=a.shape_slip_credit),
        }

    def to_dict(self) -> dict[str, Any]:
        """The canonical report (see report.schema.json)."""
        tests = []
        for number, o in enumerate(self.outcomes, start=1):
            output = o.message or ("passed" if o.status == "passed" else o.status)
            if o.diagnosis:
                output += f"\nLikely cause: {o.diagnosis}"
            tests.append(
                {
                    "name": o.title,
                    "number": str(number),
                    "score": round(o.score, ROUND),
                    "max_score": round(o.max_score, ROUND),
                    "status": "passed" if o.status == "passed" else "failed",
                    "output": output,
                    "visibility": "hidden" if o.hidden else "visible",
                    "id": o.id,
                    "problem": o.problem,
                    "check": o.check,
                    "outcome": o.status,
                    "message": o.message,
                    "diagnosis": o.diagnosis,
                    "details": o.details,
                    "cause": o.details.get("cause"),
                }
            )
        return {
            "score": self.score,
            "max_score": self.max_score,
            "output": self.summary(),
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
            "problems": self.problem_scores(),
            "error": self.error,
            "root_causes": self.root_causes,
            "tamper": _tamper(self.tamper),
            "execution": self._execution_dict(),
            "provenance": {
                "schema_version": SCHEMA_VERSION,
                "student": self.student,
                "notebook": self.notebook,
                "notebook_sha256": self.notebook_sha256,
                "assignment": self.assignment.name,
                "assignment_version": self.assignment.version,
                "visible_seed": self.assignment.visible_seed,
                "hidden_seed": self.hidden_seed,
                "scoring": self.scoring(),
                "versions": _versions(),
                "platform": f"{platform.system()} {platform.machine()}",
                "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds": round(self.wall_seconds, 3),
            },
        }

    def summary(self) -> str:
        """One paragraph for the top of any report."""
        if self.error:
            return f"This submission could not be graded: {self.error}"
        lost = [p for p in self.problem_scores() if p["score"] < p["max_score"] - 1e-9]
        text = "".join(f"{c['message'][:1].upper()}{c['message'][1:]}. " for c in self.root_causes)
        text += f"Score {self.score:g} / {self.max_score:g}."
        if lost:
            text += (
                " Points lost in: " + ", ".join(f"{p['name']} ({p['score']:g}/{p['max_score']:g})" for p in lost) + "."
            )
        else:
            text += " Every check passed."
        if self.execution is not None:
            problems = [c for c in self.execution.cells if c.status in ("timeout", "crashed")]
            if problems:
                text += f" {len(problems)} cell(s) timed out or crashed; see the execution record."
        return text

    def _execution_dict(self) -> dict[str, Any] | None:
        ex = self.execution
        if ex is None:
            return None
        return {
            "cells": [
                {
                    "index": c.index,
                    "status": c.status,
                    "error": c.error,
                    "execution_count": c.execution_count,
                    "seconds": round(c.seconds, 3),
                }
                for c in ex.cells
            ],
            "cells_run": sum(c.status in ("ok", "error") for c in ex.cells),
            "cell_errors": sum(c.status == "error" for c in ex.cells),
            "timeouts": [c.index for c in ex.cells if c.status == "timeout"],
            "crashes": [c.index for c in ex.cells if c.status == "crashed"],
            "restarts": ex.restarts,
            "events": ex.events,
            "isolation": ex.isolation,
            "import_attempts": ex.import_attempts,
            "edited_locked_cells": self.tamper.edited if self.tamper is not None else [],
            "seconds": round(ex.seconds, 3),
        }


def _tamper(tamper: Tamper | None) -> dict[str, Any] | None:
    """The report's tamper entry; `unit` only for a .py submission's files (a notebook's entry is as it always was)."""
    if tamper is None:
        return None
    entry = dataclasses.asdict(tamper)
    if entry["unit"] == "cell":
        del entry["unit"]
    return entry
