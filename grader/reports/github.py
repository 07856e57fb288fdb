"""GitHub Actions workflow commands: one ::error line per failed cell, then per failed check, one ::notice with
the score."""

from __future__ import annotations

from typing import Any

from grader.reports import sanitize
from grader.reports.views import failed_tests


def _escape(text: str) -> str:
    # https://docs.github.com/actions/reference/workflow-commands-for-github-actions (data escaping)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def render(report: dict[str, Any], notebook_path: str) -> str:
    """Annotation lines for a report, pointing at the notebook file (sanitized: no student text ends a line)."""
    report = sanitize.report(report)
    lines = []
    file = _escape_property(sanitize.text(notebook_path))
    if report.get("error"):
        return f"::error file={file},title=jitgrade::{_escape(report['error'])}\n"
    for cause in report.get("root_causes") or []:  # first: the failed cells explain the checks after them
        title = _escape_property(f"cell {cause['cell']} failed")
        lines.append(f"::error file={file},title={title}::{_escape(cause['message'])}")
    for t in failed_tests(report):
        text = t["output"]
        lines.append(f"::error file={file},title={_escape_property(t['name'])}::{_escape(text)}")
    lines.append(f"::notice file={file},title=jitgrade score::{report['score']:g} / {report['max_score']:g}")
    return "\n".join(lines) + "\n"
