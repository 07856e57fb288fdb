"""Locked cells: edited, deleted and reordered ones are reported apart, and a notebook not made from the
course template (a student's own, or one rebuilt from .py files) gets one calm note instead of an alarm per
locked cell."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import jsonschema
import pytest
from conftest import FAST, ROOT, notebook_json, solution_cells

from grader import notebook as nb
from grader.assignment import load
from grader.grading import Grader
from grader.reports import html, text
from grader.reports.views import NOT_FROM_TEMPLATE
from grader.sandbox.zygote import Zygote

SCHEMA = json.loads((ROOT / "grader" / "reports" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def template() -> nb.Notebook:
    path = load("mlp").template_path
    assert path is not None
    return nb.read(path)


def variant(template: nb.Notebook, change: Any) -> nb.Notebook:
    """The template after `change(cells)` edits a copy of its cells in place."""
    data = copy.deepcopy(template.data)
    change(data["cells"])
    return nb.loads(json.dumps(data).encode(), "student.ipynb")


def at(cells: list[dict[str, Any]], key: str) -> int:
    return next(i for i, cell in enumerate(cells) if nb.cell_key(cell) == key)


def edit_imports(cells: list[dict[str, Any]]) -> None:
    cells[at(cells, "imports")]["source"] = "import numpy as np\nnp.allclose = lambda *a, **k: True"


def delete_notation(cells: list[dict[str, Any]]) -> None:
    del cells[at(cells, "notation")]


def move_notation_last(cells: list[dict[str, Any]]) -> None:
    cells.append(cells.pop(at(cells, "notation")))


def test_the_template_itself_is_untouched(template: nb.Notebook) -> None:
    assert nb.tamper(template, template) == nb.Tamper(from_template=True)


def test_a_dropped_final_newline_is_not_an_edit(template: nb.Notebook) -> None:
    def drop_newlines(cells: list[dict[str, Any]]) -> None:
        for cell in cells:
            cell["source"] = nb.source(cell).rstrip("\n")

    assert nb.tamper(variant(template, drop_newlines), template) == nb.Tamper(from_template=True)


@pytest.mark.parametrize(
    ("change", "edited", "missing", "reordered"),
    [
        (edit_imports, ["imports"], [], []),
        (delete_notation, [], ["notation"], []),
        (move_notation_last, [], [], ["notation"]),
    ],
)
def test_edited_missing_and_reordered_cells_are_told_apart(
    template: nb.Notebook, change: Any, edited: list[str], missing: list[str], reordered: list[str]
) -> None:
    found = nb.tamper(variant(template, change), template)
    assert (found.from_template, found.edited, found.missing, found.reordered) == (True, edited, missing, reordered)


def test_a_students_own_notebook_is_not_from_the_template(template: nb.Notebook) -> None:
    own = nb.loads(json.dumps(notebook_json(solution_cells())).encode(), "own.ipynb")
    assert nb.tamper(own, template) == nb.Tamper(from_template=False)


def test_a_notebook_rebuilt_from_py_files_is_not_from_the_template(template: nb.Notebook) -> None:
    """Converting to .py and back (jupytext, copy and paste) keeps the sources and loses the cells' metadata."""

    def rebuild(cells: list[dict[str, Any]]) -> None:
        for cell in cells:
            cell["metadata"] = {}

    assert nb.tamper(variant(template, rebuild), template) == nb.Tamper(from_template=False)


def test_a_notebook_with_almost_none_of_the_locked_cells_is_not_from_the_template(template: nb.Notebook) -> None:
    def keep_imports_only(cells: list[dict[str, Any]]) -> None:
        cells[:] = [cell for cell in cells if nb.cell_key(cell) in (None, "imports")]

    assert nb.tamper(variant(template, keep_imports_only), template) == nb.Tamper(from_template=False)


@pytest.fixture(scope="module")
def grader(zygote: Zygote) -> Grader:
    return Grader(load("mlp"), FAST, include_hidden=False, zygote=zygote)


def views(report: dict[str, Any]) -> tuple[str, str]:
    """The terminal and HTML renderings of a report."""
    stream = io.StringIO()
    text.render(report, stream, width=200)
    return stream.getvalue(), html.feedback(report)


def test_a_foreign_notebook_gets_one_calm_note(grader: Grader) -> None:
    own = nb.loads(json.dumps(notebook_json(solution_cells())).encode(), "own.ipynb")
    report = grader.grade(own, "own").result.to_dict()
    jsonschema.validate(report, SCHEMA)
    assert report["tamper"] == {"from_template": False, "edited": [], "missing": [], "reordered": []}
    assert report["execution"]["edited_locked_cells"] == []
    for view in views(report):
        assert view.count(NOT_FROM_TEMPLATE) == 1
        assert "edited" not in view.lower()


def test_a_template_notebook_reports_each_kind_of_change(grader: Grader, template: nb.Notebook) -> None:
    def tamper_all(cells: list[dict[str, Any]]) -> None:
        edit_imports(cells)
        delete_notation(cells)
        cells.append(cells.pop(at(cells, "intro")))

    report = grader.grade(variant(template, tamper_all), "s").result.to_dict()
    jsonschema.validate(report, SCHEMA)
    assert report["tamper"] == {
        "from_template": True,
        "edited": ["imports"],
        "missing": ["notation"],
        "reordered": ["intro"],
    }
    assert report["execution"]["edited_locked_cells"] == ["imports"]
    for view in views(report):
        assert "read-only cells whose text was changed: imports" in view
        assert "read-only cells that were deleted: notation" in view
        assert "read-only cells moved out of the template&#39;s order: intro" in view or (
            "read-only cells moved out of the template's order: intro" in view
        )
        assert NOT_FROM_TEMPLATE not in view
