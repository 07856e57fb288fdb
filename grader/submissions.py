"""Find the submissions in what an instructor passes: notebooks, folders of them, and the zip
exports of learning platforms (one folder or one file per student). For an assignment whose students hand
in .py files (grader.pyfiles), a folder holding the declared files is one submission; in a class folder,
each sub-folder, zip, or group of Canvas-named .py files (``name_12345_67890_q1_softmax.py``) is one. For an
assignment accepting either, a class may mix both: a notebook, or a sub-folder holding a notebook and none of
the declared files, is a notebook submission; the rest as for .py files.

Only regular files and folders are read: a symbolic link or a special file (a FIFO, a device) where a
submission or its notebook would be is that student's problem, never followed (a student's repository may link
to the master solution or to any file of the grading machine, and reading a FIFO would hang the batch).

Each submission gets a student id: the per-student folder's name, or the file name (for
Canvas-style flat exports ``name_12345_67890_notebook.ipynb``, the leading name). Ids are
sanitized for terminals and reports, and unique in the whole batch, compared without case
(``alice/``, ``alice.ipynb`` and ``alice-2.ipynb`` become alice, alice-3 and alice-2).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from grader import notebook as nb
from grader import pyfiles
from grader.reports.sanitize import one_line

MAX_ZIP_TOTAL = 2 * 1024**3
MAX_ZIP_MEMBER = 64 * 1024**2
MAX_ZIP_MEMBERS = 100_000  # entries of one zip export
MAX_ZIP_DEPTH = 32  # folders a member's path may go down (a deeper one is left out)
_CANVAS = re.compile(r"^(?P<student>[A-Za-z0-9-]+)(?:_LATE)?_\d+_\d+_.+\.ipynb$")
_CANVAS_PY = re.compile(r"^(?P<student>[A-Za-z0-9-]+)(?:_LATE)?_\d+_\d+_(?P<file>.+?)(?:-\d+)?\.py$")
_IGNORED_PARTS = ("__MACOSX", ".ipynb_checkpoints", "__pycache__")
NOT_REGULAR = (
    "{name} is a symbolic link or a special file, not a regular {what}; it was not read: hand in the {what} itself"
)
TOO_MANY_MEMBERS = "{archive}: more than {limit} entries in the zip; refusing to extract"


class SubmissionError(ValueError):
    """The input cannot be read as submissions at all (one line, said once for the whole batch)."""


@dataclass(frozen=True)
class Submission:
    """One student's notebook, or .py files (`python`: a .py file, a folder or a zip of them), or why there is
    none (`problem` is then set and `path` may be None)."""

    student: str
    path: Path | None
    problem: str | None = None
    python: bool = False


def read_submission(path: str | Path, assignment: Any) -> nb.Notebook:
    """One submission as its assignment expects it, read by what was handed in (pyfiles.reads_python): a
    notebook, or .py files (a file, a folder or a zip); a folder of an assignment accepting both may hold the
    notebook instead."""
    path = Path(path)
    if pyfiles.reads_python(path, assignment):
        return pyfiles.read(path, assignment)
    if path.is_dir():
        found = _notebook_in(path, path.name, assignment.template)
        if found.path is None:
            raise nb.NotebookError(str(found.problem))
        path = found.path
    return nb.read(path)


def load_submission(data: bytes, name: str, assignment: Any, python: bool) -> nb.Notebook:
    """One submission from the bytes a batch task carries: pyfiles.pack's when `python`, else a notebook's."""
    return pyfiles.loads(data, name, assignment) if python else nb.loads(data, name)


def _ignored(path: Path) -> bool:
    return any(part in _IGNORED_PARTS or part.startswith(".") for part in path.parts)


def _regular(path: Path) -> bool:
    """Whether `path` is itself a regular file or folder (not a link to one, not a FIFO or a device)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def _refused(student: str, path: Path) -> Submission:
    """The submission of a student whose entry is a link or a special file: why it is not read."""
    what = "notebook" if path.suffix == ".ipynb" else "folder" if path.is_dir() else "file"
    return Submission(student, None, NOT_REGULAR.format(name=path.name, what=what))


def _student_of_file(path: Path) -> str:
    match = _CANVAS.match(path.name)
    return match.group("student") if match else path.stem


def _from_folder(folder: Path, preferred: str | None, outputs: frozenset[Path] = frozenset()) -> list[Submission]:
    """Top-level notebooks are submissions; each sub-folder is one student's submission (but the
    grader's own output folders, when they lie inside the input)."""
    found: list[Submission] = []
    for entry in sorted(folder.iterdir()):
        if _ignored(entry.relative_to(folder)) or entry.resolve() in outputs:
            continue
        if not _regular(entry) and (entry.suffix == ".ipynb" or entry.is_dir()):
            found.append(_refused(_student_of_file(entry) if entry.suffix == ".ipynb" else entry.name, entry))
        elif entry.is_file() and entry.suffix == ".ipynb":
            found.append(Submission(_student_of_file(entry), entry))
        elif entry.is_dir():
            found.append(_notebook_in(entry, entry.name, preferred))
    return found


def _notebook_in(folder: Path, student: str, preferred: str | None) -> Submission:
    """A student's folder as a notebook submission: its one notebook (else the one named `preferred`), or why
    there is none to grade."""
    try:
        entries = pyfiles.walk(folder, folder.name, "a notebook (.ipynb)")
    except pyfiles.PyFilesError as exc:
        return Submission(student, None, str(exc))
    seen = sorted((folder.joinpath(*p.parts), regular) for p, regular in entries if p.suffix == ".ipynb")
    notebooks = [p for p, regular in seen if regular]
    if not notebooks and seen:
        return _refused(student, seen[0][0])
    named = [p for p in notebooks if preferred and p.name == preferred]
    if len(notebooks) == 1 or len(named) == 1:
        return Submission(student, (named or notebooks)[0])
    if not notebooks:
        return Submission(student, None, f"no notebook (.ipynb) in the submission folder {folder.name}")
    names = ", ".join(str(p.relative_to(folder)) for p in notebooks[:5])
    expected = f" named {preferred}" if preferred else ""
    return Submission(student, None, f"several notebooks in the submission folder ({names}); expected one{expected}")


def _python_from_folder(
    folder: Path,
    files: tuple[str, ...],
    outputs: frozenset[Path],
    workdir: Path | None,
    student: str,
    notebooks: str | None = None,
) -> list[Submission]:
    """A folder holding any of the declared `files` is one submission (`student`'s); else each sub-folder, zip
    and other .py file in it is one student's, and Canvas-named .py files are grouped by student (copied,
    under the names the student gave them, into a folder per student). With `notebooks` (the template's name:
    the assignment accepts either), notebooks and sub-folders holding one and none of the files are notebook
    submissions."""
    if any((folder / f).is_file() for f in files):
        return [Submission(student, folder, python=True)]
    found: list[Submission] = []
    canvas: dict[str, dict[str, Path]] = {}
    for entry in sorted(folder.iterdir()):
        if _ignored(entry.relative_to(folder)) or entry.resolve() in outputs:
            continue
        match = _CANVAS_PY.match(entry.name) if entry.is_file() or not _regular(entry) else None
        if match:  # a link or special file among them is not copied: its student's row names it missing
            canvas.setdefault(match.group("student"), {})[f"{match.group('file')}.py"] = entry
        elif not _regular(entry) and (entry.is_dir() or entry.suffix in (".zip", ".py", ".ipynb")):
            found.append(_refused(entry.stem, entry))
        elif notebooks is not None and entry.is_file() and entry.suffix == ".ipynb":
            found.append(Submission(_student_of_file(entry), entry))
        elif notebooks is not None and entry.is_dir() and not pyfiles.folder_is_python(entry, files):
            found.append(_notebook_in(entry, entry.name, notebooks))
        elif entry.is_dir() or entry.is_file() and entry.suffix in (".zip", ".py"):
            found.append(Submission(entry.stem, entry, python=True))
    for name, grouped in canvas.items():
        target = Path(tempfile.mkdtemp(prefix="jitgrade-canvas-", dir=workdir)) / name
        target.mkdir()
        for file, path in grouped.items():
            if path.is_file() and _regular(path) and path.stat().st_size <= MAX_ZIP_MEMBER:  # past it, too large
                shutil.copyfile(path, target / file)
        found.append(Submission(name, target, python=True))
    return found


def extract_zip(archive: Path, into: Path) -> Path:
    """Extract a platform export safely: no paths outside `into`, no links, bounded sizes and counts; a member
    this file system cannot hold (a name too long, a file where a folder is, a path too deep) is left out."""
    try:
        with zipfile.ZipFile(archive) as zf:
            if len(zf.infolist()) > MAX_ZIP_MEMBERS:
                raise SubmissionError(TOO_MANY_MEMBERS.format(archive=archive, limit=MAX_ZIP_MEMBERS))
            total = 0
            for info in zf.infolist():
                name = PurePosixPath(info.filename)
                if info.is_dir() or _ignored(Path(*name.parts)) or len(name.parts) > MAX_ZIP_DEPTH:
                    continue
                if name.is_absolute() or ".." in name.parts:
                    raise SubmissionError(f"{archive}: unsafe path {info.filename!r} in the zip; refusing to extract")
                if stat_is_link(info):
                    continue
                if info.file_size > MAX_ZIP_MEMBER:
                    continue  # not a notebook anyone should grade; reported as missing if it was the only one
                total += info.file_size
                if total > MAX_ZIP_TOTAL:
                    raise SubmissionError(f"{archive}: more than {MAX_ZIP_TOTAL // 2**30} GiB uncompressed; refusing")
                _extract_member(zf, info, into.joinpath(*name.parts))
    except zipfile.BadZipFile:
        raise SubmissionError(f"{archive} is not a valid zip archive") from None
    # A single top-level folder wrapping everything is the export's own folder, not a student's.
    entries = [e for e in into.iterdir() if not _ignored(Path(e.name))]
    if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]
    return into


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Write one member at `target`, or nothing when the file system cannot hold it there (a name too long, a
    file where a folder is, or the other way round) or it cannot be read (encrypted, damaged): the export's other
    members are still extracted."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    except pyfiles.ZIP_ERRORS:
        with contextlib.suppress(OSError):  # what was written before the damage is not the member
            target.unlink()


def stat_is_link(info: zipfile.ZipInfo) -> bool:
    """Whether a zip member is a symbolic link (Unix mode bits in external_attr)."""
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def discover(
    inputs: Iterable[str | Path],
    workdir: Path | None = None,
    preferred: str | None = None,
    outputs: Iterable[Path] = (),
    python: tuple[str, ...] = (),
    notebooks: bool = False,
) -> list[Submission]:
    """Every submission in the inputs, the `outputs` folders (reports of earlier runs) left out; raises
    SubmissionError when an input holds none at all. `python`: the .py files of an assignment whose students
    hand in .py files (empty for notebooks); with them, `notebooks` when its students may hand in either."""
    skipped = frozenset(Path(p).resolve() for p in outputs)
    submissions: list[Submission] = []
    named: set[int] = set()  # the submissions that are an input themselves (not found inside one)
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise SubmissionError(f"{path}: no such file or folder")
        if python:
            found = _python_input(path, python, skipped, workdir, preferred if notebooks else None)
        elif path.is_dir():
            found = _from_folder(path, preferred, skipped)
        elif path.suffix == ".zip":
            target = Path(tempfile.mkdtemp(prefix="jitgrade-zip-", dir=workdir))
            found = _from_folder(extract_zip(path, target), preferred)
        elif path.suffix == ".ipynb":
            found = [Submission(_student_of_file(path), path)]
        else:
            raise SubmissionError(f"{path}: expected notebooks (.ipynb), folders of them, or a zip export")
        if not any(s.path for s in found):
            raise SubmissionError(f"{path}: no notebooks (.ipynb) found")
        named.update(len(submissions) + i for i, s in enumerate(found) if s.path == path)
        submissions += found
    return _unique(submissions, named)


def _python_input(
    path: Path, files: tuple[str, ...], outputs: frozenset[Path], workdir: Path | None, notebooks: str | None
) -> list[Submission]:
    """The .py submissions in one input: a .py file, a folder (one student's, or a class's), or a zip (one
    student's .py files, or a class export); with `notebooks` (the template's name), notebooks too."""
    expected = f".py files ({', '.join(files)})" + (" or notebooks (.ipynb)" if notebooks is not None else "")
    if path.is_dir():
        found = _python_from_folder(path, files, outputs, workdir, path.resolve().name, notebooks)
    elif path.suffix == ".zip":
        extracted = extract_zip(path, Path(tempfile.mkdtemp(prefix="jitgrade-zip-", dir=workdir)))
        found = _python_from_folder(extracted, files, frozenset(), workdir, path.stem, notebooks)
        one = found[0].path if len(found) == 1 and found[0].python else None
        if one is not None and extracted in (one, one.parent):  # one student's zip, named by its file: graded as
            found = [Submission(path.stem, path, python=True)]  # handed in (never by a folder named in it)
    elif path.suffix == ".py":
        found = [Submission(path.stem, path, python=True)]
    elif path.suffix == ".ipynb" and notebooks is not None:
        found = [Submission(_student_of_file(path), path)]
    else:
        raise SubmissionError(f"{path}: expected {expected}, folders of them, or a zip")
    if not found:
        raise SubmissionError(f"{path}: no submissions of {expected} found")
    return found


def _unique(submissions: list[Submission], named: Collection[int] = ()) -> list[Submission]:
    """Sanitized ids, each used once: a repeated id (compared without case, as case-insensitive file
    systems do) gets the first suffix -2, -3, ... that no submission's id uses; deterministic for the same inputs.
    The submissions `named` (indexes: each an input itself) get theirs first, so that a folder named inside a zip
    (which a student may have made) never takes the id of a student whose submission was given by name."""
    ids = [one_line(s.student) for s in submissions]
    taken = {student.lower() for student in ids}
    seen: set[str] = set()
    out: dict[int, Submission] = {}
    for i in sorted(range(len(submissions)), key=lambda i: i not in named):
        s, student = submissions[i], ids[i]
        if student.lower() in seen:
            student = next(name for n in itertools.count(2) if (name := f"{student}-{n}").lower() not in taken)
            taken.add(student.lower())
        seen.add(student.lower())
        out[i] = Submission(student, s.path, s.problem, s.python)
    return [out[i] for i in range(len(submissions))]


def discover_for(assignment: Any, inputs: Iterable[str | Path], outputs: Iterable[Path] = ()) -> list[Submission]:
    """discover() of what `assignment` accepts (notebooks, its .py files, or either), named after its template;
    raises SubmissionError or pyfiles.PyFilesError."""
    python = pyfiles.layout(assignment).files if pyfiles.accepts_python(assignment) else ()
    notebooks = pyfiles.NOTEBOOK in pyfiles.formats(assignment)
    return discover(inputs, preferred=assignment.template, outputs=outputs, python=python, notebooks=notebooks)
