"""Buggy submissions of `cs224n-a1` (four .py files: flat parameters, one-hot labels, loss summed over the batch).

Each bug edits one file of the master (assignments/cs224n-a1/solution/) as a student would: ``replace`` maps a
file name to its edits. forward_backward_prop calls the student's softmax and sigmoid_grad, so their mistakes cost
its gradients too. tests/test_cs224n.py grades every entry by the rules of tests/bugs/__init__.py's Bug.
"""

from __future__ import annotations

from bugs import Bug, Edit, both, bug, hidden_too
from bugs import mlp as m
from bugs import mlp_sigmoid as ms

ASSIGNMENT = "cs224n-a1"
SOFTMAX, SIGMOID, GRADCHECK, NEURAL = "q1_softmax.py", "q2_sigmoid.py", "q2_gradcheck.py", "q2_neural.py"
FBP, CHECKER = "forward_backward_prop", "gradcheck_naive"
GRADS = tuple(f"{FBP}.grad_{name}" for name in ("W1", "b1", "W2", "b2"))

# what the checks say (grader/checks/diagnosis.py MESSAGES, grader/checks/gradcheck.py, grader/bindings.py)
FLAT_SIZE = "returned a flat gradient of"
DRAWS_DIFFER = "random state was not restored"
LOOSE = "did not flag the difference"
NOT_INTEGER_INDEX = "IndexError: arrays used as indices must be of integer"

# --------------------------------------------------------------------------- edits of the master

SOFTMAX_AXIS_0 = (
    Edit("x -= np.max(x, axis=-1, keepdims=True)", "x -= np.max(x, axis=0, keepdims=True)"),
    Edit("x /= np.sum(x, axis=-1, keepdims=True)", "x /= np.sum(x, axis=0, keepdims=True)"),
)
SOFTMAX_NO_SHIFT = Edit("    x -= np.max(x, axis=-1, keepdims=True)\n", "")
SIGMOID_GRAD_TANH = Edit("return s * (1.0 - s)", "return 1.0 - s**2")
SIGMOID_GRAD_TWICE = Edit("return s * (1.0 - s)", "return sigmoid(s) * (1.0 - sigmoid(s))")
CHECKER_ONE_SIDED = Edit(
    "        x[ix] = old - h\n        random.setstate(rndstate)\n        f_minus = f(x)[0]\n"
    "        x[ix] = old\n        numgrad = (f_plus - f_minus) / (2 * h)\n",
    "        x[ix] = old\n        numgrad = (f_plus - fx) / h\n",
)
CHECKER_RANDOM_STATE = (
    Edit("        x[ix] = old + h\n        random.setstate(rndstate)\n", "        x[ix] = old + h\n"),
    Edit("        x[ix] = old - h\n        random.setstate(rndstate)\n", "        x[ix] = old - h\n"),
)
CHECKER_LOOSE = Edit("if reldiff > 1e-5:", "if reldiff > 1e-1:")
COST_AVERAGED = Edit(
    "cost = float(np.sum(labels * (log_norm - scores)))",
    "cost = float(np.mean(np.sum(labels * (log_norm - scores), axis=1)))",
)
B1_MISSING = Edit("u = X.dot(W1) + b1", "u = X.dot(W1)")
W1_TRANSPOSED = Edit("gradW1 = X.T.dot(dhidden)", "gradW1 = dhidden.T.dot(X)")
B1_NOT_SUMMED = Edit("gradb1 = np.sum(dhidden, axis=0)", "gradb1 = dhidden")
DERIVATIVE_OF_U = Edit("sigmoid_grad(h)", "sigmoid_grad(u)")
INTEGER_LABELS = Edit(
    "cost = float(np.sum(labels * (log_norm - scores)))",
    "cost = float(np.sum(log_norm.ravel() - scores[np.arange(X.shape[0]), labels]))",
)

# the network's values that a mistake in the backward pass of the hidden layer leaves right
OUTPUT_LAYER = hidden_too(f"{FBP}.loss_value", f"{FBP}.grad_W2", f"{FBP}.grad_b2")


def _fbp(name: str, edits: Edit | tuple[Edit, ...], **kwargs: object) -> Bug:
    return bug(name, {NEURAL: edits}, {FBP}, assignment=ASSIGNMENT, **kwargs)


def _checker(name: str, edits: Edit | tuple[Edit, ...], **kwargs: object) -> Bug:
    return bug(name, {GRADCHECK: edits}, {CHECKER}, assignment=ASSIGNMENT, **kwargs)


BUGS: list[Bug] = [
    # ----------------------------------------------------------------- softmax (forward_backward_prop calls it)
    bug(
        "softmax_wrong_axis",
        {SOFTMAX: SOFTMAX_AXIS_0},
        {"softmax", FBP},
        assignment=ASSIGNMENT,
        diagnosis_contains={**both("softmax.values_2d", "softmax.rows_sum_to_one", text=m.WRONG_AXIS)},
        fails=hidden_too(*GRADS),
        passes=hidden_too("softmax.values_1d", f"{FBP}.loss_value"),
    ),  # 1-D has one axis; the cost is its own
    bug(
        "softmax_no_max_shift",
        {SOFTMAX: SOFTMAX_NO_SHIFT},
        {"softmax", FBP},
        assignment=ASSIGNMENT,
        diagnosis_contains={
            **both("softmax.extreme_logits", "softmax.shift_invariance", text=m.NO_MAX_SHIFT),
            "softmax.float32": m.NO_MAX_SHIFT,
            **both(f"{FBP}.large_scores", text=m.NO_MAX_SHIFT),
        },
        passes=hidden_too("softmax.values_1d", "softmax.values_2d", *GRADS),
    ),
    # ----------------------------------------------------------------- sigmoid_grad (forward_backward_prop calls it)
    bug(
        "sigmoid_grad_is_tanh_derivative",
        {SIGMOID: SIGMOID_GRAD_TANH},
        {"sigmoid_grad", FBP},
        assignment=ASSIGNMENT,
        diagnosis_contains=both("sigmoid_grad.values", "sigmoid_grad.known_points", text=m.TANH),
        fails=hidden_too(f"{FBP}.grad_W1", f"{FBP}.grad_b1"),
        passes=OUTPUT_LAYER,
    ),
    bug(
        "sigmoid_grad_is_tanh_derivative_diagnosed_in_network",
        {SIGMOID: SIGMOID_GRAD_TANH},
        {"sigmoid_grad", FBP},
        assignment=ASSIGNMENT,
        diagnosis_contains=both(f"{FBP}.grad_W1", f"{FBP}.grad_b1", text=m.TANH),
    ),
    bug(
        "sigmoid_grad_applies_sigmoid_twice",
        {SIGMOID: SIGMOID_GRAD_TWICE},
        {"sigmoid_grad", FBP},
        assignment=ASSIGNMENT,
        diagnosis_contains=both("sigmoid_grad.values", "sigmoid_grad.known_points", text=m.SIGMOID_TWICE),
        passes=OUTPUT_LAYER,
    ),
    # ----------------------------------------------------------------- gradcheck_naive
    _checker(
        "gradcheck_one_sided",
        CHECKER_ONE_SIDED,
        message_contains=dict.fromkeys(hidden_too(f"{CHECKER}.central"), m.ONE_SIDED),
        passes=hidden_too(f"{CHECKER}.detects_error", f"{CHECKER}.every_entry", f"{CHECKER}.restores_x"),
    ),
    _checker(
        "gradcheck_random_state_not_restored",
        CHECKER_RANDOM_STATE,
        message_contains=dict.fromkeys(hidden_too(f"{CHECKER}.random_state"), DRAWS_DIFFER),
        passes=hidden_too(f"{CHECKER}.detects_error", f"{CHECKER}.central"),
    ),
    _checker(
        "gradcheck_threshold_too_loose",
        CHECKER_LOOSE,
        message_contains=dict.fromkeys(hidden_too(f"{CHECKER}.detects_error"), LOOSE),
        passes=hidden_too(f"{CHECKER}.central", f"{CHECKER}.every_entry"),
    ),
    # ----------------------------------------------------------------- forward_backward_prop
    _fbp(
        "cost_averaged",
        COST_AVERAGED,
        diagnosis_contains=both(f"{FBP}.loss_value", text=ms.LOSS_AVERAGED),
        fails=(f"{FBP}.gradient_matches_own_loss",),  # the gradient is the summed loss's, not the averaged one's
        passes=hidden_too(*GRADS),
    ),
    _fbp(
        "hidden_bias_missing",
        B1_MISSING,
        diagnosis_contains=both(f"{FBP}.loss_value", text=m.B1_MISSING),
        fails=hidden_too(*GRADS),
    ),
    _fbp(
        "dw1_transposed",
        W1_TRANSPOSED,
        # packed flat, a transposed dW1 comes back in W1's shape with its entries in the transpose's order
        diagnosis_contains={
            **both(f"{FBP}.square_weights", text=m.TRANSPOSED),
            **both(f"{FBP}.grad_W1", text=m.TRANSPOSED),
        },
        passes=hidden_too(f"{FBP}.loss_value", f"{FBP}.grad_b1", f"{FBP}.grad_W2", f"{FBP}.grad_b2"),
    ),
    _fbp(
        "db1_not_summed",
        B1_NOT_SUMMED,
        # a db1 of N x H entries makes the flat gradient (N - 1) * H too long: every check reports the length, and
        # names the missing sum over the batch
        message_contains=dict.fromkeys(hidden_too(f"{FBP}.grad_b1"), FLAT_SIZE),
        diagnosis_contains=both(f"{FBP}.grad_b1", text=m.NOT_SUMMED),
    ),
    _fbp(
        "sigmoid_derivative_of_preactivation",
        DERIVATIVE_OF_U,
        diagnosis_contains={
            **both(f"{FBP}.grad_W1", f"{FBP}.grad_b1", text=(ms.PREACTIVATION, ms.SIGMOID_BACKPROP)),
            **both(f"{FBP}.square_weights", text=ms.PREACTIVATION),
        },
        passes=OUTPUT_LAYER,
    ),
    _fbp(
        "labels_used_as_integers",
        INTEGER_LABELS,
        message_contains=dict.fromkeys(hidden_too(f"{FBP}.loss_value", *GRADS), NOT_INTEGER_INDEX),
    ),
]
