"""A submission learns nothing it could turn into points: not the definition it is graded by, not the hidden
seed, not the hidden checks' details."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, solution_cells, write_notebook

from grader.checks.base import derive_seed
from grader.grading import new_seed, submission_seed


def jitgrade(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ), timeout=300)


ZEROS = ["import numpy as np"] + [
    f"def {name}(*args, **kwargs):\n    return np.zeros(1)"
    for name in ("softmax", "sigmoid", "sigmoid_grad", "softmax_cross_entropy", "mlp_forward", "mlp_loss",
                 "numerical_gradient")
]


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A student's repository: stubs, and an assignment folder of its own with tolerances that accept anything."""
    own = tmp_path / ".grading"
    own.mkdir()
    toml = (ROOT / "assignments" / "mlp" / "assignment.toml").read_text()
    toml = toml.replace("rtol = 1e-6", "rtol = 1e300").replace("atol = 1e-9", "atol = 1e300")
    (own / "assignment.toml").write_text(toml)
    return tmp_path


@pytest.mark.parametrize("declared", [".grading", "./.grading", ".grading/assignment.toml", "{abs}"])
def test_a_notebook_cannot_choose_the_definition_it_is_graded_by(repository: Path, declared: str) -> None:
    declared = declared.format(abs=repository / ".grading")
    notebook = write_notebook(repository / "mlp.ipynb", ZEROS, assignment=declared)
    run = jitgrade("check", str(notebook), cwd=repository)
    assert run.returncode == 2, run.stdout
    assert "may only name a bundled assignment" in run.stderr and "-a" in run.stderr, run.stderr


def test_the_course_assignment_given_with_a_wins_over_the_metadata(repository: Path) -> None:
    notebook = write_notebook(repository / "mlp.ipynb", ZEROS, assignment=".grading")
    run = jitgrade("check", str(notebook), "-a", "mlp", "--json", str(repository / "r.json"), cwd=repository)
    assert run.returncode == 1
    assert json.loads((repository / "r.json").read_text())["score"] == 0


def test_the_pytest_plugin_refuses_a_declared_path(repository: Path) -> None:
    notebook = write_notebook(repository / "mlp.ipynb", ZEROS, assignment=".grading")
    run = subprocess.run([sys.executable, "-m", "pytest", "--jitgrade", str(notebook), "-q", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, cwd=repository, timeout=300)
    assert run.returncode != 0
    assert "may only name a bundled assignment" in run.stdout + run.stderr


def test_derived_seeds_are_not_linear_in_the_hidden_seed() -> None:
    """crc32 (what seeds were derived with) satisfies f(a) ^ f(b) ^ f(c) == f(a ^ b ^ c) for inputs of one
    length, which let one observed value be inverted in minutes; the hash used now does not."""
    def f(value: int) -> int:
        return derive_seed(f"{value:020d}", "softmax.values_1d[hidden]")

    triples = [(new_seed(), new_seed(), new_seed()) for _ in range(50)]
    linear = sum(f(a) ^ f(b) ^ f(c) == f(a ^ b ^ c) for a, b, c in triples)
    assert linear <= 1


def test_hidden_cases_depend_on_the_submission_and_a_63_bit_seed() -> None:
    seeds = {new_seed() for _ in range(200)}
    assert max(seeds) >= 2**40  # not a 31-bit seed that a search could match
    run = new_seed()
    assert submission_seed(run, "ab" * 32) == submission_seed(run, "ab" * 32)  # reproducible from the report
    assert submission_seed(run, "ab" * 32) != submission_seed(run, "ac" * 32)  # a resubmission gets new inputs
    assert submission_seed(run, "ab" * 32) != submission_seed(run + 1, "ab" * 32)


def test_github_annotations_keep_hidden_details_hidden(tmp_path: Path) -> None:
    """A CI log is the student's: failed hidden checks are named, their messages and seeds are not."""
    cells = solution_cells(replace={"sigmoid": "import numpy as np\ndef sigmoid(x):\n    return np.tanh(x)"})
    notebook = write_notebook(tmp_path / "mlp.ipynb", cells)
    run = jitgrade("check", str(notebook), "-a", "mlp", "--annotations", "github", "--json", str(tmp_path / "r.json"),
                   cwd=tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())
    hidden = [t for t in report["tests"] if t.get("visibility") == "hidden" and t["status"] != "passed"]
    assert hidden
    annotations = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    shown = {t["output"] for t in report["tests"] if t.get("visibility") != "hidden"}
    specific = [t for t in hidden if t["output"] not in shown]  # generic texts (a gated property) may repeat
    assert specific
    for test in specific:
        assert test["output"] not in run.stdout
    for test in hidden:
        seed = test.get("details", {}).get("seed")
        assert seed is None or f"seed {seed}" not in run.stdout
    assert str(report["provenance"]["hidden_seed"]) not in "\n".join(annotations)



def test_a_huge_cell_costs_the_grader_no_more_than_a_scan(tmp_path: Path) -> None:
    """Parsing a 6 MB cell of list literals took the grader 3 GB (unconfined, in its own process): past the
    parse budget a cell is only scanned for its def/class lines, and its functions are still found."""
    import tracemalloc

    from grader import notebook as nb

    big = "BIG = [" + "1," * 3_000_000 + "]\ndef softmax(x):\n    return x\n"
    tracemalloc.start()
    found = nb.notebook_definitions([(0, big), (1, "def sigmoid(x):\n    return x\n")])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2**20, peak
    assert "softmax" in found[0].names and "sigmoid" in found[1].names
