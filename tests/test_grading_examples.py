"""The bundled example class is graded as assignments/mlp/examples/README.md says it should be;
the master scores full marks, the template zero with 'not implemented' messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, by_id, lost

from grader.assignment import load
from grader.grading import Grader
from grader.sandbox.zygote import Zygote

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
# Problems that lose points, and the diagnosis expected on one failing check (from the examples' README).
EXPECTED = {
    "alice": (set(), {}),
    "bob": ({"mlp_loss"}, {"mlp_loss.grad_W1": "missing 1/N"}),
    "carol": ({"mlp_loss"}, {"mlp_loss.grad_W2": "regularization gradient reg * W is missing"}),
    "dave": (
        {"softmax", "softmax_cross_entropy", "mlp_loss"},
        {"softmax.extreme_logits": "subtract the row maximum", "mlp_loss.large_scores": "subtract the row maximum"},
    ),
    "erin": (
        {"sigmoid_grad", "mlp_loss"},
        {"sigmoid_grad.values": "applies the sigmoid again", "mlp_loss.grad_W1": "upstream gradient"},
    ),
    "frank": ({"numerical_gradient"}, {"numerical_gradient.quadratic": "one-sided difference"}),
    "grace": ({"mlp_forward"}, {"mlp_forward.scores": "does not add the bias b2"}),
    "heidi": ({"sigmoid_grad", "softmax_cross_entropy", "mlp_forward", "mlp_loss", "numerical_gradient"}, {}),
    "ivan": ({"softmax", "mlp_loss"}, {"softmax.extreme_logits": "subtract the row maximum"}),
    "judy": ({"numerical_gradient"}, {"numerical_gradient.uses_h": "your checker uses a step of 1e-4 whatever h"}),
    "kevin": (
        {"softmax_cross_entropy", "mlp_loss", "numerical_gradient"},
        {
            "softmax_cross_entropy.loss_value": "summed over the batch instead of averaged",
            "numerical_gradient.quadratic": "the loop advances twice per iteration (it.iternext() called twice?)",
        },
    ),
}
# Messages (not diagnoses) expected on one check, and the share of its points that check keeps.
MESSAGES = {
    ("ivan", "softmax.extreme_logits"): ("row 0 as a 1-D vector", 0.0),
    ("ivan", "mlp_loss.grad_b1"): ("sum with axis=0 and without keepdims=True, or use .ravel()", 0.5),
    ("ivan", "mlp_loss.grad_b2[hidden]"): ("Right values in the wrong shape earn 50%", 0.5),
    ("kevin", "softmax_cross_entropy.gradient"): ("credit carried forward, 50%", 0.5),
    ("kevin", "mlp_loss.grad_W1[hidden]"): ("credit carried forward, 50%", 0.5),
}


@pytest.fixture(scope="module")
def reports(zygote: Zygote) -> dict[str, dict]:
    grader = Grader(load("mlp"), FAST, hidden_seed=3, zygote=zygote)
    return {name: grader.grade_file(EXAMPLES / f"{name}.ipynb").result.to_dict() for name in EXPECTED}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_example_loses_points_exactly_where_its_bugs_are(reports: dict[str, dict], student: str) -> None:
    problems, diagnoses = EXPECTED[student]
    report = reports[student]
    assert set(lost(report)) == problems
    tests = by_id(report)
    for check, text in diagnoses.items():
        assert tests[check]["status"] == "failed"
        assert text in (tests[check]["diagnosis"] or ""), tests[check]


@pytest.mark.parametrize(("student", "check"), sorted(MESSAGES))
def test_example_check_says_what_is_wrong_and_keeps_its_share(
    reports: dict[str, dict], student: str, check: str
) -> None:
    text, share = MESSAGES[student, check]
    test = by_id(reports[student])[check]
    assert text in test["message"], test["message"]
    assert test["score"] == pytest.approx(share * test["max_score"])


def test_examples_points_are_half_points(reports: dict[str, dict]) -> None:
    for report in reports.values():
        assert all((2 * t["max_score"]).is_integer() for t in report["tests"])
        assert report["provenance"]["scoring"]["point_step"] == 0.5


def test_unfinished_notebook_fails_with_not_implemented_messages(reports: dict[str, dict]) -> None:
    heidi = by_id(reports["heidi"])
    assert "not implemented yet" in heidi["mlp_loss.grad_W1"]["message"]
    assert heidi["mlp_loss.grad_W1"]["outcome"] == "error"


def test_infinite_loop_cell_is_stopped_and_reported(reports: dict[str, dict]) -> None:
    execution = reports["grace"]["execution"]
    assert len(execution["timeouts"]) == 1
    cell = next(c for c in execution["cells"] if c["status"] == "timeout")
    assert "did not finish within 3 s" in cell["error"]


@pytest.mark.parametrize("name", ["mlp", "mlp-sigmoid"])
def test_master_scores_full_marks_and_template_scores_zero(zygote: Zygote, name: str) -> None:
    assignment = load(name)
    grader = Grader(assignment, FAST, hidden_seed=5, zygote=zygote)
    master = grader.grade_file(assignment.master).result.to_dict()
    assert master["score"] == pytest.approx(assignment.max_score), [
        t["id"] for t in master["tests"] if t["status"] != "passed"
    ]
    template = grader.grade_file(ROOT / "student_template" / assignment.template).result.to_dict()
    assert template["score"] == 0
    assert all("not implemented yet" in t["message"] for t in template["tests"])
    assert template["execution"]["edited_locked_cells"] == []
