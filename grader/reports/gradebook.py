"""The class gradebook: one CSV row per student, a column per problem, and the total."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from grader.assignment import Assignment


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


def row(report: dict[str, Any]) -> dict[str, Any]:
    """One student's row."""
    prov = report["provenance"]
    out: dict[str, Any] = {
        "student": prov["student"],
        "score": f"{report['score']:g}",
        "max_score": f"{report['max_score']:g}",
        "error": report.get("error") or "",
        "notebook": prov["notebook"],
        "notebook_sha256": prov.get("notebook_sha256") or "",
        "hidden_seed": prov.get("hidden_seed"),
    }
    for p in report["problems"]:
        out[p["name"]] = f"{p['score']:g}"
    return out


def render(assignment: Assignment, reports: Iterable[dict[str, Any]]) -> str:
    """The CSV text, students sorted by name."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(assignment), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for report in sorted(reports, key=lambda r: r["provenance"]["student"]):
        writer.writerow(row(report))
    return buf.getvalue()
