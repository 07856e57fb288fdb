"""Every input shape a function accepts gets the same hard inputs.

A problem kind declares the forms of input its function takes (a softmax takes a 1-D vector or a
2-D batch; a sigmoid takes an array of any rank, 0-d included, and Python floats too where an
assignment's API promises numbers) and how one case becomes each form (row by row, or entry by
entry). A check then grades a case in every declared form with :func:`every_form`, so that a branch
written for one shape cannot hide from the extreme or random inputs given to another (a 1-D branch
that subtracts the index of the maximum passes every 2-D test). Checks declare a subset with
``check(..., forms=...)`` when they are about one form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader import cases

SCALAR = "scalar"  # a Python float
ZERO_D = "0-d"  # a 0-d NumPy array
MAX_ENTRIES = 13  # entries of a case given one at a time as scalars and 0-d arrays (all of the extreme cases)


@dataclass(frozen=True)
class Layout:
    """The forms a kind of function takes, and how a case's first argument becomes each of them.

    `split(x, expected, form)` returns (description, value, expected part) triples: the value given to the
    student in that form, and the part of the result on x that it must give (the functions are row-wise or
    elementwise, so splitting the result the same way gives it).
    """

    forms: tuple[str, ...]
    split: Callable[[np.ndarray, np.ndarray, str], list[tuple[str, Any, np.ndarray]]]


def _rows(x: np.ndarray, expected: np.ndarray, form: str) -> list[tuple[str, Any, np.ndarray]]:
    """A last-axis function (softmax): every row as a 1-D vector, or the rows as one 2-D batch."""
    batch, out = x.reshape(-1, x.shape[-1]), expected.reshape(-1, x.shape[-1])
    if form == "1-D":
        return [(f"row {i} as a 1-D vector", batch[i].copy(), out[i].copy()) for i in range(batch.shape[0])]
    return [("as a 2-D batch", batch.copy(), out.copy())]


def _entries(x: np.ndarray, expected: np.ndarray, form: str) -> list[tuple[str, Any, np.ndarray]]:
    """An elementwise function: single entries as Python floats or 0-d arrays, or all of them in an n-D array."""
    flat, out = x.reshape(-1), expected.reshape(-1)
    if form in (SCALAR, ZERO_D):
        picks = np.unique(np.linspace(0, flat.size - 1, min(flat.size, MAX_ENTRIES)).round().astype(int))
        as_value = (lambda i: float(flat[i])) if form == SCALAR else (lambda i: flat[i : i + 1].reshape(()).copy())
        kind = "a Python float" if form == SCALAR else "a 0-d array"
        return [(f"entry {i} as {kind}", as_value(i), out[i : i + 1].reshape(())) for i in picks]
    ndim = int(form.split("-")[0])
    if x.ndim == ndim:
        return [(f"as a {form} array", x.copy(), expected.copy())]
    grid = (*(2,) * (ndim - 1), flat.size)
    order = np.concatenate([np.roll(np.arange(flat.size), k) for k in range(int(np.prod(grid[:-1])))])
    return [(f"as a {form} array of shape {grid}", flat[order].reshape(grid), out[order].reshape(grid))]


ROWS = Layout(("1-D", "2-D"), _rows)
# "an array of any shape": 0-d to 3-D (the assignments' API takes arrays, so Python numbers are not declared)
ELEMENTWISE = Layout(("1-D", "2-D", "3-D", ZERO_D), _entries)
NUMBERS_AND_ARRAYS = Layout(("1-D", "2-D", "3-D", ZERO_D, SCALAR), _entries)  # for an API that also takes numbers
LAYOUTS: dict[str, Layout] = {}  # problem kind -> its declared input forms


def declare(kind: str, layout: Layout) -> None:
    """Declare the input forms of a problem kind; every check of the kind grades its cases in all of them."""
    LAYOUTS[kind] = layout


def form_of(value: Any) -> str:
    """The form of an argument as the student function received it: 'scalar', '0-d', '1-D', '2-D'..."""
    if isinstance(value, np.ndarray):
        return ZERO_D if value.ndim == 0 else f"{value.ndim}-D"
    return SCALAR


def every_form(
    kind: str, case: cases.Case, expected: np.ndarray, forms: tuple[str, ...] | None = None
) -> Iterator[tuple[cases.Case, np.ndarray]]:
    """The case in every declared form of its kind (or in `forms`), each with its expected result.

    `expected` is the function's result on the case's first argument; the forms split it the same way
    (the functions are row-wise or elementwise, so the result of a row is that row of the result).
    """
    layout = LAYOUTS.get(kind)
    if layout is None:
        yield case, expected
        return
    x = case.args[0]
    wanted = layout.forms if forms is None else tuple(f for f in layout.forms if f in forms)
    for form in wanted:
        for description, value, target in layout.split(x, np.asarray(expected), form):
            derived = cases.Case(
                f"{case.label}, {description}",
                case.seed,
                (value, *case.args[1:]),
                {**case.extra, "form": form},
                case.names,
            )
            yield derived, target
