"""HTML reports: a self-contained feedback page per submission and a summary page for the class.

Pages have no external resources: CSS is inline and plots are PNG data URIs. Everything from the
report is escaped by Jinja2's autoescaping, and a Content-Security-Policy forbids scripts.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, NullLocator

from grader.reports import sanitize
from grader.reports.text import isolation_label
from grader.reports.views import HIDDEN_OUTPUT, ROOT_CAUSES, failed_tests, root_causes, student_view, tamper_notes

NONFINITE = -1.0  # how abs_error marks NaN/inf entries
NONFINITE_COLOR = "#ff3df5"
HEATMAP_CMAP = matplotlib.colormaps["viridis"].with_extremes(bad=NONFINITE_COLOR)
HEATMAP_SIZE = (4.0, 3.0)  # inches
HISTOGRAM_SIZE = (6.0, 2.4)
DPI = 80
FULL = 1e-9  # points within this of the maximum count as full points
UNDEFINED_BY_CELL = "cell {cell} failed ({ename}), leaving {functions} undefined"
MAX_CODE_TEXT = 1024 * 1024  # characters of one stretch of student code on a similarity page (extraction cuts first)

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["pts"] = lambda x: f"{x:g}"
_ENV.filters["pct"] = lambda x: f"{100 * x:.0f}%"
_ENV.filters["num"] = lambda x: f"{x:.6g}" if isinstance(x, (int, float)) else str(x)  # "nan", "inf" are strings


def feedback(report: dict[str, Any], instructor: bool = False) -> str:
    """The feedback page of one report: the student view, or everything when instructor is true."""
    report = sanitize.report(report)
    view = report if instructor else student_view(report)
    failed = failed_tests(view)
    groups: dict[str, list[dict[str, Any]]] = {p["name"]: [] for p in view["problems"]}
    for test in view["tests"]:
        groups.setdefault(test["problem"], []).append(test)
    return _ENV.get_template("feedback.html.j2").render(
        report=view,
        prov=view["provenance"],
        instructor=instructor,
        groups=groups,
        failed_numbers={t["number"] for t in failed},
        heatmaps=heatmaps(failed),
        isolation=isolation_label(view.get("execution")),
        hidden_note=HIDDEN_OUTPUT.format(verdict="Checked"),
        causes=root_causes(view),
        causes_title=ROOT_CAUSES,
        tamper=tamper_notes(view),
        full=FULL,
    )


def summary(reports: list[dict[str, Any]], title: str, folders: Mapping[str, str] | None = None,
            similarity: str | None = None) -> str:
    """The class summary page: score statistics, pass rates, common diagnoses and submissions in trouble;
    each student links to `folders[student]/feedback.html` (default: a folder named as the student), and
    the page to the similarity report at the relative address `similarity` when there is one."""
    reports = [sanitize.report(r) for r in reports]
    graded = [r for r in reports if not r.get("error")]
    scores = [r["score"] for r in graded]
    max_score = reports[0]["max_score"] if reports else 0.0
    return _ENV.get_template("summary.html.j2").render(
        title=title,
        reports=sorted(reports, key=lambda r: r["provenance"]["student"]),
        graded=len(graded),
        max_score=max_score,
        mean=statistics.mean(scores) if scores else None,
        median=statistics.median(scores) if scores else None,
        histogram=histogram_png(scores, max_score),
        problems=problem_rates(graded),
        checks=check_rates(graded),
        diagnoses=common_diagnoses(reports),
        trouble=[(r["provenance"]["student"], trouble) for r in reports if (trouble := troubles(r))],
        folders=folders or {},
        similarity=similarity,
        full=FULL,
    )


def similarity_index(view: dict[str, Any]) -> str:
    """The similarity report's index page (grader.similarity.report.index_view), sanitized."""
    return _ENV.get_template("similarity.html.j2").render(**sanitize.data(view, max_text=MAX_CODE_TEXT))


def similarity_pair(view: dict[str, Any]) -> str:
    """A side-by-side page of two documents with their shared regions (grader.similarity.report.pair_view),
    sanitized: a student's code is hostile text."""
    return _ENV.get_template("similarity_pair.html.j2").render(**sanitize.data(view, max_text=MAX_CODE_TEXT))


def heatmaps(tests: list[dict[str, Any]]) -> dict[str, str]:
    """PNG data URIs of |student - reference| for every test whose details hold abs_error, by test number."""
    drawable = [t for t in tests if t["details"].get("abs_error")]
    if not drawable:
        return {}
    fig = heatmap_figure()
    return {t["number"]: heatmap_png(fig, t) for t in drawable}


def heatmap_figure() -> Figure:
    """A figure with a heatmap, its colorbar, a box for the worst entry and a NaN/inf legend, ready for reuse."""
    fig = Figure(figsize=HEATMAP_SIZE, dpi=DPI)
    ax = fig.add_axes((0.14, 0.17, 0.62, 0.7))
    image = ax.imshow(np.zeros((1, 1)), cmap=HEATMAP_CMAP, aspect="auto", interpolation="nearest")
    fig.colorbar(image, cax=fig.add_axes((0.8, 0.17, 0.04, 0.7)))
    for color, width in (("white", 3.0), ("black", 1.2)):
        ax.add_patch(Rectangle((0, 0), 1, 1, fill=False, edgecolor=color, linewidth=width, clip_on=False))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.text(0.01, 0.02, "■ NaN/inf", color=NONFINITE_COLOR, fontsize=8)
    return fig


def heatmap_png(fig: Figure, test: dict[str, Any]) -> str:
    """Draw one test's abs_error on a heatmap_figure: NaN/inf in their own color, the worst entry boxed."""
    error = np.asarray(test["details"]["abs_error"], dtype=np.float64)
    matrix = error.reshape(1, -1) if error.ndim == 1 else error
    bad = matrix == NONFINITE
    top = float(matrix[~bad].max()) if (~bad).any() else 0.0
    ax = fig.axes[0]
    image = ax.images[0]
    image.set_data(np.ma.masked_array(matrix, bad))
    image.set_clim(0.0, top or 1.0)
    rows, cols = matrix.shape
    image.set_extent((-0.5, cols - 0.5, rows - 0.5, -0.5))
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_title(f"|{quantity(test)} - reference|".replace("$", r"\$"), fontsize=10)
    ax.set_xlabel("index" if error.ndim == 1 else "column")
    ax.set_ylabel("" if error.ndim == 1 else "row")
    ax.yaxis.set_major_locator(NullLocator() if error.ndim == 1 else MaxNLocator(integer=True))
    worst = test["details"].get("worst_index") or []
    for box in [p for p in ax.patches if isinstance(p, Rectangle)]:
        box.set_visible(len(worst) == error.ndim)
        if box.get_visible():
            row, col = (0, worst[0]) if error.ndim == 1 else worst
            box.set_xy((col - 0.5, row - 0.5))
    fig.texts[0].set_visible(bool(bad.any()))
    return png_uri(fig)


def quantity(test: dict[str, Any]) -> str:
    """The checked array's name (details['quantity'], e.g. 'dW1'), else the check's name."""
    return str(test["details"].get("quantity") or test["check"])


def histogram_png(scores: list[float], max_score: float) -> str:
    """A data URI of a PNG histogram of the scores over ten equal bins from 0 to max_score."""
    fig = Figure(figsize=HISTOGRAM_SIZE, dpi=DPI)
    ax = fig.add_axes((0.08, 0.2, 0.9, 0.72))
    ax.hist(scores, bins=np.linspace(0.0, max_score or 1.0, 11).tolist(), color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("score")
    ax.set_ylabel("students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return png_uri(fig)


def png_uri(fig: Figure) -> str:
    """The figure as a base64 PNG data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def problem_rates(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per problem: mean points and the fraction of students with full points."""
    rows: dict[str, dict[str, Any]] = {}
    for report in reports:
        for p in report["problems"]:
            row = rows.setdefault(p["name"], {"name": p["name"], "max_score": p["max_score"], "points": [], "full": 0})
            row["points"].append(p["score"])
            row["full"] += p["score"] >= p["max_score"] - FULL
    return [{**row, "mean": statistics.mean(row["points"]), "rate": row["full"] / len(row["points"])}
            for row in rows.values()]


def check_rates(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per check (by id, in assignment order): how many students earned all its points."""
    rows: dict[str, dict[str, Any]] = {}
    for report in reports:
        failed = {t["id"] for t in failed_tests(report)}
        for t in report["tests"]:
            row = rows.setdefault(t["id"], {"name": t["name"], "problem": t["problem"], "visibility": t["visibility"],
                                            "passed": 0, "total": 0})
            row["passed"] += t["id"] not in failed
            row["total"] += 1
    return [{**row, "rate": row["passed"] / row["total"]} for row in rows.values()]


def common_diagnoses(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed tests grouped by (problem, diagnosis), counting distinct students, most common first."""
    students: dict[tuple[str, str], set[str]] = {}
    for report in reports:
        for t in failed_tests(report):
            if t.get("diagnosis"):
                students.setdefault((t["problem"], t["diagnosis"]), set()).add(report["provenance"]["student"])
    rows = [{"problem": problem, "diagnosis": diagnosis, "students": sorted(names), "count": len(names),
             "rate": len(names) / len(reports)}
            for (problem, diagnosis), names in students.items()]
    return sorted(rows, key=lambda row: (-row["count"], row["problem"], row["diagnosis"]))


def troubles(report: dict[str, Any]) -> list[str]:
    """Why a submission needs an instructor's look: it could not be graded, a failed cell left functions
    undefined (an import the grading environment lacks?), or cells timed out or crashed."""
    if report.get("error"):
        return [f"could not be graded: {report['error']}"]
    ex = report.get("execution") or {}
    found = [
        UNDEFINED_BY_CELL.format(cell=c["cell"], ename=c["ename"], functions=", ".join(c["functions"]))
        for c in report.get("root_causes") or []
        if c["functions"]
    ]
    if ex.get("timeouts"):
        found.append("timed out in cell " + ", ".join(map(str, ex["timeouts"])))
    if ex.get("crashes"):
        found.append("crashed in cell " + ", ".join(map(str, ex["crashes"])))
    return found
