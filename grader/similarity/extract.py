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
import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader import notebook as nb
from grader import pyfiles
from grader.assignment import Assignment, template_roots
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


class _Budget:
    """The characters of code one document may still take (MAX_CODE_CHARS in all)."""

    def __init__(self) -> None:
        self.left = MAX_CODE_CHARS

    def take(self, code: str) -> str:
        taken = code[: max(self.left, 0)]
        self.left -= len(taken)
        return taken


def _piece(name: str, code: str, stub: str | None, template: Mapping[str, str], budget: _Budget) -> Piece | None:
    """The student's part of one cell or file: none when it is the template's own (unchanged) or empty."""
    code = _without_hidden(code)
    if stub is not None and code.rstrip() == stub.rstrip() or not code.strip():
        return None
    code = budget.take(code)
    return Piece(name, code, boilerplate_lines(code, template)) if code else None


def notebook_pieces(notebook: nb.Notebook, template: Mapping[str, str]) -> list[Piece]:
    """The student's own code in a notebook: cells that differ from the template, without its lines."""
    budget = _Budget()
    pieces = []
    for index, cell in enumerate(notebook.cells):
        if cell["cell_type"] != "code" or nb.is_self_check(cell) or nb.HIDDEN_TAG in nb.tags(cell):
            continue
        key = cell_key(cell)
        stub = template.get(key) if key is not None else None
        name = f"cell {index}" + (f" ({key})" if stub is not None else "")
        pieces.append(_piece(name, nb.source(cell), stub, template, budget))
    return [p for p in pieces if p is not None]


def file_pieces(files: Mapping[str, bytes], template: Mapping[str, str]) -> list[Piece]:
    """The student's own code in .py files, by name: files that differ from the template's file of the
    same name, without the template's lines."""
    budget = _Budget()
    pieces = [_piece(name, data.decode("utf-8", errors="replace"), template.get(name), template, budget)
              for name, data in sorted(files.items())]
    return [p for p in pieces if p is not None]


def boilerplate_lines(code: str, template: Mapping[str, str]) -> frozenset[int]:
    """The numbers of the code's lines identical (but for indentation) to a line of the template's code:
    a stub's signature, docstring and placeholder, wherever the student moved them."""
    stubs = _template_lines(tuple(template.values()))
    return frozenset(n for n, line in enumerate(code.split("\n"), 1) if line.strip() in stubs)


@functools.lru_cache(maxsize=8)
def _template_lines(cells: tuple[str, ...]) -> frozenset[str]:
    return frozenset(line.strip() for cell in cells for line in cell.split("\n")) - {""}


def _packed(data: bytes) -> dict[str, bytes]:
    """The .py files of a submission the grader packed (grader.pyfiles.pack: bounded, made by the grader)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.endswith(".py")}


def pieces_of(name: str, data: bytes, template: Mapping[str, str], packed: bool = False) -> list[Piece]:
    """The student's own code in a submission's bytes (name: the file's, for its format and messages): a
    notebook's cells, a Python file, or the .py files of a `packed` submission (the grader's pack of a
    .py assignment's file, folder or zip); the template's lines are boilerplate in all of them."""
    if packed:
        return file_pieces(_packed(data), template)
    if name.endswith(".ipynb"):
        return notebook_pieces(nb.loads(data, name), template)
    if name.endswith(".py"):
        return file_pieces({name: data}, template)
    raise nb.NotebookError(UNSUPPORTED.format(name=name))


def pieces(path: Path, assignment: Assignment) -> list[Piece]:
    """The student's own code in a submission (a notebook, or a .py assignment's file, folder or zip, read as
    grading reads it: pyfiles.reads_python)."""
    template = template_of(assignment)
    if pyfiles.reads_python(path, assignment):
        return pieces_of(path.name, pyfiles.pack(pyfiles.files_of(path, pyfiles.layout(assignment).files)),
                         template, packed=True)
    return pieces_of(path.name, path.read_bytes(), template)


def template_of(assignment: Assignment) -> dict[str, str]:
    """The assignment's template code by key: a notebook's code cells (the student notebook, else made from
    the master), and a .py assignment's starter files by name (made from the master, else the starter folder);
    an assignment accepting either has both."""
    from grader import assign

    cells: dict[str, str] = {}
    if not pyfiles.is_python(assignment):
        path = assignment.template_path
        if path is not None:
            cells = template_cells(nb.read(path))
        else:
            text = assign.student_notebook(assignment.require_master())
            cells = template_cells(nb.loads(text.encode("utf-8"), assignment.template))
    if not pyfiles.accepts_python(assignment):
        return cells
    files = pyfiles.layout(assignment).files
    if assignment.master.is_dir():
        return {f: assign.starter_source((assignment.master / f).read_text(encoding="utf-8")) for f in files
                if (assignment.master / f).is_file()}
    if assignment.master.is_file():
        return {**cells, **assign.starter_module(assignment.master, assignment)}
    starters = [root / pyfiles.starter_folder(assignment) for root in template_roots()]
    return {**cells, **{f: (folder / f).read_text(encoding="utf-8") for folder in reversed(starters) for f in files
                        if (folder / f).is_file()}}
