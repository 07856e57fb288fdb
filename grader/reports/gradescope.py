"""Gradescope: results.json for one submission, and the autograder bundle (setup.sh, run_autograder).

Student code runs in the autograder's container, so the bundle holds only what grading needs:
jitgrade's code, the reference solution it grades with (reference/, installed as jitgrade-reference from
instructor/, which students' jitgrade does not ship), the assignment's public files (grader.assignment.PUBLIC_FILES,
helpers/) and student notebook or .py starter files; never its master notebook, examples, notes, the tests or a
.git folder.
run_autograder grades the upload's notebook, or for an assignment accepting .py files the upload folder itself
(its .py files, or its notebook when it holds none of them: grader.pyfiles.reads_python).

Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ (score, max_score,
output, visibility, stdout_visibility, tests[name, number, score, max_score, status, output,
visibility]). Hidden checks get visibility "hidden": instructors see them, students do not.
"""

from __future__ import annotations

import io
import shlex
import stat
import zipfile
from pathlib import Path
from typing import Any

from grader import pyfiles
from grader.assignment import PUBLIC_FILES, PUBLIC_FOLDERS, Assignment, template_roots

NO_SOURCE_TREE = (
    "building a Gradescope bundle needs jitgrade's source tree (the bundle packs jitgrade and the reference "
    "solution from it), but {project} has no {missing}: run `jitgrade gradescope` from the course's copy of the "
    "jitgrade repository installed with `pip install -e .`"
)
SOURCE_TREE = ("pyproject.toml", "reference", "instructor/pyproject.toml")  # what setup.sh installs from
TEST_KEYS = ("name", "number", "score", "max_score", "status", "output", "visibility")
TOP_KEYS = ("score", "max_score", "output", "visibility", "stdout_visibility")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip bubblewrap
python3 -m venv /autograder/jitgrade-venv
/autograder/jitgrade-venv/bin/pip install --upgrade pip
# jitgrade, and the reference it grades with (instructor/ builds jitgrade-reference from jitgrade/reference/)
/autograder/jitgrade-venv/bin/pip install /autograder/source/jitgrade /autograder/source/jitgrade/instructor
# Compile the reference once, so that grading a submission never pays Numba compilation.
/autograder/jitgrade-venv/bin/python -c "import reference, numpy as np; s = reference.MLPSpec((3, 4, 2)); \\
reference.loss_and_grads(np.ones((2, 3)), np.array([0, 1]), reference.init_params(s, 0), s)"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it must always leave results/results.json behind.
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
JITGRADE="$ROOT/jitgrade-venv/bin/jitgrade"
[ -x "$JITGRADE" ] || JITGRADE="jitgrade"
mkdir -p "$ROOT/results"
{find}"$JITGRADE" check "$SUBMISSION" -a {assignment} --gradescope "$ROOT/results/results.json" --quiet
exit 0
"""
# What run_autograder grades in /autograder/submission: the first notebook, for a notebook assignment
FIND_NOTEBOOK = """\
NOTEBOOK=$(find "$ROOT/submission" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | sort | head -n 1)
SUBMISSION="${NOTEBOOK:-$ROOT/submission/(no notebook submitted).ipynb}"
"""
# ... the folder itself when .py files are accepted: its files {files} (at its top, or in one folder wrapping
# everything), or, for an assignment accepting either, its notebook when it holds none of them
FIND_FILES = """\
# the .py files {files}{either}
SUBMISSION="$ROOT/submission"
"""
NOTEBOOK_INSTEAD = ", or the notebook when the upload holds none of them"


def results(report: dict[str, Any]) -> dict[str, Any]:
    """Gradescope's results.json for a canonical report (only the keys Gradescope defines)."""
    out = {k: report[k] for k in TOP_KEYS}
    out["tests"] = [{k: t[k] for k in TEST_KEYS} for t in report["tests"]]
    return out


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    mode = 0o755 if executable else 0o644
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def bundle(assignment: Assignment) -> bytes:
    """The autograder zip: setup.sh, run_autograder, and jitgrade's source with this assignment's public files."""
    project = Path(__file__).resolve().parents[2]
    missing = [name for name in SOURCE_TREE if not (project / name).exists()]
    if missing:
        raise FileNotFoundError(NO_SOURCE_TREE.format(project=project, missing=", ".join(missing)))
    files: list[tuple[str, Path]] = [
        (name, project / name)
        for name in ("pyproject.toml", "README.md", "instructor/pyproject.toml", "instructor/README.md")
    ]
    for package in ("grader", "reference"):
        files += [
            (str(p.relative_to(project)), p)
            for p in sorted((project / package).rglob("*"))
            if p.is_file() and p.suffix in (".py", ".json", ".html", ".j2", ".css")
        ]
    folder = assignment.directory.name  # the name the installed copy finds it by (the definition's may differ)
    shipped = [assignment.directory / name for name in PUBLIC_FILES]  # selfcheck.npz may be unrecorded: unread here
    files += [(f"assignments/{folder}/{p.name}", p) for p in shipped if p.is_file()]
    public = sorted(p for name in PUBLIC_FOLDERS for p in (assignment.directory / name).rglob("*.py"))
    files += [(f"assignments/{folder}/{p.relative_to(assignment.directory).as_posix()}", p) for p in public]
    if assignment.template_path is not None:
        files.append((f"student_template/{assignment.template}", assignment.template_path))
    find = FIND_NOTEBOOK
    if pyfiles.accepts_python(assignment):  # the starter files say what a file not handed in should define
        starter = pyfiles.starter_folder(assignment)
        starters = next((root / starter for root in template_roots() if (root / starter).is_dir()), None)
        if starters is not None:
            files += [
                (f"student_template/{starter}/{p.relative_to(starters).as_posix()}", p)
                for p in sorted(starters.rglob("*.py"))
            ]
        either = NOTEBOOK_INSTEAD if pyfiles.formats(assignment) == pyfiles.EITHER else ""
        find = FIND_FILES.format(files=", ".join(pyfiles.layout(assignment).files), either=either)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        _add(archive, "setup.sh", SETUP_SH.encode(), executable=True)
        script = RUN_AUTOGRADER.format(find=find, assignment=shlex.quote(folder))
        _add(archive, "run_autograder", script.encode(), executable=True)
        for name, path in files:
            _add(archive, f"jitgrade/{name}", path.read_bytes())
    return buf.getvalue()
