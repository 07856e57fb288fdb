"""The course's helper module of the either-demo assignment, imported by a .py submission by name."""

import numpy as np


def row_max(x):
    """The maximum of each row, kept as a column (what a stable softmax subtracts)."""
    return np.max(x, axis=-1, keepdims=True)
