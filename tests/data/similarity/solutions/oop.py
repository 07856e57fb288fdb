# ruff: noqa: F821 - a notebook's solution cells: np comes from the template's imports cell
from scipy.special import expit, logsumexp


def softmax(x):
    lse = logsumexp(x, axis=-1)
    return np.exp(x - np.expand_dims(lse, -1))


def sigmoid(x):
    return expit(x)


def sigmoid_grad(s):
    return s - np.square(s)


class Layer:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.inp = None

    def forward(self, inp):
        self.inp = inp
        return np.matmul(inp, self.W) + self.b

    def backward(self, grad_out):
        return np.matmul(grad_out, self.W.T), np.matmul(self.inp.T, grad_out), grad_out.sum(axis=0)


class ReLU:
    def forward(self, inp):
        self.mask = inp > 0
        return np.where(self.mask, inp, 0)

    def backward(self, grad_out):
        return grad_out * self.mask


def softmax_cross_entropy(z, y):
    rows = z.shape[0]
    lse = logsumexp(z, axis=1)
    nll = lse - z[range(rows), y]
    target = np.zeros(z.shape)
    target[range(rows), y] = 1
    dz = (np.exp(z - lse[:, None]) - target) / rows
    return float(np.mean(nll)), dz


def mlp_forward(X, params):
    first, act, second = Layer(params["W1"], params["b1"]), ReLU(), Layer(params["W2"], params["b2"])
    return second.forward(act.forward(first.forward(X)))


def mlp_loss(X, y, params, reg):
    first, act, second = Layer(params["W1"], params["b1"]), ReLU(), Layer(params["W2"], params["b2"])
    out = second.forward(act.forward(first.forward(X)))
    loss, dout = softmax_cross_entropy(out, y)
    regular = 0.5 * reg * (np.linalg.norm(params["W1"]) ** 2 + np.linalg.norm(params["W2"]) ** 2)
    dmid, dW2, db2 = second.backward(dout)
    _, dW1, db1 = first.backward(act.backward(dmid))
    result = {"W1": dW1 + reg * params["W1"], "b1": db1, "W2": dW2 + reg * params["W2"], "b2": db2}
    return float(loss + regular), result


def numerical_gradient(f, x, h=1e-5):
    g = np.zeros_like(x, dtype=np.float64)
    positions = list(np.ndindex(x.shape))
    while positions:
        p = positions.pop()
        base = x[p]
        x[p] = base + h
        high = f(x)
        x[p] = base - h
        low = f(x)
        x[p] = base
        g[p] = (high - low) / h / 2
    return g
