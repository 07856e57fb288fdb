"""Root causes first: a cell that fails (syntax newer than this Python, a missing module, a NameError, an
exception halfway) leads every report with its cell, line and error, and each check of a function that cell
should have defined names it; a cell that runs out of time or memory keeps its definitions (replayed alone)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import FAST, GradeFn, solution_sources

from grader import notebook as nb
from grader.grading import MAX_ROOT_CAUSES, error_line
from grader.reports import html, text
from grader.sandbox.session import CellRecord

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "grader" / "reports" / "report.schema.json").read_text())
SOURCES = solution_sources()
# Syntax this interpreter does not know: PEP 695 generics before Python 3.12 (a Python 2 print statement after).
NEWER_SYNTAX = "def first[T](items: list[T]) -> T:" if sys.version_info < (3, 12) else "print 'loading'"
CELL_1 = f"cell 1 (`{NEWER_SYNTAX}`)"  # how messages name the cell with that syntax: by its first line


def cells_with(replace: dict[str, str], first: str = "import numpy as np", drop: tuple[str, ...] = ()) -> list[str]:
    """A full solution, cell 0 holding `first`, with some function cells replaced (keys: the function they held)
    and some left out (`drop`)."""
    return [first] + [replace.get(name, SOURCES[name]) for name in SOURCES if name not in drop]


def causes(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {cause["cell"]: cause for cause in report["root_causes"]}


def checks_of(report: dict[str, Any], function: str) -> list[dict[str, Any]]:
    return [t for t in report["tests"] if t["problem"] == function]


@pytest.fixture(scope="module")
def broken(grade: GradeFn) -> dict[str, Any]:
    """Cell 1: a syntax error (softmax, sigmoid); cell 2: a missing module (sigmoid_grad); cell 3: a NameError of
    softmax (softmax_cross_entropy); cell 4: mlp_forward, then a ZeroDivisionError, then mlp_loss."""
    return grade(
        [
            "import numpy as np",
            f"{NEWER_SYNTAX}\n    return items[0]\n\n{SOURCES['softmax']}\n{SOURCES['sigmoid']}",
            f"import numpy as np\nimport torchvision_not_installed\n{SOURCES['sigmoid_grad']}",
            f"check = softmax(np.zeros(3))\n{SOURCES['softmax_cross_entropy']}",
            f"{SOURCES['mlp_forward']}\nratio = 1 / 0\n{SOURCES['mlp_loss']}",
            SOURCES["numerical_gradient"],
        ]
    )


def test_a_syntax_error_is_the_cause_of_every_function_its_cell_defines(broken: dict[str, Any]) -> None:
    cause = causes(broken)[1]
    assert (cause["line"], cause["ename"], cause["functions"]) == (1, "SyntaxError", ["softmax", "sigmoid"])
    assert "ipython-input" not in cause["evalue"]
    for function in ("softmax", "sigmoid"):
        for t in checks_of(broken, function):
            assert t["cause"] == 1, t
            assert t["message"].startswith(
                f"{function}() is not defined because {CELL_1} failed: SyntaxError at line 1"
            )


def test_a_missing_module_is_named_with_its_line(broken: dict[str, Any]) -> None:
    cause = causes(broken)[2]
    assert (cause["line"], cause["ename"], cause["functions"]) == (2, "ModuleNotFoundError", ["sigmoid_grad"])
    assert "torchvision_not_installed" in cause["message"]
    assert {t["cause"] for t in checks_of(broken, "sigmoid_grad")} == {2}


def test_a_name_error_of_a_function_an_earlier_failed_cell_should_define_points_back_to_it(
    broken: dict[str, Any],
) -> None:
    cause = causes(broken)[3]
    assert (cause["line"], cause["ename"], cause["caused_by"]) == (1, "NameError", 1)
    assert "softmax was to be defined by cell 1, which failed first" in cause["message"]
    t = checks_of(broken, "softmax_cross_entropy")[0]
    assert t["cause"] == 3 and f"{CELL_1} failed: SyntaxError" in t["message"], t["message"]


def test_functions_defined_before_the_failing_line_are_not_blamed(broken: dict[str, Any]) -> None:
    cause = causes(broken)[4]
    assert (cause["line"], cause["ename"], cause["functions"]) == (
        SOURCES["mlp_forward"].count("\n") + 2,
        "ZeroDivisionError",
        ["mlp_loss"],
    )
    assert all(t["status"] == "passed" for t in checks_of(broken, "mlp_forward"))
    assert {t["cause"] for t in checks_of(broken, "mlp_loss")} == {4}


def test_a_call_of_a_function_a_failed_cell_left_undefined_names_that_cell(grade: GradeFn) -> None:
    report = grade(
        cells_with({"softmax_cross_entropy": "import torchvision_not_installed\n" + SOURCES["softmax_cross_entropy"]})
    )
    cell = list(SOURCES).index("softmax_cross_entropy") + 1
    loss = checks_of(report, "mlp_loss")[0]
    assert loss["cause"] == cell and "softmax_cross_entropy() is not defined because cell" in loss["message"]


def test_every_view_leads_with_the_failed_cells(broken: dict[str, Any]) -> None:
    jsonschema.validate(broken, SCHEMA)
    assert broken["output"].startswith(f"C{CELL_1[1:]} failed: SyntaxError at line 1")
    stream = io.StringIO()
    text.render(broken, stream, width=200)
    terminal = stream.getvalue()
    first = terminal.index(f"{CELL_1} failed: SyntaxError at line 1")
    assert first < terminal.index("Problem") < terminal.index("What to fix")
    assert terminal.count(f"softmax() is not defined because {CELL_1} failed") == 1  # then: "the same as above"
    page = html.feedback(broken)
    assert page.index('id="root-causes"') < page.index("<table")
    assert "cell 3 (`check = softmax(np.zeros(3))`) failed: NameError at line 1" in page


def test_a_cell_that_runs_out_of_time_keeps_the_definitions_before_its_loop(grade: GradeFn) -> None:
    slow = (
        f"import functools\n{SOURCES['softmax']}\n{SOURCES['sigmoid']}\n"
        f"@functools.lru_cache(maxsize=None)\n{SOURCES['sigmoid_grad']}\nwhile True:\n    pass\n"
    )
    report = grade(cells_with({"softmax": slow}, drop=("sigmoid", "sigmoid_grad")))
    cause = causes(report)[1]
    assert (cause["ename"], cause["kept"], cause["functions"]) == ("timeout", ["softmax", "sigmoid"], ["sigmoid_grad"])
    assert cause["message"].startswith(
        f"cell 1 (`import functools`) ran out of time ({FAST.cell_timeout:g} s) at its top level; "
        "kept the definitions of softmax, sigmoid from it; the cell's other statements were skipped; "
        "lost sigmoid_grad(): decorators"
    ), cause["message"]
    assert all(t["status"] == "passed" for f in ("softmax", "sigmoid") for t in checks_of(report, f))
    assert {t["cause"] for t in checks_of(report, "sigmoid_grad")} == {1}


def test_a_cell_that_runs_out_of_memory_keeps_its_definitions(grade: GradeFn) -> None:
    hungry = f"{SOURCES['softmax']}\nfilled = np.ones(1 << 30 >> 3)\nfilled += 1\n"
    report = grade(cells_with({"softmax": hungry}), limits=FAST.override(memory_mb=256))
    cause = causes(report)[1]
    assert cause["kept"] == ["softmax"] and cause["functions"] == [], cause
    assert "ran out of memory (256 MiB)" in cause["message"] or "stopped the notebook's process" in cause["message"]
    assert all(t["status"] == "passed" for t in checks_of(report, "softmax") if t["visibility"] == "visible")


def test_definitions_whose_replay_fails_too_are_skipped_and_said_lost(grade: GradeFn) -> None:
    first = "import numpy as np\nimport time\ndef slow(function):\n    time.sleep(60)\n    return function"
    report = grade(cells_with({"softmax": "@slow\n" + SOURCES["softmax"]}, first=first))
    cause = causes(report)[1]
    assert (cause["kept"], cause["functions"]) == ([], ["softmax"])
    assert "its definitions, replayed on their own, failed too" in cause["message"]
    assert all(t["status"] == "passed" for t in checks_of(report, "sigmoid"))


@pytest.mark.parametrize(
    ("source", "replayed", "dropped"),
    [
        ("def f(x, y=1, *, z=-2.5) -> np.ndarray:\n    return x", ("f",), ()),
        ("@functools.lru_cache(maxsize=None)\ndef f(x):\n    return x", (), ("f",)),
        ("def f(x=np.zeros(10**9)):\n    return x", (), ("f",)),
        ("def f(x: heavy()):\n    return x", (), ("f",)),
        (
            "class Net(nn.Module):\n    '''a net'''\n    size = 3\n    def forward(self, x):\n        return x",
            ("Net",),
            (),
        ),
        ("class Net:\n    table = build_table()", (), ("Net",)),
        ("%matplotlib inline\ndef f(x):\n    return x\nwhile True:\n    pass", ("f",), ()),
    ],
)
def test_only_definitions_that_run_no_code_are_replayed(source: str, replayed: tuple, dropped: tuple) -> None:
    found = nb.cell_definitions(source)
    assert (found.replayed, found.dropped) == (replayed, dropped)
    assert (found.replay is not None) == bool(replayed)
    assert "while" not in (found.replay or "") and "%" not in (found.replay or "")


def test_a_cell_that_does_not_parse_still_says_what_it_defines() -> None:
    found = nb.cell_definitions(
        f"{NEWER_SYNTAX}\n    return items[0]\n\nclass Layer:\n    pass\ndef softmax(x):\n    ..."
    )
    assert list(found.names) == ["first", "Layer", "softmax"] and found.replay is None


def test_a_forged_line_number_is_not_believed() -> None:
    """The traceback comes from the student's process: a line number of thousands of digits is no line."""
    forged = {
        "output_type": "error",
        "ename": "NameError",
        "evalue": "x",
        "traceback": ["Cell In[1], line " + "9" * 5000],
    }
    assert error_line(CellRecord(0, "error", [forged], "NameError: x")) is None


def test_student_text_in_a_root_cause_reaches_no_terminal_raw(grade: GradeFn) -> None:
    hostile = "# \x1b[2J\u202e cleared\nimport torchvision_not_installed\n" + SOURCES["softmax"]
    report = grade(cells_with({"softmax": hostile}), seed=None)
    stream = io.StringIO()
    text.render(report, stream, width=200)
    for view in (stream.getvalue(), html.feedback(report)):
        assert "\x1b" not in view and "\u202e" not in view
        assert "cell 1 (`#" in view


def test_the_class_summary_names_students_whose_failed_cell_left_functions_undefined(broken: dict[str, Any]) -> None:
    assert "cell 1 failed (SyntaxError), leaving softmax, sigmoid undefined" in html.troubles(broken)
    assert "cell 1 failed (SyntaxError), leaving softmax, sigmoid undefined" in html.summary([broken], "class")


def test_a_notebook_of_many_failing_cells_reports_a_bounded_number_of_them(grade: GradeFn) -> None:
    report = grade(["1 / 0"] * (MAX_ROOT_CAUSES + 30) + cells_with({}), seed=None)
    assert len(report["root_causes"]) == MAX_ROOT_CAUSES
    assert f"(the first {MAX_ROOT_CAUSES}, " in SCHEMA["properties"]["root_causes"]["description"]
    assert report["score"] == report["max_score"]


@pytest.mark.parametrize(
    "source",
    [
        "-" * 100_000 + "1",
        "1+" * 100_000 + "1",
        "def f(x=" + "-" * 10_000 + "1): pass",
        "def f(x: " + "a|" * 20_000 + "b): pass",
    ],
    ids=["unary", "binary", "default", "annotation"],
)
def test_a_cell_nested_past_the_parsers_limits_is_read_without_crashing_the_grader(source: str) -> None:
    found = nb.cell_definitions(source + "\ndef softmax(x):\n    return x")
    assert "softmax" in found.names and found.replay is None


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="PEP 695 generics parse from Python 3.12 on")
def test_syntax_of_a_newer_python_is_named_with_its_version(broken: dict[str, Any]) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (
        f"failed: SyntaxError at line 1: expected '('; line 1 uses type parameters, as in def f[T](x), new in Python "
        f"3.12; notebooks are graded with Python {running}: write it without; it should have defined softmax()"
    ) in causes(broken)[1]["message"]
    alias = nb.cell_definitions("import numpy as np\ntype Vector = list[float]\n").newer_python
    assert alias is not None and alias.startswith("line 2 uses type aliases")
    assert nb.cell_definitions("def f(:\n    pass").newer_python is None  # a plain syntax error is only that


def test_a_replay_keeps_continuation_lines_that_start_like_magics() -> None:
    """black puts a binary operator at the start of a continuation line (`!= b.shape`, `% b`): such a line is
    no shell escape or magic, and dropping it would replay a function that computes something else."""
    source = (
        "%matplotlib inline\n"
        "def same(a, b):\n    return (\n        a.shape\n        != b.shape\n    )\n"
        "def total(a, b):\n    return (a\n        % b)\n"
    )
    found = nb.cell_definitions(source)
    assert found.replayed == ("same", "total")
    namespace: dict[str, Any] = {}
    exec(found.replay or "", namespace)  # noqa: S102 - the test's own source
    assert namespace["same"](np.zeros(2), np.zeros(3)) is True
    assert namespace["total"](7, 4) == 3
    assert nb.cell_definitions("!pip install tqdm\ndef f(x):\n    return x\n").replayed == ("f",)  # escapes still go
