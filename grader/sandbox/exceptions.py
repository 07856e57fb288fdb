"""Every way a sandboxed notebook or call can fail, as types that carry what caused them.

Messages are written for the student who will read them in a report: what happened,
where, and what to do. ``describe`` renders any of them in one line.
"""

from __future__ import annotations

MEMORY_HINT = "the worker hit the memory limit of {limit}; look for huge arrays or loops that keep allocating"


class SandboxError(Exception):
    """Base class: something went wrong running student code (never a grader bug)."""


class CellTimeout(SandboxError):
    """A notebook cell ran longer than the per-cell limit and was stopped."""

    def __init__(self, index: int, timeout: float, source: str, notebook_limit: float | None = None) -> None:
        preview = source.strip().splitlines()[0][:80] if source.strip() else ""
        if notebook_limit is not None:
            text = (
                f"the notebook's total time limit of {notebook_limit:g} s was reached during cell {index} "
                f"(it starts with: {preview!r}); the cells before it used most of the time"
            )
        else:
            text = (
                f"cell {index} did not finish within {timeout:g} s and was stopped (it starts with: {preview!r}); "
                "look for an infinite loop or a very long computation at the top level of that cell"
            )
        super().__init__(text)
        self.index = index
        self.timeout = timeout


class CallTimeout(SandboxError):
    """A call of a student function ran longer than the per-call limit and was stopped."""

    def __init__(self, function: str, timeout: float) -> None:
        super().__init__(
            f"{function}() timed out: it did not return within {timeout:g} s and was stopped; look for an infinite loop"
        )
        self.function = function
        self.timeout = timeout


class CallSkipped(SandboxError):
    """A function that timed out or crashed several times is not called again."""

    def __init__(self, function: str, failures: int, last: str) -> None:
        super().__init__(
            f"{function}() was not called again after failing {failures} times on earlier inputs; the last time: {last}"
        )
        self.function = function


class WorkerDied(SandboxError):
    """The worker process ended during a cell or a call (os._exit, a crash, a kill)."""

    def __init__(self, during: str, exitcode: int | None, signal: int | None, stderr: str = "", hint: str = "") -> None:
        how = f"was killed by signal {signal}" if signal is not None else f"exited with code {exitcode}"
        text = f"the notebook's process {how} during {during}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
        self.during = during
        self.exitcode = exitcode
        self.signal = signal
        self.stderr = stderr


class MemoryLimit(SandboxError):
    """Student code ran out of the memory it is allowed."""

    def __init__(self, during: str, limit_bytes: int) -> None:
        super().__init__(f"{during}: " + MEMORY_HINT.format(limit=f"{limit_bytes / 2**30:g} GiB"))
        self.during = during


class StudentError(SandboxError):
    """A student function raised an exception; carries its name, message and traceback."""

    def __init__(self, function: str, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(f"{function}() raised {ename}: {evalue}" if evalue else f"{function}() raised {ename}")
        self.function = function
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


class NotImplementedByStudent(StudentError):
    """The function still raises NotImplementedError (the template stub)."""


class MissingFunction(SandboxError):
    """The notebook does not define the function the grader wants to call."""

    def __init__(self, function: str, defined_as: str | None = None) -> None:
        if defined_as:
            text = f"{function} is defined, but as a {defined_as}, not a function"
        else:
            text = (
                f"the notebook does not define {function}(); keep the function name and signature from "
                "the template, and check that its cell runs without errors"
            )
        super().__init__(text)
        self.function = function


class Refused(SandboxError):
    """A value may not cross between the notebook and the grader (wrong type)."""


class ResultTooLarge(Refused):
    """A call answered with far more bytes than it was given; the grader read none of them."""

    def __init__(self, function: str, size: str, arguments: str, limit: str) -> None:
        super().__init__(
            f"{function}() returned {size} of arrays for arguments of {arguments}; at most {limit} may come back "
            "from this call, so the answer was refused unread. Return only what was asked for (for example an "
            "array shaped like the input), not a history or a large buffer"
        )
        self.function = function


class BudgetExhausted(SandboxError):
    """The notebook's total time budget (its cells and every call of its functions) is used up."""

    def __init__(self, budget: float, cells: float, calls: float, function: str | None = None) -> None:
        spent = f"its cells took {cells:.1f} s and calls of its functions {calls:.1f} s"
        if function is None:
            text = f"not run: the notebook's total time budget of {budget:g} s was used up ({spent})"
        else:
            text = (
                f"{function}() was stopped: the notebook's total time budget of {budget:g} s ran out during this "
                f"call ({spent})"
            )
        super().__init__(text + "; every cell and every call counts, so make the slow code faster")
        self.budget = budget


class ChannelBroken(SandboxError):
    """The worker sent something that is not a valid answer (garbage on the channel)."""


def describe(error: BaseException) -> str:
    """One line for a report."""
    return str(error) or type(error).__name__
