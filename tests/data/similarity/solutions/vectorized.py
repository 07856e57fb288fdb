# ruff: noqa: F821 - a notebook's solution cells: np comes from the template's imports cell
def softmax(x):
    m = x.max(axis=-1, keepdims=True)
    num = np.exp(x - m)
    den = num.sum(axis=-1, keepdims=True)
    return num / den


def sigmoid(x):
    pos = x >= 0
    z = np.exp(np.where(pos, -x, x))
    return np.where(pos, 1 / (1 + z), z / (1 + z))


def sigmoid_grad(s):
    return s * (1 - s)


def softmax_cross_entropy(z, y):
    N = len(y)
    probs = softmax(z)
    correct = probs[np.arange(N), y]
    loss = -np.log(np.maximum(correct, 1e-300)).mean()
    onehot = np.eye(z.shape[1])[y]
    return float(loss), (probs - onehot) / N


def mlp_forward(X, params):
    return np.maximum(X @ params["W1"] + params["b1"], 0) @ params["W2"] + params["b2"]


def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = (params[k] for k in ("W1", "b1", "W2", "b2"))
    a1 = X @ W1 + b1
    r1 = np.maximum(a1, 0)
    logits = r1 @ W2 + b2
    ce, g = softmax_cross_entropy(logits, y)
    total = ce + reg / 2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
    gW2 = r1.T @ g + reg * W2
    gb2 = g.sum(0)
    gr1 = g @ W2.T
    ga1 = np.where(a1 > 0, gr1, 0.0)
    gW1 = X.T @ ga1 + reg * W1
    gb1 = ga1.sum(0)
    return float(total), dict(W1=gW1, b1=gb1, W2=gW2, b2=gb2)


def numerical_gradient(f, x, h=1e-5):
    out = np.zeros(x.shape)
    flat = x.reshape(-1)
    view = out.reshape(-1)
    for j in range(flat.size):
        keep = flat[j]
        flat[j] = keep + h
        fp = f(x)
        flat[j] = keep - h
        fm = f(x)
        flat[j] = keep
        view[j] = (fp - fm) / (2 * h)
    return out
