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
from grader.reports.views import grader_only
from grader.sandbox import calls, protocol
from grader.sandbox.calls import DIRECT, Via
from grader.sandbox.exceptions import ChannelBroken, MissingFunction, NotImplementedByStudent, StudentError
from grader.sandbox.session import CACHE_DROPPED, NOT_ISSUED, CacheLost, CallResult


def _roundtrip(
    value: Any,
    functions: Sequence[Callable[..., Any]] = (),
    handles: Callable[[protocol.Handle], int] | None = None,
    held: Callable[[int], Any] | None = None,
) -> Any:
    """Copy a value through the grader's channel encoding (refusing what the channel refuses); handles go
    through `handles` and come out through `held`."""

    tree, payloads = protocol.encode(value, functions=protocol.identify(functions), handles=handles)
    return protocol.decode(tree, payloads, lambda fid: functions[fid], held)


class KernelSession:
    """The checks' Session, calling functions of a live namespace instead of a sandbox."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.held: dict[int, Any] = {}  # handle id -> the object kept (the worker's table, here in the kernel)
        self.handles: dict[int, protocol.Handle] = {}  # the same ids -> the handles given to the checks
        self.handle_ids = 0  # the last handle id issued

    def _handle_id(self, handle: protocol.Handle) -> int:
        if handle.owner is not self or handle.id not in self.held:
            raise protocol.HandleLost(CACHE_DROPPED)
        return handle.id

    def _issued(self, hid: int) -> protocol.Handle:
        """The handle of an object this session holds (decode's `held` for results)."""
        if hid not in self.held:
            raise protocol.ProtocolError(NOT_ISSUED.format(id=hid))
        return self.handles.setdefault(hid, protocol.Handle(self, 0, hid))

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
        keep: Sequence[int] = (),
        **kwargs: Any,
    ) -> CallResult:
        """Call a notebook function (as `via` reaches it) with copies of the arguments, handles replaced by the
        objects they hold; the positions `keep` of the result stay here as handles; exceptions become sandbox
        errors."""
        fn = self.namespace.get(function)
        if fn is None:
            raise MissingFunction(function)
        if not callable(fn):
            raise MissingFunction(function, type(fn).__name__)
        try:
            call_args, call_kwargs, init, attrs = _roundtrip(
                (list(args), kwargs, list(via.init), dict(via.attrs)), functions, self._handle_id, self.held.__getitem__
            )
        except protocol.HandleLost as lost:
            raise CacheLost(str(lost).format(function=via.name(function), limit=protocol.MAX_HANDLES)) from None
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
        kept = [(position, self.handle_ids + i) for i, position in enumerate(keep, 1)]
        self.handle_ids += len(kept)
        echo = protocol.held_again(echo, self.held)  # before holding: a kept result may be an argument itself
        value = protocol.hold(value, kept, self.held)
        try:
            value, after = _roundtrip((value, echo), handles=lambda h: h.id, held=self._issued)
        except protocol.ProtocolError as exc:  # a handle the notebook made itself
            raise ChannelBroken(f"{via.name(function)}() returned {exc}") from None
        protocol.drop_oldest(self.handles)
        return CallResult(value, after, [f"{w.category.__name__}: {w.message}" for w in caught], out.getvalue())


def format_outcomes(problem: str, outcomes: list[Outcome]) -> str:
    """A few lines for the notebook: the points, then each failed check with its cause."""
    score = sum(o.score for o in outcomes)
    total = sum(o.max_score for o in outcomes)
    failed = [o for o in outcomes if o.status not in ("passed", "skipped")]
    if not failed:
        ran = sum(o.status == "passed" for o in outcomes)
        lines = [f"{problem}: all {ran} visible checks passed ({score:g}/{total:g} points)"]
    else:
        lines = [f"{problem}: {len(failed)} of {len(outcomes)} visible checks failed ({score:g}/{total:g} points)"]
    for o in failed:
        lines.append(f"  ✗ {o.title}: {o.message}")
        if o.diagnosis:
            lines.append(f"    Likely cause: {o.diagnosis}")
    elsewhere = grader_only(
        [{"outcome": o.status, "problem": o.problem, "check": o.check, "max_score": o.max_score} for o in outcomes]
    )
    if elsewhere:
        lines.append(f"  · {elsewhere}")
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
