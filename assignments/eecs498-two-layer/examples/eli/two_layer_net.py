"""Implements a two-layer neural network in PyTorch, backpropagated by hand (eli's two_layer_net.py)."""

import torch
from linear_classifier import sample_batch


def nn_forward_pass(params, X):
    """Scores and hidden activations of the two-layer ReLU network."""
    W1, b1 = params["W1"], params["b1"]
    W2, b2 = params["W2"], params["b2"]
    h1 = torch.relu(torch.addmm(b1, X, W1))
    scores = torch.addmm(b2, h1, W2)
    return scores, h1


def nn_forward_backward(params, X, y=None, reg=0.0):
    """Scores when y is None; else the regularized mean softmax loss and its gradients."""
    W1, W2 = params["W1"], params["W2"]
    scores, h1 = nn_forward_pass(params, X)
    if y is None:
        return scores
    N = X.shape[0]
    log_probs = torch.log_softmax(scores, dim=1)
    probs = log_probs.exp()
    loss = -log_probs[torch.arange(N), y].sum() / N
    loss = loss + reg * torch.sum(W1 * W1) + reg * torch.sum(W2 * W2)

    one_hot = torch.zeros_like(scores)
    one_hot[torch.arange(N), y] = 1.0
    dscores = (probs - one_hot) / N
    grads = {}
    grads["W2"] = h1.T @ dscores + 2 * reg * W2
    grads["b2"] = dscores.sum(0)
    dh1 = dscores @ W2.T
    dh1 = torch.where(h1 > 0, dh1, torch.zeros_like(dh1))
    grads["W1"] = X.T @ dh1 + 2 * reg * W1
    grads["b1"] = dh1.sum(0)
    return loss, grads


def nn_train(params, loss_func, pred_func, X, y, learning_rate=1e-3, reg=5e-6, num_iters=100, batch_size=200):
    """Minibatch stochastic gradient descent, as the course's training loop; returns the loss history."""
    num_train = X.shape[0]
    loss_history = []
    for _ in range(num_iters):
        X_batch, y_batch = sample_batch(X, y, num_train, batch_size)
        loss, grads = loss_func(params, X_batch, y=y_batch, reg=reg)
        loss_history.append(loss.item())
        for name in params:
            params[name] = params[name] - learning_rate * grads[name]
    return loss_history


if __name__ == "__main__":
    torch.manual_seed(0)
    X = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    params = {"W1": 1e-1 * torch.randn(4, 10, dtype=torch.float64), "b1": torch.zeros(10, dtype=torch.float64),
              "W2": 1e-1 * torch.randn(10, 3, dtype=torch.float64), "b2": torch.zeros(3, dtype=torch.float64)}
    print(nn_train(params, nn_forward_backward, nn_forward_pass, X, y, learning_rate=0.5, num_iters=20)[-1])
