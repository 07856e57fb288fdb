"""Audience views of a report: instructors see everything; students do not see hidden details."""

from __future__ import annotations

from typing import Any

from grader.reports import sanitize

HIDDEN_OUTPUT = (
    "{verdict} on hidden inputs. Details of hidden checks are shown to instructors only; "
    "the visible checks of this problem test the same property on inputs you can reproduce."
)


def student_view(report: dict[str, Any]) -> dict[str, Any]:
    """A sanitized copy of the report (every front end shows students this) with the messages, diagnoses
    and details of hidden checks removed."""
    view = sanitize.report(report)
    for test in view["tests"]:
        if test.get("visibility") == "hidden":
            verdict = "Passed" if test["status"] == "passed" else "Failed"
            test["output"] = HIDDEN_OUTPUT.format(verdict=verdict)
            test["message"] = test["output"]
            test["diagnosis"] = None
            test["details"] = {}
    if view.get("provenance"):
        view["provenance"]["hidden_seed"] = None  # with the seed, the hidden inputs could be regenerated
    return view


def failed_tests(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tests that did not earn all their points."""
    return [t for t in report["tests"] if t["status"] != "passed" or t["score"] < t["max_score"] - 1e-9]
