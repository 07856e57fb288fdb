"""Where expected values come from: the reference, or what the reference answered when the instructor recorded it.

Checks never import ``reference`` themselves: they reach it through the stand-ins of this module (``reference``,
``bugs``, ``deep_bugs``, ``layers``). Where the reference is installed (instructors, Gradescope, CI of the course)
a stand-in calls it, and while :func:`recording` it also keeps each call's answer under a digest of its
arguments. Students install jitgrade without the reference (it is a complete solution): there a stand-in answers
from the assignment's recorded table (``selfcheck.npz``, written by ``jitgrade assign`` from the master and the
example submissions on the visible cases), and a call that was never recorded raises :class:`NotLocal`, which
makes that check "checked by the grader only". The table holds values on public inputs, never code.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import types
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TABLE_FORMAT = 2
REFERENCE_DISTRIBUTION = "jitgrade-reference"  # instructor/pyproject.toml (grader.sandbox.zygote hides its files)
INDEX = "index"  # the npz member holding the JSON index: calls, constants, and where each array lies in DATA
DATA = "data"  # the npz member holding every distinct array's bytes, one after the other (one member, no overhead)
NOT_RECORDED = (
    "checked by the grader only: this check needs the reference's answer for an input it was not recorded for "
    "({call}); jitgrade as students install it holds no reference solution, only the values recorded for the "
    "visible cases. Your instructor's grading runs it."
)
NO_TABLE = (
    "checked by the grader only: the reference solution is not installed and {path} (the visible cases' "
    "expected values, written by `jitgrade assign`) cannot be read ({why}). Your instructor's grading runs it."
)
REFERENCE_MISSING = (
    "`jitgrade {command}` needs the reference solution, which is not installed: jitgrade as students install it "
    "runs only the visible self-checks (`jitgrade check`). Instructors install the reference too: "
    "`pip install jitgrade ./instructor` from the course's copy of the jitgrade repository (or `pip install -e .` "
    "there)."
)


class NotLocal(Exception):
    """The reference's answer is not available here (students' install) for this input."""


class Unkeyable(Exception):
    """An argument has no stable digest (a function, an unknown object): its call cannot be recorded."""


@functools.cache
def available() -> bool:
    """Whether the reference solution is installed (instructors) rather than only recorded tables (students).

    Only jitgrade's own reference counts: the package beside ``grader`` (both in site-packages, or both in the
    checkout), the one in a jitgrade source tree (a test run of an installed jitgrade from its checkout), or the one
    the jitgrade-reference distribution installed; never a module of that name that a submission's folder puts
    first on sys.path."""
    spec = importlib.util.find_spec("reference")
    if spec is None or spec.origin is None:
        return False
    origin = Path(spec.origin).resolve()
    if origin.parent.parent == Path(__file__).resolve().parent.parent or _source_tree(origin.parent.parent):
        return True
    try:
        installed = importlib.metadata.distribution(REFERENCE_DISTRIBUTION).locate_file("reference/__init__.py")
    except importlib.metadata.PackageNotFoundError:
        return False
    return origin == Path(str(installed)).resolve()


def _source_tree(folder: Path) -> bool:
    """A checkout of jitgrade: its project file names the distribution and grader/ lies beside reference/."""
    project = folder / "pyproject.toml"
    try:
        named = 'name = "jitgrade"' in project.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return named and (folder / "grader" / "__init__.py").is_file()


# --------------------------------------------------------------------------- digests and encodings


def _feed(h: Any, value: Any, objects: Mapping[int, str]) -> None:
    if isinstance(value, Opaque):
        h.update(b"o" + value.key.encode())
    elif id(value) in objects:
        h.update(b"o" + objects[id(value)].encode())
    elif isinstance(value, (bool, np.bool_)):
        h.update(b"b1" if value else b"b0")
    elif isinstance(value, (int, np.integer)):
        h.update(b"i" + str(int(value)).encode() + b";")
    elif isinstance(value, (float, np.floating)):
        h.update(b"f" + float(value).hex().encode() + b";")
    elif isinstance(value, str):
        h.update(b"s" + str(len(value)).encode() + b":" + value.encode("utf-8", "surrogatepass"))
    elif value is None:
        h.update(b"n")
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        h.update(f"a{value.dtype.str}{value.shape}".encode() + np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        h.update(f"l{len(value)}".encode())
        for item in value:
            _feed(h, item, objects)
    elif isinstance(value, Mapping):
        keys = sorted(value, key=repr)
        h.update(f"d{len(keys)}".encode())
        for key in keys:
            _feed(h, key, objects)
            _feed(h, value[key], objects)
    else:
        raise Unkeyable(type(value).__name__)


def digest(path: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], objects: Mapping[int, str]) -> str:
    """A digest of one call: the reference function's path and every argument, bit for bit."""
    h = hashlib.blake2b(path.encode(), digest_size=16)
    _feed(h, (args, dict(kwargs)), objects)
    return h.hexdigest()


def _is_opaque(value: Any) -> bool:
    plain = (np.ndarray, np.generic, bool, int, float, str, tuple, list, Mapping, type(None))
    return not isinstance(value, plain)


@dataclass
class Table:
    """Recorded answers: call digest -> encoded result, constant path -> encoded value, and their arrays."""

    calls: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)
    distinct: dict[bytes, int] = field(default_factory=dict)  # an array's digest -> its place in arrays (stored once)
    objects: dict[int, str] = field(default_factory=dict)  # id(opaque result) -> its key, while recording
    kept: list[Any] = field(default_factory=list)  # those results, alive as long as their ids are keys

    def encode(self, value: Any, path: str = "") -> Any:
        """A JSON-able tree for a result or constant (arrays stored aside, functions by path)."""
        if isinstance(value, np.ndarray | np.generic):
            array = np.array(value)  # 0-d for a scalar; stored in C order (tobytes) whatever its layout
            if array.dtype.kind not in "biuf":
                raise Unkeyable(f"array of dtype {array.dtype}")
            seen = hashlib.blake2b(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).digest()
            if seen not in self.distinct:
                self.distinct[seen] = len(self.arrays)
                self.arrays.append(array)
            return {"a": self.distinct[seen], "scalar": isinstance(value, np.generic)}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return {"f": value.hex()}
        if isinstance(value, (tuple, list)):
            items = [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return {"t": items} if isinstance(value, tuple) else items
        if isinstance(value, Mapping):
            return {"d": [[self.encode(k), self.encode(v, f"{path}[{k!r}]")] for k, v in value.items()]}
        if callable(value):
            return {"fn": path}
        if id(value) in self.objects:
            return {"o": self.objects[id(value)]}
        raise Unkeyable(type(value).__name__)

    def decode(self, tree: Any) -> Any:
        """The value `encode` stored (fresh arrays each time: a check may modify what it gets)."""
        if isinstance(tree, list):
            return [self.decode(v) for v in tree]
        if not isinstance(tree, dict):
            return tree
        if "a" in tree:
            array = self.arrays[tree["a"]].copy()
            return array[()] if tree["scalar"] else array
        if "f" in tree:
            return float.fromhex(tree["f"])
        if "t" in tree:
            return tuple(self.decode(v) for v in tree["t"])
        if "d" in tree:
            return {self.decode(k): self.decode(v) for k, v in tree["d"]}
        if "fn" in tree:
            return Recorded(tree["fn"])
        return Opaque(tree["o"])

    def save(self, path: Path) -> None:
        """Write the table as an npz of two uint8 members, a JSON index and the arrays' bytes: no pickles, readable
        with allow_pickle=False, and the same bytes for the same answers (fixed member dates), so that a re-recorded
        table diffs as unchanged."""
        layout, offset = [], 0
        for array in self.arrays:
            layout.append([array.dtype.str, list(array.shape), offset])
            offset += array.nbytes
        index = {"format": TABLE_FORMAT, "calls": self.calls, "constants": self.constants, "arrays": layout}
        members = {
            INDEX: np.frombuffer(json.dumps(index, sort_keys=True).encode(), dtype=np.uint8),
            DATA: np.frombuffer(b"".join(a.tobytes() for a in self.arrays), dtype=np.uint8),
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, array in members.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w") as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        partial = path.with_name(f".{path.name}.partial")  # readers (other processes) never see half a table
        partial.write_bytes(buffer.getvalue())
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> Table:
        """Read a saved table; ValueError when it is not one (or not of this format)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                index = json.loads(data[INDEX].tobytes())
                if index.get("format") != TABLE_FORMAT:
                    raise ValueError(f"format {index.get('format')}, while this jitgrade reads {TABLE_FORMAT}")
                raw = data[DATA].tobytes()
                arrays = [_array(raw, *entry) for entry in index["arrays"]]
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path} is not a table of recorded expected values: {exc}") from exc
        return cls(index["calls"], index["constants"], arrays)


def _array(raw: bytes, dtype: str, shape: list[int], offset: int) -> np.ndarray:
    """One stored array, its place in the data checked (a numeric dtype, within the bytes stored)."""
    kind = np.dtype(dtype)
    if kind.kind not in "biuf" or offset < 0 or any(n < 0 for n in shape):
        raise ValueError(f"an array of dtype {dtype} and shape {shape} at {offset}")
    count = int(np.prod(shape, dtype=np.int64))
    if offset + count * kind.itemsize > len(raw):
        raise ValueError(f"an array of {count} {dtype} at {offset} beyond the {len(raw)} bytes stored")
    return np.frombuffer(raw, dtype=kind, count=count, offset=offset).reshape(shape)


# --------------------------------------------------------------------------- modes


@dataclass(frozen=True)
class _Mode:
    recording: Table | None = None  # reference installed and answers kept here
    replaying: Table | None = None  # reference absent: answers come from here
    missing: str = ""  # reference absent and no table: why every call is NotLocal
    missed: list[str] = field(default_factory=list)  # every NotLocal raised in this mode (see unanswered)


_IDLE = _Mode()
_MODE: contextvars.ContextVar[_Mode | None] = contextvars.ContextVar("truth_mode", default=None)


def _current() -> _Mode:
    return _MODE.get() or _IDLE


@contextlib.contextmanager
def _mode(mode: _Mode) -> Iterator[None]:
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def recording_now() -> bool:
    """Whether the reference's answers are being recorded (checks may then ask for more than they need)."""
    return _current().recording is not None


@contextlib.contextmanager
def unanswered() -> Iterator[None]:
    """Around a call of student code that may call back into the grader (a checker evaluating the grader's f):
    an answer missing inside it is raised here as NotLocal, even when the error it gave the student's code was
    caught there, or turned into a failure of the call."""
    missed = _current().missed
    before = len(missed)
    try:
        yield
    except Exception:
        if len(missed) > before:
            raise NotLocal(missed[before]) from None
        raise
    if len(missed) > before:
        raise NotLocal(missed[before])


@contextlib.contextmanager
def recording(table: Table) -> Iterator[Table]:
    """Keep every answer of the reference given inside this block in `table` (instructor side)."""
    with _mode(_Mode(recording=table)):
        yield table


@contextlib.contextmanager
def replaying(table: Table) -> Iterator[None]:
    """Answer from `table` instead of the reference inside this block (what a student install does)."""
    with _mode(_Mode(replaying=table)):
        yield


@contextlib.contextmanager
def answers_for(table_path: Path) -> Iterator[None]:
    """The checks' source of truth for one assignment: the reference when installed (recording if asked),
    else the assignment's recorded table, else nothing (every check that needs an answer is the grader's)."""
    if _current().recording is not None or available():
        yield
        return
    try:
        table = Table.load(table_path)
    except ValueError as exc:  # missing too (Table.load says which)
        with _mode(_Mode(missing=NO_TABLE.format(path=table_path.name, why=_reason(exc)))):
            yield
        return
    with replaying(table):
        yield


def _reason(exc: ValueError) -> str:
    """Why a table was not read, without the host path the message starts with (students see it)."""
    cause = exc.__cause__
    if isinstance(cause, FileNotFoundError):
        return "it is not there"
    return str(cause or exc).split(": ", 1)[-1][:200]


# --------------------------------------------------------------------------- stand-ins


def _wrap(value: Any, path: str) -> Any:
    """A reference object as checks see it: functions traced, modules and containers of functions walked."""
    if isinstance(value, types.ModuleType):
        return Source(path, value)
    if callable(value):
        return Traced(path, value)
    if isinstance(value, Mapping) and any(callable(v) or isinstance(v, Mapping) for v in value.values()):
        return {k: _wrap(v, f"{path}[{k!r}]") for k, v in value.items()}
    return value


class Source:
    """A module of the reference (imported when first used), or its recorded stand-in."""

    def __init__(self, path: str, module: types.ModuleType | None = None) -> None:
        self._path = path
        self._module = module

    def __getattr__(self, name: str) -> Any:
        path = f"{self._path}.{name}"
        mode = _current()
        if mode.replaying is not None or mode.missing or not available():
            return getattr(Recorded(self._path), name)
        if self._module is None:
            self._module = importlib.import_module(self._path)
        value = getattr(self._module, name)
        recording = mode.recording
        if (
            recording is not None
            and path not in recording.constants
            and not isinstance(value, types.ModuleType)
            and not callable(value)
        ):
            recording.constants[path] = recording.encode(value, path)
        return _wrap(value, path)

    def __repr__(self) -> str:
        return f"<reference stand-in {self._path}>"


class Traced:
    """A reference function: called for real, its answer kept while recording."""

    def __init__(self, path: str, func: Callable[..., Any]) -> None:
        self.path = path
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        mode = _current()
        if mode.replaying is not None or mode.missing:
            return Recorded(self.path)(*args, **kwargs)
        result = self.func(*args, **kwargs)
        table = mode.recording
        if table is not None:
            with contextlib.suppress(Unkeyable):
                key = digest(self.path, args, kwargs, table.objects)
                if _is_opaque(result):  # e.g. an MLPSpec: later calls name it by the call that made it
                    table.objects[id(result)] = key
                    table.kept.append(result)
                if key not in table.calls:
                    table.calls[key] = table.encode(result, self.path)
        return result


class Recorded:
    """A reference name where the reference is absent: constants and answers come from the recorded table.

    Bound when a module was imported (``ref_softmax = reference.softmax``), it is called later: a call outside a
    replay, where the reference is installed after all, goes to the reference itself."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        path = f"{self.path}.{name}"
        table = _current().replaying
        if table is not None and path in table.constants:
            return table.decode(table.constants[path])
        return Recorded(path)

    def __getitem__(self, key: Any) -> Any:
        return Recorded(f"{self.path}[{key!r}]")

    def __iter__(self) -> Iterator[Any]:
        raise self._unanswered(_current(), self.path.removeprefix("reference."))

    @staticmethod
    def _unanswered(mode: _Mode, call: str) -> NotLocal:
        """Why there is no answer here (no table at all, or this input not recorded), remembered for unanswered()."""
        why = mode.missing or NOT_RECORDED.format(call=call)
        if mode is not _IDLE:
            mode.missed.append(why)
        return NotLocal(why)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        mode = _current()
        if mode.replaying is None and not mode.missing:
            if not available() or "[" in self.path:
                raise NotLocal(f"{self.path} used outside a check, where the reference is not installed")
            module, _, name = self.path.rpartition(".")
            return Traced(self.path, getattr(importlib.import_module(module), name))(*args, **kwargs)
        table = mode.replaying
        try:
            key = digest(self.path, args, kwargs, {})
        except Unkeyable as exc:
            raise self._unanswered(mode, f"{self.path} of a {exc}") from None
        if table is not None and key in table.calls:
            return table.decode(table.calls[key])
        raise self._unanswered(mode, self.path.removeprefix("reference."))


class Opaque:
    """A recorded object of the reference (e.g. an MLPSpec): usable only as an argument of later recorded calls."""

    def __init__(self, key: str) -> None:
        self.key = key


reference = Source("reference")
bugs = Source("reference.bugs")
deep_bugs = Source("reference.deep_bugs")
layers = Source("reference.layers")
