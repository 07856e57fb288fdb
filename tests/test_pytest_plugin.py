"""`pytest --jitgrade NOTEBOOK`: one test item per check, failures carry the message and cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.assignment import load
from grader.checks.runner import plan

pytest_plugins = ["pytester"]
EXAMPLES = Path(__file__).resolve().parent.parent / "assignments" / "mlp" / "examples"


def test_one_item_per_check_and_failures_explained(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--jitgrade", str(EXAMPLES / "carol.ipynb"), "--jitgrade-seed", "3", "-p", "no:cacheprovider"
    )
    total = len(plan(load("mlp")))
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + outcomes["failed"] == total
    assert outcomes["failed"] == 7  # dW1, dW2, square_weights (visible and hidden), own-loss gradient
    result.stdout.fnmatch_lines(["*Likely cause: the regularization gradient reg * W is missing*"])


def test_a_correct_notebook_passes_every_item(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--jitgrade", str(EXAMPLES / "alice.ipynb"), "-p", "no:cacheprovider")
    assert result.ret == 0
    assert result.parseoutcomes()["passed"] == len(plan(load("mlp")))


def test_without_the_option_the_plugin_collects_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    assert True\n")
    (pytester.path / "nb.ipynb").write_text((EXAMPLES / "alice.ipynb").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.parseoutcomes() == {"passed": 1}


def test_a_students_install_collects_the_visible_checks_and_skips_the_graders(pytester: pytest.Pytester) -> None:
    """Without the reference (what students install), the items are the visible checks, each judged from the
    recorded values, and those that need an answer not recorded are skipped as the grader's, not failed."""
    pytester.makeconftest("from grader import truth\ntruth.available = lambda: False\n")
    course = pytester.path / "course"
    course.mkdir()
    (course / "assignment.toml").write_text((load("mlp").directory / "assignment.toml").read_text())  # no recording
    result = pytester.runpytest_subprocess(
        "--jitgrade", str(EXAMPLES / "alice.ipynb"), "--jitgrade-assignment", str(course), "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    visible = len(plan(load("mlp"), include_hidden=False))
    assert outcomes.get("failed", 0) == 0 and outcomes["skipped"] + outcomes.get("passed", 0) == visible, outcomes
    assert outcomes["skipped"] > 0
    recorded = pytester.runpytest_subprocess("--jitgrade", str(EXAMPLES / "alice.ipynb"), "-p", "no:cacheprovider")
    assert recorded.ret == 0 and recorded.parseoutcomes() == {"passed": visible}
