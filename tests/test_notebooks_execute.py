"""The master notebooks run top to bottom in a real Jupyter kernel, self-checks included; the
student templates run to their stubs and fail nowhere else."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grader.assignment import load

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path, allow_errors: bool) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook


def errors(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [
        (c.get("id", "?"), o["ename"])
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def stream_text(notebook: nbformat.NotebookNode, cell_id: str) -> str:
    cell = next(c for c in notebook.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "mlp-sigmoid"])
def test_master_notebook_runs_top_to_bottom_and_passes_its_self_checks(name: str) -> None:
    notebook = execute(load(name).master, allow_errors=False)
    assert errors(notebook) == []
    for function in ("softmax", "mlp_loss", "numerical_gradient"):
        assert "visible checks passed" in stream_text(notebook, f"{function}-check")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "mlp-sigmoid"])
def test_student_template_runs_to_its_stubs_without_any_other_error(name: str) -> None:
    assignment = load(name)
    notebook = execute(ROOT / "student_template" / assignment.template, allow_errors=True)
    assert {ename for _, ename in errors(notebook)} <= {"NotImplementedError"}
    assert "not implemented yet" in stream_text(notebook, "softmax-check")
