"""Question 2: the sigmoid function and its derivative, written in terms of the sigmoid's output."""

import numpy as np


def sigmoid(x):
    """The logistic function 1 / (1 + exp(-x)), elementwise, for a number or an array of any shape.

    exp is only taken of -|x| <= 0, so large |x| neither overflows nor warns.
    """
    raise NotImplementedError("Replace this line with your solution")


def sigmoid_grad(s):
    """The sigmoid's derivative as a function of its output: for s = sigmoid(x), d sigmoid / dx = s * (1 - s)."""
    raise NotImplementedError("Replace this line with your solution")


def test_sigmoid_basic():
    """A few hand-checked values (run this file to see them; the grader does not run it)."""
    print("Running basic tests...")
    x = np.array([[1, 2], [-1, -2]])
    f = sigmoid(x)
    g = sigmoid_grad(f)
    assert np.allclose(f, [[0.73105858, 0.88079708], [0.26894142, 0.11920292]], rtol=1e-5, atol=1e-6)
    assert np.allclose(g, [[0.19661193, 0.10499359], [0.19661193, 0.10499359]], rtol=1e-5, atol=1e-6)
    print("Basic tests passed.")


if __name__ == "__main__":
    test_sigmoid_basic()
