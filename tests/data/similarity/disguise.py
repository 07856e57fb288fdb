"""The usual disguises of copied Python code, and notebooks made from the template with a solution's code.

Each disguise is a function code -> code that keeps the program valid Python: renamed identifiers,
reformatting, comments and docstrings added or removed, top-level functions reordered, literals
changed, dead code inserted; ``combined`` applies all of them. Used by tests/test_similarity.py and
benchmarks/bench_similarity.py.
"""

from __future__ import annotations

import ast
import builtins
import copy
import io
import json
import random
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORDS = ("alpha", "beta", "tmp", "val", "res", "acc", "buf", "arr", "mat", "vec", "q", "w", "aux", "item", "foo",
         "bar", "thing", "stuff", "data", "obj")
# The functions the assignment asks for keep their names (the grader calls them by name), as do builtins and modules.
ASKED = {"softmax", "sigmoid", "sigmoid_grad", "softmax_cross_entropy", "mlp_forward", "mlp_loss", "numerical_gradient"}
KEPT = set(dir(builtins)) | {"np", "math", "self"} | ASKED


def _offsets(code: str) -> list[int]:
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _replace_tokens(code: str, change: Callable[[tokenize.TokenInfo, tokenize.TokenInfo | None], str | None]) -> str:
    """Replace tokens by change(token, previous significant token) where it returns a string."""
    offsets = _offsets(code)
    edits = []
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        new = change(tok, previous)
        if new is not None:
            edits.append((offsets[tok.start[0] - 1] + tok.start[1], offsets[tok.end[0] - 1] + tok.end[1], new))
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            previous = tok
    for start, end, new in reversed(edits):
        code = code[:start] + new + code[end:]
    return code


def _bound_names(code: str) -> tuple[set[str], set[str]]:
    """Names the code itself binds (functions, classes, parameters, variables) and attributes it assigns."""
    names: set[str] = set()
    attributes: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            attributes.add(node.attr)
    return names - KEPT, attributes


def rename(code: str, seed: int = 0) -> str:
    """Every name the code binds renamed consistently (library attributes such as np.exp are kept)."""
    rng = random.Random(seed)
    names, attributes = _bound_names(code)
    mapping = {n: f"{rng.choice(WORDS)}_{i}" for i, n in enumerate(sorted(names | attributes))}

    def change(tok: tokenize.TokenInfo, previous: tokenize.TokenInfo | None) -> str | None:
        if tok.type != tokenize.NAME:
            return None
        after_dot = previous is not None and previous.string == "."
        if tok.string in (attributes if after_dot else names):
            return mapping[tok.string]
        return None

    return _replace_tokens(code, change)


def reformat(code: str) -> str:
    """Laid out again: ast.unparse's spacing, parentheses and quotes, two-space indentation, blank lines moved."""
    text = ast.unparse(ast.parse(code))
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        lines.append("  " * depth + stripped)
        if stripped.startswith("return"):
            lines.append("")
    return "\n".join(lines) + "\n"


def _statements(code: str) -> list[ast.stmt]:
    """Every statement, nested ones included."""
    return [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.stmt)]


def comments(code: str) -> str:
    """Docstrings removed where there are some and added where there are none; a comment above most statements."""
    tree = ast.parse(code)
    lines = code.splitlines()
    drop: set[int] = set()
    add: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                drop.update(range(first.lineno, first.end_lineno + 1))
            else:
                indent = " " * first.col_offset
                add[first.lineno] = f'{indent}"""Computes {node.name} as required by the assignment."""'
    for i, node in enumerate(_statements(code)):
        if node.lineno not in drop and i % 3 != 2:
            add.setdefault(node.lineno, "")
            add[node.lineno] = f"{' ' * node.col_offset}# step {i}: see the lecture notes\n" + add[node.lineno]
    out = []
    for number, line in enumerate(lines, 1):
        if number in add:
            out.extend(part for part in add[number].split("\n") if part)
        if number not in drop:
            out.append(line)
    return "\n".join(out) + "\n"


def blocks(code: str) -> list[str]:
    """The top-level statements of the code, each with its decorators and the comments above it."""
    tree = ast.parse(code)
    lines = code.splitlines()
    starts = [min([n.lineno for n in getattr(node, "decorator_list", [])] + [node.lineno]) for node in tree.body]
    ends = [*starts[1:], len(lines) + 1]
    return ["\n".join(lines[s - 1 : e - 1]).strip("\n") + "\n" for s, e in zip(starts, ends, strict=True)]


def reorder(code: str, seed: int = 0) -> str:
    """The top-level statements in another order (imports and module constants stay first)."""
    parts = blocks(code)
    fixed = [p for p in parts if not p.lstrip().startswith(("def", "class", "@"))]
    moving = [p for p in parts if p not in fixed]
    rng = random.Random(seed)
    shuffled = moving[:]
    while len(moving) > 1 and shuffled == moving:
        rng.shuffle(shuffled)
    return "\n\n".join(fixed + shuffled)


def literals(code: str) -> str:
    """Every number changed (integers by one, floats written otherwise) and every string's quotes swapped."""

    def change(tok: tokenize.TokenInfo, previous: tokenize.TokenInfo | None) -> str | None:
        if tok.type == tokenize.NUMBER:
            value = ast.literal_eval(tok.string)
            return str(value + 1) if isinstance(value, int) else repr(float(value) * 1.5)
        if tok.type == tokenize.STRING and tok.string[0] in "'\"" and not tok.string.startswith(('"""', "'''")):
            body = tok.string[1:-1]
            quote = "'" if tok.string[0] == '"' else '"'
            return quote + body + quote if quote not in body else None
        return None

    return _replace_tokens(code, change)


def dead_code(code: str) -> str:
    """Statements that do nothing useful inserted into every function: an unused variable after
    every second statement and a never-taken branch."""
    inserts: dict[int, list[str]] = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.FunctionDef):
            for i, stmt in enumerate(node.body):
                indent = " " * stmt.col_offset
                if i == 0:
                    inserts.setdefault(stmt.end_lineno, []).append(
                        f"{indent}if False:\n{indent}    print('debugging', {i})")
                elif i % 2 == 1 and not isinstance(stmt, ast.Return):
                    inserts.setdefault(stmt.end_lineno, []).append(f"{indent}unused_{i} = [{i}] * {i + 1}")
    out = []
    for number, line in enumerate(code.splitlines(), 1):
        out.append(line)
        out.extend(inserts.get(number, []))
    return "\n".join(out) + "\n"


def combined(code: str, seed: int = 0) -> str:
    """Every disguise at once."""
    return reorder(comments(reformat(rename(literals(dead_code(code)), seed))), seed)


DISGUISES: dict[str, Callable[[str], str]] = {
    "renamed": rename,
    "reformatted": reformat,
    "commented": comments,
    "reordered": reorder,
    "literals": literals,
    "dead_code": dead_code,
    "combined": combined,
}


def _stub_function(source: str) -> str | None:
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            return node.name
    return None


def notebook(code: str, template: Path | dict[str, Any]) -> dict[str, Any]:
    """A student notebook made from the template: each solution cell holds the code's top-level
    statements up to the function it asks for, in the code's order (what is left goes in the last one
    filled); a solution cell that gets nothing keeps its stub."""
    nb = copy.deepcopy(template) if isinstance(template, dict) else json.loads(Path(template).read_text())
    cells = [c for c in nb["cells"] if c.get("metadata", {}).get("jitgrade", {}).get("solution")]
    asked = [_stub_function(_source(c)) for c in cells]
    filled: dict[int, list[str]] = {}
    pending: list[str] = []
    for part in blocks(code):
        pending.append(part)
        node = ast.parse(part).body[0]
        name = node.name if isinstance(node, ast.FunctionDef) else None
        where = next((i for i, a in enumerate(asked) if a == name and i not in filled), None)
        if where is not None:
            filled[where], pending = pending, []
    if pending:
        filled.setdefault(max(filled, default=len(cells) - 1), []).extend(pending)
    for i, parts in filled.items():
        cells[i]["source"] = "\n\n".join(parts)
    return nb


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def stub_notebook(template: Path, function: str, body: str) -> dict[str, Any]:
    """The template with one stub replaced by a few lines of body (the signature and docstring kept)."""
    nb = json.loads(Path(template).read_text())
    for cell in nb["cells"]:
        source = _source(cell)
        if cell["cell_type"] == "code" and _stub_function(source) == function:
            lines = [line for line in source.splitlines() if "NotImplementedError" not in line]
            cell["source"] = "\n".join(lines + ["    " + line for line in body.splitlines()]) + "\n"
    return nb
