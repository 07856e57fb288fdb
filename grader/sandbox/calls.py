"""The submission side of a call: reach the function a request names (a module-level function, or a method
of a fresh instance of a class) and hand it the array library its course uses.

Loaded by path in the worker (like protocol.py) and imported by the in-notebook self-check, so that a
binding reaches student code the same way in both. Arrays cross the channel as NumPy arrays; with
`tensors` set, they are rebuilt here as PyTorch tensors and whatever comes back is turned into NumPy
arrays again (its dtype kept), so that the grader never receives a tensor or anything torch pickles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_DEPTH = 32  # containers deeper than this in a returned value are left to the channel to refuse


@dataclass(frozen=True)
class Via:
    """How a call reaches the student's function: `method` of a fresh instance of the named class, built with
    `init` and given `attrs` before the call, and the array library (NumPy, or PyTorch tensors)."""

    method: str | None = None
    init: tuple[Any, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    tensors: bool = False

    def header(self) -> dict[str, Any]:
        """The request fields the worker reads (besides the encoded arguments)."""
        return {"method": self.method, "tensors": self.tensors}

    def name(self, function: str) -> str:
        """The function as a student reads it: `TwoLayerNet.loss` or `softmax`."""
        return f"{function}.{self.method}" if self.method else function


DIRECT = Via()


def invoke(
    fn: Callable[..., Any],
    decoded: tuple[list[Any], dict[str, Any], list[Any], dict[str, Any]],
    method: str | None,
    tensors: bool,
    echo: bool,
) -> tuple[Any, tuple[Any, ...] | None]:
    """Call what a request names with its decoded (args, kwargs, init, attrs): `fn` itself, or `method` of
    `fn(*init)` with `attrs` assigned first (net.params = ... before net.loss(...)); arrays as tensors when
    `tensors`. Returns the value and, with `echo`, the arguments and assigned attributes after the call."""
    args, kwargs, init, attrs = to_tensors(decoded) if tensors else decoded
    instance = fn(*init) if method is not None else None
    for name, value in attrs.items():
        setattr(instance, name, value)
    value = (fn if method is None else getattr(instance, method))(*args, **kwargs)
    echoed = (*args, *(getattr(instance, name, None) for name in attrs)) if echo else None
    return from_tensors((value, echoed)) if tensors else (value, echoed)


def to_tensors(value: Any) -> Any:
    """NumPy arrays inside lists, tuples and dicts as torch tensors of the same dtype (the grader casts floats
    to the binding's dtype), integer labels as int64, which torch's losses index with."""
    import torch

    def convert(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            tensor = torch.from_numpy(np.array(v, copy=True))
            return tensor.to(torch.int64) if v.dtype.kind in "iu" else tensor
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(convert(x) for x in v)
        return v

    return convert(value)


def from_tensors(value: Any) -> Any:
    """Torch tensors inside a returned value as NumPy arrays of the same dtype (detached, on the CPU), inside
    lists, tuples and dicts (subclasses too, which become the plain type, as the channel sends them); Python
    numbers stay numbers. Anything else is left for the channel to encode or refuse."""
    import torch

    def convert(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return v
        real = type(v)  # not v.__class__, which a student's object may make claim anything
        if issubclass(real, torch.Tensor):
            return v.detach().cpu().resolve_conj().resolve_neg().numpy().copy()
        if issubclass(real, dict):
            return {k: convert(x, depth + 1) for k, x in dict.items(v)}
        base = tuple if issubclass(real, tuple) else list if issubclass(real, list) else None
        return v if base is None else base(convert(x, depth + 1) for x in base.__iter__(v))

    return convert(value, 0)
