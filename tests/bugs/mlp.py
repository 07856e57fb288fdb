"""Buggy submissions of the `mlp` assignment (ReLU hidden layer, loss averaged over the batch).

Every source is a whole function as a student would hand it in, in varied styles (loops, einsum,
np.where, in-place updates, np.eye one-hots), with one mistake (or two, in the combinations).
Substrings expected in diagnoses are quoted from grader/checks/diagnosis.py MESSAGES.
"""

from __future__ import annotations

from bugs import Bug, both, bug, hidden_too

# --------------------------------------------------------------------------- expected diagnoses (MESSAGES)

WRONG_AXIS = "normalized over the wrong axis"
NO_MAX_SHIFT = "subtract the row maximum"
SIGMOID_TWICE = "applies the sigmoid again"
TANH = "derivative of tanh"
MISSING_1_N = "missing 1/N"
LOSS_SUMMED = "summed over the batch instead of averaged"
SIGN = "sign of dz is flipped"
ONEHOT = "one-hot labels are not subtracted"
REG_MISSING_LOSS = "is missing from the loss"
REG_HALF = "lacks its factor 0.5"
REG_BIASES = "the biases are regularized"
REG_MISSING = "regularization gradient reg * W is missing"
REG_2 = "the regularization gradient is 2 * reg * W"
BIAS_MEAN = "bias gradient averages over the batch"
MASK_MISSING = "activation's derivative is missing in backprop"
MASK_UPSTREAM = "taken from the upstream gradient (dh > 0)"
W2_FROM_U = "dW2 uses the pre-activation u"
B1_MISSING = "does not add the bias b1"
B2_MISSING = "does not add the bias b2"
NO_ACTIVATION = "the hidden layer has no activation"
PROBABILITIES = "returns probabilities"
TRANSPOSED = "the gradient is transposed"
NOT_SUMMED = "not summed over the batch: db = dz.sum(axis=0)"
WRONG_BIAS_AXIS = "summed over the wrong axis"
ONE_SIDED = "one-sided difference"

MUTATION = "modified its input"

# --------------------------------------------------------------------------- softmax

SOFTMAX_AXIS_0 = '''
def softmax(x):
    e = np.exp(x - np.max(x, axis=0))
    return e / np.sum(e, axis=0)
'''

SOFTMAX_NO_SHIFT_LOOP = '''
def softmax(x):
    if x.ndim == 1:
        return np.exp(x) / np.sum(np.exp(x))
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        row = np.exp(x[i])
        out[i] = row / row.sum()
    return out
'''

SOFTMAX_GLOBAL_MAX = '''
def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum(axis=-1, keepdims=True)
'''

SOFTMAX_IN_PLACE = '''
def softmax(x):
    x -= np.max(x, axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= np.sum(x, axis=-1, keepdims=True)
    return x
'''

SOFTMAX_LOGSUMEXP = '''
def softmax(x):
    m = x.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    return np.exp(x - lse)
'''

# --------------------------------------------------------------------------- sigmoid and sigmoid_grad

SIGMOID_NAIVE = '''
def sigmoid(x):
    return 1 / (1 + np.exp(-x))
'''

SIGMOID_IN_PLACE = '''
def sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    x[pos] = np.exp(-x[pos])
    x[~pos] = np.exp(x[~pos])
    out[pos] = 1 / (1 + x[pos])
    out[~pos] = x[~pos] / (1 + x[~pos])
    return out
'''

SIGMOID_GRAD_TWICE = '''
def sigmoid_grad(s):
    return sigmoid(s) * (1 - sigmoid(s))
'''

SIGMOID_GRAD_TANH = '''
def sigmoid_grad(s):
    return 1 - s ** 2
'''

SIGMOID_GRAD_IN_PLACE = '''
def sigmoid_grad(s):
    s *= 1 - s
    return s
'''

# --------------------------------------------------------------------------- softmax_cross_entropy

CE_NO_1_N = '''
def softmax_cross_entropy(z, y):
    N, C = z.shape
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(N), y].mean()
    dz = np.exp(log_p) - np.eye(C)[y]
    return loss, dz
'''

CE_SUMMED = '''
def softmax_cross_entropy(z, y):
    n = len(y)
    shifted = z - np.max(z, axis=1, keepdims=True)
    log_p = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = 0.0
    for i in range(n):
        loss -= log_p[i, y[i]]
    dz = np.exp(log_p)
    dz[np.arange(n), y] -= 1
    return loss, dz / n
'''

CE_SIGN_FLIPPED = '''
def softmax_cross_entropy(z, y):
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.mean(log_probs[range(N), y])
    onehot = np.zeros_like(z)
    onehot[range(N), y] = 1
    dz = (onehot - np.exp(log_probs)) / N
    return loss, dz
'''

CE_NO_ONEHOT = '''
def softmax_cross_entropy(z, y):
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dz = np.exp(log_probs) / N
    return loss, dz
'''

CE_MUTATES_Z = '''
def softmax_cross_entropy(z, y):
    N = z.shape[0]
    z -= np.max(z, axis=1, keepdims=True)
    log_probs = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    loss = -np.mean(log_probs[np.arange(N), y])
    dz = np.exp(log_probs)
    dz[np.arange(N), y] -= 1
    dz /= N
    return float(loss), dz
'''

CE_NO_SHIFT = '''
def softmax_cross_entropy(z, y):
    N = z.shape[0]
    p = np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(N), y]))
    dz = p.copy()
    dz[np.arange(N), y] -= 1
    return loss, dz / N
'''

# shifted by the row maximum, but the log of the probabilities (not log-softmax): log(0) when p underflows
CE_LOG_OF_SOFTMAX = '''
def softmax_cross_entropy(z, y):
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[np.arange(N), y]))
    dz = probs.copy()
    dz[np.arange(N), y] -= 1
    return loss, dz / N
'''

# --------------------------------------------------------------------------- mlp_forward

FORWARD_NO_B1 = '''
def mlp_forward(X, params):
    h = np.maximum(0, X @ params["W1"])
    return h @ params["W2"] + params["b2"]
'''

FORWARD_NO_B2_EINSUM = '''
def mlp_forward(X, params):
    u = np.einsum("nd,dh->nh", X, params["W1"]) + params["b1"]
    h = np.where(u > 0, u, 0.0)
    return np.einsum("nh,hc->nc", h, params["W2"])
'''

FORWARD_NO_RELU = '''
def mlp_forward(X, params):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    hidden = X.dot(W1) + b1
    return hidden.dot(W2) + b2
'''

FORWARD_PROBABILITIES = '''
def mlp_forward(X, params):
    h = np.maximum(0, X @ params["W1"] + params["b1"])
    scores = h @ params["W2"] + params["b2"]
    return softmax(scores)
'''

FORWARD_LOOP = '''
def mlp_forward(X, params):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    out = np.zeros((X.shape[0], W2.shape[1]))
    for n in range(X.shape[0]):
        h = X[n] @ W1 + b1
        h[h < 0] = 0
        out[n] = h @ W2 + b2
    return out
'''

# --------------------------------------------------------------------------- mlp_loss
# Each is a whole mlp_loss with its own forward and backward pass (the cross-entropy inline, or the
# student's own softmax_cross_entropy where noted), as students write it.

_CE_INLINE = '''
    N = X.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    data_loss = -log_probs[np.arange(N), y].mean()
'''


def _mlp_loss(body: str) -> str:
    """A whole mlp_loss: forward to z, the inline cross-entropy, then `body` (backward pass, return)."""
    return ('''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
''' + _CE_INLINE + body)


LOSS_NO_1_N = _mlp_loss('''
    loss = data_loss + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = probs.copy()
    dz[np.arange(N), y] -= 1
    dW2 = h.T @ dz + reg * W2
    db2 = dz.sum(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
''')

LOSS_SUM_OVER_BATCH = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    u = X @ W1 + b1
    h = np.maximum(u, 0)
    z = h @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(N), y]) + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dz = np.exp(log_probs)
    dz[np.arange(N), y] -= 1
    dz /= N
    grads = {}
    grads["W2"] = h.T @ dz + reg * W2
    grads["b2"] = dz.sum(axis=0)
    du = dz @ W2.T
    du[u <= 0] = 0
    grads["W1"] = X.T @ du + reg * W1
    grads["b1"] = du.sum(axis=0)
    return loss, grads
'''

LOSS_REG_MISSING_GRAD = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = np.einsum("nd,dh->nh", X, W1) + b1
    h = np.where(u > 0, u, 0.0)
    z = np.einsum("nh,hc->nc", h, W2) + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.einsum("ij,ij->", W1, W1) + np.einsum("ij,ij->", W2, W2))
    dW2 = np.einsum("nh,nc->hc", h, dz)
    db2 = dz.sum(0)
    du = np.where(u > 0, np.einsum("nc,hc->nh", dz, W2), 0.0)
    dW1 = np.einsum("nd,nh->dh", X, du)
    db1 = du.sum(0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_REG_FACTOR_2 = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    # d/dW of reg * W**2 is 2 * reg * W
    dW2 = h.T @ dz + 2 * reg * W2
    db2 = np.sum(dz, axis=0)
    du = dz @ W2.T
    du *= (u > 0)
    dW1 = X.T @ du + 2 * reg * W1
    db1 = np.sum(du, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_REG_ON_BIASES = '''
def mlp_loss(X, y, params, reg):
    u = X @ params["W1"] + params["b1"]
    h = np.maximum(0, u)
    z = h @ params["W2"] + params["b2"]
    loss, dz = softmax_cross_entropy(z, y)
    grads = {}
    for name in params:
        loss += 0.5 * reg * np.sum(params[name] ** 2)
    grads["W2"] = h.T @ dz
    grads["b2"] = dz.sum(axis=0)
    du = (dz @ params["W2"].T) * (u > 0)
    grads["W1"] = X.T @ du
    grads["b1"] = du.sum(axis=0)
    for name in params:
        grads[name] += reg * params[name]
    return loss, grads
'''

LOSS_REG_ON_BIAS_GRADS = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dW2 = h.T @ dz + reg * W2
    db2 = np.sum(dz, axis=0) + reg * b2
    du = dz @ W2.T * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = np.sum(du, axis=0) + reg * b1
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_REG_MISSING_FROM_LOSS = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    loss, dz = softmax_cross_entropy(z, y)
    dW2 = h.T @ dz + reg * W2
    db2 = np.sum(dz, axis=0)
    du = dz @ W2.T * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = np.sum(du, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_REG_WITHOUT_HALF = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + reg * (np.sum(np.square(W1)) + np.sum(np.square(W2)))
    dW2 = h.T @ dz + reg * W2
    db2 = np.sum(dz, axis=0)
    du = dz @ W2.T * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = np.sum(du, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''


def _backward(db2: str = "dz.sum(axis=0)", du: str = "dh * (u > 0)", db1: str = "du.sum(axis=0)",
              dw2: str = "h.T @ dz + reg * W2", dw1: str = "X.T @ du + reg * W1") -> str:
    """A whole mlp_loss calling the student's softmax_cross_entropy, with these backward-pass lines."""
    return f'''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dW2 = {dw2}
    db2 = {db2}
    dh = dz @ W2.T
    du = {du}
    dW1 = {dw1}
    db1 = {db1}
    return loss, {{"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}}
'''


LOSS_BIAS_NOT_SUMMED = _backward(db2="dz", db1="du")
LOSS_BIAS_WRONG_AXIS = _backward(db2="np.sum(dz, axis=1)", db1="np.sum(du, axis=1)")
LOSS_BIAS_MEAN = _backward(db2="np.mean(dz, axis=0)", db1="np.mean(du, axis=0)")
LOSS_MASK_MISSING = _backward(du="dh")
LOSS_MASK_UPSTREAM = _backward(du="np.where(dh > 0, dh, 0)")
LOSS_W2_FROM_U = _backward(dw2="u.T @ dz + reg * W2")
LOSS_W1_TRANSPOSED = _backward(dw1="np.einsum('nh,nd->hd', du, X) + reg * W1.T")
LOSS_W2_TRANSPOSED = _backward(dw2="dz.T @ h + reg * W2.T")

LOSS_RELU_MASK_LOOP = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N, H = X.shape[0], W1.shape[1]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dW2 = h.T @ dz + reg * W2
    db2 = dz.sum(axis=0)
    dh = dz @ W2.T
    du = np.zeros((N, H))
    for i in range(N):
        for j in range(H):
            if dh[i, j] > 0:
                du[i, j] = dh[i, j]
    dW1 = X.T @ du + reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_GRADS_ALIAS_PARAMS = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    grads = params
    grads["W2"] = h.T @ dz + reg * W2
    grads["b2"] = np.sum(dz, axis=0)
    du = dz @ W2.T * (u > 0)
    grads["W1"] = X.T @ du + reg * W1
    grads["b1"] = np.sum(du, axis=0)
    return loss, grads
'''

LOSS_SIGN_FLIPPED = _mlp_loss('''
    loss = data_loss + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = -probs
    dz[np.arange(N), y] += 1
    dz /= N
    dW2 = h.T @ dz + reg * W2
    db2 = dz.sum(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
''')

LOSS_ONEHOT_NOT_SUBTRACTED = _mlp_loss('''
    loss = data_loss + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = probs / N
    dW2 = h.T @ dz + reg * W2
    db2 = dz.sum(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
''')

LOSS_FORWARD_B1_MISSING = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    data_loss, dz = softmax_cross_entropy(z, y)
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dW2 = h.T @ dz + reg * W2
    db2 = np.sum(dz, axis=0)
    du = dz @ W2.T * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = np.sum(du, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

# placeholders left in: a constant loss and zero gradients
LOSS_PLACEHOLDER = '''
def mlp_loss(X, y, params, reg):
    loss = 0.0
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    # TODO forward and backward pass
    return loss, grads
'''

CE_PLACEHOLDER = '''
def softmax_cross_entropy(z, y):
    loss, dz = 0.0, np.zeros_like(z)
    # TODO
    return loss, dz
'''

# two mistakes at once
LOSS_NO_REG_AT_ALL = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    loss, dz = softmax_cross_entropy(z, y)
    dW2 = h.T @ dz
    db2 = np.sum(dz, axis=0)
    du = dz @ W2.T * (u > 0)
    dW1 = X.T @ du
    db1 = np.sum(du, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_NO_1_N_REG_2 = _mlp_loss('''
    loss = data_loss + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = probs.copy()
    dz[np.arange(N), y] -= 1
    dW2 = h.T @ dz + 2 * reg * W2
    db2 = dz.sum(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + 2 * reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
''')

LOSS_MASK_MISSING_REG_MISSING = _backward(du="dh", dw2="h.T @ dz", dw1="X.T @ du")
LOSS_W2_FROM_U_REG_2 = _backward(dw2="u.T @ dz + 2 * reg * W2", dw1="X.T @ du + 2 * reg * W1")

LOSS_NO_1_N_BIAS_MEAN = _mlp_loss('''
    loss = data_loss + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = probs.copy()
    dz[np.arange(N), y] -= 1
    dW2 = h.T @ dz + reg * W2
    db2 = dz.mean(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = du.mean(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
''')

LOSS_SUMMED_NO_1_N = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.sum(np.log(p[np.arange(N), y])) + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = p - np.eye(W2.shape[1])[y]
    dW2 = h.T @ dz + reg * W2
    db2 = dz.sum(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

LOSS_CORRECT_EINSUM = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = (params[k] for k in ("W1", "b1", "W2", "b2"))
    N, C = X.shape[0], W2.shape[1]
    u = np.einsum("nd,dh->nh", X, W1) + b1
    h = np.where(u > 0, u, 0.0)
    z = np.einsum("nh,hc->nc", h, W2) + b2
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    onehot = np.eye(C)[y]
    loss = -np.sum(onehot * log_p) / N + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = (np.exp(log_p) - onehot) / N
    du = np.where(u > 0, dz @ W2.T, 0.0)
    return loss, {"W1": np.einsum("nd,nh->dh", X, du) + reg * W1, "b1": du.sum(axis=0),
                  "W2": np.einsum("nh,nc->hc", h, dz) + reg * W2, "b2": dz.sum(axis=0)}
'''

# --------------------------------------------------------------------------- numerical_gradient

NUMGRAD_ONE_SIDED = '''
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    fx = f(x)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        grad[i] = (f(x) - fx) / h
        x[i] = old
        it.iternext()
    return grad
'''

NUMGRAD_NOT_RESTORED = '''
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    flat = x.reshape(-1)
    g = grad.reshape(-1)
    for i in range(flat.size):
        flat[i] += h
        fp = f(x)
        flat[i] -= 2 * h
        fm = f(x)
        flat[i] += h
        g[i] = (fp - fm) / (2 * h)
    return grad
'''

NUMGRAD_HARDCODED_H = '''
def numerical_gradient(f, x, h=1e-5):
    eps = 1e-5
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad
'''

NUMGRAD_SAMPLED = '''
def numerical_gradient(f, x, h=1e-5, num_checks=10):
    grad = np.zeros(x.shape)
    for _ in range(num_checks):
        i = tuple(np.random.randint(n) for n in x.shape)
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad
'''

NUMGRAD_COPIES = '''
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    for i in range(x.size):
        step = np.zeros(x.size)
        step[i] = h
        step = step.reshape(x.shape)
        grad.flat[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad
'''

# --------------------------------------------------------------------------- every input form, shapes, stability

# the 1-D branch subtracts the index of the maximum, not the maximum: right on moderate rows (softmax is shift
# invariant), NaN for a 1-D row of logits of 1e4; only the 2-D branch met the extreme inputs before
SOFTMAX_1D_INDEX_OF_MAX = '''
def softmax(x):
    if x.ndim == 1:
        e = np.exp(x - np.argmax(x))
        return e / e.sum()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
'''

# a separate branch for 0-d input, with math.exp, which raises OverflowError for x = -1000
SIGMOID_SCALAR_MATH_EXP = '''
def sigmoid(x):
    import math
    if np.ndim(x) == 0:
        return 1.0 / (1.0 + math.exp(-float(x)))
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
'''

# np.atleast_1d turns 0-d input into an array of shape (1,): right values, wrong shape
SIGMOID_GRAD_ATLEAST_1D = '''
def sigmoid_grad(s):
    s = np.atleast_1d(s)
    return s * (1 - s)
'''

LOSS_BIAS_KEEPDIMS = _backward(db2="dz.sum(axis=0, keepdims=True)", db1="np.sum(du, axis=0, keepdims=True)")

# the whole loss inside mlp_loss, softmax without the max shift: right for moderate scores, NaN at 1000
LOSS_INLINE_NO_MAX_SHIFT = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    u = X @ W1 + b1
    h = np.maximum(0, u)
    z = h @ W2 + b2
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(N), y])) + 0.5 * reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    dz = p.copy()
    dz[np.arange(N), y] -= 1
    dz /= N
    dW2 = h.T @ dz + reg * W2
    db2 = dz.sum(axis=0)
    du = (dz @ W2.T) * (u > 0)
    dW1 = X.T @ du + reg * W1
    db1 = du.sum(axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''

# loss and dz both summed over the batch: a consistent cross-entropy of a known wrong reduction
CE_SUMMED_CONSISTENTLY = '''
def softmax_cross_entropy(z, y):
    rows = np.arange(len(y))
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[rows, y].sum()
    dz = np.exp(log_p)
    dz[rows, y] -= 1
    return loss, dz
'''

# the iterator advanced twice per loop: entries 1, 3, 5, ... are never computed
NUMGRAD_SKIPS_COORDINATES = '''
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
        it.iternext()
        it.iternext()
    return grad
'''

# the course template's fixed step, whatever h is passed
NUMGRAD_FIXED_STEP_1E_4 = '''
def numerical_gradient(f, x, h=1e-5):
    step = 1e-4
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + step
        fp = f(x)
        x[i] = old - step
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * step)
    return grad
'''

# x is never put back: every entry is left at x[i] - h (right values for separable f, wrong otherwise)
NUMGRAD_NEVER_RESTORES = '''
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        x[i] += h
        fp = f(x)
        x[i] -= 2 * h
        fm = f(x)
        grad[i] = (fp - fm) / (2 * h)
    return grad
'''

CE = "softmax_cross_entropy"
GRADS = ("mlp_loss.grad_W1", "mlp_loss.grad_b1", "mlp_loss.grad_W2", "mlp_loss.grad_b2")
CARRIED = "credit carried forward"
NOT_OWN_GRADIENT = "not the gradient of your own loss"
GATED = "no points: none of"  # a property check of a problem whose values are all wrong (grader/checks/runner.py)
KEEPDIMS = "sum with axis=0 and without keepdims=True, or use .ravel()"  # grader/checks/values.py SHAPE_SLIPS
ONE_ELEMENT = "one-element array where a 0-d result (a single number) is expected"
SLIP_CREDIT = "Right values in the wrong shape earn 50% of this check's points"  # grader/checks/runner.py
NEVER_COMPUTED = ("entries 1, 3", "(in x.flat order) were never computed (left 0)",
                  "the loop advances twice per iteration (it.iternext() called twice?)")
H_IGNORED = "`h` is ignored: your checker uses a step of 1e-4 whatever h is passed"
LEFT_PERTURBED = "x is left perturbed after your checker returns"

BUGS: list[Bug] = [
    # ----------------------------------------------------------------- softmax
    bug("softmax_wrong_axis", {"softmax": SOFTMAX_AXIS_0}, {"softmax"},
        diagnosis_contains={**both("softmax.values_2d", text=WRONG_AXIS), "softmax.rows_sum_to_one": WRONG_AXIS,
                            "softmax.extreme_logits": WRONG_AXIS},
        passes=hidden_too("softmax.values_1d")),
    bug("softmax_no_max_shift_loop", {"softmax": SOFTMAX_NO_SHIFT_LOOP}, {"softmax"},
        diagnosis_contains={"softmax.shift_invariance": NO_MAX_SHIFT, "softmax.extreme_logits": NO_MAX_SHIFT,
                            "softmax.float32": NO_MAX_SHIFT},
        passes=hidden_too("softmax.values_1d", "softmax.values_2d")),
    bug("softmax_shifted_by_global_max", {"softmax": SOFTMAX_GLOBAL_MAX}, {"softmax"},
        diagnosis_contains={"softmax.shift_invariance": NO_MAX_SHIFT, "softmax.extreme_logits": NO_MAX_SHIFT},
        passes=hidden_too("softmax.values_2d")),
    bug("softmax_mutates_input", {"softmax": SOFTMAX_IN_PLACE}, {"softmax"},
        message_contains={"softmax.no_mutation": MUTATION}, passes=hidden_too("softmax.values_2d")),
    bug("softmax_logsumexp_correct", {"softmax": SOFTMAX_LOGSUMEXP}, set()),
    # ----------------------------------------------------------------- sigmoid, sigmoid_grad
    bug("sigmoid_naive_warns_but_correct", {"sigmoid": SIGMOID_NAIVE}, set(),
        message_contains={"sigmoid.extreme_values": "warns"}, passes=("sigmoid.extreme_values",)),
    bug("sigmoid_mutates_input", {"sigmoid": SIGMOID_IN_PLACE}, {"sigmoid"},
        message_contains={"sigmoid.no_mutation": MUTATION}, passes=("sigmoid.extreme_values",)),
    bug("sigmoid_grad_applies_sigmoid_twice", {"sigmoid_grad": SIGMOID_GRAD_TWICE}, {"sigmoid_grad"},
        diagnosis_contains={**both("sigmoid_grad.values", text=SIGMOID_TWICE),
                            "sigmoid_grad.known_points": SIGMOID_TWICE}),
    bug("sigmoid_grad_is_tanh_derivative", {"sigmoid_grad": SIGMOID_GRAD_TANH}, {"sigmoid_grad"},
        diagnosis_contains={**both("sigmoid_grad.values", text=TANH), "sigmoid_grad.known_points": TANH}),
    bug("sigmoid_grad_mutates_input", {"sigmoid_grad": SIGMOID_GRAD_IN_PLACE}, {"sigmoid_grad"},
        message_contains={"sigmoid_grad.no_mutation": MUTATION}, passes=hidden_too("sigmoid_grad.values")),
    # ----------------------------------------------------------------- softmax_cross_entropy (mlp_loss calls it)
    bug("ce_missing_1_over_n", {CE: CE_NO_1_N}, {CE, "mlp_loss"},
        diagnosis_contains={**both(f"{CE}.gradient", *GRADS, text=MISSING_1_N),
                            "mlp_loss.square_weights": MISSING_1_N},
        passes=hidden_too(f"{CE}.loss_value", "mlp_loss.loss_value")),
    bug("ce_loss_summed", {CE: CE_SUMMED}, {CE, "mlp_loss"},
        diagnosis_contains={**both(f"{CE}.loss_value", "mlp_loss.loss_value", text=LOSS_SUMMED),
                            "mlp_loss.loss_without_reg": LOSS_SUMMED},
        passes=hidden_too(f"{CE}.gradient", *GRADS)),
    bug("ce_loss_summed_diagnosed_on_extreme_logits", {CE: CE_SUMMED}, {CE, "mlp_loss"},
        diagnosis_contains={f"{CE}.extreme_logits": LOSS_SUMMED}),
    bug("ce_dz_sign_flipped", {CE: CE_SIGN_FLIPPED}, {CE, "mlp_loss"},
        diagnosis_contains=both(f"{CE}.gradient", text=SIGN), passes=hidden_too(f"{CE}.loss_value")),
    bug("ce_onehot_not_subtracted", {CE: CE_NO_ONEHOT}, {CE, "mlp_loss"},
        diagnosis_contains=both(f"{CE}.gradient", text=ONEHOT), passes=hidden_too(f"{CE}.loss_value")),
    bug("ce_mutates_z", {CE: CE_MUTATES_Z}, {CE}, message_contains={f"{CE}.no_mutation": MUTATION}),
    # mlp_loss calls it, so mlp_loss overflows at large scores too
    bug("ce_no_max_shift", {CE: CE_NO_SHIFT}, {CE, "mlp_loss"},
        diagnosis_contains={f"{CE}.extreme_logits": NO_MAX_SHIFT, "mlp_loss.large_scores": NO_MAX_SHIFT},
        passes=hidden_too(f"{CE}.loss_value", f"{CE}.gradient")),
    # it does subtract the max: the inf comes from log(0), and the diagnosis says to use log-softmax
    bug("ce_log_of_shifted_softmax_not_told_to_shift", {CE: CE_LOG_OF_SOFTMAX}, {CE, "mlp_loss"},
        diagnosis_contains={f"{CE}.extreme_logits": "log-softmax", "mlp_loss.large_scores": "log-softmax"},
        not_diagnosed={f"{CE}.extreme_logits": NO_MAX_SHIFT, "mlp_loss.large_scores": NO_MAX_SHIFT}),
    # ----------------------------------------------------------------- mlp_forward
    bug("forward_b1_missing", {"mlp_forward": FORWARD_NO_B1}, {"mlp_forward"},
        diagnosis_contains={**both("mlp_forward.scores", text=B1_MISSING), "mlp_forward.batch_of_one": B1_MISSING}),
    bug("forward_b2_missing_einsum", {"mlp_forward": FORWARD_NO_B2_EINSUM}, {"mlp_forward"},
        diagnosis_contains={**both("mlp_forward.scores", text=B2_MISSING), "mlp_forward.batch_of_one": B2_MISSING}),
    bug("forward_relu_missing", {"mlp_forward": FORWARD_NO_RELU}, {"mlp_forward"},
        diagnosis_contains={**both("mlp_forward.scores", text=NO_ACTIVATION),
                            "mlp_forward.batch_of_one": NO_ACTIVATION}),
    bug("forward_returns_probabilities", {"mlp_forward": FORWARD_PROBABILITIES}, {"mlp_forward"},
        diagnosis_contains={**both("mlp_forward.scores", text=PROBABILITIES),
                            "mlp_forward.batch_of_one": PROBABILITIES}),
    bug("forward_loop_correct", {"mlp_forward": FORWARD_LOOP}, set()),
    # ----------------------------------------------------------------- mlp_loss, one mistake
    bug("loss_missing_1_over_n", {"mlp_loss": LOSS_NO_1_N}, {"mlp_loss"},
        diagnosis_contains={**both(*GRADS, text=MISSING_1_N), "mlp_loss.square_weights": MISSING_1_N},
        passes=hidden_too("mlp_loss.loss_value")),
    bug("loss_summed", {"mlp_loss": LOSS_SUM_OVER_BATCH}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.loss_value", text=LOSS_SUMMED), "mlp_loss.loss_without_reg": LOSS_SUMMED},
        message_contains={"mlp_loss.gradient_matches_own_loss": NOT_OWN_GRADIENT},
        passes=hidden_too(*GRADS)),
    bug("loss_reg_missing_from_gradient_einsum", {"mlp_loss": LOSS_REG_MISSING_GRAD}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=REG_MISSING),
                            "mlp_loss.square_weights": REG_MISSING},
        passes=hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2", "mlp_loss.loss_value")),
    bug("loss_reg_factor_2", {"mlp_loss": LOSS_REG_FACTOR_2}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=REG_2),
                            "mlp_loss.square_weights": REG_2},
        passes=hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2", "mlp_loss.loss_value")),
    # regularizing every parameter in loss and gradient: the bias gradients are exact for the student's own
    # loss, a known mistake, so they keep part of their points (carried forward, capped); the loss value loses them
    bug("loss_reg_on_biases_loop", {"mlp_loss": LOSS_REG_ON_BIASES}, {"mlp_loss"},
        diagnosis_contains=both("mlp_loss.loss_value", text=REG_BIASES),
        message_contains={g: CARRIED for g in hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2")},
        passes=("mlp_loss.loss_without_reg", "mlp_loss.gradient_matches_own_loss",
                *hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2"))),
    bug("loss_reg_on_bias_gradients_only", {"mlp_loss": LOSS_REG_ON_BIAS_GRADS}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=REG_BIASES),
                            "mlp_loss.square_weights": REG_BIASES},
        passes=hidden_too("mlp_loss.loss_value", "mlp_loss.grad_W1", "mlp_loss.grad_W2")),
    bug("loss_reg_missing_from_loss", {"mlp_loss": LOSS_REG_MISSING_FROM_LOSS}, {"mlp_loss"},
        diagnosis_contains=both("mlp_loss.loss_value", text=REG_MISSING_LOSS),
        passes=("mlp_loss.loss_without_reg", *hidden_too(*GRADS))),
    bug("loss_reg_without_half", {"mlp_loss": LOSS_REG_WITHOUT_HALF}, {"mlp_loss"},
        diagnosis_contains=both("mlp_loss.loss_value", text=REG_HALF),
        passes=("mlp_loss.loss_without_reg", *hidden_too(*GRADS))),
    bug("loss_bias_not_summed", {"mlp_loss": LOSS_BIAS_NOT_SUMMED}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=NOT_SUMMED),
                            "mlp_loss.square_weights": NOT_SUMMED, "mlp_loss.output_structure": NOT_SUMMED},
        passes=hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2")),
    bug("loss_bias_summed_over_wrong_axis", {"mlp_loss": LOSS_BIAS_WRONG_AXIS}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=WRONG_BIAS_AXIS),
                            "mlp_loss.square_weights": WRONG_BIAS_AXIS, "mlp_loss.output_structure": WRONG_BIAS_AXIS},
        passes=hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2")),
    bug("loss_bias_mean", {"mlp_loss": LOSS_BIAS_MEAN}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=BIAS_MEAN),
                            "mlp_loss.square_weights": BIAS_MEAN},
        passes=hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2")),
    bug("loss_relu_mask_missing", {"mlp_loss": LOSS_MASK_MISSING}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_b1", text=(MASK_MISSING, "du = dh * (u > 0)")),
                            "mlp_loss.square_weights": MASK_MISSING},
        passes=hidden_too("mlp_loss.grad_W2", "mlp_loss.grad_b2", "mlp_loss.loss_value")),
    bug("loss_relu_mask_from_dh_where", {"mlp_loss": LOSS_MASK_UPSTREAM}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_b1", text=MASK_UPSTREAM),
                            "mlp_loss.square_weights": MASK_UPSTREAM},
        passes=hidden_too("mlp_loss.grad_W2", "mlp_loss.grad_b2")),
    bug("loss_relu_mask_from_dh_loops", {"mlp_loss": LOSS_RELU_MASK_LOOP}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_b1", text=MASK_UPSTREAM),
                            "mlp_loss.square_weights": MASK_UPSTREAM},
        passes=hidden_too("mlp_loss.grad_W2", "mlp_loss.grad_b2")),
    bug("loss_dw2_from_preactivation", {"mlp_loss": LOSS_W2_FROM_U}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W2", text=W2_FROM_U), "mlp_loss.square_weights": W2_FROM_U},
        passes=hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_b1", "mlp_loss.grad_b2")),
    # transposed dW1: a wrong shape on the usual cases, the right shape when D == H (square_weights)
    bug("loss_dw1_transposed_einsum", {"mlp_loss": LOSS_W1_TRANSPOSED}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", text=TRANSPOSED), "mlp_loss.square_weights": TRANSPOSED,
                            "mlp_loss.output_structure": TRANSPOSED},
        message_contains={"mlp_loss.square_weights": "dW1 is wrong"},
        passes=hidden_too("mlp_loss.grad_W2", "mlp_loss.grad_b1", "mlp_loss.grad_b2")),
    bug("loss_dw2_transposed", {"mlp_loss": LOSS_W2_TRANSPOSED}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W2", text=TRANSPOSED), "mlp_loss.square_weights": TRANSPOSED,
                            "mlp_loss.output_structure": TRANSPOSED},
        passes=hidden_too("mlp_loss.grad_W1")),
    bug("loss_grads_alias_params", {"mlp_loss": LOSS_GRADS_ALIAS_PARAMS}, {"mlp_loss"},
        message_contains={"mlp_loss.no_mutation": MUTATION}, passes=hidden_too(*GRADS)),
    # a forward mistake inside mlp_loss: the loss says so; the gradients of W1, W2, b2 are exact for the
    # student's own loss, db1 is not (that loss does not depend on b1). One backward pass, one verdict: no
    # gradient is carried forward, and with no value right the property checks earn nothing either
    bug("loss_forward_b1_missing", {"mlp_loss": LOSS_FORWARD_B1_MISSING}, {"mlp_loss"},
        diagnosis_contains=both("mlp_loss.loss_value", text=B1_MISSING),
        message_contains={"mlp_loss.gradient_matches_own_loss": NOT_OWN_GRADIENT,
                          "mlp_loss.no_mutation": GATED},
        fails=hidden_too(*GRADS)),
    bug("loss_dz_sign_flipped_inline", {"mlp_loss": LOSS_SIGN_FLIPPED}, {"mlp_loss"},
        diagnosis_contains=both(*GRADS, text=SIGN)),
    bug("loss_onehot_not_subtracted_inline", {"mlp_loss": LOSS_ONEHOT_NOT_SUBTRACTED}, {"mlp_loss"},
        diagnosis_contains=both(*GRADS, text=ONEHOT)),
    bug("loss_and_ce_placeholders_earn_no_gradient_points", {"mlp_loss": LOSS_PLACEHOLDER, CE: CE_PLACEHOLDER},
        {CE, "mlp_loss"},
        fails=(*hidden_too(*GRADS), "mlp_loss.square_weights", "mlp_loss.gradient_matches_own_loss",
               f"{CE}.gradient_matches_own_loss")),
    bug("loss_correct_einsum_onehot", {"mlp_loss": LOSS_CORRECT_EINSUM}, set()),
    # ----------------------------------------------------------------- mlp_loss, two mistakes
    bug("loss_missing_1_over_n_and_reg_factor_2", {"mlp_loss": LOSS_NO_1_N_REG_2}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=(MISSING_1_N, REG_2)),
                            **both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=MISSING_1_N),
                            "mlp_loss.square_weights": (MISSING_1_N, REG_2)}),
    bug("loss_mask_missing_and_reg_missing", {"mlp_loss": LOSS_MASK_MISSING_REG_MISSING}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W1", text=(MASK_MISSING, REG_MISSING)),
                            **both("mlp_loss.grad_b1", text=MASK_MISSING),
                            **both("mlp_loss.grad_W2", text=REG_MISSING)},
        passes=hidden_too("mlp_loss.grad_b2")),
    bug("loss_dw2_from_u_and_reg_factor_2", {"mlp_loss": LOSS_W2_FROM_U_REG_2}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.grad_W2", text=(W2_FROM_U, REG_2)),
                            **both("mlp_loss.grad_W1", text=REG_2)},
        passes=hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2")),
    # mean over the batch of an undivided dz is the right bias gradient: the two mistakes cancel there
    bug("loss_missing_1_over_n_and_bias_mean", {"mlp_loss": LOSS_NO_1_N_BIAS_MEAN}, {"mlp_loss"},
        diagnosis_contains=both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=MISSING_1_N),
        passes=hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2")),
    # a consistently summed loss: the loss value is wrong; the gradients are exact for that loss (carried, capped)
    # (and it takes the log of probabilities, which underflow to 0 at scores of 1000)
    bug("loss_summed_and_missing_1_over_n", {"mlp_loss": LOSS_SUMMED_NO_1_N}, {"mlp_loss"},
        diagnosis_contains={**both("mlp_loss.loss_value", text=LOSS_SUMMED), "mlp_loss.loss_without_reg": LOSS_SUMMED,
                            "mlp_loss.large_scores": "log-softmax"},
        message_contains={g: CARRIED for g in (*hidden_too(*GRADS), "mlp_loss.square_weights")},
        passes=("mlp_loss.gradient_matches_own_loss",)),
    # no regularization at all: the loss value loses points, dW1 and dW2 (exact for that loss) keep part of
    # theirs, db1 and db2 are the reference's
    bug("loss_reg_missing_from_loss_and_gradient", {"mlp_loss": LOSS_NO_REG_AT_ALL}, {"mlp_loss"},
        diagnosis_contains=both("mlp_loss.loss_value", text=REG_MISSING_LOSS),
        message_contains={g: CARRIED for g in hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2")},
        passes=("mlp_loss.loss_without_reg", "mlp_loss.gradient_matches_own_loss",
                *hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2"))),
    bug("ce_missing_1_over_n_and_loss_reg_factor_2", {CE: CE_NO_1_N, "mlp_loss": LOSS_REG_FACTOR_2},
        {CE, "mlp_loss"},
        diagnosis_contains={**both(f"{CE}.gradient", text=MISSING_1_N),
                            **both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=(MISSING_1_N, REG_2)),
                            **both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=MISSING_1_N)}),
    # ----------------------------------------------------------------- numerical_gradient
    bug("numgrad_one_sided_nditer", {"numerical_gradient": NUMGRAD_ONE_SIDED}, {"numerical_gradient"},
        diagnosis_contains={**both("numerical_gradient.quadratic", "numerical_gradient.sines", text=ONE_SIDED),
                            "numerical_gradient.mlp_loss": ONE_SIDED, "numerical_gradient.uses_h": ONE_SIDED},
        # it leaves x alone and is deterministic, but with no value right those properties earn nothing
        message_contains={"numerical_gradient.restores_x": GATED, "numerical_gradient.deterministic": GATED}),
    bug("numgrad_restores_by_arithmetic", {"numerical_gradient": NUMGRAD_NOT_RESTORED}, {"numerical_gradient"},
        message_contains={"numerical_gradient.restores_x": "save x[i] before the step"},
        passes=hidden_too("numerical_gradient.quadratic", "numerical_gradient.sines")),
    bug("numgrad_ignores_h", {"numerical_gradient": NUMGRAD_HARDCODED_H}, {"numerical_gradient"},
        message_contains={"numerical_gradient.uses_h": "h = 1e-3"},
        diagnosis_contains={"numerical_gradient.uses_h": "is ignored"},
        passes=("numerical_gradient.mlp_loss",
                *hidden_too("numerical_gradient.quadratic", "numerical_gradient.sines"))),
    # the coordinates it did not sample stay 0, and some checks say so (which ones depends on the draw)
    bug("numgrad_samples_random_coordinates", {"numerical_gradient": NUMGRAD_SAMPLED}, {"numerical_gradient"},
        message_contains={"numerical_gradient.deterministic": "without random sampling"},
        tolerated=("were never computed (left 0)",)),
    bug("numgrad_step_copies_correct", {"numerical_gradient": NUMGRAD_COPIES}, set()),
    # ----------------------------------------------------------------- every input form gets the hard inputs
    bug("softmax_1d_branch_subtracts_index_of_max", {"softmax": SOFTMAX_1D_INDEX_OF_MAX}, {"softmax"},
        diagnosis_contains={"softmax.extreme_logits": NO_MAX_SHIFT, "softmax.shift_invariance": NO_MAX_SHIFT},
        message_contains={"softmax.extreme_logits": "as a 1-D vector"},
        passes=hidden_too("softmax.values_1d", "softmax.values_2d")),
    bug("sigmoid_0d_branch_with_math_exp", {"sigmoid": SIGMOID_SCALAR_MATH_EXP}, {"sigmoid"},
        message_contains={"sigmoid.extreme_values": "OverflowError"}, passes=hidden_too("sigmoid.values")),
    bug("sigmoid_grad_number_becomes_array_of_one", {"sigmoid_grad": SIGMOID_GRAD_ATLEAST_1D}, {"sigmoid_grad"},
        message_contains={**{c: ONE_ELEMENT for c in hidden_too("sigmoid_grad.values")},
                          "sigmoid_grad.known_points": SLIP_CREDIT}),
    bug("loss_inline_softmax_overflows_at_large_scores", {"mlp_loss": LOSS_INLINE_NO_MAX_SHIFT}, {"mlp_loss"},
        diagnosis_contains={"mlp_loss.large_scores": NO_MAX_SHIFT},
        passes=("mlp_loss.loss_without_reg", *hidden_too("mlp_loss.loss_value", *GRADS))),
    # ----------------------------------------------------------------- shape slips are named
    bug("loss_bias_gradients_keepdims", {"mlp_loss": LOSS_BIAS_KEEPDIMS}, {"mlp_loss"},
        message_contains={**{c: KEEPDIMS for c in hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2")},
                          "mlp_loss.grad_b1": SLIP_CREDIT, "mlp_loss.output_structure": KEEPDIMS},
        passes=("mlp_loss.gradient_matches_own_loss", *hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2"))),
    # ----------------------------------------------------------------- carried credit for the cross-entropy's dz
    bug("ce_loss_and_dz_summed_consistently", {CE: CE_SUMMED_CONSISTENTLY}, {CE, "mlp_loss"},
        diagnosis_contains={**both(f"{CE}.loss_value", "mlp_loss.loss_value", text=LOSS_SUMMED)},
        message_contains={**{c: CARRIED for c in hidden_too(f"{CE}.gradient", *GRADS)}},
        passes=(f"{CE}.gradient_matches_own_loss", f"{CE}.no_mutation", "mlp_loss.gradient_matches_own_loss")),
    # ----------------------------------------------------------------- gradient checkers
    bug("numgrad_iterator_advanced_twice", {"numerical_gradient": NUMGRAD_SKIPS_COORDINATES}, {"numerical_gradient"},
        diagnosis_contains={**both("numerical_gradient.quadratic", text=NEVER_COMPUTED),
                            "numerical_gradient.uses_h": NEVER_COMPUTED}),
    bug("numgrad_fixed_step_ignores_h", {"numerical_gradient": NUMGRAD_FIXED_STEP_1E_4}, {"numerical_gradient"},
        diagnosis_contains={"numerical_gradient.uses_h": H_IGNORED},
        passes=("numerical_gradient.mlp_loss", "numerical_gradient.restores_x",
                *hidden_too("numerical_gradient.quadratic", "numerical_gradient.sines"))),
    bug("numgrad_never_restores_x", {"numerical_gradient": NUMGRAD_NEVER_RESTORES}, {"numerical_gradient"},
        message_contains={"numerical_gradient.restores_x": LEFT_PERTURBED},
        passes=hidden_too("numerical_gradient.sines")),
]
