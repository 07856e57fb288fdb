"""Checks of modular layers (``<layer>_forward(...) -> (out, cache)``, ``<layer>_backward(dout, cache)``) and of
computational-graph gates (``add_gate(x, y, dout) -> (out, dx, dy)`` and the like).

A backward problem is graded on the student's own pair: the grader calls the forward (named like the backward,
``_backward`` -> ``_forward``), keeps its cache in the worker as a handle, and passes it to the backward with a
random upstream gradient. Each input's gradient is scored on its own against the reference (with the mistake it
matches named), and all of them against central differences of ``sum(forward(...) * dout)`` along random
directions, computed from the student's own forward (a few calls whatever the size).

The max gate's ties: the assignment's text declares the convention; the checks accept the whole gradient routed to
the first input (``x >= y``) or split evenly, and nothing else (both inputs getting all of it is wrong).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader import cases
from grader.checks.base import CheckContext, CheckFailed, check
from grader.checks.diagnosis import first_match
from grader.checks.directions import directional_derivatives
from grader.checks.values import as_array, assert_close, assert_unchanged, describe
from grader.truth import layers as ref

NOT_A_TUPLE = "{function}() should return a tuple {names}, but it returned {found}"
NO_CACHE = "could not get a cache from {forward}(), which {backward}() is graded with: {why}"
FD_INCONSISTENT = (
    "central differences of sum({forward}(...) * dout), computed from your own {forward}(), disagree with "
    "{backward}()'s {names}: {worst}; a backward must differentiate exactly what its forward computes"
)
FD_ONE = "{name}: along a random direction {found:.6g} from {backward}(), {expected:.6g} by finite differences"
FD_UNREADABLE = "{name}: {why}"
FD_STEP = 1e-5
FD_RTOL = 1e-5  # central differences of these smooth (or kink-free) functions agree to O(h^2)
FD_ATOL = 1e-7
KINK_MARGIN = 0.05  # inputs of the ReLU layer stay this far from 0 (a finite-difference step never crosses it)

DIAGNOSES = {
    "cache_holds_output": "the cache holds the layer's output where backward needs its input x: dw = x.T @ dout "
    "(cache = (x, w, b) in affine_forward)",
    "missing_transpose": "a transpose is missing: dx = dout @ w.T and dw = x.T @ dout (x reshaped to (N, D))",
    "db_not_summed": "db is dout itself: the bias is added to every row, so its gradient sums dout over the batch "
    "(db = dout.sum(axis=0))",
    "db_averaged": "db averages dout over the batch; the bias is added to every row, so db = dout.sum(axis=0)",
    "dx_not_reshaped": "dx must have x's shape: reshape dout @ w.T back to x.shape",
    "mask_from_dout": "the ReLU mask is taken from the wrong tensor: dx = dout * (x > 0), with x the forward's "
    "input, not dout > 0",
    "no_mask": "the ReLU mask is missing: the gradient flows only where the input was positive (dout * (x > 0))",
    "mask_without_dout": "dx is the ReLU mask alone: multiply it by the upstream gradient (dout * (x > 0))",
    "derivative_at_output": "the sigmoid derivative is taken at the output: with the cache holding s = sigmoid(x), "
    "dx = dout * s * (1 - s); sigmoid(s) applies the sigmoid twice",
    "formula_on_input": "s * (1 - s) is applied to the input x: it needs s = sigmoid(x) (cache the output, or "
    "compute sigmoid(x) in backward)",
    "missing_one_minus": "a factor is missing from the sigmoid derivative: sigma'(z) = sigma(z) * (1 - sigma(z))",
    "sigmoid_without_dout": "dx is the local derivative alone: multiply it by the upstream gradient dout",
    "gate_without_dout": "the local gradient is not multiplied by the upstream gradient dout (chain rule)",
    "add_scaled_by_inputs": "an add gate passes the upstream gradient through unchanged to both inputs",
    "multiply_own_input": "each input of a multiply gate gets the upstream gradient times the OTHER input "
    "(dx = dout * y, dy = dout * x)",
    "multiply_passes_through": "a multiply gate scales the upstream gradient by the other input; only an add gate "
    "passes it through",
    "max_to_smaller": "the max gate routes the gradient to the smaller input; it goes to the larger one",
    "max_to_both": "the max gate gives the gradient to both inputs; only the larger one (which the output is) gets it",
    "max_tie_to_both": "on a tie the max gate gives the whole gradient to both inputs: route it to the first (or "
    "split it evenly), never count it twice",
    "fanout_first_only": "a copy (fan-out) node sums the upstream gradients of all its copies: dx = dout1 + dout2",
    "fanout_averaged": "a copy (fan-out) node sums the gradients of its copies; it does not average them",
    "fanout_multiplied": "a copy (fan-out) node adds the gradients of its copies: dx = dout1 + dout2",
    "swapped_inputs": "df/dw and df/dx are swapped: df/dw = s(1 - s) * x and df/dx = s(1 - s) * w",
    "missing_local_derivative": "the sigmoid's derivative s(1 - s) is missing from the chain",
}


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    """A layer kind: its inputs, its reference forward and backward, and a generator of its inputs."""

    name: str
    inputs: tuple[str, ...]
    forward: Callable[..., np.ndarray]
    backward: Callable[..., tuple[np.ndarray, ...]]
    case: Callable[[int], cases.Case]

    @property
    def results(self) -> str:
        """The backward's results as messages name them: '(dx, dw, db)' or 'dx'."""
        names = [f"d{n}" for n in self.inputs]
        return f"({', '.join(names)})" if len(names) > 1 else names[0]


def _affine_case(seed: int) -> cases.Case:
    """x of rank 2 or 3 (N, d1[, d2]) with N, D and M distinct, w (D, M), b (M,)."""
    rng = np.random.default_rng(seed)
    while True:
        n, m = int(rng.integers(2, 7)), int(rng.integers(3, 8))
        dims = tuple(int(d) for d in rng.integers(2, 5, size=int(rng.integers(1, 3))))
        d = int(np.prod(dims))
        if len({n, d, m}) == 3:
            break
    x, w, b = rng.standard_normal((n, *dims)), rng.standard_normal((d, m)), rng.standard_normal(m)
    return cases.Case(f"random {x.ndim}-D x", seed, (x, w, b), names=("x", "w", "b"))


def _elementwise_case(seed: int) -> cases.Case:
    """A random array of rank 1 to 3 with both signs, every entry at least KINK_MARGIN away from 0."""
    x = cases.elementwise(seed).args[0]
    x = np.where(np.abs(x) < KINK_MARGIN, np.copysign(KINK_MARGIN, x) + x, x)
    return cases.Case(f"random {x.ndim}-D array", seed, (x,), names=("x",))


LAYERS = {
    "affine": Layer("affine", ("x", "w", "b"), ref.affine_forward, ref.affine_backward, _affine_case),
    "relu": Layer("relu", ("x",), ref.relu_forward, ref.relu_backward, _elementwise_case),
    "sigmoid": Layer("sigmoid", ("x",), ref.sigmoid_forward, ref.sigmoid_backward, _elementwise_case),
}


def _tuple(value: Any, count: int, function: str, names: str) -> tuple[Any, ...]:
    """The `count` items of a returned tuple (one item: the value itself)."""
    if count == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != count:
        raise CheckFailed(NOT_A_TUPLE.format(function=function, names=names, found=describe(value)))
    return tuple(value)


def forward_name(ctx: CheckContext, layer: Layer) -> str:
    """The forward paired with the graded backward: the function of the assignment's problem of the layer's forward
    kind (as its binding calls it), else the backward's own name with _forward for _backward."""
    kind = f"{layer.name}_forward"
    declared = next((p.binding.call for p in ctx.assignment.problems if p.kind == kind), None)
    if declared is not None:
        return declared
    call = ctx.problem.binding.call
    return call[: -len("_backward")] + "_forward" if call.endswith("_backward") else f"{call}_forward"


def _dout(case: cases.Case, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng([case.seed, 1]).standard_normal(shape)


def _forward_out(ctx: CheckContext, args: tuple[Any, ...], function: str | None = None) -> tuple[np.ndarray, Any]:
    """The student's forward output (as an array) and cache (a handle) for these inputs: the graded problem's
    function through its binding, or the named `function` (a backward's forward, called as it is)."""
    value = ctx.call(*args, function=function, keep=(1,)).value
    name = function or ctx.function
    out, cache = _tuple(value, 2, name, "(out, cache)")
    return as_array(out, f"the output of {name}()"), cache


def _pair_grads(ctx: CheckContext, layer: Layer, case: cases.Case) -> tuple[np.ndarray, tuple[Any, ...]]:
    """The upstream gradient and the student's backward through its own forward's cache, once per case."""
    key = (ctx.problem.name, ctx.hidden, "layer", case.seed)
    if key not in ctx.memo:
        forward = forward_name(ctx, layer)
        dout = _dout(case, layer.forward(*case.args).shape)
        try:
            try:
                _, cache = _forward_out(ctx, case.args, forward)
            except CheckFailed as failure:
                raise CheckFailed(
                    NO_CACHE.format(forward=forward, backward=ctx.function, why=failure.message), status=failure.status
                ) from None
            grads = _tuple(ctx.call(dout, cache).value, len(layer.inputs), ctx.signature, layer.results)
            ctx.memo[key] = (dout, grads)
        except CheckFailed as failure:
            ctx.memo[key] = failure
    if isinstance(ctx.memo[key], CheckFailed):
        raise ctx.memo[key]
    return ctx.memo[key]


def _check_forward(ctx: CheckContext, layer: Layer) -> None:
    for seed in ctx.case_seeds():
        case = layer.case(seed)
        expected = layer.forward(*case.args)
        found, _ = _forward_out(ctx, case.args)
        assert_close(found, expected, ctx.tolerance(), f"the output of {ctx.function}()", case.details)


def _forward_no_mutation(ctx: CheckContext, layer: Layer) -> None:
    case = layer.case(ctx.sub_seed("mutation"))
    result = ctx.call(*case.args, echo_args=True, keep=(1,))
    assert_unchanged(case.args, result.args_after, layer.inputs, ctx.function)


def _check_gradient(ctx: CheckContext, layer: Layer, index: int) -> None:
    name = f"d{layer.inputs[index]}"
    for seed in ctx.case_seeds():
        case = layer.case(seed)
        dout, grads = _pair_grads(ctx, layer, case)
        expected = layer.backward(dout, *case.args)[index]
        found = as_array(grads[index], f"{name} from {ctx.function}()", check_shape=False)
        bugs = ref.LAYER_BUGS[layer.name]
        diagnose = _diagnoser(bugs, (dout, *case.args, layer.forward(*case.args)), index, expected, ctx)
        assert_close(found, expected, ctx.tolerance(), f"{name} from {ctx.function}()", case.details, diagnose)


def _component(function: Callable[..., tuple[Any, ...]], args: tuple[Any, ...], index: int) -> np.ndarray:
    return np.asarray(function(*args)[index], dtype=np.float64)


def _diagnoser(
    bugs: dict[str, Callable[..., tuple[Any, ...]]],
    args: tuple[Any, ...],
    index: int,
    expected: np.ndarray,
    ctx: CheckContext,
) -> Callable[[np.ndarray], str | None]:
    """The diagnosis of a wrong result `index`: the first mistake (computed on `args`) that reproduces it."""
    variants = [(bug, functools.partial(_component, fn, args, index)) for bug, fn in bugs.items()]

    def diagnose(found: np.ndarray) -> str | None:
        bug = first_match(found, variants, expected, ctx.tolerance())
        return DIAGNOSES[bug] if bug else None

    return diagnose


def _check_numeric(ctx: CheckContext, layer: Layer) -> None:
    """Each gradient against central differences of sum(forward(...) * dout) of the student's own forward."""
    forward = forward_name(ctx, layer)
    case = layer.case(ctx.sub_seed("numeric"))
    dout, grads = _pair_grads(ctx, layer, case)
    wrong: dict[str, str] = {}  # gradient -> how it disagrees
    for index, name in enumerate(layer.inputs):

        def objective(v: np.ndarray, index: int = index) -> float:
            args = list(case.args)
            args[index] = v
            out, _ = _forward_out(ctx, tuple(args), forward)
            if out.shape != dout.shape:
                raise CheckFailed(f"{forward}() returned an output of shape {out.shape}, expected {dout.shape}")
            return float(np.sum(out * dout))

        found = as_array(grads[index], f"d{name}", check_shape=False)
        if found.shape != case.args[index].shape:
            wrong[f"d{name}"] = FD_UNREADABLE.format(name=f"d{name}", why=f"shape {found.shape}, not the input's")
            continue
        directions, numeric = directional_derivatives(objective, case.args[index], 1, ctx.sub_seed(name), FD_STEP)
        analytic = float(np.tensordot(directions[0], found, found.ndim))
        if abs(analytic - numeric[0]) > FD_ATOL + FD_RTOL * max(abs(analytic), abs(numeric[0])):
            wrong[f"d{name}"] = FD_ONE.format(
                name=f"d{name}", found=analytic, expected=numeric[0], backward=ctx.function
            )
    if wrong:  # all or nothing: each gradient's own points are its reference check's
        raise CheckFailed(
            FD_INCONSISTENT.format(
                names=", ".join(wrong), backward=ctx.function, forward=forward, worst="; ".join(wrong.values())
            )
        )


def _register_layer(layer: Layer) -> None:
    """The checks of one layer's forward kind and backward kind."""
    forward, backward = f"{layer.name}_forward", f"{layer.name}_backward"
    check(forward, "values", "output on random inputs", weight=3)(functools.partial(_check_forward, layer=layer))
    check(forward, "no_mutation", "does not modify its inputs", role="property", mutation=True)(
        functools.partial(_forward_no_mutation, layer=layer)
    )
    for index, name in enumerate(layer.inputs):
        check(backward, f"d{name}", f"d{name} through its own forward's cache", weight=2)(
            functools.partial(_check_gradient, layer=layer, index=index)
        )
    check(backward, "numeric", "gradients agree with finite differences of its own forward", role="property")(
        functools.partial(_check_numeric, layer=layer)
    )


for _layer in LAYERS.values():
    _register_layer(_layer)


# --------------------------------------------------------------------------- gates


@dataclass(frozen=True)
class Gate:
    """A gate kind: its inputs and results, the reference (and any other accepted convention), its random inputs."""

    name: str
    inputs: tuple[str, ...]
    results: tuple[str, ...]
    accepted: tuple[Callable[..., tuple[Any, ...]], ...]
    draw: Callable[[np.random.Generator, tuple[int, ...]], tuple[Any, ...]]
    forms: tuple[str, ...] = ("scalars", "arrays")  # and "ties": x == y at some entries (FORM_TITLES)
    known: tuple[tuple[Any, ...], ...] = ()  # fixed inputs graded with the scalars (a lecture's worked example)


def _normal(count: int) -> Callable[[np.random.Generator, tuple[int, ...]], tuple[Any, ...]]:
    return lambda rng, shape: tuple(rng.standard_normal(shape) for _ in range(count))


def _vectors(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[Any, ...]:
    size = shape[0] if shape else int(rng.integers(2, 6))
    return rng.standard_normal(size), rng.standard_normal(size)


LECTURE_NEURON = (np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0, 1.0]))  # w . x = 1: f = 0.73 (bias as x = 1)
GATES = {
    "add_gate": Gate("add_gate", ("x", "y", "dout"), ("out", "dx", "dy"), (ref.add_gate,), _normal(3)),
    "multiply_gate": Gate("multiply_gate", ("x", "y", "dout"), ("out", "dx", "dy"), (ref.multiply_gate,), _normal(3)),
    "max_gate": Gate(
        "max_gate",
        ("x", "y", "dout"),
        ("out", "dx", "dy"),
        (ref.max_gate, ref.max_gate_split),
        _normal(3),
        ("scalars", "arrays", "ties"),
    ),
    "copy_gate": Gate("copy_gate", ("x", "dout1", "dout2"), ("out1", "out2", "dx"), (ref.copy_gate,), _normal(3)),
    "sigmoid_dot": Gate(
        "sigmoid_dot", ("w", "x"), ("out", "dw", "dx"), (ref.sigmoid_dot,), _vectors, known=(LECTURE_NEURON,)
    ),
}


def _gate_case(gate: Gate, seed: int, form: str) -> cases.Case:
    """Scalars (Python floats), arrays of a random shape, or arrays with ties (x == y at some entries)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(2, 5, size=int(rng.integers(1, 3))))
    args = gate.draw(rng, () if form == "scalars" else shape)
    if form == "scalars":  # Python floats (a gate of vectors keeps its vectors)
        args = tuple(float(a) if np.ndim(a) == 0 else a for a in args)
    if form == "ties":
        x, y, dout = args
        y = np.where(rng.random(shape) < 0.5, x, y)
        args = (x, y, dout)
    return cases.Case(f"random {form}" if form != "ties" else "arrays with ties", seed, args, names=gate.inputs)


def _check_gate_case(ctx: CheckContext, gate: Gate, case: cases.Case) -> None:
    """Every result of the gate against the reference; another accepted convention passes too."""
    found = _tuple(ctx.call(*case.args).value, len(gate.results), ctx.signature, f"({', '.join(gate.results)})")
    failures = []
    for accepted in gate.accepted:
        try:
            _gate_results(ctx, gate, case, found, accepted)
            return
        except CheckFailed as failure:
            failures.append(failure)
    raise failures[0]


def _gate_results(
    ctx: CheckContext, gate: Gate, case: cases.Case, found: tuple[Any, ...], accepted: Callable[..., Any]
) -> None:
    expected = accepted(*case.args)
    for index, name in enumerate(gate.results):
        value = as_array(found[index], f"{name} from {ctx.function}()", check_shape=False)
        reference = np.asarray(expected[index], dtype=np.float64)
        diagnose = _diagnoser(ref.GATE_BUGS[gate.name], case.args, index, reference, ctx)
        assert_close(value, reference, ctx.tolerance(), f"{name} from {ctx.function}()", case.details, diagnose)


def _check_gate(ctx: CheckContext, gate: Gate, form: str) -> None:
    for known in gate.known if form == "scalars" else ():
        _check_gate_case(ctx, gate, cases.Case("the lecture's example", 0, known, names=gate.inputs))
    for seed in ctx.case_seeds():
        _check_gate_case(ctx, gate, _gate_case(gate, seed, form))


FORM_TITLES = {
    "scalars": "value and local gradients on scalars",
    "arrays": "value and gradients on arrays",
    "ties": "gradients on ties (routed to the first input, or split evenly)",
}


def _register_gate(gate: Gate) -> None:
    for form in gate.forms:
        check(gate.name, form, FORM_TITLES[form], weight=2 if form == "arrays" else 1)(
            functools.partial(_check_gate, gate=gate, form=form)
        )


for _gate in GATES.values():
    _register_gate(_gate)
