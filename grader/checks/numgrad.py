"""Checks of the student's numerical_gradient(f, x, h=1e-5) on functions with known gradients.

The functions are evaluated here, in the grader: the student's code receives a stand-in
that sends each evaluation back over the channel, so it never sees the grader's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from grader import cases
from grader.assignment import Tolerance
from grader.checks.base import CheckContext, CheckFailed, check
from grader.checks.values import as_array, assert_close, assert_unchanged, close_mask
from grader.truth import reference

MLPSpec, loss, loss_and_grads = reference.MLPSpec, reference.loss, reference.loss_and_grads

DEFAULT_STEP = 1e-5
# Central differences with h = 1e-5 on these smooth functions: truncation ~h^2 * |f'''| / 6
# <= 1e-10, rounding ~eps * |f| / h <= 1e-10. One-sided differences are off by ~h * |f''| / 2,
# about 5e-6 here. A tolerance of 1e-7 relative plus 1e-8 absolute separates the two by 50x.
CENTRAL = Tolerance(rtol=1e-7, atol=1e-8)
SAME_STEP = 0.05  # two inferred steps within 5% of each other are the same step

ONE_SIDED = (
    "this is a one-sided difference (f(x + h) - f(x)) / h, accurate only to O(h); "
    "use the central difference (f(x + h) - f(x - h)) / (2h), accurate to O(h^2)"
)
NEVER_COMPUTED = "entries {entries} (in x.flat order) were never computed (left 0)"
LOOP_ADVANCES = ": the loop advances {times} per iteration (it.iternext() called {times}?)"
H_IGNORED = (
    "`h` is ignored: your checker uses a step of {step} whatever h is passed (h = {h1:g} and h = {h2:g} both "
    "give a step of {step}); use the h argument instead of a fixed step"
)
LEFT_PERTURBED = (
    "x is left perturbed after your checker returns: {changed} of {size} entries differ from the x passed in, "
    "by up to {largest:.3g} (h = {h:g}); restore x[i] = old_value after each evaluation"
)
BAD_POINT = "f must be called with a float array of shape {shape}, like x; got {found}"
NOT_BIT_EXACT = (
    "{message}; save x[i] before the step and assign the saved value back afterwards "
    "(x[i] -= h does not restore the exact bits)"
)


@dataclass(frozen=True)
class KnownFunction:
    """A scalar function with its exact gradient, evaluated in the grader."""

    label: str
    f: Callable[[np.ndarray], float]
    gradient: Callable[[np.ndarray], np.ndarray]
    x: np.ndarray


def as_point(x: object, shape: tuple[int, ...]) -> np.ndarray:
    """x as a student's checker may pass it to the grader's f: a float array of x's shape (as float64), else
    ValueError with what was expected and found."""
    if not isinstance(x, np.ndarray) or x.shape != shape or x.dtype.kind != "f":
        found = f"{type(x).__name__} of shape {getattr(x, 'shape', '?')}"
        raise ValueError(BAD_POINT.format(shape=shape, found=found))
    return x.astype(np.float64)


def _guarded(f: Callable[[np.ndarray], float], shape: tuple[int, ...]) -> Callable[[np.ndarray], float]:
    """f as the student may call it: one float array of the right shape in, one float out."""

    def evaluate(x: object) -> float:
        return float(f(as_point(x, shape)))

    return evaluate


def quadratic(seed: int) -> KnownFunction:
    """f(x) = 0.5 x^T A x + b^T x with symmetric A on a 1-D x; gradient A x + b."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 9))
    m = rng.standard_normal((n, n))
    a = m @ m.T / n + np.eye(n)
    b = rng.standard_normal(n)
    return KnownFunction(
        f"quadratic form on a 1-D x of {n} entries (seed {seed})",
        lambda x: 0.5 * x @ a @ x + b @ x,
        lambda x: a @ x + b,
        rng.standard_normal(n),
    )


def sum_of_sines(seed: int) -> KnownFunction:
    """f(x) = sum(sin(w * x)) on a 2-D x; gradient w * cos(w * x)."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 5)), int(rng.integers(3, 6)))
    w = rng.uniform(0.5, 2.0, size=shape)
    return KnownFunction(
        f"sum of sines on a 2-D x of shape {shape} (seed {seed})",
        lambda x: float(np.sum(np.sin(w * x))),
        lambda x: w * np.cos(w * x),
        rng.uniform(-2, 2, size=shape),
    )


def mlp_loss_of_w2(seed: int, activation: str, reduction: str, reg: float) -> KnownFunction:
    """The reference two-layer loss as a function of W2 (2-D), other parameters fixed."""
    x, y, params, _ = cases.mlp(seed, reg, activation).args
    spec = MLPSpec((x.shape[1], params["W1"].shape[1], params["W2"].shape[1]), activation, reduction, reg)
    return KnownFunction(
        f"the reference MLP loss as a function of W2 {params['W2'].shape} (seed {seed})",
        lambda w2: loss(x, y, {**params, "W2": w2}, spec),
        lambda w2: np.asarray(loss_and_grads(x, y, {**params, "W2": w2}, spec)[1]["W2"]),
        params["W2"].copy(),
    )


def fragile_values(seed: int, shape: tuple[int, ...], h: float) -> np.ndarray:
    """Random entries that do not survive a step undone by arithmetic: (v + h) - h != v != (v - h) + h.

    Only code that saves each entry and assigns it back leaves such an x bit for bit unchanged.
    Entries between h/100 and h/10 fail both round trips about 94% of the time; draw until each does.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(int(np.prod(shape)))
    for i in range(out.size):
        v = 0.0
        while (v + h) - h == v or (v - h) + h == v:
            v = rng.choice([-1.0, 1.0]) * rng.uniform(h / 100, h / 10)
        out[i] = v
    return out.reshape(shape)


def differences(fn: KnownFunction, h: float, central: bool) -> np.ndarray:
    """What central (f(x + h e_i) - f(x - h e_i)) / 2h or forward (f(x + h e_i) - f(x)) / h differences
    return for this function, to recognize a submission's method."""
    x = fn.x.astype(np.float64)
    base = fn.f(x)
    out = np.empty(x.size)
    for i in range(x.size):
        up, down = x.copy().reshape(-1), x.copy().reshape(-1)
        up[i] += h
        down[i] -= h
        lower = fn.f(down.reshape(x.shape)) if central else base
        out[i] = (fn.f(up.reshape(x.shape)) - lower) / (2 * h if central else h)
    return out.reshape(x.shape)


def _grade(ctx: CheckContext, fn: KnownFunction, h: float | None = None) -> None:
    """Grade numerical_gradient(f, x) (or (f, x, h): positional, whatever the student named it)."""
    f = _guarded(fn.f, fn.x.shape)
    x = fn.x.copy()
    result = ctx.call(f, x, *([] if h is None else [h]), functions=[f])
    found = as_array(result.value, f"numerical_gradient(f, x) for x of shape {x.shape}", x.shape, check_shape=False)
    details = {"label": fn.label, "shapes": {"x": list(x.shape)}}
    step = DEFAULT_STEP if h is None else h
    expected = fn.gradient(fn.x)

    def diagnose(value: np.ndarray) -> str | None:
        if value.shape != x.shape:
            return None
        if np.allclose(value, differences(fn, step, central=False), rtol=1e-6, atol=1e-9):
            return ONE_SIDED
        skipped = never_computed(value, expected)
        if skipped:
            return skipped
        return ignored_h(ctx, h) if h is not None else None

    assert_close(found, expected, CENTRAL, "numerical_gradient(f, x)", details, diagnose)


def never_computed(found: np.ndarray, expected: np.ndarray) -> str | None:
    """Entries left 0 while every other entry is right: which ones, and a loop that advances k times per turn."""
    never = ((found == 0) & ~close_mask(found, expected, CENTRAL)).reshape(-1)
    if not never.any() or not (close_mask(found, expected, CENTRAL).reshape(-1) | never).all():
        return None
    return skipped_entries(never, NEVER_COMPUTED)


def skipped_entries(never: np.ndarray, template: str) -> str:
    """The `template` naming the first entries (flat order) that `never` marks, and a loop that advances k times per
    turn when the others are every k-th entry from the first."""
    missed = np.flatnonzero(never)
    shown = ", ".join(str(int(i)) for i in missed[:3]) + (", ..." if len(missed) > 3 else "")
    text = template.format(entries=shown)
    computed = np.flatnonzero(~never)
    stride = int(computed[1] - computed[0]) if len(computed) >= 2 else never.size
    if stride >= 2 and np.array_equal(computed, np.arange(0, never.size, stride)):
        times = "twice" if stride == 2 else f"{stride} times"
        text += LOOP_ADVANCES.format(times=times)
    return text


def step_used(ctx: CheckContext, h: float) -> float | None:
    """The step the student's checker really takes when given `h`, inferred from its error on a cubic.

    Central differences of f(x) = sum(x**3) give exactly 3 x^2 + step^2; with |x| <= 1e-3 the rounding error is
    far below step^2 for any step down to 1e-7, so the error gives the step."""
    x = np.linspace(-1e-3, 1e-3, 5)
    f = _guarded(lambda v: float(np.sum(v**3)), x.shape)
    try:
        found = as_array(ctx.call(f, x.copy(), h, functions=[f]).value, "numerical_gradient(f, x, h)", x.shape)
    except CheckFailed:
        return None
    offset = float(np.median(found - 3 * x**2))
    return float(np.sqrt(offset)) if np.isfinite(offset) and offset > 0 else None


def ignored_h(ctx: CheckContext, h: float) -> str | None:
    """'h is ignored' with the step really used, when the checker takes the same step for h and for 10 h."""
    first, second = step_used(ctx, h), step_used(ctx, 10 * h)
    if first is None or second is None or abs(first - second) > SAME_STEP * first:
        return None
    if abs(first - h) <= SAME_STEP * h:
        return None
    return H_IGNORED.format(step=_step_text(first), h1=h, h2=10 * h)


def _step_text(step: float) -> str:
    """1e-4 for 0.0001003: the step to one significant digit, as a programmer writes it."""
    mantissa, exponent = f"{step:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@check(
    "numerical_gradient",
    "quadratic",
    "gradient of a quadratic form (1-D x), to central-difference accuracy",
    weight=3,
)
def check_numgrad_quadratic(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _grade(ctx, quadratic(seed))


@check("numerical_gradient", "sines", "gradient of a sum of sines (2-D x)", weight=3)
def check_numgrad_sines(ctx: CheckContext) -> None:
    for seed in ctx.case_seeds():
        _grade(ctx, sum_of_sines(seed))


@check("numerical_gradient", "mlp_loss", "gradient of the reference MLP loss with respect to W2", weight=2)
def check_numgrad_mlp_loss(ctx: CheckContext) -> None:
    a = ctx.assignment
    _grade(ctx, mlp_loss_of_w2(ctx.sub_seed("mlp"), a.activation, a.reduction, a.reg))


@check("numerical_gradient", "uses_h", "uses the step h it is given (h = 1e-3 on a cubic)")
def check_numgrad_uses_h(ctx: CheckContext) -> None:
    rng = ctx.rng("cubic")
    x = rng.uniform(-1, 1, size=5)
    # central differences of sum(x**3) give exactly 3 x^2 + h^2: the h^2 shows which step was used
    fn = KnownFunction("sum of cubes, with h = 1e-3", lambda v: float(np.sum(v**3)), lambda v: 3 * v**2 + 1e-6, x)
    _grade(ctx, fn, h=1e-3)


@check("numerical_gradient", "restores_x", "leaves x exactly as it was (bit for bit)", weight=2, role="property")
def check_numgrad_restores_x(ctx: CheckContext) -> None:
    seed = ctx.sub_seed("restore")
    fn = quadratic(seed)
    f = _guarded(fn.f, fn.x.shape)
    x = fragile_values(seed, fn.x.shape, DEFAULT_STEP)
    result = ctx.call(f, x, echo_args=True, functions=[f])
    after = None if result.args_after is None else (result.args_after[1],)
    try:
        assert_unchanged((x,), after, ("x",), ctx.function)
    except CheckFailed as failure:
        raise CheckFailed(_restore_message(failure, x, after), details=failure.details) from None


def _restore_message(failure: CheckFailed, x: np.ndarray, after: tuple[object, ...] | None) -> str:
    """'x is left perturbed' when entries moved by about h or more, else the exact-bits advice."""
    moved = after[0] if after is not None else None
    if isinstance(moved, np.ndarray) and moved.shape == x.shape and moved.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            change = np.abs(moved - x)
        if np.nanmax(change, initial=0.0) >= DEFAULT_STEP / 2:
            return LEFT_PERTURBED.format(
                changed=int((change > 0).sum()), size=x.size, largest=float(np.nanmax(change)), h=DEFAULT_STEP
            )
    return NOT_BIT_EXACT.format(message=failure.message.split(";")[0])


@check(
    "numerical_gradient",
    "deterministic",
    "does not depend on the random state (no sampling of coordinates)",
    role="property",
)
def check_numgrad_deterministic(ctx: CheckContext) -> None:
    fn = sum_of_sines(ctx.sub_seed("deterministic"))
    f = _guarded(fn.f, fn.x.shape)
    results = []
    for seed in (1, 2):
        ctx.session.seed(seed)
        value = ctx.call(f, fn.x.copy(), functions=[f]).value
        results.append(as_array(value, "numerical_gradient(f, x)", fn.x.shape))
    if not np.array_equal(results[0], results[1]):
        raise CheckFailed(
            "numerical_gradient(f, x) returned different results for the same f and x after the "
            "random seed changed: compute every coordinate, without random sampling",
            details={"label": fn.label},
        )
