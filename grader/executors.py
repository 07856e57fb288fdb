"""Run many submissions: in this process, on a pool of local processes, or on a Dask cluster.

Each grading process owns one ``Grader`` (and so one sandbox zygote) for its whole life, so
a submission pays neither interpreter start-up nor Numba compilation (the on-disk cache is
shared). A task takes a submission and returns plain text (the canonical JSON report, the
executed notebook, the feedback page): the parent only writes files, and whatever the
executor, the reports are the same bytes apart from timings.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from grader.sandbox.limits import Limits
from grader.submissions import Submission


@dataclass(frozen=True)
class Settings:
    """Everything a grading process needs to grade like every other one (picklable, plain data)."""

    assignment: str
    limits: Limits
    hidden_seed: int
    isolation: str = "auto"
    hidden_paths: tuple[str, ...] = ()
    feedback: bool = True


@dataclass(frozen=True)
class Output:
    """What grading one submission produced, as text ready to be written."""

    student: str
    report: str
    executed: str | None
    feedback: str | None


_GRADERS: dict[Settings, Any] = {}


def _grader(settings: Settings) -> Any:
    """This process's Grader for these settings (started once, stopped at exit)."""
    if settings not in _GRADERS:
        from grader.assignment import load
        from grader.grading import Grader

        grader = Grader(load(settings.assignment), settings.limits, settings.hidden_seed,
                        isolation=settings.isolation, hidden_paths=settings.hidden_paths)
        grader.start()
        _GRADERS[settings] = grader
        atexit.register(grader.close)
    return _GRADERS[settings]


def grade_one(settings: Settings, student: str, path: str | None, problem: str | None) -> Output:
    """Grade one submission in this process (the task every executor runs)."""
    from grader import notebook as nb
    from grader.grading import Graded
    from grader.reports.files import dumps_json
    from grader.scoring import SubmissionResult

    grader = _grader(settings)
    if path is None:
        graded = Graded(SubmissionResult(student, "", None, grader.assignment, settings.hidden_seed,
                                         error=problem or "no notebook"), None)
    else:
        try:
            graded = grader.grade_file(path, student)
        except Exception as exc:  # a grader bug costs this submission a report that says so, not the batch
            error = f"internal grader error while grading this notebook: {exc!r}; please report it"
            graded = Graded(SubmissionResult(student, path, None, grader.assignment, settings.hidden_seed,
                                             error=error), None)
    report = graded.result.to_dict()
    feedback = None
    if settings.feedback:
        from grader.reports import html

        feedback = html.feedback(report)
    executed = nb.dumps(graded.executed) if graded.executed is not None else None
    return Output(student, dumps_json(report), executed, feedback)


def _task(settings: Settings, s: Submission) -> tuple[Settings, str, str | None, str | None]:
    return settings, s.student, str(s.path) if s.path else None, s.problem


def run_inline(settings: Settings, submissions: Sequence[Submission]) -> Iterator[Output]:
    """Grade one after the other in this process."""
    for s in submissions:
        yield grade_one(*_task(settings, s))


def run_local(settings: Settings, submissions: Sequence[Submission], jobs: int) -> Iterator[Output]:
    """Grade on `jobs` local processes; results arrive as they finish."""
    context = multiprocessing.get_context("forkserver")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(grade_one, *_task(settings, s)) for s in submissions]
        for future in cf.as_completed(futures):
            yield future.result()


def run_dask(settings: Settings, submissions: Sequence[Submission], address: str) -> Iterator[Output]:
    """Grade on a dask.distributed cluster (its workers need jitgrade installed)."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'jitgrade[dask]'") from None
    with Client(address) as client:
        futures = [client.submit(grade_one, *_task(settings, s), pure=False) for s in submissions]
        for future in as_completed(futures):
            yield future.result()


def executor(jobs: int, scheduler: str | None) -> Callable[[Settings, Sequence[Submission]], Iterator[Output]]:
    """The executor for the command-line options."""
    if scheduler:
        return lambda settings, subs: run_dask(settings, subs, scheduler)
    if jobs > 1:
        return lambda settings, subs: run_local(settings, subs, jobs)
    return run_inline
