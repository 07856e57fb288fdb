"""A gradient checker that prints its verdict (CS224n's gradcheck_naive) is graded by observing it: a correct one
scores full marks under each contract (prints, raises AssertionError, returns a bool), and each typical bug loses
points only in the checks about it, with its diagnosis."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, notebook_json

from grader.assignment import Assignment, load
from grader.checks.base import Outcome
from grader.checks.runner import run_checks
from grader.grading import Grader
from grader.notebook import loads
from grader.sandbox import protocol
from grader.sandbox.exceptions import StudentError
from grader.sandbox.session import Sandbox
from grader.sandbox.zygote import Zygote
from grader.selfcheck import Checker

DATA = Path(__file__).parent / "data" / "gradcheck"
CORRECT = (DATA / "correct.py").read_text()
HIDDEN_SEED = 99

# Edits of the correct checker, each one bug (or another contract): old text -> new text.
CENTRAL_LINES = (
    "        x[ix] -= 2 * h\n        random.setstate(rndstate)\n        fxnh, _ = f(x)\n        x[ix] += h\n"
    "        numgrad = (fxh - fxnh) / 2 / h\n"
)
FAILURE_LINES = (
    '            print("Gradient check failed.")\n'
    '            print("First gradient error found at index %s" % str(ix))\n'
    '            print("Your gradient: %f \\t Numerical gradient: %f" % (grad[ix], numgrad))\n'
    "            return\n"
)
PASS_LINE = '    print("Gradient check passed!")\n'
EDITS: dict[str, dict[str, str]] = {
    "one_sided": {CENTRAL_LINES: "        x[ix] -= h\n        numgrad = (fxh - fx) / h\n"},
    "random_state_not_restored": {"        random.setstate(rndstate)\n": ""},
    "x_not_restored": {"        fxnh, _ = f(x)\n        x[ix] += h\n": "        fxnh, _ = f(x)\n"},
    "loop_advances_twice": {"        it.iternext()\n": "        it.iternext()\n        it.iternext()\n"},
    "absolute_error_huge_threshold": {"reldiff > 1e-5": "abs(numgrad - grad[ix]) > 0.1"},
    "never_reports_failure": {FAILURE_LINES: "            return\n"},
    "returns_after_first_entry": {
        "        it.iternext()\n": "        it.iternext()\n"
        + PASS_LINE.replace("    ", "        ", 1)
        + "        return\n"
    },
    "raises_assertion_silently": {
        FAILURE_LINES: "            raise AssertionError(f'gradient error at {ix}')\n",
        PASS_LINE: "",
    },
    "returns_a_boolean": {FAILURE_LINES: "            return False\n", PASS_LINE: "    return True\n"},
    "step_of_0.1": {"h = 1e-4": "h = 0.1"},
    "scales_x_after_the_loop": {PASS_LINE: "    x *= 2\n" + PASS_LINE},
    "flattens_x": {"fxh, _ = f(x)": "fxh, _ = f(x.ravel())"},
    "ten_evaluations_per_entry": {
        "        x[ix] += h\n        random": "        for _ in range(10):\n"
        "            f(x)\n        x[ix] += h\n        random"
    },
}

# bug -> (the checks that lose points, the text each one's message must contain)
VALUE_CHECKS = ("detects_error", "detects_transposed")
EVERY_CHECK = (*VALUE_CHECKS, "central", "every_entry", "restores_x", "random_state", "evaluates_x", "budget")
REPORTS_NOTHING = "reported no failure"
GATED = "But no points"  # a property check of a checker that tells no right gradient from a wrong one
LOSSES: dict[str, dict[str, str]] = {
    "one_sided": {"central": "never at x - h: this is a one-sided difference"},
    "random_state_not_restored": {"random_state": "random.setstate(rndstate) before each f(x)"},
    "x_not_restored": {"restores_x": "x was not restored before another entry was moved"},
    "absolute_error_huge_threshold": {"detects_error": "compare the relative error"},
    "scales_x_after_the_loop": {"restores_x": "x is left perturbed after your checker returns"},
    "step_of_0.1": {"central": "uses a step of 1.0e-01; use a step between 1e-07 and 0.001"},
    "never_reports_failure": {c: REPORTS_NOTHING if c in VALUE_CHECKS else GATED for c in EVERY_CHECK},
    "returns_after_first_entry": {
        **{c: "never evaluated f with entry" if c in VALUE_CHECKS else GATED for c in EVERY_CHECK},
        "every_entry": "returned after the first entry of x",
    },
    "raises_assertion_silently": {},
    "returns_a_boolean": {},
    "flattens_x": {c: GATED if c == "budget" else "f must be called with a float array of shape" for c in EVERY_CHECK},
    "ten_evaluations_per_entry": {c: GATED if c == "evaluates_x" else "too many evaluations of f" for c in EVERY_CHECK},
}


def edited(name: str) -> str:
    """The correct checker with one bug's edits."""
    source = CORRECT
    for old, new in EDITS[name].items():
        assert old in source, (name, old)
        source = source.replace(old, new)
    return source


@pytest.fixture(scope="module")
def assignment() -> Assignment:
    return load(DATA / "assignment.toml")


def outcomes(zygote: Zygote, assignment: Assignment, source: str) -> list[Outcome]:
    """Every planned check (visible and hidden) on a submission of one cell."""
    with Sandbox(zygote, [(0, source)], FAST) as sandbox:
        return run_checks(sandbox, assignment, HIDDEN_SEED)


def test_correct_checker_scores_full_marks_through_the_grader(zygote: Zygote, assignment: Assignment) -> None:
    notebook = loads(json.dumps(notebook_json([CORRECT], assignment.name)).encode(), "student.ipynb")
    report = Grader(assignment, FAST, HIDDEN_SEED, include_hidden=True, zygote=zygote).grade(notebook, "s")
    result = report.result.to_dict()
    tests = {t["id"]: t for t in result["tests"]}
    assert {t.split(".")[1].removesuffix("[hidden]") for t in tests} == set(EVERY_CHECK)
    assert all(t["score"] == t["max_score"] for t in tests.values()), [t for t in tests.values() if t["message"]]
    assert result["score"] == result["max_score"] == 15
    assert "step of 1.0e-04" in tests["gradcheck_naive.central"]["message"]


@pytest.mark.parametrize("bug", sorted(LOSSES))
def test_each_bug_loses_points_only_where_it_should(zygote: Zygote, assignment: Assignment, bug: str) -> None:
    graded = outcomes(zygote, assignment, edited(bug))
    lost = {o.check: o for o in graded if o.score < o.max_score}
    assert set(lost) == set(LOSSES[bug]), {c: o.message for c, o in lost.items()}
    for check, text in LOSSES[bug].items():
        assert text in lost[check].message, (check, lost[check].message)


def test_a_skipped_entry_is_diagnosed_and_costs_only_what_it_misses(zygote: Zygote, assignment: Assignment) -> None:
    graded = outcomes(zygote, assignment, edited("loop_advances_twice"))
    lost = {o.id: o for o in graded if o.score < o.max_score}
    for o in graded:
        if o.check == "every_entry":
            assert "the loop advances twice per iteration (it.iternext() called twice?)" in o.message
    # the planted entry is chosen by the seed: missing it is the only other loss, and says why
    assert {o.check for o in lost.values()} <= {"every_entry", "detects_error"}
    missed = lost.get("gradcheck_naive.detects_error[hidden]")
    assert missed is not None and "never evaluated f with entry" in missed.message


def test_a_forged_draw_is_refused_and_an_honest_one_follows_the_random_state(zygote: Zygote) -> None:
    cells = [
        "import random\n"
        "def twice(f, x):\n"
        "    random.seed(5)\n"
        "    a = f(x)\n"
        "    random.seed(5)\n"
        "    return a, f(x), f(x)\n"
        "FORGED = ['a string', 1.5, float('nan'), -0.25, [0.5], 0.25]\n"
        "def forged(f, x, i):\n"
        "    return f._function(FORGED[i], x)\n"
    ]
    f = protocol.DrawsRandom(lambda draw, x: draw + x)
    with Sandbox(zygote, list(enumerate(cells)), FAST) as sandbox:
        first, again, next_one = sandbox.call("twice", f, 0.0, functions=[f]).value
        assert first == again == random.Random(5).random() != next_one
        for forged in range(5):
            with pytest.raises(StudentError, match=r"a random draw must be a float in \[0, 1\)"):
                sandbox.call("forged", f, 0.0, forged, functions=[f])
        assert sandbox.call("forged", f, 0.0, 5, functions=[f]).value == 0.25


def test_only_drawing_functions_are_marked_on_the_channel() -> None:
    plain, drawing = (lambda x: x), protocol.DrawsRandom(lambda draw, x: x)
    tree, _ = protocol.encode([plain, drawing], functions=protocol.identify([plain, drawing]))
    assert tree["v"] == [{"t": "fn", "id": 0}, {"t": "fn", "id": 1, "draws": True}]
    stand_ins = protocol.decode(tree, [], lambda fid: [plain, drawing][fid])
    assert stand_ins[0] is plain and stand_ins[1] is not drawing
    assert stand_ins[1](np.float64(3.0)) == 3.0  # the stand-in draws here and passes the draw first


def test_the_self_check_in_the_students_kernel_draws_from_its_random_state(assignment: Assignment) -> None:
    for source, lost in ((CORRECT, set()), (edited("random_state_not_restored"), {"random_state"})):
        namespace: dict[str, object] = {}
        exec(source, namespace)
        graded = Checker(assignment, namespace).run("gradcheck_naive")
        assert {o.check for o in graded if o.score < o.max_score} == lost


def test_an_assignment_declares_the_words_of_its_checkers_verdicts() -> None:
    """A course whose checker prints 'WRONG' / 'OK': the binding's fail_words / pass_words read its verdicts."""
    from grader import bindings
    from grader.checks.gradcheck import FAILED, PASSED, SILENT, verdict_of

    words = bindings.parse("g", "gradcheck", {"fail_words": "wrong", "pass_words": r"\bok\b"}, "test").words
    assert verdict_of(None, "Gradient WRONG at (0, 1)\n", words)[0] == FAILED
    assert verdict_of(None, "all OK\n", words)[0] == PASSED
    assert verdict_of(None, "Gradient check failed.\n", words)[0] == SILENT  # not this course's words
    assert verdict_of(None, "Gradient check failed.\n")[0] == FAILED  # the default words
    with pytest.raises(bindings.BindingError, match="not a regular expression"):
        bindings.parse("g", "gradcheck", {"fail_words": "("}, "test")
    with pytest.raises(bindings.BindingError, match=r"can only set \['call'\]"):
        bindings.parse("s", "unknown_kind", {"fail_words": "x"}, "test")
