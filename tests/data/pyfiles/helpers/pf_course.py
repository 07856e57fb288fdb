"""A course helper module shipped with the assignment (public)."""

import numpy as np


def row_max(x):
    """The maximum of each row, kept as a column."""
    return np.max(x, axis=-1, keepdims=True)
