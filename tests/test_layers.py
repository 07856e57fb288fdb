"""The `layers` assignment (modular layers and graph gates): the reference against finite differences, the master
at full marks over 20 seeds, the template at zero, and each bug of the example class losing points only where it
should, with its diagnosis (assignments/layers/examples/README.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from conftest import FAST, by_id, lost

from grader.assignment import load
from grader.checks.layers import GATES, LAYERS
from grader.grading import Grader
from grader.sandbox.zygote import Zygote
from reference import layers as ref
from reference.numgrad import numerical_gradient, rel_error

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = ROOT / "assignments" / "layers"
EXAMPLES = ASSIGNMENT / "examples"
HIDDEN_SEED = 3

# Problems that lose points, and the diagnosis expected on one failing check (from the examples' README).
EXPECTED: dict[str, tuple[set[str], dict[str, str]]] = {
    "alice": (set(), {}),
    "bob": (
        {"relu_backward", "two_layer_loss"},
        {"relu_backward.dx": "mask is taken from the wrong tensor", "two_layer_loss.grad_W1": "upstream gradient"},
    ),
    "carol": ({"affine_backward", "two_layer_loss"}, {"affine_backward.dw": "the cache holds the layer's output"}),
    "dave": (
        {"affine_backward", "two_layer_loss"},
        {"affine_backward.db": "db is dout itself", "two_layer_loss.grad_b1": "not summed over the batch"},
    ),
    "erin": ({"affine_backward", "two_layer_loss"}, {"affine_backward.dw": "a transpose is missing"}),
    "frank": ({"sigmoid_backward"}, {"sigmoid_backward.dx": "derivative is taken at the output"}),
    "grace": (
        {"multiply_gate", "copy_gate"},
        {"multiply_gate.arrays": "times the OTHER input", "copy_gate.scalars": "sums the upstream gradients"},
    ),
}
# Checks that keep part of their points (right values in a wrong shape), and the share they keep.
SHARES = {("erin", "affine_backward.dw"): 0.5, ("erin", "affine_backward.dw[hidden]"): 0.5}


# --------------------------------------------------------------------------- the reference


def _numeric(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """The gradient of sum(f(x) * dout) with respect to x, by central differences."""
    return numerical_gradient(lambda v: float(np.sum(f(v) * dout)), np.array(x, dtype=np.float64))


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_layer_backward_matches_finite_differences(name: str, seed: int) -> None:
    layer = LAYERS[name]
    args = layer.case(seed).args
    dout = np.random.default_rng(seed).standard_normal(layer.forward(*args).shape)
    grads = layer.backward(dout, *args)
    for i, grad in enumerate(grads):

        def f(v: np.ndarray, i: int = i) -> np.ndarray:
            return layer.forward(*args[:i], v, *args[i + 1 :])

        assert rel_error(grad, _numeric(f, args[i], dout)) < 1e-6


@pytest.mark.parametrize("name", ["add_gate", "multiply_gate", "max_gate"])
def test_reference_binary_gates_match_finite_differences(name: str) -> None:
    rng = np.random.default_rng(7)
    x, y, dout = (rng.standard_normal(5) for _ in range(3))
    gate = getattr(ref, name)
    _, dx, dy = gate(x, y, dout)
    assert rel_error(dx, _numeric(lambda v: gate(v, y, dout)[0], x, dout)) < 1e-7
    assert rel_error(dy, _numeric(lambda v: gate(x, v, dout)[0], y, dout)) < 1e-7


def test_reference_copy_gate_and_neuron_match_finite_differences() -> None:
    rng = np.random.default_rng(8)
    x, d1, d2 = (rng.standard_normal(4) for _ in range(3))
    _, _, dx = ref.copy_gate(x, d1, d2)
    assert rel_error(dx, _numeric(lambda v: np.concatenate(ref.copy_gate(v, d1, d2)[:2]), x, np.r_[d1, d2])) < 1e-7
    w, x = rng.standard_normal(3), rng.standard_normal(3)
    f, dw, dx = ref.sigmoid_dot(w, x)
    one = np.ones(())
    assert rel_error(dw, _numeric(lambda v: ref.sigmoid_dot(v, x)[0], w, one)) < 1e-7
    assert rel_error(dx, _numeric(lambda v: ref.sigmoid_dot(w, v)[0], x, one)) < 1e-7
    assert ref.sigmoid_dot(*LECTURE)[0] == pytest.approx(0.731, abs=1e-3)


LECTURE = (np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0, 1.0]))


def test_max_gate_ties_go_to_the_first_input_or_split() -> None:
    x, y, dout = np.array([1.0, 2.0]), np.array([1.0, 3.0]), np.array([4.0, 5.0])
    assert [list(g) for g in ref.max_gate(x, y, dout)[1:]] == [[4.0, 0.0], [0.0, 5.0]]
    assert [list(g) for g in ref.max_gate_split(x, y, dout)[1:]] == [[2.0, 0.0], [2.0, 5.0]]
    assert len(GATES["max_gate"].accepted) == 2


# --------------------------------------------------------------------------- master, template, examples


@pytest.fixture(scope="module")
def reports(zygote: Zygote) -> dict[str, dict[str, Any]]:
    grader = Grader(load(str(ASSIGNMENT)), FAST, hidden_seed=HIDDEN_SEED, zygote=zygote)
    return {name: grader.grade_file(EXAMPLES / f"{name}.ipynb").result.to_dict() for name in EXPECTED}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_example_loses_points_exactly_where_its_bugs_are(reports: dict[str, dict[str, Any]], student: str) -> None:
    problems, diagnoses = EXPECTED[student]
    report = reports[student]
    assert set(lost(report)) == problems
    tests = by_id(report)
    for check_id, text in diagnoses.items():
        assert tests[check_id]["status"] == "failed"
        assert text in (tests[check_id]["diagnosis"] or ""), tests[check_id]


@pytest.mark.parametrize(("student", "check_id"), sorted(SHARES))
def test_right_values_in_a_transposed_shape_keep_their_share(
    reports: dict[str, dict[str, Any]], student: str, check_id: str
) -> None:
    test = by_id(reports[student])[check_id]
    assert test["score"] == pytest.approx(SHARES[student, check_id] * test["max_score"])


def test_the_examples_scores_are_those_of_the_readme(reports: dict[str, dict[str, Any]]) -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for name, report in reports.items():
        assert f"| `{name}.ipynb` |" in readme
        assert f"({report['score']:g}/100)" in readme, (name, report["score"])


def test_a_backward_without_its_forward_says_it_could_not_get_a_cache(grade: Callable[..., dict[str, Any]]) -> None:
    backward = "def affine_backward(dout, cache):\n    x, w, b = cache\n    return dout @ w.T, x.T @ dout, dout.sum(0)"
    report = grade(["import numpy as np", backward], str(ASSIGNMENT), seed=HIDDEN_SEED)
    test = by_id(report)["affine_backward.dw"]
    assert test["score"] == 0
    assert "could not get a cache from affine_forward()" in test["message"], test["message"]


@pytest.mark.slow
def test_master_scores_full_marks_over_20_seeds(zygote: Zygote) -> None:
    assignment = load(str(ASSIGNMENT))
    for seed in range(20):
        grader = Grader(assignment, FAST, hidden_seed=seed, zygote=zygote)
        report = grader.grade_file(assignment.master).result.to_dict()
        assert report["score"] == pytest.approx(assignment.max_score), (
            seed,
            [t["id"] for t in report["tests"] if t["status"] != "passed"],
        )


def test_template_scores_zero_with_not_implemented_messages(zygote: Zygote) -> None:
    assignment = load(str(ASSIGNMENT))
    grader = Grader(assignment, FAST, hidden_seed=HIDDEN_SEED, zygote=zygote)
    template = grader.grade_file(ROOT / "student_template" / assignment.template).result.to_dict()
    assert template["score"] == 0
    assert all("not implemented yet" in t["message"] for t in template["tests"] if t["status"] != "passed")


@pytest.mark.slow
def test_master_notebook_runs_in_a_kernel_and_its_self_checks_pass_with_handles() -> None:
    """The in-kernel self-check holds the caches in a dict and grades the backward problems the same way."""
    from test_notebooks_execute import errors, execute, stream_text

    notebook = execute(ASSIGNMENT / "solution.ipynb", allow_errors=False)
    assert errors(notebook) == []
    for function in ("max_gate", "affine_backward", "relu_backward", "sigmoid_backward", "two_layer_loss"):
        assert "visible checks passed" in stream_text(notebook, f"{function}-check"), function


def test_a_binding_that_reorders_the_results_keeps_the_cache_where_the_student_returns_it(tmp_path: Path) -> None:
    """`returns = ["cache", "out"]`: the cache is the student's first item, and it is the one held as a handle."""
    from grader.checks.runner import run_checks
    from grader.selfcheck import KernelSession

    definition = (ASSIGNMENT / "assignment.toml").read_text()
    head = definition[: definition.index("[problems.")]
    (tmp_path / "assignment.toml").write_text(
        head + '[problems.affine_forward]\nkind = "affine_forward"\npoints = 6\n\n'
        '[problems.affine_forward.binding]\nreturns = ["cache", "out"]\n'
    )
    namespace: dict[str, Any] = {"np": np}
    exec(
        "class Cache:\n    pass\ndef affine_forward(x, w, b):\n    return Cache(), x.reshape(len(x), -1) @ w + b\n",
        namespace,
    )
    outcomes = run_checks(KernelSession(namespace), load(str(tmp_path)), HIDDEN_SEED)
    assert all(o.status == "passed" for o in outcomes), [(o.id, o.message) for o in outcomes if o.status != "passed"]


def test_a_backward_gets_its_cache_from_the_forward_the_assignment_names(tmp_path: Path) -> None:
    """Problems named affine_fwd / affine_bwd (kinds affine_forward / affine_backward): the backward's cache comes
    from affine_fwd, the assignment's forward of that layer, not from a name made up from the backward's."""
    from grader.checks.runner import run_checks
    from grader.selfcheck import KernelSession
    definition = (ASSIGNMENT / "assignment.toml").read_text()
    head = definition[: definition.index("[problems.")]
    (tmp_path / "assignment.toml").write_text(
        head + '[problems.affine_fwd]\nkind = "affine_forward"\npoints = 6\n\n'
        '[problems.affine_bwd]\nkind = "affine_backward"\npoints = 14\n'
    )
    namespace: dict[str, Any] = {"np": np}
    exec(
        "def affine_fwd(x, w, b):\n    return x.reshape(len(x), -1) @ w + b, (x, w, b)\n"
        "def affine_bwd(dout, cache):\n    x, w, b = cache\n"
        "    return (dout @ w.T).reshape(x.shape), x.reshape(len(x), -1).T @ dout, dout.sum(axis=0)\n",
        namespace,
    )
    outcomes = run_checks(KernelSession(namespace), load(str(tmp_path)), HIDDEN_SEED)
    assert {o.problem for o in outcomes} == {"affine_fwd", "affine_bwd"}
    assert all(o.status == "passed" for o in outcomes), [(o.id, o.message) for o in outcomes if o.status != "passed"]


def test_the_committed_template_is_up_to_date_and_holds_only_stubs() -> None:
    from grader.assign import STUB, student_notebook

    assignment = load(str(ASSIGNMENT))
    template = ROOT / "student_template" / assignment.template
    assert template.read_text() == student_notebook(assignment.master), f"{template} is stale: run jitgrade assign"
    text = "\n".join(c.source for c in nbformat.read(template, as_version=4).cells)
    assert "BEGIN SOLUTION" not in text and "Instructor notes" not in text
    assert text.count(STUB) == len(assignment.problems)  # one stub per student function


# --------------------------------------------------------------------------- a corpus of one-function bugs (in-kernel)

CORPUS = {
    "relu_no_mask": (
        "def relu_backward(dout, cache):\n    return dout * 1.0",
        {"relu_backward", "two_layer_loss"},
        ("relu_backward.dx", "the ReLU mask is missing"),
    ),
    "sigmoid_formula_on_input": (
        "def sigmoid_forward(x):\n    return 1 / (1 + np.exp(-x)), x\n"
        "def sigmoid_backward(dout, cache):\n    return dout * cache * (1 - cache)",
        {"sigmoid_backward"},
        ("sigmoid_backward.dx", "applied to the input x"),
    ),
    "db_averaged": (
        "def affine_backward(dout, cache):\n    x, w, b = cache\n"
        "    return (dout @ w.T).reshape(x.shape), x.reshape(len(x), -1).T @ dout, dout.mean(axis=0)",
        {"affine_backward", "two_layer_loss"},
        ("affine_backward.db", "db averages dout"),
    ),
    "dx_not_reshaped": (
        "def affine_backward(dout, cache):\n    x, w, b = cache\n"
        "    return dout @ w.T, x.reshape(len(x), -1).T @ dout, dout.sum(axis=0)",
        {"affine_backward"},
        ("affine_backward.dx[hidden]", "dx must have x's shape"),
    ),
    "add_without_dout": (
        "def add_gate(x, y, dout):\n    return x + y, 1.0 + 0 * x, 1.0 + 0 * y",
        {"add_gate"},
        ("add_gate.arrays", "not multiplied by the upstream gradient"),
    ),
    "max_to_both": (
        "def max_gate(x, y, dout):\n    return np.maximum(x, y), dout * 1.0, dout * 1.0",
        {"max_gate"},
        ("max_gate.arrays", "gives the gradient to both inputs"),
    ),
    "max_tie_to_both": (
        "def max_gate(x, y, dout):\n    return np.maximum(x, y), dout * (x >= y), dout * (y >= x)",
        {"max_gate"},
        ("max_gate.ties", "on a tie the max gate gives the whole gradient to both inputs"),
    ),
    "fanout_averaged": (
        "def copy_gate(x, dout1, dout2):\n    return x, x, (dout1 + dout2) / 2",
        {"copy_gate"},
        ("copy_gate.arrays", "it does not average them"),
    ),
    "neuron_swapped": (
        "def sigmoid_dot(w, x):\n    s = 1 / (1 + np.exp(-(w @ x)))\n    return s, s * (1 - s) * w, s * (1 - s) * x",
        {"sigmoid_dot"},
        ("sigmoid_dot.arrays", "swapped"),
    ),
}


MASTER_CODE = [
    cell.source
    for cell in nbformat.read(ASSIGNMENT / "solution.ipynb", as_version=4).cells
    if cell.cell_type == "code" and "jitgrade-selfcheck" not in cell.metadata.get("tags", [])
]


@pytest.mark.parametrize("bug", sorted(CORPUS))
def test_a_corpus_bug_loses_points_only_where_it_should_and_is_named(bug: str) -> None:
    from grader.checks.runner import run_checks
    from grader.selfcheck import KernelSession

    source, problems, (check_id, diagnosis) = CORPUS[bug]
    namespace: dict[str, Any] = {}
    for code in [*MASTER_CODE, source]:  # the master's two_layer_loss calls the bug
        exec(code, namespace)
    outcomes = {o.id: o for o in run_checks(KernelSession(namespace), load(str(ASSIGNMENT)), HIDDEN_SEED)}
    assert {o.problem for o in outcomes.values() if o.score < o.max_score} == problems
    assert diagnosis in (outcomes[check_id].diagnosis or ""), (outcomes[check_id].message, outcomes[check_id].diagnosis)
