"""The one sanitizer between student-controlled values and every file or terminal the grader writes.

Student code decides the numbers (returned arrays: NaN, inf, NumPy scalars), the strings (printed
text, exception messages, file names: escape sequences, bidi overrides, lone surrogates, megabytes)
and the shapes (nesting) that reach a report or an executed notebook. Every writer (JSON, Gradescope
results, text, HTML, JUnit XML, GitHub annotations, the CSV gradebook, the executed notebook, the
command's own progress and error lines) renders only values that went through here, so no writer
raises on them and none passes a raw control character to a terminal or an XML parser.

Sanitized data is plain JSON: dicts with string keys, lists, str, int, finite float, bool, None.
Non-finite floats become the strings "nan", "inf" and "-inf" (JSON has no NaN; see the schema);
control characters and bidi controls become visible escapes (``\\x1b``, ``\\u202e``); lone
surrogates become U+FFFD; long strings, long lists and deep nesting are cut with a note. Sanitizing
sanitized data returns it unchanged, so reports read back from disk can be sanitized again.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

MAX_TEXT = 20_000  # characters of one string in a report
MAX_ITEMS = 100_000  # entries of one list or dict
MAX_DEPTH = 32  # nesting of a report (its own structure needs 6 levels)
TEXT_CUT = " … [cut by jitgrade: {length} characters in all]"
TOO_DEEP = "[cut by jitgrade: nested too deeply]"
MAX_INT_BITS = 64  # larger integers become floats (JSON readers lose them, and str() refuses huge ones)
NONFINITE = {math.inf: "inf", -math.inf: "-inf"}  # and NaN: "nan"
POINT_KEYS = ("score", "max_score")  # numbers in every report, never text

# C0 controls but tab and newline, DEL, C1 controls, bidi controls, and the two XML 1.0 non-characters.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(value: str, max_text: int = MAX_TEXT, controls: bool = False) -> str:
    """A string without lone surrogates, at most max_text characters; control characters escaped
    visibly unless `controls` (the executed notebook keeps a traceback's colors, JSON escapes them)."""
    length = len(value)
    cleaned = _SURROGATE.sub("\ufffd", value[: max_text + 1])
    if not controls:
        cleaned = _UNSAFE.sub(_escape, cleaned.replace("\r\n", "\n"))
    if length > max_text or len(cleaned) > max_text:
        note = TEXT_CUT.format(length=length)
        cleaned = cleaned[: max(0, max_text - len(note))] + note
    return cleaned


def one_line(value: str) -> str:
    """text() for a single terminal line: newlines and tabs escaped too (a file name cannot fake a line)."""
    return text(value).replace("\n", "\\n").replace("\t", "\\t")


def number(value: float) -> float | str:
    """A finite float as is; NaN and infinities as the strings "nan", "inf", "-inf"."""
    if math.isfinite(value):
        return value
    return NONFINITE.get(value, "nan")


def _float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def data(value: Any, depth: int = MAX_DEPTH, max_text: int = MAX_TEXT, controls: bool = False) -> Any:
    """Plain JSON data for any value a report or notebook may hold (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return text(value, max_text, controls)
    if isinstance(value, int):
        return value if value.bit_length() <= MAX_INT_BITS else number(_float(value))
    if isinstance(value, float):
        return number(value)
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.size <= MAX_ITEMS else value.ravel()[:MAX_ITEMS].tolist()
    elif isinstance(value, np.generic):
        return data(value.item(), depth, max_text, controls)
    if isinstance(value, (dict, list, tuple)):
        if depth <= 0:
            return TOO_DEEP
        if isinstance(value, dict):
            items = list(value.items())[:MAX_ITEMS]
            return {text(str(k), max_text, controls): data(v, depth - 1, max_text, controls) for k, v in items}
        return [data(v, depth - 1, max_text, controls) for v in value[:MAX_ITEMS]]
    return text(str(value), max_text, controls)


def report(value: dict[str, Any]) -> dict[str, Any]:
    """A canonical report, sanitized; points that are not finite numbers count as 0 (points are never text)."""
    clean = data(value)
    rows = [row for key in ("tests", "problems") if isinstance(clean.get(key), list) for row in clean[key]]
    for holder in [clean, *rows]:
        for key in POINT_KEYS:
            if isinstance(holder, dict) and key in holder and not isinstance(holder[key], (int, float)):
                holder[key] = 0.0
    return clean
