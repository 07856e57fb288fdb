"""Student notebooks: read and validate them with one-line errors, pick the cells to execute,
detect edits to locked cells, and build the executed notebook for instructors.

Reading uses the json module and a structural check of nbformat 4 (nbformat's full
JSON-schema validation costs more than a second of imports, and a student waiting for
feedback should not pay it); size and nesting are bounded before parsing, so no file makes
the parser recurse without bound. Writing the executed notebook goes through nbformat, after
the sanitizer has cut what student code put there too deep, too long or not finite.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 100  # nesting of a notebook's JSON (Jupyter's own structure needs about 10 levels)
TOO_LARGE = "{name} is {size:.0f} MiB; notebooks over {limit} MiB are not graded (clear the outputs and save again)"
TOO_DEEP = (
    "{name} cannot be graded: the notebook's JSON is nested {depth} levels deep (at most {limit}); "
    "clear the outputs and metadata that hold the nesting, or save the notebook again from Jupyter"
)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # 2 per opening bracket, 0 per closing one
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


def nesting(data: bytes) -> int:
    """How deeply JSON bytes nest arrays and objects (brackets inside strings do not count), in linear time."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS).translate(_DEPTH_STEP)
    # depth after k brackets = 2 * (openings so far) - k
    return max(map(operator.sub, itertools.accumulate(brackets), itertools.count(1)), default=0)


def loads(data: bytes, name: str) -> Notebook:
    """Parse and validate notebook bytes (name is only used in messages)."""
    if not data.strip():
        raise NotebookError(f"{name} is empty: expected a Jupyter notebook (.ipynb)")
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookError(TOO_LARGE.format(name=name, size=len(data) / 2**20, limit=MAX_NOTEBOOK_BYTES // 2**20))
    depth = nesting(data)
    if depth > MAX_JSON_DEPTH:
        raise NotebookError(TOO_DEEP.format(name=name, depth=depth, limit=MAX_JSON_DEPTH))
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
        raise NotebookError(TOO_LARGE.format(name=path, size=size / 2**20, limit=MAX_NOTEBOOK_BYTES // 2**20))
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
    """A notebook dict as nbformat JSON text, never raising: sanitized (depth cut at MAX_JSON_DEPTH, so
    the file reads back; non-finite numbers as strings; control characters kept, JSON escapes them),
    then nbformat's writer when the result is a valid notebook, plain JSON if not."""
    import nbformat

    from grader.reports import sanitize

    clean = sanitize.data(data, depth=MAX_JSON_DEPTH - 1, max_text=MAX_NOTEBOOK_BYTES, controls=True)
    try:
        node = nbformat.from_dict(clean)
        nbformat.validate(node)
        return str(nbformat.writes(node))
    except Exception:  # noqa: BLE001 - any complaint of nbformat's about student-made outputs: write plain JSON
        return json.dumps(clean, indent=1, ensure_ascii=False) + "\n"
