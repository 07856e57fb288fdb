"""What ships: students install jitgrade too, so the wheel, the sdist, an editable install and the
Gradescope bundle hold no master notebook, no example submission and no solution code; an installed
wheel still does what students use it for, and tells instructors where the masters are."""

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
from grader.assignment import MASTER_NOT_INSTALLED, PUBLIC_FILES, PUBLIC_FOLDERS, available, load
from grader.notebook import HIDDEN_TAG
from grader.reports import gradescope

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = available()
PRIVATE_PARTS = {"examples", "tests", ".git"}
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN)[ \t]*$", re.MULTILINE)  # as assign.py reads them
RUN = 600  # seconds for a build or a command of a fresh install (its first Numba compilation included)
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


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


def test_the_scan_finds_what_a_leaking_package_would_ship() -> None:
    master = load("mlp").master
    copied = {"grader/_bundled/notes.py": "\n".join(solution_cells()).encode()}
    renamed = {"grader/_bundled/mlp/teacher.ipynb": master.read_bytes()}
    assert leaks({"grader/_bundled/assignments/mlp/solution.ipynb": b"{}"})
    assert leaks(copied) and leaks(renamed) and leaks({"grader/x.py": b"    ### BEGIN SOLUTION\n"})
    template = load("mlp").template_path
    assert template is not None and not leaks({"student_template/mlp.ipynb": template.read_bytes()})


# --------------------------------------------------------------------------- wheel, sdist, editable install


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist, each built from the source tree (no isolation: no network needed)."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=RUN,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return out


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
    assert assignment_files(list(files)) == PUBLIC, "exactly the public files of every assignment ship"
    assert any(n.endswith("student_template/mlp.ipynb") for n in files), "students' template notebooks ship"


def test_an_editable_install_copies_nothing_into_site_packages(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    (wheel,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["editable"])
    with zipfile.ZipFile(wheel) as zf:
        installed = [n for n in zf.namelist() if ".dist-info/" not in n]
    assert [Path(n).suffix for n in installed] == [".pth"], installed


# --------------------------------------------------------------------------- an installed wheel


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only the wheel installed (its dependencies come from this one's)."""
    venv = tmp_path_factory.mktemp("student") / "venv"
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
    (wheel,) = dist.glob("*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=RUN,
    )
    return venv


def student(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=RUN,
        env={**CLEAN_ENV, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
    )


def test_an_installed_wheel_lists_and_grades_without_any_master(installed: Path, tmp_path: Path) -> None:
    where = student(installed, "python", "-c", "import grader; print(grader.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(installed)), where
    listing = student(installed, "jitgrade", "list", cwd=tmp_path)
    assert listing.returncode == 0 and set(ASSIGNMENTS) <= set(re.findall(r"^(\S+)", listing.stdout, re.MULTILINE))
    notebook = write_notebook(tmp_path / "mlp.ipynb", solution_cells())
    run = student(
        installed, "jitgrade", "check", str(notebook), "-a", "mlp", "--json", "report.json", "-q", cwd=tmp_path
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert run.returncode == 0 and report["score"] == report["max_score"] == 100, run.stderr[-2000:]


def test_an_installed_wheel_runs_the_self_checks(installed: Path, tmp_path: Path) -> None:
    code = (
        "import numpy as np\n"
        "from grader.selfcheck import checker\n"
        "def sigmoid(x):\n    return 1 / (1 + np.exp(-x))\n"
        "check = checker('mlp')\n"
        "check('sigmoid')\n"
    )
    run = student(installed, "python", "-c", code, cwd=tmp_path)
    assert run.returncode == 0 and "sigmoid: all" in run.stdout and "passed" in run.stdout, run.stderr[-2000:]


def test_an_installed_wheel_sends_instructors_to_their_course_repository(installed: Path, tmp_path: Path) -> None:
    refused = student(installed, "jitgrade", "assign", "mlp", "--out", "out", cwd=tmp_path)
    expected = MASTER_NOT_INSTALLED.split("{master}")[-1].format(name="mlp")
    assert refused.returncode == 2 and "not installed with jitgrade" in refused.stderr
    assert expected in refused.stderr, refused.stderr
    course = shutil.copytree(ROOT / "assignments" / "mlp", tmp_path / "course" / "mlp")
    made = student(installed, "jitgrade", "assign", str(course), "--out", "out", cwd=tmp_path)
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
    assert tops <= {"pyproject.toml", "README.md", "grader", "reference", "assignments", "student_template"}, tops
    script = files["run_autograder"].decode()
    assert f" -a {folder} " in script, "run_autograder must name the assignment as the installed copy finds it"
