"""cs224n-a1, an assignment built from configuration and a master alone (four .py files, a flat parameter vector,
one-hot labels, a gradient checker that prints): the master scores full marks over 20 hidden seeds, the starter files
score 0, each example gets the grade assignments/cs224n-a1/examples/README.md gives it, and each bug of
tests/bugs/cs224n.py loses points only where it is wrong, with the right diagnosis."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bugs import Bug, conftest_helpers  # noqa: E402
from bugs import cs224n as corpus  # noqa: E402

from grader import assign, pyfiles  # noqa: E402
from grader.assignment import Assignment, load  # noqa: E402
from grader.grading import Grader  # noqa: E402
from grader.sandbox.zygote import Zygote  # noqa: E402

helpers = conftest_helpers()
ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "assignments" / corpus.ASSIGNMENT
TEMPLATE = ROOT / "student_template" / corpus.ASSIGNMENT
SEEDS = range(20)
FULL = 1e-9
FBP = corpus.FBP

# Problems that lose points, the score (hidden seed 3), and the diagnosis (or, where the check has none, the
# message) expected on some failing checks: as the examples' README says.
EXPECTED: dict[str, tuple[set[str], float, dict[str, str]]] = {
    "ada": (set(), 100, {}),
    "ben": (
        {"softmax", FBP},
        90.5,
        {"softmax.extreme_logits": "subtract the row maximum", f"{FBP}.large_scores": "subtract the row maximum"},
    ),
    "cleo": ({"sigmoid_grad", FBP}, 72, {"sigmoid_grad.values": "applies the sigmoid again"}),
    "dan": ({corpus.CHECKER}, 97, {f"{corpus.CHECKER}.central": "one-sided difference"}),
    "eve": ({FBP}, 87, {f"{FBP}.loss_value": "averaged over the batch instead of summed"}),
    "finn": ({FBP}, 85, {f"{FBP}.square_weights": "the gradient is transposed", f"{FBP}.grad_W1": "dW1 is wrong"}),
    "gia": ({FBP}, 45, {f"{FBP}.loss_value": "IndexError: arrays used as indices must be of integer"}),
    "hal": ({FBP}, 45, {f"{FBP}.grad_b1": "returned a flat gradient of"}),
}


@pytest.fixture(scope="module")
def assignment() -> Assignment:
    return load(corpus.ASSIGNMENT)


def _said(test: Mapping[str, Any]) -> str:
    """What a check said: its message and its diagnosis."""
    return f"{test['message']} | {test['diagnosis'] or ''}"


def _context(report: Mapping[str, Any]) -> str:
    """The checks that lost points or diagnosed something, for assertion messages."""
    rows = [
        f"{t['id']}: {t['score']}/{t['max_score']} {_said(t)[:240]}"
        for t in report["tests"]
        if t["score"] < t["max_score"] - FULL or t["diagnosis"]
    ]
    return f"lost {helpers.lost(report)}\n  " + "\n  ".join(rows)


def master_sources(assignment: Assignment) -> dict[str, str]:
    """The master's declared files, as written (solution markers are comments)."""
    return {file: (assignment.master / file).read_text() for file in pyfiles.layout(assignment).files}


def grade_files(grader: Grader, files: Mapping[str, str], name: str) -> dict[str, Any]:
    """The report of a submission made of these sources."""
    submission = pyfiles.build({f: text.encode() for f, text in files.items()}, name, pyfiles.layout(grader.assignment))
    return grader.grade(submission, name).result.to_dict()


# --------------------------------------------------------------------------- master and template


@pytest.fixture(scope="module")
def master_reports(zygote: Zygote, assignment: Assignment) -> dict[int, dict[str, Any]]:
    """The master graded for each hidden seed (one grading session per seed)."""
    return {
        seed: Grader(assignment, helpers.FAST, hidden_seed=seed, zygote=zygote)
        .grade_file(assignment.master)
        .result.to_dict()
        for seed in SEEDS
    }


def test_master_scores_full_marks_for_20_hidden_seeds(
    master_reports: dict[int, dict[str, Any]], assignment: Assignment
) -> None:
    for seed, report in master_reports.items():
        assert report["score"] == pytest.approx(assignment.max_score), f"hidden seed {seed}: {_context(report)}"


def test_planned_checks_follow_the_course_conventions(
    master_reports: dict[int, dict[str, Any]], assignment: Assignment
) -> None:
    """Configuration alone: the master's softmax works in place (x -= max ...), which the binding allows, so no
    no_mutation check is planned for it (sigmoid's and forward_backward_prop's still are); the network has no L2
    term, so its loss_without_reg check (weight 0) is not planned either."""
    assert "x -= np.max(x" in (assignment.master / "q1_softmax.py").read_text()
    planned = {t["id"].split("[")[0] for t in master_reports[0]["tests"]}
    assert not {"softmax.no_mutation", f"{FBP}.loss_without_reg"} & planned
    assert {"sigmoid.no_mutation", f"{FBP}.no_mutation", f"{FBP}.loss_value"} <= planned


def test_template_is_the_master_with_stubs(assignment: Assignment) -> None:
    for file, text in master_sources(assignment).items():
        assert (TEMPLATE / file).read_text() == assign.starter_source(text), f"run jitgrade assign: {file} is stale"


def test_template_scores_zero_with_not_implemented_messages(zygote: Zygote, assignment: Assignment) -> None:
    report = Grader(assignment, helpers.FAST, hidden_seed=3, zygote=zygote).grade_file(TEMPLATE).result.to_dict()
    assert report["score"] == 0
    assert all("not implemented yet" in t["message"] for t in report["tests"]), _context(report)


# --------------------------------------------------------------------------- examples


@pytest.fixture(scope="module")
def example_reports(zygote: Zygote, assignment: Assignment) -> dict[str, dict[str, Any]]:
    grader = Grader(assignment, helpers.FAST, hidden_seed=3, zygote=zygote)
    return {name: grader.grade_file(FOLDER / "examples" / name).result.to_dict() for name in EXPECTED}


def test_examples_are_the_ones_the_readme_describes() -> None:
    folders = {p.name for p in (FOLDER / "examples").iterdir() if p.is_dir()}
    readme = (FOLDER / "examples" / "README.md").read_text()
    assert folders == set(EXPECTED)
    assert all(f"`{name}/`" in readme for name in EXPECTED)


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_example_loses_points_exactly_where_its_bug_is(example_reports: dict[str, dict], student: str) -> None:
    problems, score, said = EXPECTED[student]
    report = example_reports[student]
    assert report["error"] is None
    assert set(helpers.lost(report)) == problems, _context(report)
    assert report["score"] == pytest.approx(score), _context(report)
    tests = helpers.by_id(report)
    for check, text in said.items():
        assert tests[check]["score"] < tests[check]["max_score"], _context(report)
        assert text in _said(tests[check]), _context(report)


# --------------------------------------------------------------------------- bug corpus


@pytest.fixture(scope="module")
def corpus_grader(zygote: Zygote, assignment: Assignment) -> Grader:
    return Grader(assignment, helpers.FAST, hidden_seed=7, zygote=zygote)


def _param(bug: Bug) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bug.xfail)] if bug.xfail else []
    return pytest.param(bug, id=bug.id, marks=marks)


def test_corpus_ids_are_unique_and_edit_declared_files(assignment: Assignment) -> None:
    ids = [b.id for b in corpus.BUGS]
    assert len(ids) == len(set(ids))
    declared = set(pyfiles.layout(assignment).files)
    problems = {p.name for p in assignment.problems}
    for b in corpus.BUGS:
        assert set(b.replace) <= declared, b.id
        assert b.loses <= problems, b.id
        assert not set(b.passes) & set(b.fails), b.id


@pytest.mark.parametrize("bug", [_param(b) for b in corpus.BUGS])
def test_bug_loses_points_only_where_wrong_and_is_diagnosed(
    bug: Bug, corpus_grader: Grader, assignment: Assignment
) -> None:
    master = master_sources(assignment)
    report = grade_files(corpus_grader, {**master, **bug.sources(master)}, bug.id)
    context = f"{bug.id}: {_context(report)}"
    assert report["error"] is None, context
    assert set(helpers.lost(report)) == bug.loses, context
    tests = helpers.by_id(report)
    losing = {*bug.diagnosis_contains, *bug.message_contains, *bug.fails} - set(bug.passes)
    for cid in {*losing, *bug.passes}:
        assert cid in tests, f"no check {cid} in the report\n{context}"
        kept = tests[cid]["score"] >= tests[cid]["max_score"] - FULL
        assert kept == (cid in bug.passes), f"{cid} should {'keep' if cid in bug.passes else 'lose'} points\n{context}"
    for cid, expected in bug.diagnosis_contains.items():
        for text in (expected,) if isinstance(expected, str) else expected:
            assert text in (tests[cid]["diagnosis"] or ""), f"{cid}: diagnosis should contain {text!r}\n{context}"
    for cid, text in bug.message_contains.items():
        assert text in tests[cid]["message"], f"{cid}: message should contain {text!r}\n{context}"
    for cid, text in bug.not_diagnosed.items():
        assert text not in (tests[cid]["diagnosis"] or ""), f"{cid}: wrong diagnosis {text!r}\n{context}"
    allowed = bug.expected_diagnoses()
    stray = [t["id"] for t in report["tests"] if t["diagnosis"] and not any(a in t["diagnosis"] for a in allowed)]
    assert not stray, f"unexpected diagnoses on {stray}\n{context}"
