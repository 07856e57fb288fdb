"""The course helper that EECS 498's two_layer_net.py imports (``from linear_classifier import sample_batch``):
jitgrade's own implementation of it, under the course's name and signature. Public: it ships with the
assignment and is served to every .py submission, as it was beside the students' files in class."""

import torch


def sample_batch(X, y, num_train, batch_size):
    """A minibatch for stochastic gradient descent: `batch_size` rows of X (with their labels in y) drawn
    uniformly with replacement from the first `num_train` rows."""
    rows = torch.randint(0, num_train, (batch_size,), device=X.device)
    return X[rows], y[rows]
