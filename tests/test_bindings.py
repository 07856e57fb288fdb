"""Bindings: a course's own API graded by the canonical checks (grader/bindings.py).

Unit tests of the translation both ways (checked against hand-packed values), assignment-file errors, and
end-to-end grades: the cs231n-two-layer class and the eecs498-two-layer PyTorch functions (masters full marks
over 20 seeds, templates 0, and a bug corpus each: points lost only where wrong, with the diagnosis in the
course's L2 convention), plus flat parameters with one-hot labels, renamed dict keys and float32 tensors.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bugs import Edit, conftest_helpers  # noqa: E402

from grader import bindings  # noqa: E402
from grader.assignment import AssignmentError, load  # noqa: E402
from grader.checks.runner import plan  # noqa: E402  (importing the runner registers every check)
from reference import bugs as ref_bugs  # noqa: E402

helpers = conftest_helpers()
ROOT = Path(__file__).resolve().parent.parent
FULL = 1e-9


def _params(rng: np.random.Generator, d: int = 3, h: int = 4, c: int = 2) -> dict[str, np.ndarray]:
    return {
        "W1": rng.standard_normal((d, h)),
        "b1": rng.standard_normal(h),
        "W2": rng.standard_normal((h, c)),
        "b2": rng.standard_normal(c),
    }


def _binding(kind: str = "mlp_loss", **table: Any) -> bindings.Binding:
    return bindings.parse("p", kind, table, "test")


# ------------------------------------------------------------------ translation, checked by hand


def test_flat_parameters_one_hot_labels_and_dimensions_are_packed_as_the_course_does() -> None:
    rng = np.random.default_rng(0)
    params, x, y = _params(rng), rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    b = _binding(args=["X", "y", "params", "dimensions"], params="flat", labels="one_hot")
    name, args, kwargs, via = b.request((x, y, params, 0.0))
    assert name == "p" and kwargs == {} and via.method is None and not via.tensors
    packed = np.concatenate([params["W1"].ravel(), params["b1"], params["W2"].ravel(), params["b2"]])
    np.testing.assert_array_equal(args[2], packed)
    np.testing.assert_array_equal(args[1], [[1, 0], [0, 1], [0, 1], [1, 0], [0, 1]])
    assert args[3] == [3, 4, 2] and args[0] is x
    # the flat gradient comes back unpacked in the same layout
    loss, grads = b.result((1.5, packed * 2), (x, y, params, 0.0))
    assert loss == 1.5
    for k, v in params.items():
        np.testing.assert_array_equal(grads[k], v * 2)


def test_a_flat_gradient_of_the_wrong_size_is_named_with_the_layout() -> None:
    rng = np.random.default_rng(1)
    params, x, y = _params(rng), rng.standard_normal((2, 3)), np.array([0, 1])
    b = _binding(args=["X", "y", "params", "dimensions"], params="flat")
    with pytest.raises(bindings.UnreadableResult, match=r"flat gradient of 25 entries.*W1 \(3, 4\).*has 26"):
        b.result((0.0, np.zeros(25)), (x, y, params, 0.0))


@pytest.mark.parametrize(("l2_scale", "student_reg"), [(0.5, 0.3), (1.0, 0.15)])
def test_reg_is_translated_so_that_the_penalties_agree(l2_scale: float, student_reg: float) -> None:
    """0.5 * 0.3 * sum(W**2) (canonical) == l2_scale * student_reg * sum(W**2)."""
    rng = np.random.default_rng(2)
    b = _binding(args=["X", "y", "params"], kwargs={"reg": "reg"}, l2_scale=l2_scale)
    _, _, kwargs, _ = b.request((rng.standard_normal((2, 3)), np.array([0, 1]), _params(rng), 0.3))
    assert kwargs["reg"] == pytest.approx(student_reg, rel=1e-15)


def test_method_binding_builds_an_instance_and_assigns_the_parameters() -> None:
    rng = np.random.default_rng(3)
    params = _params(rng)
    b = bindings.parse(
        "loss",
        "mlp_loss",
        {
            "class": "Net",
            "init": ["input_size", "hidden_size", "output_size"],
            "attribute": "params",
            "call": "loss",
            "args": ["X", "y"],
            "kwargs": {"reg": "reg"},
        },
        "test",
    )
    name, args, kwargs, via = b.request((np.zeros((2, 3)), np.array([0, 1]), params, 0.1))
    assert name == "Net" and via.method == "loss" and via.init == (3, 4, 2)
    assert via.attrs["params"] is not params and set(via.attrs["params"]) == set(params)
    assert len(args) == 2 and kwargs == {"reg": 0.1}
    assert b.function == "Net.loss" and b.signature == "Net.loss(X, y, reg=reg)"


def test_tuple_results_are_read_by_position_and_a_wrong_form_is_named() -> None:
    b = _binding("mlp_forward", args=["params", "X"], returns=["scores", "hidden"])
    assert b.result(("S", "H"), ()) == "S"
    with pytest.raises(bindings.UnreadableResult, match=r"should return a tuple \(scores, hidden\); it returned a str"):
        b.result("S", ())


def test_renamed_keys_are_read_back_and_a_missing_key_is_named() -> None:
    rng = np.random.default_rng(4)
    params = _params(rng)
    keys = {"W1": "w1", "b1": "bias1", "W2": "w2", "b2": "bias2"}
    b = _binding(keys=keys)
    _, args, _, _ = b.request((np.zeros((2, 3)), np.array([0, 1]), params, 0.0))
    assert set(args[2]) == set(keys.values())
    _, grads = b.result((0.0, {keys[k]: v for k, v in params.items()}), (None, None, params, 0.0))
    assert set(grads) == set(params)
    with pytest.raises(bindings.UnreadableResult, match="without the key 'bias2'"):
        b.result((0.0, {"w1": 0, "bias1": 0, "w2": 0}), (None, None, params, 0.0))


def test_echoed_arguments_come_back_in_canonical_form() -> None:
    rng = np.random.default_rng(5)
    params, x, y = _params(rng), rng.standard_normal((2, 3)), np.array([0, 1])
    b = _binding(args=["X", "y", "params", "dimensions"], params="flat", labels="one_hot")
    _, sent, _, _ = b.request((x, y, params, 0.0))
    after = b.echoed(tuple(sent), (x, y, params, 0.0))
    assert after is not None and after[1] is y and all(after[2][k] is params[k] for k in params)
    changed = sent[2].copy()
    changed[0] += 1  # W1[0, 0]
    after = b.echoed((sent[0], sent[1], changed, sent[3]), (x, y, params, 0.0))
    assert after is not None and after[2]["W1"][0, 0] == params["W1"][0, 0] + 1 and after[2]["b1"] is params["b1"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"colour": 1}, "unknown key"),
        ({"params": "list"}, "params must be one of"),
        ({"args": ["X", "labels"]}, "args must be a list of names"),
        ({"args": ["X", "y"]}, r"passes no \['params'\]"),
        ({"init": ["input_size"]}, "need a class"),
        ({"returns": ["scores"]}, "returns must be a list naming every one of"),
        ({"l2_scale": 0}, "l2_scale must be a positive number"),
        ({"params": "flat", "layout": ["W1", "b1", "W2"]}, "layout must name each of"),
    ],
)
def test_invalid_bindings_are_one_line_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(bindings.BindingError, match=message):
        bindings.parse("p", "mlp_loss", table, "test.toml")


def _variant(tmp_path: Path, assignment: str, old: str, new: str) -> Path:
    """A copy of a bundled assignment's definition with one text replaced (the master stays the bundled one)."""
    text = (ROOT / "assignments" / assignment / "assignment.toml").read_text()
    assert text.count(old) == 1, old
    folder = tmp_path / assignment
    folder.mkdir()
    (folder / "assignment.toml").write_text(text.replace(old, new))
    return folder


def test_a_binding_that_passes_no_reg_needs_reg_zero(tmp_path: Path) -> None:
    folder = _variant(tmp_path, "cs231n-two-layer", 'kwargs = { reg = "reg" }\n', "")
    with pytest.raises(AssignmentError, match=r"passes no reg, but \[reference\] reg = 0.1"):
        load(folder)


def test_inplace_waives_only_the_no_mutation_check(tmp_path: Path) -> None:
    folder = _variant(tmp_path, "cs231n-two-layer", "l2_scale = 1.0\n", "l2_scale = 1.0\ninplace = true\n")
    checks = {p.check.name for p in plan(load(folder)) if p.problem.name == "loss"}
    before = {p.check.name for p in plan(load("cs231n-two-layer")) if p.problem.name == "loss"}
    assert before - checks == {"no_mutation"}


def test_the_l2_mistakes_of_each_convention_against_numpy() -> None:
    """reg_extra_half / reg_grad_half (the reg * sum(W**2) convention's mistakes), computed independently."""
    rng = np.random.default_rng(6)
    params, x, y, reg = _params(rng), rng.standard_normal((4, 3)), np.array([0, 1, 1, 0]), 0.2
    right, right_grads = ref_bugs.two_layer_loss_and_grads(x, y, params, "relu", "mean", reg)
    weights = (params["W1"] ** 2).sum() + (params["W2"] ** 2).sum()
    loss, grads = ref_bugs.two_layer_loss_and_grads(x, y, params, "relu", "mean", reg, ["reg_extra_half"])
    assert loss == pytest.approx(right - 0.25 * reg * weights, rel=1e-13)
    _, grads = ref_bugs.two_layer_loss_and_grads(x, y, params, "relu", "mean", reg, ["reg_grad_half"])
    np.testing.assert_allclose(grads["W1"], right_grads["W1"] - 0.5 * reg * params["W1"], rtol=1e-13)


# ------------------------------------------------------------------ grading through bindings, end to end

COURSES = {
    "cs231n-two-layer": ("import numpy as np", ["TwoLayerNet"]),
    "eecs498-two-layer": ("import torch", ["nn_forward_pass", "nn_forward_backward"]),
}


def _cells(assignment: str, replace: dict[str, str] | None = None) -> list[str]:
    imports, units = COURSES[assignment]
    sources = {**helpers.solution_sources(assignment, units), **(replace or {})}
    return [imports] + [sources[u] for u in units]


def _needs(assignment: str) -> Any:
    """Skip a PyTorch assignment without torch; the limits to grade with (the test zygote does not preload torch,
    so a worker's first `import torch` takes a few seconds of its first cell, more on a loaded machine)."""
    if assignment.startswith("eecs498"):
        pytest.importorskip("torch")
        return dataclasses.replace(helpers.FAST, cell_timeout=60.0, notebook_timeout=120.0)
    return helpers.FAST


@pytest.mark.parametrize("assignment", list(COURSES))
def test_master_scores_full_marks_over_20_seeds_and_template_scores_zero(assignment: str, grade: Any) -> None:
    limits = _needs(assignment)
    for seed in range(20):
        report = grade(_cells(assignment), assignment, seed=seed, limits=limits)
        assert report["score"] == report["max_score"] == 100, (seed, helpers.lost(report))
    template = json.loads((ROOT / "student_template" / f"{assignment}.ipynb").read_text())
    cells = ["".join(c["source"]) for c in template["cells"] if c["cell_type"] == "code"]
    report = grade([c for c in cells if "checker(" not in c and not c.startswith("check(")], assignment, limits=limits)
    assert report["score"] == 0


CS231N_LOSS = "loss = -log_probs[np.arange(n), y].mean() + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))"
CORPUS: list[tuple[str, str, dict[str, Edit | tuple[Edit, ...]], set[str], dict[str, str]]] = [
    # (id, assignment, edits per unit, problems that lose points, check id -> expected diagnosis or message)
    (
        "penalty_with_half",
        "cs231n-two-layer",
        {"TwoLayerNet": Edit("+ reg * (np.sum(W1", "+ 0.5 * reg * (np.sum(W1")},
        {"loss"},
        {"loss.loss_value": "factor 0.5 too many: in this assignment it is reg * (sum(W1**2) + sum(W2**2))"},
    ),
    (
        "reg_gradient_without_2",
        "cs231n-two-layer",
        {"TwoLayerNet": (Edit("+ 2 * reg * W2", "+ reg * W2"), Edit("+ 2 * reg * W1", "+ reg * W1"))},
        {"loss"},
        {"loss.grad_W1": "the regularization gradient is reg * W; for the penalty reg * sum(W**2) it is 2 * reg * W"},
    ),
    (
        "missing_1_over_n",
        "cs231n-two-layer",
        {"TwoLayerNet": Edit("        dscores /= n\n", "")},
        {"loss"},
        {"loss.grad_W2": "missing 1/N"},
    ),
    (
        "mask_from_upstream",
        "cs231n-two-layer",
        {"TwoLayerNet": Edit("du = (dscores @ W2.T) * (u > 0)", "du = (dscores @ W2.T)\n        du = du * (du > 0)")},
        {"loss"},
        {"loss.grad_W1": "mask is taken from the upstream gradient"},
    ),
    (
        "bias_not_summed",
        "cs231n-two-layer",
        {"TwoLayerNet": Edit('grads["b1"] = du.sum(axis=0)', 'grads["b1"] = du')},
        {"loss"},
        {"loss.grad_b1": "not summed over the batch"},
    ),
    (
        "no_max_shift",
        "cs231n-two-layer",
        {"TwoLayerNet": Edit("shifted = scores - scores.max(axis=1, keepdims=True)", "shifted = scores")},
        {"loss"},
        {"loss.large_scores": "log p = (z - max z) - log(sum(exp(z - max z)))"},
    ),
    (
        "modifies_X",
        "cs231n-two-layer",
        {"TwoLayerNet": Edit("u = X @ W1 + b1", "u = X @ W1 + b1\n        X *= 1.5")},
        {"loss", "scores"},
        {"loss.no_mutation": "modified its input X in place"},
    ),
    (
        "reg_gradient_missing",
        "eecs498-two-layer",
        {"nn_forward_backward": (Edit(" + 2 * reg * W2", ""), Edit(" + 2 * reg * W1", ""))},
        {"nn_forward_backward"},
        {"nn_forward_backward.grad_W2": "the regularization gradient 2 * reg * W is missing from dW1 and dW2"},
    ),
    (
        "loss_summed",
        "eecs498-two-layer",
        {"nn_forward_backward": Edit("-log_probs[rows, y].mean()", "-log_probs[rows, y].sum()")},
        {"nn_forward_backward"},
        {"nn_forward_backward.loss_value": "summed over the batch instead of averaged"},
    ),
    (
        "dW1_transposed",
        "eecs498-two-layer",
        {
            "nn_forward_backward": Edit(
                'grads["W1"] = X.t().mm(dhidden) + 2 * reg * W1', 'grads["W1"] = dhidden.t().mm(X) + 2 * reg * W1.t()'
            )
        },
        {"nn_forward_backward"},
        {"nn_forward_backward.grad_W1": "transposed"},
    ),
    (
        "forward_without_b2",
        "eecs498-two-layer",
        {"nn_forward_pass": Edit('hidden.mm(params["W2"]) + params["b2"]', 'hidden.mm(params["W2"])')},
        {"nn_forward_pass", "nn_forward_backward"},
        {"nn_forward_pass.scores": "does not add the bias b2"},
    ),
]


@pytest.mark.parametrize(("bug_id", "assignment", "edits", "loses", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bug_loses_points_only_where_wrong_with_the_courses_diagnosis(
    bug_id: str, assignment: str, edits: dict[str, Any], loses: set[str], expected: dict[str, str], grade: Any
) -> None:
    limits = _needs(assignment)
    master = helpers.solution_sources(assignment, COURSES[assignment][1])
    replaced = {}
    for unit, change in edits.items():
        source = master[unit]
        for edit in (change,) if isinstance(change, Edit) else change:
            source = edit.apply(source)
        replaced[unit] = source
    report = grade(_cells(assignment, replaced), assignment, limits=limits)
    tests = helpers.by_id(report)
    assert set(helpers.lost(report)) == loses, (bug_id, helpers.lost(report))
    for cid, text in expected.items():
        said = f"{tests[cid]['message']} | {tests[cid]['diagnosis'] or ''}"
        assert tests[cid]["score"] < tests[cid]["max_score"] - FULL and text in said, (cid, said)


def _flat_assignment(tmp_path: Path) -> Path:
    """mlp's loss as one function of flat parameters and one-hot labels, with renamed keys nowhere to read."""
    folder = _variant(
        tmp_path,
        "cs231n-two-layer",
        '[problems.scores]\nkind = "mlp_forward"\npoints = 20\n\n[problems.scores.binding]\nclass = "TwoLayerNet"\n'
        'init = ["input_size", "hidden_size", "output_size"]\nattribute = "params"\ncall = "loss"\nargs = ["X"]\n\n',
        "",
    )
    text = (folder / "assignment.toml").read_text()
    start = text.index("[problems.loss]")
    (folder / "assignment.toml").write_text(
        text[:start]
        + '[problems.fbp]\nkind = "mlp_loss"\npoints = 100\n\n[problems.fbp.binding]\ncall = "forward_backward_prop"\n'
        'args = ["X", "y", "params", "dimensions"]\nkwargs = { reg = "reg" }\nparams = "flat"\nlabels = "one_hot"\n'
        'returns = ["loss", "grads"]\nl2_scale = 1.0\n'
    )
    return folder


FLAT = """
def forward_backward_prop(X, labels, params, dimensions, reg=0.0):
    dx, h, dy = dimensions
    sizes = [("W1", (dx, h)), ("b1", (h,)), ("W2", (h, dy)), ("b2", (dy,))]
    p, start = {}, 0
    for name, shape in sizes:
        size = int(np.prod(shape))
        p[name] = params[start:start + size].reshape(shape)
        start += size
    net = TwoLayerNet(dx, h, dy)
    net.params = p
    loss, grads = net.loss(X, labels.argmax(axis=1), reg)
    return loss, np.concatenate([grads[name].ravel() for name, _ in sizes])
"""


def test_flat_parameters_and_one_hot_labels_end_to_end(tmp_path: Path, grade: Any) -> None:
    folder = _flat_assignment(tmp_path)
    cells = [*_cells("cs231n-two-layer"), FLAT]
    report = grade(cells, str(folder))
    assert report["score"] == report["max_score"] == 100, helpers.lost(report)
    # a gradient packed in another order is wrong, and said so for the parameters it scrambles
    swapped = FLAT.replace("for name, _ in sizes])", 'for name in ("b1", "W1", "W2", "b2")])')
    report = grade([*_cells("cs231n-two-layer"), swapped], str(folder))
    assert set(helpers.lost(report)) == {"fbp"}
    assert helpers.by_id(report)["fbp.grad_W2"]["score"] > 0 and helpers.by_id(report)["fbp.grad_W1"]["score"] == 0


def test_float32_tensors_are_graded_with_the_float32_tolerance(tmp_path: Path, grade: Any) -> None:
    limits = _needs("eecs498-two-layer")
    folder = _variant(tmp_path, "eecs498-two-layer", 'dtype = "float64"\nl2_scale', 'dtype = "float32"\nl2_scale')
    report = grade(_cells("eecs498-two-layer"), str(folder), limits=limits)
    assert report["score"] == 100, helpers.lost(report)
    assert load(folder).problem("nn_forward_backward").binding.dtype == "float32"


# ------------------------------------------------------------------ the example classes (examples/README.md)

EXAMPLES = {
    ("cs231n-two-layer", "ana"): (set(), {}),
    ("cs231n-two-layer", "ben"): ({"loss"}, {"loss.loss_value": "factor 0.5 too many", "loss.grad_W1": "carried"}),
    ("cs231n-two-layer", "cid"): ({"loss"}, {"loss.grad_b1": "mask is taken from the upstream gradient"}),
    ("cs231n-two-layer", "dee"): ({"loss"}, {"loss.grad_b1": "not summed over the batch"}),
    ("eecs498-two-layer", "amy"): (set(), {}),
    ("eecs498-two-layer", "bo"): ({"nn_forward_backward"}, {"nn_forward_backward.grad_W2": "2 * reg * W is missing"}),
    ("eecs498-two-layer", "cy"): ({"nn_forward_backward"}, {"nn_forward_backward.loss_value": "summed over the batch"}),
    ("eecs498-two-layer", "dan"): (
        {"nn_forward_pass", "nn_forward_backward"},
        {"nn_forward_pass.scores": "does not add the bias b1", "nn_forward_backward.loss_value": "bias b1"},
    ),
}


@pytest.mark.parametrize(("assignment", "student"), sorted(EXAMPLES))
def test_example_is_graded_as_its_readme_says(assignment: str, student: str, zygote: Any) -> None:
    from grader.grading import Grader

    grader = Grader(load(assignment), _needs(assignment), hidden_seed=3, zygote=zygote)
    report = grader.grade_file(ROOT / "assignments" / assignment / "examples" / f"{student}.ipynb").result.to_dict()
    loses, said = EXAMPLES[(assignment, student)]
    assert set(helpers.lost(report)) == loses, helpers.lost(report)
    tests = helpers.by_id(report)
    for cid, text in said.items():
        assert text in f"{tests[cid]['message']} | {tests[cid]['diagnosis'] or ''}", (cid, tests[cid])
    readme = (ROOT / "assignments" / assignment / "examples" / "README.md").read_text()
    assert f"| {report['score']:g}/100" in readme, report["score"]


def test_a_failed_class_cell_is_the_root_cause_of_its_methods_checks(grade: Any) -> None:
    broken = helpers.solution_sources("cs231n-two-layer", ["TwoLayerNet"])["TwoLayerNet"].replace(
        "def loss(self, X, y=None, reg=0.0):", "def loss(self, X, y=None, reg=0.0)"
    )
    report = grade(["import numpy as np", broken], "cs231n-two-layer")
    assert report["score"] == 0
    assert [c["functions"] for c in report["root_causes"]] == [["TwoLayerNet"]]
    assert "TwoLayerNet() is not defined because cell 1" in helpers.by_id(report)["loss.loss_value"]["message"]


def test_a_forged_echo_of_another_type_reads_as_changed_not_as_a_grader_error() -> None:
    """Echoes come from the student's process: an array sent back for a number must not break the comparison."""
    rng = np.random.default_rng(7)
    params, x, y = _params(rng), rng.standard_normal((2, 3)), np.array([0, 1])
    b = _binding(args=["X", "y", "params", "reg"], params="flat", l2_scale=1.0)
    _, sent, _, _ = b.request((x, y, params, 0.2))
    after = b.echoed((sent[0], sent[1], sent[2], np.ones(3)), (x, y, params, 0.2))
    assert after is not None and isinstance(after[3], np.ndarray) and after[0] is x
    after = b.echoed(tuple(sent), (x, y, params, 0.2))
    assert after is not None and after[3] == 0.2


def test_gate_messages_name_the_students_function(grade: Any) -> None:
    """A class whose loss computes nothing: its property checks are gated, naming TwoLayerNet.loss (not 'loss')."""
    stub = (
        "class TwoLayerNet:\n"
        "    def __init__(self, input_size, hidden_size, output_size):\n"
        "        self.params = {}\n"
        "    def loss(self, X, y=None, reg=0.0):\n"
        "        W1, b1, W2, b2 = (self.params[k] for k in ('W1', 'b1', 'W2', 'b2'))\n"
        "        if y is None:\n"
        "            return np.zeros((X.shape[0], W2.shape[1]))\n"
        "        return 0.0, {k: np.zeros_like(v) for k, v in self.params.items()}\n"
    )
    report = grade(["import numpy as np", stub], "cs231n-two-layer")
    gated = helpers.by_id(report)["loss.no_mutation"]
    assert gated["score"] == 0 and "none of TwoLayerNet.loss()'s value checks earns points" in gated["message"]


def test_regularized_biases_are_traded_for_the_reference_penalty_by_hand() -> None:
    """A course that regularizes every parameter: its loss and bias gradients minus their known bias penalty
    (computed here by hand) are the reference's; the weights' terms are left alone."""
    rng = np.random.default_rng(8)
    params, reg = _params(rng), 0.3
    b = _binding(regularized=["W1", "b1", "W2", "b2"])
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    loss, out = b.result((2.0, grads), (None, None, params, reg))
    bias_penalty = 0.5 * reg * (np.sum(params["b1"] ** 2) + np.sum(params["b2"] ** 2))
    assert loss == pytest.approx(2.0 - bias_penalty, rel=1e-15)
    np.testing.assert_allclose(out["b1"], grads["b1"] - reg * params["b1"], rtol=1e-15)
    assert out["W1"] is grads["W1"] and out["W2"] is grads["W2"]
    with pytest.raises(bindings.BindingError, match="regularized applies to problems whose kind takes reg"):
        bindings.parse("p", "mlp_forward", {"regularized": ["W1"]}, "test")


def test_a_course_that_regularizes_the_biases_is_graded_by_its_own_convention(tmp_path: Path, grade: Any) -> None:
    folder = _variant(
        tmp_path, "cs231n-two-layer", "l2_scale = 1.0\n", 'l2_scale = 1.0\nregularized = ["W1", "b1", "W2", "b2"]\n'
    )
    master = helpers.solution_sources("cs231n-two-layer", ["TwoLayerNet"])["TwoLayerNet"]
    with_biases = (
        master.replace(
            "+ reg * (np.sum(W1 * W1) + np.sum(W2 * W2))",
            "+ reg * (np.sum(W1 * W1) + np.sum(W2 * W2) + np.sum(b1 * b1) + np.sum(b2 * b2))",
        )
        .replace('"b2": dscores.sum(axis=0),', '"b2": dscores.sum(axis=0) + 2 * reg * b2,')
        .replace('grads["b1"] = du.sum(axis=0)', 'grads["b1"] = du.sum(axis=0) + 2 * reg * b1')
    )
    assert with_biases.count("2 * reg * b") == 2 and "np.sum(b1 * b1)" in with_biases
    report = grade(["import numpy as np", with_biases], str(folder))
    assert report["score"] == 100, helpers.lost(report)
    report = grade(["import numpy as np", master], str(folder))  # weights only: wrong for this course
    assert set(helpers.lost(report)) == {"loss"}
    assert helpers.by_id(report)["loss.grad_b1"]["score"] == 0 and helpers.by_id(report)["loss.grad_W1"]["score"] > 0
