"""Bindings: how a problem's checks reach a course's own API, declared in the assignment, never coded per course.

Every check calls a problem in its kind's canonical form (``mlp_loss(X, y, params, reg) -> (loss, grads)`` with
integer labels, a dict ``W1, b1, ..., W(L+1), b(L+1)`` of NumPy arrays in the row convention ``h @ W + b`` and the
penalty ``0.5 * reg * sum(W**2)``). A binding
translates that call into the student's (a function or a method of a fresh instance; arguments in its order and
names; parameters as a dict with its key names or as one flat vector with ``dimensions``; one-hot labels; PyTorch
tensors; its L2 scale) and translates the answer back (tuple positions, dict keys, a flat gradient unpacked in
the same layout). Checks, diagnoses, reports and the reference never see the difference.

Format, under ``[problems.<name>.binding]`` (every key optional; the defaults are the canonical call)::

    call = "loss"                  # function name, or the method's name when `class` is set (default: problem name)
    class = "TwoLayerNet"          # call a method of a fresh instance of this class ...
    init = ["input_size", "hidden_size", "output_size"]   # ... built with these values
    attribute = "params"           # ... whose attribute receives the parameters before the call
    args = ["X", "y"]              # positional arguments, by value name (default: the kind's canonical order)
    kwargs = { reg = "reg" }       # keyword arguments: student's name = value name
    params = "flat"                # dict (default) | flat: one vector packed in `layout` order, row-major |
                                   # per_layer: a list of (W, b) pairs, one per layer (the gradient alike)
    layout = ["W1", "b1", "W2", "b2"]   # (default: W1, b1, W2, b2, ... layer by layer, whatever the depth)
    keys = { W1 = "W1" }           # the student's dict key for each canonical parameter (default: the same)
    convention = "column"          # row (default): x a row per example, W (in, out), a = h @ W + b | column: x a
                                   # column per example (X.T is passed), W (out, in), a = W h + b (torch's nn.Linear)
                                   # b as given, every W and dW transposed at the edge
    labels = "one_hot"             # int (default) | one_hot
    array = "torch"                # numpy (default) | torch (CPU tensors)
    dtype = "float32"              # floats as this dtype (default: as the case has them)
    returns = ["scores", "hidden"] # names of the positions of a returned tuple (default: the kind's result as is)
    l2_scale = 1.0                 # the student's penalty is l2_scale * reg * sum(W**2) (default 0.5)
    regularized = ["W1", "b1", "W2", "b2"]   # the parameters the student's penalty covers (default the weights)
    inplace = true                 # the function may modify its input (its no-mutation checks are not planned)
    fail_words = "fail|wrong"      # kind gradcheck: what a printed verdict of failure matches (regex, any case;
    pass_words = "pass|ok"         # default "fail" and "pass"); raising AssertionError or returning a bool counts too

Value names: the kind's canonical arguments (SIGNATURES), and ``dimensions`` ([D, H1, ..., HL, C]), ``input_size``,
``hidden_size`` (H1), ``output_size`` and ``none`` (Python's None, e.g. ``y = None`` to ask for the scores).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.sandbox.calls import Via

# kind -> (canonical arguments, canonical results: a name per position of a returned tuple, or one name)
SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "softmax": (("x",), ("probabilities",)),
    "sigmoid": (("x",), ("values",)),
    "sigmoid_grad": (("s",), ("gradient",)),
    "softmax_cross_entropy": (("z", "y"), ("loss", "dz")),
    "mlp_forward": (("X", "params"), ("scores",)),
    "mlp_loss": (("X", "y", "params", "reg"), ("loss", "grads")),
    "deep_mlp_loss": (("X", "y", "params", "reg"), ("loss", "grads")),
    "numerical_gradient": (("f", "x", "h"), ("gradient",)),
    "affine_forward": (("x", "w", "b"), ("out", "cache")),
    "affine_backward": (("dout", "cache"), ("dx", "dw", "db")),
    "relu_forward": (("x",), ("out", "cache")),
    "relu_backward": (("dout", "cache"), ("dx",)),
    "sigmoid_forward": (("x",), ("out", "cache")),
    "sigmoid_backward": (("dout", "cache"), ("dx",)),
    "add_gate": (("x", "y", "dout"), ("out", "dx", "dy")),
    "multiply_gate": (("x", "y", "dout"), ("out", "dx", "dy")),
    "max_gate": (("x", "y", "dout"), ("out", "dx", "dy")),
    "copy_gate": (("x", "dout1", "dout2"), ("out1", "out2", "dx")),
    "sigmoid_dot": (("w", "x"), ("out", "dw", "dx")),
}
DERIVED = ("dimensions", "input_size", "hidden_size", "output_size", "none")
CANONICAL_L2 = 0.5  # the reference's penalty: 0.5 * reg * sum(W**2)
PARAMS = ("W1", "b1", "W2", "b2")  # a two-layer net's; a deeper one goes on to W3, b3, ...
PARAM = re.compile(r"[Wb][1-9][0-9]*")  # a parameter's canonical name: Wk or bk, layer k counted from 1
KEYS = (
    "call",
    "class",
    "init",
    "attribute",
    "args",
    "kwargs",
    "params",
    "layout",
    "keys",
    "labels",
    "array",
    "dtype",
    "returns",
    "l2_scale",
    "regularized",
    "inplace",
    "fail_words",
    "pass_words",
    "convention",
)
VERDICT_WORDS = {"gradcheck": ("fail", "pass")}  # kinds graded by what they print: (fail, pass)
CHOICES = {
    "params": ("dict", "flat", "per_layer"),
    "labels": ("int", "one_hot"),
    "array": ("numpy", "torch"),
    "convention": ("row", "column"),
}

NOT_A_TUPLE = "{function}() should return a tuple ({names}); it returned {found}"
FLAT_SIZE = (
    "{function}() returned a flat gradient of {found} entries; the parameters' layout ({layout}) has {expected}: "
    "return the gradient packed like the parameters vector"
)
LAYERS_FORM = (
    "{function}() should return the gradient as a list of {count} (dW, db) pairs, one per layer like the parameters; "
    "it returned {found}"
)
MISSING_KEY = "{function}() returned a gradient dict without the key {key!r} (for {name}); it has {found}"


class BindingError(ValueError):
    """The assignment's binding is not valid; the message names the problem, the key and what is allowed."""


class UnreadableResult(Exception):
    """The student's answer does not have the form the binding declares (the message says what to return);
    `mistake` names the known mistake that explains the form (grader.checks.diagnosis), when one does."""

    def __init__(self, message: str, mistake: str | None = None) -> None:
        super().__init__(message)
        self.mistake = mistake


@dataclass(frozen=True)
class Binding:
    """How one problem's canonical call reaches the student's code (see the module docstring for the keys)."""

    kind: str
    call: str
    cls: str | None = None
    init: tuple[str, ...] = ()
    attribute: str | None = None
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()
    params: str = "dict"
    layout: tuple[str, ...] = ()  # the flat vector's order (empty: W1, b1, W2, b2, ... layer by layer)
    keys: Mapping[str, str] = field(default_factory=dict)
    labels: str = "int"
    array: str = "numpy"
    dtype: str | None = None
    returns: tuple[str, ...] | None = None
    l2_scale: float = CANONICAL_L2
    regularized: tuple[str, ...] | None = None  # the parameters the student's penalty covers (None: the weights)
    inplace: bool = False
    words: tuple[str, str] | None = None  # (fail, pass) patterns of a kind graded by what it prints
    convention: str = "row"  # column: examples and layer outputs are columns, W is (out, in)

    @property
    def function(self) -> str:
        """The student's function as reports name it: `softmax` or `TwoLayerNet.loss`."""
        return f"{self.cls}.{self.call}" if self.cls else self.call

    @property
    def signature(self) -> str:
        """The student's call as messages quote it: `mlp_loss(X, y, params, reg)`, `TwoLayerNet.loss(X, y, reg=reg)`."""
        return f"{self.function}({', '.join([*self.args, *(f'{k}={v}' for k, v in self.kwargs)])})"

    @property
    def canonical(self) -> bool:
        """Whether calls go through unchanged (the canonical API, as `mlp` declares it: the kind's arguments in
        their order; arguments reordered or left out go through the translation)."""
        return self == Binding(self.kind, self.call, args=SIGNATURES.get(self.kind, ((), ()))[0])

    def passes(self, name: str) -> bool:
        """Whether the student's call receives the canonical value `name` at all."""
        return name in (*self.args, *(v for _, v in self.kwargs), *self.init) or (
            name == "params" and bool(self.attribute)
        )

    def request(self, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...], dict[str, Any], Via]:
        """The canonical arguments as the student's call: (name to look up, args, kwargs, how to reach it)."""
        values = self._values(args)
        via = Via(
            self.call if self.cls else None,
            tuple(values[v] for v in self.init),
            {self.attribute: values["params"]} if self.attribute else {},
            self.array == "torch",
        )
        return (
            self.cls or self.call,
            tuple(values[v] for v in self.args if v in values),  # a trailing optional argument may be left out
            {k: values[v] for k, v in self.kwargs},
            via,
        )

    def result(self, value: Any, args: tuple[Any, ...]) -> Any:
        """The student's answer in the kind's canonical form (raises UnreadableResult when it has another form)."""
        names = SIGNATURES.get(self.kind, ((), ()))[1]
        if self.returns is not None:
            if not isinstance(value, (tuple, list)) or len(value) != len(self.returns):
                found = f"a {type(value).__name__}" + (
                    f" of {len(value)} items" if isinstance(value, (tuple, list)) else ""
                )
                raise UnreadableResult(
                    NOT_A_TUPLE.format(function=self.function, names=", ".join(self.returns), found=found)
                )
            picked = dict(zip(self.returns, value, strict=True))
            value = tuple(picked.get(n) for n in names) if len(names) > 1 else picked.get(names[0])
        if "grads" in names and isinstance(value, tuple) and len(value) == len(names):
            canonical = dict(zip(SIGNATURES[self.kind][0], args, strict=False))
            params, batch = canonical.get("params"), np.shape(canonical.get("X", ()))[:1]
            value = tuple(
                self._grads(v, params, batch=batch[0] if batch else None) if n == "grads" else v
                for n, v in zip(names, value, strict=True)
            )
            if self.regularized is not None:
                value = self._reference_penalty(value, dict(zip(SIGNATURES[self.kind][0], args, strict=False)))
        return value

    def _reference_penalty(self, value: tuple[Any, ...], canonical: dict[str, Any]) -> tuple[Any, ...]:
        """(loss, grads) with the student's penalty on other parameters than the reference's traded for the
        reference's: the penalty of each parameter is known (0.5 * reg * sum(P**2), gradient reg * P in the
        reference's units), so the answer can be checked by every canonical check and diagnosis unchanged."""
        loss, grads = value
        params, reg = canonical["params"], float(canonical["reg"])
        covered, weights = set(self.regularized or ()), {n for n in params if n.startswith("W")}
        sign = {n: 1.0 for n in covered - weights if n in params}
        sign.update({n: -1.0 for n in weights - covered})
        if isinstance(loss, (int, float, np.integer, np.floating, np.ndarray)) and not isinstance(
            loss, (bool, np.bool_)
        ):
            loss = loss - sum(s * 0.5 * reg * float(np.sum(params[n] ** 2)) for n, s in sign.items())
        if isinstance(grads, dict):
            grads = {
                k: v - sign[k] * reg * params[k]
                if k in sign and isinstance(v, np.ndarray) and v.shape == params[k].shape and v.dtype.kind == "f"
                else v
                for k, v in grads.items()
            }
        return loss, grads

    def echoed(self, after: tuple[Any, ...] | None, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The arguments the student's call sent back, in canonical positions: each canonical value as the
        student's copy of it reads after the call (the value itself where the student had none to change)."""
        if after is None or self.canonical:
            return after
        canonical = dict(zip(SIGNATURES[self.kind][0], args, strict=False))
        sent = self._values(args)
        places = [*self.args, *(["params"] if self.attribute else [])]
        back = dict(zip(places, after, strict=False))
        out: list[Any] = []
        for name, original in canonical.items():
            after = back.get(name, sent.get(name))
            if name == "params" and isinstance(original, dict):
                after, given = (
                    self._grads(after, original, strict=False),
                    self._grads(sent[name], original, strict=False),
                )
                if isinstance(after, dict) and isinstance(given, dict):
                    out.append({k: original[k] if _same(after.get(k), given[k]) else after.get(k) for k in original})
                    continue
            changed = name in sent and not _same(after, sent[name])
            out.append(self._canonical_x(after) if changed and name in ("X", "y") else after if changed else original)
        return tuple(out)

    # ----------------------------------------------------------------- translation

    def _values(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """Every value a binding may name, in the student's form."""
        canonical = dict(zip(SIGNATURES.get(self.kind, ((), ()))[0], args, strict=False))
        values: dict[str, Any] = dict(canonical, none=None)
        params = canonical.get("params")
        if isinstance(params, dict) and {"W1", "W2"} <= params.keys():
            weights = [params[f"W{k}"] for k in range(1, len(params) + 1) if f"W{k}" in params]
            dims = [weights[0].shape[0], *(w.shape[1] for w in weights)]
            values.update(dimensions=dims, input_size=dims[0], hidden_size=dims[1], output_size=dims[-1])
            values["params"] = self._pack(params)
        if "X" in canonical:
            values["X"] = self._student_x(canonical["X"])
        if "y" in canonical and self.labels == "one_hot":
            classes = values["output_size"] if "output_size" in values else np.shape(canonical["z"])[-1]
            values["y"] = self._student_x(np.eye(int(classes))[np.asarray(canonical["y"])])
        if "reg" in canonical:
            values["reg"] = float(canonical["reg"]) * CANONICAL_L2 / self.l2_scale
        if self.dtype is not None:  # the values the student receives, exactly (echoes are compared with them)
            values = {k: _cast(v, self.dtype) for k, v in values.items()}
        return values

    def _student_x(self, x: Any) -> Any:
        """A matrix of examples (rows) as the student's convention has it: columns in the column convention."""
        return x.T if self.convention == "column" and isinstance(x, np.ndarray) and x.ndim == 2 else x

    _canonical_x = _student_x  # the transpose is its own inverse

    def student_param(self, name: str, value: Any) -> Any:
        """A parameter (or its gradient) between the canonical and the student's convention: W transposed in the
        column convention, both ways (a transpose is its own inverse); biases as they are."""
        if self.convention == "column" and name.startswith("W") and isinstance(value, np.ndarray) and value.ndim == 2:
            return value.T
        return value

    def order(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The parameters in the flat vector's order: the declared layout, else W1, b1, W2, b2, ... by layer."""
        return self.layout or tuple(sorted(params, key=lambda n: (int(n[1:]), n[0] == "b")))

    def _pack(self, params: dict[str, np.ndarray]) -> Any:
        if self.params == "per_layer":
            return [tuple(self.student_param(n, params[n]) for n in pair) for pair in _layers(params)]
        if self.params == "flat":
            return np.concatenate([np.ravel(self.student_param(name, params[name])) for name in self.order(params)])
        return {self.keys.get(name, name): self.student_param(name, value) for name, value in params.items()}

    def _grads(self, value: Any, params: Any, strict: bool = True, batch: int | None = None) -> Any:
        """A gradient (or parameters sent back) in the student's form as a canonical dict; strict: a form that
        cannot be read is the student's mistake, said plainly (else the value is returned for the check to judge).
        `batch` is the number of examples: a flat gradient whose bias block has one row per example is named."""
        if not isinstance(params, dict):
            return value
        if self.params == "per_layer":
            pairs = _layers(params)
            readable = isinstance(value, (list, tuple)) and len(value) == len(pairs)
            if readable and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
                return {
                    n: self.student_param(n, v)
                    for pair, got in zip(pairs, value, strict=True)
                    for n, v in zip(pair, got, strict=True)
                }
            if not strict:
                return value
            shown = f"a {type(value).__name__}" + (
                f" of {len(value)} items" if isinstance(value, (list, tuple)) else ""
            )
            raise UnreadableResult(LAYERS_FORM.format(function=self.function, count=len(pairs), found=shown))
        if self.params == "flat":
            layout_names = self.order(params)
            flat = np.asarray(value) if isinstance(value, np.ndarray) else None
            expected = sum(params[n].size for n in layout_names)
            if flat is None or flat.ndim != 1 or flat.size != expected:
                if not strict:
                    return value
                found = flat.size if flat is not None else f"a {type(value).__name__}, not"
                layout = ", ".join(f"{n} {self.student_param(n, params[n]).shape}" for n in layout_names)
                extra = (flat.size - expected) if flat is not None and batch is not None and batch > 1 else None
                unsummed = any(n.startswith("b") and extra == ((batch or 1) - 1) * params[n].size for n in layout_names)
                mistake = "bias_not_summed" if unsummed else None
                raise UnreadableResult(
                    FLAT_SIZE.format(function=self.function, found=found, layout=layout, expected=expected), mistake
                )
            out, start = {}, 0
            for name in layout_names:
                size = params[name].size
                shape = self.student_param(name, params[name]).shape
                out[name] = self.student_param(name, flat[start : start + size].reshape(shape))
                start += size
            return out
        if not isinstance(value, dict) or not (self.keys or self.convention == "column"):
            return value
        out = {}
        for name in params:
            key = self.keys.get(name, name)
            if key not in value:
                if not strict:
                    return value
                raise UnreadableResult(
                    MISSING_KEY.format(function=self.function, key=key, name=name, found=sorted(map(str, value))[:8])
                )
            out[name] = self.student_param(name, value[key])
        return out


def _layers(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(W1, b1), (W2, b2), ...: the parameters' names layer by layer."""
    return [(f"W{k}", f"b{k}") for k in range(1, sum(n.startswith("W") for n in params) + 1)]


def _cast(value: Any, dtype: str) -> Any:
    """Float arrays (also inside dicts, lists and tuples) as `dtype`."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _same(a: Any, b: Any) -> bool:
    """Whether the value sent back (untrusted, any decoded type) is the one sent, bit for bit."""
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    return type(a) is type(b) and type(b) in (int, float, str, type(None)) and a == b


def parse(problem: str, kind: str, table: Any, where: str) -> Binding:
    """The binding of one problem from its [problems.<name>.binding] table (absent: the canonical call)."""
    here = f"{where}: [problems.{problem}.binding]"
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise BindingError(f"{here} must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise BindingError(f"{here}: unknown key(s) {unknown}; expected some of {list(KEYS)}")
    known_kind = kind in SIGNATURES
    allowed = {"call", *(("fail_words", "pass_words") if kind in VERDICT_WORDS else ())}
    if not known_kind and set(table) - allowed:
        raise BindingError(f"{here}: problems of kind {kind!r} can only set {sorted(allowed)}")
    words = None
    if kind in VERDICT_WORDS:
        words = (
            str(table.get("fail_words", VERDICT_WORDS[kind][0])),
            str(table.get("pass_words", VERDICT_WORDS[kind][1])),
        )
        for pattern in words:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise BindingError(f"{here}: {pattern!r} is not a regular expression: {exc}") from None
    canonical = SIGNATURES.get(kind, ((), ()))
    names = (*canonical[0], *DERIVED)

    def text(key: str, default: str | None) -> str | None:
        value = table.get(key, default)
        if value is not None and not (isinstance(value, str) and value.isidentifier()):
            raise BindingError(f"{here}: {key} must be a Python name, got {value!r}")
        return value

    def choice(key: str) -> str:
        value = table.get(key, CHOICES[key][0])
        if value not in CHOICES[key]:
            raise BindingError(f"{here}: {key} must be one of {list(CHOICES[key])}, got {value!r}")
        return str(value)

    def value_names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v in names for v in value):
            raise BindingError(f"{here}: {key} must be a list of names among {list(names)}, got {value!r}")
        return tuple(value)

    def parameter_names(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and PARAM.fullmatch(v) for v in value):
            raise BindingError(f"{here}: {key} must be a list of parameter names (W1, b1, W2, ...), got {value!r}")
        return tuple(value)

    kwargs = table.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(v, str) and v in names for v in kwargs.values()):
        raise BindingError(f"{here}: kwargs must map argument names to value names among {list(names)}, got {kwargs!r}")
    keys = table.get("keys", {})
    if not isinstance(keys, dict) or not all(PARAM.fullmatch(k) and isinstance(v, str) for k, v in keys.items()):
        raise BindingError(
            f"{here}: keys must map parameters (W1, b1, W2, ...) to the student's key names, got {keys!r}"
        )
    returns = table.get("returns")
    if returns is not None and (
        not isinstance(returns, list)
        or not all(isinstance(r, str) for r in returns)
        or not set(canonical[1]) <= set(returns)
    ):
        raise BindingError(f"{here}: returns must be a list naming every one of {list(canonical[1])} at its position")
    regularized = parameter_names("regularized") if "regularized" in table else None
    if regularized is not None and "reg" not in canonical[0]:
        raise BindingError(f"{here}: regularized applies to problems whose kind takes reg")
    dtype = table.get("dtype")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise BindingError(f"{here}: dtype must be float32 or float64, got {dtype!r}")
    l2_scale = table.get("l2_scale", CANONICAL_L2)
    if not isinstance(l2_scale, (int, float)) or not 0 < l2_scale < float("inf"):
        raise BindingError(f"{here}: l2_scale must be a positive number (0.5 or 1.0), got {l2_scale!r}")
    cls = text("class", None)
    attribute = text("attribute", None)
    if (table.get("init") or attribute) and cls is None:
        raise BindingError(f"{here}: init and attribute need a class")
    binding = Binding(
        kind=kind,
        call=text("call", problem) or problem,
        cls=cls,
        init=value_names("init", ()),
        attribute=attribute,
        args=value_names("args", tuple(n for n in canonical[0] if not (attribute and n == "params"))),
        kwargs=tuple((str(k), str(v)) for k, v in kwargs.items()),
        params=choice("params"),
        layout=parameter_names("layout"),
        keys=dict(keys),
        labels=choice("labels"),
        array=choice("array"),
        dtype=dtype,
        returns=tuple(returns) if returns is not None else None,
        l2_scale=float(l2_scale),
        regularized=regularized,
        inplace=bool(table.get("inplace", False)),
        words=words,
        convention=choice("convention"),
    )
    layers = len(binding.layout) // 2
    if binding.layout and sorted(binding.layout) != sorted(f"{p}{k}" for p in "Wb" for k in range(1, layers + 1)):
        raise BindingError(
            f"{here}: layout must name each of W1, b1, ..., W{{L+1}}, b{{L+1}} once (two layers: "
            f"{list(PARAMS)}), got {list(binding.layout)}"
        )
    missing = [n for n in canonical[0] if not binding.passes(n) and n != "reg"]
    if missing:
        raise BindingError(f"{here}: the call passes no {missing}: name them in args, kwargs, init or attribute")
    return binding
