"""Grade notebooks (and .py submissions, run as the cells grader.pyfiles makes of them): read, execute in the
sandbox, run the checks, and build the result, which leads with the cells (or files) that failed (root causes)
and links each check they explain to them.

The library API under every front end (CLI, pytest plugin, batch executors). A ``Grader``
owns one sandbox zygote, so grading many notebooks pays the interpreter start-up once.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader import notebook as nb
from grader import pyfiles
from grader.assignment import Assignment
from grader.checks.base import Outcome, Session, derive_seed
from grader.sandbox.limits import Limits
from grader.sandbox.session import CellRecord, ExecutionRecord, Sandbox
from grader.sandbox.zygote import Zygote
from grader.scoring import SubmissionResult
from grader.submissions import read_submission


def new_seed() -> int:
    """A fresh hidden-case seed (recorded in every report it is used for): 63 random bits, so that no
    search over seeds can match the derived values a submission observes."""
    return secrets.randbits(63)


def submission_seed(hidden_seed: int, notebook_sha256: str) -> int:
    """The seed of one submission's hidden cases: the run's hidden seed and the notebook's own bytes, so
    hidden inputs seen by one notebook (or by a classmate's) say nothing about a resubmission's."""
    return derive_seed(hidden_seed, "submission", notebook_sha256, bits=63)


@dataclass
class Graded:
    """A result and, when the notebook ran, the executed notebook for instructors."""

    result: SubmissionResult
    executed: dict[str, Any] | None


_WARMING: list[threading.Thread] = []


def warm_reference_in_background() -> None:
    """Once per process: import the checks and load the Numba kernels in a thread (the first
    notebook executes meanwhile; its grader thread mostly waits on the sandbox's pipes)."""
    if _WARMING:
        return

    def warm() -> None:
        import grader.checks.runner  # noqa: F401  (imports the reference and registers the checks)
        from grader import truth

        if truth.available():  # a students' install replays recorded values: nothing to compile
            from reference.warmup import warm_up

            warm_up()

    thread = threading.Thread(target=warm, name="jitgrade-warm-up", daemon=True)
    _WARMING.append(thread)
    thread.start()


def finish_warm_up() -> None:
    """Wait for the warm-up thread: on a cold cache it is still compiling, and a daemon thread killed
    at exit would leave Numba's cache half written, so that the next run compiles again."""
    for thread in _WARMING:
        thread.join()


class Grader:
    """Grades submissions of one assignment, one at a time, in confined workers."""

    def __init__(
        self,
        assignment: Assignment,
        limits: Limits | None = None,
        hidden_seed: int | None = None,
        include_hidden: bool = True,
        isolation: str = "auto",
        hidden_paths: tuple[str, ...] = (),
        zygote: Zygote | None = None,
    ) -> None:
        self.assignment = assignment
        self.limits = limits or assignment.limits
        self.hidden_seed = (hidden_seed if hidden_seed is not None else new_seed()) if include_hidden else None
        self.zygote = zygote or Zygote(isolation=isolation, hidden_paths=hidden_paths, preload=assignment.preload)
        self._template: nb.Notebook | None | bool = False

    def start(self) -> Grader:
        """Start the sandbox zygote and, in the background, load the reference's compiled kernels."""
        self.zygote.launch()
        warm_reference_in_background()
        return self

    def close(self) -> None:
        """Stop the sandbox."""
        self.zygote.close()

    def __enter__(self) -> Grader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def template(self) -> nb.Notebook | None:
        """The assignment's student template, when it exists (for locked-cell edit detection)."""
        if self._template is False:
            path = self.assignment.template_path
            self._template = nb.read(path) if path is not None else None
        return self._template  # type: ignore[return-value]

    def grade_file(self, path: str | Path, student: str | None = None) -> Graded:
        """Grade a submission file (or folder); an unreadable one gives a zero result that says why."""
        path = Path(path)
        name = student or path.stem
        try:
            notebook = read_submission(path, self.assignment)
        except nb.NotebookError as exc:
            message = str(exc).replace(str(path), path.name)  # students see this: no grader-side paths
            return Graded(
                SubmissionResult(name, path.name, None, self.assignment, self.hidden_seed, error=message), None
            )
        return self.grade(notebook, name)

    def grade(
        self, notebook: nb.Notebook, student: str, through: Callable[[Session], Session] | None = None
    ) -> Graded:
        """Execute one notebook (or .py submission) in a fresh worker and run every check against it (`through`:
        how the checks see the worker, e.g. recording's every-answer-wrong view, grader.assign)."""
        started = time.monotonic()
        cells = notebook.code_cells()
        labels: dict[int, str] = {}
        tamper: nb.Tamper | None
        if isinstance(notebook, pyfiles.PythonSubmission):
            definitions = notebook.definitions()
            replays = notebook.replays(definitions)
            labels, tamper = notebook.labels(), notebook.tamper()
        else:
            template = self.template()
            definitions = nb.notebook_definitions(cells)
            replays = {index: d.replay for index, d in definitions.items() if d.replay is not None}
            tamper = nb.tamper(notebook, template) if template is not None else None
        with Sandbox(self.zygote, cells, self.limits, replays) as sandbox:
            record = sandbox.execute()
            from grader.checks.runner import run_checks  # the Numba reference loads while the notebook ran

            seed = None if self.hidden_seed is None else submission_seed(self.hidden_seed, notebook.sha256)
            outcomes = run_checks(through(sandbox) if through else sandbox, self.assignment, seed)
            record = sandbox.record()  # with the restarts and events the calls caused
        if isinstance(notebook, pyfiles.PythonSubmission) and notebook.notes:
            record = dataclasses.replace(record, events=[*notebook.notes, *record.events])
        defines = self.assignment.defines()
        causes = root_causes(record, definitions, set(defines.values()), self.limits, labels)
        result = SubmissionResult(
            student=student,
            notebook=Path(notebook.name).name,
            notebook_sha256=notebook.sha256,
            assignment=self.assignment,
            hidden_seed=self.hidden_seed,
            outcomes=link_causes(outcomes, causes, "that file" if labels else "that cell", defines),
            execution=record,
            root_causes=causes,
            tamper=tamper,
            wall_seconds=time.monotonic() - started,
        )
        return Graded(result, nb.executed(notebook, record.cells))


# ------------------------------------------------------------------ root causes: failed cells first

CELL = "cell {index} (`{first_line}`)"  # a cell, as students can find it in their notebook
CELL_FAILED = "{cell} failed: {failure}"
NOT_RUN = "{cell} was not run: {evalue}"
RAN_OUT = {  # a cell the sandbox stopped: its status (or exception) -> what happened, in words
    "timeout": "ran out of time ({limits.cell_timeout:g} s) at its top level",
    "MemoryError": "ran out of memory ({limits.memory_mb} MiB) at its top level",
    "crashed": "stopped the notebook's process at its top level",
}
KEPT = "kept the definitions of {names} from it; the cell's other statements were skipped"
NOTHING_KEPT = "no function or class of it could be kept; the cell's other statements were skipped"
REPLAY_FAILED = "its definitions, replayed on their own, failed too ({why}), so the whole cell was skipped"
UNSAFE = "lost {names}: decorators, default arguments or annotations that run code cannot be replayed on their own"
SHOULD_DEFINE = "it should have defined {names}"
CAUSED_BY = "{name} was to be defined by {cell}, which failed first"
FAILED_IN_IMPORT = "the error is in {file}, which it imports"
MISSING_BECAUSE = "{function}() is not defined because {cause}. Fix {unit} first: this check needs {function}()."
SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")  # nothing in such a cell ran
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d{1,9})\b")  # the worker's text: bounded
_INPUT_LINE = re.compile(r" \(<ipython-input-[\w-]*>, line (\d{1,9})\)$")
# A frame of a submitted .py file in the worker's traceback (IPython's "File q2_neural.py:12"), and where a
# syntax error is ("(q2_neural.py, line 12)"); the file names are the assignment's: bounded, no paths
_FILE_FRAME = re.compile(r"^\s*File (?P<file>[\w.-]{1,200}\.py):(?P<line>\d{1,9})(?P<rest>[^\n]*)$", re.MULTILINE)
_SYNTAX_AT = re.compile(r"\((?P<file>[\w.-]{1,200}\.py), line (?P<line>\d{1,9})\)$")
_UNDEFINED = re.compile(r"^name '(\w+)' is not defined")
# A check's message about an undefined function: MissingFunction's (whatever the check put before it), or a
# StudentError of a call that used a name the notebook does not define.
_UNDEFINED_IN_CHECK = re.compile(r"the notebook does not define (\w+)\(\)|\(\) raised NameError: name '(\w+)' is not")
MAX_EVALUE = 300  # characters of a cell's error message quoted in a root cause
MAX_ROOT_CAUSES = 20  # failed cells reported in all; past them, only those that cost or kept a definition


def _traceback(cell: CellRecord) -> str:
    return "\n".join(line for o in cell.outputs if o.get("output_type") == "error" for line in o.get("traceback", []))


def error_line(cell: CellRecord, file: str | None = None) -> int | None:
    """The line of the cell's top level where its error happened, from its traceback (else its message); for a
    cell that imports a submitted `file`, the line of that file's top level."""
    if file is not None:
        return next((line for name, line in reversed(_module_frames(cell)) if name == file), None)
    found = _CELL_LINE.search(_traceback(cell)) or _INPUT_LINE.search(cell.error or "")
    return int(found.group(1)) if found else None


def _module_frames(cell: CellRecord) -> list[tuple[str, int]]:
    """(file, line) of each top-level frame of a submitted file in the cell's traceback, outermost first, then
    where a syntax error is."""
    frames = [
        (m.group("file"), int(m.group("line")))
        for m in _FILE_FRAME.finditer(_traceback(cell))
        if not re.search(r"\bin \w", m.group("rest"))  # a function's frame: not the module's top level
    ]
    syntax = _SYNTAX_AT.search(cell.error or "")
    return frames + ([(syntax.group("file"), int(syntax.group("line")))] if syntax else [])


@dataclass
class FailedCell:
    """A cell that did not run through: its error, what the sandbox did, and what it cost (for root_causes)."""

    cell: CellRecord
    label: str  # how students find the cell: "cell 3 (`def softmax(x):`)", or a file's name
    ename: str
    evalue: str
    line: int | None
    first_line: str
    resource: str | None  # a RAN_OUT phrase: the sandbox stopped the cell
    replay_failure: str | None  # why its definitions-only replay failed, if it did
    kept: list[str]
    functions: list[str]  # the assignment's functions it should have defined and did not
    caused_by: tuple[str, int] | None  # (name, cell): its NameError is of a name that earlier failed cell lost
    newer_python: str | None = None  # its syntax error is syntax of a newer Python (notebook.newer_python)
    cause_label: str = ""  # how messages name the caused_by cell
    imported: str | None = None  # the submitted file (another one, which it imports) where its error is

    def message(self, limits: Limits) -> str:
        """What happened to the cell, in one sentence."""
        cell = self.label
        listed = ", ".join(f"{name}()" for name in self.functions)
        if self.resource is not None:
            parts = [f"{cell} {self.resource.format(limits=limits)}"]
            if self.replay_failure:
                parts.append(REPLAY_FAILED.format(why=self.replay_failure[:MAX_EVALUE]))
            else:
                parts.append(KEPT.format(names=", ".join(self.kept)) if self.kept else NOTHING_KEPT)
                parts += [UNSAFE.format(names=listed)] if listed else []
        else:
            where = f" at line {self.line}" if self.line is not None else ""
            failure = f"{self.ename}{where}: {self.evalue}" if self.evalue else f"{self.ename}{where}"
            if self.cell.status == "not_run":
                parts = [NOT_RUN.format(cell=cell, evalue=self.evalue)]
            else:
                parts = [CELL_FAILED.format(cell=cell, failure=failure)]
            parts += [self.newer_python] if self.newer_python else []
            parts += [SHOULD_DEFINE.format(names=listed)] if listed else []
            parts += [FAILED_IN_IMPORT.format(file=self.imported)] if self.imported else []
        if self.caused_by is not None:
            parts.append(CAUSED_BY.format(name=self.caused_by[0], cell=self.cause_label))
        return "; ".join(parts)

    def to_dict(self, limits: Limits) -> dict[str, Any]:
        """The report's root_causes entry (see report.schema.json)."""
        return {
            "cell": self.cell.index,
            "line": self.line,
            "ename": self.ename,
            "evalue": self.evalue,
            "functions": self.functions,
            "kept": self.kept,
            "caused_by": self.caused_by[1] if self.caused_by is not None else None,
            "message": self.message(limits),
        }


def _label(index: int, first_line: str, labels: dict[int, str]) -> str:
    """How messages name a cell: its file, else by its first line, else by its number."""
    if index in labels:
        return labels[index]
    return CELL.format(index=index, first_line=first_line) if first_line else f"cell {index}"


def root_causes(
    record: ExecutionRecord,
    definitions: dict[int, nb.CellDefinitions],
    problems: set[str],
    limits: Limits,
    labels: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """One entry per cell that did not run through, in cell order (the first MAX_ROOT_CAUSES, then only those
    that cost or kept a definition): its error (cell, line, ename, evalue), the problem functions it should
    have defined and did not (`functions`), what a definitions-only replay kept, the earlier failed cell that
    explains it (a NameError of a name that cell should have defined), and the whole story in one `message`.
    `labels` names the cells that import a submitted .py file by that file: the line is then that file's, and
    an error in another submitted file it imports is said to be there."""
    labels = labels or {}
    cell_of = {file: index for index, file in labels.items()}
    failed: list[FailedCell] = []
    lost_in: dict[str, int] = {}  # a name a failed cell should have defined -> that cell
    for cell in record.cells:
        if cell.status == "ok":
            continue
        raised = cell.status == "error"
        ename, _, evalue = (cell.error or "").partition(": ") if raised else (cell.status, "", cell.error or "")
        evalue = _INPUT_LINE.sub("", evalue)[:MAX_EVALUE]
        file = labels.get(cell.index)
        line = error_line(cell, file) if raised else None
        frames = _module_frames(cell) if raised and file is not None else []
        imported = frames[-1][0] if frames and frames[-1][0] != file and frames[-1][0] in cell_of else None
        defs = definitions.get(cell.index, nb.CellDefinitions({}))
        resource = RAN_OUT.get(ename)
        replay = record.replayed.get(cell.index, "") if resource else ""
        kept = list(defs.replayed) if resource and replay is None else []
        unparsed = ename in SYNTAX_ERRORS and imported is None  # nothing of it ran
        # a module whose import failed binds nothing at all, wherever it failed
        lost = [n for n in defs.defined_from(None if unparsed or file is not None else line) if n not in kept]
        named = _UNDEFINED.match(evalue) if ename == "NameError" else None
        caused_by = (named.group(1), lost_in[named.group(1)]) if named and named.group(1) in lost_in else None
        lost_in.update(dict.fromkeys(lost, cell.index))
        first_line = defs.first_line.replace("`", "'")
        functions = [n for n in lost if n in problems]
        newer = defs.newer_python if unparsed else None
        cause_label = labels.get(caused_by[1], f"cell {caused_by[1]}") if caused_by else ""
        failed.append(
            FailedCell(
                cell,
                _label(cell.index, first_line, labels),
                ename,
                evalue,
                line,
                first_line,
                resource,
                replay,
                kept,
                functions,
                caused_by,
                newer_python=newer,
                cause_label=cause_label,
                imported=imported,
            )
        )
    return [f.to_dict(limits) for i, f in enumerate(failed) if i < MAX_ROOT_CAUSES or f.functions or f.kept]


def link_causes(
    outcomes: list[Outcome],
    causes: list[dict[str, Any]],
    unit: str = "that cell",
    defines: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """Checks of a function that is not defined because a cell failed (or that calls one) say so, and name
    that cell (`cause`); `unit` is what students fix ("that cell", "that file"); `defines` maps a problem to the
    name the student defines for it (a class, for a method binding), by default the problem's own name."""
    by_function = {name: cause for cause in causes for name in cause["functions"]}  # the last cell wins
    by_cell = {cause["cell"]: cause for cause in causes}
    linked = []
    for o in outcomes:
        found = _UNDEFINED_IN_CHECK.search(o.message or "")
        own = (defines or {}).get(o.problem, o.problem)
        name = own if o.details.get("missing") else found and (found.group(1) or found.group(2))
        cause = by_function.get(name) if name is not None else None
        if cause is None:
            linked.append(o)
            continue
        story = cause["message"]
        if cause["caused_by"] in by_cell:
            story += f" ({by_cell[cause['caused_by']]['message']})"
        message = MISSING_BECAUSE.format(function=name, cause=story, unit=unit)
        if name != own:
            message = f"{(o.message or '').rstrip('.')}. {message}"
        linked.append(dataclasses.replace(o, message=message, details={**o.details, "cause": cause["cell"]}))
    return linked
