"""The check registry: small named checks per problem kind, each failing with a message that says
what to fix (scikit-learn's estimator_checks is the model), and the context they run in.

A check is a plain function of a :class:`CheckContext` registered with :func:`check`. It
returns normally to pass (optionally with a note), or raises :class:`CheckFailed`. Which
checks grade a problem, with what weights, is decided in one place (:func:`plan`) from the
assignment's data, never by ``if`` chains inside the checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from grader import truth
from grader.assignment import Assignment, Problem, Tolerance
from grader.bindings import SIGNATURES, UnreadableResult
from grader.cases import Case
from grader.checks import shapes
from grader.sandbox.calls import DIRECT, Via


class Session(Protocol):
    """What checks need from a sandbox: call a student function, seed its random state."""

    def call(
        self,
        function: str,
        *args: Any,
        echo_args: bool = False,
        functions: Any = (),
        via: Via = DIRECT,
        keep: Any = (),
        **kwargs: Any,
    ) -> Any: ...

    def seed(self, value: int) -> None: ...


class CheckFailed(Exception):
    """A check's verdict against the submission: message for the student, diagnosis, details."""

    def __init__(
        self,
        message: str,
        diagnosis: str | None = None,
        details: dict[str, Any] | None = None,
        status: str = "failed",
        credit: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.diagnosis = diagnosis
        self.details = details or {}
        self.status = status  # "failed" (wrong result) or "error" (the code did not run)
        self.credit = credit  # fraction of the check's points still earned


@dataclass(frozen=True)
class Passed:
    """A check's optional note on success (e.g. credit carried forward from a wrong forward pass)."""

    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    credit: float = 1.0


@dataclass
class Outcome:
    """The result of one planned check on one submission."""

    id: str
    problem: str
    check: str
    title: str
    status: str  # passed | failed | error | skipped (needs the reference, which this install lacks: grader.truth)
    score: float
    max_score: float
    hidden: bool
    message: str = ""
    diagnosis: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    role: str = "value"  # value | property (see ROLES)


@dataclass(frozen=True)
class Check:
    """A registered check: which problem kind it grades, its default weight, and the function."""

    kind: str
    name: str
    title: str
    weight: float | Callable[[Assignment], float]  # a function of the assignment: e.g. a share per layer of a network
    seeded: bool  # its inputs come from the check's seed, so it has a hidden twin (see plan)
    func: Callable[[CheckContext], Passed | None]
    role: str = "value"
    forms: tuple[str, ...] | None = None  # the input forms its cases are graded in (None: every declared one)
    mutation: bool = False  # about modifying the inputs: not planned where the binding allows it (inplace)


REGISTRY: dict[str, list[Check]] = {}
# A value check compares what the function returns with the reference. A property check (no mutation,
# shapes, determinism, consistency with its own loss...) holds for code that computes nothing, too: it
# earns its points only when a value check of the same problem earns some (grader.checks.runner).
ROLES = ("value", "property")


def check(
    kind: str,
    name: str,
    title: str,
    weight: float | Callable[[Assignment], float] = 1.0,
    seeded: bool = True,
    role: str = "value",
    forms: tuple[str, ...] | None = None,
    mutation: bool = False,
) -> Callable[[Callable[[CheckContext], Passed | None]], Callable[[CheckContext], Passed | None]]:
    """Register a check for problems of `kind`. Seeded checks (every check whose inputs come from its seed, all but
    those judged on the probe seed's fresh problems) run on visible and on hidden cases; `forms` restricts the input
    forms (grader.checks.shapes) its cases are graded in, for checks about one form; `mutation` marks a check that its
    inputs are left unchanged, which a binding may waive (a course may let a function work in place)."""
    if role not in ROLES:
        raise ValueError(f"check {kind}.{name}: role must be one of {ROLES}, got {role!r}")

    def register(func: Callable[[CheckContext], Passed | None]) -> Callable[[CheckContext], Passed | None]:
        checks = REGISTRY.setdefault(kind, [])
        if any(c.name == name for c in checks):
            raise ValueError(f"check {kind}.{name} registered twice")
        checks.append(Check(kind, name, title, weight, seeded, func, role, forms, mutation))
        return func

    return register


@dataclass(frozen=True)
class PlannedCheck:
    """One entry of a submission's grade: a check on a problem, visible or hidden, with its points."""

    check: Check
    problem: Problem
    hidden: bool
    points: float

    @property
    def id(self) -> str:
        """Stable identifier, e.g. 'softmax.values_2d' or 'softmax.values_2d[hidden]'."""
        return f"{self.problem.name}.{self.check.name}" + ("[hidden]" if self.hidden else "")

    @property
    def title(self) -> str:
        """Human title of the entry."""
        return f"{self.problem.name}: {self.check.title}" + (" (hidden cases)" if self.hidden else "")


def plan(assignment: Assignment, include_hidden: bool = True) -> list[PlannedCheck]:
    """The checks grading each problem, with points split by weight (and visible/hidden share).

    Every seeded check gets a hidden twin on the hidden seed, so that no graded input follows from public data;
    without hidden cases (a student's visible-only self-check), its visible entry carries all its points.
    """
    planned: list[PlannedCheck] = []
    for problem in assignment.problems:
        checks = REGISTRY.get(problem.kind)
        if not checks:
            raise ValueError(f"no checks are registered for problem kind {problem.kind!r} (problem {problem.name})")
        unknown = set(problem.weights) - {c.name for c in checks}
        if unknown:
            raise ValueError(
                f"problem {problem.name}: unknown checks {sorted(unknown)} in its weights; "
                f"known: {[c.name for c in checks]}"
            )
        weighted = [
            (c, problem.weights.get(c.name, c.weight(assignment) if callable(c.weight) else c.weight))
            for c in checks
            if not (c.mutation and problem.binding.inplace)
        ]
        weighted = [(c, w) for c, w in weighted if w > 0]
        if not weighted:
            raise ValueError(
                f"problem {problem.name}: every check has weight 0; give one a positive weight or remove the problem"
            )
        entries: list[tuple[Check, bool, float]] = []  # (check, hidden, share of the problem's weight)
        for c, w in weighted:
            if c.seeded and include_hidden and assignment.hidden_cases > 0 and assignment.hidden_share > 0:
                if assignment.hidden_share < 1:
                    entries.append((c, False, w * (1.0 - assignment.hidden_share)))
                entries.append((c, True, w * assignment.hidden_share))
            else:
                entries.append((c, False, w))
        try:
            points = apportion(problem.points, [share for _, _, share in entries], assignment.point_step)
        except ValueError:
            raise ValueError(
                POINTS_NOT_MULTIPLE.format(problem=problem.name, points=problem.points, step=assignment.point_step)
            ) from None
        planned += [PlannedCheck(c, problem, hidden, p) for (c, hidden, _), p in zip(entries, points, strict=True)]
    return planned


POINTS_NOT_MULTIPLE = (
    "problem {problem}: {points:g} points cannot be split into whole multiples of the assignment's "
    "[scoring] point_step = {step:g}; give the problem a multiple of {step:g} points or choose a smaller point_step"
)


def apportion(total: float, weights: list[float], step: float) -> list[float]:
    """Split `total` in proportion to `weights` into whole multiples of `step` that sum exactly to `total`.

    Largest remainders get the leftover steps, except that a check which would get nothing gets a step
    first (when there are enough), so that every weighted check is worth something.
    """
    units = round(total / step)
    if not np.isclose(units * step, total, rtol=1e-12, atol=1e-12):
        raise ValueError(f"{total:g} is not a whole multiple of {step:g}")
    exact = [units * w / sum(weights) for w in weights]
    whole = [int(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: (whole[i] > 0, -(exact[i] - whole[i])))
    for i in order[: units - sum(whole)]:
        whole[i] += 1
    return [_on_grid(n, step) for n in whole]


def _on_grid(units: int, step: float) -> float:
    """units * step without binary noise (0.07, not 0.07000000000000001)."""
    decimals = max(0, -int(np.floor(np.log10(step)))) + 6
    return round(units * step, decimals)


def derive_seed(*parts: object, bits: int = 31) -> int:
    """A seed of `bits` bits derived deterministically from the parts (stable across runs and platforms) by
    a cryptographic hash: a derived seed a submission observes (its worker is seeded with one before each
    check) tells nothing about the hidden seed among the parts, which a linear checksum would give away."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << bits) - 1)


MEMO_BYTES = 16 * 2**20  # arrays a submission's call results may keep in the memo (sandbox CallResult.nbytes)


@dataclass
class CheckContext:
    """What a running check sees: the submission, the assignment, its seed and a call memo."""

    session: Session
    assignment: Assignment
    problem: Problem
    seed: int
    hidden: bool
    memo: dict[Any, Any]
    # seeds the fresh problems of checks that must not be predictable from the submission's side: the
    # hidden seed when there is one (secret), else the visible seed (a student's own self-check)
    probe_seed: int = 0
    forms: tuple[str, ...] | None = None  # the running check's input forms (grader.checks.shapes)

    @property
    def function(self) -> str:
        """The student function being graded, as the student wrote it (`softmax`, `TwoLayerNet.loss`)."""
        return self.problem.binding.function

    @property
    def signature(self) -> str:
        """The student function's call as messages quote it (grader.bindings.Binding.signature)."""
        return self.problem.binding.signature

    def case_seeds(self, count: int | None = None) -> Iterator[int]:
        """Seeds of this check's random cases (visible or hidden count from the assignment)."""
        n = (
            count
            if count is not None
            else (self.assignment.hidden_cases if self.hidden else self.assignment.visible_cases)
        )
        for i in range(n):
            yield derive_seed(self.seed, self.problem.name, i)

    def sub_seed(self, *salt: object) -> int:
        """The seed of one named case of this check, derived from this context's seed."""
        return derive_seed(self.seed, self.problem.name, *salt)

    def fresh_seeds(self, count: int) -> list[int]:
        """Seeds of `count` fresh problems for this problem, derived from the probe seed (one set per submission)."""
        return [derive_seed(self.probe_seed, self.problem.name, "fresh", i) for i in range(count)]

    def every_form(self, case: Case, expected: np.ndarray) -> Iterator[tuple[Case, np.ndarray]]:
        """The case in every input form this check grades (grader.checks.shapes), each with its expected result."""
        return shapes.every_form(self.problem.kind, case, expected, self.forms)

    def rng(self, *salt: object) -> np.random.Generator:
        """A generator for one case, seeded from this context and the salt."""
        return np.random.default_rng(self.sub_seed(*salt))

    def tolerance(self, dtype: Any = np.float64) -> Tolerance:
        """The assignment's tolerance for results of this dtype (float32 whenever the binding hands the student
        float32 values: a result computed in float32 cannot meet a float64 tolerance)."""
        return self.assignment.tolerance(np.dtype(self.problem.binding.dtype or dtype))

    def call(
        self,
        *args: Any,
        function: str | None = None,
        echo_args: bool = False,
        functions: Any = (),
        keep: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> Any:
        """Call the student function in the kind's canonical form, through the problem's binding (another
        `function` is called as it is; the result positions `keep` stay in the worker as handles); sandbox
        failures become CheckFailed with a clear message."""
        from grader.checks.values import call_failure

        binding = self.problem.binding
        held: dict[str, Any] = {"keep": keep} if keep else {}  # (sessions that hold nothing need not know the keyword)
        if function is not None or binding.canonical:
            name = function or binding.call
            try:
                with truth.unanswered():
                    return self.session.call(name, *args, echo_args=echo_args, functions=functions, **held, **kwargs)
            except truth.NotLocal:
                raise
            except Exception as exc:  # every sandbox error becomes this check's verdict
                raise call_failure(name, exc) from None
        lookup, bound_args, bound_kwargs, via = binding.request(args)
        if keep and binding.returns is not None:  # the kept canonical results, at their places in the student's tuple
            names = SIGNATURES[binding.kind][1]
            held["keep"] = tuple(binding.returns.index(names[k]) for k in keep if names[k] in binding.returns)
        try:
            with truth.unanswered():
                result = self.session.call(
                    lookup, *bound_args, echo_args=echo_args, functions=functions, via=via, **held, **bound_kwargs
                )
            return dataclasses.replace(
                result, value=binding.result(result.value, args), args_after=binding.echoed(result.args_after, args)
            )
        except truth.NotLocal:
            raise
        except UnreadableResult as exc:
            from grader.checks.diagnosis import message

            diagnosis = message(exc.mistake) if exc.mistake else None
            raise CheckFailed(str(exc), diagnosis, details={"binding": binding.function}) from None
        except Exception as exc:  # every sandbox error becomes this check's verdict
            raise call_failure(binding.function, exc) from None

    def memo_call(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        """Like call, but each distinct key is called once per problem (checks share the result), as long as
        the memo holds less than MEMO_BYTES of arrays (past that, results are used once and not kept)."""
        full = (self.problem.name, self.hidden, key)
        result = self.memo.get(full)
        if result is None:
            try:
                result = self.call(*args, **kwargs)
            except CheckFailed as failure:
                result = failure
            kept = sum(getattr(value, "nbytes", 0) for value in self.memo.values())
            if kept + getattr(result, "nbytes", 0) <= MEMO_BYTES:
                self.memo[full] = result
        if isinstance(result, CheckFailed):
            raise result
        return result
