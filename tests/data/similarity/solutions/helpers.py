# ruff: noqa: F821 - a notebook's solution cells: np comes from the template's imports cell
def _stable_shift(scores):
    """Subtract the row maximum so that exp never overflows."""
    return scores - np.amax(scores, axis=-1, keepdims=True)


def _log_softmax(scores):
    shifted = _stable_shift(scores)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _relu(values):
    return values * (values > 0)


def _affine(inputs, weights, bias):
    return np.dot(inputs, weights) + bias


def softmax(x):
    return np.exp(_log_softmax(x))


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def sigmoid_grad(s):
    one_minus = 1.0 - s
    return np.multiply(s, one_minus)


def softmax_cross_entropy(z, y):
    batch = z.shape[0]
    logp = _log_softmax(z)
    picked = logp[np.arange(batch), y]
    gradient = np.exp(logp)
    gradient[np.arange(batch), y] -= 1.0
    return float(-picked.sum() / batch), gradient / batch


def _hidden(X, params):
    pre_activation = _affine(X, params["W1"], params["b1"])
    return pre_activation, _relu(pre_activation)


def mlp_forward(X, params):
    _, hidden = _hidden(X, params)
    return _affine(hidden, params["W2"], params["b2"])


def _l2(params, reg):
    return 0.5 * reg * sum(np.vdot(params[name], params[name]) for name in ("W1", "W2"))


def mlp_loss(X, y, params, reg):
    pre_activation, hidden = _hidden(X, params)
    scores = _affine(hidden, params["W2"], params["b2"])
    loss, dscores = softmax_cross_entropy(scores, y)
    grads = {
        "W2": np.dot(hidden.T, dscores) + reg * params["W2"],
        "b2": np.sum(dscores, axis=0),
    }
    dhidden = np.dot(dscores, params["W2"].T)
    dpre = dhidden * (pre_activation > 0)
    grads["W1"] = np.dot(X.T, dpre) + reg * params["W1"]
    grads["b1"] = np.sum(dpre, axis=0)
    return float(loss + _l2(params, reg)), grads


def _central_difference(f, x, index, h):
    original = x[index]
    x[index] = original + h
    plus = f(x)
    x[index] = original - h
    minus = f(x)
    x[index] = original
    return (plus - minus) / (2.0 * h)


def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    for index in np.ndindex(*x.shape):
        grad[index] = _central_difference(f, x, index, h)
    return grad
