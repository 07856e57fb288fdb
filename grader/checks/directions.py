"""Central differences of a student's own function along random directions (gradcheck's fast mode).

A checking tool, not an answer: it differentiates what the student's code computes, never the reference's, so it
ships in every install, including the students' (which hold no reference solution: grader.truth).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ScalarFunction = Callable[[np.ndarray], float]


def random_directions(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """`count` random unit directions shaped like x, stacked on a new first axis (seeded)."""
    v = np.random.default_rng(seed).standard_normal((count, *shape))
    norms = np.sqrt((v.reshape(count, -1) ** 2).sum(axis=1))
    return v / norms.reshape((count,) + (1,) * len(shape))


def directional_derivatives(
    f: ScalarFunction, x: np.ndarray, count: int, seed: int, h: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of f along `count` random unit directions v: (f(x+hv) - f(x-hv)) / 2h.

    Returns (directions, derivatives); compare with np.tensordot(directions, analytic, x.ndim).
    Costs 2*count evaluations whatever the size of x (gradcheck's fast mode).
    """
    x = np.asarray(x, dtype=np.float64)
    directions = random_directions(x.shape, count, seed)
    values = np.array([(float(f(x + h * v)) - float(f(x - h * v))) / (2.0 * h) for v in directions])
    return directions, values
