"""Question 2: a gradient checker that compares an analytic gradient with central differences."""

import random

import numpy as np


def gradcheck_naive(f, x):
    """Check the gradient that f returns against central differences at x, entry by entry, and print the verdict.

    f: a function of one array returning (cost, gradient at that array); x: the point, an array changed during
    the check and restored entry by entry. Python's random state is reset before every call of f, so an f that
    samples sees the same draws at every point. Prints "Gradient check passed!" or where it failed.
    """
    rndstate = random.getstate()
    random.setstate(rndstate)
    fx, grad = f(x)  # the cost and the analytic gradient at x
    h = 1e-4  # the step; do not change it

    raise NotImplementedError("Replace this line with your solution")


def sanity_check():
    """Checks on a few functions with known gradients (run this file to see them; the grader does not run it)."""
    quad = lambda x: (np.sum(x**2), x * 2)  # noqa: E731
    print("Running sanity checks...")
    gradcheck_naive(quad, np.array(123.456))  # a scalar
    gradcheck_naive(quad, np.random.randn(3))  # a 1-D vector
    gradcheck_naive(quad, np.random.randn(4, 5))  # a 2-D matrix
    print("")


if __name__ == "__main__":
    sanity_check()
