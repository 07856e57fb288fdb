"""Seeded generators of graded inputs: random shapes and values, and the edge cases.

Every case records its seed and shapes so that a failing case can be reproduced from the
report alone. Shapes are drawn so that batch size, input, hidden and output widths differ
(a wrong axis or a transpose then shows as a wrong shape) unless a case asks for a square
weight matrix on purpose (so that a transposed gradient has the right shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINK_MARGIN = 0.02  # ReLU pre-activations stay at least this far from 0 (finite differences step 1e-6)


@dataclass(frozen=True)
class Case:
    """Inputs for one call of a student function, and how to describe them."""

    label: str
    seed: int
    args: tuple[Any, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] = ()

    @property
    def details(self) -> dict[str, Any]:
        """What a report needs to identify and reproduce this case."""
        names = self.names or tuple(f"arg{i}" for i in range(len(self.args)))
        shapes = {n: list(np.shape(a)) for n, a in zip(names, self.args, strict=False) if isinstance(a, np.ndarray)}
        for a in self.args:
            if isinstance(a, dict):
                shapes.update({k: list(np.shape(v)) for k, v in a.items()})
        dtypes = sorted({str(a.dtype) for a in self.args if isinstance(a, np.ndarray) and a.dtype.kind == "f"})
        return {
            "label": self.label,
            "seed": self.seed,
            "shapes": shapes,
            "dtype": ",".join(dtypes) or "float64",
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str))},
        }


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def logits(seed: int, ndim: int, dtype: Any = np.float64, scale: float = 3.0) -> Case:
    """Random logits of shape (C,) or (N, C)."""
    rng = _rng(seed)
    c = int(rng.integers(3, 11))
    shape = (c,) if ndim == 1 else (int(rng.integers(2, 9)), c)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    return Case(f"random {ndim}-D {np.dtype(dtype).name} logits", seed, (x,), names=("x",))


def extreme_logits(seed: int, dtype: Any = np.float64, magnitude: float = 1e4) -> Case:
    """Logits of +/- magnitude with ties and large gaps: the overflow test. The rows' patterns are fixed (mixed signs,
    all near -m, ties at the maximum, small values); their signs, order, columns and small values come from the seed."""
    rng = _rng(seed)
    m = magnitude
    small = rng.uniform(-1.0, 1.0, 4)
    rows = np.array([[m, 0.0, -m, small[0]], [-m, -m, -m + 1.0, -m], [m, m, m - 2.0, 0.0], small])
    signs = rng.choice([-1.0, 1.0], size=(len(rows), 1))
    x = rng.permuted(rng.permutation(rows * signs + 0.0), axis=1).astype(dtype)
    return Case(f"logits of magnitude {m:g} ({np.dtype(dtype).name})", seed, (x,), names=("x",))


def elementwise(seed: int, dtype: Any = np.float64, scale: float = 4.0) -> Case:
    """A random array of random rank (1 to 3) for elementwise functions."""
    rng = _rng(seed)
    ndim = int(rng.integers(1, 4))
    shape = tuple(int(rng.integers(2, 7)) for _ in range(ndim))
    return Case(f"random {ndim}-D array", seed, ((rng.standard_normal(shape) * scale).astype(dtype),), names=("x",))


def extreme_elementwise(seed: int, magnitude: float = 1e4) -> Case:
    """Values from -magnitude to +magnitude, including 0 and the region where exp overflows, in a random order, with
    random signs and sizes (from the seed) except for the two extremes."""
    rng = _rng(seed)
    sizes = np.array([1000.0, 745.0, 710.0, 40.0, 1.0]) * rng.uniform(1.0, 1.1, 5) * rng.choice([-1.0, 1.0], 5)
    x = rng.permutation(np.concatenate([[-magnitude, magnitude, 0.0], sizes, rng.uniform(-800.0, 800.0, 5)]))
    return Case(f"values from {-magnitude:g} to {magnitude:g}", seed, (x,), names=("x",))


def sigmoid_outputs(seed: int) -> Case:
    """s = sigmoid(x) values strictly inside (0, 1), of random rank."""
    rng = _rng(seed)
    ndim = int(rng.integers(1, 3))
    shape = tuple(int(rng.integers(2, 7)) for _ in range(ndim))
    return Case(
        f"random {ndim}-D array of sigmoid outputs s", seed, (rng.uniform(0.02, 0.98, size=shape),), names=("s",)
    )


def classification(seed: int, scale: float = 2.0) -> Case:
    """Logits z (N, C) and labels y (N,), N != C."""
    rng = _rng(seed)
    n = int(rng.integers(3, 9))
    c = int(rng.choice([k for k in range(3, 8) if k != n]))
    z = rng.standard_normal((n, c)) * scale
    y = rng.integers(0, c, size=n).astype(np.int64)
    return Case("random logits and labels", seed, (z, y), names=("z", "y"))


def extreme_classification(seed: int, magnitude: float = 1e4) -> Case:
    """Logits of +/- magnitude where the true class is the largest logit of a row where exp overflows in one row and
    the smallest logit in another; the rows' signs, order and columns, the small logits and other labels are drawn."""
    rng = _rng(seed)
    m = magnitude
    rows = np.array([[m, 0.0, -m], [-m, m, 0.0], [0.0, 0.0, m], np.sort(rng.uniform(-3.0, 3.0, 3))])
    rows = rng.permuted(rows * rng.choice([-1.0, 1.0], size=(len(rows), 1)) + 0.0, axis=1)
    y = rng.integers(0, 3, size=len(rows)).astype(np.int64)
    y[0], y[1] = np.argmax(rows[0]), np.argmin(rows[1])  # rows 0 and 1 hold +m whatever their sign
    order = rng.permutation(len(rows))
    return Case(f"logits of magnitude {m:g}", seed, (rows[order], y[order]), names=("z", "y"))


def _distinct_dims(rng: np.random.Generator, square: bool) -> tuple[int, int, int, int]:
    while True:
        n, d, h, c = (int(rng.integers(lo, hi)) for lo, hi in ((3, 9), (3, 8), (4, 10), (3, 7)))
        if square:
            h = d
            if len({n, d, c}) == 3:
                return n, d, h, c
        elif len({n, d, h, c}) == 4:
            return n, d, h, c


def mlp(seed: int, reg: float, activation: str = "relu", square: bool = False, batch: int | None = None) -> Case:
    """A random two-layer problem: X (N, D), y (N,), params W1 (D, H), b1, W2 (H, C), b2, and reg.

    For ReLU nets every pre-activation lies at least KINK_MARGIN away from 0, so finite
    differences never straddle a kink, and some are negative and some positive, so that a
    missing or misplaced mask always shows (a batch of one with every unit active would hide it).
    With square=True, D == H.
    """
    rng = _rng(seed)
    n, d, h, c = _distinct_dims(rng, square)
    if batch is not None:
        n = batch
    for _ in range(1000):
        x = rng.standard_normal((n, d))
        params = {
            "W1": rng.standard_normal((d, h)) / np.sqrt(d),
            "b1": rng.standard_normal(h) * 0.5,
            "W2": rng.standard_normal((h, c)) / np.sqrt(h),
            "b2": rng.standard_normal(c) * 0.5,
        }
        u = x @ params["W1"] + params["b1"]
        if activation != "relu" or (np.abs(u).min() >= KINK_MARGIN and (u < 0).any() and (u > 0).any()):
            break
    y = rng.integers(0, c, size=n).astype(np.int64)
    label = "random two-layer problem" + (" with D == H" if square else "") + (f", batch of {n}" if batch else "")
    return Case(
        label,
        seed,
        (x, y, params, float(reg)),
        {"reg": float(reg), "N": n, "D": d, "H": h, "C": c},
        names=("X", "y", "params", "reg"),
    )
