"""Run many submissions: on a pool of local processes, on a Dask cluster, or in this process.

Each grading process owns one ``Grader`` (and so one sandbox zygote) for its whole life, so
a submission pays neither interpreter start-up nor Numba compilation (the on-disk cache is
shared). A task carries the notebook's bytes, not its path (a remote worker cannot read the
instructor's disk), and returns plain text (the canonical JSON report, the executed notebook,
the feedback page): the caller only writes files, and whatever the executor, the reports are
the same bytes apart from timings.

Each task carries the key of its row (the report folder, unique in the batch) and its output comes
back with the same key, so a report can only land in its own submission's folder and row.

What can go wrong, and what it costs:
- a bad notebook (crash, hang, garbage) costs only its own report: the sandbox turns it into a result;
- anything else that raises while grading one submission or rendering its reports (a grader bug
  a student found) becomes that submission's report, saying so;
- a grading process that dies (the OOM killer, a stray signal) breaks the local pool: a new pool
  takes over, and the submissions that were in flight are graded again, each alone, so that one
  that kills its grading process every time is found and gets a report saying so (on Dask, the
  scheduler retries on other workers, and its ``KilledWorker`` becomes that report);
- the batch process dying (SIGKILL of its process group, Ctrl-C) takes the pool and the sandboxes
  with it: each pool process runs in a session of its own, so a kill of the batch's group never
  hits its zygote half-way, and it watches the batch process; when that goes, it asks its zygote
  to stop every worker it forked, then exits.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import multiprocessing.util
import os
import select
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from grader.sandbox.limits import Limits
from grader.submissions import Submission

GRADING_PROCESS_DIED = (
    "the grading process died {count} times while grading this notebook alone (killed by the system, "
    "for example out of memory); it was not graded: rerun the same command to try again"
)
DASK_WORKER_DIED = (
    "the Dask worker grading this notebook died every time it was tried ({error}); it was not graded: "
    "rerun the same command to try again"
)
INTERNAL_ERROR = "internal grader error while grading this notebook: {error!r}; please report it"
MAX_CRASHES = 2  # times a submission may take its grading process down, alone, before it is given up
ZYGOTE_STOP_SECONDS = 5.0
# Modules the fork server imports once, so that every pool process starts with them loaded.
PRELOAD = ["grader.executors", "grader.grading", "grader.checks.runner", "grader.reports.html"]

T = TypeVar("T")
R = TypeVar("R")


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
class Task:
    """One submission as sent to a grading process: its row's key, the notebook's file name and bytes (`python`:
    the .py files as pyfiles.pack packs them), or why there are none."""

    key: str
    student: str
    name: str
    data: bytes | None
    problem: str | None = None
    python: bool = False


@dataclass(frozen=True)
class Output:
    """What grading one submission produced, as text ready to be written, under its task's key."""

    key: str
    report: str
    executed: str | None
    feedback: str | None


@dataclass(frozen=True)
class Crashed:
    """A task that took its grading process down every time it ran alone."""

    count: int


def task_of(key: str, submission: Submission) -> Task:
    """Read a submission into the task of row `key` (here, on the machine that has the files)."""
    from grader import notebook as nb

    s = submission
    if s.path is None:
        return Task(key, s.student, "", None, s.problem or "no notebook")
    try:
        if s.python:  # .py files: the task carries them packed in one canonical archive
            from grader import pyfiles

            return Task(key, s.student, s.path.name, pyfiles.pack(pyfiles.files_of(s.path)), python=True)
        if s.path.stat().st_size > nb.MAX_NOTEBOOK_BYTES or s.path.is_dir():
            nb.read(s.path)  # raises the one-line message every front end gives
        return Task(key, s.student, s.path.name, s.path.read_bytes())
    except nb.NotebookError as exc:  # students see this: no grader-side paths
        return Task(key, s.student, s.path.name, None, str(exc).replace(str(s.path), s.path.name))
    except OSError as exc:
        return Task(key, s.student, s.path.name, None, f"{s.path.name} cannot be read: {exc.strerror or exc}")


# --------------------------------------------------------------------------- grading (in the grading process)

_LOCAL = threading.local()  # this thread's Graders (Dask may run several task threads per process)
_ALL: list[Any] = []  # every Grader of this process, to stop at exit
_ALL_LOCK = threading.Lock()


def _grader(settings: Settings) -> Any:
    """This thread's Grader for these settings (started once, stopped when the process exits)."""
    graders = _LOCAL.__dict__.setdefault("graders", {})
    if settings not in graders:
        from grader.assignment import load
        from grader.grading import Grader

        grader = Grader(load(settings.assignment), settings.limits, settings.hidden_seed,
                        isolation=settings.isolation, hidden_paths=settings.hidden_paths)
        grader.start()
        graders[settings] = grader
        with _ALL_LOCK:
            first = not _ALL
            _ALL.append(grader)
        if first:
            atexit.register(stop_graders)
            multiprocessing.util.Finalize(None, stop_graders, exitpriority=10)  # pool processes skip atexit
    return graders[settings]


def _stop_zygote(zygote: Any) -> None:
    """Ask the zygote to kill and reap every worker it forked, give it a moment, then close it."""
    control, proc = zygote.control, zygote.proc
    if control is not None:
        with contextlib.suppress(OSError):
            control.send(b'{"op": "exit"}')
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=ZYGOTE_STOP_SECONDS)
    zygote.close()


def stop_graders() -> None:
    """Stop every sandbox of this process, workers included (at exit, or when the batch is gone)."""
    with _ALL_LOCK:
        graders = list(_ALL)
        _ALL.clear()
    for grader in graders:
        with contextlib.suppress(Exception):  # best effort on the way out; the next one must still be stopped
            _stop_zygote(grader.zygote)


@functools.lru_cache(maxsize=8)
def _assignment(path: str) -> Any:
    from grader.assignment import load

    return load(path)


def _output(settings: Settings, task: Task, result: Any, executed: Any = None, feedback: bool = True) -> Output:
    from grader import notebook as nb
    from grader.reports.files import dumps_json

    report = result.to_dict()
    page = None
    if feedback and settings.feedback:
        from grader.reports import html

        page = html.feedback(report)
    return Output(task.key, dumps_json(report), nb.dumps(executed) if executed is not None else None, page)


def _ungraded(settings: Settings, task: Task, error: str) -> Any:
    from grader.scoring import SubmissionResult

    return SubmissionResult(task.student, task.name, None, _assignment(settings.assignment), settings.hidden_seed,
                            error=error)


def not_graded(settings: Settings, task: Task, error: str) -> Output:
    """The report of a submission that could not be graded, saying why (no sandbox needed)."""
    return _output(settings, task, _ungraded(settings, task, error))


def grade_one(settings: Settings, task: Task) -> Output:
    """Grade one submission in this process (the task every executor runs). Whatever goes wrong with this
    submission, reports included, becomes its report; only a sandbox that cannot start stops the batch."""
    from grader import notebook as nb
    from grader.submissions import load_submission

    notebook, problem = None, task.problem or "no notebook"
    if task.data is not None:
        try:
            notebook = load_submission(task.data, task.name, _assignment(settings.assignment), task.python)
        except nb.NotebookError as exc:
            problem = str(exc)
    grader = _grader(settings) if notebook is not None else None  # no sandbox for what cannot be graded
    try:
        if grader is None:
            return not_graded(settings, task, problem)
        graded = grader.grade(notebook, task.student)
        return _output(settings, task, graded.result, graded.executed)
    except Exception as exc:  # a grader bug costs this submission a report that says so (and no page), not the batch
        return _output(settings, task, _ungraded(settings, task, INTERNAL_ERROR.format(error=exc)), feedback=False)


# --------------------------------------------------------------------------- pool processes


def _start_pool_process(batch_pid: int) -> None:
    """Initializer of every pool process: a session of its own, and follow the batch process out."""
    with contextlib.suppress(OSError):
        os.setsid()
    signal.signal(signal.SIGTERM, _stop_and_exit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch process's to handle
    threading.Thread(target=_watch, args=(batch_pid,), name="jitgrade-watch-batch", daemon=True).start()


def _watch(batch_pid: int) -> None:
    """Wait for the batch process to end, then stop this process's sandboxes and exit."""
    try:
        fd = os.pidfd_open(batch_pid)  # Linux >= 5.3: readable once the process has exited
    except ProcessLookupError:
        _stop_and_exit()
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while _alive(batch_pid):
            time.sleep(0.25)
    _stop_and_exit()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_and_exit(*_: object) -> None:
    stop_graders()
    os._exit(1)


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # ignored once the fork server runs
    return context


def _new_pool(jobs: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=_start_pool_process,
                                  initargs=(os.getpid(),))


def _stop_pool(pool: cf.ProcessPoolExecutor, finished: bool) -> None:
    """Shut a pool down: politely when its work is done, at once otherwise (its processes stop their sandboxes)."""
    if finished:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()  # SIGTERM: _stop_and_exit, which reaps the sandbox workers first
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(ZYGOTE_STOP_SECONDS + 1)


def run_pool(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> Iterator[tuple[T, R | Crashed]]:
    """fn(item) for every item on `jobs` local processes, as results arrive; survives processes dying.

    At most 2 * jobs items are in flight (the others are not even read yet). When a process dies,
    a new pool takes over and the items that were in flight run again one at a time, alone in the
    pool: one that takes its process down MAX_CRASHES times so comes back as ``Crashed``. Any other
    exception raised by fn is raised here, once the pool is stopped.
    """
    source = enumerate(items)
    fresh: deque[tuple[int, T]] = deque()  # taken back from a pool that broke before it got them
    suspects: deque[tuple[int, T]] = deque()  # in flight when a process died: each runs alone
    crashes: Counter[int] = Counter()
    barren = 0  # pools in a row that broke before finishing anything
    while True:
        pool = _new_pool(jobs)
        running: dict[cf.Future[R], tuple[int, T]] = {}
        alone: tuple[int, T] | None = None
        lost: list[tuple[int, T]] = []
        completed = broken = False
        try:
            while not broken:
                entry: tuple[int, T] | None = None
                try:
                    if suspects and alone is None:
                        entry = alone = suspects.popleft()
                        running[pool.submit(fn, entry[1])] = entry
                    while not suspects and alone is None and len(running) < 2 * jobs:
                        entry = fresh.popleft() if fresh else next(source, None)
                        if entry is None:
                            break
                        running[pool.submit(fn, entry[1])] = entry
                    entry = None
                except BrokenProcessPool:
                    (suspects if entry is alone else fresh).appendleft(entry)  # type: ignore[arg-type]
                    alone = None if entry is alone else alone
                    broken = True
                    break
                if not running:
                    completed = True
                    return
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    entry = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        lost.append(entry)
                        broken = True
                        continue
                    barren = 0
                    alone = None if entry is alone else alone
                    yield entry[1], result
            # A process died: whatever had not finished was in flight.
            for future, entry in running.items():
                if future.done() and future.exception() is None:
                    barren = 0
                    yield entry[1], future.result()
                else:
                    lost.append(entry)
            barren += 1
            if barren > 2 * MAX_CRASHES:
                raise BrokenProcessPool(f"the grading processes died {barren} times in a row, before finishing "
                                        "anything: see the messages above")
            if alone is not None and lost == [alone]:
                crashes[alone[0]] += 1
                if crashes[alone[0]] >= MAX_CRASHES:
                    yield alone[1], Crashed(crashes[alone[0]])
                else:
                    suspects.appendleft(alone)
            else:
                suspects.extend(lost)
        finally:
            _stop_pool(pool, completed)


# --------------------------------------------------------------------------- executors


def run_local(settings: Settings, submissions: Mapping[str, Submission], jobs: int) -> Iterator[Output]:
    """Grade on `jobs` local processes the submissions keyed by row; results arrive as they finish."""
    tasks = (task_of(key, s) for key, s in submissions.items())
    for task, result in run_pool(functools.partial(grade_one, settings), tasks, jobs):
        if isinstance(result, Crashed):
            yield not_graded(settings, task, GRADING_PROCESS_DIED.format(count=result.count))
        else:
            yield result


def run_dask(settings: Settings, submissions: Mapping[str, Submission], address: str) -> Iterator[Output]:
    """Grade on a dask.distributed cluster (its workers need jitgrade installed) the submissions keyed by row;
    results arrive as they finish."""
    try:
        from distributed import Client, KilledWorker, as_completed
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'jitgrade[dask]'") from None
    batch = uuid.uuid4().hex[:12]
    with Client(address, set_as_default=False) as client:
        threads = sum(client.nthreads().values()) or 1
        window = max(4, 2 * threads)  # enough queued to keep every worker busy, few notebooks in memory
        tasks = (task_of(key, s) for key, s in submissions.items())
        running: dict[Any, Task] = {}
        stream = as_completed(loop=client.loop)

        def submit() -> None:
            task = next(tasks, None)
            if task is not None:
                future = client.submit(grade_one, settings, task, pure=False, key=f"jitgrade-{batch}-{task.key}")
                running[future] = task
                stream.add(future)

        for _ in range(window):
            submit()
        for future in stream:
            task = running.pop(future)
            try:
                output = future.result()
            except KilledWorker as exc:
                output = not_graded(settings, task, DASK_WORKER_DIED.format(error=exc))
            finally:
                future.release()
            submit()
            yield output


def executor(jobs: int, scheduler: str | None) -> Callable[[Settings, Mapping[str, Submission]], Iterator[Output]]:
    """The executor for the command-line options."""
    if scheduler:
        return lambda settings, subs: run_dask(settings, subs, scheduler)
    return lambda settings, subs: run_local(settings, subs, max(1, jobs))


def assignment_reference(directory: Path) -> str:
    """How grading processes should name an assignment: by name when bundled (resolvable wherever
    jitgrade is installed, e.g. on Dask workers), else by the absolute path of its definition."""
    from grader.assignment import assignment_roots

    directory = directory.resolve()
    if any(directory.parent == root.resolve() for root in assignment_roots()):
        return directory.name
    return str(directory / "assignment.toml")
