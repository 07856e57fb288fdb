"""Turning what student code returned into numbers, and comparing them with the reference.

Everything that comes back from the sandbox is untrusted: wrong types, refused objects, NaN,
wrong shapes. These helpers either return clean NumPy values or raise CheckFailed with a
message that says what was expected, what was found and where the difference is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from grader.assignment import Tolerance
from grader.checks.base import CheckFailed
from grader.sandbox.exceptions import MissingFunction, NotImplementedByStudent, SandboxError, StudentError
from grader.sandbox.protocol import Refused

HEATMAP_MAX_ENTRIES = 4096  # error matrices up to this size are kept in the details for plots


def call_failure(function: str, exc: BaseException) -> CheckFailed:
    """The verdict for a call that did not return normally."""
    if isinstance(exc, NotImplementedByStudent):
        return CheckFailed(
            f"{function}() is not implemented yet: it still raises NotImplementedError",
            status="error",
            details={"not_implemented": True},
        )
    if isinstance(exc, StudentError):
        where = _last_student_frame(exc.traceback)
        return CheckFailed(f"{exc}{where}", status="error", details={"traceback": exc.traceback})
    if isinstance(exc, MissingFunction):
        return CheckFailed(str(exc), status="error", details={"missing": True})
    if isinstance(exc, SandboxError):
        return CheckFailed(str(exc), status="error")
    raise exc


_SUBMITTED_FILE = re.compile(r'File "[\w.-]+\.py", line \d')  # a submitted .py module's frame (grader.pyfiles)


def _last_student_frame(traceback: list[str]) -> str:
    for chunk in reversed(traceback):
        for line in chunk.splitlines():
            cell = "line" in line and ("<ipython-input" in line or "Cell In" in line or "<cell" in line)
            if cell or _SUBMITTED_FILE.search(line):
                return f" ({line.strip()})"
    return ""


def _refused_inside(value: Any, depth: int = 0) -> Refused | None:
    """The first value the channel refused, anywhere inside a returned container."""
    if isinstance(value, Refused):
        return value
    if depth < 32 and isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            found = _refused_inside(item, depth + 1)
            if found is not None:
                return found
    return None


def describe(value: Any) -> str:
    """A short description of a returned value, for messages."""
    if isinstance(value, Refused):
        return f"a {value.type}, which cannot be graded: {value.why}"
    inner = _refused_inside(value)
    if inner is not None:
        return f"a {type(value).__name__} holding a {inner.type}, which cannot be graded: {inner.why}"
    if value is None:
        return "None (did the function forget to return its result?)"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    return f"a {type(value).__name__} ({value!r})"[:200]


def as_array(value: Any, what: str, shape: tuple[int, ...] | None = None, check_shape: bool = True) -> np.ndarray:
    """A float array from a returned value (arrays, nested lists of numbers and NumPy scalars accepted).

    `shape` is the expected shape, named in messages; with check_shape=False a wrong shape is left to the caller
    (which compares it with the expected value, see conform, to name the slip)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (np.ndarray, list, tuple, float, int, np.generic)):
        raise CheckFailed(f"{what} should be a NumPy array{_shape_text(shape)}, but it is {describe(value)}")
    try:
        array = np.asarray(value, dtype=np.float64) if not isinstance(value, np.ndarray) else value
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a NumPy array{_shape_text(shape)}, but it is {describe(value)}") from None
    if array.dtype.kind not in "biuf":
        raise CheckFailed(f"{what} should contain numbers, but it has dtype {array.dtype}")
    if check_shape and shape is not None and array.shape != shape:
        slip = shape_slip(array.shape, shape)
        raise CheckFailed(
            f"{what} has shape {array.shape}, expected {shape}" + (f": {slip[1]}" if slip else ""),
            details={"shape": list(array.shape), **({"shape_slip": slip[0]} if slip else {})},
        )
    return array


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else f" of shape {shape}"


def as_float(value: Any, what: str) -> float:
    """A Python float from a returned scalar (float, int, NumPy scalar, 0-d or one-element array)."""
    if isinstance(value, (bool, np.bool_)):
        raise CheckFailed(f"{what} should be a number, but it is a bool")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        if value.size == 1:
            return float(value.reshape(()))
        raise CheckFailed(
            f"{what} should be a single number, but it is an array of shape {value.shape}"
            + (" (did you forget to average or sum over the batch?)" if value.ndim == 1 else "")
        )
    raise CheckFailed(f"{what} should be a number, but it is {describe(value)}")


def as_pair(value: Any, what: str) -> tuple[Any, Any]:
    """The two items of a returned (first, second) pair."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise CheckFailed(f"{what} should return a pair (loss, gradient), but it returned {describe(value)}")
    return value[0], value[1]


def as_param_dict(value: Any, what: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A dict of named arrays with the expected keys and shapes."""
    if not isinstance(value, dict):
        raise CheckFailed(f"{what} should be a dict with keys {list(shapes)}, but it is {describe(value)}")
    missing = [k for k in shapes if k not in value]
    if missing:
        raise CheckFailed(
            f"{what} is missing the keys {missing} (it has {sorted(value)}); "
            f"return a gradient for every parameter: {list(shapes)}"
        )
    return {k: as_array(value[k], f"{what}[{k!r}]") for k in shapes}


def finite_or_fail(array: np.ndarray, what: str, case: Mapping[str, Any], diagnosis: str | None = None) -> None:
    """Fail when the result holds NaN or infinity (the usual sign of overflow)."""
    bad = ~np.isfinite(array)
    if bad.any():
        index = [int(i) for i in np.argwhere(bad)[0]]
        raise CheckFailed(
            f"{what} contains {int(bad.sum())} NaN/inf entries ({case_label(case)}), e.g. at {index}: "
            "an overflow (exp of a large number) or a division by zero",
            diagnosis=diagnosis,
            details={**case, "nonfinite": int(bad.sum())},
        )


def case_label(case: Mapping[str, Any]) -> str:
    """'random 2-D input, shape (4, 7), seed 123' from a case's details."""
    parts = [str(case.get("label", "input"))]
    if case.get("shapes"):  # (scalar inputs have none)
        parts.append(", ".join(f"{k} {tuple(v)}" for k, v in case["shapes"].items()))
    if "seed" in case:
        parts.append(f"seed {case['seed']}")
    return ", ".join(parts)


def close_mask(found: np.ndarray, expected: np.ndarray, tol: Tolerance) -> np.ndarray:
    """Elementwise |found - expected| <= atol + rtol * |expected| (NaN counts as not close)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(found - expected) <= tol.atol + tol.rtol * np.abs(expected)


def is_close(found: np.ndarray, expected: np.ndarray, tol: Tolerance) -> bool:
    """Same shape and every entry close."""
    return found.shape == expected.shape and bool(close_mask(found, expected, tol).all())


def same_values(found: np.ndarray, expected: np.ndarray, tol: Tolerance) -> bool:
    """Every entry close, in the expected shape or in a named shape slip of it (see shape_slip)."""
    if found.shape == expected.shape:
        return is_close(found, expected, tol)
    slip = shape_slip(found.shape, expected.shape)
    return slip is not None and _slip_values_right(found, expected, slip[0], tol)


def pattern(found: np.ndarray, expected: np.ndarray, ok: np.ndarray) -> str:
    """Where and how a result of the right shape differs: a constant factor, an offset, whole rows or columns."""
    if found.shape != expected.shape or not np.isfinite(found).all():
        return ""
    big = np.abs(expected) > 1e-12 * max(1.0, float(np.abs(expected).max()))
    if big.sum() >= 2:
        ratio = found[big] / expected[big]
        if np.allclose(ratio, ratio[0], rtol=1e-6) and np.allclose(found[~big], 0, atol=1e-12):
            return f"every entry is {ratio[0]:.6g} times the expected value"
    offset = found - expected
    if offset.size >= 2 and np.allclose(offset, offset.flat[0], rtol=1e-6, atol=1e-12):
        return f"every entry is off by the same amount, {offset.flat[0]:.6g}"
    if expected.ndim == 2:
        bad_rows = np.flatnonzero(~ok.all(axis=1))
        bad_cols = np.flatnonzero(~ok.all(axis=0))
        if 0 < len(bad_rows) < expected.shape[0]:
            return f"only rows {_index_list(bad_rows)} of {expected.shape[0]} are wrong"
        if 0 < len(bad_cols) < expected.shape[1]:
            return f"only columns {_index_list(bad_cols)} of {expected.shape[1]} are wrong"
    return ""


def _index_list(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:8])
    return f"[{shown}{', ...' if len(indices) > 8 else ''}]"


SHAPE_SLIPS = {
    "keepdims": "it has an extra axis of length 1 (a reduction with keepdims=True, or a (1, n) row vector): "
    "reduce without keepdims=True (e.g. .sum(axis=0)), or use .reshape({expected})",
    "keepdims_vector": "it is a {found} 2-D array where a 1-D array is expected (keepdims=True?): "
    "sum with axis=0 and without keepdims=True, or use .ravel()",
    "column_vector": "it is a column vector {found} where a 1-D array is expected: use .ravel()",
    "one_element": "it is a one-element array where a 0-d result (a single number) is expected: do not wrap "
    "the input in np.atleast_1d / np.array([x]), or return .item() / .reshape(()) for a single number",
    "missing_axis": "an axis of length 1 is missing: keep it (keepdims=True) or use .reshape({expected})",
    "flattened": "it is flattened: keep the shape {expected}, e.g. with .reshape({expected})",
    "row_vs_column": "it is a {found} vector where a {expected} vector is expected (row vs column): use .T",
    "transposed": "it is transposed: return its transpose (.T), or swap the factors of the product that computes "
    "it (for z = h @ W, dW = h.T @ dz)",
    "reshaped": "it has the right number of entries in another shape: return an array of shape {expected}",
}
RIGHT_VALUES = "The values are right: only the shape is wrong."


def shape_slip(found: tuple[int, ...], expected: tuple[int, ...]) -> tuple[str, str] | None:
    """Name a wrong shape that holds the right number of entries, with how to fix it: (slip, fix), or None when
    the sizes differ (a different mistake, not a slip)."""
    if int(np.prod(found)) != int(np.prod(expected)) or found == expected:
        return None
    squeezed = tuple(n for n in found if n != 1)
    wanted = tuple(n for n in expected if n != 1)
    if len(expected) == 2 and found == expected[::-1]:
        name = "row_vs_column" if 1 in expected else "transposed"
    elif not expected:
        name = "one_element"
    elif len(found) > len(expected) and squeezed == wanted:
        column = len(expected) == 1 and found == (expected[0], 1)
        row = len(expected) == 1 and found == (1, expected[0])
        name = "column_vector" if column else "keepdims_vector" if row else "keepdims"
    elif len(found) < len(expected) and squeezed == wanted:
        name = "missing_axis"
    elif len(found) == 1 and len(expected) >= 2:
        name = "flattened"
    else:
        name = "reshaped"
    return name, SHAPE_SLIPS[name].format(found=found, expected=expected)


def _slip_values_right(found: np.ndarray, expected: np.ndarray, slip: str, tol: Tolerance) -> bool:
    """Whether the values are right once the slip is undone (a transpose by .T, any other slip by a reshape)."""
    undone = found.T if slip == "transposed" else found.reshape(expected.shape)
    return is_close(undone, expected, tol)


def conform(
    found: np.ndarray,
    expected: np.ndarray,
    tol: Tolerance,
    what: str,
    case: Mapping[str, Any],
    diagnose: Callable[[np.ndarray], str | None] | None = None,
) -> None:
    """Fail when `found` does not have the expected shape, naming the slip and its fix (and saying whether the
    values are right, which the assignment's [scoring] shape_slip_credit may reward)."""
    if found.shape == expected.shape:
        return
    details: dict[str, Any] = {**case, "found_shape": list(found.shape), "expected_shape": list(expected.shape)}
    message = f"{what} has shape {found.shape}, expected {expected.shape} ({case_label(case)})"
    slip = shape_slip(found.shape, expected.shape)
    if slip is not None:
        name, fix = slip
        right = _slip_values_right(found, expected, name, tol)
        message += f": {fix}" + (f". {RIGHT_VALUES}" if right else "")
        details.update(shape_slip=name, right_values_wrong_shape=right)
    raise CheckFailed(message, diagnosis=diagnose(found) if diagnose else None, details=details)


def assert_close(
    found: np.ndarray,
    expected: np.ndarray,
    tol: Tolerance,
    what: str,
    case: Mapping[str, Any],
    diagnose: Callable[[np.ndarray], str | None] | None = None,
) -> None:
    """Pass silently, or fail with where, how much, and (when known) the likely cause."""
    expected = np.asarray(expected, dtype=np.float64)
    found64 = found.astype(np.float64, copy=False)
    conform(found64, expected, tol, what, case, diagnose)
    ok = close_mask(found64, expected, tol)
    if ok.all():
        return
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        error = np.abs(found64 - expected)
        relative = error / np.maximum(np.abs(expected), 1e-300)
    worst = (
        np.unravel_index(int(np.argmax(np.where(np.isnan(error), np.inf, error))), expected.shape)
        if expected.ndim
        else ()
    )
    details: dict[str, Any] = {
        **case,
        "quantity": what,
        "max_abs_error": _finite_or_str(np.nanmax(error) if not np.isnan(error).all() else np.nan),
        "max_rel_error": _finite_or_str(np.nanmax(relative) if not np.isnan(relative).all() else np.nan),
        "worst_index": [int(i) for i in worst],
        "expected_at_worst": _finite_or_str(expected[worst]),
        "found_at_worst": _finite_or_str(found64[worst]),
        "wrong_entries": int((~ok).sum()),
        "entries": int(ok.size),
        "rtol": tol.rtol,
        "atol": tol.atol,
    }
    if expected.ndim in (1, 2) and expected.size <= HEATMAP_MAX_ENTRIES:
        details["abs_error"] = np.where(np.isfinite(error), error, -1.0).tolist()
    where = f" at {list(details['worst_index'])}" if expected.ndim else ""
    message = (
        f"{what} is wrong ({case_label(case)}): {details['wrong_entries']} of {details['entries']} entries differ; "
        f"the largest error is {_fmt(details['max_abs_error'])}{where} "
        f"(expected {_fmt(details['expected_at_worst'])}, found {_fmt(details['found_at_worst'])})"
    )
    hint = pattern(found64, expected, ok)
    if hint:
        message += f"; {hint}"
    raise CheckFailed(message, diagnosis=diagnose(found64) if diagnose else None, details=details)


def assert_loss_close(
    found: float,
    expected: float,
    tol: Tolerance,
    case: Mapping[str, Any],
    explain: Callable[[float], str | None],
    nonfinite: Callable[[float], str | None],
) -> None:
    """assert_close for a loss value; a NaN or infinite loss fails at once, with the cause `nonfinite` names."""
    if not np.isfinite(found):
        raise CheckFailed(f"the loss is {found} ({case_label(case)})", diagnosis=nonfinite(found), details=dict(case))
    assert_close(np.asarray(found), np.asarray(expected), tol, "the loss", case, lambda f: explain(float(f)))


def _finite_or_str(x: Any) -> float | str:
    value = float(x)
    return value if np.isfinite(value) else str(value)


def _fmt(x: float | str) -> str:
    return x if isinstance(x, str) else f"{x:.6g}"


def assert_unchanged(
    before: tuple[Any, ...], after: tuple[Any, ...] | None, names: tuple[str, ...], function: str
) -> None:
    """Fail when the function modified any of its array arguments (compared bit for bit)."""
    if after is None:
        raise CheckFailed(f"could not read {function}()'s arguments back after the call")
    for name, old, new in zip(names, before, after, strict=False):
        pairs = (
            [(f"{name}[{k!r}]", old[k], new.get(k) if isinstance(new, dict) else None) for k in old]
            if isinstance(old, dict)
            else [(name, old, new)]
        )
        for label, a, b in pairs:
            if not isinstance(a, np.ndarray):
                continue
            if not isinstance(b, np.ndarray) or b.shape != a.shape or not np.array_equal(a, b, equal_nan=True):
                changed = (
                    int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
                    if isinstance(b, np.ndarray) and b.shape == a.shape
                    else a.size
                )
                raise CheckFailed(
                    f"{function}() modified its input {label} in place ({changed} of {a.size} entries changed); "
                    "work on a copy (e.g. x = x - x.max(...) instead of x -= ...)",
                    details={"argument": label, "changed_entries": changed},
                )
