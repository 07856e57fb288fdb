"""What a student wrote, as (name, code) pieces: the code compared for similarity, never the template's.

For a notebook, a code cell at a template cell's key (the ``jitgrade`` id that ``jitgrade assign``
gives every cell; the master's cells carry the same ids as their nbformat ids) counts only when its
source differs from the template's, and in it the lines identical to one of the template cell's
lines (the stub, the docstring, the signature) are boilerplate; a cell the student added counts
whole. Self-check cells, hidden cells and hidden regions never count. A Python file (a known public
solution, a past offering's script) counts whole, the template's lines left out. The format of a submission is
decided in :func:`pieces_of` alone, by the file's suffix: a new format is one branch there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader import notebook as nb
from grader.assignment import Assignment
from grader.similarity.fingerprint import Piece

MAX_CODE_CHARS = 512 * 1024  # of one document's code: more is cut (no homework is longer; a hostile file may be)
SUFFIXES = (".ipynb", ".py")  # what is compared: notebooks and Python files
UNSUPPORTED = "{name}: expected a notebook (.ipynb) or a Python file (.py); other files are not compared for similarity"
HIDDEN_REGION = "### BEGIN HIDDEN"


def cell_key(cell: Mapping[str, Any]) -> str | None:
    """The template's key of a cell: its jitgrade id (every cell of a template has one), else its nbformat id."""
    meta = cell.get("metadata", {}).get("jitgrade", {})
    if isinstance(meta, dict) and isinstance(meta.get("id"), str):
        return str(meta["id"])
    key = cell.get("id")
    return key if isinstance(key, str) else None


def template_cells(template: nb.Notebook) -> dict[str, str]:
    """The template's code cells by key (what a submission's cells are compared with)."""
    return {key: nb.source(c) for c in template.cells if c["cell_type"] == "code" and (key := cell_key(c)) is not None}


def template_pieces(template: Mapping[str, str]) -> list[Piece]:
    """The template's code itself, as pieces: every fingerprint of it is boilerplate."""
    return [Piece(key, code) for key, code in template.items()]


def _without_hidden(code: str) -> str:
    if HIDDEN_REGION not in code:
        return code
    from grader.assign import HIDDEN  # nbconvert's import cost only for the master, which has hidden regions

    return HIDDEN.sub("", code)


def notebook_pieces(notebook: nb.Notebook, template: Mapping[str, str]) -> list[Piece]:
    """The student's own code in a notebook: cells that differ from the template, without its lines."""
    pieces: list[Piece] = []
    budget = MAX_CODE_CHARS
    for index, cell in enumerate(notebook.cells):
        if cell["cell_type"] != "code" or nb.is_self_check(cell) or nb.HIDDEN_TAG in nb.tags(cell):
            continue
        code = _without_hidden(nb.source(cell))
        key = cell_key(cell)
        stub = template.get(key) if key is not None else None
        if stub is not None and code.rstrip() == stub.rstrip() or not code.strip() or budget <= 0:
            continue
        code = code[:budget]
        budget -= len(code)
        name = f"cell {index}" + (f" ({key})" if stub is not None else "")
        pieces.append(Piece(name, code, boilerplate_lines(code, template)))
    return pieces


def boilerplate_lines(code: str, template: Mapping[str, str]) -> frozenset[int]:
    """The numbers of the code's lines identical (but for indentation) to a line of the template's code:
    a stub's signature, docstring and placeholder, wherever the student moved them."""
    stubs = _template_lines(tuple(template.values()))
    return frozenset(n for n, line in enumerate(code.splitlines(), 1) if line.strip() in stubs)


@functools.lru_cache(maxsize=8)
def _template_lines(cells: tuple[str, ...]) -> frozenset[str]:
    return frozenset(line.strip() for cell in cells for line in cell.splitlines()) - {""}


def pieces_of(name: str, data: bytes, template: Mapping[str, str]) -> list[Piece]:
    """The student's own code in a submission file's bytes (name: the file's name, for its format and
    messages): a notebook's cells, or a Python file whole; the template's lines are boilerplate in both."""
    if name.endswith(".ipynb"):
        return notebook_pieces(nb.loads(data, name), template)
    if name.endswith(".py"):
        code = data.decode("utf-8", errors="replace")[:MAX_CODE_CHARS]
        return [Piece(name, code, boilerplate_lines(code, template))]
    raise nb.NotebookError(UNSUPPORTED.format(name=name))


def pieces(path: Path, assignment: Assignment) -> list[Piece]:
    """The student's own code in a submission file of an assignment (see :func:`pieces_of`)."""
    return pieces_of(path.name, path.read_bytes(), template_of(assignment))


def template_of(assignment: Assignment) -> dict[str, str]:
    """The assignment's template code cells by key: the student notebook, else made from the master."""
    path = assignment.template_path
    if path is not None:
        return template_cells(nb.read(path))
    from grader.assign import student_notebook

    text = student_notebook(assignment.require_master())
    return template_cells(nb.loads(text.encode("utf-8"), assignment.template))
