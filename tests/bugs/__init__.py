"""A corpus of buggy student implementations, kept as data, with what the grader should say about each.

Each :class:`Bug` replaces some student functions of the master solution (``solution_cells(replace=...)``)
and states which problems must lose points (every other problem keeps full points) and what the
failing checks must say. ``tests/test_diagnosis_corpus.py`` grades every entry.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class Edit:
    """A student's change of the master solution of one function: replace `old` (found exactly once) by `new`."""

    old: str
    new: str

    def apply(self, source: str) -> str:
        """The edited source; the edit must match the master exactly once, so a changed master fails loudly."""
        count = source.count(self.old)
        if count != 1:
            raise AssertionError(f"edit target occurs {count} times in the master source: {self.old!r}")
        return source.replace(self.old, self.new)


@dataclass(frozen=True)
class Bug:
    """One buggy submission and the grade it must get.

    replace: function name -> its full student source, or one Edit (or a tuple of Edits) of the master's.
    loses: the problems that must lose points; every other problem must keep all of them.
    diagnosis_contains: check id (as in the report, e.g. 'mlp_loss.grad_W1[hidden]') -> a substring (or a
        tuple of substrings, all required) of the diagnosis that this failing check must carry, quoted from
        grader/checks/diagnosis.py MESSAGES.
    message_contains: check id -> a substring of the check's message (for checks without a diagnosis,
        such as no_mutation or restores_x, or for the note of a check that passes).
    passes: check ids that must keep all their points although their problem loses points. Every other
        check named in diagnosis_contains or message_contains must lose points.
    fails: further check ids that must lose points (whatever they say).
    not_diagnosed: check id -> a substring its diagnosis must NOT contain (a known wrong diagnosis).
    tolerated: substrings of wrong diagnoses the grader is known to give for this bug, accepted here so
        that the rest of the grade stays checked; a separate xfail entry shows each such defect.
    Any diagnosis anywhere in the report must contain one of the expected (or tolerated) substrings: no
    stray or contradictory diagnosis. Checks may also fail without a diagnosis.
    xfail: when set, the grader is known to get this bug wrong; the reason says how (strict xfail).
    """

    id: str
    replace: Mapping[str, str | Edit | tuple[Edit, ...]]
    loses: frozenset[str]
    diagnosis_contains: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    message_contains: Mapping[str, str] = field(default_factory=dict)
    passes: tuple[str, ...] = ()
    fails: tuple[str, ...] = ()
    not_diagnosed: Mapping[str, str] = field(default_factory=dict)
    tolerated: tuple[str, ...] = ()
    assignment: str = "mlp"
    xfail: str | None = None

    def sources(self, master: Mapping[str, str]) -> dict[str, str]:
        """The replaced functions' sources, edits applied to the master's."""
        out = {}
        for function, change in self.replace.items():
            if isinstance(change, str):
                out[function] = change
            else:
                source = master[function]
                for edit in (change,) if isinstance(change, Edit) else change:
                    source = edit.apply(source)
                out[function] = source
        return out

    def expected_diagnoses(self) -> set[str]:
        """Every substring some diagnosis of this bug is expected to contain."""
        out: set[str] = set(self.tolerated)
        for text in self.diagnosis_contains.values():
            out.update((text,) if isinstance(text, str) else text)
        return out


def bug(id: str, replace: Mapping[str, str | Edit | tuple[Edit, ...]], loses: set[str] | frozenset[str],
        **kwargs: object) -> Bug:
    """A Bug with `loses` given as any set."""
    return Bug(id, dict(replace), frozenset(loses), **kwargs)  # type: ignore[arg-type]


def both(*check_ids: str, text: str | tuple[str, ...]) -> dict[str, str | tuple[str, ...]]:
    """The same expected diagnosis for seeded checks' visible and hidden entries."""
    return {cid: text for c in check_ids for cid in (c, f"{c}[hidden]")}


def hidden_too(*check_ids: str) -> tuple[str, ...]:
    """Seeded checks' visible and hidden ids."""
    return tuple(cid for c in check_ids for cid in (c, f"{c}[hidden]"))


def conftest_helpers() -> ModuleType:
    """tests/conftest.py as a module of its own (solution_cells, by_id, lost...).

    Loaded by path rather than with ``from conftest import ...``: pytest drops a rootless ``conftest`` from
    sys.modules before importing the next one, so any other conftest.py under tests/ would shadow it.
    """
    name = "_jitgrade_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
