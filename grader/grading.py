"""Grade notebooks: read, execute in the sandbox, run the checks, and build the result.

The library API under every front end (CLI, pytest plugin, batch executors). A ``Grader``
owns one sandbox zygote, so grading many notebooks pays the interpreter start-up once.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader import notebook as nb
from grader.assignment import Assignment
from grader.sandbox.limits import Limits
from grader.sandbox.session import Sandbox
from grader.sandbox.zygote import Zygote
from grader.scoring import SubmissionResult


def new_seed() -> int:
    """A fresh hidden-case seed (recorded in every report it is used for)."""
    return secrets.randbelow(2**31 - 1)


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
        """Grade a notebook file; an unreadable file gives a zero result that says why."""
        path = Path(path)
        name = student or path.stem
        try:
            notebook = nb.read(path)
        except nb.NotebookError as exc:
            message = str(exc).replace(str(path), path.name)  # students see this: no grader-side paths
            return Graded(
                SubmissionResult(name, path.name, None, self.assignment, self.hidden_seed, error=message), None
            )
        return self.grade(notebook, name)

    def grade(self, notebook: nb.Notebook, student: str) -> Graded:
        """Execute one notebook in a fresh worker and run every check against it."""
        started = time.monotonic()
        template = self.template()
        edited = nb.edited_locked_cells(notebook, template) if template is not None else []
        with Sandbox(self.zygote, notebook.code_cells(), self.limits) as sandbox:
            record = sandbox.execute()
            from grader.checks.runner import run_checks  # the Numba reference loads while the notebook ran

            outcomes = run_checks(sandbox, self.assignment, self.hidden_seed)
            record = sandbox.record()  # with the restarts and events the calls caused
        result = SubmissionResult(
            student=student,
            notebook=Path(notebook.name).name,
            notebook_sha256=notebook.sha256,
            assignment=self.assignment,
            hidden_seed=self.hidden_seed,
            outcomes=outcomes,
            execution=record,
            edited_cells=edited,
            wall_seconds=time.monotonic() - started,
        )
        return Graded(result, nb.executed(notebook, record.cells))
