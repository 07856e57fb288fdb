"""Student notebooks: read and validate them with one-line errors, pick the cells to execute,
compare locked cells with the template, read what each cell defines (with ``ast``, never by running it),
and build the executed notebook for instructors.

Reading uses the json module and a structural check of nbformat 4 (nbformat's full
JSON-schema validation costs more than a second of imports, and a student waiting for
feedback should not pay it); size and nesting are bounded before parsing, so no file makes
the parser recurse without bound. Writing the executed notebook goes through nbformat, after
the sanitizer has cut what student code put there too deep, too long or not finite.
"""

from __future__ import annotations

import ast
import bisect
import copy
import hashlib
import itertools
import json
import operator
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 100  # nesting of a notebook's JSON (Jupyter's own structure needs about 10 levels)
TOO_LARGE = "{name} is {size:.0f} MiB; notebooks over {limit} MiB are not graded (clear the outputs and save again)"
TOO_DEEP = (
    "{name} cannot be graded: the notebook's JSON is nested {depth} levels deep (at most {limit}); "
    "clear the outputs and metadata that hold the nesting, or save the notebook again from Jupyter"
)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # 2 per opening bracket, 0 per closing one
SELF_CHECK_TAG = "jitgrade-selfcheck"
HIDDEN_TAG = "jitgrade-hidden"
LOCKED_KEY = "locked"
# A line a self-check cell may consist of: the import of the self-check helper, making a checker,
# or a check call (check("softmax"), grader.check("softmax"), check_all()).
_SELF_CHECK_LINE = re.compile(
    r"""^\s*(?:from\s+grader\.selfcheck\s+import\s+[\w\s,()]+|import\s+grader\.selfcheck(?:\s+as\s+\w+)?"""
    r"""|\w+\s*=\s*(?:grader\.selfcheck\.)?checker\(\s*['"][\w-]+['"]\s*\)"""
    r"""|(?:\w+\.)?check(?:_all)?\(\s*(?:['"][\w-]+['"])?\s*\))\s*(?:#.*)?$"""
)


class NotebookError(ValueError):
    """The file cannot be graded as a notebook; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class Notebook:
    """A parsed nbformat-4 notebook and the hash of the bytes it came from."""

    data: dict[str, Any]
    sha256: str
    name: str

    @property
    def cells(self) -> list[dict[str, Any]]:
        """All cells, in order."""
        return self.data["cells"]

    @property
    def assignment(self) -> str | None:
        """The assignment named in the notebook's metadata (written by ``jitgrade assign``)."""
        meta = self.data.get("metadata", {}).get("jitgrade", {})
        name = meta.get("assignment") if isinstance(meta, dict) else None
        return name if isinstance(name, str) else None

    def code_cells(self) -> list[tuple[int, str]]:
        """(index, source) of every code cell to execute when grading: self-check cells are left out."""
        return [(i, source(c)) for i, c in enumerate(self.cells) if c["cell_type"] == "code" and not is_self_check(c)]


def source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def tags(cell: dict[str, Any]) -> list[str]:
    """The cell's tags."""
    found = cell.get("metadata", {}).get("tags", [])
    return [t for t in found if isinstance(t, str)] if isinstance(found, list) else []


def is_self_check(cell: dict[str, Any]) -> bool:
    """A self-check cell: tagged so, or made only of self-check lines (students copy them around)."""
    if SELF_CHECK_TAG in tags(cell):
        return True
    lines = [line for line in source(cell).splitlines() if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and all(_SELF_CHECK_LINE.match(line) for line in lines)


def nesting(data: bytes) -> int:
    """How deeply JSON bytes nest arrays and objects (brackets inside strings do not count), in linear time."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS).translate(_DEPTH_STEP)
    # depth after k brackets = 2 * (openings so far) - k
    return max(map(operator.sub, itertools.accumulate(brackets), itertools.count(1)), default=0)


def loads(data: bytes, name: str) -> Notebook:
    """Parse and validate notebook bytes (name is only used in messages)."""
    if not data.strip():
        raise NotebookError(f"{name} is empty: expected a Jupyter notebook (.ipynb)")
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookError(TOO_LARGE.format(name=name, size=len(data) / 2**20, limit=MAX_NOTEBOOK_BYTES // 2**20))
    depth = nesting(data)
    if depth > MAX_JSON_DEPTH:
        raise NotebookError(TOO_DEEP.format(name=name, depth=depth, limit=MAX_JSON_DEPTH))
    try:
        nb = json.loads(data)
    except UnicodeDecodeError:
        raise NotebookError(f"{name} is not a notebook: it is not text (expected a .ipynb JSON file)") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{name} is not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno} "
            "(was it saved completely? re-download or re-save it from Jupyter)"
        ) from None
    if not isinstance(nb, dict) or "cells" not in nb and "worksheets" not in nb:
        raise NotebookError(f"{name} is JSON but not a Jupyter notebook (no 'cells')")
    version = nb.get("nbformat")
    if version != 4:
        raise NotebookError(
            f"{name} is an nbformat {version} notebook; only nbformat 4 is supported: "
            "open it in a current Jupyter and save it again"
        )
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotebookError(f"{name}: 'cells' must be a list")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"{name}: cell {i} is malformed (no valid cell_type)")
        src = cell.get("source", "")
        if not isinstance(src, str) and not (isinstance(src, list) and all(isinstance(s, str) for s in src)):
            raise NotebookError(f"{name}: cell {i} has a malformed source")
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookError(f"{name}: cell {i} has malformed metadata")
    if not isinstance(nb.get("metadata", {}), dict):
        raise NotebookError(f"{name}: malformed notebook metadata")
    return Notebook(nb, hashlib.sha256(data).hexdigest(), name)


def read(path: str | Path) -> Notebook:
    """Read and validate a notebook file."""
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path}: no such file")
    if path.is_dir():
        raise NotebookError(f"{path} is a folder, not a notebook")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(TOO_LARGE.format(name=path, size=size / 2**20, limit=MAX_NOTEBOOK_BYTES // 2**20))
    return loads(path.read_bytes(), str(path))


def cell_key(cell: dict[str, Any]) -> str | None:
    """The id of a locked cell, as written by ``jitgrade assign``."""
    meta = cell.get("metadata", {}).get("jitgrade", {})
    if isinstance(meta, dict) and meta.get(LOCKED_KEY) and isinstance(meta.get("id"), str):
        return meta["id"]
    return None


FOREIGN_SHARE = 0.2  # a notebook holding fewer than this share of the template's locked cells was not made from it


@dataclass(frozen=True)
class Tamper:
    """How a submission's locked cells compare with the template's, by cell id: edited, missing, moved out
    of order; or, for a notebook not made from the template at all, only that (from_template false)."""

    from_template: bool
    edited: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reordered: list[str] = field(default_factory=list)
    unit: str = "cell"  # what the lists name: locked cells of a notebook, or declared files of a .py submission


def tamper(notebook: Notebook, template: Notebook) -> Tamper:
    """Compare the submission's locked cells with the template's (Jupyter may drop a final newline)."""
    expected = {key: source(c).rstrip() for c in template.cells if (key := cell_key(c)) is not None}
    submitted: dict[str, str] = {}
    for cell in notebook.cells:
        key = cell_key(cell)
        if key in expected and key not in submitted:  # a copied cell counts once, where it first appears
            submitted[key] = source(cell).rstrip()
    if len(submitted) < FOREIGN_SHARE * len(expected):
        return Tamper(from_template=False)
    position = {key: i for i, key in enumerate(expected)}
    in_order = _in_order([position[key] for key in submitted])
    return Tamper(
        from_template=True,
        edited=[key for key, text in submitted.items() if text != expected[key]],
        missing=[key for key in expected if key not in submitted],
        reordered=[key for key in submitted if position[key] not in in_order],
    )


def _in_order(positions: list[int]) -> set[int]:
    """The positions of one longest increasing subsequence: the cells that kept their order (the others moved)."""
    tails: list[int] = []  # tails[k]: where the increasing run of length k+1 with the smallest last value ends
    parent = [-1] * len(positions)
    for i, value in enumerate(positions):
        k = bisect.bisect_left([positions[t] for t in tails], value)
        parent[i] = tails[k - 1] if k else -1
        tails[k : k + 1] = [i]
    kept, i = set(), tails[-1] if tails else -1
    while i >= 0:
        kept.add(positions[i])
        i = parent[i]
    return kept


def executed(notebook: Notebook, records: list[Any]) -> dict[str, Any]:
    """A copy of the notebook with the outputs and execution counts of the graded run."""
    nb = copy.deepcopy(notebook.data)
    by_index = {r.index: r for r in records}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        record = by_index.get(i)
        cell["outputs"] = list(record.outputs) if record is not None else []
        cell["execution_count"] = record.execution_count if record is not None else None
        if record is not None and record.status in ("timeout", "crashed", "not_run") and record.error:
            cell["outputs"].append({"output_type": "stream", "name": "stderr", "text": f"[jitgrade] {record.error}\n"})
    return nb


def dumps(data: dict[str, Any]) -> str:
    """A notebook dict as nbformat JSON text, never raising: sanitized (depth cut at MAX_JSON_DEPTH, so
    the file reads back; non-finite numbers as strings; control characters kept, JSON escapes them),
    then nbformat's writer when the result is a valid notebook, plain JSON if not."""
    import nbformat

    from grader.reports import sanitize

    clean = sanitize.data(data, depth=MAX_JSON_DEPTH - 1, max_text=MAX_NOTEBOOK_BYTES, controls=True)
    try:
        node = nbformat.from_dict(clean)
        nbformat.validate(node)
        return str(nbformat.writes(node))
    except Exception:  # noqa: BLE001 - any complaint of nbformat's about student-made outputs: write plain JSON
        return json.dumps(clean, indent=1, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------ what a cell defines

# IPython magics (%name, %%name) and shell escapes (!cmd): not Python. Not `!=` or `% b`, which start the
# continuation lines of black-formatted expressions: removing those would change what a replay computes.
_MAGIC_LINE = re.compile(r"^[ \t]*(?:%%?[A-Za-z_]|!(?!=)).*$", re.MULTILINE)
_TOP_LEVEL_DEF = re.compile(r"(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)")  # matched at a line's start
_SIMPLE_EXPRESSIONS = (
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Tuple,
    ast.List,
    ast.UnaryOp,
    ast.BinOp,
    ast.Load,
    ast.USub,
    ast.UAdd,
    ast.BitOr,
    ast.Slice,
)
FIRST_LINE = 60  # characters of a cell's first line that name it in messages
# Syntax of a newer Python than the one grading (students run newer ones at home): (line pattern, feature, version)
NEWER_SYNTAX = (
    (re.compile(r"^\s*(?:async\s+)?def\s+\w+\s*\["), "type parameters, as in def f[T](x)", (3, 12)),
    (re.compile(r"^\s*class\s+\w+\s*\["), "type parameters, as in class C[T]", (3, 12)),
    (re.compile(r"^\s*type\s+\w+\s*(?:\[.*\])?\s*="), "type aliases, as in type Vector = list[float]", (3, 12)),
    (re.compile(r"^\s*match\s+\S.*:\s*(?:#.*)?$"), "the match statement", (3, 10)),
    (re.compile(r"^\s*except\s*\*"), "exception groups, as in except* ValueError", (3, 11)),
)
NEWER_PYTHON = (
    "line {line} uses {feature}, new in Python {version}; notebooks are graded with Python {running}: write it without"
)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)


@dataclass(frozen=True)
class CellDefinitions:
    """What a cell's top level defines, read on the grader's side (never by running it).

    ``names`` maps each bound name (def, class, import) to the last line of its statement, so that a cell
    failing at line L is known to have defined only the names whose statements end before L. ``replay`` is
    the cell's definitions alone, runnable without its other statements (for a cell that ran out of time or
    memory), and ``replayed`` the def and class names it keeps; ``dropped`` are the def and class names left
    out of it because their decorators, default arguments, annotations or class bodies run code.
    """

    names: dict[str, int]
    first_line: str = ""  # how a reader finds the cell: its first line that is not blank, cut short
    replay: str | None = None
    replayed: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    newer_python: str | None = None  # for a cell that does not parse: syntax of a newer Python, said so

    def defined_from(self, line: int | None) -> list[str]:
        """Names the cell would have defined at or after `line` (all of them when the line is unknown)."""
        return [name for name, end in self.names.items() if line is None or end >= line]


def _simple(node: ast.AST | None) -> bool:
    """An expression that only looks names up (constants, names, attributes, subscripts, unions, tuples)."""
    return node is None or all(isinstance(n, _SIMPLE_EXPRESSIONS) for n in ast.walk(node))


def _replayable(node: ast.stmt) -> bool:
    """A def, class or import whose execution runs no code of the cell's own (so replaying it is cheap)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        annotations = [arg.annotation for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if arg]
        return all(map(_simple, [*node.decorator_list, *a.defaults, *a.kw_defaults, *annotations, node.returns]))
    if isinstance(node, ast.ClassDef):
        heads = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
        return all(map(_simple, heads)) and all(map(_declarative, node.body))
    return False


def _declarative(node: ast.stmt) -> bool:
    """A statement of a class body that runs no code: a replayable def, a docstring, pass, `name = <simple>`."""
    if isinstance(node, _DEFINITIONS):
        return _replayable(node)
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets) and _simple(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and _simple(node.annotation) and _simple(node.value)
    return isinstance(node, ast.Pass) or isinstance(node, ast.Expr) and _simple(node.value)


def _bound(node: ast.stmt) -> list[str]:
    """The names a top-level def, class or import binds."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).partition(".")[0] for a in node.names if a.name != "*"]
    return [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []


# Source the grader parses with `ast` per notebook (its own process, unconfined): a syntax tree takes some
# hundreds of bytes per byte of source (a 6 MB cell of list literals took 3 GB), so past this the grader
# only scans the `def`/`class` lines. Real notebooks hold a few tens of KiB of code.
MAX_PARSED_CHARS = 256 * 1024


def notebook_definitions(cells: Sequence[tuple[int, str]]) -> dict[int, CellDefinitions]:
    """cell_definitions of each (index, source), parsing cells in order while the notebook's parse budget lasts."""
    budget = MAX_PARSED_CHARS
    found = {}
    for index, source in cells:
        parse = len(source) <= budget
        budget -= len(source) if parse else 0
        found[index] = cell_definitions(source, parse)
    return found


def cell_definitions(source: str, parse: bool = True) -> CellDefinitions:
    """The names a cell's top level defines and its definitions-only replay; a cell that does not parse (a
    syntax error, syntax newer than this Python's, nesting past the parser's limits), or is not parsed (too
    large), falls back to its `def name(` and `class name` lines."""
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    first = first if len(first) <= FIRST_LINE else first[: FIRST_LINE - 1] + "…"
    at = None
    if parse:
        try:
            return _parsed_definitions(source, first)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # parser stack overflow: MemoryError
            at = getattr(exc, "lineno", None)
    lines = source.splitlines()
    names = {m.group(1): n for n, line in enumerate(lines, start=1) if (m := _TOP_LEVEL_DEF.match(line))}
    newer = newer_python(lines[at - 1], at) if at and at <= len(lines) else None
    return CellDefinitions(names, first, newer_python=newer)


def newer_python(line: str, number: int) -> str | None:
    """What a line that this Python cannot parse is, when it is syntax of a newer Python (else None)."""
    for pattern, feature, version in NEWER_SYNTAX:
        if sys.version_info < version and pattern.match(line):
            running = f"{sys.version_info.major}.{sys.version_info.minor}"
            return NEWER_PYTHON.format(
                line=number, feature=feature, version=".".join(map(str, version)), running=running
            )
    return None


def _parsed_definitions(source: str, first: str) -> CellDefinitions:
    try:
        tree = ast.parse(source)  # most cells have no magics: parsed as they are, nothing is dropped
    except SyntaxError:
        tree = ast.parse(_MAGIC_LINE.sub("", source))
    definitions = [node for node in tree.body if isinstance(node, _DEFINITIONS)]
    names = {name: node.end_lineno or node.lineno for node in definitions for name in _bound(node)}
    kept = [node for node in definitions if _replayable(node)]
    functions = [node for node in definitions if not isinstance(node, (ast.Import, ast.ImportFrom))]
    replayed = {id(node) for node in kept}
    return CellDefinitions(
        names,
        first,
        "\n".join(ast.unparse(node) for node in kept) if kept else None,
        tuple(name for node in functions if id(node) in replayed for name in _bound(node)),
        tuple(name for node in functions if id(node) not in replayed for name in _bound(node)),
    )
