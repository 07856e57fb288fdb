"""``jitgrade assign``: make the student notebook from a master notebook, with nbconvert preprocessors.

- solution regions (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) become a stub that raises
  NotImplementedError, at the region's indentation;
- hidden material goes: cells tagged ``jitgrade-hidden`` and ``### BEGIN HIDDEN`` ... ``### END HIDDEN`` regions;
- outputs and execution counts are cleared, metadata is reduced to what students need;
- every cell without a solution region is locked: Jupyter will not let it be edited or deleted,
  and its id and checksum let the grader detect edits made anyway (as nbgrader does).

The output is deterministic: the same master always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor

from grader.notebook import HIDDEN_TAG, tags

STUB = 'raise NotImplementedError("Replace this line with your solution")'
_REGION = r"^(?P<indent>[ \t]*)### BEGIN {kind}[ \t]*\n(?:.*\n)*?[ \t]*### END {kind}[ \t]*(?:\n|$)"
SOLUTION = re.compile(_REGION.format(kind="SOLUTION"), re.MULTILINE)
HIDDEN = re.compile(_REGION.format(kind="HIDDEN"), re.MULTILINE)
EDITABLE_TAG = "jitgrade-editable"
KEPT_NOTEBOOK_METADATA = ("kernelspec", "jitgrade")


class AssignError(ValueError):
    """The master notebook cannot be turned into a student notebook (one-line reason)."""


def checksum(source: str) -> str:
    """The checksum of a locked cell's source."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _source(cell: Any) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


class RemoveHidden(Preprocessor):
    """Drop hidden cells and hidden regions."""

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        nb.cells = [c for c in nb.cells if HIDDEN_TAG not in tags(c)]
        for cell in nb.cells:
            source = _source(cell)
            stripped = HIDDEN.sub("", source)
            cell.source = stripped if source.endswith("\n") else stripped.rstrip("\n")
        return nb, resources


class StripSolutions(Preprocessor):
    """Replace solution regions with stubs; lock every other cell (id, checksum, not editable)."""

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        for index, cell in enumerate(nb.cells):
            source = _source(cell)
            cell_id = cell.get("id") or f"cell-{index}"
            meta = {k: v for k, v in cell.metadata.items() if k == "tags"}
            if SOLUTION.search(source):
                cell.source = SOLUTION.sub(lambda m: f"{m.group('indent')}{STUB}\n", source)
                meta["jitgrade"] = {"id": cell_id, "solution": True}
            elif EDITABLE_TAG not in tags(cell):
                meta["jitgrade"] = {"id": cell_id, "locked": True, "checksum": checksum(source)}
                meta["editable"] = False
                meta["deletable"] = False
            cell.metadata = nbformat.from_dict(meta)
            cell.id = cell_id
        nb.metadata = nbformat.from_dict({k: nb.metadata[k] for k in KEPT_NOTEBOOK_METADATA if k in nb.metadata})
        return nb, resources


def master_of(master_or_assignment: str | Path) -> Path:
    """The master notebook given as a notebook path or as an assignment (name or folder), whose
    master is private: present in a course repository or source checkout, never in an installed package."""
    from grader.assignment import AssignmentError, load

    path = Path(master_or_assignment)
    if path.suffix == ".ipynb":
        return path
    try:
        return load(master_or_assignment).require_master()
    except AssignmentError as exc:
        raise AssignError(str(exc)) from None


def student_notebook(master: Path) -> str:
    """The student notebook's text for a master notebook."""
    try:
        nb = nbformat.read(master, as_version=4)
    except (OSError, ValueError) as exc:
        raise AssignError(f"{master}: cannot read the master notebook: {exc}") from None
    if not any(SOLUTION.search(_source(c)) for c in nb.cells):
        raise AssignError(f"{master}: no '### BEGIN SOLUTION' / '### END SOLUTION' region: nothing for students to do")
    resources: dict[str, Any] = {}
    for step in (RemoveHidden(), ClearOutputPreprocessor(), StripSolutions()):
        nb, resources = step.preprocess(nb, resources)
    nbformat.validate(nb)
    return str(nbformat.writes(nb))


def write_student_notebook(master: Path, out: Path, name: str | None = None) -> Path:
    """Write the student notebook into `out`; the name defaults to the assignment's template name."""
    text = student_notebook(master)
    if name is None:
        name = _template_name(master)
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    target.write_text(text, encoding="utf-8")
    return target


def _template_name(master: Path) -> str:
    """The template file name from the assignment next to the master, else the master's name."""
    from grader.assignment import DEFINITION, AssignmentError, load

    if (master.parent / DEFINITION).is_file():
        try:
            return load(master.parent).template
        except AssignmentError:
            pass
    return master.name
