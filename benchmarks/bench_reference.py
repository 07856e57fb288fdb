"""How fast is the Numba reference, compared with what a course would otherwise run?

The grader evaluates the reference thousands of times per submission (expected values for every
check, finite differences of whole networks) and starts a fresh process per worker, so three
costs matter, each measured against the plain-NumPy code it replaces, in the same run:

(a) forward + backward of a 2-layer relu net, reference.loss_and_grads vs the textbook NumPy
    forward/backward (cs231n's TwoLayerNet.loss):
      - tiny batch  N=8,    D=20,  H=10,  C=5   target: reference >= 5x faster (per-call overhead
        dominates: NumPy pays ~1 us per array operation, the compiled kernel pays one dispatch);
      - MNIST-size  N=4096, D=784, H=256, C=10  target: within 1.2x of NumPy (both spend their time
        in the same BLAS matrix products; the compiled code must not lose elsewhere).
(b) the full finite-difference gradient of a 2-layer net, N=16, D=100, H=100, C=10 (11,110
    parameters): reference.mlp_numerical_gradient vs the classic Python loop over coordinates
    (cs231n's eval_numerical_gradient: np.nditer over x, x[ix] += h, f(x), x[ix] -= 2h, f(x),
    restore) around a NumPy forward+loss; target >= 20x.
(c) process start-up, wall time of `python -c "import reference; <spec, params, one loss_and_grads>"`
    from process start to exit:
      - cold: a fresh, empty NUMBA_CACHE_DIR (everything is compiled);
      - warm: a new process on that now-populated cache (machine code loaded from disk);
        target < 1 s;
    with `python -c "import numpy"` and `python -c "import numba"` as floors, plus two rows that
    locate the cost: `python -c "import reference"` alone (warm), and a process that loads one
    trivial cached @njit function (what any cached Numba code pays). NUMBA_CACHE_DIR points
    the children at temporary directories, so the repository's __pycache__ is neither used nor touched.

Medians of repeated runs (benchmarks/_common.py); the NumPy baselines are checked to compute the
same numbers as the reference before they are timed.

    python benchmarks/bench_reference.py [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import REPO_ROOT, Report, Target, parse_args, time_callable, time_command, time_interleaved  # noqa: E402

import reference as R  # noqa: E402

H = 1e-5


# ----------------------------------------------------------------------------- NumPy baselines


def numpy_two_layer_loss_and_grads(X, y, params, reg=0.0):
    """cs231n TwoLayerNet.loss: affine - relu - affine - softmax, mean reduction, L2 on weights."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    hidden_pre = X.dot(W1) + b1
    hidden = np.maximum(0, hidden_pre)
    scores = hidden.dot(W2) + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exp_scores = np.exp(shifted)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
    loss = -np.sum(np.log(probs[np.arange(N), y])) / N + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dscores = probs
    dscores[np.arange(N), y] -= 1
    dscores /= N
    grads = {"W2": hidden.T.dot(dscores) + reg * W2, "b2": np.sum(dscores, axis=0)}
    dhidden = dscores.dot(W2.T)
    dhidden[hidden_pre <= 0] = 0
    grads["W1"] = X.T.dot(dhidden) + reg * W1
    grads["b1"] = np.sum(dhidden, axis=0)
    return loss, grads


def numpy_two_layer_loss(X, y, params, reg=0.0):
    """Forward pass and loss only."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    scores = np.maximum(0, X.dot(W1) + b1).dot(W2) + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return -np.sum(log_probs[np.arange(X.shape[0]), y]) / X.shape[0] + 0.5 * reg * (
        np.sum(W1 * W1) + np.sum(W2 * W2)
    )


def eval_numerical_gradient(f, x, h=H):
    """cs231n's loop: central difference at every index of x, perturbed in place and restored."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        fxph = f(x)
        x[ix] = oldval - h
        fxmh = f(x)
        x[ix] = oldval
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad


def numpy_full_numerical_gradient(X, y, params, reg=0.0):
    """The classic loop over every parameter array, differencing the NumPy loss."""
    return {name: eval_numerical_gradient(lambda _: numpy_two_layer_loss(X, y, params, reg), value)
            for name, value in params.items()}


def problem(n, d, hidden, c, seed=0, reg=0.0):
    """(X, y, Params, plain dict copy, spec) for a 2-layer relu net with mean reduction."""
    spec = R.MLPSpec((d, hidden, c), "relu", "mean", reg)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, size=n)
    params = R.init_params(spec, seed, bias_scale=0.1)
    return X, y, params, {k: np.array(v) for k, v in params.items()}, spec


def check_same_numbers(label, expected, actual, rtol, atol):
    """Refuse to time two functions that do not compute the same thing."""
    for name in expected:
        if not np.allclose(actual[name], expected[name], rtol=rtol, atol=atol):
            worst = np.max(np.abs(np.asarray(actual[name]) - np.asarray(expected[name])))
            raise AssertionError(f"{label}: {name} differs from the reference by up to {worst:.3g}")


# ----------------------------------------------------------------------------- (a) forward + backward


def bench_forward_backward(report, row_id, n, d, hidden, c, target, quick):
    X, y, params, plain, spec = problem(n, d, hidden, c, seed=1, reg=1e-3)
    loss, grads = R.loss_and_grads(X, y, params, spec)  # compiles on a cold cache: not timed
    np_loss, np_grads = numpy_two_layer_loss_and_grads(X, y, plain, reg=1e-3)
    # Same float64 math in a different order: agreement to rounding.
    check_same_numbers(f"{row_id} baseline", grads, np_grads, rtol=1e-9, atol=1e-12)
    assert abs(loss - np_loss) <= 1e-9 * max(1.0, abs(loss))
    repeat = 5 if quick else 15
    budget = 0.01 if quick else 0.05
    candidate, baseline = time_interleaved(
        [lambda: R.loss_and_grads(X, y, params, spec), lambda: numpy_two_layer_loss_and_grads(X, y, plain, reg=1e-3)],
        repeat=repeat, min_sample_time=budget,
    )
    report.add(row_id, f"fwd+bwd N={n} D={d} H={hidden} C={c}", candidate, baseline=baseline,
               baseline_label="NumPy fwd+bwd", target=target)


# ----------------------------------------------------------------------------- (b) full numerical gradient


def bench_numerical_gradient(report, quick):
    X, y, params, plain, spec = problem(16, 100, 100, 10, seed=2)
    numeric = R.mlp_numerical_gradient(X, y, params, spec, h=H)  # compiles: not timed
    loop = numpy_full_numerical_gradient(X, y, plain)
    # Same central-difference quotient (relu kinks aside, where both see the same kink): rounding only.
    check_same_numbers("numgrad baseline", numeric, loop, rtol=1e-6, atol=1e-8)
    candidate = time_callable(lambda: R.mlp_numerical_gradient(X, y, params, spec, h=H),
                              repeat=3 if quick else 7, min_sample_time=0.05 if quick else 0.2)
    baseline = time_callable(lambda: numpy_full_numerical_gradient(X, y, plain),
                             repeat=1 if quick else 3, number=1, warmup=0)
    report.add("numgrad_full", f"full FD gradient, {spec.size} params (N=16 D=100 H=100 C=10)", candidate,
               baseline=baseline, baseline_label="Python loop (eval_numerical_gradient)",
               target=Target.min_speedup(20.0))


# ----------------------------------------------------------------------------- (c) start-up

START_SCRIPT = (
    "import numpy as np; import reference as R; "
    "spec = R.MLPSpec((20, 10, 5)); p = R.init_params(spec, 0); "
    "X = np.random.default_rng(0).standard_normal((8, 20)); y = np.arange(8) % 5; "
    "R.loss_and_grads(X, y, p, spec)"
)


FLOOR_KERNEL = """
from numba import njit


@njit(cache=True)
def one_more(x):
    return x + 1.0
"""


def child_env(cache_dir, *extra_paths):
    """The child's environment: the repo (and extra_paths) importable, Numba's cache in cache_dir."""
    env = dict(os.environ)
    paths = [*map(str, extra_paths), str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


def bench_startup(report, quick):
    python = sys.executable
    scratch = Path(tempfile.mkdtemp(prefix="jitgrade-bench-"))
    try:
        cold_dirs = []

        def fresh_cache(run):
            path = scratch / f"cold-{run}"
            path.mkdir()
            cold_dirs.append(path)
            return child_env(path)

        runs = 3 if quick else 7
        floor_runs = 2 if quick else 7  # floors and diagnostic rows: rough is enough in --quick
        cold = time_command([python, "-c", START_SCRIPT], runs=1 if quick else 3, env=fresh_cache, cwd=scratch)
        # Warm: new processes on the cache the first cold run populated.
        warm_env = child_env(cold_dirs[0])
        warm = time_command([python, "-c", START_SCRIPT], runs=runs, env=warm_env, cwd=scratch)
        warm_import = time_command([python, "-c", "import reference"], runs=floor_runs, env=warm_env, cwd=scratch)
        empty = scratch / "unused-cache"
        numpy_floor = time_command([python, "-c", "import numpy"], runs=floor_runs, env=child_env(empty), cwd=scratch)
        numba_floor = time_command([python, "-c", "import numba"], runs=floor_runs, env=child_env(empty), cwd=scratch)
        # What any cached Numba code pays on a warm start: import numba, then load one trivial
        # @njit(cache=True) function from disk (the first load also initialises Numba's CPU target).
        kernel_dir = scratch / "floor-kernel"
        kernel_dir.mkdir()
        (kernel_dir / "floor_kernel.py").write_text(FLOOR_KERNEL)
        kernel_env = child_env(scratch / "floor-cache", kernel_dir)
        kernel_cmd = [python, "-c", "import floor_kernel; floor_kernel.one_more(1.0)"]
        time_command(kernel_cmd, runs=1, env=kernel_env, cwd=scratch)  # populate its cache
        kernel_floor = time_command(kernel_cmd, runs=floor_runs, env=kernel_env, cwd=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    floor = "python -c 'import numpy'"
    report.add("start_cold", "start-up, cold cache (compile)", cold, baseline=numpy_floor, baseline_label=floor)
    report.add("start_warm", "start-up, warm cache", warm, baseline=numpy_floor, baseline_label=floor,
               target=Target.max_seconds(1.0))
    report.add("start_warm_import_only", "warm: python -c 'import reference'", warm_import, baseline=numpy_floor,
               baseline_label=floor)
    report.add("import_numpy", "floor: python -c 'import numpy'", numpy_floor)
    report.add("import_numba", "floor: python -c 'import numba'", numba_floor, baseline=numpy_floor,
               baseline_label=floor)
    report.add("numba_cached_floor", "floor: one cached trivial @njit", kernel_floor, baseline=numpy_floor,
               baseline_label=floor)


def main(argv=None):
    args = parse_args("bench_reference", __doc__, argv)
    report = Report("bench_reference", quick=args.quick)
    report.notes["start_script"] = START_SCRIPT
    bench_forward_backward(report, "fwd_bwd_small", 8, 20, 10, 5, Target.min_speedup(5.0), args.quick)
    bench_forward_backward(report, "fwd_bwd_large", 4096, 784, 256, 10,
                           Target.min_speedup(1 / 1.2, "within 1.2x of NumPy"), args.quick)
    bench_numerical_gradient(report, args.quick)
    bench_startup(report, args.quick)
    report.print_table()
    path = report.write_json(args.json)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
