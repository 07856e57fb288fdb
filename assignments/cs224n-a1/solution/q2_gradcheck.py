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

    ### BEGIN SOLUTION
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        random.setstate(rndstate)
        f_plus = f(x)[0]
        x[ix] = old - h
        random.setstate(rndstate)
        f_minus = f(x)[0]
        x[ix] = old
        numgrad = (f_plus - f_minus) / (2 * h)

        # relative error, with 1 as the floor of the scale so that tiny gradients are compared absolutely
        reldiff = abs(numgrad - grad[ix]) / max(1, abs(numgrad), abs(grad[ix]))
        if reldiff > 1e-5:
            print("Gradient check failed.")
            print(f"The first wrong entry is x{list(ix)}: analytic {grad[ix]:g}, numerical {numgrad:g}")
            return
        it.iternext()

    print("Gradient check passed!")
    ### END SOLUTION


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
