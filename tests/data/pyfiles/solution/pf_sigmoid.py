"""The logistic sigmoid."""

import numpy as np


def sigmoid(x):
    """Elementwise 1 / (1 + exp(-x)), without overflow."""
    ### BEGIN SOLUTION
    return np.exp(-np.logaddexp(0, -x))
    ### END SOLUTION


def softmax_of(x):
    """Uses the softmax module (they import each other)."""
    from pf_softmax import softmax

    return softmax(x)


if __name__ == "__main__":
    raise SystemExit("the __main__ block of pf_sigmoid.py ran")
