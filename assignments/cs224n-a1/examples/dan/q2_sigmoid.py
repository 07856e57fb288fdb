import numpy as np


def sigmoid(x):
    """Logistic function, elementwise."""
    # 1 / (1 + e^-x) = (1 + tanh(x / 2)) / 2, which never overflows
    s = 0.5 * (1.0 + np.tanh(0.5 * x))
    return s


def sigmoid_grad(s):
    """Derivative of the logistic function, given its value s (not x)."""
    ds = s - s**2
    return ds


if __name__ == "__main__":
    x = np.array([[1, 2], [-1, -2]])
    print(sigmoid(x))
    print(sigmoid_grad(sigmoid(x)))
