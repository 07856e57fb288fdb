"""two_layer_net.py: A two-layer network in PyTorch, backpropagated by hand (eecs498-two-layer).

The code cells of the assignment's notebook as one module: replace each raise NotImplementedError with
your solution, then hand in this file or the notebook."""

import torch


def nn_forward_pass(params, X):
    """Scores (N, C) and hidden activations (N, H) of the two-layer ReLU network."""
    raise NotImplementedError("Replace this line with your solution")


def nn_forward_backward(params, X, y=None, reg=0.0):
    """Scores when y is None; else (loss, grads) of the regularized mean softmax cross-entropy."""
    W1, W2 = params["W1"], params["W2"]
    scores, hidden = nn_forward_pass(params, X)
    if y is None:
        return scores
    raise NotImplementedError("Replace this line with your solution")
