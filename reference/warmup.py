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
    """Call every kernel once with the argument types graders use (float64 1-D to 3-D, float32 2-D)."""
    samples: list[np.ndarray] = [np.zeros(3), np.zeros((2, 3)), np.zeros((2, 2, 2)), np.zeros((2, 3), np.float32)]
    for x in samples:
        for kernel in (softmax, log_softmax, sigmoid, sigmoid_grad, relu, relu_grad, tanh, tanh_grad):
            kernel(x)
    labels = np.array([0, 1])
    for reduction in ("mean", "sum"):
        softmax_cross_entropy(samples[1], labels, reduction)
    spec = MLPSpec((3, 4, 2))
    params = init_params(spec, 0)
    forward(samples[1], params, spec)
    loss(samples[1], labels, params, spec)
    loss_and_grads(samples[1], labels, params, spec)
