"""Assignments that accept a notebook or .py files (``[submission] format = ["notebook", "python"]``): the reader
is chosen per submission by what was handed in, in `check`, a mixed class's `grade`, the batch tasks, the
similarity extractor and the Gradescope bundle; `jitgrade assign` makes the .py starter from the master notebook.
tests/data/either (NumPy) exercises the mechanism everywhere; eecs498-two-layer (PyTorch) where torch is."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import FAST, ROOT

from grader import assign, pyfiles
from grader.assignment import Assignment, load
from grader.cli import main
from grader.grading import Grader
from grader.pyfiles import PythonSubmission
from grader.sandbox.zygote import Zygote
from grader.submissions import discover, read_submission

DEMO = Path(__file__).resolve().parent / "data" / "either"
FILE = "ei_activations.py"
EECS = ROOT / "assignments" / "eecs498-two-layer"
HELPER_IMPORT = "from ei_course import row_max"


@pytest.fixture(scope="module")
def demo() -> Assignment:
    return load(DEMO)


@pytest.fixture(scope="module")
def grader(demo: Assignment, zygote: Zygote) -> Grader:
    return Grader(demo, FAST, 7, zygote=zygote)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `jitgrade assign` writes for the demo: the student notebook and the starter folder."""
    out = tmp_path_factory.mktemp("template")
    assign.write(DEMO / "solution.ipynb", out)
    return out


def master_module(master: Path) -> str:
    """The master notebook's student code (imports and solutions, regions kept: they are comments) as one file."""
    return assign.module_source(nbformat.read(master, as_version=4).cells)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def report(grader: Grader, path: Path) -> dict[str, Any]:
    return grader.grade_file(path).result.to_dict()


def checks(rep: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(t["name"], t["status"], t["score"]) for t in rep["tests"]]


# --------------------------------------------------------------------------- the format and the starter


@pytest.mark.parametrize(
    ("submission", "message"),
    [
        ('format = ["notebook", "notebook"]', "format must be one of"),
        ("format = []", "format must be one of"),
        ('format = ["notebook", "pyhton"]', "format must be one of"),
        ('format = ["notebook", "python"]\nfiles = ["a.py", "b.py"]', "needs a master notebook"),
    ],
)
def test_a_format_that_cannot_work_is_an_error_naming_the_toml(tmp_path: Path, submission: str, message: str) -> None:
    course = shutil.copytree(DEMO, tmp_path / "course")
    toml = course / "assignment.toml"
    text = toml.read_text().replace('format = ["notebook", "python"]\nfiles = ["ei_activations.py"]', submission)
    toml.write_text(text)
    with pytest.raises(pyfiles.PyFilesError, match=message) as raised:
        pyfiles.formats(load(course))
    assert str(toml) in str(raised.value)


def test_a_folder_master_cannot_accept_notebooks(tmp_path: Path) -> None:
    course = shutil.copytree(DEMO, tmp_path / "course")
    toml = course / "assignment.toml"
    toml.write_text(toml.read_text().replace('master = "solution.ipynb"', 'master = "solution"'))
    with pytest.raises(pyfiles.PyFilesError, match=r"needs a master notebook \(master = \"....ipynb\", got 'solution'"):
        pyfiles.formats(load(course))


def test_assign_writes_the_notebook_and_the_py_starter_made_from_its_student_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assign", str(DEMO), "--out", str(tmp_path), "--no-expected"]) == 0
    starter = tmp_path / "either-demo"
    assert capsys.readouterr().out.split() == [str(tmp_path / "either-demo.ipynb"), str(starter)]
    assert sorted(p.name for p in starter.iterdir()) == ["ei_activations.py", "ei_course.py"]
    text = (starter / FILE).read_text()
    assert text.count(assign.STUB) == 2 and "import numpy as np\n" in text
    assert "def softmax(x):" in text and "def sigmoid(x):" in text
    for absent in ("SOLUTION", "np.exp", "HIDDEN", "instructor", "INSTRUCTOR_ONLY", "check(", "checker", "print("):
        assert absent not in text, absent
    compile(text, FILE, "exec")
    # one source of truth: the starter is the student notebook's code, stubbed the same way
    student = nbformat.read(tmp_path / "either-demo.ipynb", as_version=4)
    assert text.endswith(assign.module_source(student.cells))
    assert text.endswith(assign.starter_source(master_module(DEMO / "solution.ipynb")))


def test_the_bundled_two_layer_templates_are_what_assign_makes_today(tmp_path: Path) -> None:
    assert main(["assign", str(EECS), "--out", str(tmp_path), "--no-expected"]) == 0
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert made == [
        "eecs498-two-layer.ipynb",
        "eecs498-two-layer/linear_classifier.py",
        "eecs498-two-layer/two_layer_net.py",
    ]
    for name in made:
        assert (tmp_path / name).read_text() == (ROOT / "student_template" / name).read_text(), name
    assert (tmp_path / "eecs498-two-layer" / "linear_classifier.py").read_text() == (
        EECS / "helpers" / "linear_classifier.py"
    ).read_text()


# --------------------------------------------------------------------------- one submission, either reader


def test_the_master_as_a_notebook_and_as_a_py_file_scores_the_same_on_the_same_checks(
    grader: Grader, tmp_path: Path
) -> None:
    as_notebook = report(grader, DEMO / "solution.ipynb")
    as_file = report(grader, write(tmp_path / FILE, master_module(DEMO / "solution.ipynb")))
    assert as_notebook["score"] == as_file["score"] == as_file["max_score"] == 15
    assert checks(as_notebook) == checks(as_file) and len(checks(as_file)) == 20
    assert as_file["root_causes"] == [] and as_file["execution"]["events"] == []


def test_the_py_starter_scores_zero_and_each_check_says_to_write_the_function(grader: Grader, made: Path) -> None:
    rep = report(grader, made / "either-demo" / FILE)
    assert rep["score"] == 0 and rep["error"] is None and rep["root_causes"] == []
    assert all("still raises NotImplementedError" in t["message"] for t in rep["tests"])
    assert rep["tamper"]["missing"] == []  # .py tamper notes, as pyfiles gives them


def test_a_py_file_imports_the_course_helper_served_to_it(grader: Grader, tmp_path: Path) -> None:
    text = (
        master_module(DEMO / "solution.ipynb")
        .replace("import numpy as np", f"import numpy as np\n{HELPER_IMPORT}")
        .replace("np.max(x, axis=-1, keepdims=True)", "row_max(x)")
    )
    rep = report(grader, write(tmp_path / "ivy" / FILE, text))
    assert rep["score"] == 15 and rep["root_causes"] == []
    (cause,) = report(grader, write(tmp_path / "jo" / FILE, text.replace("ei_course", "ei_kurs")))["root_causes"]
    assert cause["message"].startswith("ei_activations.py failed: ModuleNotFoundError")


def test_a_folder_holding_the_files_and_a_notebook_is_graded_from_the_files_and_says_so(
    grader: Grader, made: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "kim"
    write(folder / FILE, master_module(DEMO / "solution.ipynb"))
    shutil.copy(made / "either-demo.ipynb", folder / "either-demo.ipynb")  # the untouched student notebook
    rep = report(grader, folder)
    assert rep["score"] == 15
    (note,) = rep["execution"]["events"]
    assert note.startswith("either-demo.ipynb was not graded: a submission holding the assignment's .py files")
    assert "hand in the notebook alone" in note


def test_a_folder_holding_only_the_notebook_is_graded_as_the_notebook(demo: Assignment, tmp_path: Path) -> None:
    folder = tmp_path / "submission"
    shutil.copy(DEMO / "solution.ipynb", write(folder / "notes.txt", "mine").parent / "hw.ipynb")
    read = read_submission(folder, demo)
    assert not isinstance(read, PythonSubmission) and read.name.endswith("hw.ipynb")
    assert isinstance(read_submission(DEMO / "solution.ipynb", demo), type(read))
    shutil.copy(DEMO / "solution.ipynb", folder / "other.ipynb")
    with pytest.raises(ValueError, match=r"several notebooks in the submission folder \(hw.ipynb, other.ipynb\)"):
        read_submission(folder, demo)


def test_a_zip_holding_neither_says_to_hand_in_the_files_or_the_notebook(grader: Grader, tmp_path: Path) -> None:
    archive = tmp_path / "lee.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("lee/notes.py", "x = 1\n")
    rep = report(grader, archive)
    assert rep["error"] == (
        "lee.zip holds none of the files this assignment expects (ei_activations.py); hand in those .py files, "
        "or the notebook (.ipynb) alone"
    )


# --------------------------------------------------------------------------- a mixed class


def mixed_class(root: Path, made: Path) -> Path:
    """A class of both kinds: notebooks, a folder with a notebook, .py files, a Canvas-named .py, a zip."""
    module = master_module(DEMO / "solution.ipynb")
    course = root / "class"
    shutil.copy(DEMO / "solution.ipynb", write(course / "ann" / "readme.txt", "").parent / "either-demo.ipynb")
    shutil.copy(DEMO / "solution.ipynb", course / "bea.ipynb")
    write(course / "cal" / FILE, module)
    write(course / f"dee_123_456_{FILE}", module)
    with zipfile.ZipFile(course / "eve.zip", "w") as zf:
        zf.writestr(f"eve-hw/{FILE}", module)
    shutil.copy(made / "either-demo" / FILE, write(course / "fay" / "notes.txt", "").parent)  # the starter, untouched
    write(course / "gus.py", module)  # not the file's name: a .py file is graded under its own name
    write(course / "hal.ipynb" / FILE, module)  # a folder named like a notebook: its task says .py files, not its name
    return course


def test_a_mixed_class_is_discovered_each_by_what_was_handed_in(made: Path, tmp_path: Path) -> None:
    found = discover(
        [mixed_class(tmp_path, made)], workdir=tmp_path, preferred="either-demo.ipynb", python=(FILE,), notebooks=True
    )
    kinds = {s.student: (s.python, s.path.name if s.path else None) for s in found}
    assert kinds == {
        "ann": (False, "either-demo.ipynb"),
        "bea": (False, "bea.ipynb"),
        "cal": (True, "cal"),
        "dee": (True, "dee"),
        "eve": (True, "eve.zip"),
        "fay": (True, "fay"),
        "gus": (True, "gus.py"),
        "hal": (True, "hal.ipynb"),
    }
    only_py = {s.student for s in discover([tmp_path / "class"], workdir=tmp_path, python=(FILE,)) if s.python}
    # a .py assignment's rule: every folder and file is .py files, bea.ipynb is no submission
    assert only_py == {"ann", "cal", "dee", "eve", "fay", "gus", "hal"}


def test_a_mixed_class_is_graded_in_one_batch(made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    course = mixed_class(tmp_path, made)
    out = tmp_path / "out"
    args = ["grade", str(course), "-a", str(DEMO), "--out", str(out), "--seed", "5", "--jobs", "2", "--no-feedback"]
    assert main([*args, "--isolation", "process"]) == 0
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO((out / "gradebook.csv").read_text()))}
    assert {s: float(r["score"]) for s, r in rows.items()} == {
        "ann": 15,
        "bea": 15,
        "cal": 15,
        "dee": 15,
        "eve": 15,
        "fay": 0,
        "gus": 0,
        "hal": 15,
    }
    assert rows["gus"]["error"].startswith("gus.py holds none of the files this assignment expects (ei_activations.py)")
    assert rows["fay"]["error"] == ""
    reports = {s: json.loads((out / s / "report.json").read_text()) for s in rows}
    assert checks(reports["ann"]) == checks(reports["cal"])  # the same checks, whichever the reader
    assert (out / "ann" / "executed.ipynb").is_file() and (out / "cal" / "executed.ipynb").is_file()
    assert reports["eve"]["provenance"]["notebook_sha256"] == reports["cal"]["provenance"]["notebook_sha256"]
    capsys.readouterr()
    assert main([*args, "--isolation", "process"]) == 0  # a rerun finds every report up to date, of both kinds
    assert "8 submissions, 7 already graded, 1 to grade" in capsys.readouterr().err  # gus's has no report to keep


# --------------------------------------------------------------------------- similarity and Gradescope


def test_similarity_compares_each_submission_in_its_own_form_template_left_out(demo: Assignment, made: Path) -> None:
    from grader.similarity import extract

    template = extract.template_of(demo)
    assert template[FILE] == (made / "either-demo" / FILE).read_text()
    assert extract.pieces(made / "either-demo" / FILE, demo) == []  # the untouched starter: nothing of the student's
    assert extract.pieces(made / "either-demo.ipynb", demo) == []
    (piece,) = extract.pieces_of(
        FILE, pyfiles.pack({FILE: master_module(DEMO / "solution.ipynb").encode()}), template, packed=True
    )
    assert "np.exp" in piece.code and piece.boilerplate  # the signatures and docstrings are the template's


def test_the_gradescope_bundle_grades_the_upload_folder_and_ships_the_starter(demo: Assignment, made: Path) -> None:
    from grader.reports import gradescope

    with zipfile.ZipFile(io.BytesIO(gradescope.bundle(demo))) as zf:
        script = zf.read("run_autograder").decode()
        names = zf.namelist()
    assert 'SUBMISSION="$ROOT/submission"\n"$JITGRADE" check "$SUBMISSION"' in script
    assert "or the notebook when the upload holds none of them" in script
    assert "jitgrade/assignments/either/helpers/ei_course.py" in names
    assert not any("solution" in n for n in names)


# --------------------------------------------------------------------------- eecs498-two-layer (PyTorch)


@pytest.fixture(scope="module")
def eecs498(zygote: Zygote) -> Grader:
    pytest.importorskip("torch")
    limits = dataclasses.replace(FAST, cell_timeout=60.0, notebook_timeout=120.0)  # the test zygote loads torch late
    return Grader(load(EECS), limits, 3, zygote=zygote)


def test_two_layer_master_as_notebook_and_as_two_layer_net_py_score_100_on_the_same_checks(
    eecs498: Grader, tmp_path: Path
) -> None:
    as_notebook = report(eecs498, EECS / "solution.ipynb")
    as_file = report(eecs498, write(tmp_path / "two_layer_net.py", master_module(EECS / "solution.ipynb")))
    assert as_notebook["score"] == as_file["score"] == 100
    assert checks(as_notebook) == checks(as_file)


def test_two_layer_py_starter_scores_zero(eecs498: Grader) -> None:
    assert report(eecs498, ROOT / "student_template" / "eecs498-two-layer" / "two_layer_net.py")["score"] == 0


def test_two_layer_py_example_imports_the_course_helper_and_scores_as_its_readme_says(eecs498: Grader) -> None:
    eli = EECS / "examples" / "eli" / "two_layer_net.py"
    assert "from linear_classifier import sample_batch" in eli.read_text()
    rep = report(eecs498, eli.parent)
    assert rep["score"] == 100 and rep["root_causes"] == [] and rep["execution"]["events"] == []
    assert "| `eli/two_layer_net.py` |" in (EECS / "examples" / "README.md").read_text()


def test_two_layer_gradescope_grades_a_py_upload_and_a_notebook_upload(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from grader.reports import gradescope

    root = tmp_path / "autograder"
    with zipfile.ZipFile(io.BytesIO(gradescope.bundle(load(EECS)))) as zf:
        zf.extractall(root / "source")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    scores = []
    for upload in (EECS / "examples" / "eli" / "two_layer_net.py", EECS / "examples" / "bo.ipynb"):
        shutil.rmtree(root / "submission", ignore_errors=True)
        (root / "submission").mkdir()
        shutil.copy(upload, root / "submission" / upload.name)
        run = subprocess.run(
            ["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True, env=env, timeout=600
        )
        assert run.returncode == 0, run.stderr
        scores.append(json.loads((root / "results" / "results.json").read_text())["score"])
    assert scores == [100, 70.5]
