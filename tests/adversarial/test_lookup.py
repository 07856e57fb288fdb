"""A table of the answers to the visible checks' inputs earns nothing (red team, issue 10, "Points for wrong code").

At home a student can run the public checks against a recording session backed by a correct solution and keep
every answer, keyed by the call's inputs: the checks with their carried-credit probes, for the assignment's
visible seed. The submitted notebook holds only that table and zero-returning fallbacks. Every input graded in
a hidden entry comes from the hidden seed, and a visible entry keeps its points only when its hidden twin earns
some, so the table earns exactly 0, under any hidden seed; mixed with correct code, it loses every point of the
functions it answers for and costs nothing elsewhere.
"""

from __future__ import annotations

import base64
import pickle
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bugs import conftest_helpers  # noqa: E402

from grader.assignment import load  # noqa: E402
from grader.checks import runner  # noqa: E402
from grader.checks.base import PlannedCheck, derive_seed  # noqa: E402
from grader.sandbox.session import CallResult  # noqa: E402

helpers = conftest_helpers()
ASSIGNMENTS = ("mlp", "mlp-sigmoid")
HIDDEN_SEEDS = (7, 123456789, 2**31 - 2)
LOOKED_UP = ("softmax_cross_entropy", "mlp_forward", "mlp_loss")  # the hybrid's table answers these only

# the call key, used at home to record and in the notebook to look up (callables, such as numerical_gradient's f,
# key as one value: the table then answers the visible x whatever f is)
KEY = """
import hashlib
import numpy as np

def _key(fn, args, kwargs):
    h = hashlib.sha256(fn.encode())
    def feed(a):
        if isinstance(a, dict):
            for k in sorted(a):
                h.update(k.encode())
                feed(a[k])
        elif isinstance(a, np.ndarray):
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        elif callable(a):
            h.update(b"<f>")
        else:
            h.update(repr((type(a).__name__, a)).encode())
    for a in args:
        feed(a)
    for k in sorted(kwargs):
        h.update(k.encode())
        feed(kwargs[k])
    return h.hexdigest()
"""

# zero-returning fallbacks of the right shapes, for inputs the table does not know
FALLBACKS = {
    "softmax": "def softmax(x):\n    return _look('softmax', lambda: np.zeros_like(np.asarray(x, float)), x)",
    "sigmoid": "def sigmoid(x):\n    return _look('sigmoid', lambda: np.zeros_like(np.asarray(x, float)), x)",
    "sigmoid_grad": "def sigmoid_grad(s):\n"
    "    return _look('sigmoid_grad', lambda: np.zeros_like(np.asarray(s, float)), s)",
    "softmax_cross_entropy": "def softmax_cross_entropy(z, y):\n"
    "    return _look('softmax_cross_entropy', lambda: (0.0, np.zeros_like(z)), z, y)",
    "mlp_forward": "def mlp_forward(X, params):\n"
    "    return _look('mlp_forward', lambda: np.zeros((len(X), len(params['b2']))), X, params)",
    "mlp_loss": "def mlp_loss(X, y, params, reg):\n"
    "    return _look('mlp_loss', lambda: (0.0, {k: np.zeros_like(v) for k, v in params.items()}), X, y, params, reg)",
    "numerical_gradient": "def numerical_gradient(f, x, h=1e-5):\n"
    "    return _look('numerical_gradient', lambda: np.zeros_like(x), f, x, *([h] if h != 1e-5 else []))",
}


class Recorder:
    """A fake session answering with the master solution in-process, recording every answer by its call key."""

    def __init__(self, assignment: str) -> None:
        self.namespace: dict[str, Any] = {}
        exec(KEY, self.namespace)
        for source in helpers.solution_sources(assignment).values():
            exec(source, self.namespace)
        self.table: dict[str, Any] = {}

    def seed(self, value: int) -> None:
        np.random.seed(value)

    def call(
        self, fn: str, *args: Any, echo_args: bool = False, functions: Any = (), via: Any = None, **kwargs: Any
    ) -> CallResult:
        key = self.namespace["_key"](fn, args, kwargs)
        copies = pickle.loads(pickle.dumps(args)) if not functions else args
        value = self.namespace[fn](*copies, **kwargs)
        self.table[key] = value
        return CallResult(value, tuple(args) if echo_args else None, [], "")


def lookup_cells(assignment: str, looked_up: tuple[str, ...] = tuple(helpers.FUNCTIONS)) -> list[str]:
    """A notebook whose `looked_up` functions answer from a table recorded at home; the others are the master's."""
    recorder = Recorder(assignment)
    outcomes = runner.run_checks(recorder, load(assignment), None)
    assert sum(o.score for o in outcomes) == pytest.approx(sum(o.max_score for o in outcomes))  # a full recording
    blob = base64.b64encode(zlib.compress(pickle.dumps(recorder.table))).decode()
    table = (
        f"{KEY}\nimport base64, pickle, zlib\n_T = pickle.loads(zlib.decompress(base64.b64decode({blob!r})))\n"
        "def _look(fn, fallback, *args, **kwargs):\n"
        "    key = _key(fn, args, kwargs)\n"
        "    return _T[key] if key in _T else fallback()\n"
    )
    master = helpers.solution_sources(assignment)
    return ["import numpy as np", table] + [FALLBACKS[f] if f in looked_up else master[f] for f in helpers.FUNCTIONS]


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def assignment(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("seed", HIDDEN_SEEDS)
def test_a_table_of_the_visible_answers_scores_zero(assignment: str, seed: int, grade: Any) -> None:
    report = grade(lookup_cells(assignment), assignment, seed=seed)
    assert report["error"] is None
    earning = {t["id"]: t["score"] for t in report["tests"] if t["score"] > 0}
    assert report["score"] == 0, f"{assignment}, hidden seed {seed}: points for a table: {earning}"
    # the visible entries the table answered right say why they earn nothing
    tests = helpers.by_id(report)
    assert "right on the visible inputs but wrong on hidden inputs" in tests["softmax.extreme_logits"]["message"]


def test_the_table_keeps_its_points_in_a_visible_only_self_check(grade: Any) -> None:
    # the same notebook is right on every visible input: without hidden cases nothing tells it from a solution
    report = grade(lookup_cells("mlp"), "mlp", seed=None)
    assert report["score"] == pytest.approx(report["max_score"])


@pytest.mark.parametrize("seed", HIDDEN_SEEDS[:2])
def test_a_table_for_some_functions_loses_all_their_points_and_nothing_else(
    assignment: str, seed: int, grade: Any
) -> None:
    report = grade(lookup_cells(assignment, LOOKED_UP), assignment, seed=seed)
    assert report["error"] is None
    scores = {p["name"]: (p["score"], p["max_score"]) for p in report["problems"]}
    assert {f: scores[f][0] for f in LOOKED_UP} == dict.fromkeys(LOOKED_UP, 0)
    assert {f: s for f, (s, m) in scores.items() if f not in LOOKED_UP and s < m - 1e-9} == {}


def _seeded_checks() -> list[tuple[str, str, str]]:
    return [(a, p.problem.name, p.check.name) for a in ASSIGNMENTS for p in runner.plan(load(a)) if p.hidden]


@pytest.mark.parametrize(("assignment", "problem", "name"), _seeded_checks())
def test_a_hidden_twin_shares_no_input_with_its_visible_entry(assignment: str, problem: str, name: str) -> None:
    # the inputs of a hidden entry (edge cases such as logits of +/-1e4 too) are drawn from the hidden seed: a table
    # recorded on the visible seed does not answer them (hand-worked points such as s = 0.5 may recur as 0-d inputs)
    a = load(assignment)
    planned = next(p for p in runner.plan(a) if p.hidden and p.problem.name == problem and p.check.name == name)
    recorded = []
    for seed, hidden in ((a.visible_seed, False), (derive_seed(11, "hidden"), True)):
        recorder = Recorder(assignment)
        twin = PlannedCheck(planned.check, planned.problem, hidden, planned.points)
        outcome = runner.run_check(twin, recorder, a, seed, {}, derive_seed(seed, "probes"))
        assert outcome.score == outcome.max_score, outcome.message
        recorded.append(set(recorder.table))
    visible, hidden_inputs = recorded
    assert visible and len(hidden_inputs - visible) > len(hidden_inputs) / 2
