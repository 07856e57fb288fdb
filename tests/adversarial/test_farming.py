"""Farming points with wrong code: credit carried forward and property checks must not pay for it.

Every farming submission below is the master solution except for the function that farms. The bound: a
submission without a backward pass of a known loss earns exactly 0 gradient points (every dW1, db1, dW2,
db2 entry, visible and hidden, square_weights and gradient_matches_own_loss), whatever it answers to the
grader's other calls; stubs that compute nothing earn 0 points in total. Real bugs keep their credit
carried forward, capped by [scoring] carried_credit (grader/checks/ownloss.py states the rule).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bugs import conftest_helpers  # noqa: E402
from bugs.mlp_sigmoid import SIGMOID_BCE  # noqa: E402

from grader.assignment import load  # noqa: E402
from grader.grading import Grader  # noqa: E402
from grader.notebook import loads  # noqa: E402

helpers = conftest_helpers()
by_id, solution_cells = helpers.by_id, helpers.solution_cells
ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENTS = ("mlp", "mlp-sigmoid")
GRADIENT_CHECKS = ("grad_W1", "grad_b1", "grad_W2", "grad_b2", "square_weights", "gradient_matches_own_loss")
HIDDEN_SEEDS = (7, 123456789, 2**31 - 2)

# the loss every farm below computes honestly, with the master's mlp_forward and softmax_cross_entropy: the data
# loss without its L2 penalty, a known mistake (so that, before, its gradients could be carried forward), right
# when reg = 0 (so that a value check of mlp_loss passes and no property of it is gated)
HONEST = '''
import numpy as np

NAMES = ("W1", "b1", "W2", "b2")

def honest_loss(X, y, params, reg):
    data, _ = softmax_cross_entropy(mlp_forward(X, params), y)
    return data

def flat(params):
    return np.concatenate([np.asarray(params[k], dtype=float).ravel() for k in NAMES])

def unflat(vector, params):
    out, start = {}, 0
    for k in NAMES:
        size = params[k].size
        out[k] = vector[start:start + size].reshape(params[k].shape)
        start += size
    return out

def problem_key(X, y):
    return (X.shape, X.tobytes(), y.tobytes())
'''

# the review's attack: a constant gradient, and on later calls about the same X, y a loss that is linear in the
# parameters around the first point seen (the exact "gradient of the student's own loss")
CONSTANT_LINEARIZED = '''
FIRST = {}

def mlp_loss(X, y, params, reg):
    p = flat(params)
    g = np.full(p.size, 0.01)
    key = problem_key(X, y)
    if key not in FIRST:
        FIRST[key] = (p, honest_loss(X, y, params, reg))
    p0, l0 = FIRST[key]
    loss = l0 if np.array_equal(p, p0) else l0 + g @ (p - p0)
    return loss, unflat(g, params)
'''

# every point seen is remembered with a made-up gradient; a new point near a remembered one gets the loss
# linearized from the nearest, so every finite difference around any point agrees with the returned gradient
MEMORIZES_ALL_POINTS = '''
SEEN = {}

def mlp_loss(X, y, params, reg):
    p = flat(params)
    points = SEEN.setdefault(problem_key(X, y), [])
    if points:
        q, lq, gq = min(points, key=lambda t: np.linalg.norm(p - t[0]))
        if np.linalg.norm(p - q) < 1e-2:
            return lq + gq @ (p - q), unflat(gq, params)
    g = np.random.default_rng(len(points)).standard_normal(p.size) * 0.1
    loss = honest_loss(X, y, params, reg)
    points.append((p, loss, g))
    return loss, unflat(g, params)
'''

RANDOM_GRADIENT = '''
def mlp_loss(X, y, params, reg):
    grads = {k: np.random.standard_normal(v.shape) for k, v in params.items()}
    return honest_loss(X, y, params, reg), grads
'''

# tries to tell the grader's probes from graded calls by their arguments (a problem seen before, a reg other than
# the assignment's, a batch of one): probes get the linearized loss of a made-up gradient, graded calls the
# honest loss and the penalty's gradient alone (reg * W: a backward pass without the data term)
DETECTS_PROBES = '''
GRADED = {}

def mlp_loss(X, y, params, reg):
    p = flat(params)
    g = flat({k: (reg * v if k.startswith("W") else np.zeros_like(v)) for k, v in params.items()})
    key = problem_key(X, y)
    probe = key in GRADED or abs(reg - 0.1) > 1e-12 or X.shape[0] == 1
    if not probe:
        GRADED[key] = (p, honest_loss(X, y, params, reg), g)
        return GRADED[key][1], unflat(g, params)
    p0, l0, g0 = GRADED.get(key, (p, honest_loss(X, y, params, reg), g))
    return l0 + g0 @ (p - p0), unflat(g0, params)
'''

FARMS = {
    "constant_gradient_linearized_loss": CONSTANT_LINEARIZED,
    "memorizes_all_points": MEMORIZES_ALL_POINTS,
    "random_gradient": RANDOM_GRADIENT,
    "detects_probes": DETECTS_PROBES,
}

# the same attack on softmax_cross_entropy: an honest loss, a made-up dz, and a loss linearized with that dz around
# the first logits seen for the labels (every finite difference around them agrees with dz)
CE_LINEARIZED = '''
import numpy as np

CE_FIRST = {}

def softmax_cross_entropy(z, y):
    dz = np.full(z.shape, 0.01)
    key = (z.shape, y.tobytes())
    if key not in CE_FIRST:
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        CE_FIRST[key] = (z.copy(), float(-log_p[np.arange(len(y)), y].mean()))
    z0, l0 = CE_FIRST[key]
    return l0 + float(np.sum(dz * (z - z0))), dz
'''

ZERO_STUBS = {
    "softmax": "def softmax(x):\n    return np.zeros_like(x)\n",
    "sigmoid": "def sigmoid(x):\n    return np.zeros_like(x)\n",
    "sigmoid_grad": "def sigmoid_grad(s):\n    return np.zeros_like(s)\n",
    "softmax_cross_entropy": "def softmax_cross_entropy(z, y):\n    return 0.0, np.zeros_like(z)\n",
    "mlp_forward": "def mlp_forward(X, params):\n    return np.zeros((X.shape[0], params['b2'].shape[0]))\n",
    "mlp_loss": "def mlp_loss(X, y, params, reg):\n    return 0.0, {k: np.zeros_like(v) for k, v in params.items()}\n",
    "numerical_gradient": "def numerical_gradient(f, x, h=1e-5):\n    return np.zeros_like(x)\n",
}

INPUT_STUBS = {
    "softmax": "def softmax(x):\n    return x.copy()\n",
    "sigmoid": "def sigmoid(x):\n    return x.copy()\n",
    "sigmoid_grad": "def sigmoid_grad(s):\n    return s.copy()\n",
    "softmax_cross_entropy": "def softmax_cross_entropy(z, y):\n    return float(z.sum()), z.copy()\n",
    "mlp_forward": "def mlp_forward(X, params):\n    return X.copy()\n",
    "mlp_loss": "def mlp_loss(X, y, params, reg):\n"
    "    return 0.5 * sum(float(np.sum(v ** 2)) for v in params.values()), {k: v.copy() for k, v in params.items()}\n",
    "numerical_gradient": "def numerical_gradient(f, x, h=1e-5):\n    return x.copy()\n",
}

# a consistently summed loss (loss and gradient both without 1/N): a real bug whose gradients are exact for it
SUMMED_CONSISTENTLY = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.sum(np.log(p[np.arange(N), y])) + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = p - np.eye(W2.shape[1])[y]
    du = (dz @ W2.T) * (u > 0)
    return loss, {"W1": X.T @ du + reg * W1, "b1": du.sum(axis=0), "W2": h.T @ dz + reg * W2, "b2": dz.sum(axis=0)}
'''


def _gradient_points(report: dict[str, Any]) -> dict[str, float]:
    """Scores of the mlp_loss entries that grade the gradient (visible and hidden)."""
    return {t["id"]: t["score"] for t in report["tests"]
            if t["problem"] == "mlp_loss" and t["check"] in GRADIENT_CHECKS}


def _farm(assignment: str, source: str) -> list[str]:
    return solution_cells(assignment) + [HONEST, source]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("farm", sorted(FARMS))
def test_gradient_farms_earn_no_gradient_points(farm: str, assignment: str, grade: Any) -> None:
    for seed in HIDDEN_SEEDS:
        report = grade(_farm(assignment, FARMS[farm]), assignment, seed=seed)
        points = _gradient_points(report)
        assert points and all(s == 0 for s in points.values()), f"{farm}, hidden seed {seed}: {points}"
        tests = by_id(report)
        assert tests["mlp_loss.loss_without_reg"]["score"] > 0  # the honest loss still earns its own points
        assert "credit carried forward" not in " ".join(t["message"] for t in report["tests"])


def test_a_cross_entropy_farm_earns_no_consistency_points(grade: Any) -> None:
    tests = by_id(grade(solution_cells("mlp", {"softmax_cross_entropy": CE_LINEARIZED}), "mlp"))
    own = tests["softmax_cross_entropy.gradient_matches_own_loss"]
    assert own["score"] == 0 and "not the gradient of your own loss" in own["message"], own
    assert tests["softmax_cross_entropy.loss_value"]["score"] > 0


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("stubs", ["zeros", "inputs"])
def test_stubs_that_compute_nothing_score_zero(stubs: str, assignment: str, grade: Any) -> None:
    replace = ZERO_STUBS if stubs == "zeros" else INPUT_STUBS
    report = grade(solution_cells(assignment, replace), assignment)
    earning = {t["id"]: t["score"] for t in report["tests"] if t["score"] > 0}
    assert report["score"] == 0 and earning == {}, earning
    gated = [t for t in report["tests"] if t["details"].get("gated")]
    assert gated and all("no points" in t["message"] for t in gated)  # the report says why


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_student_template_scores_zero(assignment: str, zygote: Any) -> None:
    a = load(assignment)
    assert a.template_path is not None
    notebook = loads(a.template_path.read_bytes(), a.template_path.name)
    report = Grader(a, helpers.FAST, hidden_seed=7, zygote=zygote).grade(notebook, "template").result.to_dict()
    assert report["score"] == 0, {t["id"]: t["score"] for t in report["tests"] if t["score"] > 0}


def _assignment_with_cap(tmp_path: Path, cap: float) -> str:
    """A copy of the mlp assignment whose [scoring] carried_credit is `cap`."""
    folder = tmp_path / "mlp"
    folder.mkdir()
    text = (ROOT / "assignments" / "mlp" / "assignment.toml").read_text()
    assert text.count("carried_credit = 0.5\n") == 1
    (folder / "assignment.toml").write_text(text.replace("carried_credit = 0.5\n", f"carried_credit = {cap}\n"))
    return str(folder)


@pytest.mark.parametrize("cap", [None, 0.25, 0.0])
def test_a_consistent_real_bug_keeps_capped_credit(cap: float | None, tmp_path: Path, grade: Any) -> None:
    assignment = "mlp" if cap is None else _assignment_with_cap(tmp_path, cap)
    share = load(assignment).carried_credit
    assert share == (0.5 if cap is None else cap)
    report = grade(solution_cells("mlp", {"mlp_loss": SUMMED_CONSISTENTLY}), assignment)
    tests = by_id(report)
    carried = [i for i in tests if tests[i]["check"] in GRADIENT_CHECKS[:5]]
    assert len(carried) == 10  # grad_W1 ... grad_b2 and square_weights, each visible and hidden
    for i in carried:
        assert tests[i]["score"] == pytest.approx(share * tests[i]["max_score"], abs=2e-4), i
        assert "credit carried forward" in tests[i]["message"] and "summed over the batch" in tests[i]["message"]
    # the property holds; with nothing carried (cap 0) no value check of mlp_loss earns points, so it earns none
    own = tests["mlp_loss.gradient_matches_own_loss"]
    assert own["score"] == (own["max_score"] if share > 0 else 0)
    assert own["details"].get("gated", False) == (share == 0)


def test_one_verdict_for_every_gradient_visible_and_hidden(grade: Any) -> None:
    # sigmoid outputs with binary cross-entropy, and that loss's exact gradient: not a known loss, so no gradient
    # is carried forward; before, dW2 was accepted and db2 rejected by a cosine cut-off, and hidden cases differed
    for seed in HIDDEN_SEEDS:
        report = grade(solution_cells("mlp-sigmoid", {"mlp_loss": SIGMOID_BCE}), "mlp-sigmoid", seed=seed)
        points = _gradient_points(report)
        assert points and all(s == 0 for s in points.values()), points
