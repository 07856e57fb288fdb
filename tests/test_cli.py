"""The `jitgrade` command: exit codes, every output format agreeing with the JSON, malformed
inputs, the Gradescope bundle, and batch grading of folders and zip exports."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest
from conftest import solution_cells, write_notebook

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
SCHEMA = json.loads((ROOT / "grader" / "reports" / "report.schema.json").read_text())
FAST = ["--cell-timeout", "3", "--call-timeout", "2"]


def jitgrade(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grader", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def carol(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("carol")
    run = jitgrade(
        "check",
        str(EXAMPLES / "carol.ipynb"),
        "--seed",
        "4",
        *FAST,
        "--json",
        str(out / "r.json"),
        "--junit",
        str(out / "r.xml"),
        "--gradescope",
        str(out / "gs.json"),
        "--html",
        str(out / "r.html"),
        "--annotations",
        "github",
    )
    return run, out


def test_check_exits_1_when_points_are_lost_and_explains_why(carol: tuple) -> None:
    run, _ = carol
    assert run.returncode == 1, run.stderr
    assert "Score 84.5" in run.stdout  # carol loses dW1 and dW2 (half-point checks)
    assert "Likely cause: the regularization gradient reg * W is missing" in run.stdout


def test_every_format_says_the_same_as_the_json(carol: tuple) -> None:
    _, out = carol
    report = json.loads((out / "r.json").read_text())
    jsonschema.validate(report, SCHEMA)
    gradescope = json.loads((out / "gs.json").read_text())
    assert gradescope["score"] == report["score"] and gradescope["max_score"] == report["max_score"]
    assert [(t["name"], t["status"], t["score"]) for t in gradescope["tests"]] == [
        (t["name"], t["status"], t["score"]) for t in report["tests"]
    ]
    junit = ET.parse(out / "r.xml").getroot()
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert set(cases) == {t["id"] for t in report["tests"]}
    for t in report["tests"]:
        failed = cases[t["id"]].find("failure") is not None or cases[t["id"]].find("error") is not None
        assert failed == (t["status"] != "passed")
    html = (out / "r.html").read_text()
    assert f"{report['score']:g}" in html
    failed_visible = [t for t in report["tests"] if t["status"] != "passed" and t["visibility"] == "visible"]
    assert failed_visible and all(t["name"].replace("'", "&#39;") in html for t in failed_visible)


def test_github_annotations_name_each_failed_check(carol: tuple) -> None:
    run, out = carol
    report = json.loads((out / "r.json").read_text())
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == sum(t["status"] != "passed" for t in report["tests"])
    assert any(line.startswith("::notice ") and "84.5" in line for line in run.stdout.splitlines())


def test_check_exits_0_with_every_point(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "ok.ipynb", solution_cells())
    run = jitgrade("check", str(nb), "-q", "--seed", "1")
    assert run.returncode == 0, run.stdout + run.stderr


def test_assignment_comes_from_the_notebook_metadata_or_the_option(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "anon.ipynb", solution_cells(), assignment=None)
    run = jitgrade("check", str(nb), "-q")
    assert run.returncode == 2 and "pass -a NAME" in run.stderr
    assert jitgrade("check", str(nb), "-q", "-a", "mlp", "--visible-only").returncode == 0


MALFORMED = {
    "empty": b"",
    "not-json": b"this is { not json",
    "json-not-notebook": b'{"hello": "world"}',
    "nbformat-3": json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode(),
    "bad-cell": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"source": 1}]}).encode(),
    "binary": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_notebooks_give_one_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.ipynb"
    path.write_bytes(MALFORMED[kind])
    run = jitgrade("check", str(path), "-a", "mlp", "--json", str(tmp_path / "r.json"))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jitgrade: ") and "Traceback" not in run.stderr
    report = json.loads((tmp_path / "r.json").read_text())  # the error is recorded, not lost
    jsonschema.validate(report, SCHEMA)
    assert report["score"] == 0 and report["error"]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["check", "missing.ipynb", "-a", "mlp"], "no such file"),
        (["check", str(EXAMPLES / "alice.ipynb"), "-a", "nope"], "unknown assignment"),
        (["grade", "missing-dir", "-a", "mlp", "--out", "x"], "no such file"),
    ],
)
def test_unusable_inputs_exit_2_with_one_line(tmp_path: Path, args: list[str], text: str) -> None:
    run = jitgrade(*args, cwd=tmp_path)
    assert run.returncode == 2 and text in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_a_zip_of_junk_is_refused_with_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("data/blob.bin", os.urandom(100))
    run = jitgrade("grade", str(junk), "-a", "mlp", "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and "no notebooks" in run.stderr
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    run = jitgrade("grade", str(tmp_path / "bad.zip"), "-a", "mlp", "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and "not a valid zip" in run.stderr


def test_grade_a_platform_zip_export(tmp_path: Path) -> None:
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as zf:
        zf.write(EXAMPLES / "alice.ipynb", "Alice Smith_1234_assignsubmission_file_/mlp.ipynb")
        zf.write(EXAMPLES / "carol.ipynb", "Carol Jones_5678_assignsubmission_file_/mlp.ipynb")
        zf.writestr("Empty Person_999_assignsubmission_file_/notes.txt", "forgot the notebook")
        zf.writestr("bob_LATE_42_77_mlp.ipynb", (EXAMPLES / "bob.ipynb").read_bytes())
        zf.writestr("Zed_1_2_mlp.ipynb", b"{ broken json")
        zf.writestr("__MACOSX/._junk", b"junk")
    out = tmp_path / "grades"
    run = jitgrade("grade", str(export), "-a", "mlp", "--out", str(out), *FAST)
    assert run.returncode == 0, run.stderr
    rows = {r["student"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
    assert set(rows) == {
        "Alice Smith_1234_assignsubmission_file_",
        "Carol Jones_5678_assignsubmission_file_",
        "Empty Person_999_assignsubmission_file_",
        "bob",
        "Zed",
    }
    assert float(rows["Alice Smith_1234_assignsubmission_file_"]["score"]) == 100
    assert rows["Empty Person_999_assignsubmission_file_"]["error"].startswith("no notebook")
    assert "not a notebook" in rows["Zed"]["error"]
    for student in rows:
        folder = next(p for p in out.iterdir() if p.is_dir() and p.name.startswith(student.split()[0][:4]))
        jsonschema.validate(json.loads((folder / "report.json").read_text()), SCHEMA)
    assert (out / "summary.html").is_file()


def test_gradescope_bundle_runs_against_a_fake_autograder_tree(tmp_path: Path) -> None:
    bundle = tmp_path / "autograder.zip"
    assert jitgrade("gradescope", "mlp", "-o", str(bundle)).returncode == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        assert {"setup.sh", "run_autograder", "jitgrade/pyproject.toml"} <= set(names)
        assert not any("solution" in n or "examples" in n for n in names)
        zf.extractall(root / "source")
    (root / "submission").mkdir()
    shutil.copy(EXAMPLES / "frank.ipynb", root / "submission" / "mlp.ipynb")
    script = root / "source" / "run_autograder"
    script.chmod(0o755)
    env = {"AUTOGRADER_ROOT": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert run.returncode == 0, run.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    failed = {t["name"].split(":")[0] for t in results["tests"] if t["status"] == "failed"}
    assert failed == {"numerical_gradient"} and 80 < results["score"] < 100
    assert set(results) == {"score", "max_score", "output", "visibility", "stdout_visibility", "tests"}
    (root / "submission" / "mlp.ipynb").unlink()
    subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    empty = json.loads((root / "results" / "results.json").read_text())
    assert empty["score"] == 0 and "no such file" in empty["output"]


def test_assign_command_writes_the_template(tmp_path: Path) -> None:
    master = ROOT / "assignments" / "mlp" / "solution.ipynb"
    run = jitgrade("assign", str(master), "--out", str(tmp_path), "--no-expected")
    assert run.returncode == 0
    assert (tmp_path / "mlp.ipynb").read_text() == (ROOT / "student_template" / "mlp.ipynb").read_text()


def test_list_shows_the_bundled_assignments() -> None:
    run = jitgrade("list")
    assert run.returncode == 0 and "mlp-sigmoid" in run.stdout
