"""Student notebooks: read and validate them with one-line errors, pick the cells to execute,
detect edits to locked cells, and build the executed notebook for instructors.

Reading uses the json module and a structural check of nbformat 4 (nbformat's full
JSON-schema validation costs more than a second of imports, and a student waiting for
feedback should not pay it); writing the executed notebook goes through nbformat.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
SELF_CHECK_TAG = "jitgrade-selfcheck"
HIDDEN_TAG = "jitgrade-hidden"
LOCKED_KEY = "locked"
# A line a self-check cell may consist of: the import of the self-check helper, making a checker,
# or a check call (check("softmax"), grader.check("softmax"), check_all()).
_SELF_CHECK_LINE = re.compile(
    r"""^\s*(?:from\s+grader\.selfcheck\s+import\s+[\w\s,()]+|import\s+grader\.selfcheck(?:\s+as\s+\w+)?"""
    r"""|\w+\s*=\s*(?:grader\.selfcheck\.)?checker\(\s*['"][\w-]+['"]\s*\)"""
    r"""|(?:\w+\.)?check(?:_all)?\(\s*(?:['"][\w-]+['"])?\s*\))\s*(?:#.*)?$"""
)


class NotebookError(ValueError):
    """The file cannot be graded as a notebook; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class Notebook:
    """A parsed nbformat-4 notebook and the hash of the bytes it came from."""

    data: dict[str, Any]
    sha256: str
    name: str

    @property
    def cells(self) -> list[dict[str, Any]]:
        """All cells, in order."""
        return self.data["cells"]

    @property
    def assignment(self) -> str | None:
        """The assignment named in the notebook's metadata (written by ``jitgrade assign``)."""
        meta = self.data.get("metadata", {}).get("jitgrade", {})
        name = meta.get("assignment") if isinstance(meta, dict) else None
        return name if isinstance(name, str) else None

    def code_cells(self) -> list[tuple[int, str]]:
        """(index, source) of every code cell to execute when grading: self-check cells are left out."""
        return [(i, source(c)) for i, c in enumerate(self.cells) if c["cell_type"] == "code" and not is_self_check(c)]


def source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def tags(cell: dict[str, Any]) -> list[str]:
    """The cell's tags."""
    found = cell.get("metadata", {}).get("tags", [])
    return [t for t in found if isinstance(t, str)] if isinstance(found, list) else []


def is_self_check(cell: dict[str, Any]) -> bool:
    """A self-check cell: tagged so, or made only of self-check lines (students copy them around)."""
    if SELF_CHECK_TAG in tags(cell):
        return True
    lines = [line for line in source(cell).splitlines() if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and all(_SELF_CHECK_LINE.match(line) for line in lines)


def loads(data: bytes, name: str) -> Notebook:
    """Parse and validate notebook bytes (name is only used in messages)."""
    if not data.strip():
        raise NotebookError(f"{name} is empty: expected a Jupyter notebook (.ipynb)")
    try:
        nb = json.loads(data)
    except UnicodeDecodeError:
        raise NotebookError(f"{name} is not a notebook: it is not text (expected a .ipynb JSON file)") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{name} is not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno} "
            "(was it saved completely? re-download or re-save it from Jupyter)"
        ) from None
    if not isinstance(nb, dict) or "cells" not in nb and "worksheets" not in nb:
        raise NotebookError(f"{name} is JSON but not a Jupyter notebook (no 'cells')")
    version = nb.get("nbformat")
    if version != 4:
        raise NotebookError(
            f"{name} is an nbformat {version} notebook; only nbformat 4 is supported: "
            "open it in a current Jupyter and save it again"
        )
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotebookError(f"{name}: 'cells' must be a list")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"{name}: cell {i} is malformed (no valid cell_type)")
        src = cell.get("source", "")
        if not isinstance(src, str) and not (isinstance(src, list) and all(isinstance(s, str) for s in src)):
            raise NotebookError(f"{name}: cell {i} has a malformed source")
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookError(f"{name}: cell {i} has malformed metadata")
    if not isinstance(nb.get("metadata", {}), dict):
        raise NotebookError(f"{name}: malformed notebook metadata")
    return Notebook(nb, hashlib.sha256(data).hexdigest(), name)


def read(path: str | Path) -> Notebook:
    """Read and validate a notebook file."""
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path}: no such file")
    if path.is_dir():
        raise NotebookError(f"{path} is a folder, not a notebook")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(
            f"{path} is {size / 2**20:.0f} MiB; notebooks over {MAX_NOTEBOOK_BYTES // 2**20} MiB "
            "are not graded (clear the outputs and save again)"
        )
    return loads(path.read_bytes(), str(path))


def cell_key(cell: dict[str, Any]) -> str | None:
    """The id of a locked cell, as written by ``jitgrade assign``."""
    meta = cell.get("metadata", {}).get("jitgrade", {})
    if isinstance(meta, dict) and meta.get(LOCKED_KEY) and isinstance(meta.get("id"), str):
        return meta["id"]
    return None


def edited_locked_cells(notebook: Notebook, template: Notebook) -> list[str]:
    """Ids of locked template cells that the submission deleted or changed."""
    submitted = {cell_key(c): source(c).rstrip() for c in notebook.cells if cell_key(c)}
    edited = []
    for cell in template.cells:
        key = cell_key(cell)
        if key is not None and submitted.get(key) != source(cell).rstrip():  # Jupyter may drop a final newline
            edited.append(key)
    return edited


def executed(notebook: Notebook, records: list[Any]) -> dict[str, Any]:
    """A copy of the notebook with the outputs and execution counts of the graded run."""
    nb = copy.deepcopy(notebook.data)
    by_index = {r.index: r for r in records}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        record = by_index.get(i)
        cell["outputs"] = list(record.outputs) if record is not None else []
        cell["execution_count"] = record.execution_count if record is not None else None
        if record is not None and record.status in ("timeout", "crashed", "not_run") and record.error:
            cell["outputs"].append({"output_type": "stream", "name": "stderr", "text": f"[jitgrade] {record.error}\n"})
    return nb


def dumps(data: dict[str, Any]) -> str:
    """A notebook dict as nbformat JSON text (nbformat's writer when the notebook is valid, plain JSON if not)."""
    import nbformat

    node = nbformat.from_dict(data)
    try:
        nbformat.validate(node)
        return str(nbformat.writes(node))
    except nbformat.ValidationError:
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
