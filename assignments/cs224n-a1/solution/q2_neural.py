"""Question 2: forward and backward propagation through a two-layer network whose parameters are one flat vector.

The network: h = sigmoid(X W1 + b1), yhat = softmax(h W2 + b2), cost = cross-entropy summed over the batch.
"""

import numpy as np
from q1_softmax import softmax
from q2_gradcheck import gradcheck_naive
from q2_sigmoid import sigmoid, sigmoid_grad


def forward_backward_prop(X, labels, params, dimensions):
    """The network's cost on a batch and its gradient with respect to every parameter.

    X: (N, Dx) inputs; labels: (N, Dy) one-hot rows; params: W1 (Dx x H), b1 (H), W2 (H x Dy) and b2 (Dy),
    each flattened row-major, concatenated in that order; dimensions: [Dx, H, Dy].
    Returns (cost, grad): the summed cross-entropy as a float, and its gradient packed like params.
    """
    ### BEGIN SOLUTION
    Dx, H, Dy = dimensions
    blocks = []
    offset = 0  # where the next parameter starts in the flat vector
    for shape in ((Dx, H), (1, H), (H, Dy), (1, Dy)):
        size = shape[0] * shape[1]
        blocks.append(params[offset : offset + size].reshape(shape))
        offset += size
    W1, b1, W2, b2 = blocks

    # forward: the cost from log-sum-exp, which stays finite where a probability underflows to 0
    u = X.dot(W1) + b1
    h = sigmoid(u)
    scores = h.dot(W2) + b2
    top = np.max(scores, axis=1, keepdims=True)
    log_norm = top + np.log(np.sum(np.exp(scores - top), axis=1, keepdims=True))
    cost = float(np.sum(labels * (log_norm - scores)))
    yhat = softmax(scores)  # may reuse scores' memory

    # backward
    dscores = yhat - labels
    gradW2 = h.T.dot(dscores)
    gradb2 = np.sum(dscores, axis=0)
    dhidden = dscores.dot(W2.T) * sigmoid_grad(h)  # sigmoid'(u), from h = sigmoid(u)
    gradW1 = X.T.dot(dhidden)
    gradb1 = np.sum(dhidden, axis=0)

    grad = np.concatenate((gradW1.flatten(), gradb1.flatten(), gradW2.flatten(), gradb2.flatten()))
    return cost, grad
    ### END SOLUTION


def sanity_check():
    """Gradient check of forward_backward_prop on random data (run this file to see it; the grader does not)."""
    N = 20
    dimensions = [10, 5, 10]
    data = np.random.randn(N, dimensions[0])
    labels = np.zeros((N, dimensions[2]))
    labels[np.arange(N), np.random.randint(0, dimensions[2], N)] = 1

    params = np.random.randn((dimensions[0] + 1) * dimensions[1] + (dimensions[1] + 1) * dimensions[2])
    print("Running sanity check...")
    gradcheck_naive(lambda p: forward_backward_prop(data, labels, p, dimensions), params)


if __name__ == "__main__":
    sanity_check()
