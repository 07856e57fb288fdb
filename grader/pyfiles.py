"""Python-file submissions: read a ``.py`` file, a folder or a zip of them, hold them against the files the
assignment's ``[submission]`` table declares, and turn them into the cells the sandbox executes.

Cell 0 is a generated loader: it installs an in-memory import finder that serves the assignment's helper
modules and the student's modules from source strings (no file is written, no host path is seen; each is
compiled with its own file name, so tracebacks name ``q2_neural.py`` and its line). Cell k (one per declared
file, in load order) imports module k under its own name, so that ``if __name__ == "__main__":`` blocks do not
run, and binds its public names as ``from module import *`` would, where the grader finds every function.
A declared file that is missing (or not text) raises a clear ImportError wherever it is imported.

An assignment may accept a notebook or its one declared file (``format = ["notebook", "python"]``): each
submission is then read by what was handed in (:func:`reads_python`); one that holds both is graded from the
file, and a note in its report names the notebook that was not graded.
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import functools
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import lzma
import os
import re
import sys
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from grader import notebook as nb
from grader.reports.sanitize import one_line

PYTHON, NOTEBOOK = "python", "notebook"  # [submission] format
EITHER = (NOTEBOOK, PYTHON)  # format = ["notebook", "python"]: students hand in one or the other
SUBMISSION_KEYS = ("format", "files", "helpers")
MAX_FILE_BYTES = 1024 * 1024  # one .py file
MAX_TOTAL_BYTES = 2 * 1024 * 1024  # every .py file of one submission together (the loader cell carries them,
# in a request frame of at most 8 MiB: base64 of their UTF-8 text, at most 2 * 4/3 of their bytes)
MAX_ZIP_BYTES = 64 * 1024 * 1024  # a zip of them (which may hold other files, not read)
MAX_ENTRIES = 10_000  # files and folders looked at in one submission folder or zip
MAX_DEPTH = 32  # folders a submission's files are looked for under
_IGNORED_PARTS = ("__MACOSX", "__pycache__", ".ipynb_checkpoints")
_CENTRAL_ENTRY = b"PK\x01\x02"  # the signature of a zip's central directory entry
_FILE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*\.py")
HELPERS = "helpers"  # the assignment folder's folder of helper modules
_LOADER = "__jitgrade_files__"  # the loader's name in the worker's namespace
# Modules the sandbox or the grader stand on, which no submitted or helper module may shadow (besides the
# standard library and whatever is installed where the worker runs).
PROTECTED = ("grader", "reference", "jitgrade", "numpy", "IPython", "traitlets")

NOT_PYTHON_FORMAT = (
    "{where}: [submission] format must be one of {formats}, got {found!r}; "
    'format = "python" makes students hand in .py files, format = ["notebook", "python"] either of the two'
)
EITHER_NEEDS_NOTEBOOK = (
    '{where}: [submission] format = ["notebook", "python"] needs a master notebook (master = "....ipynb", got '
    "{master!r}) and one file in files (got {files!r}): the .py starter is the template's code, in that one file"
)
UNKNOWN_KEYS = "{where}: unknown key(s) {keys} in [submission]: expected some of {known}"
BAD_FILES = (
    "{where}: [submission] files must be a non-empty list of module file names such as "
    '["q1_softmax.py", "q2_neural.py"], got {found!r}'
)
BAD_HELPER = (
    "{where}: [submission] helpers: {found!r} must be a .py file under helpers/ in the assignment folder "
    "(for example helpers/past/builtins.py, imported as past.builtins)"
)
MISSING_HELPER = "{where}: [submission] helpers: {path} does not exist; add it to the assignment folder or remove it"
SHADOWS = (
    "{what} {name!r} would shadow the module {module}, which the grader or the sandbox uses (or the standard "
    "library, or an installed package, provides); rename it"
)
NOT_SUBMISSION = "{name}: expected a .py file, a folder of .py files or a zip of them (the files {files})"
NO_FILES = "{name} holds none of the files this assignment expects ({files}); hand in those .py files"
NO_FILES_EITHER = (
    "{name} holds none of the files this assignment expects ({files}); hand in those .py files, or the notebook "
    "(.ipynb) alone"
)
TOO_LARGE = "{name}: {file} is {size:.1f} MiB; a .py file may have at most {limit} MiB (keep data out of code)"
TOO_LARGE_TOTAL = "{name}: the .py files take {size:.1f} MiB together; at most {limit} MiB are graded"
TOO_LARGE_ZIP = "{name} is {size:.0f} MiB; a zip of .py files may have at most {limit} MiB (leave data files out)"
TOO_MANY = "{name} holds more than {limit} files and folders; hand in only the .py files {files}"
BAD_ZIP = (
    "{name} is not a valid zip archive (damaged, encrypted, or compressed in a way it cannot be read): zip the .py "
    "files again, without a password"
)
# What reading a hostile or damaged zip raises besides BadZipFile: an encrypted member (RuntimeError), a corrupt
# compressed stream (zlib.error, lzma.LZMAError; bz2's OSError), an unknown compression (NotImplementedError).
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    EOFError,
    RuntimeError,
    OSError,
    zlib.error,
    lzma.LZMAError,
)
# The encodings a source file may declare (codecs' names): a declared codec decodes on the grader's side, and some
# are slow on hostile bytes (punycode's decoder takes quadratic time: minutes for 1 MiB)
ENCODINGS = re.compile(r"utf-8(-sig)?|ascii|iso8859-\d+|cp\d+|latin-1|mac-roman")
BAD_ENCODING = "it declares the encoding {found!r}, which is not accepted"
UNSAFE_ZIP = "{name}: unsafe path {member!r} in the zip; zip only the .py files"
MISSING_FILE = (
    "{file} is missing from the submission (expected {files}); hand it in with the others, under that exact name"
)
NOT_TEXT = "{file} is not Python source text ({why}); save it as UTF-8 text"
IGNORED = "{file} was not graded: it is not one of the assignment's files ({files})"
NOTEBOOK_NOT_GRADED = (
    "{file} was not graded: a submission holding the assignment's .py files ({files}) is graded from them; "
    "hand in the notebook alone to have it graded"
)
REFUSED = "{file} was not loaded: {why}"
MORE_NOTES = "and {count} more files were not graded (only the assignment's files are: {files})"
MAX_NOTES = 20  # notes on files not graded, each naming at most MAX_NOTED_NAME characters of the file's name: the
MAX_NOTED_NAME = 200  # loader cell carries and prints them: thousands of long names made it fail
LOADER_CELL = "# jitgrade: the submitted files, loaded as modules: {files}"
MISSING_CELL = "# {file} was not handed in"


class PyFilesError(nb.NotebookError):
    """The input cannot be graded as .py files; the message is one line saying why and what to do."""


def formats(assignment: Any) -> tuple[str, ...]:
    """What the assignment's students may hand in ([submission] format: "notebook", "python" or a list of both),
    checked: a typo must not silently grade notebooks."""
    table = assignment.submission
    where = assignment.directory / "assignment.toml"
    unknown = sorted(set(table) - set(SUBMISSION_KEYS))
    if unknown:
        raise PyFilesError(UNKNOWN_KEYS.format(where=where, keys=unknown, known=list(SUBMISSION_KEYS)))
    found = table.get("format", NOTEBOOK)
    listed = found if isinstance(found, list) else [found]
    if not listed or len(set(map(str, listed))) < len(listed) or not all(f in (NOTEBOOK, PYTHON) for f in listed):
        raise PyFilesError(NOT_PYTHON_FORMAT.format(where=where, formats=[NOTEBOOK, PYTHON], found=found))
    accepted = tuple(f for f in (NOTEBOOK, PYTHON) if f in listed)
    files = table.get("files")
    if accepted == EITHER and (assignment.master.suffix != ".ipynb" or not isinstance(files, list) or len(files) != 1):
        raise PyFilesError(EITHER_NEEDS_NOTEBOOK.format(where=where, master=assignment.master.name, files=files))
    return accepted


def is_python(assignment: Any) -> bool:
    """Whether the assignment's students hand in .py files only (its master is then a folder of them)."""
    return formats(assignment) == (PYTHON,)


def accepts_python(assignment: Any) -> bool:
    """Whether the assignment's students may hand in .py files (only, or instead of the notebook)."""
    return PYTHON in formats(assignment)


def starter_folder(assignment: Any) -> str:
    """The folder of student_template/ that holds the .py starter files: the template itself for a .py
    assignment, the template notebook's name without .ipynb for one that accepts both."""
    return assignment.template.removesuffix(".ipynb")


def reads_python(path: str | Path, assignment: Any) -> bool:
    """Whether a submission is read as .py files: always for a "python" assignment, never for a "notebook" one;
    for one accepting both, by what was handed in: a notebook (.ipynb), or a folder holding a notebook and none
    of the declared files, is a notebook; a .py file, a zip, or a folder holding a declared file is .py files."""
    accepted = formats(assignment)
    if accepted != EITHER:
        return accepted == (PYTHON,)
    path = Path(path)
    if path.is_dir():
        return folder_is_python(path, layout(assignment).files)
    return path.suffix != ".ipynb"


def folder_is_python(folder: Path, files: tuple[str, ...]) -> bool:
    """Whether a submission folder is graded from its .py files: it holds one of the declared `files` (at its top,
    or in one folder wrapping everything), or no notebook at all, or too many files to look through (the .py
    reader's error then says what to hand in)."""
    try:
        found = _folder_entries(folder, folder.name, ", ".join(files))
    except PyFilesError:
        return True
    return any(name in files for name in _top_level(found)) or not any(p.suffix == ".ipynb" for p in found)


def module_of(path: str) -> str:
    """The module a file path defines: q2_neural.py -> q2_neural, past/builtins.py -> past.builtins."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _shadowed(module: str) -> str | None:
    """The module that `module` would shadow in the sandbox, if any (its top-level package decides)."""
    from grader.sandbox.zygote import worker_sys_path

    top = module.partition(".")[0]
    installed = importlib.machinery.PathFinder.find_spec(top, worker_sys_path(())) is not None
    return top if top in PROTECTED or top in sys.stdlib_module_names or installed else None


@dataclass(frozen=True)
class Layout:
    """What an assignment's students hand in: its files in load order, its helper modules' sources
    (module -> (file name shown in tracebacks, source, is a package)), and the text of each file as the
    starter folder (else the master) has it, which says what a file that was not handed in should define."""

    files: tuple[str, ...]
    helpers: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)
    notebooks: bool = False  # the assignment accepts a notebook instead of the files

    @property
    def modules(self) -> tuple[str, ...]:
        """The student modules, in load order."""
        return tuple(module_of(f) for f in self.files)


def _expected(files: tuple[str, ...], folders: list[Path]) -> dict[str, str]:
    """Each file's text from the first of `folders` that has it (the starter folder, then the master)."""
    found = {}
    for file in files:
        for folder in folders:
            try:
                found[file] = (folder / file).read_text(encoding="utf-8")
                break
            except (OSError, UnicodeDecodeError):
                continue
    return found


@functools.lru_cache(maxsize=16)
def _layout(
    directory: Path, files: tuple[Any, ...], helpers: tuple[Any, ...], folders: tuple[Path, ...], notebooks: bool
) -> Layout:
    where = str(directory / "assignment.toml")
    if (
        not files
        or not all(isinstance(f, str) and _FILE_NAME.fullmatch(f) for f in files)
        or len(set(files)) < len(files)
    ):
        raise PyFilesError(BAD_FILES.format(where=where, found=list(files)))
    served: dict[str, tuple[str, str, bool]] = {}
    for path in helpers:
        inside = PurePosixPath(path).relative_to(HELPERS) if str(path).startswith(f"{HELPERS}/") else None
        if not isinstance(path, str) or inside is None or not _MODULE_PATH.fullmatch(str(inside)):
            raise PyFilesError(BAD_HELPER.format(where=where, found=path))
        try:
            source = (directory / path).read_text(encoding="utf-8")
        except OSError:
            raise PyFilesError(MISSING_HELPER.format(where=where, path=path)) from None
        module = module_of(str(inside))
        served[module] = (path, source, str(inside).endswith("/__init__.py"))
        parts = module.split(".")
        for n in range(1, len(parts)):  # parent packages without an __init__.py of their own: empty
            parent = ".".join(parts[:n])
            served.setdefault(parent, (f"{HELPERS}/{parent.replace('.', '/')}/__init__.py", "", True))
    for what, names in (("the file", [module_of(f) for f in files]), ("the helper", list(served))):
        for name in names:
            shadowed = _shadowed(name)
            if shadowed is not None:
                raise PyFilesError(f"{where}: " + SHADOWS.format(what=what, name=name, module=shadowed))
    clash = set(served) & {module_of(f) for f in files}
    if clash:
        raise PyFilesError(f"{where}: [submission] {sorted(clash)} are both student files and helpers; keep one")
    return Layout(tuple(files), served, _expected(tuple(files), list(folders)), notebooks)


def layout(assignment: Any) -> Layout:
    """The assignment's declared files and helpers, validated (a PyFilesError names the TOML and the fix)."""
    from grader.assignment import template_roots

    table = assignment.submission
    files, helpers = table.get("files", []), table.get("helpers", [])
    if not isinstance(files, list) or not isinstance(helpers, list):
        raise PyFilesError(BAD_FILES.format(where=assignment.directory / "assignment.toml", found=files))
    folders = (*(root / starter_folder(assignment) for root in template_roots()), assignment.master)
    notebooks = NOTEBOOK in formats(assignment)
    return _layout(assignment.directory, tuple(files), tuple(helpers), folders, notebooks)


# ------------------------------------------------------------------ reading what a student handed in


def _ignored(parts: tuple[str, ...]) -> bool:
    return any(part in _IGNORED_PARTS or part.startswith(".") for part in parts)


def _check_size(name: str, file: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise PyFilesError(TOO_LARGE.format(name=name, file=file, size=size / 2**20, limit=MAX_FILE_BYTES // 2**20))


def _check_total(name: str, files: dict[str, bytes]) -> None:
    """Checked after each file read, so that a submission of many large files is refused before it is all in
    memory (10,000 files of 1 MiB deflate into a zip of a few MiB)."""
    total = sum(map(len, files.values()))
    if total > MAX_TOTAL_BYTES:
        raise PyFilesError(TOO_LARGE_TOTAL.format(name=name, size=total / 2**20, limit=MAX_TOTAL_BYTES // 2**20))


def _top_level(found: list[PurePosixPath]) -> dict[str, PurePosixPath]:
    """The .py files and notebooks of the submission's top folder, or of the one folder wrapping everything:
    name -> path."""
    wrapped = len({p.parts[0] for p in found}) == 1 and all(len(p.parts) > 1 for p in found)
    return {p.name: p for p in found if len(p.parts) == 1 + wrapped and p.suffix in (".py", ".ipynb")}


def walk(folder: Path, name: str, files: str, limit: int = MAX_ENTRIES) -> list[tuple[PurePosixPath, bool]]:
    """Everything but folders under a submission folder, relative to it, each with whether it is a regular file
    (not a link, a FIFO or a device); checkpoints and hidden files left out, links to folders not followed.
    Looked through without recursion (a student's repository may nest folders thousands deep, past Python's
    recursion limit), at most MAX_DEPTH folders down and `limit` entries (past them, a PyFilesError)."""
    found: list[tuple[PurePosixPath, bool]] = []
    folders, count = [PurePosixPath()], 0
    while folders:
        relative = folders.pop()
        try:
            with os.scandir(folder.joinpath(*relative.parts)) as entries:
                for entry in entries:
                    count += 1
                    if count > limit:
                        raise PyFilesError(TOO_MANY.format(name=name, limit=limit, files=files))
                    path = relative / entry.name
                    if _ignored((entry.name,)):
                        continue
                    if not entry.is_dir(follow_symlinks=False):
                        found.append((path, entry.is_file(follow_symlinks=False)))
                    elif len(path.parts) < MAX_DEPTH:
                        folders.append(path)
        except OSError:
            continue  # a folder that cannot be listed holds nothing to grade
    return found


def _folder_entries(folder: Path, name: str, files: str) -> list[PurePosixPath]:
    """The regular files under a submission folder (see walk), bounded in number and depth."""
    return [path for path, regular in walk(folder, name, files) if regular]


def _folder_files(folder: Path, name: str, files: str) -> dict[str, bytes]:
    out = {}
    for file, relative in _top_level(_folder_entries(folder, name, files)).items():
        if file.endswith(".ipynb"):  # named only: a note says it was not graded
            out[file] = b""
            continue
        with open(folder.joinpath(*relative.parts), "rb") as src:
            out[file] = src.read(MAX_FILE_BYTES + 1)  # a file growing under the read is cut there
        _check_size(name, file, len(out[file]))
        _check_total(name, out)
    return out


def _zip_files(data: bytes, name: str, files: str) -> dict[str, bytes]:
    # every entry of the central directory starts with its signature: a bound of the entries, counted before
    # zipfile builds an object for each (a 45 MiB zip of a million entries took 400 MiB and seconds to open)
    if data.count(_CENTRAL_ENTRY) > MAX_ENTRIES:
        raise PyFilesError(TOO_MANY.format(name=name, limit=MAX_ENTRIES, files=files))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise PyFilesError(TOO_MANY.format(name=name, limit=MAX_ENTRIES, files=files))
            members = {}
            for info in infos:
                member = PurePosixPath(info.filename)
                if member.is_absolute() or ".." in member.parts:
                    raise PyFilesError(UNSAFE_ZIP.format(name=name, member=info.filename))
                link = (info.external_attr >> 16) & 0o170000 == 0o120000
                if info.is_dir() or link or _ignored(member.parts):
                    continue
                members[member] = info
            out = {}
            for file, member in _top_level(list(members)).items():
                if file.endswith(".ipynb"):  # named only: a note says it was not graded
                    out[file] = b""
                    continue
                _check_size(name, file, members[member].file_size)
                with zf.open(members[member]) as src:
                    out[file] = src.read(MAX_FILE_BYTES + 1)  # the header's size may lie: read no more than allowed
                _check_size(name, file, len(out[file]))
                _check_total(name, out)
            return out
    except ZIP_ERRORS:
        raise PyFilesError(BAD_ZIP.format(name=name)) from None


def files_of(path: str | Path, declared: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The .py files of a submission (a .py file, a folder or a zip; a folder wrapping everything is looked
    into): file name -> bytes, bounded in number and size; a notebook beside them is named, with no bytes."""
    path = Path(path)
    listed = ", ".join(declared) or ".py files"
    if not path.exists():
        raise PyFilesError(f"{path}: no such file or folder")
    if path.is_dir():
        found = _folder_files(path, path.name, listed)
    elif path.suffix == ".zip":
        size = path.stat().st_size
        if size > MAX_ZIP_BYTES:
            raise PyFilesError(TOO_LARGE_ZIP.format(name=path.name, size=size / 2**20, limit=MAX_ZIP_BYTES // 2**20))
        found = _zip_files(path.read_bytes(), path.name, listed)
    elif path.suffix == ".py":
        _check_size(path.name, path.name, path.stat().st_size)
        found = {path.name: path.read_bytes()}
    else:
        raise PyFilesError(NOT_SUBMISSION.format(name=path.name, files=listed))
    _check_total(path.name, found)
    return found


def pack(files: dict[str, bytes]) -> bytes:
    """The files as canonical bytes (a zip in name order, fixed dates): what a batch task carries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(files):
            zf.writestr(zipfile.ZipInfo(file, date_time=(2020, 1, 1, 0, 0, 0)), files[file])
    return buf.getvalue()


def digest(files: dict[str, bytes]) -> str:
    """The sha256 of a submission's files: each file's name and contents, in name order."""
    h = hashlib.sha256()
    for file in sorted(files):
        name = file.encode("utf-8")
        h.update(len(name).to_bytes(8, "little") + name + len(files[file]).to_bytes(8, "little") + files[file])
    return h.hexdigest()


# ------------------------------------------------------------------ the submission as cells


@dataclass(frozen=True)
class PythonSubmission(nb.Notebook):
    """A .py submission as the notebook the grader executes: cell 0 the loader, cell k the k-th declared file
    (its source, shown in the executed record); `sources` maps each declared module to its file's text, and
    `unloadable` each one that cannot be loaded to (why: "missing" or "not text", the message); `missing` the declared
    files not handed in, `notes` what was ignored or refused."""

    layout: Layout = field(default_factory=lambda: Layout(()))
    sources: dict[str, str] = field(default_factory=dict)
    unloadable: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def code_cells(self) -> list[tuple[int, str]]:
        """The loader, then one import per declared file."""
        return [(0, loader_source(self))] + [
            (k, import_source(module)) for k, module in enumerate(self.layout.modules, start=1)
        ]

    def labels(self) -> dict[int, str]:
        """How messages name each cell: by its file."""
        return {k: file for k, file in enumerate(self.layout.files, start=1)}

    def definitions(self) -> dict[int, nb.CellDefinitions]:
        """What each file's top level defines, read with ``ast`` (a missing file: what its starter defines)."""
        texts = [self.sources.get(module_of(f), self.layout.expected.get(f, "")) for f in self.layout.files]
        found = nb.notebook_definitions(list(enumerate(texts, start=1)))
        return {k: _named(d, self.layout.files[k - 1]) for k, d in found.items()}

    def replays(self, definitions: dict[int, nb.CellDefinitions]) -> dict[int, str]:
        """For a file whose import ran out of time or memory: import it again from its definitions alone. Only
        for files handed in: a missing file's definitions are read from the starter or the master, which must
        never reach the worker."""
        modules = self.layout.modules
        return {
            k: f"{_LOADER}.replace({modules[k - 1]!r}, {d.replay!r})\n{import_source(modules[k - 1])}"
            for k, d in definitions.items()
            if d.replay is not None and modules[k - 1] in self.sources
        }

    def tamper(self) -> nb.Tamper:
        """The submission held against the declared files: those not handed in are named."""
        return nb.Tamper(from_template=True, missing=list(self.missing), unit="file")


def _named(definitions: nb.CellDefinitions, file: str) -> nb.CellDefinitions:
    return dataclasses.replace(definitions, first_line=file)


def import_source(module: str) -> str:
    """The cell that imports one student module and binds its public names."""
    return f"from {module} import *"


def read(path: str | Path, assignment: Any) -> PythonSubmission:
    """Read a .py submission (file, folder or zip) for the assignment."""
    path = Path(path)
    declared = layout(assignment)
    name = path.resolve().name if path.name in ("", "..") else path.name  # "." is a folder with a name
    return build(files_of(path, declared.files), name, declared)


def loads(data: bytes, name: str, assignment: Any) -> PythonSubmission:
    """A submission from the bytes ``pack`` made (a batch task's)."""
    declared = layout(assignment)
    files = _zip_files(data, name, ", ".join(declared.files))
    _check_total(name, files)
    return build(files, name, declared)


def build(files: dict[str, bytes], name: str, declared: Layout) -> PythonSubmission:
    """The submission of these files: the declared ones decoded, the others noted; refuses a submission that
    holds none of the declared files."""
    listed = ", ".join(declared.files)
    if not any(f in files for f in declared.files):
        raise PyFilesError((NO_FILES_EITHER if declared.notebooks else NO_FILES).format(name=name, files=listed))
    sources: dict[str, str] = {}
    unloadable: dict[str, tuple[str, str]] = {}
    for file in declared.files:
        module = module_of(file)
        if file not in files:
            unloadable[module] = ("missing", MISSING_FILE.format(file=file, files=listed))
            continue
        try:
            sources[module] = decode(files[file])
        except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
            unloadable[module] = ("not text", NOT_TEXT.format(file=file, why=str(exc)[:200]))
    notes: list[str] = []
    others = sorted(set(files) - set(declared.files))
    for index, file in enumerate(others):
        if module_of(file) in declared.helpers:  # the course's own copy, from the starter folder: served anyway
            continue
        if len(notes) == MAX_NOTES:
            notes.append(MORE_NOTES.format(count=len(others) - index, files=listed))
            break
        shown = one_line(file[:MAX_NOTED_NAME])  # the student's: it may not fake a line of a report or a CI log
        if file.endswith(".ipynb"):
            notes.append((NOTEBOOK_NOT_GRADED if declared.notebooks else IGNORED).format(file=shown, files=listed))
            continue
        shadowed = _shadowed(module_of(file)) if _FILE_NAME.fullmatch(file) else None
        why = SHADOWS.format(what="its module", name=module_of(file), module=shadowed) if shadowed else None
        notes.append(REFUSED.format(file=shown, why=why) if why else IGNORED.format(file=shown, files=listed))
    cells = [_code_cell(LOADER_CELL.format(files=listed), "loader")]
    for file in declared.files:
        text = sources.get(module_of(file))
        cells.append(_code_cell(text if text is not None else MISSING_CELL.format(file=file), file))
    data = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    graded = {f: files[f] for f in declared.files if f in files}
    missing = tuple(f for f in declared.files if f not in files)
    return PythonSubmission(data, digest(graded), name, declared, sources, unloadable, missing, tuple(notes))


def decode(data: bytes) -> str:
    """A source file's text, as Python reads it (a BOM or a coding declaration), for the encodings in ENCODINGS
    only; raises LookupError for another, SyntaxError or UnicodeDecodeError for bytes that are not text."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    if not ENCODINGS.fullmatch(codecs.lookup(encoding).name):
        raise LookupError(BAD_ENCODING.format(found=encoding[:40]))
    return importlib.util.decode_source(data)


def _code_cell(source: str, file: str) -> dict[str, Any]:
    cell_id = re.sub(r"[^A-Za-z0-9_-]", "-", file)
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {"jitgrade": {"file": file}},
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


# ------------------------------------------------------------------ the loader (runs in the worker)

LOADER = """\
def __jitgrade_install__(table, notes):
    import importlib.abc, importlib.util, json, linecache, sys, base64
    table, unloadable = json.loads(table)
    served = {{m: (f, base64.b64decode(text).decode("utf-8"), package) for m, (f, text, package) in table.items()}}
    by_file = {{entry[0]: module for module, entry in served.items()}}

    class Files(importlib.abc.MetaPathFinder, importlib.abc.SourceLoader):
        \"\"\"Serves the submitted and helper modules from source strings (a SourceLoader: importlib's own
        frames, and so this one's, are left out of tracebacks).\"\"\"

        def find_spec(self, fullname, path=None, target=None):
            if fullname in unloadable:
                kind, message = unloadable[fullname]
                raise (ModuleNotFoundError if kind == "missing" else ImportError)(message, name=fullname)
            if fullname not in served:
                return None
            filename, source, package = served[fullname]
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            search = [] if package else None
            return importlib.util.spec_from_file_location(fullname, filename, loader=self,
                                                          submodule_search_locations=search)

        def get_filename(self, fullname):
            return served[fullname][0]

        def get_data(self, path):
            return served[by_file[path]][1].encode("utf-8")

        def source_to_code(self, data, path):
            return compile(data.decode("utf-8"), path, "exec", dont_inherit=True)

        def replace(self, fullname, source):
            served[fullname] = (served[fullname][0], source, served[fullname][2])

    files = Files()
    finders = sys.meta_path
    path_finder = next((i for i, f in enumerate(finders) if getattr(f, "__name__", "") == "PathFinder"), len(finders))
    finders.insert(path_finder, files)
    for note in notes:
        print("jitgrade:", note, file=sys.stderr)
    return files


{loader} = __jitgrade_install__({table!r}, {notes!r})
del __jitgrade_install__
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def loader_source(submission: PythonSubmission) -> str:
    """Cell 0: install the finder serving the helpers and the student's modules, and print the submission's
    notes. Sources travel as base64 of their UTF-8 bytes, so the cell is ASCII and at most about 4/3 of their
    size whatever they hold (JSON escapes of control characters would take six times theirs)."""
    served = {m: (file, _b64(text), package) for m, (file, text, package) in submission.layout.helpers.items()}
    for file, module in zip(submission.layout.files, submission.layout.modules, strict=True):
        if module in submission.sources:
            served[module] = (file, _b64(submission.sources[module]), False)
    table = json.dumps([served, submission.unloadable])
    return LOADER.format(loader=_LOADER, table=table, notes=list(submission.notes))
