"""Crash-safe file writing: a report is either absent or complete, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from grader.reports import sanitize


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else data  # lone surrogates become ?
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def dumps_json(report: dict[str, Any]) -> str:
    """The canonical JSON text of a report, sanitized (stable key order, UTF-8, trailing newline)."""
    return json.dumps(sanitize.report(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
