"""The HTML reports: what a student sees on the feedback page, what an instructor sees on the class summary.

The bundled example class (assignments/mlp/examples) is graded once; every test renders its reports.
"""

from __future__ import annotations

import base64
import copy
import io
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
from markupsafe import escape

from grader.assignment import load
from grader.grading import Grader
from grader.reports import html
from grader.reports.views import student_view

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
STUDENTS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
HIDDEN_SEED = 11
IMG = '<img src="data:image/png;base64,'
ATTACK = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The canonical reports of the eight examples and of one unreadable notebook ('broken')."""
    broken = tmp_path_factory.mktemp("broken") / "broken.ipynb"
    broken.write_text("this is not JSON")
    assignment = load("mlp")
    with Grader(assignment, limits=assignment.limits.override(cell_timeout=3), hidden_seed=HIDDEN_SEED) as grader:
        graded = {name: grader.grade_file(EXAMPLES / f"{name}.ipynb").result.to_dict() for name in STUDENTS}
        graded["broken"] = grader.grade_file(broken).result.to_dict()
    return graded


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tests that lost points (computed here, independently of the renderer)."""
    return [t for t in report["tests"] if t["status"] != "passed" or t["score"] < t["max_score"]]


def with_heatmap(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Failed tests whose details hold an abs_error array."""
    return [t for t in failed(report) if "abs_error" in t["details"]]


def images(page: str) -> list[bytes]:
    """The PNG bytes of every data-URI image in a page."""
    return [base64.b64decode(data) for data in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def renamed(report: dict[str, Any], student: str) -> dict[str, Any]:
    """A copy of a report handed in by another student."""
    other = copy.deepcopy(report)
    other["provenance"]["student"] = student
    return other


def test_feedback_shows_every_failed_checks_message_and_likely_cause(reports):
    for name, report in reports.items():
        page = html.feedback(report)
        for test in failed(student_view(report)):
            assert str(escape(test["message"])) in page, (name, test["id"])
            if test["diagnosis"]:
                assert f"Likely cause:</strong> {escape(test['diagnosis'])}" in page, (name, test["id"])


def test_feedback_shows_the_score_and_every_problem(reports):
    bob = reports["bob"]
    page = html.feedback(bob)
    assert f"Score {bob['score']:g} / {bob['max_score']:g}" in page
    for problem in bob["problems"]:
        assert f'<a href="#problem-{problem["name"]}">' in page
        assert f"{problem['score']:g} / {problem['max_score']:g}" in page


def test_feedback_has_one_heatmap_per_failed_visible_check_with_an_error_matrix(reports):
    for name, report in reports.items():
        visible = [t for t in with_heatmap(report) if t["visibility"] == "visible"]
        assert html.feedback(report).count(IMG) == len(visible), name
        assert html.feedback(report, instructor=True).count(IMG) == len(with_heatmap(report)), name
    assert len(with_heatmap(reports["bob"])) > len([t for t in with_heatmap(reports["bob"])
                                                    if t["visibility"] == "visible"]) > 0


def test_heatmaps_are_small_pngs(reports):
    pngs = images(html.feedback(reports["bob"]))
    assert pngs
    for png in pngs:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert matplotlib.image.imread(io.BytesIO(png)).shape[:2] == (240, 320)  # 4 x 3 in at 80 dpi


def test_nonfinite_entries_are_drawn_in_their_own_color(reports):
    def nonfinite_pixels(abs_error: list[list[float]]) -> int:
        test = copy.deepcopy(with_heatmap(reports["bob"])[0])
        test["details"].update(abs_error=abs_error, worst_index=[0, 0])
        png = base64.b64decode(html.heatmaps([test])[test["number"]].removeprefix("data:image/png;base64,"))
        rgb = matplotlib.image.imread(io.BytesIO(png))[..., :3]
        return int(np.all(np.abs(rgb - matplotlib.colors.to_rgb(html.NONFINITE_COLOR)) < 0.02, axis=-1).sum())

    assert nonfinite_pixels([[0.5, 0.1], [0.2, 0.3]]) == 0
    assert nonfinite_pixels([[0.5, -1.0], [-1.0, 0.3]]) > 1000


def test_hidden_messages_are_shown_to_instructors_only(reports):
    bob = reports["bob"]
    hidden = [t for t in failed(bob) if t["visibility"] == "hidden"]
    assert hidden
    student, instructor = html.feedback(bob), html.feedback(bob, instructor=True)
    for test in hidden:
        assert str(escape(test["message"])) not in student
        assert str(escape(test["message"])) in instructor
    assert f"hidden {HIDDEN_SEED}" not in student
    assert f"hidden {HIDDEN_SEED}" in instructor


def test_student_controlled_text_is_escaped(reports):
    report = copy.deepcopy(reports["grace"])
    report["provenance"]["student"] = report["provenance"]["notebook"] = ATTACK
    test = failed(report)[0]
    test["message"] = test["diagnosis"] = test["name"] = ATTACK
    report["execution"]["cells"][-1]["error"] = ATTACK
    report["execution"]["events"].append(ATTACK)
    report["execution"]["import_attempts"] = [ATTACK]
    for page in (html.feedback(report), html.feedback(report, instructor=True), html.summary([report], ATTACK)):
        assert "<script" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_execution_record_and_provenance_are_in_the_footer(reports):
    grace, heidi = reports["grace"], reports["heidi"]
    page = html.feedback(grace)
    assert f"timed out: cell {grace['execution']['timeouts'][0]}" in page
    assert grace["provenance"]["notebook_sha256"] in page
    assert f"mlp {grace['provenance']['assignment_version']}" in page
    assert f"numba {grace['provenance']['versions']['numba']}" in page
    errors = [c["index"] for c in heidi["execution"]["cells"] if c["status"] == "error"]
    assert errors
    page = html.feedback(heidi)
    for index in errors:
        assert f"<dt>Cell {index}</dt>" in page


def test_an_ungradable_submission_says_why(reports):
    page = html.feedback(reports["broken"])
    assert "Not graded" in page
    assert str(escape(reports["broken"]["error"])) in page
    assert IMG not in page


def test_summary_links_every_student_to_their_feedback(reports):
    page = html.summary(list(reports.values()), "mlp")
    for name in reports:
        assert f'<a href="{name}/feedback.html">{name}</a>' in page
    assert f"<p class=\"score\">{len(reports)} submissions</p>" in page


def test_summary_states_mean_and_median_of_the_graded_scores(reports):
    scores = [r["score"] for r in reports.values() if not r["error"]]
    page = html.summary(list(reports.values()), "mlp")
    assert f"Mean score {statistics.mean(scores):.1f} / 100, median {statistics.median(scores):.1f}" in page


def test_summary_embeds_the_score_histogram(reports):
    page = html.summary(list(reports.values()), "mlp")
    (png,) = images(page)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_summary_ranks_the_most_common_diagnosis_first_with_its_share_of_the_class(reports):
    # Three bobs make "missing 1/N" the most common diagnosis, counted once per student.
    class_ = list(reports.values()) + [renamed(reports["bob"], "bob2"), renamed(reports["bob"], "bob3")]
    students: dict[tuple[str, str], set[str]] = {}
    for report in class_:
        for test in failed(report):
            if test["diagnosis"]:
                students.setdefault((test["problem"], test["diagnosis"]), set()).add(report["provenance"]["student"])
    (problem, diagnosis), names = max(students.items(), key=lambda item: len(item[1]))
    assert names == {"bob", "bob2", "bob3"}
    share = f"{round(100 * len(names) / len(class_))}% ({len(names)} of {len(class_)} students) — {problem}: "
    page = html.summary(class_, "mlp")
    first = re.search(r'<ol class="diagnoses">\s*<li>(.*?)</li>', page, re.DOTALL)
    assert first is not None
    assert (share + str(escape(diagnosis))) in re.sub(r"<[^>]+>", "", first.group(1))


def test_summary_lists_ungradable_and_timed_out_submissions(reports):
    page = html.summary(list(reports.values()), "mlp")
    section = page[page.index("Needs a look"):page.index("Most common diagnoses")]
    assert f"grace</a>: timed out in cell {reports['grace']['execution']['timeouts'][0]}" in section
    assert f"broken</a>: could not be graded: {escape(reports['broken']['error'])}" in section
    assert "bob</a>" not in section


@pytest.mark.browser
def test_pages_load_with_every_image_decoded_in_headless_chromium(reports, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no chromium executable (looked for `chromium` on PATH and /usr/bin/chromium)")
    bob = reports["bob"]
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "feedback.html").write_text(html.feedback(bob), encoding="utf-8")
    (tmp_path / "summary.html").write_text(html.summary(list(reports.values()), "mlp"), encoding="utf-8")
    scores = [r["score"] for r in reports.values() if not r["error"]]
    expected = {
        "bob/feedback.html": (f"Score {bob['score']:g} / {bob['max_score']:g}",
                              len([t for t in with_heatmap(bob) if t["visibility"] == "visible"])),
        "summary.html": (f"Mean score {statistics.mean(scores):.1f}", 1),
    }
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            for path, (text, min_images) in expected.items():
                page.goto((tmp_path / path).as_uri())
                sizes = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight])")
                assert len(sizes) >= min_images > 0, path
                assert all(complete and width > 0 and height > 0 for complete, width, height in sizes), (path, sizes)
                assert text in page.inner_text("body"), path
        finally:
            browser.close()
