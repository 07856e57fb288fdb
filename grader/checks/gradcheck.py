"""Checks of a student's gradient checker that reports instead of returning (gradcheck_naive(f, x) prints its verdict).

The checker gets the grader's f, which returns (cost, gradient) and is evaluated here, in the grader: the student's
code receives a stand-in (grader.sandbox.protocol). The checker is graded by observing it: the points it evaluates
f at (central or one-sided differences, the step, every coordinate, x restored), the random numbers f draws in the
student's process (random state restored before each evaluation), and its verdict on a correct gradient and on a
planted error (what it prints, raises or returns).

Contract: a checker reports a failure by printing a line matching the fail words, raising AssertionError or returning
False; it passes by printing a line matching the pass words, returning True, or saying nothing and not raising. The
words are the binding's fail_words / pass_words (grader.bindings; by default "fail" and "pass", in any case).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from grader import truth
from grader.checks.base import CheckContext, CheckFailed, Passed, check
from grader.checks.numgrad import LEFT_PERTURBED, ONE_SIDED, KnownFunction, as_point, skipped_entries
from grader.checks.values import call_failure
from grader.sandbox import protocol
from grader.sandbox.exceptions import StudentError

PASSED, FAILED, SILENT = "passed", "failed", "silent"  # a silent checker (no output, no raise) reports no failure
REFUSED = "refused"  # no verdict: the grader's f refused to evaluate (a wrong point, or past the budget)

PLANTED_ERROR = 1e-2  # the planted entry is off by this relative amount; a correct checker's threshold is ~1e-5
# Entries that moved by less than this (relative to max(1, |x|)) are unmoved: well below any sensible step, well above
# the rounding of x[i] += h; x[i] -= 2 * h; x[i] += h.
MOVED = 1e-9
STEPS = (1e-7, 1e-3)  # sensible steps of central differences in float64 (a common fixed step is 1e-4)
NOISE = 1.0  # f's cost moves by NOISE times its random draw: unrestored draws make the differences garbage


def budget(size: int) -> int:
    """How many evaluations of f a checker may make for an x of `size` entries (two per entry, a few more)."""
    return 4 * size + 10


TOO_MANY = (
    "too many evaluations of f: at most {limit} for an x of {size} entries (two per entry for central "
    "differences, plus the first); evaluate f twice per entry"
)
FALSE_ALARM = (
    "your checker reported the correct gradient of {label} as wrong ({said}); it must report a failure only for a "
    "wrong gradient{cause}"
)
MISSED = "your checker did not report {what} as wrong ({said}){cause}"
PLANTED = "a gradient with entry {index} off by a relative {error:g} (reported {found:.6g}, true {true:.6g})"
TRANSPOSED = "a transposed gradient (grad.T instead of grad; entry {index} reported {found:.6g}, true {true:.6g})"
NOT_VISITED = ": it never evaluated f with entry {index} moved, so it never compared it"
LOOSE = (
    ": it evaluated f at x +/- h in entry {index} but did not flag the difference; compare the relative error "
    "abs(numgrad - grad[ix]) / max(1, abs(numgrad), abs(grad[ix])) with a threshold such as 1e-5"
)
NEVER_REPORTS = (
    ": it compared entry {index} but reported no failure; print a message saying the check failed (or raise "
    "AssertionError) when the relative error passes the threshold"
)
NO_STEPS = "your checker never evaluated f with one entry of x moved, so it cannot compare any entry"
STEP_OUTSIDE = (
    "your checker uses a step of {step:.1e}; use a step between {low:g} and {high:g} (e.g. h = 1e-4): smaller "
    "steps drown in rounding error, larger ones in truncation error"
)
ONE_WAY = "your checker evaluates f at x {sign} h in entry {index} but never at x {other} h: {one_sided}"
CENTRAL_STEP = "central differences with a step of {step:.1e}"
NOT_VISITED_ENTRIES = "entries {entries} (in x.flat order) were never visited (f never evaluated with them moved)"
EARLY_RETURN = (
    "your checker returned after the first entry of x ({size} entries): the return (or the final message) is inside "
    "the loop; move it after the loop"
)
STOPPED = "your checker stopped at a failure it reported for the correct gradient ({said}), so {missing}{cause}"
STALE = (
    "x was not restored before another entry was moved: f was evaluated with entries {first} and {second} moved "
    "at once (by {d1:.2g} and {d2:.2g}); put x[ix] back to its old value after evaluating each entry"
)
DRAWS_DIFFER = (
    "f drew {distinct} different random numbers in one run of your checker: Python's random state was not restored "
    "before each evaluation; save rndstate = random.getstate() first and call random.setstate(rndstate) before "
    "each f(x)"
)
NOISY_FALSE_ALARM = (
    "with an f that draws a random number, your checker reported the correct gradient as wrong ({said}){cause}"
)


@dataclass
class Recorder:
    """The grader's f as the checker sees it: (cost, gradient) at each point, recording points, draws and refusals."""

    fn: KnownFunction
    gradient: Callable[[np.ndarray], np.ndarray]
    points: list[np.ndarray] = field(default_factory=list)
    draws: list[float] = field(default_factory=list)
    refusal: str | None = None  # the first reason f refused to evaluate (a wrong point, or past the budget)
    over_budget: bool = False

    def __call__(self, x: object) -> tuple[float, np.ndarray]:
        """(cost, gradient) at x, recorded; ValueError for a point that is not like x, or past the budget."""
        try:
            point = as_point(x, self.fn.x.shape)
            if len(self.points) >= budget(self.fn.x.size):
                self.over_budget = True
                raise ValueError(TOO_MANY.format(limit=budget(self.fn.x.size), size=self.fn.x.size))
        except ValueError as exc:
            self.refusal = self.refusal or str(exc)
            raise
        self.points.append(point.copy())
        return float(self.fn.f(point)), np.asarray(self.gradient(point), dtype=np.float64)

    def drawn(self, draw: float, x: object) -> tuple[float, np.ndarray]:
        """f with a random draw from the checker's process: the cost moves with the draw."""
        self.draws.append(draw)
        cost, gradient = self(x)
        return cost + NOISE * draw, gradient


@dataclass(frozen=True)
class Observation:
    """One run of the student's checker: where it evaluated f, what f drew, its verdict, and x afterwards."""

    recorder: Recorder
    verdict: str
    said: str  # what the verdict comes from, quoted for messages
    x_after: object = None

    @property
    def x(self) -> np.ndarray:
        """The x the checker was given (a copy of it)."""
        return self.recorder.fn.x

    @property
    def offsets(self) -> np.ndarray:
        """Each evaluated point minus x, one row per evaluation (flat order)."""
        rows = [p.reshape(-1) - self.x.reshape(-1) for p in self.recorder.points]
        return np.array(rows).reshape(len(rows), self.x.size)

    @property
    def moved(self) -> np.ndarray:
        """Which entries each evaluation moved (rows: evaluations)."""
        return np.asarray(np.abs(self.offsets) > MOVED * np.maximum(1.0, np.abs(self.x.reshape(-1))))

    @property
    def visited(self) -> np.ndarray:
        """Entries (flat) that some evaluation moved."""
        return np.asarray(self.moved.any(axis=0))

    @property
    def step(self) -> float | None:
        """The step the checker takes: the median size of the moves."""
        moves = np.abs(self.offsets[self.moved])
        return float(np.median(moves)) if moves.size else None


def verdict_of(value: object, stdout: str, words: tuple[str, str] | None = None) -> tuple[str, str]:
    """(verdict, what it comes from) of a checker that returned `value` after printing `stdout`; `words` are the
    (fail, pass) patterns of its binding."""
    if isinstance(value, (bool, np.bool_)):
        return (PASSED if value else FAILED), f"returned {bool(value)}"
    fail, passed = words or ("fail", "pass")
    for pattern, verdict in ((fail, FAILED), (passed, PASSED)):
        line = next((line.strip() for line in stdout.splitlines() if re.search(pattern, line, re.IGNORECASE)), None)
        if line is not None:
            return verdict, f"printed {line[:120]!r}"
    return SILENT, "printed nothing about the result and raised nothing"


def observe(
    ctx: CheckContext,
    fn: KnownFunction,
    gradient: Callable[[np.ndarray], np.ndarray] | None = None,
    draws: bool = False,
) -> Observation:
    """Run the student's checker on the grader's f (returning `gradient`, by default the true one) and a copy of x.

    With draws, f draws random.random() in the student's process before each evaluation. An AssertionError is a
    reported failure; any other error, or an f that refused to evaluate, fails the check that observes."""
    recorder = Recorder(fn, gradient or fn.gradient)
    f = protocol.DrawsRandom(recorder.drawn) if draws else recorder
    name = ctx.problem.binding.call  # a checker's binding may only rename it: called as is, so that its errors show
    try:
        with truth.unanswered():
            result = ctx.session.call(name, f, fn.x.copy(), echo_args=True, functions=[f])
    except truth.NotLocal:
        raise
    except StudentError as exc:
        if recorder.refusal is None and exc.ename == "AssertionError":
            return Observation(recorder, FAILED, f"raised AssertionError: {exc.evalue[:120]}")
        if recorder.refusal is not None:
            return Observation(recorder, REFUSED, recorder.refusal)
        raise call_failure(name, exc) from None
    except Exception as exc:  # every other sandbox error is this check's verdict
        raise call_failure(name, exc) from None
    if recorder.refusal is not None:  # the checker caught f's refusal and carried on
        return Observation(recorder, REFUSED, recorder.refusal)
    verdict, said = verdict_of(result.value, result.stdout, ctx.problem.binding.words)
    after = result.args_after[1] if result.args_after is not None else None
    return Observation(recorder, verdict, said, after)


def judged(obs: Observation) -> Observation:
    """The observation, unless f refused to evaluate (a wrong point, or too many evaluations): then that is the
    verdict of any check but the one about it."""
    if obs.verdict == REFUSED:
        raise CheckFailed(obs.said, status="error", details={"label": obs.recorder.fn.label})
    return obs


# --------------------------------------------------------------------------- what went wrong, from the observation


def entry(index: int, shape: tuple[int, ...]) -> str:
    """The multi-index of flat entry `index`, as the student's loop names it: '(1, 2)'."""
    return str(tuple(int(i) for i in np.unravel_index(index, shape)))


def one_sided(obs: Observation) -> str | None:
    """ONE_WAY for the first visited entry that was moved only one way (x + h, never x - h, or the reverse)."""
    offsets, moved = obs.offsets, obs.moved
    up, down = np.asarray((moved & (offsets > 0)).any(axis=0)), np.asarray((moved & (offsets < 0)).any(axis=0))
    one_way = np.flatnonzero(obs.visited & ~(up & down))
    if not one_way.size:
        return None
    index = int(one_way[0])
    signs = ("+", "-") if up[index] else ("-", "+")
    shown = entry(index, obs.x.shape)
    return ONE_WAY.format(index=shown, sign=signs[0], other=signs[1], one_sided=ONE_SIDED)


def stale_entry(obs: Observation) -> str | None:
    """STALE for the first evaluation that moved two entries at once (x not restored between entries)."""
    moved, offsets = obs.moved, obs.offsets
    rows = np.flatnonzero(moved.sum(axis=1) > 1)
    if not rows.size:
        return None
    row = int(rows[0])
    first_seen = np.argmax(moved, axis=0)  # the evaluation that first moved each entry
    entries = sorted(np.flatnonzero(moved[row]), key=lambda i: first_seen[i])
    first, second = int(entries[0]), int(entries[-1])
    shape = obs.x.shape
    return STALE.format(
        first=entry(first, shape), second=entry(second, shape), d1=offsets[row, first], d2=offsets[row, second]
    )


def stopped_at(obs: Observation) -> int | None:
    """The entry a run stopped at (the last it moved) when it did not visit them all, else None."""
    visited = obs.visited
    if visited.all() or not visited.any():
        return None
    first_seen = np.where(visited, np.argmax(obs.moved, axis=0), -1)
    return int(np.argmax(first_seen))


def unrestored_draws(obs: Observation) -> str | None:
    """DRAWS_DIFFER when f drew different random numbers within one run."""
    distinct = len(set(obs.recorder.draws))
    return DRAWS_DIFFER.format(distinct=distinct) if distinct > 1 else None


def cause(obs: Observation) -> str:
    """': <the first fault seen in how the checker evaluated f>', or '' when none is seen."""
    for fault in (one_sided, stale_entry, unrestored_draws):
        found = fault(obs)
        if found:
            return f": {found}"
    return ""


# --------------------------------------------------------------------------- the grader's functions


def gentle(seed: int, square: bool = False) -> KnownFunction:
    """f(x) = sum(b * x + c * x**2 / 2) on a 2-D x, with |b| >= 0.5 and |c| <= 0.05: every entry of the gradient is
    about 1, and entry i depends on x[i] only. Verdicts on it depend only on what the checker compares and
    reports: a one-sided difference is off by h * |c| / 2 <= 2.5e-6 and a stale entry changes no other entry."""
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(2, 5))
    shape = (rows, rows) if square else (rows, int(rng.integers(3, 6)))
    b = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)
    c = rng.uniform(-0.05, 0.05, size=shape)
    return KnownFunction(
        f"a separable function on a 2-D x of shape {shape} (seed {seed})",
        lambda x: float(np.sum(b * x + 0.5 * c * x**2)),
        lambda x: b + c * x,
        rng.uniform(-1, 1, size=shape),
    )


def planted(fn: KnownFunction, index: int) -> Callable[[np.ndarray], np.ndarray]:
    """fn's gradient with entry `index` (flat) off by a relative PLANTED_ERROR."""

    def gradient(x: np.ndarray) -> np.ndarray:
        g = fn.gradient(x).copy()
        g.reshape(-1)[index] *= 1.0 + PLANTED_ERROR
        return g

    return gradient


# --------------------------------------------------------------------------- verdicts


def discriminates(ctx: CheckContext, fn: KnownFunction, wrong: Callable[[np.ndarray], np.ndarray], what: str) -> None:
    """The checker passes fn's correct gradient and fails the `wrong` one (whose first wrong entry `what` names)."""
    right = judged(observe(ctx, fn))
    details = {"label": fn.label, "shape": list(fn.x.shape)}
    if right.verdict == FAILED:
        raise CheckFailed(FALSE_ALARM.format(label=fn.label, said=right.said, cause=cause(right)), details=details)
    seen = judged(observe(ctx, fn, wrong))
    if seen.verdict == FAILED:
        return
    true, found = fn.gradient(fn.x).reshape(-1), wrong(fn.x).reshape(-1)
    index = int(np.argmax(np.abs(found - true) > 0))
    shown = entry(index, fn.x.shape)
    if not seen.visited[index]:
        why = NOT_VISITED.format(index=shown)
    elif stopped_at(seen) == index or right.verdict == seen.verdict == SILENT:
        why = NEVER_REPORTS.format(index=shown)
    else:
        why = LOOSE.format(index=shown)
    text = what.format(index=shown, error=PLANTED_ERROR, found=found[index], true=true[index])
    raise CheckFailed(MISSED.format(what=text, said=seen.said, cause=why), details=details)


@check(
    "gradcheck",
    "detects_error",
    "reports a gradient with one entry off by 1% as wrong, and the correct gradient as right",
    weight=3,
)
def check_gradcheck_detects_error(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        fn = gentle(seed)
        index = int(np.random.default_rng([seed, 1]).integers(fn.x.size))
        discriminates(ctx, fn, planted(fn, index), PLANTED)


@check(
    "gradcheck", "detects_transposed", "reports a transposed gradient as wrong, and the correct one as right", weight=2
)
def check_gradcheck_detects_transposed(ctx: CheckContext) -> None:
    fn = gentle(ctx.sub_seed("transposed"), square=True)
    discriminates(ctx, fn, lambda x: fn.gradient(x).T.copy(), TRANSPOSED)


@check(
    "gradcheck",
    "central",
    "uses central differences, f(x + h) and f(x - h), with a sensible step",
    weight=2,
    role="property",
)
def check_gradcheck_central(ctx: CheckContext) -> Passed:
    obs = judged(observe(ctx, gentle(ctx.sub_seed("central"))))
    step = obs.step
    if step is None:
        raise CheckFailed(NO_STEPS, details={"said": obs.said})
    found = one_sided(obs)
    if found:
        raise CheckFailed(found, details={"step": step})
    if not STEPS[0] <= step <= STEPS[1]:
        raise CheckFailed(STEP_OUTSIDE.format(step=step, low=STEPS[0], high=STEPS[1]), details={"step": step})
    return Passed(CENTRAL_STEP.format(step=step), details={"step": step})


@check("gradcheck", "every_entry", "visits every entry of a 2-D x", weight=2, role="property")
def check_gradcheck_every_entry(ctx: CheckContext) -> None:
    obs = judged(observe(ctx, gentle(ctx.sub_seed("every"))))
    missing = ~obs.visited
    if not missing.any():
        return
    if obs.verdict == FAILED:
        text = skipped_entries(missing, NOT_VISITED_ENTRIES)
        raise CheckFailed(STOPPED.format(said=obs.said, missing=text, cause=cause(obs)))
    if obs.visited[0] and missing[1:].all():
        raise CheckFailed(EARLY_RETURN.format(size=obs.x.size))
    raise CheckFailed(f"your checker skips entries of x: {skipped_entries(missing, NOT_VISITED_ENTRIES)}")


@check("gradcheck", "restores_x", "restores x after each entry and before returning", weight=2, role="property")
def check_gradcheck_restores_x(ctx: CheckContext) -> None:
    obs = judged(observe(ctx, gentle(ctx.sub_seed("restore"))))
    stale = stale_entry(obs)
    if stale:
        raise CheckFailed(stale)
    x, after = obs.x, obs.x_after
    if not isinstance(after, np.ndarray) or after.shape != x.shape:
        return  # the checker rebound x to something else: its caller's x is not what it changed
    with np.errstate(invalid="ignore"):
        change = np.abs(after.astype(np.float64) - x)
    left = ~(change <= MOVED * np.maximum(1.0, np.abs(x)))
    if left.any():
        largest = float(np.nanmax(np.where(left, change, 0.0)))
        raise CheckFailed(
            LEFT_PERTURBED.format(changed=int(left.sum()), size=x.size, largest=largest, h=obs.step or 0.0)
        )


@check(
    "gradcheck", "random_state", "restores Python's random state before each evaluation of f", weight=2, role="property"
)
def check_gradcheck_random_state(ctx: CheckContext) -> None:
    obs = judged(observe(ctx, gentle(ctx.sub_seed("random")), draws=True))
    differ = unrestored_draws(obs)
    if differ:
        raise CheckFailed(differ, details={"draws": len(obs.recorder.draws)})
    if obs.verdict == FAILED:
        raise CheckFailed(NOISY_FALSE_ALARM.format(said=obs.said, cause=cause(obs)))


@check("gradcheck", "evaluates_x", "calls f with an array of x's shape and dtype", role="property")
def check_gradcheck_evaluates_x(ctx: CheckContext) -> None:
    obs = observe(ctx, gentle(ctx.sub_seed("evaluates")))
    if obs.verdict == REFUSED and not obs.recorder.over_budget:
        raise CheckFailed(obs.said)


@check("gradcheck", "budget", "evaluates f at most 4 times per entry of x, plus 10", role="property")
def check_gradcheck_budget(ctx: CheckContext) -> None:
    obs = observe(ctx, gentle(ctx.sub_seed("budget")))
    if obs.recorder.over_budget:
        raise CheckFailed(obs.said)
