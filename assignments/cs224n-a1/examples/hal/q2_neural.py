import numpy as np

from q1_softmax import softmax
from q2_gradcheck import gradcheck_naive
from q2_sigmoid import sigmoid, sigmoid_grad


def forward_backward_prop(X, labels, params, dimensions):
    """Cost and flat gradient of the sigmoid-softmax network, one example at a time."""
    Dx, H, Dy = dimensions
    N = X.shape[0]

    # cut the flat vector into the four parameters
    sizes = [Dx * H, H, H * Dy, Dy]
    ends = np.cumsum(sizes)
    W1 = params[0 : ends[0]].reshape(Dx, H)
    b1 = params[ends[0] : ends[1]]
    W2 = params[ends[1] : ends[2]].reshape(H, Dy)
    b2 = params[ends[2] : ends[3]]

    cost = 0.0
    gradW1 = np.zeros((Dx, H))
    gradb1 = np.zeros((N, H))
    gradW2 = np.zeros((H, Dy))
    gradb2 = np.zeros(Dy)
    for n in range(N):
        x = X[n]
        a = sigmoid(np.dot(x, W1) + b1)
        theta = np.dot(a, W2) + b2
        c = np.argmax(labels[n])
        # log softmax without forming exp of large numbers
        log_p = theta - np.max(theta) - np.log(np.sum(np.exp(theta - np.max(theta))))
        cost -= log_p[c]

        # backward
        delta2 = softmax(theta) - labels[n]
        gradW2 += np.outer(a, delta2)
        gradb2 += delta2
        delta1 = np.dot(W2, delta2) * sigmoid_grad(a)
        gradW1 += np.outer(x, delta1)
        gradb1[n] = delta1

    # same order as params
    grad = np.concatenate((gradW1.flatten(), gradb1.flatten(), gradW2.flatten(), gradb2.flatten()))
    return cost, grad


def sanity_check():
    N = 20
    dimensions = [10, 5, 10]
    data = np.random.randn(N, dimensions[0])
    labels = np.zeros((N, dimensions[2]))
    for i in range(N):
        labels[i, np.random.randint(0, dimensions[2] - 1)] = 1
    params = np.random.randn((dimensions[0] + 1) * dimensions[1] + (dimensions[1] + 1) * dimensions[2])
    gradcheck_naive(lambda params: forward_backward_prop(data, labels, params, dimensions), params)


if __name__ == "__main__":
    sanity_check()
