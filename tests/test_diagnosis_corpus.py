"""Every buggy submission of the corpus (tests/bugs/) loses points exactly where it is wrong, and says why.

For each bug: the problems it breaks lose points, every other problem keeps all of them, the failing
checks carry the expected diagnosis (quoted from grader/checks/diagnosis.py MESSAGES), and no check
carries a diagnosis that names another mistake. Entries with ``xfail`` document grader defects.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bugs import Bug, conftest_helpers  # noqa: E402
from bugs import mlp as mlp_bugs  # noqa: E402
from bugs import mlp_sigmoid as sigmoid_bugs  # noqa: E402

helpers = conftest_helpers()
CORPUS: list[Bug] = [*mlp_bugs.BUGS, *sigmoid_bugs.BUGS]
FULL = 1e-9


def _param(bug: Bug) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=bug.xfail)] if bug.xfail else []
    return pytest.param(bug, id=f"{bug.assignment}:{bug.id}", marks=marks)


def test_corpus_ids_are_unique_and_name_known_checks() -> None:
    ids = [(b.assignment, b.id) for b in CORPUS]
    assert len(ids) == len(set(ids))
    for b in CORPUS:
        assert set(b.replace) <= set(helpers.FUNCTIONS), b.id
        named = {*b.diagnosis_contains, *b.message_contains, *b.passes, *b.fails, *b.not_diagnosed}
        assert not set(b.passes) & set(b.fails), b.id
        assert all(cid.split(".")[0] in helpers.FUNCTIONS for cid in named), b.id


def _failure(report: dict[str, Any], bug: Bug) -> str:
    """What the grader said, for assertion messages."""
    rows = [f"{t['id']}: {t['score']}/{t['max_score']} {t['outcome']}: {t['message'][:160]} | {t['diagnosis']}"
            for t in report["tests"] if t["score"] < t["max_score"] - FULL or t["diagnosis"]]
    return f"{bug.assignment}:{bug.id} lost {helpers.lost(report)}\n  " + "\n  ".join(rows)


@pytest.mark.parametrize("bug", [_param(b) for b in CORPUS])
def test_bug_loses_points_only_where_wrong_and_is_diagnosed(bug: Bug, grade: Any) -> None:
    master = helpers.solution_sources(bug.assignment)
    report = grade(helpers.solution_cells(bug.assignment, bug.sources(master)), bug.assignment)
    context = _failure(report, bug)
    assert report["error"] is None, context

    # points: lost in the broken problems, nowhere else
    assert set(helpers.lost(report)) == bug.loses, context
    tests = helpers.by_id(report)

    # the named checks: failing with the right diagnosis or message, or passing when listed in `passes`
    for cid in (*bug.diagnosis_contains, *bug.message_contains, *bug.passes, *bug.fails, *bug.not_diagnosed):
        assert cid in tests, f"no check {cid} in the report\n{context}"
    for cid in bug.passes:
        assert tests[cid]["score"] >= tests[cid]["max_score"] - FULL, f"{cid} should keep its points\n{context}"
    for cid in (*bug.diagnosis_contains, *bug.message_contains, *bug.fails):
        if cid not in bug.passes:
            assert tests[cid]["score"] < tests[cid]["max_score"] - FULL, f"{cid} should lose points\n{context}"
    for cid, expected in bug.diagnosis_contains.items():
        diagnosis = tests[cid]["diagnosis"] or ""
        for text in (expected,) if isinstance(expected, str) else expected:
            assert text in diagnosis, f"{cid}: diagnosis {diagnosis!r} should contain {text!r}\n{context}"
    for cid, text in bug.message_contains.items():
        assert text in tests[cid]["message"], f"{cid}: message should contain {text!r}\n{context}"
    for cid, text in bug.not_diagnosed.items():
        assert text not in (tests[cid]["diagnosis"] or ""), f"{cid}: wrong diagnosis {text!r}\n{context}"

    # no stray diagnosis: whatever a check diagnoses names one of this bug's mistakes
    allowed = bug.expected_diagnoses()
    for t in report["tests"]:
        if t["diagnosis"]:
            assert any(text in t["diagnosis"] for text in allowed), \
                f"{t['id']}: unexpected diagnosis {t['diagnosis']!r}\n{context}"
