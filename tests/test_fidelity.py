"""The generic mechanisms behind grading like a careful TA: every declared input form gets every case, shape slips
are named with their fix (and earn the assignment's shape_slip_credit), points are whole multiples of the
assignment's point_step that add up exactly, and gradient checkers' common slips are recognized.

The buggy submissions that exercise them end to end are in tests/bugs/ (see test_diagnosis_corpus.py).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import cases
from grader.assignment import AssignmentError, Tolerance, load
from grader.checks import shapes
from grader.checks.base import Check, CheckContext, CheckFailed, PlannedCheck, apportion
from grader.checks.numgrad import _step_text, never_computed
from grader.checks.runner import REGISTRY, plan, run_check
from grader.checks.values import as_array, conform, same_values
from grader.sandbox.session import CallResult
from reference import sigmoid, softmax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bugs import conftest_helpers  # noqa: E402

helpers = conftest_helpers()
ROOT = Path(__file__).resolve().parent.parent
TOL = Tolerance(rtol=1e-6, atol=1e-9)
CORRECT = {
    "softmax": lambda x: softmax(np.asarray(x, dtype=np.float64)),
    "sigmoid": lambda x: np.asarray(sigmoid(np.asarray(x, dtype=np.float64).reshape(-1))).reshape(np.shape(x)),
    "sigmoid_grad": lambda s: np.asarray(s) * (1 - np.asarray(s)),
}


# --------------------------------------------------------------------------- every input form gets every case


class RecordingSession:
    """A correct student that records the form of every input it is given."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.forms: list[str] = []

    def call(self, function: str, *args: Any, echo_args: bool = False, **_: Any) -> CallResult:
        self.forms.append(shapes.form_of(args[0]))
        value = CORRECT[self.function](args[0])
        return CallResult(value, tuple(args) if echo_args else None, [], "")

    def seed(self, value: int) -> None:
        pass


# the only checks about a single input form (their cases are drawn in that form); every other check of a kind with
# declared forms must give its cases in all of them
ONE_FORM = {("softmax", "values_1d"): ("1-D",), ("softmax", "values_2d"): ("2-D",)}


def _checks_with_declared_forms() -> list[tuple[str, str]]:
    return [(kind, c.name) for kind in sorted(shapes.LAYOUTS) for c in REGISTRY.get(kind, [])]


def test_softmax_sigmoid_and_sigmoid_grad_declare_their_input_forms() -> None:
    assert shapes.LAYOUTS["softmax"].forms == ("1-D", "2-D")
    for kind in ("sigmoid", "sigmoid_grad"):
        assert set(shapes.LAYOUTS[kind].forms) == {"0-d", "1-D", "2-D", "3-D"}


@pytest.mark.parametrize(("kind", "name"), _checks_with_declared_forms())
def test_every_check_gives_its_cases_in_every_declared_form(kind: str, name: str) -> None:
    assignment = load("mlp")
    registered = next(c for c in REGISTRY[kind] if c.name == name)
    session = RecordingSession(kind)
    ctx = CheckContext(session, assignment, assignment.problem(kind), 7, False, {}, 7, registered.forms)
    registered.func(ctx)
    assert registered.forms == ONE_FORM.get((kind, name)), f"{kind}.{name} opts out of some input forms"
    declared = shapes.LAYOUTS[kind].forms
    assert set(session.forms) == set(registered.forms or declared), f"{kind}.{name} gave only {set(session.forms)}"


def test_extreme_logits_reach_softmax_as_1d_rows() -> None:
    # the 1-D branch that subtracted the index of the maximum passed because only 2-D input was extreme
    base = cases.extreme_logits(7)
    rows = [c.args[0] for c, _ in shapes.every_form("softmax", base, softmax(base.args[0])) if c.args[0].ndim == 1]
    assert len(rows) == base.args[0].shape[0]
    assert max(float(np.abs(r).max()) for r in rows) == 1e4


def test_each_form_carries_the_matching_expected_result(monkeypatch: pytest.MonkeyPatch) -> None:
    base = cases.extreme_elementwise(7)
    expected = CORRECT["sigmoid"](base.args[0])
    monkeypatch.setitem(shapes.LAYOUTS, "numbers", shapes.NUMBERS_AND_ARRAYS)  # an API that also takes Python floats
    for kind in ("sigmoid", "numbers"):
        seen = set()
        for case, target in shapes.every_form(kind, base, expected):
            seen.add(shapes.form_of(case.args[0]))
            np.testing.assert_allclose(CORRECT["sigmoid"](case.args[0]), target, rtol=1e-12)
            assert np.shape(case.args[0]) == np.shape(target)
            assert case.extra["form"] == shapes.form_of(case.args[0])
        assert seen == set(shapes.LAYOUTS[kind].forms)


def test_a_kind_without_declared_forms_gets_the_case_as_it_is() -> None:
    base = cases.classification(3)
    assert list(shapes.every_form("softmax_cross_entropy", base, base.args[0])) == [(base, base.args[0])]


# --------------------------------------------------------------------------- shape slips are named


VECTOR, MATRIX = np.arange(10.0), np.arange(12.0).reshape(3, 4)
SLIPS = [
    # (found, expected, the fix the message must quote, values right)
    (VECTOR.reshape(1, 10), VECTOR, "sum with axis=0 and without keepdims=True, or use .ravel()", True),
    (VECTOR.reshape(10, 1), VECTOR, "column vector (10, 1) where a 1-D array is expected: use .ravel()", True),
    (MATRIX.T, MATRIX, "it is transposed: return its transpose (.T)", True),
    (MATRIX.ravel(), MATRIX, "it is flattened: keep the shape (3, 4)", True),
    (np.arange(4.0).reshape(4, 1), np.arange(4.0).reshape(1, 4), "row vs column", True),
    (np.array([0.25]), np.array(0.25), "one-element array where a 0-d result (a single number) is expected", True),
    (np.arange(6.0).reshape(1, 2, 3), np.arange(6.0).reshape(2, 3), "extra axis of length 1", True),
    (np.arange(6.0), np.arange(6.0).reshape(6, 1), "an axis of length 1 is missing", True),
    (VECTOR.reshape(1, 10) + 1, VECTOR, "without keepdims=True", False),
]


@pytest.mark.parametrize(("found", "expected", "fix", "right"), SLIPS)
def test_a_shape_slip_is_named_with_its_fix(found: np.ndarray, expected: np.ndarray, fix: str, right: bool) -> None:
    with pytest.raises(CheckFailed) as raised:
        conform(found, expected, TOL, "db1", {"label": "a case"})
    failure = raised.value
    assert f"db1 has shape {found.shape}, expected {expected.shape}" in failure.message
    assert fix in failure.message
    assert failure.details["right_values_wrong_shape"] is right
    assert ("The values are right" in failure.message) is right
    assert same_values(found, expected, TOL) is right


def test_a_slip_is_named_where_only_the_shape_is_known() -> None:
    # answers checked for their shape before any value is compared (e.g. a gradient dict's entries) name it too
    with pytest.raises(CheckFailed) as raised:
        as_array(np.zeros((1, 5)), "db1", (5,))
    assert "sum with axis=0 and without keepdims=True, or use .ravel()" in raised.value.message
    assert raised.value.details["shape_slip"] == "keepdims_vector"


def test_a_wrong_size_is_no_slip() -> None:
    with pytest.raises(CheckFailed) as raised:
        conform(np.zeros((5, 3)), np.zeros(3), TOL, "db2", {})
    assert "shape_slip" not in raised.value.details
    assert not same_values(np.zeros((5, 3)), np.zeros(3), TOL)


def _slip_outcome(shape_slip_credit: float, role: str) -> Any:
    """Run a check (value or property) whose answer has right values in a keepdims shape."""

    def slipped(ctx: CheckContext) -> None:
        conform(np.ones((1, 4)), np.ones(4), TOL, "db1", {})

    registered = Check("fidelity_probe", f"slip_{role}", "probe", 1.0, False, slipped, role)
    assignment = dataclasses.replace(load("mlp"), shape_slip_credit=shape_slip_credit)
    planned = PlannedCheck(registered, assignment.problem("mlp_loss"), False, 3.0)
    return run_check(planned, RecordingSession("softmax"), assignment, 7, {})


@pytest.mark.parametrize(("credit", "score", "says"), [
    (0.5, 1.5, "Right values in the wrong shape earn 50% of this check's points in this assignment."),
    (0.0, 0.0, "Right values in the wrong shape earn no points in this assignment."),
])
def test_right_values_in_a_wrong_shape_earn_the_assignments_shape_slip_credit(credit: float, score: float,
                                                                              says: str) -> None:
    outcome = _slip_outcome(credit, "value")
    assert outcome.status == "failed" and outcome.score == score
    assert says in outcome.message


def test_a_property_check_earns_no_shape_slip_credit() -> None:
    assert _slip_outcome(0.5, "property").score == 0.0


def test_the_bundled_assignments_give_half_credit_for_shape_slips() -> None:
    assert load("mlp").shape_slip_credit == load("mlp-sigmoid").shape_slip_credit == 0.5


# --------------------------------------------------------------------------- points people can read

STEPS = [1.0, 0.5, 0.25, 0.1, 0.05, 0.01]


@settings(max_examples=300, deadline=None)
@given(
    step=st.sampled_from(STEPS),
    units=st.integers(1, 400),
    weights=st.lists(st.floats(0.01, 10.0, allow_nan=False), min_size=1, max_size=40),
)
def test_apportioned_points_are_whole_steps_that_add_up_exactly(step: float, units: int, weights: list[float]) -> None:
    total = round(units * step, 10)
    points = apportion(total, weights, step)
    assert len(points) == len(weights)
    assert math.isclose(sum(points), total, abs_tol=1e-9)
    assert all(math.isclose(p / step, round(p / step), abs_tol=1e-9) for p in points)
    exact = [units * w / sum(weights) for w in weights]
    # each check gets the floor or the ceiling of its exact share, in steps
    assert all(math.floor(e) <= round(p / step) <= math.floor(e) + 1 for p, e in zip(points, exact, strict=True))
    # a check whose share is under one step is served before any other gets a leftover step
    if any(p == 0 for p in points):
        assert all(round(p / step) == math.floor(e) for p, e in zip(points, exact, strict=True) if e >= 1)


@pytest.mark.parametrize("name", ["mlp", "mlp-sigmoid"])
@pytest.mark.parametrize("step", [1.0, 0.5, 0.25, 0.01])
def test_planned_points_are_multiples_of_the_point_step_and_sum_to_each_problem(name: str, step: float) -> None:
    assignment = dataclasses.replace(load(name), point_step=step)
    for hidden in (True, False):
        planned = plan(assignment, include_hidden=hidden)
        for p in planned:
            assert math.isclose(p.points / step, round(p.points / step), abs_tol=1e-9), (p.id, p.points)
        for problem in assignment.problems:
            total = sum(p.points for p in planned if p.problem.name == problem.name)
            assert math.isclose(total, problem.points, abs_tol=1e-9)


def test_points_that_are_not_a_multiple_of_the_step_are_refused_clearly() -> None:
    assignment = dataclasses.replace(load("mlp"), point_step=3.0)
    with pytest.raises(ValueError, match=r"problem softmax: 10 points .* point_step = 3"):
        plan(assignment)


def test_the_report_states_the_scoring_rule(grade: Any) -> None:
    report = grade(helpers.solution_cells("mlp"), "mlp")
    rule = report["provenance"]["scoring"]
    assert rule["point_step"] == 0.5 and rule["shape_slip_credit"] == 0.5 and rule["carried_credit"] == 0.5
    assert "whole multiple of 0.5 points" in rule["rule"]
    assert all((2 * t["max_score"]).is_integer() for t in report["tests"])


def _toml_copy(tmp_path: Path, edit: Any) -> Path:
    """A copy of the bundled mlp assignment.toml, edited."""
    folder = tmp_path / "mlp"
    folder.mkdir()
    (folder / "assignment.toml").write_text(edit((ROOT / "assignments" / "mlp" / "assignment.toml").read_text()))
    return folder


def test_scoring_defaults_to_half_points_and_half_credit_for_shape_slips(tmp_path: Path) -> None:
    unset = ("shape_slip_credit = 0.5\n", "point_step = 0.5\n")
    folder = _toml_copy(tmp_path, lambda t: t.replace(unset[0], "").replace(unset[1], ""))
    assignment = load(folder)
    assert assignment.point_step == 0.5 and assignment.shape_slip_credit == 0.5


@pytest.mark.parametrize(("line", "says"), [("shape_slip_credit = 2", "shape_slip_credit must lie in [0, 1]"),
                                            ("point_step = 0", "point_step must be > 0")])
def test_scoring_settings_out_of_range_are_refused(tmp_path: Path, line: str, says: str) -> None:
    key = line.split(" = ")[0]
    folder = _toml_copy(tmp_path, lambda t: t.replace(f"{key} = 0.5", line))
    with pytest.raises(AssignmentError, match=re.escape(says)):
        load(folder)


def test_large_scores_has_its_own_weight_and_weight_zero_disables_it(tmp_path: Path) -> None:
    assert "large_scores = 2" in (ROOT / "assignments" / "mlp" / "assignment.toml").read_text()
    folder = _toml_copy(tmp_path, lambda t: t.replace("large_scores = 2", "large_scores = 0"))
    assert "mlp_loss.large_scores" in {p.id for p in plan(load("mlp"))}
    assert "mlp_loss.large_scores" not in {p.id for p in plan(load(folder))}


# --------------------------------------------------------------------------- gradient checkers


@pytest.mark.parametrize(("stride", "times"), [(2, "twice"), (3, "3 times")])
def test_entries_skipped_by_a_loop_that_advances_k_times_are_named(stride: int, times: str) -> None:
    expected = np.arange(1.0, 13.0).reshape(3, 4)
    found = np.zeros_like(expected)
    found.flat[::stride] = expected.flat[::stride]
    text = never_computed(found, expected)
    assert text is not None
    missed = [i for i in range(12) if i % stride][:3]
    assert f"entries {', '.join(map(str, missed))}, ..." in text
    assert f"the loop advances {times} per iteration" in text


def test_zeros_among_wrong_values_are_not_called_skipped() -> None:
    expected = np.arange(1.0, 7.0)
    found = expected * 2
    found[1] = 0
    assert never_computed(found, expected) is None


@pytest.mark.parametrize(("step", "text"), [(1.0003e-4, "1e-4"), (9.98e-6, "1e-5"), (2.01e-3, "2e-3")])
def test_an_inferred_step_is_written_as_a_programmer_writes_it(step: float, text: str) -> None:
    assert _step_text(step) == text
