"""What ships: students install jitgrade too, so the wheel, the sdist, an editable install and the
Gradescope bundle hold no master notebook, no example submission and no solution code, and jitgrade's
wheel and sdist no reference solution either (instructors install it as jitgrade-reference, built from
instructor/); an installed wheel still does what students use it for, and tells instructors where the
masters are and what grading needs."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from conftest import solution_cells, write_notebook

from grader.assign import HIDDEN, SOLUTION, student_notebook
from grader.assignment import EXPECTED, MASTER_NOT_INSTALLED, PUBLIC_FILES, PUBLIC_FOLDERS, available, load
from grader.notebook import HIDDEN_TAG
from grader.reports import gradescope
from grader.truth import REFERENCE_MISSING

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = available()
PRIVATE_PARTS = {"examples", "tests", ".git"}
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN)[ \t]*$", re.MULTILINE)  # as assign.py reads them
RUN = 600  # seconds for a build or a command of a fresh install (its first Numba compilation included)
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
REFERENCE = ROOT / "reference"
# What only a module computing an MLP defines: the reference's kernels by name, or a Numba JIT
MLP_CODE = re.compile(
    r"^[ \t]*(def (loss_and_grads|two_layer_loss_and_grads|_loss_and_grads|affine_backward|relu_backward"
    r"|softmax_cross_entropy|log_softmax|mlp_numerical_gradient)\(|@(numba\.)?n?jit\b)|numba\.njit",
    re.MULTILINE,
)


# --------------------------------------------------------------------------- what counts as a secret


def _cell_sources(data: bytes) -> list[str]:
    cells = json.loads(data).get("cells", [])
    return [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in cells]


def _squash(text: str) -> str:
    """Text without indentation or blank lines, so a copy is found whatever its indentation."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def secrets() -> dict[str, str]:
    """Every master's private code: solution and hidden regions, hidden cells (label -> squashed text)."""
    out = {}
    for name in ASSIGNMENTS:
        master = load(name).master
        if master.is_dir():  # a .py assignment's master: a folder of .py files
            parts = [(f"{name} {p.name}", p.read_text(), []) for p in sorted(master.glob("*.py"))]
        else:
            data = master.read_bytes()
            cells = json.loads(data)["cells"]
            parts = [
                (f"{name} cell {i}", source, cells[i].get("metadata", {}).get("tags", []))
                for i, source in enumerate(_cell_sources(data))
            ]
        for label, source, cell_tags in parts:
            regions = [m.group(0) for pattern in (SOLUTION, HIDDEN) for m in pattern.finditer(source)]
            if HIDDEN_TAG in cell_tags:
                regions.append(source)
            for n, region in enumerate(regions):
                body = _squash(MARKER.sub("", region))
                if len(body) > 40:  # long enough not to be a line every implementation shares
                    out[f"{label} region {n}"] = body
    assert len(out) >= 2 * 7, "the masters' solution regions were not found: the scan would prove nothing"
    return out


def leaks(files: dict[str, bytes]) -> list[str]:
    """Which files (archive name -> bytes) hold a master, an example, a solution region or master code."""
    found = []
    hidden = secrets()
    for name, data in files.items():
        path = PurePosixPath(name)
        if PRIVATE_PARTS & set(path.parts) or path.name in {load(a).master.name for a in ASSIGNMENTS}:
            found.append(f"{name}: a private file")
            continue
        text = "\n".join(_cell_sources(data)) if path.suffix == ".ipynb" else data.decode("utf-8", "replace")
        if MARKER.search(text):
            found.append(f"{name}: a solution or hidden region marker")
        squashed = _squash(text)
        found += [f"{name}: the master's code ({label})" for label, body in hidden.items() if body in squashed]
    return found


def assignment_files(names: list[str]) -> set[str]:
    """'<assignment>/<file>' for each archive member inside an assignments folder."""
    out = set()
    for name in names:
        parts = PurePosixPath(name).parts
        if "assignments" in parts:
            out.add("/".join(parts[parts.index("assignments") + 1 :]))
    return out


PUBLIC = {f"{a}/{f}" for a in ASSIGNMENTS for f in PUBLIC_FILES} | {
    str(p.relative_to(ROOT / "assignments"))
    for a in ASSIGNMENTS
    for folder in PUBLIC_FOLDERS
    for p in (ROOT / "assignments" / a / folder).rglob("*.py")
}  # the course helper modules students import are public too


def mlp_code(files: dict[str, bytes]) -> list[str]:
    """Which .py files (archive name -> bytes) could compute an MLP: they define the reference's kernels or JIT."""
    found = []
    for name, data in files.items():
        hit = MLP_CODE.search(data.decode("utf-8", "replace")) if name.endswith(".py") else None
        if hit:
            found.append(f"{name}: {hit.group(0).strip()}")
    return found


def test_the_scan_finds_the_reference_a_leaking_package_would_ship() -> None:
    modules = {f"grader/_vendored/{p.name}": p.read_bytes() for p in REFERENCE.glob("*.py")}
    computing = {n for n in modules if not n.endswith(("/__init__.py", "/warmup.py"))}  # these only import
    assert {hit.split(":")[0] for hit in mlp_code(modules)} == computing, "every module that computes is found"
    assert mlp_code({"grader/fast.py": b"import numba\n\n@numba.njit(cache=True)\ndef f(x):\n    return x\n"})
    assert mlp_code({"grader/fast.py": b"f = numba.njit(cache=True)(g)\n"})
    assert mlp_code({"grader/scoring.py": (ROOT / "grader" / "scoring.py").read_bytes()}) == []  # imports numba
    starters = {str(p): p.read_bytes() for p in (ROOT / "student_template").rglob("*.py")}
    assert starters and mlp_code(starters) == []  # the students' .py starter files


def test_the_scan_finds_what_a_leaking_package_would_ship() -> None:
    master = load("mlp").master
    copied = {"grader/_bundled/notes.py": "\n".join(solution_cells()).encode()}
    renamed = {"grader/_bundled/mlp/teacher.ipynb": master.read_bytes()}
    assert leaks({"grader/_bundled/assignments/mlp/solution.ipynb": b"{}"})
    assert leaks(copied) and leaks(renamed) and leaks({"grader/x.py": b"    ### BEGIN SOLUTION\n"})
    template = load("mlp").template_path
    assert template is not None and not leaks({"student_template/mlp.ipynb": template.read_bytes()})


# --------------------------------------------------------------------------- wheel, sdist, editable install


def build(project: Path, out: Path, *kinds: str) -> Path:
    """Build a project's archives of these kinds ("--wheel", "--sdist") into out (no isolation: no network)."""
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *kinds, "--outdir", str(out), str(project)],
        capture_output=True,
        text=True,
        timeout=RUN,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jitgrade's wheel and sdist, each built from the source tree: what students install."""
    return build(ROOT, tmp_path_factory.mktemp("dist"), "--sdist", "--wheel")


@pytest.fixture(scope="module")
def instructor_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jitgrade-reference's wheel, built from instructor/: what instructors install beside jitgrade."""
    (wheel,) = build(ROOT / "instructor", tmp_path_factory.mktemp("instructor"), "--wheel").glob("*.whl")
    return wheel


def archive_files(path: Path) -> dict[str, bytes]:
    """Member name -> bytes of a wheel or an sdist."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["*.whl", "*.tar.gz"])
def test_the_wheel_and_the_sdist_hold_nothing_private(dist: Path, kind: str) -> None:
    (archive,) = dist.glob(kind)
    files = archive_files(archive)
    assert leaks(files) == []
    assert [n for n in files if "reference" in PurePosixPath(n).parts] == [], "the reference solution never ships"
    assert mlp_code(files) == [], "no module of jitgrade can compute an MLP (that is the reference's, for instructors)"
    assert assignment_files(list(files)) == PUBLIC, "exactly the public files of every assignment ship"
    assert any(n.endswith("student_template/mlp.ipynb") for n in files), "students' template notebooks ship"


def metadata(wheel: Path) -> str:
    (text,) = (data.decode() for n, data in archive_files(wheel).items() if n.endswith(".dist-info/METADATA"))
    return text


def test_the_instructor_wheel_holds_the_reference_and_nothing_else(dist: Path, instructor_wheel: Path) -> None:
    shipped = {n for n in archive_files(instructor_wheel) if ".dist-info/" not in n}
    assert shipped == {f"reference/{p.name}" for p in REFERENCE.glob("*.py")}, "no grader/, assignments/, template"
    (version,) = re.findall(r"^Version: (\S+)$", metadata(next(dist.glob("*.whl"))), re.MULTILINE)
    assert f"\nVersion: {version}\n" in metadata(instructor_wheel), "the two packages are versioned together"
    assert f"Requires-Dist: jitgrade=={version}" in metadata(instructor_wheel), "and installed together"


def test_an_editable_install_copies_nothing_into_site_packages(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    (wheel,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["editable"])
    with zipfile.ZipFile(wheel) as zf:
        installed = [n for n in zf.namelist() if ".dist-info/" not in n]
    assert [Path(n).suffix for n in installed] == [".pth"], installed


# --------------------------------------------------------------------------- installed wheels


def install(venv: Path, *wheels: Path) -> Path:
    """A virtual environment with only these wheels installed (their dependencies come from this one's)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=RUN)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]  # not the source tree: the .pth files are not read
    Path(site, "dependencies.pth").write_text("\n".join(ours) + "\n")
    # --force-reinstall: the dependencies seen through dependencies.pth may include this checkout installed editable
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    pip.append("--force-reinstall")
    subprocess.run([*pip, *map(str, wheels)], check=True, capture_output=True, timeout=RUN)
    return venv


@pytest.fixture(scope="module")
def students(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a student has: `pip install jitgrade`, the wheel alone."""
    return install(tmp_path_factory.mktemp("student") / "venv", *dist.glob("*.whl"))


@pytest.fixture(scope="module")
def instructors(dist: Path, instructor_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What an instructor or an autograder has: `pip install jitgrade ./instructor`, both wheels."""
    return install(tmp_path_factory.mktemp("instructor") / "venv", *dist.glob("*.whl"), instructor_wheel)


def run_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=RUN,
        env={**CLEAN_ENV, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
    )


def check_master(venv: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`jitgrade check` of a notebook holding the master's solution cells: the run and its JSON report."""
    notebook = write_notebook(tmp_path / "mlp.ipynb", solution_cells())
    run = run_in(venv, "jitgrade", "check", str(notebook), "-a", "mlp", "--json", "report.json", "-q", cwd=tmp_path)
    assert (tmp_path / "report.json").is_file(), run.stderr[-2000:]
    return run, json.loads((tmp_path / "report.json").read_text())


def test_a_students_install_holds_no_reference(students: Path, tmp_path: Path) -> None:
    where = run_in(students, "python", "-c", "import grader; print(grader.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(students)), where
    imported = run_in(students, "python", "-c", "import reference", cwd=tmp_path)
    assert imported.returncode == 1 and "No module named 'reference'" in imported.stderr, imported


def test_a_students_install_lists_and_self_checks_the_visible_cases(students: Path, tmp_path: Path) -> None:
    listing = run_in(students, "jitgrade", "list", cwd=tmp_path)
    assert listing.returncode == 0 and set(ASSIGNMENTS) <= set(re.findall(r"^(\S+)", listing.stdout, re.MULTILINE))
    run, report = check_master(students, tmp_path)
    # the visible checks replay the reference's answers recorded in selfcheck.npz (grader.truth) and pass;
    # a check needing an answer that was not recorded is "checked by the grader only" (skipped), worth nothing here
    ran = [t for t in report["tests"] if t["outcome"] != "skipped"]
    skipped = [t for t in report["tests"] if t["outcome"] == "skipped"]
    assert all(t["outcome"] == "passed" for t in ran), [t["output"] for t in ran if t["outcome"] != "passed"]
    assert all(t["visibility"] == "hidden" for t in skipped), "every visible check was recorded and replayed"
    assert all("checked by the grader only" in t["message"] for t in skipped)
    assert run.returncode == 0 and report["score"] == sum(t["max_score"] for t in ran) > 0, run.stderr[-2000:]


def test_a_students_install_refuses_to_grade_without_the_reference(students: Path, tmp_path: Path) -> None:
    examples = str(ROOT / "assignments" / "mlp" / "examples")
    refused = run_in(students, "jitgrade", "grade", examples, "-a", "mlp", "--out", "grades", cwd=tmp_path)
    expected = REFERENCE_MISSING.format(command="grade")
    assert refused.returncode == 2 and expected in " ".join(refused.stderr.split()), refused.stderr
    assert not (tmp_path / "grades").exists()


def test_a_students_install_builds_no_gradescope_bundle(students: Path, tmp_path: Path) -> None:
    """The bundle packs jitgrade and the reference from the source tree: an install has neither."""
    refused = run_in(students, "jitgrade", "gradescope", "mlp", "-o", "autograder.zip", cwd=tmp_path)
    assert refused.returncode == 2 and "`pip install -e .`" in refused.stderr, refused.stderr  # the editable checkout
    assert not (tmp_path / "autograder.zip").exists()


def test_an_instructors_install_grades_with_the_reference(instructors: Path, tmp_path: Path) -> None:
    where = run_in(instructors, "python", "-c", "import reference; print(reference.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(instructors)), where
    run, report = check_master(instructors, tmp_path)
    assert run.returncode == 0 and report["score"] == report["max_score"] == 100, run.stderr[-2000:]


def test_an_installed_wheel_runs_the_self_checks(students: Path, tmp_path: Path) -> None:
    code = (
        "import numpy as np\n"
        "from grader.selfcheck import checker\n"
        "def sigmoid(x):\n    return 1 / (1 + np.exp(-x))\n"
        "check = checker('mlp')\n"
        "check('sigmoid')\n"
    )
    run = run_in(students, "python", "-c", code, cwd=tmp_path)
    assert run.returncode == 0 and "sigmoid: all" in run.stdout and "passed" in run.stdout, run.stderr[-2000:]


def test_an_installed_wheel_sends_instructors_to_their_course_repository(students: Path, tmp_path: Path) -> None:
    refused = run_in(students, "jitgrade", "assign", "mlp", "--out", "out", cwd=tmp_path)
    expected = MASTER_NOT_INSTALLED.split("{master}")[-1].format(name="mlp")
    assert refused.returncode == 2 and "not installed with jitgrade" in refused.stderr
    assert expected in refused.stderr, refused.stderr
    course = shutil.copytree(ROOT / "assignments" / "mlp", tmp_path / "course" / "mlp")
    made = run_in(students, "jitgrade", "assign", str(course), "--out", "out", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "out" / "mlp.ipynb").read_text() == student_notebook(load("mlp").master)


# --------------------------------------------------------------------------- the Gradescope bundle


@pytest.fixture(params=["bundled", "course folder"])
def bundled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(the folder name the bundle must use, the bundle's files) for a bundled assignment and for a
    course repository's folder holding a master, examples and notes under another name."""
    if request.param == "bundled":
        folder = "mlp"
    else:
        folder = "hw3-backprop"
        course = shutil.copytree(ROOT / "assignments" / "mlp", tmp_path / folder)
        (course / "notes.md").write_text("Common mistakes and their fixes: " + "\n".join(solution_cells()))
    data = gradescope.bundle(load(folder if request.param == "bundled" else tmp_path / folder))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        yield folder, {n: zf.read(n) for n in zf.namelist()}


def test_the_gradescope_bundle_holds_only_what_grading_needs(bundled: tuple[str, dict[str, bytes]]) -> None:
    folder, files = bundled
    assert leaks(files) == []
    assert assignment_files(list(files)) == {f"{folder}/{f}" for f in PUBLIC_FILES}
    tops = {PurePosixPath(n).parts[1] for n in files if n.startswith("jitgrade/")}
    shipped = {"pyproject.toml", "README.md", "instructor", "grader", "reference", "assignments", "student_template"}
    assert tops <= shipped, tops
    assert {f"jitgrade/reference/{p.name}" for p in REFERENCE.glob("*.py")} <= set(files), "the grader grades with it"
    assert {"jitgrade/instructor/pyproject.toml", "jitgrade/instructor/README.md"} <= set(files)
    script = files["run_autograder"].decode()
    assert f" -a {folder} " in script, "run_autograder must name the assignment as the installed copy finds it"
    setup = files["setup.sh"].decode()
    assert "pip install /autograder/source/jitgrade /autograder/source/jitgrade/instructor" in setup, setup
    assert "import reference" in setup, "the reference is compiled once when the image is built"


def test_the_gradescope_bundle_of_a_folder_without_recorded_values_grades_with_the_reference(tmp_path: Path) -> None:
    course = shutil.copytree(ROOT / "assignments" / "mlp", tmp_path / "hw3", ignore=shutil.ignore_patterns(EXPECTED))
    with zipfile.ZipFile(io.BytesIO(gradescope.bundle(load(course)))) as zf:
        names = set(zf.namelist())
    assert "jitgrade/assignments/hw3/assignment.toml" in names and "jitgrade/reference/mlp.py" in names
    assert not [n for n in names if n.endswith(EXPECTED)], "the autograder has the reference: no table needed"


def test_the_gradescope_bundles_instructor_project_builds_the_reference(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(gradescope.bundle(load("mlp")))) as zf:
        zf.extractall(tmp_path / "source")
    (wheel,) = build(tmp_path / "source" / "jitgrade" / "instructor", tmp_path / "dist", "--wheel").glob("*.whl")
    assert {n for n in archive_files(wheel) if ".dist-info/" not in n} == {
        f"reference/{p.name}" for p in REFERENCE.glob("*.py")
    }
