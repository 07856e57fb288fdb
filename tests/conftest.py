"""Shared fixtures: one sandbox zygote per test process, notebooks built from code, grading helpers."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# One conftest for the whole suite (a second one would shadow `from conftest import ...`); it also
# makes the reference tests' NumPy oracle (tests/reference/numpy_mlp.py) importable.
for _path in (ROOT, ROOT / "tests" / "reference"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from grader.assignment import Assignment, load  # noqa: E402
from grader.grading import Grader  # noqa: E402
from grader.notebook import loads  # noqa: E402
from grader.sandbox.limits import Limits  # noqa: E402
from grader.sandbox.zygote import Zygote  # noqa: E402

FUNCTIONS = (
    "softmax",
    "sigmoid",
    "sigmoid_grad",
    "softmax_cross_entropy",
    "mlp_forward",
    "mlp_loss",
    "numerical_gradient",
)
# Short limits keep the attack notebooks fast; real assignments use 30 s per cell, 10 s per call.
FAST = Limits(cell_timeout=3.0, call_timeout=2.0, notebook_timeout=30.0, max_restarts=5)
_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN)[ \t]*\n", re.MULTILINE)


def notebook_json(cells: Sequence[str], assignment: str | None = "mlp") -> dict[str, Any]:
    """An nbformat-4 notebook of code cells (strings starting with '# md' become markdown)."""
    out = []
    for i, src in enumerate(cells):
        kind = "markdown" if src.startswith("# md") else "code"
        cell: dict[str, Any] = {"cell_type": kind, "id": f"c{i}", "metadata": {}, "source": src}
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        out.append(cell)
    meta: dict[str, Any] = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if assignment:
        meta["jitgrade"] = {"assignment": assignment, "version": "1.0.0"}
    return {"cells": out, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def write_notebook(path: Path, cells: Sequence[str], assignment: str | None = "mlp") -> Path:
    """Write a notebook of these cells to `path`."""
    path.write_text(json.dumps(notebook_json(cells, assignment), indent=1))
    return path


def solution_sources(assignment: str = "mlp", units: Sequence[str] = FUNCTIONS) -> dict[str, str]:
    """The master solution of each student unit, function or class (cell id '<unit>-solution'), markers removed;
    `units` are the ones the master must have (mlp's functions by default)."""
    nb = json.loads((ROOT / "assignments" / assignment / "solution.ipynb").read_text())
    sources = {}
    for cell in nb["cells"]:
        cid = cell.get("id", "")
        if cid.endswith("-solution"):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            sources[cid.removesuffix("-solution")] = _MARKER.sub("", src)
    assert set(sources) == set(units), sorted(sources)
    return sources


def solution_cells(assignment: str = "mlp", replace: Mapping[str, str] | None = None) -> list[str]:
    """Cells of a complete solution: imports, then each function (optionally replaced by other code)."""
    sources = {**solution_sources(assignment), **(replace or {})}
    return ["import numpy as np"] + [sources[f] for f in FUNCTIONS]


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One sandbox fork server for the whole test process."""
    z = Zygote()
    z.start()
    yield z
    z.close()


@pytest.fixture(scope="session")
def process_zygote() -> Iterator[Zygote]:
    """A fork server without bubblewrap (isolation='process'), for tests that run under both levels."""
    z = Zygote(isolation="process")
    z.start()
    yield z
    z.close()


@pytest.fixture(scope="session")
def mlp() -> Assignment:
    return load("mlp")


@pytest.fixture(scope="session")
def mlp_sigmoid() -> Assignment:
    return load("mlp-sigmoid")


GradeFn = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def grade(zygote: Zygote) -> GradeFn:
    """grade(cells, assignment='mlp', seed=7, limits=FAST) -> the canonical report dict."""

    def run(
        cells: Sequence[str],
        assignment: str = "mlp",
        seed: int | None = 7,
        limits: Limits = FAST,
        name: str = "student",
    ) -> dict[str, Any]:
        a = load(assignment)
        notebook = loads(json.dumps(notebook_json(cells, assignment)).encode(), f"{name}.ipynb")
        grader = Grader(a, limits, seed, include_hidden=seed is not None, zygote=zygote)
        return grader.grade(notebook, name).result.to_dict()

    return run


def by_id(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's tests keyed by check id."""
    return {t["id"]: t for t in report["tests"]}


def lost(report: Mapping[str, Any]) -> dict[str, float]:
    """Points lost per problem (only problems that lost points)."""
    return {p["name"]: p["max_score"] - p["score"] for p in report["problems"] if p["score"] < p["max_score"] - 1e-9}
