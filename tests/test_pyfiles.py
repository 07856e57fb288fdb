""".py submissions: a file, a folder or a zip of the modules an assignment declares, run as modules that import
each other and the course's helpers, graded like a notebook (root causes name the file and line, tracebacks the
file), discovered in class folders, and made from a master folder by `jitgrade assign`."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST

from grader import pyfiles
from grader.assign import STUB
from grader.assignment import Assignment, load
from grader.cli import main
from grader.grading import Grader
from grader.sandbox.zygote import Zygote
from grader.submissions import discover

DEMO = Path(__file__).resolve().parent / "data" / "pyfiles"
SOLUTION = DEMO / "solution"
FILES = ("pf_softmax.py", "pf_sigmoid.py")
CHECKS = {"softmax": 14, "sigmoid": 6}  # checks per problem (hidden twins included)


@pytest.fixture(scope="module")
def demo() -> Assignment:
    return load(DEMO)


@pytest.fixture(scope="module")
def grader(demo: Assignment, zygote: Zygote) -> Grader:
    return Grader(demo, FAST, 7, zygote=zygote)


def solution(replace: dict[str, str] | None = None) -> dict[str, str]:
    """The master's files (markers are comments: it runs as is), some replaced."""
    return {**{f: (SOLUTION / f).read_text() for f in FILES}, **(replace or {})}


def folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def report(grader: Grader, path: Path) -> dict[str, Any]:
    return grader.grade_file(path).result.to_dict()


def passed(rep: dict[str, Any], problem: str) -> bool:
    return all(t["status"] == "passed" for t in rep["tests"] if t["problem"] == problem)


# --------------------------------------------------------------------------- what can be handed in


def test_the_master_folder_scores_full_marks_with_helpers_and_mutual_imports(grader: Grader) -> None:
    rep = report(grader, SOLUTION)
    assert rep["error"] is None and rep["root_causes"] == []
    assert rep["score"] == rep["max_score"] == 15
    assert [p["checks"] for p in rep["problems"]] == list(CHECKS.values())
    assert rep["provenance"]["notebook"] == "solution"
    assert rep["execution"]["cell_errors"] == 0  # neither __main__ block ran (each raises SystemExit)


def test_a_zip_of_the_files_in_a_wrapping_folder_is_graded_the_same(grader: Grader, tmp_path: Path) -> None:
    archive = tmp_path / "alice.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in solution().items():
            zf.writestr(f"alice-hw1/{name}", text)
        zf.writestr("__MACOSX/alice-hw1/._pf_softmax.py", b"\x00\x05junk")
    rep = report(grader, archive)
    assert rep["score"] == 15 and rep["provenance"]["notebook"] == "alice.zip"
    assert rep["provenance"]["notebook_sha256"] == report(grader, SOLUTION)["provenance"]["notebook_sha256"]


def test_one_file_is_graded_and_the_missing_one_is_named(grader: Grader) -> None:
    rep = report(grader, SOLUTION / "pf_sigmoid.py")
    assert passed(rep, "sigmoid") and rep["score"] == 5
    assert rep["tamper"]["missing"] == ["pf_softmax.py"]
    (cause,) = rep["root_causes"]
    assert cause["functions"] == ["softmax"] and cause["message"].startswith(
        "pf_softmax.py failed: ModuleNotFoundError"
    )
    assert "pf_softmax.py is missing from the submission" in cause["message"]


def test_a_missing_file_never_sends_the_master_to_the_worker(demo: Assignment) -> None:
    submission = pyfiles.read(SOLUTION / "pf_sigmoid.py", demo)
    definitions = submission.definitions()
    assert list(definitions[1].names) == ["np", "xrange", "pf_sigmoid", "row_max", "softmax", "_unused_helper"]
    sent = [source for _, source in submission.code_cells()] + list(submission.replays(definitions).values())
    assert not any("np.exp(x - row_max(x))" in text for text in sent)  # the master's softmax, read for its names


def test_a_file_that_is_not_text_fails_where_it_is_imported_and_says_so(grader: Grader, tmp_path: Path) -> None:
    path = folder(tmp_path / "ivan", solution())
    (path / "pf_sigmoid.py").write_bytes("# café\n".encode("latin-1") + (SOLUTION / "pf_sigmoid.py").read_bytes())
    rep = report(grader, path)
    cause = next(c for c in rep["root_causes"] if c["cell"] == 2)
    assert cause["message"].startswith("pf_sigmoid.py failed: ImportError: pf_sigmoid.py is not Python source text")
    assert "save it as UTF-8 text" in cause["message"] and cause["functions"] == ["sigmoid"]


def test_the_digest_covers_names_and_contents_in_a_canonical_order(demo: Assignment, tmp_path: Path) -> None:
    files = {name: text.encode() for name, text in solution().items()}
    reordered = dict(reversed(list(files.items())))
    assert pyfiles.digest(files) == pyfiles.digest(reordered)
    assert pyfiles.loads(pyfiles.pack(reordered), "x", demo).sha256 == pyfiles.read(SOLUTION, demo).sha256
    renamed = {"pf_softmax.py": files["pf_sigmoid.py"], "pf_sigmoid.py": files["pf_softmax.py"]}
    assert pyfiles.digest(renamed) != pyfiles.digest(files)
    assert pyfiles.digest({**files, "pf_sigmoid.py": files["pf_sigmoid.py"] + b"\n"}) != pyfiles.digest(files)


def test_unreadable_submissions_get_one_line_errors(demo: Assignment, tmp_path: Path) -> None:
    with pytest.raises(pyfiles.PyFilesError, match="holds none of the files this assignment expects"):
        pyfiles.read(folder(tmp_path / "empty", {"notes.py": "x = 1\n"}), demo)
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(pyfiles.PyFilesError, match="not a valid zip archive"):
        pyfiles.read(tmp_path / "bad.zip", demo)
    big = folder(tmp_path / "big", {"pf_softmax.py": "#" * (pyfiles.MAX_FILE_BYTES + 1)})
    with pytest.raises(pyfiles.PyFilesError, match="pf_softmax.py is 1.0 MiB; a .py file may have at most 1 MiB"):
        pyfiles.read(big, demo)
    (tmp_path / "hw.ipynb").write_text("{}")
    with pytest.raises(pyfiles.PyFilesError, match=r"expected a \.py file, a folder of \.py files or a zip"):
        pyfiles.read(tmp_path / "hw.ipynb", demo)


# --------------------------------------------------------------------------- how the modules run


def test_files_at_the_size_limit_full_of_escapes_still_fit_the_loader_cell(grader: Grader, tmp_path: Path) -> None:
    room = (pyfiles.MAX_TOTAL_BYTES - sum(len(t.encode()) for t in solution().values())) // 2 - 100
    controls = "# " + "\x01" * min(room, pyfiles.MAX_FILE_BYTES - 4000) + "\n"  # JSON would escape each as \u0001
    accents = "NOTE = '" + "é" * (min(room, pyfiles.MAX_FILE_BYTES - 4000) // 2) + "'\n"
    files = solution()
    files = {"pf_softmax.py": controls + files["pf_softmax.py"], "pf_sigmoid.py": accents + files["pf_sigmoid.py"]}
    rep = report(grader, folder(tmp_path / "gina", files))
    assert rep["score"] == 15, rep["output"]


def test_modules_import_each_other_whatever_the_load_order(zygote: Zygote, tmp_path: Path) -> None:
    course = shutil.copytree(DEMO, tmp_path / "reversed", ignore=shutil.ignore_patterns("solution"))
    toml = course / "assignment.toml"
    toml.write_text(
        toml.read_text().replace(
            'files = ["pf_softmax.py", "pf_sigmoid.py"]', 'files = ["pf_sigmoid.py", "pf_softmax.py"]'
        )
    )
    sigmoid_first = load(course)
    assert pyfiles.layout(sigmoid_first).files == ("pf_sigmoid.py", "pf_softmax.py")
    rep = Grader(sigmoid_first, FAST, 7, zygote=zygote).grade_file(SOLUTION).result.to_dict()
    assert rep["score"] == 15 and rep["root_causes"] == []


def test_a_missing_helper_is_the_root_cause_naming_the_import(grader: Grader, tmp_path: Path) -> None:
    broken = solution(
        {
            "pf_sigmoid.py": "import numpy as np\nfrom linear_classifier import sample_batch\n\n"
            "def sigmoid(x):\n    return 1 / (1 + np.exp(-x))\n"
        }
    )
    rep = report(grader, folder(tmp_path / "bob", broken))
    causes = {c["cell"]: c for c in rep["root_causes"]}
    sigmoid = causes[2]
    assert sigmoid["line"] == 2 and sigmoid["ename"] == "ModuleNotFoundError" and sigmoid["functions"] == ["sigmoid"]
    assert sigmoid["message"].startswith(
        "pf_sigmoid.py failed: ModuleNotFoundError at line 2: No module named 'linear_classifier'"
    )
    assert "the error is in pf_sigmoid.py, which it imports" in causes[1]["message"]  # pf_softmax imports it
    test = next(t for t in rep["tests"] if t["problem"] == "sigmoid")
    assert test["cause"] == 2 and "Fix that file first" in test["message"]


def test_a_syntax_error_in_one_file_names_file_and_line_and_the_other_is_graded(grader: Grader, tmp_path: Path) -> None:
    files = solution({"pf_sigmoid.py": "import numpy as np\n\n\ndef sigmoid(x):\n    return 1 / (1 + np.exp(-x)\n"})
    files["pf_softmax.py"] = files["pf_softmax.py"].replace("import pf_sigmoid\n", "")
    files["pf_softmax.py"] = files["pf_softmax.py"].replace("pf_sigmoid.sigmoid(i)", "i")
    rep = report(grader, folder(tmp_path / "carol", files))
    (cause,) = rep["root_causes"]
    assert (cause["cell"], cause["line"], cause["ename"]) == (2, 5, "SyntaxError")
    assert cause["message"].startswith("pf_sigmoid.py failed: SyntaxError at line 5: '(' was never closed")
    assert passed(rep, "softmax") and rep["score"] == 10


def test_a_file_whose_import_never_ends_keeps_its_definitions(grader: Grader, tmp_path: Path) -> None:
    files = solution({"pf_sigmoid.py": (SOLUTION / "pf_sigmoid.py").read_text() + "\nwhile True:\n    pass\n"})
    files["pf_softmax.py"] = files["pf_softmax.py"].replace("import pf_sigmoid\n", "")
    files["pf_softmax.py"] = files["pf_softmax.py"].replace("pf_sigmoid.sigmoid(i)", "i")
    rep = report(grader, folder(tmp_path / "hank", files))
    (cause,) = rep["root_causes"]
    assert cause["cell"] == 2 and cause["kept"] == ["sigmoid", "softmax_of"]
    assert cause["message"].startswith("pf_sigmoid.py ran out of time (3 s) at its top level; kept the definitions")
    assert rep["score"] == 15


def test_a_failing_call_names_the_file_and_line_in_the_check(grader: Grader, tmp_path: Path) -> None:
    text = "import numpy as np\n\n\ndef sigmoid(x):\n    scale = np.ones(3)\n    return scale @ x\n"
    rep = report(grader, folder(tmp_path / "dave", solution({"pf_sigmoid.py": text})))
    failed = [t for t in rep["tests"] if t["problem"] == "sigmoid" and t["outcome"] == "error"]
    assert failed and all('(File "pf_sigmoid.py", line 6, in sigmoid)' in t["message"] for t in failed)


def test_the_executed_record_has_a_cell_per_file(grader: Grader) -> None:
    graded = grader.grade_file(SOLUTION)
    cells = graded.executed["cells"]
    assert [c["metadata"]["jitgrade"]["file"] for c in cells] == ["loader", *FILES]
    assert cells[1]["source"] == (SOLUTION / "pf_softmax.py").read_text()
    assert all(c["execution_count"] is not None for c in cells)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('format = "pyhton"', r"\[submission\] format must be one of \['notebook', 'python'\], got 'pyhton'"),
        ('file = "pf_softmax.py"', r"unknown key\(s\) \['file'\] in \[submission\]"),
    ],
)
def test_a_submission_table_with_a_typo_is_an_error_not_a_notebook_assignment(
    line: str, message: str, tmp_path: Path
) -> None:
    course = shutil.copytree(DEMO, tmp_path / "course", ignore=shutil.ignore_patterns("solution"))
    toml = course / "assignment.toml"
    toml.write_text(toml.read_text().replace('format = "python"', line))
    with pytest.raises(pyfiles.PyFilesError, match=message):
        pyfiles.is_python(load(course))


# --------------------------------------------------------------------------- names that would shadow the grader's


@pytest.mark.parametrize("name", ["numpy.py", "grader.py", "json.py"])
def test_a_declared_file_named_after_a_module_the_grader_uses_is_refused(name: str, tmp_path: Path) -> None:
    course = shutil.copytree(DEMO, tmp_path / "course", ignore=shutil.ignore_patterns("solution"))
    toml = course / "assignment.toml"
    toml.write_text(toml.read_text().replace('"pf_sigmoid.py"]', f'"{name}"]'))
    with pytest.raises(pyfiles.PyFilesError, match=f"the file '{name[:-3]}' would shadow the module {name[:-3]}"):
        pyfiles.layout(load(course))


def test_a_student_file_named_after_a_module_the_grader_uses_is_not_loaded(grader: Grader, tmp_path: Path) -> None:
    impostors = {"numpy.py": "raise SystemExit('impostor numpy')\n", "grader.py": "softmax = None\n"}
    rep = report(grader, folder(tmp_path / "erin", {**solution(), **impostors}))
    assert rep["score"] == 15
    events = rep["execution"]["events"]
    assert "grader.py was not loaded: its module 'grader' would shadow the module grader" in events[0]
    assert "numpy.py was not loaded: its module 'numpy' would shadow the module numpy" in events[1]


def test_extra_files_are_ignored_and_noted(grader: Grader, tmp_path: Path) -> None:
    rep = report(grader, folder(tmp_path / "frank", {**solution(), "scratch.py": "raise SystemExit(1)\n"}))
    assert rep["score"] == 15
    assert rep["execution"]["events"][0].startswith("scratch.py was not graded: it is not one of the assignment's")


# --------------------------------------------------------------------------- classes, the command line, assign


def test_a_class_folder_of_student_folders_zips_and_canvas_files_is_discovered(tmp_path: Path) -> None:
    course = tmp_path / "class"
    folder(course / "alice", solution())
    folder(course / "bob" / "hw1", solution())
    with zipfile.ZipFile(course / "carol.zip", "w") as zf:
        for name, text in solution().items():
            zf.writestr(name, text)
    for name, text in solution().items():
        stem = name.removesuffix(".py")
        (course / f"dave_LATE_1234_5678_{stem}-1.py").write_text(text)
    found = {s.student: s for s in discover([course], workdir=tmp_path, python=FILES)}
    assert set(found) == {"alice", "bob", "carol", "dave"} and all(s.python for s in found.values())
    assert sorted(p.name for p in found["dave"].path.iterdir()) == sorted(FILES)
    assert found["carol"].path == course / "carol.zip"
    (one,) = discover([course / "alice"], python=FILES)  # a student's own folder is one submission
    assert (one.student, one.path) == ("alice", course / "alice")


def test_jitgrade_grade_grades_a_class_of_py_submissions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    course = tmp_path / "class"
    folder(course / "alice", solution())
    folder(course / "bob", solution({"pf_sigmoid.py": "def sigmoid(x):\n    return x\n"}))
    out = tmp_path / "out"
    command = ["grade", str(course), "-a", str(DEMO), "--out", str(out), "--seed", "3", "--isolation", "process"]
    assert main([*command, "--no-feedback"]) == 0, capsys.readouterr().err
    alice, bob = (json.loads((out / s / "report.json").read_text()) for s in ("alice", "bob"))
    assert (alice["score"], bob["score"]) == (15, 10)
    executed = json.loads((out / "alice" / "executed.ipynb").read_text())
    assert executed["cells"][1]["metadata"]["jitgrade"]["file"] == "pf_softmax.py"
    capsys.readouterr()
    assert main(command) == 0
    assert "2 already graded, 0 to grade" in capsys.readouterr().err  # the .py digest matches on a rerun


def test_jitgrade_check_takes_a_folder_and_needs_the_assignment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    assert main(["check", str(SOLUTION), "-a", str(DEMO), "--json", str(out), "-q", "--isolation", "process"]) == 0
    assert json.loads(out.read_text())["score"] == 15
    assert main(["check", str(SOLUTION), "-q"]) == 2
    assert ".py files name no assignment; pass -a NAME" in capsys.readouterr().err


def test_jitgrade_assign_writes_starter_files_with_stubs_and_the_helpers(
    grader: Grader, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assign", str(DEMO), "--out", str(tmp_path), "--no-expected"]) == 0
    starter = tmp_path / "pyfiles-demo"
    assert capsys.readouterr().out.strip() == str(starter)
    written = sorted(str(p.relative_to(starter)) for p in starter.rglob("*.py"))
    assert written == ["past/builtins.py", "pf_course.py", "pf_sigmoid.py", "pf_softmax.py"]
    softmax = (starter / "pf_softmax.py").read_text()
    assert f'    """Row-wise softmax of a 1-D or 2-D array."""\n    {STUB}\n' in softmax
    assert "SOLUTION" not in softmax and "np.exp" not in softmax
    assert (starter / "past" / "builtins.py").read_text() == (DEMO / "helpers" / "past" / "builtins.py").read_text()
    rep = report(grader, starter)
    assert rep["score"] == 0 and rep["root_causes"] == [] and rep["execution"]["events"] == []
    assert all("still raises NotImplementedError" in t["message"] for t in rep["tests"])


def test_the_gradescope_bundle_ships_the_helpers_and_not_the_master(demo: Assignment) -> None:
    from grader.reports import gradescope

    with zipfile.ZipFile(io.BytesIO(gradescope.bundle(demo))) as zf:
        shipped = sorted(n.removeprefix("jitgrade/assignments/pyfiles/") for n in zf.namelist() if "/assignments/" in n)
    assert shipped == ["assignment.toml", "helpers/past/builtins.py", "helpers/pf_course.py"]


def test_the_package_ships_an_assignments_helpers_but_not_its_master_folder() -> None:
    import pathspec
    import tomllib

    from grader.assignment import PUBLIC_FOLDERS

    root = DEMO.parents[2]
    excluded = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["exclude"]
    spec = pathspec.GitIgnoreSpec.from_lines(excluded)  # hatchling reads the patterns so
    shipped = [f"assignments/cs/{folder}/past/builtins.py" for folder in PUBLIC_FOLDERS]
    assert not any(spec.match_file(path) for path in shipped)
    assert spec.match_file("assignments/cs/solution/q1_softmax.py") and spec.match_file("assignments/cs/notes.md")


def test_missing_files_are_named_as_files_not_as_deleted_cells() -> None:
    """A .py submission's tamper record names files (unit "file"): the note asks for them by name."""
    from grader.reports.views import tamper_notes

    notes, warning = tamper_notes({"tamper": {"from_template": True, "edited": [], "missing": ["q2_neural.py"],
                                              "reordered": [], "unit": "file"}})
    assert warning and notes == [
        "files the assignment expects that were not handed in: q2_neural.py (hand them in by these names)"
    ]
    notes, _ = tamper_notes({"tamper": {"from_template": True, "edited": [], "missing": ["c1"], "reordered": [],
                                        "unit": "cell"}})
    assert notes == ["read-only cells that were deleted: c1 (copy them back from the course template)"]
