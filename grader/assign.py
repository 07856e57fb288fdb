"""``jitgrade assign``: make the student notebook from a master notebook, with nbconvert preprocessors (or,
for an assignment whose students hand in .py files, the starter files from a master folder of them).

- solution regions (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) become a stub that raises
  NotImplementedError, at the region's indentation;
- hidden material goes: cells tagged ``jitgrade-hidden`` and ``### BEGIN HIDDEN`` ... ``### END HIDDEN`` regions;
- outputs and execution counts are cleared, metadata is reduced to what students need;
- every cell without a solution region is locked: Jupyter will not let it be edited or deleted,
  and its id and checksum let the grader detect edits made anyway (as nbgrader does).

A master folder of .py files gets the same regions treated the same way in each declared file; the assignment's
helper modules (public) are copied beside the starters, so students run them as they will be graded. A master
notebook whose assignment also accepts .py files (``format = ["notebook", "python"]``) gives, besides the student
notebook, its one declared file (and the helpers) in student_template/<template without .ipynb>/: the student's
cells of the notebook (imports and solution cells, stubbed; no self-check or hidden cells), so that the master
notebook stays the one source of truth.

The output is deterministic: the same master always gives the same bytes.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor

from grader import pyfiles, truth
from grader.assignment import EXPECTED
from grader.notebook import HIDDEN_TAG, is_self_check, tags

STUB = 'raise NotImplementedError("Replace this line with your solution")'
_REGION = r"^(?P<indent>[ \t]*)### BEGIN {kind}[ \t]*\n(?:.*\n)*?[ \t]*### END {kind}[ \t]*(?:\n|$)"
SOLUTION = re.compile(_REGION.format(kind="SOLUTION"), re.MULTILINE)
HIDDEN = re.compile(_REGION.format(kind="HIDDEN"), re.MULTILINE)
EDITABLE_TAG = "jitgrade-editable"
KEPT_NOTEBOOK_METADATA = ("kernelspec", "jitgrade")
MODULE_HEADER = (
    '"""{file}: {title} ({name}).\n\n'
    "The code cells of the assignment's notebook as one module: replace each raise NotImplementedError with\n"
    'your solution, then hand in this file or the notebook."""\n'
)


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
    master is private: present in a course repository or source checkout, never in an installed package;
    for a .py assignment, its master folder."""
    from grader.assignment import MASTER_NOT_INSTALLED, AssignmentError, load

    path = Path(master_or_assignment)
    if path.suffix == ".ipynb":
        return path
    try:
        assignment = load(master_or_assignment)
        if pyfiles.is_python(assignment):
            if not assignment.master.is_dir():
                raise AssignmentError(MASTER_NOT_INSTALLED.format(name=assignment.name, master=assignment.master))
            return assignment.master
        return assignment.require_master()
    except (AssignmentError, pyfiles.PyFilesError) as exc:
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


def _is_imports(source: str) -> bool:
    """A cell made only of import statements (what the student's module needs at its top)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def module_source(cells: list[Any]) -> str:
    """The student's code of a notebook as one module: its import cells and solution cells, in order (regions
    as they are: a master's solutions, a template's stubs); self-check and hidden cells and the others (demos,
    training runs) are left out."""
    kept = []
    for cell in cells:
        source = _source(cell)
        meta = cell.get("metadata", {}).get("jitgrade", {})
        solution = SOLUTION.search(source) or isinstance(meta, dict) and meta.get("solution")
        hidden = HIDDEN_TAG in tags(cell) or is_self_check(cell)
        if cell.get("cell_type") == "code" and not hidden and (solution or _is_imports(source)):
            kept.append(HIDDEN.sub("", source).strip("\n"))
    return "\n\n\n".join(kept) + "\n"


def write(master: Path, out: Path, name: str | None = None) -> list[Path]:
    """What `jitgrade assign` writes for a master: the starter files of a master folder; the student notebook of
    a master notebook and, when its assignment also accepts .py files, the starter module made from it."""
    if master.is_dir():
        return [write_student_files(master, out, name)]
    written = [write_student_notebook(master, out, name)]
    assignment = assignment_beside(master)
    try:
        if assignment is not None and pyfiles.formats(assignment) == pyfiles.EITHER:
            written.append(write_starter_module(master, out, assignment))
    except pyfiles.PyFilesError as exc:
        raise AssignError(str(exc)) from None
    return written


def write_starter_module(master: Path, out: Path, assignment: Any) -> Path:
    """Write the .py starter of a master notebook (its student notebook's code) and the helpers into
    `out`/<template without .ipynb>."""
    texts = starter_module(master, assignment)
    return _write_starters(out / pyfiles.starter_folder(assignment), texts, pyfiles.layout(assignment))


def starter_module(master: Path, assignment: Any) -> dict[str, str]:
    """The .py starter of a master notebook whose assignment also accepts .py files: {its one file: the code of
    the student notebook}."""
    (file,) = pyfiles.layout(assignment).files  # pyfiles.formats: a master notebook gives one file
    student = nbformat.reads(student_notebook(master), as_version=4)
    header = MODULE_HEADER.format(file=file, title=assignment.title, name=assignment.name)
    return {file: f"{header}\n{module_source(student.cells)}"}


def starter_source(source: str) -> str:
    """A master .py file's text for students: hidden regions gone, solution regions replaced by the stub."""
    stripped = HIDDEN.sub("", source)
    return SOLUTION.sub(lambda m: f"{m.group('indent')}{STUB}\n", stripped)


def write_student_files(master: Path, out: Path, name: str | None = None) -> Path:
    """Write the starter .py files of a master folder, and the assignment's helpers, into `out`/<template>."""
    from grader.assignment import DEFINITION, AssignmentError, load

    try:
        assignment = load(master.parent / DEFINITION)
        declared = pyfiles.layout(assignment)
    except (AssignmentError, pyfiles.PyFilesError) as exc:
        raise AssignError(f"{master}: a master folder of .py files needs its assignment beside it: {exc}") from None
    masters = {}
    for file in declared.files:
        try:
            masters[file] = (master / file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AssignError(f"{master}: cannot read {file}, which the assignment declares ({exc})") from None
    if not any(SOLUTION.search(text) for text in masters.values()):
        raise AssignError(f"{master}: no '### BEGIN SOLUTION' / '### END SOLUTION' region: nothing for students to do")
    texts = {file: starter_source(text) for file, text in masters.items()}
    return _write_starters(out / (name or assignment.template), texts, declared)


def _write_starters(target: Path, texts: dict[str, str], declared: pyfiles.Layout) -> Path:
    """Write the starter files and the assignment's helpers (public) into `target`."""
    texts = dict(texts)
    for path, source, _ in declared.helpers.values():
        if source or not path.endswith("/__init__.py"):  # parent packages made up by the loader are not files
            texts[str(Path(path).relative_to(pyfiles.HELPERS))] = source
    for file, text in sorted(texts.items()):
        (target / file).parent.mkdir(parents=True, exist_ok=True)
        (target / file).write_text(text, encoding="utf-8")
    return target


def assignment_beside(master: Path) -> Any:
    """The assignment whose definition lies next to the master, if any (and valid)."""
    from grader.assignment import DEFINITION, AssignmentError, load

    if (master.parent / DEFINITION).is_file():
        try:
            return load(master.parent)
        except AssignmentError:
            pass
    return None


def _template_name(master: Path) -> str:
    """The template file name from the assignment next to the master, else the master's name."""
    assignment = assignment_beside(master)
    return assignment.template if assignment is not None else master.name


def record_expected(assignment: Any) -> truth.Table:
    """The reference's answers on the visible cases, as the checks ask for them while grading the master and every
    example submission (which exercise the diagnoses of common mistakes): what a students' install replays."""
    from grader.grading import Grader
    from grader.submissions import discover_for, read_submission

    found = [assignment.master]
    if assignment.examples is not None:
        found += [s.path for s in discover_for(assignment, [assignment.examples]) if s.path is not None]
    table = truth.Table()
    with truth.recording(table), Grader(assignment, include_hidden=False) as grader:
        for path in found:
            grader.grade_file(path)
        master = read_submission(assignment.master, assignment)
        for right in range(MAX_RIGHT_CALLS + 1):  # until wrong answers from a later call on need nothing new
            recorded = len(table.calls)
            grader.grade(master, f"wrong from call {right}", through=functools.partial(Skewed, right=right))
            if len(table.calls) == recorded:
                break
    return table


MAX_RIGHT_CALLS = 16  # a check grades at most this many forms and cases before the one a mistake shows in


class Skewed:
    """The checks' view of a worker whose answers are right for the first `right` calls of each check and then off,
    unevenly (see _skew): each value check then fails where a mistake first shows (a later input form, a later
    case) and asks the reference for every known mistake's answer there, which a students' install needs to name
    the likely cause of any wrong answer (not only those of the example submissions)."""

    def __init__(self, session: Any, right: int = 0) -> None:
        self.session = session
        self.right = right
        self.calls = 0  # calls since the check began

    def call(self, *args: Any, **kwargs: Any) -> Any:
        result = self.session.call(*args, **kwargs)
        self.calls += 1
        return result if self.calls <= self.right else dataclasses.replace(result, value=_skew(result.value))

    def seed(self, value: int) -> None:
        """Each check begins by seeding the worker (grader.checks.runner): its calls are counted from there."""
        self.calls = 0
        self.session.seed(value)


def _skew(value: Any) -> Any:
    """Each entry moved by its own amount: no factor, sign, transpose or known mistake explains the difference, so
    the diagnoses try every candidate instead of stopping at a localization."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value * (1.37 + 0.29 * np.cos(np.arange(value.size))).reshape(value.shape) + 0.11
    if isinstance(value, float):
        return value * 1.37 + 0.11
    if isinstance(value, (tuple, list)):
        return type(value)(_skew(v) for v in value)
    if isinstance(value, dict):
        return {k: _skew(v) for k, v in value.items()}
    return value


def write_expected(assignment: Any) -> Path:
    """Record the visible cases' expected values into the assignment's folder (public: it ships with jitgrade)."""
    target = Path(assignment.directory) / EXPECTED
    record_expected(assignment).save(target)
    return target
