"""Output hygiene: no value a student controls (numbers, strings, nesting, file names) makes a report
writer raise, reaches a terminal as an escape sequence, breaks an XML parser or a spreadsheet, or
gives two submissions one folder or one row.

Every writer renders the same hostile reports: JSON, Gradescope results, terminal text, HTML (feedback
and summary), JUnit XML, the CSV gradebook and GitHub annotations. None may raise; the JSON must be
strict JSON (no NaN token) that follows the schema; no output may hold a raw control character (tab
and newline aside), a bidi control or a lone surrogate; the JUnit XML must parse.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jsonschema
import numpy as np
import pytest

from grader import cli, executors
from grader import notebook as nb
from grader.assignment import Assignment
from grader.checks.base import Outcome
from grader.reports import files, github, gradebook, gradescope, html, junit, text
from grader.reports.sanitize import MAX_TEXT
from grader.reports.views import student_view
from grader.scoring import SubmissionResult
from grader.submissions import discover

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "grader" / "reports" / "report.schema.json").read_text())
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
# What must never come out raw: C0 controls but tab and newline, DEL, C1 controls (CSI is 0x9b),
# bidi overrides and isolates, lone surrogates, and the characters XML 1.0 forbids.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                    "\ud800-\udfff\ufffe\uffff]")
ESCAPES = (
    "\x1b[2J\x1b[31mred\x1b[0m \x1b]8;;https://evil.invalid\x1b\\link\x1b]8;;\x1b\\ \x1b]0;title\x07 \x9b2J \x07"
    "\x00\x08\x7f\x85 \rAll tests passed! Score: 100/100\n\u202eevil\u202c \u2066x\u2069 \ud800 \udcff \ufffe"
    " [link=https://evil.invalid]markup[/link] [bold red]x[/]"
)
FILE_NAME = "\x1b[2J\x1b[31mred\x1b]0;title\x07\u202eevil\x9b1m\r"  # what a file name can hold (no slash)


def deep_list(levels: int) -> list[Any]:
    """A list nested `levels` deep, built without recursion."""
    top: list[Any] = []
    inner = top
    for _ in range(levels):
        inner.append([])
        inner = inner[0]
    return top


PAYLOADS = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "numpy-float32-nan": np.float32("nan"),
    "numpy-float16-inf": np.float16("inf"),
    "numpy-float64--inf": np.float64("-inf"),
    "numpy-int-and-bool": [np.int64(7), np.bool_(True), np.uint8(3)],
    "numpy-array": np.array([[1.0, np.nan], [np.inf, -np.inf]], dtype=np.float32),
    "nested-nonfinite": {"a": [{"b": (float("nan"), np.float32("inf"))}], "c": {"d": {"e": [float("-inf")]}}},
    "huge-int": 10**5000,
    "odd-keys": {(1, 2): 1, float("nan"): 2, None: 3},
    "deep": deep_list(5000),
    "escapes": ESCAPES,
    "huge-string": ESCAPES + "x" * 5_000_000,
}


def strict_json(data: str) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (which are not JSON)."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(data, parse_constant=refuse)


def hostile_report(assignment: Assignment, payload: Any, error: str | None = None) -> dict[str, Any]:
    """A canonical report whose every student-controlled place holds hostile values."""
    words = payload if isinstance(payload, str) else ESCAPES
    scalar = payload if isinstance(payload, (float, np.floating)) else 1.0  # where the schema wants a number
    outcomes = [
        Outcome(id=f"{p.name}.values", problem=p.name, check="values", title=f"{p.name}: values {words}",
                status="failed", score=0.0, max_score=p.points, hidden=hidden, message=words, diagnosis=words,
                details={"analytic": payload, "numerical": payload, words: payload, "abs_error": [[0.5, -1.0]],
                         "worst_index": [0, 1], "expected_at_worst": scalar, "found_at_worst": scalar})
        for p in assignment.problems
        for hidden in (False, True)
    ]
    result = SubmissionResult(words, f"{words}.ipynb", None, assignment, 3, outcomes=[] if error else outcomes,
                              error=error)
    report = result.to_dict()
    report["execution"] = {
        "cells": [{"index": 0, "status": "error", "error": words, "execution_count": 1, "seconds": 0.1}],
        "cells_run": 1, "cell_errors": 1, "timeouts": [], "crashes": [], "restarts": 0, "events": [words],
        "isolation": {"level": "process", "layers": {"seccomp": True}}, "import_attempts": [words],
        "edited_locked_cells": [words], "seconds": 0.1,
    }
    return report


def assert_clean(output: str, where: str) -> None:
    found = UNSAFE.search(output)
    context = output[max(0, found.start() - 40):][:80] if found else ""
    assert found is None, f"{where}: raw {found.group()!r} at {found.start()}: {context!r}"


def every_rendering(report: dict[str, Any], assignment: Assignment) -> dict[str, str]:
    """Each writer's text for a report (every writer must be here)."""
    stream = io.StringIO()
    text.render(report, stream=stream, width=100)
    return {
        "json": files.dumps_json(report),
        "gradescope": files.dumps_json(gradescope.results(report)),
        "text": stream.getvalue(),
        "feedback": html.feedback(report),
        "feedback-instructor": html.feedback(report, instructor=True),
        "summary": html.summary([report], "mlp"),
        "junit": junit.render(report),
        "gradebook": gradebook.render(assignment, [report]),
        "github": github.render(report, f"submissions/{FILE_NAME}.ipynb"),
        "student-view": json.dumps(student_view(report), ensure_ascii=False, allow_nan=False),  # pytest plugin
    }


# --------------------------------------------------------------------------- every writer, every payload


@pytest.mark.parametrize("error", [None, ESCAPES], ids=["graded", "not-graded"])
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_no_writer_raises_or_lets_a_control_character_through(mlp: Assignment, name: str, error: str | None) -> None:
    report = hostile_report(mlp, PAYLOADS[name], error)
    rendered = every_rendering(report, mlp)
    for where, output in rendered.items():
        assert_clean(output, where)
    canonical = strict_json(rendered["json"])
    jsonschema.validate(canonical, SCHEMA)
    strict_json(rendered["gradescope"])
    ET.fromstring(rendered["junit"].encode())  # well-formed XML 1.0
    rows = list(csv.DictReader(io.StringIO(rendered["gradebook"])))
    assert len(rows) == 1 and float(rows[0]["score"]) == canonical["score"]
    assert all(line.startswith("::") for line in rendered["github"].splitlines())
    assert all(len(t["output"]) <= 2 * MAX_TEXT for t in canonical["tests"])  # message, then the diagnosis


def test_sanitized_reports_render_the_same_when_read_back(mlp: Assignment) -> None:
    """A report read back from disk (a resumed batch) is sanitized again: nothing changes."""
    once = files.dumps_json(hostile_report(mlp, PAYLOADS["huge-string"]))
    assert files.dumps_json(json.loads(once)) == once


def test_non_finite_numbers_are_the_strings_the_schema_names(mlp: Assignment) -> None:
    report = strict_json(files.dumps_json(hostile_report(mlp, PAYLOADS["nested-nonfinite"])))
    details = report["tests"][0]["details"]
    assert details["analytic"] == {"a": [{"b": ["nan", "inf"]}], "c": {"d": {"e": ["-inf"]}}}
    report = strict_json(files.dumps_json(hostile_report(mlp, PAYLOADS["numpy-array"])))
    assert report["tests"][0]["details"]["numerical"] == [[1.0, "nan"], ["inf", "-inf"]]
    report = strict_json(files.dumps_json(hostile_report(mlp, PAYLOADS["numpy-float16-inf"])))
    assert report["tests"][0]["details"]["found_at_worst"] == "inf"
    assert "nan" in SCHEMA["properties"]["tests"]["items"]["properties"]["details"]["description"]


def test_control_characters_are_shown_not_obeyed(mlp: Assignment) -> None:
    stream = io.StringIO()
    text.render(hostile_report(mlp, ESCAPES), stream=stream, width=400)
    said = stream.getvalue()
    assert "\\x1b[2J" in said and "\\u202e" in said and "\\x0dAll tests passed" in said
    assert "[link=https://evil.invalid]markup[/link]" in said  # rich markup from a student is text


def test_junit_keeps_what_the_student_printed_as_visible_text(mlp: Assignment) -> None:
    root = ET.fromstring(junit.render(hostile_report(mlp, ESCAPES)).encode())
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and "\\x1b[31mred" in (failure.text or "")


# --------------------------------------------------------------------------- the CSV gradebook


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t"])
def test_gradebook_cells_that_start_like_formulas_are_neutralized(mlp: Assignment, start: str) -> None:
    formula = f"{start}HYPERLINK(\"https://evil.invalid\",\"click\")"
    report = hostile_report(mlp, 0.0, error=formula)
    report["provenance"]["student"] = formula
    report["provenance"]["notebook"] = formula
    row = next(csv.DictReader(io.StringIO(gradebook.render(mlp, [report]))))
    assert row["student"] == row["notebook"] == row["error"] == "'" + formula
    assert row["score"] == "0" and row["max_score"] == "100"


def test_gradebook_numbers_stay_numbers_negative_ones_included() -> None:
    assert [gradebook.cell(v) for v in (-3.5, -2, 0.0, 12.25, 7, None)] == ["-3.5", "-2", "0", "12.25", "7", ""]
    assert gradebook.cell("-12.5") == "-12.5" and gradebook.cell("+1e3") == "+1e3"  # a number written as text
    assert gradebook.cell("-1+cmd|' /C calc'!A0") == "'-1+cmd|' /C calc'!A0"


# --------------------------------------------------------------------------- notebooks: reading and writing


def notebook_bytes(cell_metadata: Any = None, source: str = "x = 1") -> bytes:
    cell = {"cell_type": "code", "id": "c0", "metadata": cell_metadata or {}, "outputs": [], "execution_count": None,
            "source": source}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


@pytest.mark.parametrize("data, depth", [
    (b"[" * 100_000 + b"]" * 100_000, 100_000),
    (b"{\"a\": " * 50_000 + b"1" + b"}" * 50_000, 50_000),
    (b"[" * 100_000, 100_000),  # not even closed
    (notebook_bytes({"deep": deep_list(150)}), 155),
])
def test_deeply_nested_notebook_json_cannot_be_graded_and_says_why(data: bytes, depth: int) -> None:
    with pytest.raises(nb.NotebookError) as caught:
        nb.loads(data, "deep.ipynb")
    assert str(caught.value).startswith(
        f"deep.ipynb cannot be graded: the notebook's JSON is nested {depth} levels deep (at most {nb.MAX_JSON_DEPTH})")


def test_brackets_inside_strings_are_not_nesting() -> None:
    source = "[" * 5000 + "{\\\"" + "\\\\" + "\""
    notebook = nb.loads(notebook_bytes(source=source), "ok.ipynb")
    assert nb.source(notebook.cells[0]) == source


def test_notebook_bytes_over_the_size_limit_are_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb, "MAX_NOTEBOOK_BYTES", 1000)
    with pytest.raises(nb.NotebookError, match="notebooks over 0 MiB are not graded"):
        nb.loads(notebook_bytes(source="x" * 2000), "big.ipynb")


def test_the_executed_notebook_is_written_whatever_the_outputs_hold() -> None:
    notebook = json.loads(notebook_bytes())
    notebook["cells"][0]["outputs"] = [
        {"output_type": "display_data", "data": {"text/plain": ESCAPES, "application/json": {"x": float("nan")}},
         "metadata": {"deep": deep_list(600)}},
        {"output_type": "stream", "name": "stdout", "text": "\ud800" + "y" * 1000},
        {"output_type": "execute_result", "execution_count": 1, "data": {"text/plain": "1"},
         "metadata": {"inf": float("inf"), "np": np.float32("-inf")}},
    ]
    written = nb.dumps(notebook)
    back = nb.loads(written.encode(), "executed.ipynb")  # strict enough: bounded depth, parseable
    strict_json(written)
    outputs = back.cells[0]["outputs"]
    assert "".join(outputs[0]["data"]["text/plain"]).startswith("\x1b[2J")  # colors kept for Jupyter
    assert outputs[0]["data"]["application/json"] == {"x": "nan"} and outputs[2]["metadata"]["np"] == "-inf"
    assert "".join(outputs[1]["text"]).startswith("\ufffd")


# --------------------------------------------------------------------------- student ids, folders and rows


def write_class(root: Path, layout: dict[str, str]) -> None:
    """Files of a class: relative path -> which example notebook."""
    for relative, example in layout.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / f"{example}.ipynb", root / relative)


@pytest.mark.parametrize("order", list(itertools.permutations(["first", "second", "third"])))
def test_student_ids_are_unique_whatever_the_order_of_the_inputs(tmp_path: Path, order: tuple[str, ...]) -> None:
    write_class(tmp_path / "first", {"alice/mlp.ipynb": "heidi", "alice.ipynb": "alice", "alice-2.ipynb": "heidi"})
    write_class(tmp_path / "second", {"Alice.ipynb": "bob", "alice-3.ipynb": "carol"})
    write_class(tmp_path / "third", {"ALICE-2/mlp.ipynb": "dave", "gradebook.csv.ipynb": "erin"})
    inputs = [tmp_path / name for name in order]
    found = discover(inputs, preferred="mlp.ipynb")
    assert found == discover(inputs, preferred="mlp.ipynb")  # deterministic
    ids = [s.student.lower() for s in found]
    assert len(ids) == len(set(ids)) == 7, ids
    assert len({s.path for s in found}) == 7
    first_alice = next(s for s in found if s.path == tmp_path / order[0] / ("alice/mlp.ipynb" if order[0] == "first"
                                                                            else "Alice.ipynb" if order[0] == "second"
                                                                            else "ALICE-2/mlp.ipynb"))
    assert first_alice.student.lower() in ("alice", "alice-2")  # the first input keeps its own id


def test_student_ids_from_file_names_carry_no_escape_sequences(tmp_path: Path) -> None:
    write_class(tmp_path, {"\x1b[2J\u202eevil.ipynb": "alice", "a\nb/mlp.ipynb": "bob"})
    ids = sorted(s.student for s in discover([tmp_path]))
    assert ids == ["\\x1b[2J\\u202eevil", "a\\nb"]


def test_student_folders_never_take_or_shadow_a_batch_file() -> None:
    students = [*cli.BATCH_FILES, "GRADEBOOK.CSV", "Summary.HTML", "jitgrade-run.json-2", "gradebook.csv-2"]
    folders = cli._folders(students)
    taken = [f.lower() for f in folders.values()]
    assert len(set(taken)) == len(students)
    assert not set(taken) & {name.lower() for name in cli.BATCH_FILES}
    assert not any(f.startswith(".") for f in taken)


def test_each_row_comes_from_its_own_submissions_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """alice/, alice.ipynb and alice-2.ipynb: three rows, each with its own notebook's error (no sandbox needed)."""
    folder, out = tmp_path / "class", tmp_path / "out"
    (folder / "alice").mkdir(parents=True)
    (folder / "alice" / "mlp.ipynb").write_text("{not json")
    (folder / "alice.ipynb").write_bytes(b"")
    (folder / "alice-2.ipynb").write_text('{"hello": "world"}')
    assert cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out), "--no-feedback"]) == 0
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO((out / "gradebook.csv").read_text()))}
    assert {s: (r["notebook"], r["error"].split(" ")[1:4]) for s, r in rows.items()} == {
        "alice": ("mlp.ipynb", ["is", "not", "a"]),
        "alice-2": ("alice-2.ipynb", ["is", "JSON", "but"]),
        "alice-3": ("alice.ipynb", ["is", "empty:", "expected"]),
    }
    for student in rows:
        assert json.loads((out / student / "report.json").read_text())["provenance"]["student"] == student


# --------------------------------------------------------------------------- the command's own lines


def test_progress_and_error_lines_carry_no_escape_sequences(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    (folder / f"{FILE_NAME}.ipynb").write_bytes(b"")
    (folder / "\u202eevil\x07.ipynb").write_text("{\"cells\": [], \"nbformat\": 3}")
    (folder / "\x1b]0;owned\x07").mkdir()
    assert cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert said.err.count("\n[") == 3  # a progress line each
    assert_clean(said.out, "stdout")
    assert_clean(said.err, "stderr")
    assert cli.main(["check", str(folder / f"{FILE_NAME}.ipynb"), "-a", "mlp"]) == cli.EXIT_UNGRADABLE
    said = capsys.readouterr()
    assert "empty" in said.err
    assert_clean(said.out, "check stdout")
    assert_clean(said.err, "check stderr")
    assert cli.main(["grade", str(tmp_path / "\x1b[2Jmissing"), "-a", "mlp", "--out", str(out)]) == 2
    said = capsys.readouterr()
    assert "no such file or folder" in said.err
    assert_clean(said.err, "usage error")


# --------------------------------------------------------------------------- one submission's failure is its row


def test_a_failure_while_writing_a_report_becomes_that_submissions_report(mlp: Assignment,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(html, "feedback", broken)
    settings = executors.Settings(str(mlp.directory / "assignment.toml"), mlp.limits, 3)
    output = executors.grade_one(settings, executors.Task("k", "student", "s.ipynb", None, "no notebook"))
    report = json.loads(output.report)
    assert output.key == "k" and output.feedback is None
    assert report["error"].startswith("internal grader error") and "renderer bug" in report["error"]


def test_a_folder_that_cannot_be_written_becomes_that_students_row(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    (folder / "alice.ipynb").write_bytes(b"")
    (folder / "bob.ipynb").write_bytes(b"")
    (out / "alice").write_text("a file where alice's folder should go")
    assert cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out)]) == 0
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO((out / "gradebook.csv").read_text()))}
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"]["error"].startswith("the reports of this submission could not be written")
    assert "empty" in rows["bob"]["error"]


def test_the_summary_links_each_student_to_their_own_folder(mlp: Assignment) -> None:
    reports = [hostile_report(mlp, 0.0, error="could not be read") for _ in range(2)]
    reports[0]["provenance"]["student"], reports[1]["provenance"]["student"] = "Ann Lee", "ann lee"
    page = html.summary(reports, "mlp", cli._folders(["Ann Lee", "ann lee"]))
    assert 'href="Ann_Lee/feedback.html"' in page and 'href="ann_lee-2/feedback.html"' in page


def test_an_output_folder_inside_the_class_folder_is_not_a_submission(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "alice.ipynb").write_bytes(b"")
    for _ in range(2):  # the second run finds the first one's reports inside the class folder
        assert cli.main(["grade", str(folder), "-a", "mlp", "--out", str(folder / "reports"), "--force"]) == 0
        rows = list(csv.DictReader(io.StringIO((folder / "reports" / "gradebook.csv").read_text())))
        assert [r["student"] for r in rows] == ["alice"]
