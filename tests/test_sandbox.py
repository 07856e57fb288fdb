"""The sandbox session: execution records, calls, callbacks, restarts and the isolation report.
(Attacks live in test_adversarial.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST

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
from grader.sandbox.zygote import Zygote

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
