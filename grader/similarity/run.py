"""A similarity run: gather the class and the reference corpora, fingerprint every document once on
the grading executors (local processes or a Dask cluster), compare through the index, write the report.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader import pyfiles
from grader.assignment import Assignment
from grader.executors import Crashed, Task, run_pool, task_of
from grader.similarity import extract
from grader.similarity.compare import ARCHIVE, CLASS, KNOWN, MASTER, Document, Result, Settings, compare
from grader.similarity.fingerprint import fingerprint
from grader.submissions import Submission

PROCESS_DIED = "the process fingerprinting this file died {count} times; it was not compared"
NOT_COMPARED = "not compared: {error}"
NO_REFERENCE_FOLDER = "{folder}: no such folder (expected a folder of {corpus} solutions: notebooks or .py files)"
NO_REFERENCE_FILES = "{folder}: no notebooks (.ipynb) or Python files (.py) in this {corpus} folder"
MAX_REFERENCE_ENTRIES = 1_000_000  # files and folders looked at in one reference folder


@dataclass(frozen=True)
class Job:
    """One document to fingerprint: its corpus and its task (key, label, file name and bytes, or why there are
    none); `packed` when the bytes are a .py assignment's files as grader.pyfiles packs them."""

    corpus: str
    task: Task
    packed: bool = False


@dataclass(frozen=True)
class Basis:
    """What every fingerprinting process needs: the template's cells and fingerprints, and the settings."""

    template: dict[str, str]
    ignored: frozenset[int]
    settings: Settings


def basis(assignment: Assignment, settings: Settings) -> Basis:
    """The assignment's template code and its fingerprints (boilerplate in every document)."""
    template = extract.template_of(assignment)
    ignored = fingerprint(extract.template_pieces(template), settings.k, settings.window).unique
    return Basis(template, ignored, settings)


def fingerprint_job(shared: Basis, job: Job) -> Document:
    """Extract and fingerprint one document (in a grading process); whatever goes wrong is its own error."""
    task = job.task
    document = Document(f"{job.corpus}:{task.key}", job.corpus, task.student)
    if task.data is None:
        document.error = task.problem or "no file"
        return document
    try:
        document.pieces = extract.pieces_of(task.name, task.data, shared.template, job.packed)
        document.fingerprint = fingerprint(document.pieces, shared.settings.k, shared.settings.window, shared.ignored)
    except Exception as exc:  # noqa: BLE001 - a hostile or broken file costs only its own comparison
        document.pieces, document.error = [], NOT_COMPARED.format(error=exc)
    return document


def reference_files(folder: Path, corpus: str) -> list[Submission]:
    """Every notebook and Python file under a reference folder, labelled by its path inside it."""
    if not folder.is_dir():
        raise FileNotFoundError(NO_REFERENCE_FOLDER.format(folder=folder, corpus=corpus))
    try:  # without recursion, links not followed: the folder holds past students' files, nested as they were
        entries = pyfiles.walk(folder, folder.name, "notebooks or .py files", MAX_REFERENCE_ENTRIES)
    except pyfiles.PyFilesError as exc:
        raise FileNotFoundError(str(exc)) from None
    found = [
        Submission(str(p), folder.joinpath(*p.parts))
        for p, regular in sorted(entries)
        if regular and p.suffix in extract.SUFFIXES
    ]
    if not found:
        raise FileNotFoundError(NO_REFERENCE_FILES.format(folder=folder, corpus=corpus))
    return found


def jobs(
    submissions: Sequence[Submission], assignment: Assignment, archive: Path | None = None, known: Path | None = None
) -> Iterator[Job]:
    """The class's submissions, then the master (when installed), the archive and the known solutions."""
    corpora: list[tuple[str, Iterable[Submission]]] = [(CLASS, submissions)]
    if assignment.master.exists():  # a notebook, or the folder of a .py assignment's files
        master = Submission(f"master solution of {assignment.name}", assignment.master,
                            python=assignment.master.is_dir())
        corpora.append((MASTER, [master]))
    for corpus, folder in ((ARCHIVE, archive), (KNOWN, known)):
        if folder is not None:
            corpora.append((corpus, reference_files(folder, corpus)))
    for corpus, members in corpora:
        for s in members:
            yield Job(corpus, _task(s), s.python)


def _task(submission: Submission) -> Task:
    """The submission's task; a submission that cannot be read is its own problem, never the run's."""
    try:
        return task_of(submission.student, submission)
    except (ValueError, OSError) as exc:
        return Task(submission.student, submission.student, "", None, NOT_COMPARED.format(error=exc))


def fingerprint_all(
    shared: Basis, work: Iterable[Job], processes: int = 1, scheduler: str | None = None
) -> list[Document]:
    """Every job's document, in the order given: here, on `processes` local processes, or on a Dask cluster."""
    fn = functools.partial(fingerprint_job, shared)
    work = list(work)
    if scheduler:
        return _on_dask(fn, work, scheduler)
    if processes <= 1:
        return [fn(job) for job in work]
    done = {id(job): result for job, result in run_pool(fn, work, processes)}  # as they finish: put back in order
    return [_document(job, done[id(job)]) for job in work]


def _document(job: Job, result: Document | Crashed) -> Document:
    """The job's document, or one saying that fingerprinting it took its process down every time."""
    if isinstance(result, Crashed):
        return Document(f"{job.corpus}:{job.task.key}", job.corpus, job.task.student,
                        error=PROCESS_DIED.format(count=result.count))
    return result


def _on_dask(fn: functools.partial[Document], work: list[Job], address: str) -> list[Document]:
    try:
        from distributed import Client
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'jitgrade[dask]'") from None
    with Client(address, set_as_default=False) as client:
        futures = client.map(fn, work, pure=False)
        return list(client.gather(futures))


def run(
    assignment: Assignment,
    submissions: Sequence[Submission],
    settings: Settings,
    archive: Path | None = None,
    known: Path | None = None,
    processes: int = 1,
    scheduler: str | None = None,
) -> Result:
    """Compare a class's submissions with each other and with the reference corpora."""
    shared = basis(assignment, settings)
    documents = fingerprint_all(shared, jobs(submissions, assignment, archive, known), processes, scheduler)
    return compare(documents, settings)
