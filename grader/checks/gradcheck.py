"""Finite-difference checks of a student's gradient against the student's own function.

In the spirit of torch.autograd.gradcheck's fast mode: instead of the full Jacobian, compare
directional derivatives (f(x + h v) - f(x - h v)) / 2h with <gradient, v> along a few random
unit directions v. Each direction costs two calls whatever the size of x.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from grader.checks.base import CheckFailed
from reference.numgrad import random_directions

# Central differences with h = 1e-6 on the losses graded here (values ~1, third derivatives ~1):
# truncation ~h^2 = 1e-12, rounding ~eps*|f|/h ~ 1e-10. A tolerance of 1e-6 absolute plus 1e-5
# relative is 10^4 times that, and far below the effect of any real bug (>= 1e-3).
STEP = 1e-6
ATOL = 1e-6
RTOL = 1e-5
# A loss whose directional derivatives all stay below this does not depend on the parameters
# (a placeholder such as `return 0.0, zeros`): agreeing with it proves nothing.
FLAT = 1e-7
FLAT_MESSAGE = (
    "your loss does not change when the parameters change (a placeholder?), so agreeing with it proves nothing"
)


@dataclass(frozen=True)
class DirectionalCheck:
    """The worst direction: the analytic and numerical directional derivatives along it."""

    consistent: bool
    analytic: float
    numerical: float
    direction: int
    flat: bool = False

    def describe(self, what: str) -> str:
        """Both sides, as a gradcheck failure message would show them."""
        return (
            f"along random direction #{self.direction}, {what} gives a directional derivative of "
            f"{self.analytic:.8g}, but finite differences of the loss give {self.numerical:.8g}"
        )


def directional_check(
    loss_at: Callable[[np.ndarray], float], gradient: np.ndarray, x: np.ndarray, count: int, seed: int
) -> DirectionalCheck:
    """Compare <gradient, v> with central differences of loss_at along `count` random unit directions."""
    directions = random_directions(x.shape, count, seed)
    worst = DirectionalCheck(True, 0.0, 0.0, 0)
    worst_excess = -1.0
    largest = 0.0
    for i, v in enumerate(directions):
        numerical = (loss_at(x + STEP * v) - loss_at(x - STEP * v)) / (2 * STEP)
        analytic = float(np.sum(gradient * v))
        largest = max(largest, abs(numerical)) if np.isfinite(numerical) else np.inf
        excess = (
            abs(numerical - analytic) / (ATOL + RTOL * abs(numerical)) if np.isfinite(analytic + numerical) else np.inf
        )
        if excess > worst_excess:
            worst_excess = excess
            worst = DirectionalCheck(bool(excess <= 1.0), analytic, float(numerical), i)
    return replace(worst, flat=bool(largest < FLAT))


def assert_own_gradient(
    loss_at: Callable[[np.ndarray], float],
    gradient: np.ndarray,
    x: np.ndarray,
    seed: int,
    what: str,
    details: dict[str, Any],
) -> None:
    """Fail unless `gradient` is the gradient of the student's own (non-constant) loss at x."""
    result = directional_check(loss_at, gradient, x, count=3, seed=seed)
    numbers = {**details, "analytic": result.analytic, "numerical": result.numerical}
    if result.flat:
        raise CheckFailed(FLAT_MESSAGE, details=numbers)
    if not result.consistent:
        raise CheckFailed(f"{what} is not the gradient of your own loss: " + result.describe(what), details=numbers)
