"""Trusted numerics for jitgrade: a Numba-compiled reference MLP and finite-difference engine.

Pure numerics (NumPy and Numba only, no I/O, never imports ``grader``); every kernel is
compiled with ``cache=True`` so a warm process loads machine code from disk.
"""

from reference.activations import log_softmax, relu, relu_grad, sigmoid, sigmoid_grad, softmax, tanh, tanh_grad
from reference.losses import REDUCTIONS, check_labels, softmax_cross_entropy
from reference.mlp import ACTIVATIONS, MLPSpec, Params, forward, init_params, loss, loss_and_grads
from reference.numgrad import (
    mlp_numerical_gradient,
    numerical_gradient,
    rel_error,
    sample_indices,
    sampled_numerical_gradient,
)

__all__ = [
    "ACTIVATIONS",
    "REDUCTIONS",
    "MLPSpec",
    "Params",
    "check_labels",
    "forward",
    "init_params",
    "log_softmax",
    "loss",
    "loss_and_grads",
    "mlp_numerical_gradient",
    "numerical_gradient",
    "rel_error",
    "relu",
    "relu_grad",
    "sample_indices",
    "sampled_numerical_gradient",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
    "tanh_grad",
]
