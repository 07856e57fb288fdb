"""The adversarial corpus of the sandbox: one small notebook per attack or failure of student code.

Every attack is graded end to end and checked for the same four things (``assert_survived`` and
the table tests): the grader returns a report (no exception, no hang); every other problem still
gets full points, because the rest of each notebook is the master solution; the report says what
happened and where (the cell index or the function's name); and the wall time stays under a
safety bound derived from the limits used (``wall_bound``). The isolation level and its layers are
asserted on every report. Refusals that need a layer the kernel lacks (seccomp, Landlock,
bubblewrap) are skipped by name, and dangerous attacks (fork bombs, killing other processes)
only run when the layer that refuses them is in force, so this file is safe on any machine.

Attacks run with the conftest limits FAST (3 s cells, 2 s calls). File, process and signal attacks
run twice: in the default sandbox (bubblewrap when usable) and with isolation="process".
Tests marked xfail(strict=True), if any, document grader bugs; their reasons give the diagnosis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, by_id, lost, notebook_json, solution_cells

from grader.assignment import Assignment
from grader.grading import Grader
from grader.notebook import dumps as notebook_dumps
from grader.notebook import loads
from grader.reports import files
from grader.sandbox.limits import Limits
from grader.sandbox.session import Sandbox
from grader.sandbox.zygote import Zygote

ROOT = Path(__file__).resolve().parent.parent
ADVERSARIAL = Path(__file__).resolve().parent / "adversarial"
FUNCTIONS = ("softmax", "sigmoid", "sigmoid_grad", "softmax_cross_entropy", "mlp_forward", "mlp_loss",
             "numerical_gradient")
AT = 3  # attack cells go between sigmoid (cell 2) and sigmoid_grad (then cell 4): functions before and after
SMALL_MEMORY = FAST.override(memory_mb=512)
LEAK = "ATTACK SUCCEEDED"  # what an attack cell raises when the sandbox let it through
REFUSED_FILE = r"^(PermissionError|FileNotFoundError|OSError|NotADirectoryError)\b"
FAKE_SCORE = "All tests passed! Score: 100/100"


def wall_bound(limits: Limits) -> float:
    """Safety bound on one grading: a few cell timeouts, every call timeout allowed, slack for restarts."""
    return 3 * limits.cell_timeout + 2 * limits.failures_per_function * limits.call_timeout + 20


def proc_count() -> int:
    """Processes on the machine (numeric entries of /proc)."""
    return sum(name.isdigit() for name in os.listdir("/proc"))


def indent(body: str) -> str:
    return "".join(f"    {line}\n" for line in body.strip("\n").splitlines())


def function_source(function: str, body: str, args: str = "x") -> str:
    """`def function(args):` with the given body (unindented text)."""
    return f"def {function}({args}):\n{indent(body)}"


def with_cells_at(index: int, *cells: str) -> list[str]:
    """The correct solution's cells with extra cells inserted at `index`."""
    cells_ = solution_cells()
    return cells_[:index] + list(cells) + cells_[index:]


# --------------------------------------------------------------------------- running and asserting


@dataclass
class Run:
    """One graded attack: the canonical report, the executed notebook and the wall time."""

    report: dict[str, Any]
    executed: dict[str, Any] | None
    seconds: float

    @property
    def execution(self) -> dict[str, Any]:
        return self.report["execution"]

    @property
    def cells(self) -> dict[int, dict[str, Any]]:
        return {c["index"]: c for c in self.execution["cells"]}

    @property
    def layers(self) -> dict[str, Any]:
        return self.execution["isolation"]["layers"]

    def failed(self, problem: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.report["tests"] if t["outcome"] != "passed" and problem in (None, t["problem"])]

    def wrong(self, problem: str | None = None) -> list[dict[str, Any]]:
        """Failed checks other than properties that hold but earn nothing without right values (gated)."""
        return [t for t in self.failed(problem) if not t.get("details", {}).get("gated")]

    def outputs_text(self, index: int) -> str:
        assert self.executed is not None
        cell = self.executed["cells"][index]
        return "".join(o.get("text", "") + json.dumps(o.get("data", "")) for o in cell.get("outputs", []))


def grade_with(zygote: Zygote, assignment: Assignment, cells: Sequence[str], limits: Limits = FAST) -> Run:
    notebook = loads(json.dumps(notebook_json(cells)).encode(), "attacker.ipynb")
    grader = Grader(assignment, limits, 7, zygote=zygote)
    started = time.monotonic()
    graded = grader.grade(notebook, "attacker")
    return Run(graded.result.to_dict(), graded.executed, time.monotonic() - started)


_BASELINES: dict[int, Run] = {}


class Attacker:
    """Grades attack notebooks in one sandbox: attacker(cells, limits) -> Run."""

    def __init__(self, zygote: Zygote, assignment: Assignment) -> None:
        self.zygote = zygote
        self.assignment = assignment

    def __call__(self, cells: Sequence[str], limits: Limits = FAST) -> Run:
        return grade_with(self.zygote, self.assignment, cells, limits)

    def baseline(self) -> Run:
        """The correct solution in this sandbox (once per zygote): full points, and the layers in force."""
        if id(self.zygote) not in _BASELINES:
            run = self(solution_cells())
            assert run.report["score"] == run.report["max_score"], lost(run.report)
            _BASELINES[id(self.zygote)] = run
        return _BASELINES[id(self.zygote)]


@pytest.fixture
def attack(zygote: Zygote, mlp: Assignment) -> Attacker:
    """Grades in the shared sandbox (bubblewrap when usable)."""
    return Attacker(zygote, mlp)


@pytest.fixture(params=["auto", "process"])
def isolated(request: pytest.FixtureRequest, zygote: Zygote, mlp: Assignment) -> Attacker:
    """Like `attack`, once in the default sandbox and once with isolation='process'."""
    return Attacker(zygote if request.param == "auto" else request.getfixturevalue("process_zygote"), mlp)


def available(run: Run, layer: str) -> bool:
    """Whether an isolation layer was in force ('bwrap' stands for the bubblewrap level)."""
    if layer == "bwrap":
        return run.execution["isolation"]["level"] == "bwrap"
    return bool(run.layers.get(layer))


def require(run: Run, *any_of: str) -> None:
    """Skip unless at least one of the layers was in force (the refusal depends on it)."""
    if any_of and not any(available(run, layer) for layer in any_of):
        pytest.skip(f"needs the {' or '.join(any_of)} isolation layer, absent here "
                    f"(level {run.execution['isolation']['level']}, layers {run.layers})")


def assert_survived(run: Run, limits: Limits = FAST) -> None:
    """The grader produced a complete report in bounded time and said which isolation it used."""
    report = run.report
    assert report["error"] is None, report["error"]
    assert run.seconds < wall_bound(limits), f"grading took {run.seconds:.1f} s (bound {wall_bound(limits):g} s)"
    isolation = report["execution"]["isolation"]
    assert isolation["level"] in ("bwrap", "process")
    assert isinstance(isolation["layers"], dict) and "rlimits" in isolation["layers"]
    assert {t["problem"] for t in report["tests"]} == set(FUNCTIONS)
    assert len(report["tests"]) == len(by_id(report))


def assert_full_points_except(run: Run, *problems: str) -> None:
    """Exactly these problems lost points; every other problem has full points."""
    assert set(lost(run.report)) == set(problems), {t["id"]: t["message"] for t in run.failed()}


def assert_only_cell_failed(run: Run, index: int, status: str, error: str | None) -> None:
    cells = run.cells
    assert cells[index]["status"] == status, cells[index]
    if error is not None:
        assert re.search(error, cells[index]["error"] or ""), cells[index]["error"]
    others = {i: c for i, c in cells.items() if i != index and c["status"] != "ok"}
    assert not others, others
    assert run.execution["timeouts"] == ([index] if status == "timeout" else [])
    assert run.execution["crashes"] == ([index] if status == "crashed" else [])


# --------------------------------------------------------------------------- attacks in a top-level cell

SIGNAL_HANDLERS = """
import signal
for sig in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *a: None)
"""

FLOOD_PRINT = "for i in range(20000):\n    print('x' * 500)"


@dataclass(frozen=True)
class CellAttack:
    """An attack cell inserted at index AT of a correct notebook."""

    id: str
    source: str
    status: str  # expected status of the attack cell: ok | error | timeout | crashed
    error: str | None = None  # regex the cell's error must match
    limits: Limits = FAST
    imports: str | None = None  # a module that must appear in execution.import_attempts
    needs: tuple[str, ...] = ()  # isolation layers, any of which makes the refusal assertable


CELL_ATTACKS = [
    CellAttack("infinite_loop", "while True:\n    pass", "timeout",
               r"^cell 3 did not finish within 3 s and was stopped \(it starts with: 'while True:'\)"),
    CellAttack("signal_handlers_then_infinite_loop", SIGNAL_HANDLERS + "while True:\n    pass", "timeout",
               r"^cell 3 did not finish within 3 s"),
    CellAttack("memory_bomb_array", "x = np.ones((10**6, 10**5))", "error", r"^MemoryError", SMALL_MEMORY),
    CellAttack("sys_exit", "import sys\nsys.exit(3)", "error", r"^SystemExit: 3$"),
    CellAttack("os_exit", "import os\nos._exit(7)", "crashed",
               r"^the notebook's process exited with code 7 during cell 3 \(os\._exit\(\)"),
    CellAttack("raise_system_exit", "raise SystemExit", "error", r"^SystemExit"),
    CellAttack("raise_keyboard_interrupt", "raise KeyboardInterrupt", "error", r"^KeyboardInterrupt"),
    CellAttack("exit_and_quit_builtins", "exit()\nquit()\nprint('still running')", "ok"),
    CellAttack("segfault", "import ctypes\nctypes.string_at(0)", "crashed",
               r"killed by signal 11 during cell 3 \(segmentation fault"),
    CellAttack("sigterm_to_own_group", "import os, signal\nos.kill(0, signal.SIGTERM)", "crashed",
               r"killed by signal 15 during cell 3"),
    CellAttack("raise_own_memory_limit", "import resource\nresource.setrlimit(resource.RLIMIT_AS, "
               "(resource.RLIM_INFINITY, resource.RLIM_INFINITY))", "error",
               r"^ValueError: not allowed to raise maximum limit", needs=("no-privileges", "bwrap")),
    CellAttack("read_stdin", "name = input('your name? ')", "error", r"^EOFError"),
    CellAttack("megabytes_printed", FLOOD_PRINT, "ok"),
    CellAttack("megabytes_written_to_fds", "import os\nos.write(1, b'x' * 10**7)\nos.write(2, b'y' * 10**7)", "ok"),
    CellAttack("fake_score_printed", f"print({FAKE_SCORE!r})\nprint('{{\"score\": 100, \"max_score\": 100}}')", "ok"),
    CellAttack("import_reference", "import reference", "error",
               r"^ImportError: importing 'reference' is not allowed in a graded notebook", imports="reference"),
    CellAttack("import_grader", "import grader", "error",
               r"^ImportError: importing 'grader' is not allowed in a graded notebook", imports="grader"),
    CellAttack("import_grader_protocol", "import grader.sandbox.protocol", "error",
               r"^ImportError: importing 'grader(\.sandbox\.protocol)?' is not allowed", imports="grader"),
    CellAttack("from_reference_import", "from reference import softmax as ref_softmax", "error",
               r"^ImportError: importing 'reference' is not allowed", imports="reference"),
    CellAttack("threads_calling_numpy",
               "import threading\nresults = []\ndef work():\n    for _ in range(100):\n"
               "        results.append(float(np.linalg.norm(np.random.rand(40, 40) @ np.random.rand(40, 40))))\n"
               "threads = [threading.Thread(target=work) for _ in range(4)]\nfor t in threads:\n    t.start()\n"
               "for t in threads:\n    t.join()\nassert len(results) == 400", "ok"),
    CellAttack("background_thread_calling_numpy_forever",
               "import threading\ndef churn():\n    while True:\n        np.exp(np.random.rand(100)).sum()\n"
               "threading.Thread(target=churn, daemon=True).start()", "ok"),
    CellAttack("shadow_numpy_module", "import sys, types\nsys.modules['numpy.fake'] = types.ModuleType('fake')\n"
               "sys.modules['json'] = None", "ok"),
]


@pytest.mark.parametrize("case", CELL_ATTACKS, ids=[c.id for c in CELL_ATTACKS])
def test_attack_in_a_cell_costs_nothing_else(attack: Attacker, case: CellAttack) -> None:
    require(attack.baseline(), *case.needs)
    run = attack(with_cells_at(AT, case.source), case.limits)
    assert_survived(run, case.limits)
    assert_only_cell_failed(run, AT, case.status, case.error)
    assert_full_points_except(run)
    if case.imports:
        assert any(name.split(".")[0] == case.imports for name in run.execution["import_attempts"]), \
            run.execution["import_attempts"]
    for test in run.report["tests"]:
        assert FAKE_SCORE not in test["output"]


def test_syntax_error_before_the_functions_costs_nothing_else(attack: Attacker) -> None:
    cells = solution_cells()
    run = attack(cells[:1] + ["def broken(x)\n    return x"] + cells[1:])
    assert_survived(run)
    assert_only_cell_failed(run, 1, "error", r"^SyntaxError: expected ':' \(.*line 1\)")
    assert_full_points_except(run)


def test_syntax_error_in_a_function_cell_names_the_missing_function(attack: Attacker) -> None:
    run = attack(solution_cells(replace={"sigmoid": "def sigmoid(x)\n    return x"}))
    assert_survived(run)
    assert_only_cell_failed(run, 2, "error", r"^SyntaxError")
    assert_full_points_except(run, "sigmoid")
    expected = r"sigmoid\(\) is not defined because cell 2 \(`def sigmoid\(x\)`\) failed: SyntaxError at line 1"
    assert all(re.match(expected, t["message"]) for t in run.failed("sigmoid"))


def test_a_thousand_trivial_cells_are_graded_in_bounded_time(attack: Attacker) -> None:
    run = attack(["x = 0"] * 1000 + solution_cells())
    assert_survived(run)
    assert run.seconds < 30, run.seconds
    assert run.execution["cells_run"] == 1000 + len(solution_cells())
    assert_full_points_except(run)


NOTEBOOK_BUDGET = FAST.override(notebook_timeout=2.0)
SLOW_TAIL = ["import time\ntime.sleep(0.7)"] * 5


def test_slow_cells_exhaust_the_notebook_budget_and_later_cells_are_not_run(attack: Attacker) -> None:
    run = attack(solution_cells() + SLOW_TAIL, NOTEBOOK_BUDGET)
    assert_survived(run, NOTEBOOK_BUDGET)
    assert_full_points_except(run, *FUNCTIONS)  # the budget covers the calls too: none is left for them
    assert all("not run: the notebook's total time budget of 2 s was used up" in t["message"]
               for t in run.failed()), [t["message"] for t in run.failed()]
    tail = [run.cells[i] for i in range(len(solution_cells()), len(solution_cells()) + len(SLOW_TAIL))]
    assert tail[0]["status"] == "ok" and tail[-1]["status"] == "not_run", tail
    for cell in tail:
        if cell["status"] == "not_run":
            assert cell["error"] == "the notebook's total time limit was reached"
    assert run.execution["seconds"] < NOTEBOOK_BUDGET.notebook_timeout + 2 * NOTEBOOK_BUDGET.cell_timeout


def test_the_cell_cut_by_the_notebook_budget_names_the_budget(attack: Attacker) -> None:
    run = attack(solution_cells() + SLOW_TAIL, NOTEBOOK_BUDGET)
    cut = [c for c in run.execution["cells"] if c["status"] == "timeout"]
    assert cut, run.execution["cells"]
    assert "total time limit" in cut[0]["error"] and "infinite loop" not in cut[0]["error"], cut[0]["error"]


def test_printed_output_is_capped_and_does_not_change_the_grade(attack: Attacker) -> None:
    limits = FAST.override(output_kb=64)
    printer = function_source("sigmoid", "print('x' * 10**6)\nprint(" + repr(FAKE_SCORE) + ")\n"
                              "e = np.exp(-np.abs(x))\nreturn np.where(x >= 0, 1 / (1 + e), e / (1 + e))")
    cells = solution_cells(replace={"sigmoid": printer})
    run = attack(cells[:AT] + [FLOOD_PRINT] + cells[AT:], limits)
    assert_survived(run, limits)
    assert_only_cell_failed(run, AT, "ok", None)
    assert_full_points_except(run)
    flooded = run.outputs_text(AT)
    assert len(flooded) <= 64 * 1024 + 1000, len(flooded)
    assert "output truncated: this notebook printed more than 65536 bytes" in flooded
    assert all(FAKE_SCORE not in t["output"] for t in run.report["tests"])


def test_fake_scores_in_a_stored_notebook_are_ignored(zygote: Zygote, mlp: Assignment, tmp_path: Path) -> None:
    """A notebook file with forged outputs, execution counts and metadata claiming 100/100, and a wrong
    sigmoid whose call prints a fake score: only the real results count."""
    forged = json.loads((ADVERSARIAL / "fake_outputs.ipynb").read_text())
    correct = solution_cells()
    forged["cells"] += [{"cell_type": "code", "id": f"solution-{i}", "metadata": {}, "outputs": [],
                         "execution_count": None, "source": src}
                        for i, src in enumerate(correct[:2] + correct[AT:])]  # all but sigmoid
    path = tmp_path / "forged.ipynb"
    path.write_text(json.dumps(forged))
    started = time.monotonic()
    graded = Grader(mlp, FAST, 7, zygote=zygote).grade_file(path, "forger")
    run = Run(graded.result.to_dict(), graded.executed, time.monotonic() - started)
    assert_survived(run)
    assert_full_points_except(run, "sigmoid")
    assert run.report["score"] < run.report["max_score"]
    text = json.dumps(run.report["tests"]) + run.report["output"]
    assert FAKE_SCORE not in text and "100/100" not in text
    assert all(re.search(r"sigmoid\(x\) is wrong", t["message"]) for t in run.failed("sigmoid")
               if t["check"] in ("values", "extreme_values"))


# --------------------------------------------------------------------------- attacks in a graded function


@dataclass(frozen=True)
class FunctionAttack:
    """A graded function replaced by an attack; its checks fail with a message matching `message`."""

    id: str
    body: str
    message: str
    function: str = "sigmoid"
    limits: Limits = FAST
    needs: tuple[str, ...] = ()  # isolation layers, any of which makes the refusal assertable


SIGMOID = "e = np.exp(-np.abs(x))\nreturn np.where(x >= 0, 1 / (1 + e), e / (1 + e))"
NOT_AN_ARRAY = r"^sigmoid\(x\) for x of shape \([\d, ]+\) should be a NumPy array of shape \([\d, ]+\), but it is "
GARBAGE_FRAMES = """
import os
for fd in sorted(int(name) for name in os.listdir('/proc/self/fd')):
    try:
        os.write(fd, b"JGF1garbage")
    except OSError:
        pass
"""

FUNCTION_ATTACKS = [
    FunctionAttack("memory_bomb_array", "y = np.ones((10**6, 10**5))\n" + SIGMOID,
                   r"^sigmoid\(\): the worker hit the memory limit of 0\.5 GiB", limits=SMALL_MEMORY),
    FunctionAttack("memory_bomb_list", "chunks = []\nwhile True:\n    chunks.append(np.empty(10**6))",
                   r"^sigmoid\(\): the worker hit the memory limit of 0\.5 GiB", limits=SMALL_MEMORY),
    FunctionAttack("sys_exit", "import sys\nsys.exit(3)",
                   r"^sigmoid\(\) raised SystemExit: 3 \(File .*line 3, in sigmoid\)"),
    FunctionAttack("os_exit", "import os\nos._exit(7)",
                   r"^the notebook's process exited with code 7 during a call of sigmoid\(\)"),
    FunctionAttack("raise_system_exit", "raise SystemExit", r"^sigmoid\(\) raised SystemExit"),
    FunctionAttack("raise_keyboard_interrupt", "raise KeyboardInterrupt", r"^sigmoid\(\) raised KeyboardInterrupt"),
    FunctionAttack("segfault", "import ctypes\nctypes.string_at(0)",
                   r"^the notebook's process was killed by signal 11 during a call of sigmoid\(\)"),
    FunctionAttack("import_reference", "import reference\nreturn reference.sigmoid(x)",
                   r"^sigmoid\(\) raised ImportError: importing 'reference' is not allowed"),
    FunctionAttack("fork", "import os\nos.fork()\n" + SIGMOID, r"^sigmoid\(\) raised PermissionError",
                   needs=("seccomp",)),
    FunctionAttack("kill_parent", "import os\nos.kill(os.getppid(), 9)\n" + SIGMOID,
                   r"^sigmoid\(\) raised PermissionError", needs=("seccomp",)),
    FunctionAttack("garbage_frames_on_every_fd", GARBAGE_FRAMES + SIGMOID,
                   r"^a call of sigmoid\(\) broke the notebook's channel to the grader"),
    FunctionAttack("returns_np_matrix", "e = np.exp(x - x.max(axis=-1, keepdims=True))\n"
                   "return np.matrix(e / e.sum(axis=-1, keepdims=True))",
                   r"^softmax\(x\) for x of shape .* but it is a numpy\.matrix, which cannot be graded: "
                   r"an ndarray subclass; return a plain numpy\.ndarray", function="softmax"),
    FunctionAttack("returns_ndarray_subclass", "class Probabilities(np.ndarray):\n    pass\n"
                   "return (1 / (1 + np.exp(-x))).view(Probabilities)",
                   NOT_AN_ARRAY + r"a .*Probabilities, which cannot be graded: an ndarray subclass"),
    FunctionAttack("returns_object_array", "return (1 / (1 + np.exp(-x))).astype(object)",
                   NOT_AN_ARRAY + r"a numpy\.ndarray of dtype object, which cannot be graded"),
    FunctionAttack("returns_complex_array", "return (1 / (1 + np.exp(-x))).astype(complex)",
                   NOT_AN_ARRAY + r"a numpy\.ndarray of dtype complex128, which cannot be graded"),
    FunctionAttack("returns_nan", "return np.full(np.shape(x), np.nan)",
                   r"^sigmoid\(x\) (is wrong .*found nan\)|contains \d+ NaN/inf entries)"),
    FunctionAttack("returns_inf", "return np.full(np.shape(x), np.inf)",
                   r"^sigmoid\(x\) (is wrong .*found inf\)|contains \d+ NaN/inf entries)"),
    FunctionAttack("returns_wrong_shape", "return (1 / (1 + np.exp(-x))).ravel()",
                   r"^sigmoid\(x\) for x of shape \([\d, ]+\) has shape \(\d+,\), expected \([\d, ]+\)"),
    FunctionAttack("returns_string", "return 'sigmoid'", NOT_AN_ARRAY + r"a str, which cannot be graded"),
    FunctionAttack("returns_bytes", "return b'\\x00' * 8", NOT_AN_ARRAY + r"a bytes, which cannot be graded"),
    FunctionAttack("returns_none", "pass", NOT_AN_ARRAY + r"None \(did the function forget to return its result\?\)"),
    FunctionAttack("returns_dict", "return {'s': 1.0}", NOT_AN_ARRAY + r"a dict with keys \['s'\]"),
    FunctionAttack("returns_custom_object", "class Sneaky:\n    def __array__(self, *a, **k):\n"
                   "        return np.zeros(3)\nreturn Sneaky()", NOT_AN_ARRAY + r"a .*Sneaky, which cannot be graded"),
    FunctionAttack("returns_a_function", "return sigmoid", NOT_AN_ARRAY + r"a function, which cannot be graded"),
]


@pytest.mark.parametrize("case", FUNCTION_ATTACKS, ids=[c.id for c in FUNCTION_ATTACKS])
def test_attack_in_a_function_costs_only_that_function(attack: Attacker, case: FunctionAttack) -> None:
    if case.needs:
        require(attack.baseline(), *case.needs)
    run = attack(solution_cells(replace={case.function: function_source(case.function, case.body)}), case.limits)
    assert_survived(run, case.limits)
    assert_full_points_except(run, case.function)
    assert all(c["status"] == "ok" for c in run.execution["cells"]), run.execution["cells"]
    failed = run.wrong(case.function)
    assert failed
    skipped = rf"^{case.function}\(\) was not called again after failing \d times on earlier inputs; the last time: "
    for test in failed:
        message = re.sub(skipped, "", test["message"])  # a function that keeps crashing is not called again
        assert re.search(case.message, message), (test["id"], test["message"])


@pytest.mark.parametrize("body", ["while True:\n    pass", SIGNAL_HANDLERS + "while True:\n    pass"],
                         ids=["infinite_loop", "signal_handlers_then_infinite_loop"])
def test_infinite_loop_in_a_function_costs_at_most_the_allowed_timeouts(attack: Attacker, body: str) -> None:
    run = attack(solution_cells(replace={"sigmoid": function_source("sigmoid", body)}))
    assert_survived(run)
    assert_full_points_except(run, "sigmoid")
    assert lost(run.report)["sigmoid"] == pytest.approx(5.0)
    messages = [t["message"] for t in run.failed("sigmoid")]
    timeouts = [m for m in messages if re.match(r"^sigmoid\(\) timed out: it did not return within 2 s", m)]
    skipped = [m for m in messages if re.match(r"^sigmoid\(\) was not called again after failing 2 times", m)]
    assert 1 <= len(timeouts) <= FAST.failures_per_function, messages
    assert len(timeouts) + len(skipped) == len(messages), messages


def test_list_of_lists_is_accepted_as_an_array(attack: Attacker) -> None:
    run = attack(solution_cells(replace={"sigmoid": function_source("sigmoid", SIGMOID + ".tolist()")}))
    assert_survived(run)
    assert_full_points_except(run)


def test_softmax_that_mutates_its_input_fails_only_no_mutation(attack: Attacker) -> None:
    mutating = function_source("softmax", "x -= x.max(axis=-1, keepdims=True)\ne = np.exp(x)\n"
                               "return e / e.sum(axis=-1, keepdims=True)")
    run = attack(solution_cells(replace={"softmax": mutating}))
    assert_survived(run)
    assert_full_points_except(run, "softmax")
    assert [t["id"] for t in run.failed()] == ["softmax.no_mutation", "softmax.no_mutation[hidden]"]
    for test in run.failed():
        assert re.match(r"^softmax\(\) modified its input x in place \(\d+ of \d+ entries changed\); work on a copy",
                        test["message"]), test["message"]


# --------------------------------------------------------------------------- monkeypatching after the definitions

COMPARISON_PATCHES = """
import builtins
import numpy as np
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.shape(a), dtype=bool)
np.array_equal = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
np.testing.assert_array_equal = lambda *a, **k: None
builtins.abs = lambda x: 0
"""


def test_patched_comparison_helpers_do_not_fool_the_grader(attack: Attacker) -> None:
    wrong = function_source("sigmoid", "return np.full(np.shape(x), 0.5)")
    run = attack(solution_cells(replace={"sigmoid": wrong}) + [COMPARISON_PATCHES])
    assert_survived(run)
    assert_full_points_except(run, "sigmoid")
    assert all(c["status"] == "ok" for c in run.execution["cells"])
    assert any(re.match(r"^sigmoid\(x\) is wrong", t["message"]) for t in run.failed("sigmoid"))


def test_patched_np_exp_is_judged_by_the_real_results(attack: Attacker) -> None:
    """np.exp replaced after the definitions: the functions that use it now return wrong values,
    and the grader (whose NumPy is its own) says so with the true expected values."""
    run = attack(solution_cells() + ["np.exp = lambda x: x * 0 + 1.0"])
    assert_survived(run)
    assert_full_points_except(run, "softmax", "sigmoid", "softmax_cross_entropy", "mlp_loss")
    softmax = by_id(run.report)["softmax.values_2d"]
    assert softmax["outcome"] == "failed"
    assert softmax["details"]["found_at_worst"] != softmax["details"]["expected_at_worst"]


# --------------------------------------------------------------------------- files outside the worker's directory


@dataclass(frozen=True)
class FileAttack:
    id: str
    source: Callable[[Path], str]  # from a scratch path outside the sandbox to the attack cell
    needs: tuple[str, ...]  # any of these layers refuses it
    creates: bool = False  # the scratch path must not exist afterwards


def read(path: Path) -> str:
    return f"data = open({str(path)!r}, 'rb').read()\nraise RuntimeError({LEAK!r} + ': read %d bytes' % len(data))"


GIT_HISTORY = r"""
import os, zlib
objects = os.path.join(ROOT, '.git', 'objects')
head = open(os.path.join(ROOT, '.git', 'HEAD')).read()
recovered = ''
for sub in sorted(os.listdir(objects)):
    folder = os.path.join(objects, sub)
    if len(sub) != 2:
        continue
    for name in os.listdir(folder):
        text = zlib.decompress(open(os.path.join(folder, name), 'rb').read()).decode('utf-8', 'replace')
        if 'BEGIN SOLUTION' in text and 'def softmax' in text:
            recovered = text[text.find('def softmax'):][:300]
raise RuntimeError(LEAK + ': read .git (HEAD %r); master solution recovered: %r' % (head.strip(), recovered))
"""


FILE_ATTACKS = [
    FileAttack("read_master_solution", lambda _: read(ROOT / "assignments" / "mlp" / "solution.ipynb"),
               ("bwrap", "landlock")),
    FileAttack("read_assignment_toml", lambda _: read(ROOT / "assignments" / "mlp" / "assignment.toml"),
               ("bwrap", "landlock")),
    FileAttack("read_grader_source", lambda _: read(ROOT / "grader" / "sandbox" / "session.py"),
               ("bwrap", "landlock")),
    FileAttack("read_reference_source", lambda _: read(ROOT / "reference" / "__init__.py"), ("bwrap", "landlock")),
    FileAttack("load_reference_by_path",
               lambda _: "import importlib.util\nspec = importlib.util.spec_from_file_location("
                         f"'ref', {str(ROOT / 'reference' / '__init__.py')!r})\n"
                         "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n"
                         f"raise RuntimeError({LEAK!r})", ("bwrap", "landlock")),
    FileAttack("list_grader_directory",
               lambda _: f"import os\nnames = os.listdir({str(ROOT / 'grader')!r})\n"
                         f"assert names, 'empty'\nraise RuntimeError({LEAK!r} + str(names))", ("bwrap", "landlock")),
    FileAttack("read_the_graders_environment", lambda _: read(Path(f"/proc/{os.getpid()}/environ")),
               ("bwrap", "landlock")),
    FileAttack("write_into_the_repository", lambda scratch: f"open({str(ROOT / scratch.name)!r}, 'w').write('x')\n"
               f"raise RuntimeError({LEAK!r})", ("bwrap", "landlock"), creates=True),
    FileAttack("write_into_tmp", lambda scratch: f"open({str(scratch)!r}, 'w').write('x')\n"
               f"raise RuntimeError({LEAK!r})", ("landlock",), creates=True),
    FileAttack("list_tmp", lambda _: f"import os\nnames = os.listdir('/tmp')\n"
               f"raise RuntimeError({LEAK!r} + str(names))", ("landlock",)),
    FileAttack("read_the_repository_history",
               lambda _: f"ROOT = {str(ROOT)!r}\nLEAK = {LEAK!r}\n" + GIT_HISTORY, ("bwrap", "landlock")),
    FileAttack("read_the_repository_root", lambda _: read(ROOT / "pyproject.toml"), ("landlock",)),
    FileAttack("shell_escape_touch", lambda scratch: f"get_ipython().system('touch {scratch}')\n"
               f"import os\nassert not os.path.exists({str(scratch)!r}), {LEAK!r}\nraise OSError('shell did not run')",
               ("seccomp", "landlock"), creates=True),
]


@pytest.mark.parametrize("case", FILE_ATTACKS, ids=[c.id for c in FILE_ATTACKS])
def test_files_outside_the_worker_directory_are_out_of_reach(isolated: Attacker, case: FileAttack) -> None:
    require(isolated.baseline(), *case.needs)  # without the layer a write would really land in the repository
    scratch = Path("/tmp") / f"jitgrade-adversarial-{uuid.uuid4().hex}"
    written = [scratch, ROOT / scratch.name]
    try:
        run = isolated(with_cells_at(AT, case.source(scratch)))
        assert_survived(run)
        assert_full_points_except(run)
        assert_only_cell_failed(run, AT, "error", REFUSED_FILE)
        assert LEAK not in run.cells[AT]["error"]
        if case.creates:
            assert not any(p.exists() for p in written), "the attack created a file outside the sandbox"
    finally:
        for p in written:
            p.unlink(missing_ok=True)


@pytest.fixture
def report_folder() -> Iterator[Path]:
    """A folder of reports outside /tmp (bubblewrap replaces /tmp anyway), hidden from the sandbox."""
    parent = "/var/tmp" if os.access("/var/tmp", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="jitgrade-reports-", dir=parent))
    (folder / "alice.json").write_text('{"score": 97}')
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("isolation", ["auto", "process"])
def test_the_report_folder_is_hidden(report_folder: Path, mlp: Assignment, isolation: str) -> None:
    source = (f"import os\nnames = os.listdir({str(report_folder)!r})\n"
              f"data = open({str(report_folder / 'alice.json')!r}).read()\n"
              f"raise RuntimeError({LEAK!r} + str(names) + data)")
    with Zygote(isolation=isolation, hidden_paths=[str(report_folder)]) as z:
        run = grade_with(z, mlp, with_cells_at(AT, source))
    assert_survived(run)
    assert_full_points_except(run)
    require(run, "bwrap", "landlock")
    assert_only_cell_failed(run, AT, "error", REFUSED_FILE)
    assert (report_folder / "alice.json").read_text() == '{"score": 97}'




# --------------------------------------------------------------------------- processes and signals

FORK_BOMB = """
import os
if os.environ.get("HOME", "").startswith("/tmp/jitgrade-"):  # only ever inside a jitgrade worker
    try:
        probe = os.fork()
    except OSError:
        probe = None  # refused: the loop below is refused too, so running it is harmless
    else:
        if probe == 0:
            os._exit(0)
        raise RuntimeError("fork was allowed: the fork bomb is not run")
    while True:
        os.fork()
"""


@dataclass(frozen=True)
class ProcessAttack:
    id: str
    source: str  # may contain {grader_pid}
    error: str = r"^PermissionError: \[Errno 1\] Operation not permitted"


PROCESS_ATTACKS = [
    ProcessAttack("os_fork", "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)"),
    ProcessAttack("subprocess_run", "import subprocess\nsubprocess.run(['true'])"),
    ProcessAttack("multiprocessing_process",
                  "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\np.join()"),
    ProcessAttack("fork_bomb", FORK_BOMB),
    ProcessAttack("kill_parent", "import os\nos.kill(os.getppid(), 9)"),
    ProcessAttack("kill_pid_1", "import os\nos.kill(1, 9)"),
    ProcessAttack("kill_the_grader", "import os\nos.kill({grader_pid}, 9)"),
    ProcessAttack("kill_every_process", "import os\nos.kill(-1, 9)"),
    ProcessAttack("sigstop_parent", "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"),
    ProcessAttack("inet_socket", "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)"),
    ProcessAttack("ptrace_parent", "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                  "if libc.ptrace(16, os.getppid(), 0, 0) != 0:\n"
                  "    raise PermissionError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))"),
]


@pytest.mark.parametrize("case", PROCESS_ATTACKS, ids=[c.id for c in PROCESS_ATTACKS])
def test_processes_and_signals_are_refused(isolated: Attacker, case: ProcessAttack) -> None:
    require(isolated.baseline(), "seccomp")  # without it these would really fork or kill: never run them
    before = proc_count()
    run = isolated(with_cells_at(AT, case.source.format(grader_pid=os.getpid())))
    assert_survived(run)
    assert_only_cell_failed(run, AT, "error", case.error)
    assert_full_points_except(run)
    assert proc_count() < before + 500, "the number of processes on the machine exploded"


def test_killing_the_zygote_when_subprocesses_are_allowed(mlp: Assignment) -> None:
    limits = FAST.override(max_processes=4)
    with Zygote() as z:
        run = grade_with(z, mlp, with_cells_at(AT, "import os\nos.kill(os.getppid(), 9)"), limits)
    assert_survived(run, limits)
    assert all(c["status"] == "ok" for i, c in run.cells.items() if i != AT), run.execution["cells"]
    assert_full_points_except(run)
    assert not any("code None" in str(e) for e in run.execution["events"]), run.execution["events"]


# --------------------------------------------------------------------------- grader-provided callables

STORE_F = """
_seen = []
def _evaluate_earlier_ones():
    for g in _seen:
        try:
            g(np.zeros(3))
        except Exception as exc:
            _errors.append(str(exc))
_errors = []
def numerical_gradient(f, x, h=1e-5):
    _evaluate_earlier_ones()
    _seen.append(f)
    return _correct(f, x, h)
"""


def test_grader_callable_kept_and_called_later_is_refused_harmlessly(attack: Attacker) -> None:
    correct = solution_cells()[7].replace("def numerical_gradient(", "def _correct(")
    run = attack(solution_cells()[:7] + [correct, STORE_F])
    assert_survived(run)
    assert_full_points_except(run)


def test_grader_callable_called_later_without_catching_fails_clearly(attack: Attacker) -> None:
    correct = solution_cells()[7].replace("def numerical_gradient(", "def _correct(")
    run = attack(solution_cells()[:7] + [correct, STORE_F.replace("        try:\n            g(np.zeros(3))\n"
                                                                 "        except Exception as exc:\n"
                                                                 "            _errors.append(str(exc))\n",
                                                                 "        g(np.zeros(3))\n")])
    assert_survived(run)
    assert_full_points_except(run, "numerical_gradient")
    for test in run.failed("numerical_gradient"):
        assert re.match(r"^numerical_gradient\(\) raised RuntimeError: f must be called with a float array of "
                        r"shape .*, like x; got ndarray of shape \(3,\)", test["message"]), test["message"]


def test_grader_callable_called_from_a_background_thread(attack: Attacker) -> None:
    """A thread keeps evaluating a kept callable between and during calls: the protocol gets confused for
    numerical_gradient only; the grader survives in bounded time and the other problems keep full points."""
    correct = solution_cells()[7].replace("def numerical_gradient(", "def _correct(")
    thread = ("_kept = []\ndef numerical_gradient(f, x, h=1e-5):\n    _kept.append(f)\n    return _correct(f, x, h)\n"
              "import threading\ndef _pester():\n    import time\n    while not _kept:\n        time.sleep(0.001)\n"
              "    while True:\n        try:\n            _kept[0](np.zeros(3))\n        except Exception:\n"
              "            pass\nthreading.Thread(target=_pester, daemon=True).start()")
    run = attack(solution_cells()[:7] + [correct, thread])
    assert_survived(run)
    assert set(lost(run.report)) <= {"numerical_gradient"}


# --------------------------------------------------------------------------- grader bugs found by this corpus


def test_a_thread_that_prints_forever(attack: Attacker) -> None:
    spam = ("import threading\ndef spam():\n    while True:\n        print(*['spam'] * 50)\n"
            "threading.Thread(target=spam, daemon=True).start()")
    cells = solution_cells()
    run = attack(cells[:AT] + [spam] + ["pass"] * 100 + cells[AT:])
    assert_survived(run)
    assert not run.execution["crashes"], run.execution["events"]
    assert_full_points_except(run)


CLOSE_ALL_FDS = "import os\nfor fd in range(3, 256):\n    try:\n        os.close(fd)\n    except OSError:\n        pass"


@pytest.mark.parametrize(("source", "says"), [(GARBAGE_FRAMES, r"invalid|channel|frame|protocol"),
                                               (CLOSE_ALL_FDS, r"channel|closed|pipe|descriptor")],
                         ids=["garbage_frames", "close_all_fds"])
def test_a_cell_that_breaks_the_channel_is_reported_as_such(attack: Attacker, source: str, says: str) -> None:
    run = attack(with_cells_at(AT, source))
    assert_survived(run)
    assert_full_points_except(run)
    error = run.cells[AT]["error"] or ""
    assert run.cells[AT]["status"] in ("crashed", "error")
    assert "cell 3" in error and "CPU budget" not in error and "out of memory" not in error, error
    assert re.search(says, error), error


@pytest.mark.parametrize("body", ["v = 0.5\nfor _ in range(40):\n    v = [v]\nreturn v", "return [0.5] * 20000"],
                         ids=["nested_40_deep", "list_of_20000_floats"])
def test_values_past_the_protocol_limits_are_refused_clearly(attack: Attacker, body: str) -> None:
    run = attack(solution_cells(replace={"sigmoid": function_source("sigmoid", body)}))
    assert_survived(run)
    assert_full_points_except(run, "sigmoid")
    assert run.wrong("sigmoid")
    for test in run.wrong("sigmoid"):
        assert "too large to grade: at most 10000 values and 16 levels of nesting" in test["message"], test["message"]


def test_a_function_that_kills_the_worker_is_not_retried_forever(attack: Attacker) -> None:
    run = attack(solution_cells(replace={"softmax": function_source("softmax", "import os\nos._exit(7)")}))
    assert_survived(run)
    assert_full_points_except(run, "softmax")
    deaths = [t for t in run.failed("softmax") if t["message"].startswith("the notebook's process exited with code 7")]
    assert 1 <= len(deaths) <= FAST.failures_per_function, [t["message"] for t in run.failed("softmax")]


def test_call_timeouts_and_restarts_are_in_the_execution_record(attack: Attacker) -> None:
    limits = FAST.override(call_timeout=1.0, failures_per_function=1)
    run = attack(solution_cells(replace={"sigmoid": function_source("sigmoid", "while True:\n    pass")}), limits)
    assert_survived(run, limits)
    assert run.execution["restarts"] >= 1
    assert any("sigmoid()" in event and "timed out" in event for event in run.execution["events"])


def test_memory_held_by_a_cell_does_not_poison_the_cells_after_it(zygote: Zygote) -> None:
    cells = with_cells_at(AT, "chunks = []\nwhile True:\n    chunks.append(np.ones(10**5))")
    started = time.monotonic()
    with Sandbox(zygote, list(enumerate(cells)), SMALL_MEMORY) as sandbox:
        record = sandbox.execute()
    assert time.monotonic() - started < wall_bound(SMALL_MEMORY)
    bomb = record.cells[AT]
    assert bomb.status in ("error", "crashed") and "emory" in (bomb.error or ""), bomb
    assert [c.status for c in record.cells if c.index != AT] == ["ok"] * (len(cells) - 1), \
        [(c.index, c.status, c.error) for c in record.cells]


def test_lone_surrogates_in_outputs_and_errors_do_not_break_the_reports(attack: Attacker, tmp_path: Path) -> None:
    raising = function_source("sigmoid", "raise ValueError('bad \\udcff byte')")
    cells = solution_cells(replace={"sigmoid": raising})
    run = attack(cells[:AT] + ["print('\\ud800 lone surrogate')\nraise ValueError('bad \\udcff byte')"] + cells[AT:])
    assert_survived(run)
    assert_full_points_except(run, "sigmoid")
    assert run.cells[AT]["status"] == "error"
    assert run.executed is not None
    files.write_atomic(tmp_path / "report.json", files.dumps_json(run.report))
    files.write_atomic(tmp_path / "executed.ipynb", notebook_dumps(run.executed))
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["score"] == run.report["score"]
