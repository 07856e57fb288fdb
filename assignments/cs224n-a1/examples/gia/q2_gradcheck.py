import random

import numpy as np


def gradcheck_naive(f, x):
    """Compare f's gradient at x with finite differences; f(x) gives (cost, gradient)."""
    rndstate = random.getstate()
    random.setstate(rndstate)
    fx, grad = f(x)
    h = 1e-4

    for ix in np.ndindex(*x.shape):
        saved = x[ix].copy()

        x[ix] = saved + h
        random.setstate(rndstate)
        cost_up = f(x)[0]

        x[ix] = saved - h
        random.setstate(rndstate)
        cost_down = f(x)[0]

        x[ix] = saved
        numgrad = (cost_up - cost_down) / (2 * h)

        reldiff = abs(numgrad - grad[ix]) / max(1, abs(numgrad), abs(grad[ix]))
        if reldiff > 1e-5:
            print("Gradient check failed.")
            print("index", ix, "analytic", grad[ix], "numeric", numgrad)
            return

    print("Gradient check passed!")


if __name__ == "__main__":
    quad = lambda x: (np.sum(x**2), x * 2)
    gradcheck_naive(quad, np.array(123.456))
    gradcheck_naive(quad, np.random.randn(3))
    gradcheck_naive(quad, np.random.randn(4, 5))
