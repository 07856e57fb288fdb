"""Softmax cross-entropy of logits and integer labels, with its gradient w.r.t. the logits.

Labels are checked here, once, for every public entry point that takes them (check_labels), in
Python before any kernel runs (plus one compiled O(N) range scan); the kernels trust the labels they get.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from reference.activations import _float_copy

REDUCTIONS = ("mean", "sum")

REDUCTION_UNKNOWN = "reduction must be one of {expected}; found {found!r}. Pass 'mean' or 'sum'."
LOGITS_TYPE = "logits z must be an array of real numbers; found dtype {dtype}. Pass a float array."
LOGITS_SHAPE = (
    "logits z must be a 2-D (N, C) array, one row of C scores per example; found shape {shape}. "
    "For a single example pass z.reshape(1, -1)."
)
EMPTY_BATCH = (
    "empty batch: the mean over zero examples is undefined ({source} has 0 rows). "
    "Pass at least one example, or use reduction='sum' (a sum over zero examples is 0)."
)
LABELS_SHAPE = (
    "labels y must be a 1-D array of {rows} class indices, one per row of {source}; found shape {shape}. {hint}"
)
LABELS_SHAPE_ONE_HOT = "If y is one-hot, pass y.argmax(axis=1)."
LABELS_SHAPE_FLAT = "Pass np.ravel(y)."
LABELS_SHAPE_COUNT = "Pass exactly one label per row of {source}."
LABELS_TYPE = (
    "labels y must be integer class indices; found dtype {dtype}. "
    "Pass an integer array of class indices (np.asarray(y, dtype=np.int64) if y holds whole numbers)."
)
LABELS_NOT_WHOLE = (
    "labels y must be whole numbers (float labels are accepted only when every value is integral, never "
    "truncated); found {value!r} at index {index}. Pass integer class indices in [0, {classes})."
)
LABELS_RANGE = (
    "labels y must lie in [0, {classes}), one index per column of the logits; found {value!r} at index {index}. "
    "Use 0-based class indices below {classes} (labels numbered 1..C must be shifted down by 1)."
)


def _shape_hint(shape: tuple[int, ...], rows: int, classes: int, source: str) -> str:
    """What to do about labels of the wrong shape: one-hot rows, a column or row vector, or a wrong count."""
    if shape == (rows, classes):
        return LABELS_SHAPE_ONE_HOT
    if int(np.prod(shape)) == rows:
        return LABELS_SHAPE_FLAT
    return LABELS_SHAPE_COUNT.format(source=source)


def _refuse(values: np.ndarray, index: int, message: str, classes: int) -> ValueError:
    """The ValueError naming the label at `index` (the first bad one)."""
    return ValueError(message.format(value=values[index].item(), index=index, classes=classes))


@njit(cache=True)
def _first_outside(labels, classes):  # type: ignore[no-untyped-def]
    """Index of the first label outside [0, classes), or -1 (one compiled pass: 0.2 us for a small
    batch, where a NumPy reduction costs 1 us, a fifth of a whole small forward and backward pass)."""
    for i in range(labels.shape[0]):
        if labels[i] < 0 or labels[i] >= classes:
            return i
    return -1


def check_labels(y: ArrayLike, rows: int, classes: int, reduction: str, source: str = "z") -> np.ndarray:
    """Labels as a C-contiguous int64 array, checked against N = rows examples of C = classes classes.

    The rule: 1-D of length N, every value in [0, C); any integer dtype, or floats only when every
    value is a whole number; bool, complex and strings are refused. A mean over N = 0 is undefined.
    """
    if rows == 0 and reduction == "mean":
        raise ValueError(EMPTY_BATCH.format(source=source))
    values = np.asarray(y)
    if values.shape != (rows,):
        hint = _shape_hint(values.shape, rows, classes, source)
        raise ValueError(LABELS_SHAPE.format(rows=rows, source=source, shape=values.shape, hint=hint))
    kind = values.dtype.kind
    if kind == "f":
        whole = values == np.round(values)  # False for NaN
        if not whole.all():
            raise _refuse(values, int(np.argmin(whole)), LABELS_NOT_WHOLE, classes)
        outside = (values < 0) | (values >= classes)  # checked before the cast, which would wrap inf or 1e30
        if outside.any():
            raise _refuse(values, int(np.argmax(outside)), LABELS_RANGE, classes)
    elif kind not in "iu":
        raise TypeError(LABELS_TYPE.format(dtype=values.dtype))
    labels = np.ascontiguousarray(values, dtype=np.int64)  # a uint64 beyond the int64 range wraps negative
    index = _first_outside(labels, classes)
    if index >= 0:
        raise _refuse(values, index, LABELS_RANGE, classes)
    return labels


@njit(cache=True)
def reduction_scale(reduction, n):  # type: ignore[no-untyped-def]
    """Factor that turns a sum over the batch into the reduction with code `reduction` (index in REDUCTIONS)."""
    if reduction == 0:
        return 1.0 / n
    if reduction == 1:
        return 1.0
    raise ValueError("reduction code must be 0 (mean) or 1 (sum)")


@njit(cache=True)
def _cross_entropy(z, y, scale):  # type: ignore[no-untyped-def]
    """(scale * sum_i -log softmax(z)[i, y_i], scale * (softmax(z) - onehot(y))); see softmax_cross_entropy.

    y must have passed check_labels (one label in [0, C) per row): it indexes z unchecked.
    """
    n, c = z.shape
    dz = np.empty_like(z)  # float: see softmax_cross_entropy
    loss = 0.0
    for i in range(n):
        label = y[i]
        m = np.float64(z[i, 0])
        for j in range(1, c):
            m = max(m, np.float64(z[i, j]))
        total = 0.0
        for j in range(c):
            e = np.exp(np.float64(z[i, j]) - m)
            dz[i, j] = e
            total += e
        loss += (m - np.float64(z[i, label])) + np.log(total)  # exact for ties at large logits
        for j in range(c):
            p = np.float64(dz[i, j]) / total
            if j == label:
                p -= 1.0
            dz[i, j] = p * scale
    return loss * scale, dz


@njit(cache=True)
def _float_cross_entropy(z, y, reduction):  # type: ignore[no-untyped-def]
    """_cross_entropy of a float copy of z (float32 kept, anything else float64), reduction by code."""
    return _cross_entropy(_float_copy(z), y, reduction_scale(reduction, z.shape[0]))


def softmax_cross_entropy(z: np.ndarray, y: ArrayLike, reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Loss -log softmax(z)[i, y_i] reduced over the batch ("mean" or "sum"), and dL/dz.

    z is (N, C) logits, y is N labels in [0, C) (see check_labels). Returns (loss as float64,
    dz = (softmax(z) - onehot(y)) / N for "mean", without the 1/N for "sum", float32 for float32 z
    and float64 otherwise). Computed from log-sum-exp, so logits of |1e4| neither overflow nor give log(0).
    """
    logits = np.asarray(z)
    if logits.dtype.kind not in "biuf":
        raise TypeError(LOGITS_TYPE.format(dtype=logits.dtype))
    if logits.ndim != 2:
        raise ValueError(LOGITS_SHAPE.format(shape=logits.shape))
    if reduction not in REDUCTIONS:
        raise ValueError(REDUCTION_UNKNOWN.format(expected=REDUCTIONS, found=reduction))
    labels = check_labels(y, logits.shape[0], logits.shape[1], reduction)
    loss, dz = _float_cross_entropy(logits, labels, REDUCTIONS.index(reduction))
    return float(loss), dz
