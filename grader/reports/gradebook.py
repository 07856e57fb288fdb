"""The class gradebook: one CSV row per student, a column per problem, and the total.

Cells are safe to open in a spreadsheet: a text cell that starts like a formula (``=``, ``+``,
``-``, ``@``, tab, carriage return) gets a leading single quote (OWASP's CSV-injection advice);
numbers (points, seeds) are written as numbers and never quoted, a negative one included.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from grader.assignment import Assignment
from grader.reports import sanitize

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def columns(assignment: Assignment) -> list[str]:
    """The header row."""
    return [
        "student",
        "score",
        "max_score",
        *(p.name for p in assignment.problems),
        "error",
        "notebook",
        "notebook_sha256",
        "hidden_seed",
    ]


def cell(value: Any) -> str:
    """A CSV cell: numbers as numbers (points with :g), text neutralized if it starts like a formula."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) and not _NUMBER.match(text) else text


def row(report: dict[str, Any]) -> dict[str, str]:
    """One student's row, from that student's own (sanitized) report."""
    report = sanitize.report(report)
    prov = report["provenance"]
    out: dict[str, Any] = {
        "student": prov["student"],
        "score": report["score"],
        "max_score": report["max_score"],
        "error": report.get("error"),
        "notebook": prov["notebook"],
        "notebook_sha256": prov.get("notebook_sha256"),
        "hidden_seed": prov.get("hidden_seed"),
    }
    for p in report["problems"]:
        out[p["name"]] = p["score"]
    return {key: cell(value) for key, value in out.items()}


def render(assignment: Assignment, reports: Iterable[dict[str, Any]]) -> str:
    """The CSV text, students sorted by name."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(assignment), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for line in sorted((row(r) for r in reports), key=lambda line: line["student"]):
        writer.writerow(line)
    return buf.getvalue()
