"""The grader's side of the channel against a worker that student code controls completely.

Student code shares the worker's interpreter, so it can write frames of its own on the response pipe,
stop reading requests, raise the worker's own output budget, return huge arrays or spend the time
limits call after call. Whatever it does, the grader must finish in bounded time and memory and
charge the breach to that submission only. The forging cells below find the channel's pipes by
their file mode (no worker internals) and build frames by hand; in a Sandbox run without restarts
the request for the cell at position p carries sequence number p + 1.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST, FUNCTIONS, by_id, lost, notebook_json, solution_cells, write_notebook

from grader.assignment import Assignment
from grader.checks.base import MEMO_BYTES, CheckContext
from grader.grading import Grader
from grader.notebook import loads
from grader.sandbox import protocol
from grader.sandbox.exceptions import BudgetExhausted, ChannelBroken, ResultTooLarge
from grader.sandbox.limits import Limits
from grader.sandbox.protocol import TRUNCATION_NOTE
from grader.sandbox.session import RESULT_FLOOR, CallResult, Sandbox
from grader.sandbox.zygote import Zygote

SLACK = 10.0  # seconds on top of the limits (the machine is shared)
MiB = 2**20

FORGE = r"""
import fcntl, json, os, stat, struct

def _response_fd():
    for fd in range(3, 256):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                return fd
        except OSError:
            pass
    raise RuntimeError("no response pipe found")

def frame(header=None, payloads=(), raw=None):
    head = raw if raw is not None else json.dumps(header).encode()
    lengths = b"".join(struct.pack("<Q", len(p)) for p in payloads)
    return struct.pack("<4sII", b"JGF1", len(head), len(payloads)) + lengths + head + b"".join(payloads)

def forge(data):
    fd, view = _response_fd(), memoryview(data)
    while view:
        view = view[os.write(fd, view):]
"""
SLEEP = "import time\ntime.sleep(600)"


def cells(*sources: str) -> list[tuple[int, str]]:
    """The forging helpers as cell 0, then these cells."""
    return list(enumerate([FORGE, *sources]))


def cell_done(seq: int, **fields: Any) -> dict[str, Any]:
    return {"op": "cell_done", "seq": seq, "outputs": [], "error": None, "execution_count": seq, **fields}


def forged(*headers: dict[str, Any]) -> str:
    """Source that writes these frames on the response pipe (headers as JSON bytes, nested at will)."""
    return "".join(f"forge(frame(raw={json.dumps(h).encode()!r}))\n" for h in headers)


def within(seconds: float, action: Callable[[], Any]) -> Any:
    """Run `action` in a thread: its result or the exception it raised; fails the test if it takes longer
    than `seconds` (a hung grader; closing the sandbox afterwards releases the thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = action()
        except Exception as exc:  # the outcome under test
            box["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the grader was still blocked after {seconds:g} s"
    return box["value"]


@pytest.fixture(params=["auto", "process"])
def sandboxes(request: pytest.FixtureRequest, zygote: Zygote) -> Zygote:
    """The default sandbox (bubblewrap when usable), then isolation='process'."""
    return zygote if request.param == "auto" else request.getfixturevalue("process_zygote")


# --------------------------------------------------------------------------- writes that would block


def test_a_worker_that_forges_answers_and_stops_reading_cannot_block_a_large_request(sandboxes: Zygote) -> None:
    # Cell 1 answers for itself and for cell 2, then sleeps: the grader believes both ran, and sends an
    # 8 MiB argument to a worker that never reads it (more than a pipe holds).
    source = forged(cell_done(2), cell_done(3)) + SLEEP
    with Sandbox(sandboxes, cells(source, "def f(x):\n    return x"), FAST) as sandbox:
        record = sandbox.execute()
        assert [c.status for c in record.cells] == ["ok", "ok", "ok"]
        error = within(FAST.call_timeout + SLACK, lambda: sandbox.call("f", np.zeros(MiB)))
    assert isinstance(error, ChannelBroken), error
    assert "a call of f() broke the notebook's channel" in str(error) and "stopped reading" in str(error), error


def test_a_forged_callback_whose_answer_is_never_read_cannot_block_the_grader(sandboxes: Zygote) -> None:
    # The call (sequence 3) asks the grader to evaluate its function, then sleeps instead of reading the
    # 16 MiB answer.
    apply = (
        "def apply(g, x):\n"
        "    import io, numpy as np\n"
        "    buf = io.BytesIO()\n"
        "    np.save(buf, x)\n"
        "    forge(frame({'op': 'callback', 'seq': 3, 'id': 0, 'args': {'t': 'list', 'v': [{'t': 'array', 'i': 0}]}},"
        " [buf.getvalue()]))\n"
        "    import time\n"
        "    time.sleep(600)\n"
    )

    def g(x: np.ndarray) -> np.ndarray:
        return np.zeros(2 * MiB)

    with Sandbox(sandboxes, cells(apply), FAST) as sandbox:
        sandbox.execute()
        error = within(FAST.call_timeout + SLACK, lambda: sandbox.call("apply", g, np.ones(3), functions=[g]))
    assert isinstance(error, ChannelBroken) and "stopped reading the grader's requests" in str(error), error


# --------------------------------------------------------------------------- forged, malformed, oversized frames

DEEP = b"[" * 100_000 + b"]" * 100_000
FORGED_CELL_ANSWERS = [
    ("hello_later", forged({"op": "hello", "seq": 2, "layers": {"forged": True}}), r"'hello' frame in answer"),
    (
        "callback_nobody_asked_for",
        forged({"op": "callback", "seq": 2, "id": 0, "args": {"t": "list", "v": []}}),
        r"'callback' frame in answer to a run_cell request",
    ),
    ("header_nested_100k_deep", f"forge(frame(raw={DEEP!r}))\n", r"nested too deeply"),
    (
        "nan_in_header",
        'forge(frame(raw=b\'{"op": "cell_done", "seq": 2, "execution_count": NaN}\'))\n',
        r"not JSON: NaN",
    ),
    (
        "header_of_12_mib",
        f"forge(frame({cell_done(2)!r} | {{'outputs': [{{'output_type': 'stream', 'text': 'x' * 12 * 2**20}}]}}))\n",
        r"frame too large: a header of 12\.0 MiB \(at most 9\.0 MiB here\)",
    ),
    (
        "arrays_on_a_cell_answer",
        "forge(frame(" + repr(cell_done(2)) + ", [b'\\0' * 2**20]))\n",
        r"frame too large: 1 array\(s\) \(at most 0 here\)",
    ),
]


@pytest.mark.parametrize(
    ("source", "says"), [(s, m) for _, s, m in FORGED_CELL_ANSWERS], ids=[i for i, _, _ in FORGED_CELL_ANSWERS]
)
def test_a_forged_cell_answer_is_a_broken_channel_charged_to_that_cell(
    sandboxes: Zygote, source: str, says: str
) -> None:
    limits = FAST.override(output_kb=64)
    notebook = cells(source, "def f(x):\n    return 2 * x")
    with Sandbox(sandboxes, notebook, limits) as sandbox:
        record = within(limits.notebook_timeout + SLACK, sandbox.execute)
        result = sandbox.call("f", np.ones(2))
    forging = record.cells[1]
    assert forging.status == "crashed", forging
    assert forging.error is not None and forging.error.startswith("cell 1 broke the notebook's channel"), forging.error
    assert re.search(says, forging.error), forging.error
    assert record.cells[2].status == "ok" and np.array_equal(result.value, [2.0, 2.0])
    assert "forged" not in record.isolation["layers"]


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": [value]}
    return value


def test_forged_outputs_are_rebuilt_from_strings_only(zygote: Zygote) -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "hi\n", "metadata": _nested(300)},
        {
            "output_type": "display_data",
            "data": {"text/plain": "x", "image/png": _nested(5), "bad mime": "y"},
            "metadata": _nested(300),
        },
        {"output_type": "execute_result", "data": {"text/plain": "1"}, "execution_count": True, "metadata": {}},
        {"output_type": "error", "ename": ["ValueError"], "evalue": "bad", "traceback": [1, "line", _nested(3)]},
        {"output_type": "unknown", "text": "z"},
        "not an output",
    ]
    with Sandbox(zygote, cells(forged(cell_done(2, outputs=outputs, execution_count=10**40)) + SLEEP), FAST) as sandbox:
        record = within(FAST.notebook_timeout + SLACK, sandbox.execute)
    cell = record.cells[1]
    assert cell.status == "ok" and cell.execution_count is None
    assert cell.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "hi\n"},
        {"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}, "execution_count": None},
        {"output_type": "error", "ename": "Error", "evalue": "bad", "traceback": ["line"]},
    ]


# --------------------------------------------------------------------------- the output budget, counted by the grader


def test_forged_cell_outputs_are_capped_by_the_grader_in_bytes_kept_and_memory(zygote: Zygote) -> None:
    limits = FAST.override(output_kb=64)
    answer = (
        "{'op': 'cell_done', 'seq': seq, 'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': 'y' * 2**20}]}"
    )
    source = f"for seq in range(2, 32):\n    forge(frame({answer}))\n" + SLEEP  # 30 cells' answers of 1 MiB each
    tracemalloc.start()
    try:
        with Sandbox(zygote, cells(source, *["pass"] * 29), limits) as sandbox:
            record = within(limits.notebook_timeout + SLACK, sandbox.execute)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = [o for c in record.cells for o in c.outputs]
    text = "".join(o["text"] for o in kept)
    note = TRUNCATION_NOTE.format(limit=64 * 1024)
    flood, noted, rest = text.partition(note)
    assert set(flood) == {"y"} and len(flood) <= 64 * 1024 + len(note), len(flood)
    assert noted and not rest, rest[:100]
    assert peak < 16 * MiB, f"the grader held {peak / MiB:.0f} MiB at its peak"


def test_forged_error_outputs_are_charged_to_the_output_budget(zygote: Zygote) -> None:
    limits = FAST.override(output_kb=64)
    error = "{'output_type': 'error', 'ename': 'E' * 100, 'evalue': 'v' * 2000, 'traceback': ['t' * 1900]}"
    source = f"forge(frame({{'op': 'cell_done', 'seq': 2, 'outputs': [{error}] * 2000}}))\n" + SLEEP  # 8 MB
    with Sandbox(zygote, cells(source), limits) as sandbox:
        record = within(limits.notebook_timeout + SLACK, sandbox.execute)
    assert record.cells[1].status == "ok", record.cells[1].error
    kept = json.dumps(record.cells[1].outputs)
    assert len(kept) < 64 * 1024 + 2000, len(kept)


RAISE_OWN_BUDGET = """
import gc
raised = 0
for obj in gc.get_objects():
    if type(obj).__name__ in ("Worker", "Capture") and isinstance(getattr(obj, "budget", None), list):
        obj.budget[0] = 10**12
        raised += 1
print("raised", raised)
"""


def test_raising_the_workers_own_output_budget_does_not_raise_the_graders(zygote: Zygote, mlp: Assignment) -> None:
    limits = FAST.override(output_kb=64)
    flood = ["print('z' * 2**20)"] * 12
    source = solution_cells() + [RAISE_OWN_BUDGET] + flood
    notebook = loads(json.dumps(notebook_json(source)).encode(), "loud.ipynb")
    graded = within(
        limits.notebook_timeout + SLACK + 20, lambda: Grader(mlp, limits, 7, zygote=zygote).grade(notebook, "loud")
    )
    executed = graded.executed
    assert executed is not None
    said = "".join(o.get("text", "") for o in executed["cells"][len(solution_cells())]["outputs"])
    if "raised 0" in said:
        pytest.skip("the worker's output budget is out of reach of student code here")
    printed = sum(len(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert printed <= 64 * 1024 + 500, f"{printed} bytes of outputs kept with a 64 KiB limit"
    assert graded.result.to_dict()["score"] == graded.result.to_dict()["max_score"]


def test_prints_and_tracebacks_of_calls_count_against_the_output_budget(zygote: Zygote) -> None:
    loud = "def loud(x):\n    print('y' * 3000)\n    return x"
    with Sandbox(zygote, cells(loud), FAST.override(output_kb=4)) as sandbox:
        sandbox.execute()
        printed = [len(sandbox.call("loud", 1.0).stdout) for _ in range(3)]
    note = len(TRUNCATION_NOTE.format(limit=4096))  # room for the worker's own note
    assert printed == [3001, 4096 + note - 3001, 0], printed  # print() adds a newline


# --------------------------------------------------------------------------- what a call may return


BIG_RESULTS = [
    ("one_array_of_100_mib", "return np.zeros(100 * 2**20 // 8)", r"returned 100\.0 MiB of arrays"),
    ("a_hundred_arrays_of_1_mib", "return [np.zeros(2**17) for _ in range(100)]", r"returned 100\.0 MiB of arrays"),
    ("echoed_arguments_grown", "x['grown'] = np.zeros(2**22)\nreturn 1.0", r"returned 32\.0 MiB of arrays"),
]


@pytest.mark.parametrize(("body", "says"), [(b, s) for _, b, s in BIG_RESULTS], ids=[i for i, _, _ in BIG_RESULTS])
def test_a_result_far_larger_than_its_arguments_is_refused_unread(zygote: Zygote, body: str, says: str) -> None:
    source = "import numpy as np\ndef big(x):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    with Sandbox(zygote, cells(source, "def outer(x):\n    return np.outer(x, x)"), FAST) as sandbox:
        sandbox.execute()
        tracemalloc.start()
        try:
            error = within(
                FAST.call_timeout + SLACK, lambda: sandbox.call("big", {"x": np.ones((4, 5))}, echo_args=True)
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        fine = sandbox.call("outer", np.ones(600)).value  # 2.7 MiB from 4.7 KiB: under the 4 MiB floor
    assert isinstance(error, ResultTooLarge), error
    assert re.search(says, str(error)) and "for arguments of 288 B; at most 4.0 MiB" in str(error), error
    assert peak < 12 * MiB, f"the grader held {peak / MiB:.0f} MiB at its peak"
    assert fine.shape == (600, 600)


def grade_cells(zygote: Zygote, assignment: Assignment, sources: Sequence[str], limits: Limits) -> dict[str, Any]:
    notebook = loads(json.dumps(notebook_json(sources)).encode(), "attacker.ipynb")
    return Grader(assignment, limits, 7, zygote=zygote).grade(notebook, "attacker").result.to_dict()


@pytest.fixture(scope="module")
def warm(zygote: Zygote, mlp: Assignment) -> None:
    """Grade the solution once, so that the reference's kernels are loaded before anything is timed."""
    report = grade_cells(zygote, mlp, solution_cells(), FAST)
    assert report["score"] == report["max_score"], lost(report)


def wrapped(bodies: dict[str, str]) -> list[str]:
    """The solution's cells, each function in `bodies` renamed to _solution and called by a wrapper with
    the same signature and the given body (which may call _solution(ARGS))."""
    sources = solution_cells()
    for function, body in bodies.items():
        index = 1 + FUNCTIONS.index(function)
        signature = re.search(rf"^def {function}\((.*?)\):", sources[index], re.MULTILINE)
        assert signature is not None
        params = signature.group(1)
        names = ", ".join(p.split("=")[0].strip() for p in params.split(","))
        renamed = sources[index].replace(f"def {function}(", f"def _solution_{function}(")
        body = body.replace("_solution(ARGS)", f"_solution_{function}({names})")
        sources[index] = renamed + f"\n\ndef {function}({params}):\n" + "".join(f"    {x}\n" for x in body.splitlines())
    return sources


@pytest.mark.parametrize("function", ["softmax", "mlp_loss"])
def test_huge_returned_arrays_cost_only_that_function(
    zygote: Zygote, mlp: Assignment, warm: None, function: str
) -> None:
    body = "import numpy as np\nvalue = _solution(ARGS)\nreturn (value, np.zeros(100 * 2**20 // 8))"
    started = time.monotonic()
    report = grade_cells(zygote, mlp, wrapped({function: body}), FAST)
    assert time.monotonic() - started < FAST.notebook_timeout + SLACK
    assert set(lost(report)) == {function}, lost(report)
    messages = [t["message"] for t in report["tests"] if t["problem"] == function and t["outcome"] != "passed"]
    assert any(f"{function}() returned 100.0 MiB of arrays" in m for m in messages), messages


class _HugeAnswers:
    """A session whose every call answers 4 MiB of arrays (the most a call with small arguments may)."""

    calls = 0

    def call(self, function: str, *args: Any, **kwargs: Any) -> CallResult:
        self.calls += 1
        return CallResult(np.full(RESULT_FLOOR // 8, float(self.calls)), None, [], "", RESULT_FLOOR)

    def seed(self, value: int) -> None:
        pass


def test_the_call_memo_keeps_a_bounded_number_of_bytes(mlp: Assignment) -> None:
    session, memo = _HugeAnswers(), {}
    ctx = CheckContext(session, mlp, mlp.problems[0], 7, False, memo)
    values = [ctx.memo_call(("case", i), np.ones(3)).value[0] for i in range(12)]
    assert values == [float(i + 1) for i in range(12)]  # every key got its own answer
    assert sum(r.nbytes for r in memo.values()) <= MEMO_BYTES < 12 * RESULT_FLOOR, len(memo)
    assert ctx.memo_call(("case", 0), np.ones(3)).value[0] == 1.0 and session.calls == 12  # kept ones are reused


# --------------------------------------------------------------------------- the notebook's total time budget

BUDGET = FAST.override(cell_timeout=2.0, call_timeout=1.5, notebook_timeout=4.0)
NOT_RUN = r"^not run: the notebook's total time budget of 4 s was used up \(its cells took [\d.]+ s and calls"


BUDGET_ATTACKS = [
    (
        "one_function_sleeps_just_under_the_call_timeout",
        lambda: wrapped({"softmax": "import time\ntime.sleep(1.2)\nreturn _solution(ARGS)"}),
    ),
    (
        "every_function_sleeps_a_little",
        lambda: wrapped({f: "import time\ntime.sleep(0.3)\nreturn _solution(ARGS)" for f in FUNCTIONS}),
    ),
    (
        "slow_cells_replayed_after_every_crash",
        lambda: [
            *solution_cells()[:1],
            *["import time\ntime.sleep(1.0)"] * 3,
            *[f"def {f}(*args, **kwargs):\n    import os\n    os._exit(3)" for f in FUNCTIONS],
        ],
    ),
]


@pytest.mark.parametrize("make", [m for _, m in BUDGET_ATTACKS], ids=[i for i, _ in BUDGET_ATTACKS])
def test_the_total_time_budget_ends_the_grading(
    zygote: Zygote, mlp: Assignment, warm: None, make: Callable[[], list[str]]
) -> None:
    started = time.monotonic()
    report = grade_cells(zygote, mlp, make(), BUDGET)
    seconds = time.monotonic() - started
    assert seconds < BUDGET.notebook_timeout + SLACK, f"grading took {seconds:.1f} s with a 4 s budget"
    tests = by_id(report).values()
    cut = [t["message"] for t in tests if re.match(NOT_RUN, t["message"])]
    assert cut, [t["message"] for t in tests]
    assert any("total time budget of 4 s was used up" in e for e in report["execution"]["events"])


def test_calls_after_the_budget_raise_at_once(zygote: Zygote) -> None:
    limits = FAST.override(notebook_timeout=1.0, call_timeout=2.0)
    with Sandbox(zygote, cells("def nap(x):\n    import time\n    time.sleep(5)"), limits) as sandbox:
        sandbox.execute()
        first = within(limits.call_timeout + SLACK, lambda: sandbox.call("nap", 1.0))
        started = time.monotonic()
        second = within(SLACK, lambda: sandbox.call("nap", 1.0))
        assert time.monotonic() - started < 1.0
    assert isinstance(first, BudgetExhausted) and str(first).startswith("nap() was stopped: the notebook's"), first
    assert isinstance(second, BudgetExhausted) and str(second).startswith("not run: the notebook's total"), second


# --------------------------------------------------------------------------- blocked imports stay recorded

CLEAR_ATTEMPTS = """
try:
    import reference
except ImportError:
    pass
import gc
for obj in gc.get_objects():
    if type(obj).__name__ == "ImportGuard":
        obj.attempts.clear()
"""


def test_a_blocked_import_stays_recorded_when_the_cell_clears_the_record(zygote: Zygote) -> None:
    with Sandbox(zygote, cells(CLEAR_ATTEMPTS), FAST) as sandbox:
        record = sandbox.execute()
    assert record.cells[1].status == "ok"
    assert "reference" in record.import_attempts, record.import_attempts


def test_a_class_of_hostile_submissions_is_graded_within_the_sum_of_its_limits(tmp_path: Path) -> None:
    """`jitgrade grade` of a class where every submission spends its time budget one way or another."""
    hostile = {
        "sleepy": BUDGET_ATTACKS[0][1](),
        "drowsy": BUDGET_ATTACKS[1][1](),
        "crashy": BUDGET_ATTACKS[2][1](),
        "forger": solution_cells()[:3] + [FORGE, forged(cell_done(5)) + SLEEP] + solution_cells()[3:],
    }
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name, sources in hostile.items():
        write_notebook(folder / f"{name}.ipynb", sources)
    limits = ["--cell-timeout", "2", "--call-timeout", "1.5", "--notebook-timeout", "4"]
    command = [
        sys.executable,
        "-m",
        "grader",
        "grade",
        str(folder),
        "-a",
        "mlp",
        "--out",
        str(out),
        *limits,
        "--jobs",
        "1",
        "--isolation",
        "process",
        "--no-feedback",
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    start_up = 40.0  # the grading process, its sandbox and the reference's compiled kernels
    assert seconds < start_up + len(hostile) * (4 + 3), f"{seconds:.0f} s for {len(hostile)} notebooks of 4 s each"
    rows = (out / "gradebook.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(hostile), rows


# --------------------------------------------------------------------------- the frame layer itself


def test_a_write_to_a_pipe_nobody_reads_gives_up_at_its_deadline() -> None:
    r, w = os.pipe()
    try:
        started = time.monotonic()
        with pytest.raises(protocol.ChannelTimeout):
            protocol.write_frame(w, {"op": "call"}, [b"\0" * MiB], deadline=time.monotonic() + 0.3)
        assert time.monotonic() - started < 2.0
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (DEEP, "nested too deeply"),
        (b'{"op": "ok", "seq": NaN}', "not JSON: NaN"),
        (b'{"op": "ok", "seq": -Infinity}', "not JSON: -Infinity"),
        (b'{"op": "ok", "seq": ' + b"9" * 5000 + b"}", "not JSON"),
        (b'{"op": "\xed\xa0\x80"}', "not JSON"),
    ],
    ids=["nested_100k_deep", "nan", "minus_infinity", "int_of_5000_digits", "encoded_surrogate"],
)
def test_headers_a_worker_may_not_send_are_protocol_errors(raw: bytes, says: str) -> None:
    r, w = os.pipe()
    try:
        writer = threading.Thread(target=os.write, args=(w, struct.pack("<4sII", b"JGF1", len(raw), 0) + raw))
        writer.start()
        with pytest.raises(protocol.ProtocolError, match=re.escape(says)):
            protocol.FrameReader(r).read(time.monotonic() + 5)
        writer.join()
    finally:
        os.close(r)
        os.close(w)


def test_numbers_past_64_bits_are_refused_as_values() -> None:
    for node in ({"t": "int", "v": 10**30}, {"t": "float", "v": 10**400}, {"t": "int", "v": -(2**64)}):
        value = protocol.decode(node, [])
        assert isinstance(value, protocol.Refused) and "at most 64 bits" in value.why, value
    assert protocol.decode({"t": "int", "v": 2**63 - 1}, []) == 2**63 - 1


def test_an_import_notice_between_answers_is_recorded_and_kept(zygote: Zygote) -> None:
    """The grader's half of the fix above: a notice frame may come at any time, and what it names stays."""
    notice = forged({"op": "import_attempt", "import_attempts": ["reference.mlp"]})
    with Sandbox(zygote, cells(notice + "x = 1", "y = 2"), FAST) as sandbox:
        record = sandbox.execute()
    assert [c.status for c in record.cells] == ["ok"] * 3, [c.error for c in record.cells]
    assert record.import_attempts == ["reference.mlp"]


FORGED_PAIRS = [
    ("dict_of_two", {"t": "dict", "v": [["a", {"t": "int", "v": 1}], ["b", {"t": "int", "v": 2}]]}, "not a (value"),
    ("three_items", {"t": "tuple", "v": [{"t": "int", "v": 1}, {"t": "none"}, {"t": "none"}]}, "not a (value"),
    ("empty_echo", {"t": "tuple", "v": [{"t": "int", "v": 1}, {"t": "tuple", "v": []}]}, "not the 1 the call"),
    (
        "echo_unasked",
        {"t": "tuple", "v": [{"t": "int", "v": 1}, {"t": "tuple", "v": [{"t": "int", "v": 0}]}]},
        "unasked",
    ),
]


@pytest.mark.parametrize(("tree", "says"), [(t, s) for _, t, s in FORGED_PAIRS], ids=[i for i, _, _ in FORGED_PAIRS])
def test_a_forged_return_pair_or_echo_is_a_broken_channel(zygote: Zygote, tree: dict[str, Any], says: str) -> None:
    """An answer whose value is not (value, echo), or whose echo has not one item per argument (an empty echo
    would pass every no-mutation check), is a protocol error charged to that call, never a grader error."""
    echo = says != "unasked"
    answer = {"op": "returned", "seq": 3, "value": tree, "warnings": [], "stdout": ""}
    source = "def f(x):\n    " + forged(answer).replace("\n", "\n    ") + "import time\n    time.sleep(600)\n"
    with Sandbox(zygote, cells(source), FAST) as sandbox:
        sandbox.execute()
        error = within(FAST.call_timeout + SLACK, lambda: sandbox.call("f", np.ones(2), echo_args=echo))
    assert isinstance(error, ChannelBroken), error
    assert "a call of f() broke the notebook's channel" in str(error) and says in str(error), error
