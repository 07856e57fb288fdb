"""Buggy submissions of the `mlp-sigmoid` variant (sigmoid hidden layer, loss summed over the batch).

Most bugs are edits of this variant's master solution (``solution_sources("mlp-sigmoid")``), as a
student would make them; where the sum reduction changes a mistake, it changes its diagnosis too
("missing 1/N" becomes "extra 1/N", "summed instead of averaged" becomes "averaged instead of summed").
Bugs in functions the variant shares with `mlp` reuse that corpus's sources. Here mlp_forward and
mlp_loss call the student's sigmoid and sigmoid_grad, so mistakes there also cost mlp_loss points.
"""

from __future__ import annotations

from bugs import Bug, Edit, both, bug, hidden_too
from bugs import mlp as m

VARIANT = "mlp-sigmoid"
CE = "softmax_cross_entropy"
GRADS = m.GRADS

EXTRA_1_N = "extra 1/N"
LOSS_AVERAGED = "averaged over the batch instead of summed"
PREACTIVATION = "derivative is evaluated on the pre-activation u"
SIGMOID_BACKPROP = "du = dh * h * (1 - h)"

# edits of the master's softmax_cross_entropy (summed loss, dz = softmax(z) - onehot(y))
CE_EXTRA_1_N = Edit("    dz[rows, y] -= 1\n", "    dz[rows, y] -= 1\n    dz = dz / z.shape[0]\n")
CE_AVERAGED = Edit("loss = -np.sum(log_probs[rows, y])", "loss = -np.mean(log_probs[rows, y])")
CE_SIGN_FLIPPED = Edit("    dz[rows, y] -= 1\n", "    dz[rows, y] -= 1\n    dz = -dz\n")
CE_NO_ONEHOT = Edit("    dz[rows, y] -= 1\n", "")

# edits of the master's mlp_loss
LOSS_EXTRA_1_N = Edit("data_loss, dz = softmax_cross_entropy(z, y)\n",
                      "data_loss, dz = softmax_cross_entropy(z, y)\n    dz = dz / X.shape[0]\n")
LOSS_DIVIDED_BY_N = Edit("loss = data_loss + ", "loss = data_loss / X.shape[0] + ")
REG_MISSING = (Edit("dW2 = h.T @ dz + reg * W2", "dW2 = h.T @ dz"), Edit("dW1 = X.T @ du + reg * W1", "dW1 = X.T @ du"))
REG_2 = (Edit("dW2 = h.T @ dz + reg * W2", "dW2 = h.T @ dz + 2 * reg * W2"),
         Edit("dW1 = X.T @ du + reg * W1", "dW1 = X.T @ du + 2 * reg * W1"))
REG_BIAS_GRADS = (Edit("db2 = np.sum(dz, axis=0)", "db2 = np.sum(dz, axis=0) + reg * b2"),
                  Edit("db1 = np.sum(du, axis=0)", "db1 = np.sum(du, axis=0) + reg * b1"))
REG_ON_BIASES = (Edit("(np.sum(W1 * W1) + np.sum(W2 * W2))", "(np.sum(W1 * W1) + np.sum(W2 * W2) + np.sum(b1 * b1) "
                      "+ np.sum(b2 * b2))"), *REG_BIAS_GRADS)
REG_MISSING_FROM_LOSS = Edit("loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))", "loss = data_loss")
REG_WITHOUT_HALF = Edit("loss = data_loss + 0.5 * reg *", "loss = data_loss + reg *")
BIAS_NOT_SUMMED = (Edit("db2 = np.sum(dz, axis=0)", "db2 = dz"), Edit("db1 = np.sum(du, axis=0)", "db1 = du"))
BIAS_WRONG_AXIS = (Edit("db2 = np.sum(dz, axis=0)", "db2 = np.sum(dz, axis=1)"),
                   Edit("db1 = np.sum(du, axis=0)", "db1 = np.sum(du, axis=1)"))
BIAS_MEAN = (Edit("db2 = np.sum(dz, axis=0)", "db2 = np.mean(dz, axis=0)"),
             Edit("db1 = np.sum(du, axis=0)", "db1 = np.mean(du, axis=0)"))
MASK_MISSING = Edit("du = dh * sigmoid_grad(h)", "du = dh")
GRAD_OF_U = Edit("du = dh * sigmoid_grad(h)", "du = dh * sigmoid_grad(u)")
W2_FROM_U = Edit("dW2 = h.T @ dz + reg * W2", "dW2 = u.T @ dz + reg * W2")
W1_TRANSPOSED = Edit("dW1 = X.T @ du + reg * W1", "dW1 = du.T @ X + reg * W1.T")

# edits of the master's mlp_forward
FORWARD_NO_B1 = Edit('sigmoid(X @ params["W1"] + params["b1"])', 'sigmoid(X @ params["W1"])')
FORWARD_NO_B2 = Edit('return h @ params["W2"] + params["b2"]', 'return h @ params["W2"]')
FORWARD_NO_ACTIVATION = Edit('h = sigmoid(X @ params["W1"] + params["b1"])', 'h = X @ params["W1"] + params["b1"]')
FORWARD_PROBABILITIES = Edit('return h @ params["W2"] + params["b2"]',
                             'return softmax(h @ params["W2"] + params["b2"])')

SIGMOID_BCE = '''
def mlp_loss(X, y, params, reg):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    u = X @ W1 + b1
    h = sigmoid(u)
    z = h @ W2 + b2
    s = sigmoid(z)
    t = np.eye(W2.shape[1])[y]
    loss = -np.sum(t * np.log(s) + (1 - t) * np.log(1 - s)) + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dz = s - t
    dW2 = h.T @ dz + reg * W2
    db2 = np.sum(dz, axis=0)
    du = dz @ W2.T * sigmoid_grad(h)
    dW1 = X.T @ du + reg * W1
    db1 = np.sum(du, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
'''


def _loss(name: str, edits: Edit | tuple[Edit, ...], **kwargs: object) -> Bug:
    return bug(name, {"mlp_loss": edits}, {"mlp_loss"}, assignment=VARIANT, **kwargs)


def _shared(original: Bug, loses: set[str] | None = None, **kwargs: object) -> Bug:
    """A bug of the `mlp` corpus in a function the variant shares, graded against this variant."""
    fields = {"diagnosis_contains": original.diagnosis_contains, "message_contains": original.message_contains,
              "passes": original.passes, "not_diagnosed": original.not_diagnosed, "xfail": original.xfail,
              "tolerated": original.tolerated, "fails": original.fails, **kwargs}
    return bug(original.id, original.replace, original.loses if loses is None else loses, assignment=VARIANT,
               **fields)


_BY_ID = {b.id: b for b in m.BUGS}
SHARED = [_shared(_BY_ID[name]) for name in (
    "softmax_wrong_axis", "softmax_no_max_shift_loop", "softmax_shifted_by_global_max", "softmax_mutates_input",
    "sigmoid_mutates_input", "sigmoid_naive_warns_but_correct", "sigmoid_grad_mutates_input",
    "numgrad_one_sided_nditer", "numgrad_restores_by_arithmetic", "numgrad_ignores_h",
    "numgrad_samples_random_coordinates", "numgrad_step_copies_correct",
    "softmax_1d_branch_subtracts_index_of_max", "sigmoid_0d_branch_with_math_exp",
    "sigmoid_grad_number_becomes_array_of_one", "numgrad_iterator_advanced_twice", "numgrad_fixed_step_ignores_h",
    "numgrad_never_restores_x",
)]

BUGS: list[Bug] = [
    *SHARED,
    # sigmoid_grad is called by this variant's mlp_loss: its mistakes cost mlp_loss points too
    _shared(_BY_ID["sigmoid_grad_applies_sigmoid_twice"], {"sigmoid_grad", "mlp_loss"},
            passes=hidden_too("mlp_loss.loss_value", "mlp_loss.grad_W2", "mlp_loss.grad_b2")),
    _shared(_BY_ID["sigmoid_grad_is_tanh_derivative"], {"sigmoid_grad", "mlp_loss"},
            passes=hidden_too("mlp_loss.loss_value", "mlp_loss.grad_W2", "mlp_loss.grad_b2")),
    bug("sigmoid_grad_is_tanh_derivative_diagnosed_in_mlp_loss", {"sigmoid_grad": m.SIGMOID_GRAD_TANH},
        {"sigmoid_grad", "mlp_loss"}, assignment=VARIANT,
        diagnosis_contains=both("mlp_loss.grad_W1", "mlp_loss.grad_b1", text=m.TANH)),
    # ----------------------------------------------------------------- softmax_cross_entropy (summed)
    bug("ce_extra_1_over_n", {CE: CE_EXTRA_1_N}, {CE, "mlp_loss"}, assignment=VARIANT,
        diagnosis_contains={**both(f"{CE}.gradient", *GRADS, text=EXTRA_1_N), "mlp_loss.square_weights": EXTRA_1_N},
        passes=hidden_too(f"{CE}.loss_value", "mlp_loss.loss_value")),
    bug("ce_loss_averaged", {CE: CE_AVERAGED}, {CE, "mlp_loss"}, assignment=VARIANT,
        diagnosis_contains={**both(f"{CE}.loss_value", "mlp_loss.loss_value", text=LOSS_AVERAGED),
                            "mlp_loss.loss_without_reg": LOSS_AVERAGED},
        passes=hidden_too(f"{CE}.gradient", *GRADS)),
    bug("ce_dz_sign_flipped", {CE: CE_SIGN_FLIPPED}, {CE, "mlp_loss"}, assignment=VARIANT,
        diagnosis_contains=both(f"{CE}.gradient", text=m.SIGN), passes=hidden_too(f"{CE}.loss_value")),
    bug("ce_onehot_not_subtracted", {CE: CE_NO_ONEHOT}, {CE, "mlp_loss"}, assignment=VARIANT,
        diagnosis_contains=both(f"{CE}.gradient", text=m.ONEHOT), passes=hidden_too(f"{CE}.loss_value")),
    # ----------------------------------------------------------------- mlp_forward
    bug("forward_b1_missing", {"mlp_forward": FORWARD_NO_B1}, {"mlp_forward"}, assignment=VARIANT,
        diagnosis_contains={**both("mlp_forward.scores", text=m.B1_MISSING),
                            "mlp_forward.batch_of_one": m.B1_MISSING}),
    bug("forward_b2_missing", {"mlp_forward": FORWARD_NO_B2}, {"mlp_forward"}, assignment=VARIANT,
        diagnosis_contains={**both("mlp_forward.scores", text=m.B2_MISSING),
                            "mlp_forward.batch_of_one": m.B2_MISSING}),
    bug("forward_sigmoid_missing", {"mlp_forward": FORWARD_NO_ACTIVATION}, {"mlp_forward"}, assignment=VARIANT,
        diagnosis_contains={**both("mlp_forward.scores", text=m.NO_ACTIVATION),
                            "mlp_forward.batch_of_one": m.NO_ACTIVATION}),
    bug("forward_returns_probabilities", {"mlp_forward": FORWARD_PROBABILITIES}, {"mlp_forward"},
        assignment=VARIANT,
        diagnosis_contains={**both("mlp_forward.scores", text=m.PROBABILITIES),
                            "mlp_forward.batch_of_one": m.PROBABILITIES}),
    # ----------------------------------------------------------------- mlp_loss
    _loss("loss_extra_1_over_n", LOSS_EXTRA_1_N,
          diagnosis_contains={**both(*GRADS, text=EXTRA_1_N), "mlp_loss.square_weights": EXTRA_1_N},
          passes=hidden_too("mlp_loss.loss_value")),
    _loss("loss_averaged", LOSS_DIVIDED_BY_N,
          diagnosis_contains={**both("mlp_loss.loss_value", text=LOSS_AVERAGED),
                              "mlp_loss.loss_without_reg": LOSS_AVERAGED},
          passes=hidden_too(*GRADS)),
    _loss("loss_reg_missing_from_gradient", REG_MISSING,
          diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=m.REG_MISSING),
                              "mlp_loss.square_weights": m.REG_MISSING},
          passes=hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2", "mlp_loss.loss_value")),
    _loss("loss_reg_factor_2", REG_2,
          diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=m.REG_2),
                              "mlp_loss.square_weights": m.REG_2},
          passes=hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2")),
    _loss("loss_reg_on_biases", REG_ON_BIASES,
          diagnosis_contains=both("mlp_loss.loss_value", text=m.REG_BIASES),
          message_contains={g: m.CARRIED for g in hidden_too("mlp_loss.grad_b1", "mlp_loss.grad_b2")},
          passes=("mlp_loss.gradient_matches_own_loss", *hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2"))),
    _loss("loss_reg_on_bias_gradients_only", REG_BIAS_GRADS,
          diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=m.REG_BIASES),
                              "mlp_loss.square_weights": m.REG_BIASES},
          passes=hidden_too("mlp_loss.loss_value", "mlp_loss.grad_W1", "mlp_loss.grad_W2")),
    _loss("loss_reg_missing_from_loss", REG_MISSING_FROM_LOSS,
          diagnosis_contains=both("mlp_loss.loss_value", text=m.REG_MISSING_LOSS),
          passes=("mlp_loss.loss_without_reg", *hidden_too(*GRADS))),
    _loss("loss_reg_without_half", REG_WITHOUT_HALF,
          diagnosis_contains=both("mlp_loss.loss_value", text=m.REG_HALF),
          passes=("mlp_loss.loss_without_reg", *hidden_too(*GRADS))),
    _loss("loss_bias_not_summed", BIAS_NOT_SUMMED,
          diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=m.NOT_SUMMED),
                              "mlp_loss.output_structure": m.NOT_SUMMED}),
    _loss("loss_bias_summed_over_wrong_axis", BIAS_WRONG_AXIS,
          diagnosis_contains={**both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=m.WRONG_BIAS_AXIS),
                              "mlp_loss.output_structure": m.WRONG_BIAS_AXIS}),
    # with a summed loss, averaging db over the batch and an extra 1/N give the same db; only the first
    # leaves dW1 and dW2 right, and the diagnosis, judged on all gradients together, says so
    _loss("loss_bias_mean", BIAS_MEAN,
          message_contains={"mlp_loss.grad_b1": "db1 is wrong", "mlp_loss.grad_b2": "db2 is wrong"},
          diagnosis_contains=both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=m.BIAS_MEAN),
          not_diagnosed={"mlp_loss.grad_b1": EXTRA_1_N},
          passes=hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_W2")),
    _loss("loss_sigmoid_derivative_missing", MASK_MISSING,
          diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_b1", text=(m.MASK_MISSING, SIGMOID_BACKPROP)),
                              "mlp_loss.square_weights": m.MASK_MISSING},
          passes=hidden_too("mlp_loss.grad_W2", "mlp_loss.grad_b2")),
    _loss("loss_sigmoid_derivative_of_preactivation", GRAD_OF_U,
          diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_b1", text=(PREACTIVATION, SIGMOID_BACKPROP)),
                              "mlp_loss.square_weights": PREACTIVATION},
          passes=hidden_too("mlp_loss.grad_W2", "mlp_loss.grad_b2")),
    _loss("loss_dw2_from_preactivation", W2_FROM_U,
          diagnosis_contains={**both("mlp_loss.grad_W2", text=m.W2_FROM_U), "mlp_loss.square_weights": m.W2_FROM_U},
          passes=hidden_too("mlp_loss.grad_W1", "mlp_loss.grad_b1", "mlp_loss.grad_b2")),
    _loss("loss_dw1_transposed", W1_TRANSPOSED,
          diagnosis_contains={**both("mlp_loss.grad_W1", text=m.TRANSPOSED), "mlp_loss.square_weights": m.TRANSPOSED,
                              "mlp_loss.output_structure": m.TRANSPOSED}),
    # two mistakes at once
    _loss("loss_extra_1_over_n_and_reg_factor_2", (LOSS_EXTRA_1_N, *REG_2),
          diagnosis_contains={**both("mlp_loss.grad_W1", "mlp_loss.grad_W2", text=(EXTRA_1_N, m.REG_2)),
                              **both("mlp_loss.grad_b1", "mlp_loss.grad_b2", text=EXTRA_1_N)}),
    _loss("loss_sigmoid_derivative_missing_and_reg_factor_2", (MASK_MISSING, *REG_2),
          diagnosis_contains={**both("mlp_loss.grad_W1", text=(m.MASK_MISSING, m.REG_2)),
                              **both("mlp_loss.grad_b1", text=m.MASK_MISSING),
                              **both("mlp_loss.grad_W2", text=m.REG_2)},
          passes=hidden_too("mlp_loss.grad_b2")),
    # a consistently averaged loss (loss / N and dz / N): the gradients are exact for that loss (carried, capped)
    _loss("loss_averaged_and_extra_1_over_n", (LOSS_EXTRA_1_N, LOSS_DIVIDED_BY_N),
          diagnosis_contains=both("mlp_loss.loss_value", text=LOSS_AVERAGED),
          message_contains={g: m.CARRIED for g in hidden_too(*GRADS)},
          passes=("mlp_loss.gradient_matches_own_loss",)),
    # sigmoid outputs with binary cross-entropy, and the exact gradient of that loss: not a known mistake,
    # so no gradient is carried forward, visible or hidden (dW2 and db2 used to get different verdicts)
    _loss("loss_sigmoid_outputs_binary_cross_entropy", SIGMOID_BCE,
          message_contains={"mlp_loss.gradient_matches_own_loss": "neither the reference nor any known mistake"},
          fails=hidden_too(*GRADS), not_diagnosed={g: m.CARRIED for g in hidden_too(*GRADS)}),
]
