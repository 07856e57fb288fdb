# ruff: noqa: F821 - a notebook's solution cells: np comes from the template's imports cell
# Written with explicit loops, the way a first course in programming teaches it.
import math


def softmax(x):
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        top = x[0]
        for value in x:
            if value > top:
                top = value
        exps = [math.exp(value - top) for value in x]
        total = sum(exps)
        return np.array([e / total for e in exps])
    out = np.empty_like(x)
    for row in range(x.shape[0]):
        out[row] = softmax(x[row])
    return out


def sigmoid(x):
    x = np.asarray(x, dtype=float)
    result = np.empty_like(x)
    flat_in = x.reshape(-1)
    flat_out = result.reshape(-1)
    for i in range(flat_in.size):
        v = flat_in[i]
        if v >= 0:
            flat_out[i] = 1.0 / (1.0 + math.exp(-v))
        else:
            ev = math.exp(v)
            flat_out[i] = ev / (1.0 + ev)
    return result


def sigmoid_grad(s):
    out = np.empty_like(s)
    for idx in np.ndindex(s.shape):
        out[idx] = s[idx] - s[idx] ** 2
    return out


def softmax_cross_entropy(z, y):
    count, classes = z.shape
    total_loss = 0.0
    grad = np.zeros_like(z, dtype=float)
    for i in range(count):
        p = softmax(z[i])
        shifted = z[i] - np.max(z[i])
        log_sum = math.log(sum(math.exp(v) for v in shifted))
        total_loss += log_sum - shifted[y[i]]
        for c in range(classes):
            indicator = 1.0 if c == y[i] else 0.0
            grad[i, c] = (p[c] - indicator) / count
    return total_loss / count, grad


def mlp_forward(X, params):
    hidden = X.dot(params["W1"]) + params["b1"]
    for i in range(hidden.shape[0]):
        for j in range(hidden.shape[1]):
            if hidden[i, j] < 0:
                hidden[i, j] = 0.0
    return hidden.dot(params["W2"]) + params["b2"]


def mlp_loss(X, y, params, reg):
    pre = X.dot(params["W1"]) + params["b1"]
    act = pre.copy()
    act[act < 0] = 0.0
    scores = act.dot(params["W2"]) + params["b2"]
    data_loss, dscores = softmax_cross_entropy(scores, y)
    penalty = 0.0
    for name in ("W1", "W2"):
        penalty += np.sum(params[name] ** 2)
    grads = {}
    grads["W2"] = act.T.dot(dscores) + reg * params["W2"]
    grads["b2"] = dscores.sum(axis=0)
    dact = dscores.dot(params["W2"].T)
    dpre = dact.copy()
    dpre[pre <= 0] = 0.0
    grads["W1"] = X.T.dot(dpre) + reg * params["W1"]
    grads["b1"] = dpre.sum(axis=0)
    return float(data_loss + 0.5 * reg * penalty), grads


def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x, dtype=float)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        saved = x[ix]
        x[ix] = saved + h
        up = f(x)
        x[ix] = saved - h
        down = f(x)
        x[ix] = saved
        grad[ix] = (up - down) / (2 * h)
        it.iternext()
    return grad
