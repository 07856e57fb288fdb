"""Audience views of a report: instructors see everything; students do not see hidden details."""

from __future__ import annotations

from typing import Any

from grader.reports import sanitize

HIDDEN_OUTPUT = (
    "{verdict} on hidden inputs. Details of hidden checks are shown to instructors only; "
    "the visible checks of this problem test the same property on inputs you can reproduce."
)
ROOT_CAUSES = "Cells that failed (fix these first: the checks below that name a cell fail because of it)"
NOT_FROM_TEMPLATE = "this notebook was not made from the course template; locked-cell checks do not apply"
TAMPER_NOTES = {  # tamper unit -> key -> what it means, for the cell ids (or file names) listed there
    "cell": {
        "edited": "read-only cells whose text was changed: {cells} (copy them back from the course template)",
        "missing": "read-only cells that were deleted: {cells} (copy them back from the course template)",
        "reordered": "read-only cells moved out of the template's order: {cells} (move them back)",
    },
    "file": {"missing": "files the assignment expects that were not handed in: {cells} (hand them in by these names)"},
}


GRADER_ONLY = (
    "{count} check(s) worth {points:g} points run only in your instructor's grading (this install of jitgrade holds "
    "no reference solution, only the expected values recorded for the visible cases, and these checks need "
    "others): {names}"
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
    """Tests that did not earn all their points (not those this install could not run: see grader_only)."""
    return [
        t
        for t in report["tests"]
        if t.get("outcome") != "skipped" and (t["status"] != "passed" or t["score"] < t["max_score"] - 1e-9)
    ]


def grader_only(tests: list[dict[str, Any]]) -> str | None:
    """One sentence on the checks an install without the reference solution could not run (None: there are none)."""
    skipped = [t for t in tests if t.get("outcome") == "skipped"]
    if not skipped:
        return None
    names = ", ".join(f"{t['problem']}.{t['check']}" for t in skipped)
    return GRADER_ONLY.format(count=len(skipped), points=sum(t["max_score"] for t in skipped), names=names)


def root_causes(report: dict[str, Any]) -> list[str]:
    """The report's failed cells, one sentence each (reports lead with them)."""
    return [cause["message"] for cause in report.get("root_causes") or []]


def tamper_notes(report: dict[str, Any]) -> tuple[list[str], bool]:
    """What the locked-cell comparison found, one line per kind, and whether any of it is a warning (a notebook
    not made from the template gets one calm note instead of an alarm per locked cell)."""
    tamper = report.get("tamper")
    if not tamper:
        return [], False
    if not tamper["from_template"]:
        return [NOT_FROM_TEMPLATE], False
    wording = TAMPER_NOTES[tamper.get("unit", "cell")]
    notes = [note.format(cells=", ".join(tamper[key])) for key, note in wording.items() if tamper[key]]
    return notes, bool(notes)
