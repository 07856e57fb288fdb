"""Networks of any depth (deep_mlp_loss, grader/checks/deep.py) and the deep-mlp assignment.

The deep mistakes of reference/deep_bugs.py checked against NumPy written out here (finite differences, hand
computations); the column convention of the bindings checked by hand; the localization of the first wrong layer
for every mistake at every layer; and end-to-end grades: the master full marks at depths 1, 2, 3 and 5 (sigmoid,
tanh and ReLU units, with and without L2), the template 0, a bug corpus that loses points only where it should
with the layer and cause named, and the example class graded as its README says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bugs import Edit, conftest_helpers  # noqa: E402

from grader import bindings  # noqa: E402
from grader.assignment import AssignmentError, Tolerance, load  # noqa: E402
from grader.checks.deep import localize, make_case  # noqa: E402
from grader.checks.runner import plan  # noqa: E402  (importing the runner registers every check)
from reference import MLPSpec, deep_bugs, loss_and_grads  # noqa: E402

helpers = conftest_helpers()
ROOT = Path(__file__).resolve().parent.parent
TOL = Tolerance(1e-6, 1e-9)
UNITS = ["activation", "deep_mlp_loss"]
ACTIVATION_CELLS = {
    "sigmoid": None,  # the master's
    "tanh": "def g(a):\n    return np.tanh(a)\n\n\ndef g_prime(h):\n    return 1.0 - h**2\n",
    "relu": "def g(a):\n    return np.maximum(0.0, a)\n\n\ndef g_prime(h):\n    return (h > 0).astype(float)\n",
}


def _params(rng: np.random.Generator, sizes: tuple[int, ...]) -> dict[str, np.ndarray]:
    out = {}
    for k in range(1, len(sizes)):
        out[f"W{k}"] = rng.standard_normal((sizes[k - 1], sizes[k])) / np.sqrt(sizes[k - 1])
        out[f"b{k}"] = rng.standard_normal(sizes[k]) * 0.5
    return out


def _problem(seed: int = 0, sizes: tuple[int, ...] = (4, 6, 5, 3)) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((7, sizes[0])), rng.integers(0, sizes[-1], 7), _params(rng, sizes)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


# ------------------------------------------------------------------ reference.deep_bugs against NumPy


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("sizes", [(4, 3), (4, 6, 3), (5, 7, 4, 6, 3)])
def test_the_variant_without_mistakes_is_the_reference(activation: str, sizes: tuple[int, ...]) -> None:
    x, y, params = _problem(1, sizes)
    loss, grads = deep_bugs.loss_and_grads(x, y, params, activation, "mean", 0.2)
    ref_loss, ref_grads = loss_and_grads(x, y, params, MLPSpec(sizes, activation, "mean", 0.2))
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("mistake", deep_bugs.LOSS_BUGS)
def test_a_wrong_loss_comes_with_its_exact_gradient_by_finite_differences(mistake: str) -> None:
    x, y, params = _problem(2, (3, 5, 4, 3))
    reduction = "sum" if mistake == "loss_averaged" else "mean"
    _, grads = deep_bugs.consistent_loss_and_grads(x, y, params, "tanh", reduction, 0.3, [mistake])
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            moved = [{**params, name: p.copy()} for _ in range(2)]
            moved[0][name][index] += 1e-6
            moved[1][name][index] -= 1e-6
            values = [deep_bugs.consistent_loss_and_grads(x, y, m, "tanh", reduction, 0.3, [mistake])[0] for m in moved]
            numeric[index] = (values[0] - values[1]) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_layer_mistakes_against_a_hand_written_backward_pass() -> None:
    """Two hidden sigmoid layers written out: each mistake at layer 1 or 2 changes exactly the lines it names."""
    x, y, p = _problem(3, (4, 5, 5, 3))  # W2 is square: the transpose mistake can be made
    n = len(y)
    a1 = x @ p["W1"] + p["b1"]
    h1 = _sigmoid(a1)
    a2 = h1 @ p["W2"] + p["b2"]
    h2 = _sigmoid(a2)
    z = h2 @ p["W3"] + p["b3"]
    f = np.exp(z - z.max(axis=1, keepdims=True))
    f /= f.sum(axis=1, keepdims=True)
    d3 = (f - np.eye(3)[y]) / n

    def below(dh2: np.ndarray, d2_of: Any, d1_of: Any, w2: np.ndarray) -> dict[str, np.ndarray]:
        d2 = d2_of(dh2)
        d1 = d1_of(d2 @ w2)
        return {"W1": x.T @ d1, "b1": d1.sum(0), "W2": h1.T @ d2, "b2": d2.sum(0)}

    right = lambda dh, a, h: dh * h * (1 - h)  # noqa: E731
    dh2 = d3 @ p["W3"].T
    cases = {
        ("derivative_of_input", 2): below(dh2, lambda d: d * a2 * (1 - a2), lambda d: right(d, a1, h1), p["W2"].T),
        ("derivative_of_output", 1): below(
            dh2, lambda d: right(d, a2, h2), lambda d: d * _sigmoid(h1) * (1 - _sigmoid(h1)), p["W2"].T
        ),
        ("mask_missing", 2): below(dh2, lambda d: d, lambda d: right(d, a1, h1), p["W2"].T),
        ("upstream_not_transposed", 1): below(dh2, lambda d: right(d, a2, h2), lambda d: right(d, a1, h1), p["W2"]),
    }
    for (mistake, layer), expected in cases.items():
        _, grads = deep_bugs.loss_and_grads(x, y, p, "sigmoid", "mean", 0.0, [mistake], [layer])
        np.testing.assert_allclose(grads["W3"], h2.T @ d3, rtol=1e-12, err_msg=mistake)
        for name, value in expected.items():
            np.testing.assert_allclose(grads[name], value, rtol=1e-10, atol=1e-14, err_msg=f"{mistake} {name}")
    _, grads = deep_bugs.loss_and_grads(x, y, p, "sigmoid", "mean", 0.0, ["weight_grad_from_layer_below"])
    assert grads["W3"].shape == (5, 3) and np.allclose(grads["W3"], h1.T @ d3)
    assert np.allclose(grads["W1"], h2.T @ (right(dh2, a2, h2) @ p["W2"].T * h1 * (1 - h1)))  # h[-1] wraps to h2
    _, grads = deep_bugs.loss_and_grads(x, y, p, "sigmoid", "mean", 0.0, ["missing_1_over_n"])
    _, reference = deep_bugs.loss_and_grads(x, y, p, "sigmoid", "mean", 0.0)
    for name in p:
        np.testing.assert_allclose(grads[name], n * reference[name], rtol=1e-12)


def test_the_other_mistakes_against_a_hand_written_relu_net() -> None:
    """One hidden ReLU layer written out: the mask of the upstream gradient, dW from the layer's own output, the
    bias gradient averaged, and the L2 gradient mistakes."""
    x, y, p = _problem(4, (4, 6, 3))
    n, reg = len(y), 0.3
    a1 = x @ p["W1"] + p["b1"]
    h1 = np.maximum(a1, 0)
    z = h1 @ p["W2"] + p["b2"]
    f = np.exp(z - z.max(axis=1, keepdims=True))
    d2 = (f / f.sum(axis=1, keepdims=True) - np.eye(3)[y]) / n
    dh1 = d2 @ p["W2"].T
    d1 = dh1 * (a1 > 0)

    def grads(mistake: str, layers: Any = None) -> dict[str, np.ndarray]:
        return deep_bugs.loss_and_grads(x, y, p, "relu", "mean", reg, [mistake], layers)[1]

    masked = dh1 * (dh1 > 0)
    np.testing.assert_allclose(grads("mask_from_upstream", [1])["W1"], x.T @ masked + reg * p["W1"], rtol=1e-12)
    above = deep_bugs.loss_and_grads(x, y, p, "relu", "mean", 0.0, ["weight_grad_from_layer_above"], [1])[1]
    np.testing.assert_allclose(above["W1"], h1.T @ d1, rtol=1e-12)
    assert above["W1"].shape == (6, 6)
    np.testing.assert_allclose(grads("bias_mean")["b1"], d1.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(grads("bias_mean")["b2"], d2.mean(axis=0), rtol=1e-12)
    for mistake, factor in (("reg_missing", 0.0), ("reg_factor_2", 2.0), ("reg_grad_half", 0.5)):
        np.testing.assert_allclose(grads(mistake)["W2"], h1.T @ d2 + factor * reg * p["W2"], rtol=1e-12)
        np.testing.assert_allclose(grads(mistake)["b2"], d2.sum(axis=0), rtol=1e-12)
    with pytest.raises(IndexError):
        deep_bugs.loss_and_grads(x, y, p, "relu", "mean", 0.0, ["weight_grad_from_layer_above"], [2])
    with pytest.raises(ValueError):
        deep_bugs.loss_and_grads(x, y, p, "relu", "mean", 0.0, ["upstream_not_transposed"], [1])  # W2 is 6 x 3


# ------------------------------------------------------------------ bindings: depth and the column convention


def test_column_convention_passes_transposes_and_reads_gradients_back_by_hand() -> None:
    x, y, params = _problem(4, (4, 6, 5, 3))
    b = bindings.parse("deep_mlp_loss", "deep_mlp_loss", {"convention": "column"}, "test")
    name, args, _, _ = b.request((x, y, params, 0.1))
    assert name == "deep_mlp_loss" and args[0].shape == (4, 7) and np.array_equal(args[0], x.T)
    assert args[2]["W2"].shape == (5, 6) and np.array_equal(args[2]["W2"], params["W2"].T)
    assert args[2]["b2"] is params["b2"]
    student = {k: (v.T if k.startswith("W") else v) * 2 for k, v in params.items()}
    _, grads = b.result((1.0, student), (x, y, params, 0.1))
    for k, v in params.items():
        np.testing.assert_array_equal(grads[k], v * 2)
    after = b.echoed(tuple(args), (x, y, params, 0.1))
    assert after is not None and after[0] is x and all(after[2][k] is params[k] for k in params)


def test_flat_parameters_of_any_depth_are_packed_layer_by_layer() -> None:
    x, y, params = _problem(5, (3, 4, 5, 6, 2))
    b = bindings.parse("p", "deep_mlp_loss", {"params": "flat", "args": ["X", "y", "params", "dimensions"]}, "t")
    _, args, _, _ = b.request((x, y, params, 0.0))
    names = ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
    np.testing.assert_array_equal(args[2], np.concatenate([params[k].ravel() for k in names]))
    assert args[3] == [3, 4, 5, 6, 2]
    _, grads = b.result((0.0, args[2] * 3), (x, y, params, 0.0))
    assert all(np.array_equal(grads[k], params[k] * 3) for k in names)
    with pytest.raises(bindings.BindingError, match="layout must name each of"):
        bindings.parse("p", "deep_mlp_loss", {"params": "flat", "layout": ["W1", "b1", "W3", "b3"]}, "t")


def test_a_penalty_on_every_parameter_of_a_deep_net_is_traded_for_the_reference() -> None:
    x, y, params = _problem(6, (3, 4, 5, 2))
    b = bindings.parse("p", "deep_mlp_loss", {"regularized": ["W1", "b1", "W2", "b2", "W3", "b3"]}, "t")
    grads = {k: np.ones_like(v) for k, v in params.items()}
    loss, out = b.result((1.0, grads), (x, y, params, 0.4))
    biases = sum(np.sum(params[f"b{k}"] ** 2) for k in (1, 2, 3))
    assert loss == pytest.approx(1.0 - 0.2 * biases, rel=1e-13)
    np.testing.assert_allclose(out["b3"], 1.0 - 0.4 * params["b3"])
    np.testing.assert_array_equal(out["W3"], grads["W3"])


@pytest.mark.parametrize(("value", "message"), [(0, "hidden_layers must be a whole number"), (9, "from 1 to 8")])
def test_hidden_layers_is_validated(tmp_path: Path, value: int, message: str) -> None:
    with pytest.raises(AssignmentError, match=message):
        load(_variant(tmp_path, hidden_layers=value))


def test_every_depth_keeps_the_share_of_points_of_the_gradients(tmp_path: Path) -> None:
    shares = []
    for layers in (1, 3, 5):
        planned = [p for p in plan(load(_variant(tmp_path / str(layers), hidden_layers=layers)))]
        grads = [p for p in planned if p.check.name.startswith("grad_")]
        assert {p.check.name for p in grads} == {f"grad_{q}{k}" for q in "Wb" for k in range(1, layers + 2)}
        shares.append(sum(p.points for p in grads))
    assert max(shares) - min(shares) <= 2.0, shares  # equal up to the rounding to half points


# ------------------------------------------------------------------ localizing the first wrong layer


LOCALIZED = [
    # (mistake, activation, layer it is made at, words of the cause)
    ("derivative_of_input", "sigmoid", 2, "computed from a^(2) instead of h^(2)"),
    ("derivative_of_output", "tanh", 3, "uses h instead of a"),
    ("mask_from_upstream", "relu", 1, "mask at layer 1 is taken from the upstream gradient"),
    ("mask_missing", "tanh", 2, "derivative at layer 2 is missing"),
    ("weight_grad_from_layer_below", "sigmoid", 3, "dW3 is built from h^(1) instead of h^(2)"),
    ("weight_grad_from_layer_above", "relu", 2, "dW2 is built from h^(2) instead of h^(1)"),
]


@pytest.mark.parametrize(("mistake", "activation", "layer", "cause"), LOCALIZED)
def test_the_first_wrong_layer_and_its_cause_are_named(mistake: str, activation: str, layer: int, cause: str) -> None:
    case = make_case(11, 3, 0.0, activation)
    x, y, params, reg = case.args
    _, expected = deep_bugs.loss_and_grads(x, y, params, activation, "mean", reg)
    _, found = deep_bugs.loss_and_grads(x, y, params, activation, "mean", reg, [mistake], [layer])
    said = localize(found, expected, case.args, activation, "mean", TOL)
    right = {3: "layer 4 is right; ", 2: "layers 3 and 4 are right; ", 1: "layers 2, 3 and 4 are right; "}[layer]
    assert said is not None and said.startswith(f"{right}layer {layer}'s d") and cause in said, said
    assert "every layer below" not in said
    assert localize(expected, expected, case.args, activation, "mean", TOL) is None


def test_a_transpose_missing_on_a_square_layer_and_a_missing_1_over_n_are_named() -> None:
    case = make_case(12, 3, 0.0, "tanh", square=True)
    x, y, params, reg = case.args
    square = next(k for k in range(2, 4) if params[f"W{k}"].shape[0] == params[f"W{k}"].shape[1])
    _, expected = deep_bugs.loss_and_grads(x, y, params, "tanh", "mean", reg)
    _, found = deep_bugs.loss_and_grads(x, y, params, "tanh", "mean", reg, ["upstream_not_transposed"], [square - 1])
    said = localize(found, expected, case.args, "tanh", "mean", TOL)
    assert (
        said is not None and f"layer {square - 1}'s dW and db are wrong" in said and "instead of its transpose" in said
    )
    _, found = deep_bugs.loss_and_grads(x, y, params, "tanh", "mean", reg, ["missing_1_over_n"])
    said = localize(found, expected, case.args, "tanh", "mean", TOL)
    assert said is not None and f"the same factor N (here {len(y)})" in said and said.startswith("layer 4 (the output")


# ------------------------------------------------------------------ grading end to end


def _variant(tmp_path: Path, **reference: Any) -> Path:
    """A copy of deep-mlp's definition with [reference] keys replaced (the master stays the bundled one)."""
    text = (ROOT / "assignments" / "deep-mlp" / "assignment.toml").read_text()
    for key, value in reference.items():
        lines = [line for line in text.splitlines() if line.startswith(f"{key} = ")]
        assert len(lines) == 1, key
        text = text.replace(lines[0], f"{key} = {json.dumps(value)}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "assignment.toml").write_text(text)
    return tmp_path


def _cells(activation: str = "sigmoid", loss: str | None = None) -> list[str]:
    master = helpers.solution_sources("deep-mlp", UNITS)
    return ["import numpy as np", ACTIVATION_CELLS[activation] or master["activation"], loss or master["deep_mlp_loss"]]


DEPTHS = [(1, "relu", 0.0), (2, "tanh", 0.05), (3, "sigmoid", 0.0), (5, "relu", 0.01)]


@pytest.mark.parametrize(("layers", "activation", "reg"), DEPTHS)
def test_master_scores_full_marks_over_20_seeds_at_every_depth(
    tmp_path: Path, grade: Any, layers: int, activation: str, reg: float
) -> None:
    folder = str(_variant(tmp_path, hidden_layers=layers, activation=activation, reg=reg))
    for seed in range(20):
        report = grade(_cells(activation), folder, seed=seed)
        assert report["score"] == report["max_score"] == 100, (seed, helpers.lost(report))


ROW_MASTER = """
def deep_loss(params, X, y, reg=0.0):
    depth = len(params) // 2
    hs = [X]
    for k in range(1, depth + 1):
        a = hs[-1] @ params[f"W{k}"] + params[f"b{k}"]
        if k < depth:
            hs.append(g(a))
    a = a - a.max(axis=1, keepdims=True)
    log_f = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -log_f[np.arange(n), y].mean() + 0.5 * reg * sum((params[f"W{k}"] ** 2).sum() for k in range(1, depth + 1))
    delta = np.exp(log_f)
    delta[np.arange(n), y] -= 1
    delta /= n
    grads = {}
    for k in range(depth, 0, -1):
        grads[f"W{k}"] = hs[k - 1].T @ delta + reg * params[f"W{k}"]
        grads[f"b{k}"] = delta.sum(axis=0)
        if k > 1:
            delta = (delta @ params[f"W{k}"].T) * g_prime(hs[k - 1])
    return loss, grads
"""


def test_the_row_convention_grades_a_row_master_and_localizes_in_it(tmp_path: Path, grade: Any) -> None:
    folder = _variant(tmp_path, hidden_layers=2, activation="tanh", reg=0.1)
    text = (folder / "assignment.toml").read_text()
    binding = 'convention = "column"\n'
    assert text.count(binding) == 1
    (folder / "assignment.toml").write_text(
        text.replace(binding, 'call = "deep_loss"\nargs = ["params", "X", "y", "reg"]\n')
    )
    report = grade(_cells("tanh", ROW_MASTER), str(folder))
    assert report["score"] == 100, helpers.lost(report)
    wrong = ROW_MASTER.replace("* g_prime(hs[k - 1])", "* g_prime(hs[k - 1]) if k != 2 else delta @ params[f'W{k}'].T")
    report = grade(_cells("tanh", wrong), str(folder))
    test = helpers.by_id(report)["deep_mlp_loss.grad_W1"]
    assert (
        "layers 2 and 3 are right; layer 1's dW and db are wrong: the activation derivative at layer 1 is missing"
        in (test["diagnosis"] or "")
    ), test
    assert helpers.by_id(report)["deep_mlp_loss.grad_W2"]["score"] > 0


def test_float32_is_graded_with_the_float32_tolerance_and_a_wider_finite_difference_step(
    tmp_path: Path, grade: Any
) -> None:
    folder = _variant(tmp_path, hidden_layers=2, activation="tanh", reg=0.05)
    text = (folder / "assignment.toml").read_text()
    (folder / "assignment.toml").write_text(
        text.replace('convention = "column"\n', 'convention = "column"\ndtype = "float32"\n')
    )
    report = grade(_cells("tanh"), str(folder))
    assert report["score"] == 100, helpers.lost(report)
    loss = helpers.solution_sources("deep-mlp", UNITS)["deep_mlp_loss"].replace("    delta /= n  #", "    #")
    report = grade(_cells("tanh", loss), str(folder))
    assert "the same factor N" in (helpers.by_id(report)["deep_mlp_loss.grad_W1"]["diagnosis"] or "")


def test_template_scores_zero(grade: Any) -> None:
    template = json.loads((ROOT / "student_template" / "deep-mlp.ipynb").read_text())
    cells = ["".join(c["source"]) for c in template["cells"] if c["cell_type"] == "code"]
    report = grade([c for c in cells if "checker(" not in c and not c.startswith("check(")], "deep-mlp")
    assert report["score"] == 0


LOOP = 'delta = (params[f"W{k}"].T @ delta) * g_prime(hs[k - 1])'
WEIGHT = 'grads[f"W{k}"] = delta @ hs[k - 1].T + reg * params[f"W{k}"]'
GRADS = {f"grad_{q}{k}" for q in "Wb" for k in range(1, 5)}
CORPUS: list[tuple[str, str, float, Any, set[str], Any]] = [
    # (id, activation, reg, edits of the master's deep_mlp_loss, checks that lose points (visible ids), words said by
    # the first of them, or by each check named)
    (
        "derivative_of_output_everywhere",
        "sigmoid",
        0.0,
        Edit(LOOP, LOOP.replace("g_prime(hs[k - 1])", "g_prime(g(hs[k - 1]))")),
        {"grad_W1", "grad_b1", "grad_W2", "grad_b2", "grad_W3", "grad_b3"},
        "layer 4 is right; layer 3's dW and db are wrong: the activation derivative at layer 3 uses h instead of a",
    ),
    (
        "mask_from_upstream",
        "relu",
        0.0,
        Edit(LOOP, 'up = params[f"W{k}"].T @ delta\n            delta = up * (up > 0)'),
        {"grad_W1", "grad_b1", "grad_W2", "grad_b2", "grad_W3", "grad_b3"},
        "layer 3's dW and db are wrong: the ReLU mask at layer 3 is taken from the upstream gradient",
    ),
    (
        "dW_transposed",
        "tanh",
        0.05,
        Edit(WEIGHT, 'grads[f"W{k}"] = hs[k - 1] @ delta.T + reg * params[f"W{k}"].T'),
        {"grad_W1", "grad_W2", "grad_W3", "grad_W4"},
        "layer 4 (the output layer)'s dW is wrong: dW4 is transposed",
    ),
    (
        "bias_not_summed",
        "sigmoid",
        0.0,
        Edit('grads[f"b{k}"] = delta.sum(axis=1)', 'grads[f"b{k}"] = delta'),
        {"grad_b1", "grad_b2", "grad_b3", "grad_b4"},
        "db4 is not summed over the mini-batch",
    ),
    (
        "loss_summed",
        "sigmoid",
        0.0,
        Edit("-log_f[y, columns].mean()", "-log_f[y, columns].sum()"),
        {"loss_value", "loss_without_reg"},
        "the loss is summed over the batch instead of averaged",
    ),
    (
        "no_max_shift",
        "tanh",
        0.0,
        Edit("shifted = a - a.max(axis=0, keepdims=True)", "shifted = a"),
        {"large_scores"},
        "log p = (z - max z) - log(sum(exp(z - max z)))",
    ),
    (
        "modifies_X",
        "sigmoid",
        0.0,
        Edit("    return loss, grads", "    X *= 1.5\n    return loss, grads"),
        {"no_mutation"},
        "modified its input X in place",
    ),
    (
        "penalty_without_half_and_its_exact_gradient",
        "tanh",
        0.05,
        (Edit("penalty = 0.5 * reg *", "penalty = reg *"), Edit(WEIGHT, WEIGHT.replace("+ reg *", "+ 2 * reg *"))),
        {"loss_value", "grad_W1", "grad_W2", "grad_W3", "grad_W4"},
        {
            "grad_W1": "credit carried forward",
            # the carried-credit message names the mistake in the deep net's words, every layer's weights
            "grad_W2": "known mistake (the L2 penalty lacks its factor 0.5: it is 0.5 * reg * (sum(W1**2) + ... + "
            "sum(W4**2))",
            "loss_value": "it is 0.5 * reg * (sum(W1**2) + ... + sum(W4**2))",
        },
    ),
]
ALWAYS = {"gradient_matches_own_loss", "directional_derivatives", "square_layer", "batch_of_one"}


@pytest.mark.parametrize(("bug_id", "activation", "reg", "edit", "loses", "said"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bug_loses_points_only_where_wrong_with_the_layer_and_cause(
    tmp_path: Path, grade: Any, bug_id: str, activation: str, reg: float, edit: Any, loses: set[str], said: Any
) -> None:
    folder = str(_variant(tmp_path, activation=activation, reg=reg))
    loss = helpers.solution_sources("deep-mlp", UNITS)["deep_mlp_loss"]
    for change in (edit,) if isinstance(edit, Edit) else edit:
        loss = change.apply(loss)
    report = grade(_cells(activation, loss), folder)
    lost = {t["check"] for t in report["tests"] if t["score"] < t["max_score"] - 1e-9}
    assert loses <= lost and lost - loses <= ALWAYS, (bug_id, sorted(lost))
    assert lost & GRADS == loses & GRADS, (bug_id, sorted(lost & GRADS))
    for check, words in (said if isinstance(said, dict) else {sorted(loses)[0]: said}).items():
        test = helpers.by_id(report)[f"deep_mlp_loss.{check}"]
        assert words in f"{test['message']} | {test['diagnosis']}", test


EXAMPLES = {
    "ada": (set(), ""),
    "bea": ({"grad_W1", "grad_b1", "grad_W2", "grad_b2"}, "layers 3 and 4 are right; layer 2's dW and db are wrong"),
    "cal": (GRADS, "every layer's gradient is wrong by the same factor N"),
    "dov": ({"grad_W1", "grad_W2", "grad_W3", "grad_W4"}, "the layer index is off by one"),
}


@pytest.mark.parametrize("student", sorted(EXAMPLES))
def test_example_is_graded_as_its_readme_says(student: str, zygote: Any) -> None:
    from grader.grading import Grader

    grader = Grader(load("deep-mlp"), helpers.FAST, hidden_seed=3, zygote=zygote)
    report = grader.grade_file(ROOT / "assignments" / "deep-mlp" / "examples" / f"{student}.ipynb").result.to_dict()
    loses, said = EXAMPLES[student]
    lost = {t["check"] for t in report["tests"] if t["score"] < t["max_score"] - 1e-9}
    assert lost & GRADS == loses and lost - GRADS <= (ALWAYS if loses else set()), sorted(lost)
    for check in loses:
        test = helpers.by_id(report)[f"deep_mlp_loss.{check}"]
        assert said in (test["diagnosis"] or ""), test
    readme = (ROOT / "assignments" / "deep-mlp" / "examples" / "README.md").read_text()
    assert f"| {report['score']:g}/100" in readme, report["score"]


def test_parameters_as_a_list_of_layers_by_hand() -> None:
    """params = "per_layer": [(W1, b1), (W2, b2), ...] in the student's convention; the gradient comes back alike."""
    from grader import bindings

    rng = np.random.default_rng(11)
    params = _params(rng, (4, 6, 5, 3))
    b = bindings.parse("p", "deep_mlp_loss", {"params": "per_layer", "convention": "column"}, "test")
    _, args, _, _ = b.request((np.zeros((2, 4)), np.array([0, 1]), params, 0.0))
    assert [len(pair) for pair in args[2]] == [2, 2, 2]
    for k, (w, bias) in enumerate(args[2], start=1):
        assert np.array_equal(w, params[f"W{k}"].T) and bias is params[f"b{k}"]
    _, grads = b.result((0.0, [(w * 2, bias * 3) for w, bias in args[2]]), (np.zeros((2, 4)), None, params, 0.0))
    for k in (1, 2, 3):
        np.testing.assert_array_equal(grads[f"W{k}"], params[f"W{k}"] * 2)
        np.testing.assert_array_equal(grads[f"b{k}"], params[f"b{k}"] * 3)
    with pytest.raises(bindings.UnreadableResult, match=r"a list of 3 \(dW, db\) pairs.*it returned a list of 2"):
        b.result((0.0, [(1, 2), (3, 4)]), (np.zeros((2, 4)), None, params, 0.0))


LAYERS_WRAPPER = """
def deep_layers_loss(X, y, layers, reg=0.0):
    params = {}
    for k, (w, b) in enumerate(layers, start=1):
        params[f"W{k}"], params[f"b{k}"] = w, b
    loss, grads = deep_mlp_loss(X, y, params, reg)
    return loss, [(grads[f"W{k}"], grads[f"b{k}"]) for k in range(1, len(layers) + 1)]
"""


def test_parameters_as_a_list_of_layers_end_to_end(tmp_path: Path, grade: Any) -> None:
    folder = _variant(tmp_path, hidden_layers=2, activation="relu", reg=0.1)
    text = (folder / "assignment.toml").read_text()
    binding = 'convention = "column"\n'
    assert text.count(binding) == 1
    (folder / "assignment.toml").write_text(
        text.replace(binding, binding + 'call = "deep_layers_loss"\nparams = "per_layer"\n')
    )
    report = grade([*_cells("relu"), LAYERS_WRAPPER], str(folder))
    assert report["score"] == 100, helpers.lost(report)
