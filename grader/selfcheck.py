"""Self-checks from inside a student's notebook: ``check = checker("mlp")`` then ``check("softmax")``.

Runs the visible checks of one problem against the functions defined in the notebook's
kernel, with the same cases, messages and diagnoses as the grader (whose sandbox ignores
these cells). This runs the student's own code in the student's own kernel: there is no
sandbox and no timeout here, and values still go through the same encode/decode as the
grader's channel, so that what would be refused there is refused here too.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from grader.assignment import Assignment, load
from grader.checks.base import Outcome
from grader.checks.runner import run_checks
from grader.sandbox import calls, protocol
from grader.sandbox.calls import DIRECT, Via
from grader.sandbox.exceptions import MissingFunction, NotImplementedByStudent, StudentError
from grader.sandbox.session import CallResult


def _roundtrip(value: Any, functions: Sequence[Callable[..., Any]] = ()) -> Any:
    """Copy a value through the grader's channel encoding (refusing what the channel refuses)."""

    tree, payloads = protocol.encode(value, functions=protocol.identify(functions))
    return protocol.decode(tree, payloads, lambda fid: functions[fid])


class KernelSession:
    """The checks' Session, calling functions of a live namespace instead of a sandbox."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace

    def seed(self, value: int) -> None:
        """Seed the kernel's global generators (as the grader seeds its worker's)."""
        random.seed(value)
        np.random.seed(value)

    def call(
        self,
        function: str,
        *args: Any,
        echo_args: bool = False,
        functions: Sequence[Callable[..., Any]] = (),
        via: Via = DIRECT,
        **kwargs: Any,
    ) -> CallResult:
        """Call a notebook function (as `via` reaches it) with copies of the arguments; exceptions become
        sandbox errors."""
        fn = self.namespace.get(function)
        if fn is None:
            raise MissingFunction(function)
        if not callable(fn):
            raise MissingFunction(function, type(fn).__name__)
        call_args, call_kwargs, init, attrs = _roundtrip(
            (list(args), kwargs, list(via.init), dict(via.attrs)), functions
        )
        out = io.StringIO()
        try:
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
                warnings.simplefilter("always")
                value, echo = calls.invoke(
                    fn, (call_args, call_kwargs, init, attrs), via.method, via.tensors, echo_args
                )
        except Exception as exc:
            cls = NotImplementedByStudent if isinstance(exc, NotImplementedError) else StudentError
            raise cls(via.name(function), type(exc).__name__, str(exc), []) from None
        value, after = _roundtrip((value, echo))
        return CallResult(value, after, [f"{w.category.__name__}: {w.message}" for w in caught], out.getvalue())


def format_outcomes(problem: str, outcomes: list[Outcome]) -> str:
    """A few lines for the notebook: the points, then each failed check with its cause."""
    score = sum(o.score for o in outcomes)
    total = sum(o.max_score for o in outcomes)
    failed = [o for o in outcomes if o.status != "passed"]
    if not failed:
        return f"{problem}: all {len(outcomes)} visible checks passed ({score:g}/{total:g} points)"
    lines = [f"{problem}: {len(failed)} of {len(outcomes)} visible checks failed ({score:g}/{total:g} points)"]
    for o in failed:
        lines.append(f"  ✗ {o.title}: {o.message}")
        if o.diagnosis:
            lines.append(f"    Likely cause: {o.diagnosis}")
    return "\n".join(lines)


class Checker:
    """Self-checks of one assignment, bound to the namespace of the notebook that made it."""

    def __init__(self, assignment: Assignment, namespace: Mapping[str, Any]) -> None:
        self.assignment = assignment
        self.namespace = namespace

    def run(self, problem: str) -> list[Outcome]:
        """The outcomes of the visible checks of one problem (the kernel's random state is restored)."""
        self.assignment.problem(problem)  # a clear KeyError for a misspelled name
        state, py_state = np.random.get_state(), random.getstate()
        try:
            return run_checks(KernelSession(self.namespace), self.assignment, None, problems=[problem])
        finally:
            np.random.set_state(state)
            random.setstate(py_state)

    def __call__(self, problem: str) -> None:
        """Print the result of the visible checks of one problem."""
        print(format_outcomes(problem, self.run(problem)))

    def check_all(self) -> None:
        """Print the result of every problem's visible checks."""
        for p in self.assignment.problems:
            self(p.name)


def checker(assignment: str) -> Checker:
    """A self-checker for the notebook that calls this (its global namespace is the one checked)."""
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    namespace = caller.f_globals if caller is not None else {}
    return Checker(load(assignment), namespace)
