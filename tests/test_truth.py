"""The reference's recorded answers (grader.truth): what an install without the reference solution self-checks with.

Students install jitgrade without `reference/` (a complete solution); their `jitgrade check` and in-notebook
checker replay the answers recorded from the reference on the visible cases (assignments/<name>/selfcheck.npz).
These tests hold the recording to its promise: replayed, the master and every example get the visible verdicts,
scores, messages and diagnoses the reference gives them, and an input never recorded is "checked by the grader
only", never a wrong verdict.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from grader import truth
from grader.assignment import EXPECTED, available, load
from grader.grading import Grader

STALE = (
    "{name}: the recorded expected values (assignments/{name}/selfcheck.npz) no longer give the reference's "
    "verdicts; re-record them: jitgrade assign {name} --out student_template"
)


# --------------------------------------------------------------------------- digests and the table format


def test_a_digest_tells_apart_what_a_check_could_pass() -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    base = truth.digest("reference.softmax", (x,), {}, {})
    variants = [
        (x.astype(np.float32),),  # dtype
        (x.reshape(3, 2),),  # shape
        (x + np.nextafter(0.0, 1.0),),  # one ulp somewhere
        (x, 1.0),  # an extra argument
        (x, 1),  # an int is not a float
        (x, True),  # nor a bool
    ]
    digests = {truth.digest("reference.softmax", args, {}, {}) for args in variants}
    assert base not in digests and len(digests) == len(variants)
    assert truth.digest("reference.sigmoid", (x,), {}, {}) != base  # another function
    assert truth.digest("reference.softmax", (np.asfortranarray(x),), {}, {}) == base  # memory layout is not a value
    assert truth.digest("f", ({"b": 1.0, "a": x},), {}, {}) == truth.digest("f", ({"a": x, "b": 1.0},), {}, {})
    with pytest.raises(truth.Unkeyable):
        truth.digest("f", (lambda v: v,), {}, {})


def test_a_table_gives_back_exactly_what_was_recorded(tmp_path: Path) -> None:
    table = truth.Table()
    values = {
        "loss": (0.1 + 0.2, {"W1": np.eye(3, dtype=np.float32), "b1": np.zeros(3)}),
        "scalars": [np.float64(np.pi), 3, True, None, "text", float("nan"), -0.0],
        "keys": {1: "one", ("a", 2): np.int64(7)},
    }
    for name, value in values.items():
        table.calls[name] = table.encode(value)
    path = tmp_path / EXPECTED
    table.save(path)
    first = path.read_bytes()
    table.save(path)
    assert path.read_bytes() == first, "the same answers must give the same bytes (a re-recording diffs clean)"
    back = truth.Table.load(path)
    loss, grads = back.decode(back.calls["loss"])
    assert loss == 0.1 + 0.2 and grads["W1"].dtype == np.float32 and np.array_equal(grads["W1"], np.eye(3))
    pi, three, yes, none, text, nan, zero = back.decode(back.calls["scalars"])
    assert type(pi) is np.float64 and pi == np.pi and (three, yes, none, text) == (3, True, None, "text")
    assert np.isnan(nan) and np.signbit(zero)
    assert back.decode(back.calls["keys"]) == {1: "one", ("a", 2): 7}
    grads["W1"][0, 0] = 5.0  # a check may modify what it is given: the next answer is unchanged
    assert back.decode(back.calls["loss"])[1]["W1"][0, 0] == 1.0


def test_a_table_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / EXPECTED
    np.savez(path, index=np.array([{"format": 1}], dtype=object))  # an object array needs pickle to load
    with pytest.raises(ValueError):
        truth.Table.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError):
        truth.Table.load(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.npy", b"\x93NUMPY garbage")
    with pytest.raises(ValueError):
        truth.Table.load(path)
    table = truth.Table()
    table.calls["x"] = table.encode(np.arange(4.0))
    table.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for forged in (b'[["<f8", [4], 8]]', b'[["|O", [1], 0]]', b'[["<f8", [-4], 0]]'):  # past the end, objects, < 0
        index = np.load(io.BytesIO(members["index.npy"])).tobytes().replace(b'[["<f8", [4], 0]]', forged)
        buffer = io.BytesIO()
        np.save(buffer, np.frombuffer(index, dtype=np.uint8))
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("index.npy", buffer.getvalue())
            archive.writestr("data.npy", members["data.npy"])
        with pytest.raises(ValueError, match="not a table"):
            truth.Table.load(path)


# --------------------------------------------------------------------------- recording and replaying calls


def test_replayed_calls_answer_as_the_reference_did_and_only_for_recorded_inputs() -> None:
    from reference import MLPSpec, init_params, loss_and_grads

    x = np.random.default_rng(0).standard_normal((4, 3))
    y = np.array([0, 1, 1, 0])
    params = dict(init_params(MLPSpec((3, 5, 2)), 1, bias_scale=0.1))
    table = truth.Table()
    with truth.recording(table):
        spec = truth.reference.MLPSpec((3, 5, 2), "relu", "mean", 0.1)
        loss, grads = truth.reference.loss_and_grads(x, y, params, spec)
        names = truth.bugs.GRADIENT_BUGS
    assert (loss, set(grads)) == (loss_and_grads(x, y, params, MLPSpec((3, 5, 2), "relu", "mean", 0.1))[0], set(params))
    with truth.replaying(table):
        spec = truth.reference.MLPSpec((3, 5, 2), "relu", "mean", 0.1)
        again, grads_again = truth.reference.loss_and_grads(x, y, params, spec)
        assert again == loss and all(np.array_equal(grads[k], grads_again[k]) for k in grads)
        assert names == truth.bugs.GRADIENT_BUGS
        with pytest.raises(truth.NotLocal, match="checked by the grader only"):
            truth.reference.loss_and_grads(x + 1e-9, y, params, spec)  # an input not recorded
        with pytest.raises(truth.NotLocal):
            truth.reference.loss_and_grads(x, y, params, truth.reference.MLPSpec((3, 5, 2), "tanh", "mean", 0.1))
        with pytest.raises(truth.NotLocal):
            list(truth.bugs.LOSS_BUGS)  # a constant not recorded: not an endless sequence of stand-ins
        with pytest.raises(truth.NotLocal):
            truth.reference.numerical_gradient(lambda t: 0.0, x)  # a function argument cannot be recorded


def test_without_the_reference_or_a_table_a_check_is_the_graders() -> None:
    from grader.checks.base import plan
    from grader.checks.runner import run_check

    assignment = load("mlp")
    planned = next(p for p in plan(assignment, include_hidden=False) if p.problem.name == "softmax")

    class Unused:
        def call(self, *args: Any, **kwargs: Any) -> Any:
            return np.zeros(3)

        def seed(self, value: int) -> None:
            pass

    with truth.replaying(truth.Table()):
        outcome = run_check(planned, Unused(), assignment, assignment.visible_seed, {})
    assert outcome.status == "skipped" and outcome.score == 0 and "grader only" in outcome.message


# --------------------------------------------------------------------------- the recorded tables of the assignments


def _verdicts(grader: Grader, paths: list[Path]) -> list[list[tuple[Any, ...]]]:
    return [
        [(o.id, o.status, round(o.score, 9), o.message, o.diagnosis) for o in grader.grade_file(p).result.outcomes]
        for p in paths
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
def test_replaying_the_recorded_table_gives_the_references_verdicts(name: str) -> None:
    assignment = load(name)
    paths = [assignment.master]
    if assignment.examples is not None:
        paths += [p for p in sorted(assignment.examples.iterdir()) if p.suffix == ".ipynb" or p.is_dir()]
    table = truth.Table.load(assignment.directory / EXPECTED)
    with Grader(assignment, include_hidden=False) as grader:
        expected = _verdicts(grader, paths)
        with truth.replaying(table):
            replayed = _verdicts(grader, paths)
    assert replayed == expected, STALE.format(name=name)
    assert all(status != "skipped" for status in (o[1] for o in expected[0])), "the master's checks all replay"


def test_recording_keeps_only_values_never_code(tmp_path: Path) -> None:
    table = truth.Table.load(Path(load("mlp").directory) / EXPECTED)
    trees = [*table.calls.values(), *table.constants.values()]
    text = repr(trees)
    assert "def " not in text and "lambda" not in text
    assert all(a.dtype.kind in "biuf" for a in table.arrays)


# --------------------------------------------------------------------------- a students' install, in this process


@pytest.fixture
def students_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a `pip install jitgrade` without the reference: truth.available() says no."""
    monkeypatch.setattr(truth, "available", lambda: False)


def test_a_students_check_runs_the_visible_cases_from_the_recording(
    students_install: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grader.cli import main

    assignment = load("mlp")
    report_path = tmp_path / "report.json"
    junit = tmp_path / "junit.xml"
    code = main(["check", str(assignment.master), "-a", "mlp", "--json", str(report_path), "--junit", str(junit)])
    report = json.loads(report_path.read_text())
    assert code == 0 and report["tests"], capsys.readouterr()
    assert all(t["visibility"] == "visible" for t in report["tests"]), "hidden cases need the reference"
    assert {t["outcome"] for t in report["tests"]} == {"passed"} and report["score"] == report["max_score"]
    assert report["provenance"]["hidden_seed"] is None


def test_a_students_check_names_the_grader_only_checks(
    students_install: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grader.cli import main

    course = tmp_path / "course"
    shutil.copytree(load("mlp").directory, course, ignore=shutil.ignore_patterns(EXPECTED, "examples"))
    code = main(["check", str(load("mlp").master), "-a", str(course), "--junit", str(tmp_path / "junit.xml")])
    out = capsys.readouterr().out
    assert code == 1 and "run only in your instructor's grading" in out, out
    skipped = ET.parse(tmp_path / "junit.xml").getroot().findall(".//skipped")
    assert skipped and all("checked by the grader only" in s.get("message", "") for s in skipped)
    assert all("cannot be read (it is not there)" in s.get("message", "") for s in skipped)
    (course / EXPECTED).write_bytes(b"not a zip")  # a damaged recording says so, without the host's path
    main(["check", str(load("mlp").master), "-a", str(course), "--junit", str(tmp_path / "junit.xml")])
    messages = {s.get("message", "") for s in ET.parse(tmp_path / "junit.xml").getroot().findall(".//skipped")}
    assert messages and all("cannot be read (" in m and str(tmp_path) not in m for m in messages), messages
    assert not any("it is not there" in m for m in messages), messages


def test_assign_keeps_the_student_files_when_the_recording_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox cannot start (no bubblewrap, a broken interpreter): one line says what was written and what not."""
    from grader import assign
    from grader.cli import main
    from grader.sandbox.zygote import ZygoteError

    def broken(assignment: Any) -> Path:
        raise ZygoteError("the sandbox did not start")

    monkeypatch.setattr(assign, "write_expected", broken)
    course = shutil.copytree(load("mlp-sigmoid").directory, tmp_path / "course")
    assert main(["assign", str(course), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "student files are written" in err and "the sandbox did not start" in err and "Traceback" not in err
    assert (tmp_path / "out" / load("mlp-sigmoid").template).is_file()


def test_a_students_install_refuses_to_grade_a_class(
    students_install: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grader.cli import main

    code = main(["grade", str(load("mlp").master), "-a", "mlp", "--out", str(tmp_path / "out")])
    assert code == 2 and "needs the reference solution" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_only_jitgrades_own_reference_counts_as_installed(tmp_path: Path) -> None:
    """A folder holding a `reference` package of its own (a submission's, say) does not make a students' install
    believe the reference is there: it would grade with the student's answers."""
    fake = tmp_path / "reference"
    fake.mkdir()
    (fake / "__init__.py").write_text("def softmax(x):\n    return x\n")
    code = (
        "import sys\n"
        "from grader import truth\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "print(truth.available())\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "False", run.stderr
    (tmp_path / "grader").mkdir()  # a folder dressed as a checkout needs jitgrade's project file too
    (tmp_path / "grader" / "__init__.py").write_text("")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "False", run.stderr
    assert truth.available(), "this checkout's reference, beside grader/, counts"


@pytest.mark.slow
def test_a_students_install_says_what_the_grader_says_of_every_known_bug(tmp_path: Path) -> None:
    """The bug corpus (tests/bugs/), checked with recorded answers only: each check's verdict, points and
    diagnosis are the grader's, or the check says it is the grader's; never another verdict or cause. The recording
    reaches causes no example submission shows (its every-answer-wrong passes), so nearly all are named."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bugs import conftest_helpers
    from bugs import mlp as mlp_bugs
    from bugs import mlp_sigmoid as sigmoid_bugs

    helpers = conftest_helpers()
    same = differ = 0
    for name, corpus in (("mlp", mlp_bugs.BUGS), ("mlp-sigmoid", sigmoid_bugs.BUGS)):
        assignment = load(name)
        table = truth.Table.load(assignment.directory / EXPECTED)
        master = helpers.solution_sources(name)
        with Grader(assignment, include_hidden=False) as grader:
            for bug in corpus:
                cells = helpers.solution_cells(name, bug.sources(master))
                path = helpers.write_notebook(tmp_path / f"{bug.id}.ipynb", cells, name)
                (full,) = _verdicts(grader, [path])
                with truth.replaying(table):
                    (replayed,) = _verdicts(grader, [path])
                wrong = [(f, r) for f, r in zip(full, replayed, strict=True) if f != r and r[1] != "skipped"]
                assert not wrong, f"{name}:{bug.id}: the students' install says otherwise: {wrong}"
                same += full == replayed
                differ += full != replayed
    assert same >= 0.9 * (same + differ), f"only {same} of {same + differ} bugs get the grader's whole verdict locally"


def test_jitgrade_assign_records_what_is_committed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`jitgrade assign` writes the recording next to assignment.toml; for a bundled assignment it is the committed
    one (the same calls and constants; values equal to the last bits BLAS may round differently on another CPU)."""
    from grader.cli import main

    course = shutil.copytree(load("mlp-sigmoid").directory, tmp_path / "course")
    (course / EXPECTED).unlink()
    assert main(["assign", str(course), "--out", str(tmp_path / "out")]) == 0
    assert str(course / EXPECTED) in capsys.readouterr().out.split()
    made, committed = truth.Table.load(course / EXPECTED), truth.Table.load(load("mlp-sigmoid").directory / EXPECTED)
    assert made.constants == committed.constants and made.calls.keys() == committed.calls.keys()
    assert [a.shape for a in made.arrays] == [a.shape for a in committed.arrays]
    for new, old in zip(made.arrays, committed.arrays, strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(
    ("installed", "counts"),
    [("the same file", True), ("another file", False), (None, False), ("a checkout", True)],
)
def test_a_reference_elsewhere_counts_only_as_jitgrade_references_own_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, installed: str | None, counts: bool
) -> None:
    """jitgrade and jitgrade-reference installed in two places (a --user install beside a system one) still grade;
    a `reference` from anywhere else does not."""
    import importlib.machinery
    import importlib.metadata
    import importlib.util

    found = tmp_path / "elsewhere" / "reference" / "__init__.py"
    if installed == "a checkout":
        (tmp_path / "elsewhere" / "grader").mkdir(parents=True)
        (tmp_path / "elsewhere" / "grader" / "__init__.py").write_text("")
        (tmp_path / "elsewhere" / "pyproject.toml").write_text('[project]\nname = "jitgrade"\n')
    spec = importlib.machinery.ModuleSpec("reference", None, origin=str(found))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)

    class Distribution:
        def locate_file(self, path: str) -> Path:
            return found if installed == "the same file" else tmp_path / "site-packages" / path

    def distribution(name: str) -> Distribution:
        assert name == truth.REFERENCE_DISTRIBUTION
        if installed in (None, "a checkout"):
            raise importlib.metadata.PackageNotFoundError(name)
        return Distribution()

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    assert truth.available.__wrapped__() is counts


def test_a_stand_in_bound_while_the_reference_looked_absent_still_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check modules bind stand-ins when imported (ref_softmax = reference.softmax); imported where the reference
    seemed absent (a students' install test ran first), they must still compute with it once it is there."""
    from reference import softmax

    x = np.array([[1.0, 2.0, 3.0]])
    with monkeypatch.context() as patched:
        patched.setattr(truth, "available", lambda: False)
        bound = truth.reference.softmax
        with pytest.raises(truth.NotLocal, match="outside a check"):
            bound(x)
    assert np.array_equal(bound(x), softmax(x))
    table = truth.Table()
    with truth.recording(table):
        bound(x)
    assert len(table.calls) == 1
