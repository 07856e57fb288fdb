"""A corpus of buggy student implementations, kept as data, with what the grader should say about each.

Each :class:`Bug` replaces some student functions of the master solution (``solution_cells(replace=...)``)
and states which problems must lose points (every other problem keeps full points) and what the
failing checks must say. ``tests/test_diagnosis_corpus.py`` grades every entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
    diagnosis_contains: check id (as in the report, e.g. 'mlp_loss.grad_W1[hidden]') -> a substring of
        the diagnosis that failing check must carry (taken from grader/checks/diagnosis.py MESSAGES).
    message_contains: check id -> a substring of the failing check's message (for checks without a
        diagnosis, such as no_mutation or restores_x).
    passes: check ids that must keep all their points although their problem loses points.
    other_diagnoses: further substrings allowed in diagnoses of checks not listed above; by default any
        diagnosis anywhere in the report must contain one of the expected substrings (no stray diagnosis).
    xfail: when set, the grader is known to get this bug wrong; the reason says how (strict xfail).
    """

    id: str
    replace: Mapping[str, str | Edit | tuple[Edit, ...]]
    loses: frozenset[str]
    diagnosis_contains: Mapping[str, str] = field(default_factory=dict)
    message_contains: Mapping[str, str] = field(default_factory=dict)
    passes: tuple[str, ...] = ()
    other_diagnoses: tuple[str, ...] = ()
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


def bug(id: str, replace: Mapping[str, str | Edit | tuple[Edit, ...]], loses: set[str] | frozenset[str],
        **kwargs: object) -> Bug:
    """A Bug with `loses` given as any set."""
    return Bug(id, dict(replace), frozenset(loses), **kwargs)  # type: ignore[arg-type]


def both(check_id: str, text: str) -> dict[str, str]:
    """The same expected substring for a randomized check's visible and hidden entries."""
    return {check_id: text, f"{check_id}[hidden]": text}
