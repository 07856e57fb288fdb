"""The sandbox session: execution records, calls, callbacks, restarts and the isolation report.
(Attacks live in test_adversarial.py.)"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST

from grader.assignment import AssignmentError, load
from grader.grading import Grader
from grader.sandbox.exceptions import (
    CallSkipped,
    CallTimeout,
    MissingFunction,
    NotImplementedByStudent,
    StudentError,
    WorkerDied,
)
from grader.sandbox.protocol import Refused
from grader.sandbox.session import Sandbox
from grader.sandbox.zygote import Zygote, bwrap_usable

CELLS = [
    (0, "import numpy as np\nprint('hello')\n1 + 1"),
    (1, "def add(a, b):\n    return a + b"),
    (2, "raise ValueError('broken cell')"),
    (3, "def apply(f, x):\n    return f(x) + f(2 * x)"),
    (4, "def todo():\n    raise NotImplementedError"),
    (5, "def die():\n    import os\n    os._exit(9)"),
    (6, "def spin():\n    while True:\n        pass"),
    (7, "counter = [0]\ndef count():\n    counter[0] += 1\n    return counter[0]"),
    (8, "def matrix():\n    return np.matrix([[1.0]])"),
]


@pytest.fixture
def sandbox(zygote: Zygote) -> Sandbox:
    with Sandbox(zygote, CELLS, FAST) as sb:
        yield sb


def test_execution_records_outputs_errors_and_isolation(sandbox: Sandbox) -> None:
    record = sandbox.execute()
    cells = {c.index: c for c in record.cells}
    assert cells[0].status == "ok"
    assert [o["output_type"] for o in cells[0].outputs] == ["stream", "execute_result"]
    assert cells[0].outputs[0]["text"] == "hello\n"
    assert cells[0].outputs[1]["data"]["text/plain"] == "2"
    assert cells[2].status == "error" and cells[2].error == "ValueError: broken cell"
    assert cells[2].outputs[-1]["output_type"] == "error"
    assert all(cells[i].status == "ok" for i in (1, 3, 4, 5, 6, 7, 8))  # execution continued past the error
    assert record.isolation["level"] in ("bwrap", "process")
    assert "rlimits" in record.isolation["layers"]


def test_calls_return_copies_and_can_echo_arguments(sandbox: Sandbox) -> None:
    sandbox.execute()
    a = np.arange(6.0).reshape(2, 3)
    result = sandbox.call("add", a, a, echo_args=True)
    assert np.array_equal(result.value, 2 * a)
    assert np.array_equal(result.args_after[0], a)


def test_grader_functions_are_evaluated_on_the_grader_side(sandbox: Sandbox) -> None:
    sandbox.execute()
    seen = []

    def square_sum(x: np.ndarray) -> float:
        seen.append(x.copy())
        return float(np.sum(x**2))

    result = sandbox.call("apply", square_sum, np.ones(3), functions=[square_sum])
    assert result.value == pytest.approx(3 + 12)
    assert len(seen) == 2


def test_student_exceptions_and_missing_functions_are_typed(sandbox: Sandbox) -> None:
    sandbox.execute()
    with pytest.raises(NotImplementedByStudent):
        sandbox.call("todo")
    with pytest.raises(StudentError, match="TypeError"):
        sandbox.call("add", 1)
    with pytest.raises(MissingFunction, match="does not define nope"):
        sandbox.call("nope")
    assert isinstance(sandbox.call("matrix").value, Refused)


def test_a_dead_worker_is_replaced_and_state_is_rebuilt(sandbox: Sandbox) -> None:
    sandbox.execute()
    assert sandbox.call("count").value == 1
    assert sandbox.call("count").value == 2
    with pytest.raises(WorkerDied, match="exited with code 9"):
        sandbox.call("die")
    assert sandbox.call("count").value == 1  # a fresh worker re-executed the notebook
    assert sandbox.restarts >= 0 and np.array_equal(sandbox.call("add", 1, 2).value, 3)


def test_timeouts_are_bounded_per_function(sandbox: Sandbox) -> None:
    sandbox.execute()
    for _ in range(FAST.failures_per_function):
        with pytest.raises(CallTimeout, match="did not return within"):
            sandbox.call("spin")
    with pytest.raises(CallSkipped, match="was not called again after failing 2 times.*timed out"):
        sandbox.call("spin")
    assert sandbox.call("add", 2, 3).value == 5


TORCH_CELLS = [
    (0, "import sys\npreloaded = 'torch' in sys.modules\nimport torch"),
    (1, "def threads():\n    return float(torch.get_num_threads()), float(torch.get_num_interop_threads())"),
    (2, "def preloaded_():\n    return float(preloaded)"),
    (
        3,
        "def grad_of_square_sum(x):\n"
        "    t = torch.tensor(x, requires_grad=True)\n"
        "    (t ** 2).sum().backward()\n"
        "    return t.grad.numpy()",
    ),
]


@pytest.fixture(scope="module", params=["process", "bwrap"])
def torch_zygote(request: pytest.FixtureRequest) -> Iterator[Zygote]:
    """A fork server that preloads torch, at each isolation level."""
    pytest.importorskip("torch")
    if request.param == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap cannot create its namespaces here")
    with Zygote(isolation=request.param, preload=["torch"]) as server:
        yield server


def test_preloaded_torch_runs_confined_with_one_thread(torch_zygote: Zygote) -> None:
    with Sandbox(torch_zygote, TORCH_CELLS, FAST) as sandbox:
        record = sandbox.execute()
        assert [c.status for c in record.cells] == ["ok"] * len(TORCH_CELLS), record.cells
        assert sandbox.call("preloaded_").value == 1.0  # imported by the zygote, before the fork
        assert sandbox.call("threads").value == (1.0, 1.0)
        x = np.arange(6.0).reshape(2, 3)
        assert np.array_equal(sandbox.call("grad_of_square_sum", x).value, 2 * x)
    layers = record.isolation["layers"]
    assert layers["seccomp"] and layers["landlock"] and layers["no-privileges"], layers


def test_a_module_that_cannot_be_preloaded_is_reported_once(tmp_path: Path) -> None:
    server = Zygote(isolation="process", preload=["jitgrade_no_such_module"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # a restarted zygote fails the same way: still one warning
            with server, Sandbox(server, [(0, "def one():\n    return 1.0")], FAST) as sandbox:
                sandbox.execute()
                assert sandbox.call("one").value == 1.0
    messages = [str(w.message) for w in caught if "preload" in str(w.message)]
    assert len(messages) == 1 and "could not preload jitgrade_no_such_module" in messages[0], messages
    assert "ModuleNotFoundError" in server.preload_failed["jitgrade_no_such_module"]


MINIMAL_ASSIGNMENT = """
name = "preloading"
version = "1.0.0"
[tolerances.float64]
rtol = 1e-7
atol = 1e-9
[tolerances.float32]
rtol = 1e-4
atol = 1e-5
[problems.softmax]
points = 1
[sandbox]
"""


@pytest.mark.parametrize("preload", ['"torch"', "[1]", '["torch; import os"]'])
def test_sandbox_preload_must_be_a_list_of_module_names(tmp_path: Path, preload: str) -> None:
    definition = tmp_path / "assignment.toml"
    definition.write_text(f"{MINIMAL_ASSIGNMENT}preload = {preload}\n")
    with pytest.raises(AssignmentError, match=r"\[sandbox\] preload must be a list of module names"):
        load(definition)


def test_the_grader_preloads_what_the_assignment_asks(tmp_path: Path) -> None:
    definition = tmp_path / "assignment.toml"
    definition.write_text(f'{MINIMAL_ASSIGNMENT}preload = ["json", "email.parser"]\n')
    assignment = load(definition)
    assert assignment.preload == ("json", "email.parser")
    assert Grader(assignment).zygote.preload == ["json", "email.parser"]
