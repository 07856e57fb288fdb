"""Reference multi-layer perceptron of any depth: spec, seeded init, forward, backward.

Row-vector convention as in the classic derivations: u_l = a_{l-1} @ W_l + b_l,
a_l = act(u_l) for hidden layers, logits z = u_L, loss = softmax cross-entropy reduced
over the batch + 0.5 * reg * sum_l sum(W_l**2) (weights only, never biases).

All parameters live in one flat vector (W1, b1, W2, b2, ... each C-ordered) so the
compiled kernels, the finite-difference engine and the bug variants share one layout;
:class:`Params` exposes that vector as the named arrays students use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from reference.activations import relu_grad_scalar, relu_scalar, sigmoid_grad_scalar, sigmoid_scalar, tanh_grad_scalar
from reference.losses import REDUCTIONS, _cross_entropy, check_labels, reduction_scale

ACTIVATIONS = ("relu", "sigmoid", "tanh")


@dataclass(frozen=True)
class MLPSpec:
    """Architecture and loss of an MLP: sizes (D, H1, ..., C), hidden activation, reduction, L2 reg."""

    sizes: tuple[int, ...]
    activation: str = "relu"
    reduction: str = "mean"
    reg: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ValueError(f"sizes must be (D, ..., C) with at least two positive entries, got {self.sizes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if not self.reg >= 0.0:
            raise ValueError(f"reg must be a non-negative number, got {self.reg!r}")
        object.__setattr__(self, "reg", float(self.reg))

    @property
    def depth(self) -> int:
        """Number of weight layers."""
        return len(self.sizes) - 1

    @cached_property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in flat-vector order."""
        out: dict[str, tuple[int, ...]] = {}
        for layer in range(self.depth):
            din, dout = self.sizes[layer], self.sizes[layer + 1]
            out[f"W{layer + 1}"] = (din, dout)
            out[f"b{layer + 1}"] = (dout,)
        return out

    @cached_property
    def slices(self) -> dict[str, slice]:
        """Parameter name -> its slice of the flat vector."""
        out: dict[str, slice] = {}
        start = 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[name] = slice(start, start + size)
            start += size
        return out

    @cached_property
    def size(self) -> int:
        """Total number of parameters."""
        return sum(s.stop - s.start for s in self.slices.values())

    @cached_property
    def kernel_args(self) -> tuple[np.ndarray, int, int, float]:
        """(sizes as int64 array, activation code, reduction code, reg): what the kernels take.

        Codes are indices into ACTIVATIONS and REDUCTIONS (passing strings to Numba costs
        microseconds per call, more than a whole small forward pass).
        """
        sizes = np.asarray(self.sizes, dtype=np.int64)
        return sizes, ACTIVATIONS.index(self.activation), REDUCTIONS.index(self.reduction), self.reg

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        """Parameter name and index within it of one entry of the flat vector."""
        for name, sl in self.slices.items():
            if sl.start <= flat_index < sl.stop:
                return name, tuple(int(i) for i in np.unravel_index(flat_index - sl.start, self.shapes[name]))
        raise IndexError(f"flat index {flat_index} out of range for {self.size} parameters")


class Params(Mapping[str, np.ndarray]):
    """MLP parameters (W1, b1, ...) as named views into one flat vector."""

    def __init__(self, flat: np.ndarray, spec: MLPSpec) -> None:
        if flat.ndim != 1 or flat.shape[0] != spec.size:
            raise ValueError(f"flat parameter vector must have shape ({spec.size},), got {flat.shape}")
        self.flat = flat
        self.spec = spec

    @classmethod
    def coerce(cls, params: Mapping[str, np.ndarray], spec: MLPSpec, dtype: np.dtype | None = None) -> Params:
        """Params from any mapping of name -> array (reused as is when already flat-backed)."""
        if (
            isinstance(params, Params)
            and params.spec.sizes == spec.sizes
            and (dtype is None or params.flat.dtype == dtype)
        ):
            return params
        missing = [name for name in spec.shapes if name not in params]
        if missing:
            raise KeyError(f"missing parameters {missing}; expected {list(spec.shapes)}")
        arrays = [np.asarray(params[name]) for name in spec.shapes]
        for name, arr in zip(spec.shapes, arrays, strict=False):
            if arr.shape != spec.shapes[name]:
                raise ValueError(f"{name} must have shape {spec.shapes[name]}, got {arr.shape}")
        target = dtype if dtype is not None else np.result_type(*arrays, np.float32)
        flat = np.concatenate([a.ravel() for a in arrays]).astype(target, copy=False)
        return cls(flat, spec)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.flat[self.spec.slices[name]].reshape(self.spec.shapes[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec.shapes)

    def __len__(self) -> int:
        return len(self.spec.shapes)

    def copy(self) -> Params:
        """A deep copy (new flat vector)."""
        return Params(self.flat.copy(), self.spec)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{v}" for k, v in self.spec.shapes.items())
        return f"Params({shapes}, dtype={self.flat.dtype})"


def init_params(spec: MLPSpec, seed: int, dtype: type | np.dtype = np.float64, bias_scale: float = 0.0) -> Params:
    """Seeded init: W ~ N(0, gain/fan_in) (He gain 2 for relu, 1 otherwise), b ~ N(0, bias_scale**2)."""
    rng = np.random.default_rng(seed)
    gain = 2.0 if spec.activation == "relu" else 1.0
    flat = np.empty(spec.size, dtype=np.float64)
    for name, sl in spec.slices.items():
        shape = spec.shapes[name]
        if name.startswith("W"):
            flat[sl] = rng.standard_normal(int(np.prod(shape))) * np.sqrt(gain / shape[0])
        else:
            flat[sl] = rng.standard_normal(shape[0]) * bias_scale
    return Params(flat.astype(dtype), spec)


@njit(cache=True)
def _layer_offset(sizes, layer):  # type: ignore[no-untyped-def]
    """Offset of W_{layer+1} in the flat vector."""
    off = 0
    for k in range(layer):
        off += sizes[k] * sizes[k + 1] + sizes[k + 1]
    return off


@njit(cache=True)
def _layer(theta, sizes, layer):  # type: ignore[no-untyped-def]
    """(W, b) views of layer `layer` (0-based) in the flat vector theta."""
    off = _layer_offset(sizes, layer)
    din, dout = sizes[layer], sizes[layer + 1]
    w = theta[off : off + din * dout].reshape((din, dout))
    b = theta[off + din * dout : off + din * dout + dout]
    return w, b


@njit(cache=True)
def _block(buf, n, sizes, layer):  # type: ignore[no-untyped-def]
    """(n, sizes[layer+1]) view of layer `layer`'s outputs in the activation buffer."""
    off = 0
    for k in range(layer):
        off += n * sizes[k + 1]
    return buf[off : off + n * sizes[layer + 1]].reshape((n, sizes[layer + 1]))


@njit(cache=True)
def _activate(v, activation):  # type: ignore[no-untyped-def]
    """Hidden activation (code: index in ACTIVATIONS) of one number."""
    if activation == 0:
        return relu_scalar(v)
    if activation == 1:
        return sigmoid_scalar(v)
    if activation == 2:
        return np.tanh(v)
    raise ValueError("activation code must be 0 (relu), 1 (sigmoid) or 2 (tanh)")


@njit(cache=True)
def _activation_grad(h, activation):  # type: ignore[no-untyped-def]
    """d act / d u of one unit, written in the activation's output h."""
    if activation == 0:
        return relu_grad_scalar(h)
    if activation == 1:
        return sigmoid_grad_scalar(h)
    return tanh_grad_scalar(h)


@njit(cache=True)
def _apply_activation(u, activation):  # type: ignore[no-untyped-def]
    """In-place hidden activation of a 2-D pre-activation block."""
    for i in range(u.shape[0]):
        for j in range(u.shape[1]):
            u[i, j] = _activate(np.float64(u[i, j]), activation)


_BLAS_MIN_WORK = 32768  # multiply-adds below which a plain loop beats the BLAS call overhead


@njit(cache=True)
def _matmul_into(a, b, out):  # type: ignore[no-untyped-def]
    """out = a @ b: BLAS for real work, a compiled loop for tiny products (no call overhead)."""
    m, k = a.shape
    n = b.shape[1]
    if m * k * n >= _BLAS_MIN_WORK:
        np.dot(a, b, out)
        return
    out[:] = 0
    for i in range(m):
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                out[i, j] += aip * b[p, j]


@njit(cache=True)
def _affine_into(a, w, b, out):  # type: ignore[no-untyped-def]
    """out = a @ w + b (row-vector convention)."""
    _matmul_into(a, w, out)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += b[j]


@njit(cache=True)
def _forward(x, theta, sizes, activation, keep_pre):  # type: ignore[no-untyped-def]
    """Layer outputs (hidden activations, then the logits) in one flat buffer.

    Returns (post, pre); with keep_pre the second buffer holds every layer's
    pre-activation u_l (the finite-difference engine needs both), else it is empty.
    """
    n = x.shape[0]
    depth = sizes.shape[0] - 1
    total = 0
    for k in range(1, depth + 1):
        total += sizes[k]
    post = np.empty(n * total, dtype=x.dtype)
    pre = np.empty(n * total if keep_pre else 0, dtype=x.dtype)
    a = x
    for layer in range(depth):
        w, b = _layer(theta, sizes, layer)
        out = _block(post, n, sizes, layer)
        _affine_into(a, w, b, out)
        if keep_pre:
            _block(pre, n, sizes, layer)[:] = out
        if layer < depth - 1:
            _apply_activation(out, activation)
        a = out
    return post, pre


@njit(cache=True)
def _penalty(theta, sizes, reg):  # type: ignore[no-untyped-def]
    """0.5 * reg * sum of squared weights (biases excluded), in float64."""
    total = 0.0
    for layer in range(sizes.shape[0] - 1):
        w, _ = _layer(theta, sizes, layer)
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                total += np.float64(w[i, j]) * np.float64(w[i, j])
    return 0.5 * reg * total


@njit(cache=True)
def _loss_and_grads(x, y, theta, sizes, activation, reduction, reg):  # type: ignore[no-untyped-def]
    """(loss, flat gradient) by backprop; the gradient has theta's dtype."""
    n = x.shape[0]
    depth = sizes.shape[0] - 1
    buf, _ = _forward(x, theta, sizes, activation, False)
    loss, du = _cross_entropy(_block(buf, n, sizes, depth - 1), y, reduction_scale(reduction, n))
    grad = np.empty_like(theta)
    for layer in range(depth - 1, -1, -1):
        w, _ = _layer(theta, sizes, layer)
        gw, gb = _layer(grad, sizes, layer)
        a_prev = x if layer == 0 else _block(buf, n, sizes, layer - 1)
        _matmul_into(a_prev.T, du, gw)
        for i in range(gw.shape[0]):
            for j in range(gw.shape[1]):
                gw[i, j] += reg * w[i, j]
        for j in range(gb.shape[0]):
            acc = 0.0
            for i in range(n):
                acc += du[i, j]
            gb[j] = acc
        if layer > 0:
            da = np.empty_like(a_prev)
            _matmul_into(du, w.T, da)
            for i in range(n):
                for j in range(da.shape[1]):
                    da[i, j] *= _activation_grad(np.float64(a_prev[i, j]), activation)
            du = da
    return loss + _penalty(theta, sizes, reg), grad


def _prepare(x: np.ndarray, params: Mapping[str, np.ndarray], spec: MLPSpec) -> tuple[np.ndarray, Params]:
    """Contiguous X and flat-backed params of one common float dtype."""
    if (
        isinstance(params, Params)
        and type(x) is np.ndarray
        and x.dtype == params.flat.dtype
        and x.flags.c_contiguous
        and x.ndim == 2
        and x.shape[1] == spec.sizes[0]
        and params.spec.sizes == spec.sizes
    ):
        return x, params
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != spec.sizes[0]:
        raise ValueError(f"X must have shape (N, {spec.sizes[0]}), got {x.shape}")
    first = params[next(iter(spec.shapes))] if not isinstance(params, Params) else params.flat
    dtype = np.result_type(x, np.asarray(first), np.float32)
    return np.ascontiguousarray(x, dtype=dtype), Params.coerce(params, spec, dtype)


def forward(x: np.ndarray, params: Mapping[str, np.ndarray], spec: MLPSpec) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (N, C) and the cached hidden activations [a_1, ..., a_{L-1}]."""
    x, p = _prepare(x, params, spec)
    sizes, activation, _, _ = spec.kernel_args
    buf, _ = _forward(x, p.flat, sizes, activation, False)
    n = x.shape[0]
    blocks, start = [], 0
    for width in spec.sizes[1:]:
        blocks.append(buf[start : start + n * width].reshape(n, width))
        start += n * width
    return blocks[-1], blocks[:-1]


def loss_and_grads(
    x: np.ndarray, y: ArrayLike, params: Mapping[str, np.ndarray], spec: MLPSpec
) -> tuple[float, Params]:
    """Loss (data loss reduced over the batch + L2 penalty) and a gradient for every W and b.

    X is (N, D); y holds N class indices in [0, C), checked by check_labels (never truncated).
    """
    x, p = _prepare(x, params, spec)
    labels = check_labels(y, x.shape[0], spec.sizes[-1], spec.reduction, "X")
    loss, grad = _loss_and_grads(x, labels, p.flat, *spec.kernel_args)
    return float(loss), Params(grad, spec)


@njit(cache=True)
def _loss(x, y, theta, sizes, activation, reduction, reg):  # type: ignore[no-untyped-def]
    """Loss only: forward pass, cross-entropy and penalty."""
    buf, _ = _forward(x, theta, sizes, activation, False)
    data, _ = _cross_entropy(
        _block(buf, x.shape[0], sizes, sizes.shape[0] - 2), y, reduction_scale(reduction, x.shape[0])
    )
    return data + _penalty(theta, sizes, reg)


def loss(x: np.ndarray, y: ArrayLike, params: Mapping[str, np.ndarray], spec: MLPSpec) -> float:
    """Loss only (the forward pass and the penalty), no backward pass; X and y as for loss_and_grads."""
    x, p = _prepare(x, params, spec)
    labels = check_labels(y, x.shape[0], spec.sizes[-1], spec.reduction, "X")
    return float(_loss(x, labels, p.flat, *spec.kernel_args))
