"""Load the compiled kernels from Numba's on-disk cache ahead of need (compiling them on a cold cache).

Numba loads a cached function on its first call for each argument type. A grader calls this
in a background thread while the student's notebook executes, so that the first check does
not pay for it.
"""

from __future__ import annotations

import numpy as np

from reference.activations import log_softmax, relu, relu_grad, sigmoid, sigmoid_grad, softmax, tanh, tanh_grad
from reference.losses import softmax_cross_entropy
from reference.mlp import MLPSpec, forward, init_params, loss, loss_and_grads


def warm_up() -> None:
    """Call each kernel once with the argument types the grader's checks use, and no others
    (each signature is a separate cache entry, and loading one costs milliseconds)."""
    vector, matrix, cube = np.zeros(3), np.zeros((2, 3)), np.zeros((2, 2, 2))
    single: np.ndarray = matrix.astype(np.float32)
    for x in (vector, matrix, single):
        softmax(x)
    for y in (vector, matrix):
        log_softmax(y)
        sigmoid_grad(y)
    for z in (vector, matrix, cube):
        sigmoid(z)
    for kernel in (relu, relu_grad, tanh, tanh_grad):
        kernel(matrix)
    labels = np.array([0, 1])
    softmax_cross_entropy(matrix, labels)  # both reductions share one kernel signature (a code, not a string)
    spec = MLPSpec((3, 4, 2))
    params = init_params(spec, 0)
    forward(matrix, params, spec)
    loss(matrix, labels, params, spec)
    loss_and_grads(matrix, labels, params, spec)
