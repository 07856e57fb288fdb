import numpy as np


def softmax(x):
    """Softmax of a vector, or of every row of a matrix."""
    orig_shape = x.shape

    if len(x.shape) > 1:
        # Matrix: one row at a time
        out = np.zeros(x.shape)
        for i in range(x.shape[0]):
            row = np.exp(x[i] - np.max(x[i]))
            out[i] = row / np.sum(row)
        x = out
    else:
        # Vector
        e = np.exp(x - np.max(x))
        x = e / np.sum(e)

    assert x.shape == orig_shape
    return x


def test_softmax_basic():
    print("Running basic tests...")
    test1 = softmax(np.array([1, 2]))
    print(test1)
    test2 = softmax(np.array([[1001, 1002], [3, 4]]))
    print(test2)


if __name__ == "__main__":
    test_softmax_basic()
