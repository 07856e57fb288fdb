"""`jitgrade assign`: the student notebook made from the master, and the committed templates."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from grader import notebook as nb
from grader.assign import STUB, AssignError, checksum, master_of, student_notebook, write_student_notebook
from grader.assignment import load

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ["mlp", "mlp-sigmoid"]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_committed_templates_are_up_to_date(name: str) -> None:
    assignment = load(name)
    template = ROOT / "student_template" / assignment.template
    assert template.read_text() == student_notebook(assignment.master), (
        f"{template} is stale: run `jitgrade assign {assignment.master.relative_to(ROOT)} --out student_template`"
    )


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assign_is_deterministic(name: str, tmp_path: Path) -> None:
    master = load(name).master
    first = write_student_notebook(master, tmp_path / "a").read_bytes()
    second = write_student_notebook(master, tmp_path / "b").read_bytes()
    assert first == second


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_template_has_stubs_no_solutions_no_hidden_material_no_outputs(name: str) -> None:
    text = student_notebook(load(name).master)
    template = nbformat.reads(text, as_version=4)
    nbformat.validate(template)
    sources = [nb.source(c) for c in template.cells]
    joined = "\n".join(sources)
    assert "BEGIN SOLUTION" not in joined and "END SOLUTION" not in joined
    assert "BEGIN HIDDEN" not in joined and "Instructor notes" not in joined
    assert all(nb.HIDDEN_TAG not in nb.tags(c) for c in template.cells)
    assert joined.count(STUB) == 7  # one stub per student function
    assert all(
        not c.get("outputs") and c.get("execution_count") is None for c in template.cells if c.cell_type == "code"
    )
    assert set(template.metadata) <= {"kernelspec", "jitgrade"}
    assert template.metadata["jitgrade"]["assignment"] == name


def test_master_solution_code_is_absent_from_the_template() -> None:
    master = json.loads(load("mlp").master.read_text())
    solution = next(c for c in master["cells"] if c.get("id") == "mlp_loss-solution")
    body = "".join(solution["source"]).split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
    template = student_notebook(load("mlp").master)
    for line in body.strip().splitlines():
        if len(line.strip()) > 12:
            assert line.strip() not in template


def test_every_cell_but_the_solutions_is_locked_with_its_checksum() -> None:
    template = nb.loads(student_notebook(load("mlp").master).encode(), "mlp.ipynb")
    for cell in template.cells:
        meta = cell["metadata"].get("jitgrade", {})
        if meta.get("solution"):
            assert "editable" not in cell["metadata"]
        else:
            assert meta["locked"] and meta["checksum"] == checksum(nb.source(cell))
            assert cell["metadata"]["editable"] is False and cell["metadata"]["deletable"] is False


def test_edits_to_locked_cells_are_detected_and_solution_edits_are_not() -> None:
    template = nb.loads(student_notebook(load("mlp").master).encode(), "mlp.ipynb")
    data = json.loads(json.dumps(template.data))
    for cell in data["cells"]:
        if cell["metadata"].get("jitgrade", {}).get("solution"):
            cell["source"] = "def softmax(x):\n    return x\n"
        if cell.get("id") == "imports":
            cell["source"] = "import numpy as np\nnp.allclose = lambda *a, **k: True"
    data["cells"] = [c for c in data["cells"] if c.get("id") != "notation"]
    tamper = nb.tamper(nb.loads(json.dumps(data).encode(), "s.ipynb"), template)
    assert (tamper.edited, tamper.missing, tamper.reordered) == (["imports"], ["notation"], [])


def test_a_master_without_solution_regions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), path)
    with pytest.raises(AssignError, match="BEGIN SOLUTION"):
        student_notebook(path)


def test_the_master_is_found_from_a_notebook_an_assignment_name_or_its_folder() -> None:
    master = load("mlp").master
    assert master_of(master) == master
    assert master_of("mlp") == master
    assert master_of(ROOT / "assignments" / "mlp") == master


def test_an_assignment_without_its_master_says_that_solutions_never_ship(tmp_path: Path) -> None:
    public = tmp_path / "mlp"  # what an installed package holds of an assignment: its definition only
    public.mkdir()
    (public / "assignment.toml").write_bytes((ROOT / "assignments" / "mlp" / "assignment.toml").read_bytes())
    with pytest.raises(AssignError, match=r"not installed with jitgrade .* -a path/to/mlp"):
        master_of(public)
