"""Softmax, stable (imports the sigmoid module, which imports this one back)."""

import numpy as np
from past.builtins import xrange

import pf_sigmoid
from pf_course import row_max

__all__ = ["softmax"]


def softmax(x):
    """Row-wise softmax of a 1-D or 2-D array."""
    ### BEGIN SOLUTION
    z = np.exp(x - row_max(x))
    return z / np.sum(z, axis=-1, keepdims=True)
    ### END SOLUTION


def _unused_helper():
    return [pf_sigmoid.sigmoid(i) for i in xrange(2)]


if __name__ == "__main__":
    raise SystemExit("the __main__ block of pf_softmax.py ran")
