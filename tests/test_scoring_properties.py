"""Properties of scoring: full marks for the master on any hidden seed, reproducible reports, hidden
cases that defeat hard-coded answers, points that add up, and check weights read from the assignment.
"""

from __future__ import annotations

import copy
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bugs import conftest_helpers  # noqa: E402
from bugs import mlp as mlp_bugs  # noqa: E402

from grader import cases  # noqa: E402
from grader.assignment import Assignment, AssignmentError, load  # noqa: E402
from grader.checks import shapes  # noqa: E402
from grader.checks.base import CheckContext  # noqa: E402
from grader.checks.numgrad import quadratic, sum_of_sines  # noqa: E402
from grader.checks.runner import REGISTRY, plan  # noqa: E402  (importing the runner registers every check)
from reference import MLPSpec, forward, loss_and_grads, sigmoid, sigmoid_grad, softmax, softmax_cross_entropy  # noqa: E402

helpers = conftest_helpers()
ASSIGNMENTS = ("mlp", "mlp-sigmoid")
# 20 hidden seeds: the extremes of the 31-bit range and 17 drawn once from a fixed generator
HIDDEN_SEEDS = [0, 1, 2**31 - 2, *(int(s) for s in np.random.default_rng(20240917).integers(2, 2**31 - 2, 17))]
ROOT = Path(__file__).resolve().parent.parent


def _full(test: dict[str, Any]) -> bool:
    return test["score"] >= test["max_score"] - 1e-9


# --------------------------------------------------------------------------- (a) master: full marks, any seed


@pytest.mark.parametrize("seed", HIDDEN_SEEDS)
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_master_solution_scores_full_marks_for_every_hidden_seed(assignment: str, seed: int, grade: Any) -> None:
    report = grade(helpers.solution_cells(assignment), assignment, seed=seed)
    not_full = {t["id"]: f"{t['score']}/{t['max_score']}: {t['message'][:200]}" for t in report["tests"]
                if not _full(t)}
    assert not not_full, f"{assignment}, hidden seed {seed}: flaky checks {not_full}"
    assert report["score"] == pytest.approx(report["max_score"], abs=1e-9)
    assert report["provenance"]["hidden_seed"] == seed
    assert any(t["visibility"] == "hidden" for t in report["tests"])
    assert not [t for t in report["tests"] if t["diagnosis"]]


# --------------------------------------------------------------------------- (b) reproducible reports

TIMINGS = (("provenance", "graded_at"), ("provenance", "wall_seconds"), ("execution", "seconds"))


def _without_timings(report: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(report)
    for section, key in TIMINGS:
        out[section].pop(key)
    for cell in out["execution"]["cells"]:
        cell.pop("seconds")
    return out


# a submission with diagnosed bugs in several problems, and the same with a numerical_gradient that draws
# random numbers (np.random.randint) to pick coordinates
_BY_ID = {b.id: b for b in mlp_bugs.BUGS}
DETERMINISTIC_BUGS = {
    **_BY_ID["softmax_wrong_axis"].replace,
    **_BY_ID["loss_missing_1_over_n_and_reg_factor_2"].replace,
    **_BY_ID["numgrad_one_sided_nditer"].replace,
}
BUGGY = {**DETERMINISTIC_BUGS, **_BY_ID["numgrad_samples_random_coordinates"].replace}


@pytest.mark.parametrize("seed", [7, None], ids=["hidden-seed-7", "visible-only"])
@pytest.mark.parametrize("submission", ["master", "buggy"])
def test_same_notebook_and_seed_give_the_same_report(submission: str, seed: int | None, grade: Any) -> None:
    cells = helpers.solution_cells("mlp", BUGGY if submission == "buggy" else None)
    first, second = (grade(cells, "mlp", seed=seed) for _ in range(2))
    assert _without_timings(first) == _without_timings(second)


def _visible_entries_across_hidden_seeds(cells: list[str], grade: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = (helpers.by_id(grade(cells, "mlp", seed=s)) for s in (7, 8))
    assert a.keys() == b.keys()
    # the hidden cases themselves differ (the randomized checks record their seeds)
    assert any(a[i]["details"] != b[i]["details"] for i in a if i.endswith("[hidden]"))
    return ({i: t for i, t in a.items() if not i.endswith("[hidden]")},
            {i: t for i, t in b.items() if not i.endswith("[hidden]")})


def test_hidden_seed_changes_only_hidden_entries(grade: Any) -> None:
    a, b = _visible_entries_across_hidden_seeds(helpers.solution_cells("mlp", DETERMINISTIC_BUGS), grade)
    assert a == b


def test_visible_entries_do_not_depend_on_the_hidden_seed_for_code_that_draws_random_numbers(grade: Any) -> None:
    a, b = _visible_entries_across_hidden_seeds(helpers.solution_cells("mlp", BUGGY), grade)
    assert {i: (a[i]["score"], b[i]["score"]) for i in a if a[i] != b[i]} == {}


# --------------------------------------------------------------------------- (c) hard-coded visible answers

# The lookup a hard-coding student would write: each visible input, byte for byte, to its expected output.
LOOKUP = '''
import numpy as np

def _key(name, *args):
    parts = [name]
    for a in args:
        if isinstance(a, dict):
            parts += [k + ":" + repr(v.shape) + v.dtype.str + v.tobytes().hex() for k, v in sorted(a.items())]
        elif isinstance(a, np.ndarray):
            parts.append(repr(a.shape) + a.dtype.str + a.tobytes().hex())
        else:
            parts.append(repr(a))
    return "|".join(parts)

ANSWERS = {}
'''

HARD_CODED = {
    "softmax": "def softmax(x):\n    return ANSWERS.get(_key('softmax', x), np.zeros_like(x))\n",
    "sigmoid": "def sigmoid(x):\n    return ANSWERS.get(_key('sigmoid', x), np.zeros_like(x))\n",
    "sigmoid_grad": "def sigmoid_grad(s):\n    return ANSWERS.get(_key('sigmoid_grad', s), np.zeros_like(s))\n",
    "softmax_cross_entropy": "def softmax_cross_entropy(z, y):\n"
                             "    return ANSWERS.get(_key('ce', z, y), (0.0, np.zeros_like(z)))\n",
    "mlp_forward": "def mlp_forward(X, params):\n"
                   "    return ANSWERS.get(_key('forward', X, params), np.zeros((len(X), len(params['b2']))))\n",
    "mlp_loss": "def mlp_loss(X, y, params, reg):\n"
                "    return ANSWERS.get(_key('loss', X, y, params, reg), (0.0, {k: np.zeros_like(v) for k, v in "
                "params.items()}))\n",
    "numerical_gradient": "def numerical_gradient(f, x, h=1e-5):\n"
                          "    return ANSWERS.get(_key('numgrad', x), np.zeros_like(x))\n",
}


def _visible_seeds(assignment: Assignment, problem: str) -> Iterator[int]:
    """The seeds of a problem's visible random cases, as the checks derive them."""
    ctx = CheckContext(None, assignment, assignment.problem(problem), assignment.visible_seed,  # type: ignore[arg-type]
                       hidden=False, memo={})
    yield from ctx.case_seeds()


def _literal(value: Any) -> str:
    """Python source that rebuilds the value exactly (float repr round-trips; dtype kept)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        return "(" + "".join(f"{_literal(v)}, " for v in value) + ")"
    if isinstance(value, np.ndarray):
        return f"np.array({value.tolist()!r}, dtype={value.dtype.str!r})"
    return repr(value)


def _answers(assignment: Assignment) -> list[str]:
    """Source lines `ANSWERS[_key(name, *inputs)] = output` for every visible random case (reference outputs)."""
    lines = []

    def answer(name: str, args: tuple[Any, ...], output: Any) -> None:
        lines.append(f"ANSWERS[_key({name!r}, {', '.join(_literal(a) for a in args)})] = {_literal(output)}")

    def every_form(name: str, case: cases.Case, expected: Any) -> None:
        """The answers for the case in every input form the checks give it (grader/checks/shapes.py)."""
        for shaped, target in shapes.every_form(name, case, expected):
            answer(name, shaped.args, target)

    for seed in _visible_seeds(assignment, "softmax"):
        for ndim in (1, 2):
            case = cases.logits(seed, ndim)
            every_form("softmax", case, softmax(case.args[0]))
    for seed in _visible_seeds(assignment, "sigmoid"):
        case = cases.elementwise(seed)
        every_form("sigmoid", case, sigmoid(case.args[0]))
    for seed in _visible_seeds(assignment, "sigmoid_grad"):
        case = cases.sigmoid_outputs(seed)
        every_form("sigmoid_grad", case, sigmoid_grad(case.args[0]))
    for seed in _visible_seeds(assignment, "softmax_cross_entropy"):
        z, y = cases.classification(seed).args
        loss, dz = softmax_cross_entropy(z, y, assignment.reduction)
        answer("ce", (z, y), (float(loss), np.asarray(dz)))
    for problem in ("mlp_forward", "mlp_loss"):
        for seed in _visible_seeds(assignment, problem):
            x, y, params, reg = cases.mlp(seed, assignment.reg, assignment.activation).args
            spec = MLPSpec((x.shape[1], params["W1"].shape[1], params["W2"].shape[1]), assignment.activation,
                           assignment.reduction, reg)
            if problem == "mlp_forward":
                answer("forward", (x, params), np.asarray(forward(x, params, spec)[0]))
            else:
                loss, grads = loss_and_grads(x, y, params, spec)
                answer("loss", (x, y, params, reg), (float(loss), {k: np.asarray(v) for k, v in grads.items()}))
    for seed in _visible_seeds(assignment, "numerical_gradient"):
        for fn in (quadratic(seed), sum_of_sines(seed)):
            answer("numgrad", (fn.x,), fn.gradient(fn.x))
    return lines


def _hard_coded_reports(assignment: str, grade: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The hard-coded submission graded with hidden cases (report and tests by id), and visible-only (by id)."""
    table = LOOKUP + "\n".join(_answers(load(assignment))) + "\n"
    cells = ["import numpy as np", table] + [HARD_CODED[f] for f in helpers.FUNCTIONS]
    report = grade(cells, assignment, seed=7)
    return report, helpers.by_id(report), helpers.by_id(grade(cells, assignment, seed=None))


# the checks on random cases whose visible inputs the hard-coded table answers (every other check fails outright)
ANSWERED = (
    "softmax.values_1d", "softmax.values_2d", "sigmoid.values", "sigmoid_grad.values",
    "softmax_cross_entropy.loss_value", "softmax_cross_entropy.gradient", "mlp_forward.scores", "mlp_loss.loss_value",
    "mlp_loss.grad_W1", "mlp_loss.grad_b1", "mlp_loss.grad_W2", "mlp_loss.grad_b2", "numerical_gradient.quadratic",
    "numerical_gradient.sines",
)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_hard_coded_visible_answers_fail_the_hidden_cases(assignment: str, grade: Any) -> None:
    report, tests, self_check = _hard_coded_reports(assignment, grade)
    hidden = [i for i in tests if i.endswith("[hidden]")]
    assert hidden and all(i.removesuffix("[hidden]") in tests for i in hidden)
    # none of the hidden cases earns points...
    assert {i: tests[i]["score"] for i in hidden if tests[i]["score"] > 0} == {}
    # ...so neither do the visible cases the table answers, and they say why: nothing earns points
    assert {i: tests[i]["message"][:200] for i in ANSWERED if "right on the visible inputs but wrong on hidden inputs"
            not in tests[i]["message"]} == {}
    assert report["score"] == 0
    # graded on visible cases only (a student's self-check), the hard-coded answers earn those checks' points
    assert {i: self_check[i]["message"][:200] for i in ANSWERED if not _full(self_check[i])} == {}


def test_hard_coded_visible_answers_earn_no_hidden_gradient_points(grade: Any) -> None:
    # their fallback (0.0, zero gradients) is "the exact gradient of their own loss", but of a constant one:
    # no credit is carried forward from it
    report, tests, _ = _hard_coded_reports("mlp", grade)
    gradients = [f"mlp_loss.grad_{k}[hidden]" for k in ("W1", "b1", "W2", "b2")]
    assert {i: tests[i]["score"] for i in gradients if tests[i]["score"] > 0} == {}
    hidden_points = sum(t["max_score"] for t in report["tests"] if t["visibility"] == "hidden")
    assert report["score"] <= report["max_score"] - hidden_points + 1e-6


# --------------------------------------------------------------------------- (d) points add up

STEP = 0.5  # points are apportioned in whole multiples of the bundled assignments' [scoring] point_step


@pytest.fixture(scope="module")
def reports(grade: Any) -> list[dict[str, Any]]:
    """Reports of both masters and of a buggy submission (partial scores)."""
    return [grade(helpers.solution_cells("mlp"), "mlp"), grade(helpers.solution_cells("mlp", BUGGY), "mlp"),
            grade(helpers.solution_cells("mlp-sigmoid"), "mlp-sigmoid")]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("hidden", [True, False], ids=["with-hidden", "visible-only"])
def test_planned_points_of_each_problem_sum_to_its_points(assignment: str, hidden: bool) -> None:
    a = load(assignment)
    planned = plan(a, include_hidden=hidden)
    for problem in a.problems:
        assert sum(p.points for p in planned if p.problem.name == problem.name) == pytest.approx(problem.points,
                                                                                                abs=1e-9)


def test_test_max_scores_of_each_problem_sum_to_its_points(reports: list[dict[str, Any]]) -> None:
    for report in reports:
        for p in report["problems"]:
            total = sum(t["max_score"] for t in report["tests"] if t["problem"] == p["name"])
            assert total == pytest.approx(p["max_score"], abs=1e-6), p["name"]
        assert sum(p["max_score"] for p in report["problems"]) == pytest.approx(report["max_score"], abs=1e-6)


def test_report_total_is_the_sum_of_the_test_scores(reports: list[dict[str, Any]]) -> None:
    assert reports[1]["score"] < reports[1]["max_score"]  # partial scores are covered too
    for report in reports:
        assert sum(t["score"] for t in report["tests"]) == pytest.approx(report["score"], abs=1e-6)
        assert sum(p["score"] for p in report["problems"]) == pytest.approx(report["score"], abs=1e-6)
        for p in report["problems"]:
            total = sum(t["score"] for t in report["tests"] if t["problem"] == p["name"])
            assert total == pytest.approx(p["score"], abs=1e-6), p["name"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_visible_only_grading_gives_randomized_checks_all_their_points(assignment: str, grade: Any) -> None:
    a = load(assignment)
    with_hidden = helpers.by_id(grade(helpers.solution_cells(assignment), assignment, seed=7))
    visible_only = grade(helpers.solution_cells(assignment), assignment, seed=None)
    tests = helpers.by_id(visible_only)
    assert not [i for i in tests if i.endswith("[hidden]")]
    assert visible_only["provenance"]["hidden_seed"] is None
    assert visible_only["score"] == pytest.approx(a.max_score)
    randomized = [i.removesuffix("[hidden]") for i in with_hidden if i.endswith("[hidden]")]
    assert randomized
    for i in randomized:
        both_parts = with_hidden[i]["max_score"] + with_hidden[f"{i}[hidden]"]["max_score"]
        assert tests[i]["max_score"] == pytest.approx(both_parts, abs=2 * STEP)
        assert with_hidden[f"{i}[hidden]"]["max_score"] == pytest.approx(a.hidden_share * both_parts, abs=2 * STEP)
    # the other checks, judged on the probe seed's fresh problems only, are worth the same either way (up to the step)
    others = [i for i in tests if i not in randomized]
    assert sorted(others) == ["mlp_loss.gradient_matches_own_loss", "softmax_cross_entropy.gradient_matches_own_loss"]
    assert all(tests[i]["max_score"] == pytest.approx(with_hidden[i]["max_score"], abs=2 * STEP) for i in others)


# --------------------------------------------------------------------------- (e) weights from the assignment


def _assignment_copy(tmp_path: Path, extra: str, name: str = "mlp") -> Path:
    """A copy of a bundled assignment's folder whose assignment.toml ends with `extra`."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(ROOT / "assignments" / name / "assignment.toml", folder / "assignment.toml")
    with (folder / "assignment.toml").open("a") as f:
        f.write("\n" + extra)
    return folder


def test_a_check_with_weight_zero_disappears_from_the_plan(tmp_path: Path, grade: Any) -> None:
    folder = _assignment_copy(tmp_path, "[problems.softmax.checks]\nfloat32 = 0\nvalues_2d = 6\n")
    a = load(folder)
    assert a.problem("softmax").weights == {"float32": 0.0, "values_2d": 6.0}
    for hidden in (True, False):
        planned = plan(a, include_hidden=hidden)
        ids = {p.id for p in planned}
        assert "softmax.float32" not in ids and "softmax.values_2d" in ids
        assert sum(p.points for p in planned if p.problem.name == "softmax") == pytest.approx(10.0)
        # every other problem keeps the bundled plan
        bundled = {p.id: p.points for p in plan(load("mlp"), include_hidden=hidden)}
        assert {p.id: p.points for p in planned if p.problem.name != "softmax"} == \
            {i: v for i, v in bundled.items() if not i.startswith("softmax.")}
    # the new weight: values_2d carries 6 of softmax's 2 + 6 + 1 + 1 + 2 + 1 = 13 units
    values_2d = sum(p.points for p in plan(a) if p.id.startswith("softmax.values_2d"))
    assert values_2d == pytest.approx(10 * 6 / 13, abs=2 * STEP)
    # graded with it, the master still gets every point, and no float32 entry is reported
    report = grade(helpers.solution_cells("mlp"), str(folder), seed=7)
    assert "softmax.float32" not in helpers.by_id(report)
    assert report["score"] == pytest.approx(100.0)


def test_a_softmax_that_only_fails_float32_keeps_full_points_when_float32_has_weight_zero(
        tmp_path: Path, grade: Any) -> None:
    # exp in float32 overflows for logits above ~88 unless shifted; this one upcasts nothing and shifts by 0
    float32_overflow = '''
def softmax(x):
    if x.dtype == np.float32:
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)
'''
    cells = helpers.solution_cells("mlp", {"softmax": float32_overflow})
    assert set(helpers.lost(grade(cells, "mlp", seed=7))) == {"softmax"}
    folder = _assignment_copy(tmp_path, "[problems.softmax.checks]\nfloat32 = 0\n")
    assert helpers.lost(grade(cells, str(folder), seed=7)) == {}


def test_unknown_check_names_in_weights_raise_a_clear_error(tmp_path: Path) -> None:
    folder = _assignment_copy(tmp_path, "[problems.softmax.checks]\nvalues_3d = 2\n")
    with pytest.raises((ValueError, AssignmentError)) as raised:
        plan(load(folder))
    text = str(raised.value)
    assert "softmax" in text and "values_3d" in text and "values_2d" in text  # the problem, the typo, the choices


def test_a_negative_weight_is_rejected(tmp_path: Path) -> None:
    folder = _assignment_copy(tmp_path, "[problems.softmax.checks]\nfloat32 = -1\n")
    with pytest.raises((ValueError, AssignmentError), match="float32"):
        plan(load(folder))


def test_a_problem_without_any_weighted_check_is_rejected(tmp_path: Path) -> None:
    zero = "\n".join(f"{c} = 0" for c in ("values_1d", "values_2d", "rows_sum_to_one", "shift_invariance",
                                           "extreme_logits", "float32", "no_mutation"))
    folder = _assignment_copy(tmp_path, f"[problems.softmax.checks]\n{zero}\n")
    try:
        a = load(folder)
        planned = plan(a)
    except (ValueError, AssignmentError) as exc:
        assert "softmax" in str(exc)
        return
    pytest.fail(f"accepted: the plan awards {sum(p.points for p in planned):g} of {a.max_score:g} points")


# --------------------------------------------------------------------------- (f) the rules behind carried credit


@pytest.mark.parametrize("activation,reduction", [("relu", "mean"), ("sigmoid", "sum"), ("tanh", "mean")])
def test_every_known_loss_comes_with_its_exact_gradient(activation: str, reduction: str) -> None:
    # credit is carried forward only for the exact gradient of a known loss, so each must be exact: central
    # differences of the loss along random directions agree with the returned gradient
    from grader.checks.diagnosis import loss_mistake_sets
    from reference import bugs

    x, y, params, reg = cases.mlp(11, 0.1, activation).args
    rng = np.random.default_rng(5)
    step = 1e-6
    for combo in [(), *loss_mistake_sets(activation, reduction)]:
        def loss_at(shift: float, v: dict[str, np.ndarray], combo: tuple[str, ...] = combo) -> float:
            moved = {k: p + shift * v[k] for k, p in params.items()}
            return bugs.consistent_loss_and_grads(x, y, moved, activation, reduction, reg, combo)[0]

        _, grads = bugs.consistent_loss_and_grads(x, y, params, activation, reduction, reg, combo)
        for _ in range(3):
            v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
            numerical = (loss_at(step, v) - loss_at(-step, v)) / (2 * step)
            analytic = sum(float(np.sum(grads[k] * v[k])) for k in params)
            assert analytic == pytest.approx(numerical, rel=1e-6, abs=1e-7), combo


def test_a_property_check_earns_points_only_beside_a_value_check_that_earns_some() -> None:
    from grader.checks.base import Outcome
    from grader.checks.runner import gate_properties

    def outcome(problem: str, check: str, role: str, score: float) -> Outcome:
        return Outcome(f"{problem}.{check}", problem, check, check, "passed" if score else "failed", score, 1.0,
                       hidden=False, role=role)

    gated = {o.id: o for o in gate_properties([
        outcome("f", "values", "value", 0.0), outcome("f", "no_mutation", "property", 1.0),
        outcome("g", "values", "value", 0.5), outcome("g", "no_mutation", "property", 1.0),
    ])}
    assert gated["f.no_mutation"].score == 0 and gated["f.no_mutation"].status == "failed"
    assert "no points" in gated["f.no_mutation"].message and gated["f.no_mutation"].details["gated"]
    assert gated["g.no_mutation"].score == 1.0 and gated["g.values"].score == 0.5


def test_checks_that_code_computing_nothing_passes_are_declared_properties() -> None:
    properties = {f"{kind}.{c.name}" for kind, checks in REGISTRY.items() for c in checks if c.role == "property"}
    assert properties == {
        "softmax.rows_sum_to_one", "softmax.no_mutation", "sigmoid.no_mutation", "sigmoid_grad.no_mutation",
        "softmax_cross_entropy.gradient_matches_own_loss", "softmax_cross_entropy.no_mutation",
        "mlp_forward.no_mutation", "mlp_loss.gradient_matches_own_loss", "mlp_loss.output_structure",
        "mlp_loss.no_mutation", "numerical_gradient.restores_x", "numerical_gradient.deterministic",
        # stability judged against the student's own (identified) loss: a known wrong loss has it too
        "mlp_loss.large_scores",
        # a gradient checker that reports nothing has every one of these: only telling right from wrong is a value
        "gradcheck.central", "gradcheck.every_entry", "gradcheck.restores_x", "gradcheck.random_state",
        "gradcheck.evaluates_x", "gradcheck.budget",
        # a deep net's: consistency of the student's own loss and gradients, stability, inputs left alone
        "deep_mlp_loss.gradient_matches_own_loss", "deep_mlp_loss.directional_derivatives",
        "deep_mlp_loss.large_scores", "deep_mlp_loss.no_mutation",
        # a layer's: the backward pass differentiates the student's own forward (zeros differentiate zeros)
        "affine_backward.numeric", "relu_backward.numeric", "sigmoid_backward.numeric",
        "affine_forward.no_mutation", "relu_forward.no_mutation", "sigmoid_forward.no_mutation",
    }
