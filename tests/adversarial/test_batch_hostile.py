"""One submission never breaks the batch: a property test over a hostile corpus.

For every entry of the corpus below (NaN and inf returns, numpy scalars, escape sequences and huge
strings, deeply nested JSON, output metadata nested hundreds of levels, names of the batch's own
files, ids that collide after renaming, files that are not notebooks, a worker that kills itself,
endless loops), `jitgrade grade` of the entry together with correct submissions must:
- exit 0 and write a complete gradebook, one row per submission, each row from that submission's
  own report (its notebook name and hash);
- give the correct submissions exactly the points they get when graded alone;
- write strict JSON reports that follow the schema, and print no raw control character.
A class made only of the corpus finishes within the sum of its limits, under each isolation level.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from grader import cli
from grader.sandbox.zygote import bwrap_usable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
CORRECT = EXAMPLES / "alice.ipynb"  # correct (assignments/mlp/examples/README.md): 100/100
PARTIAL = EXAMPLES / "heidi.ipynb"  # two functions implemented out of seven
SCHEMA = json.loads((ROOT / "grader" / "reports" / "report.schema.json").read_text())
NOTEBOOK_TIMEOUT = 15.0
LIMITS = ["--cell-timeout", "2", "--call-timeout", "1", "--notebook-timeout", str(NOTEBOOK_TIMEOUT), "--seed", "5"]
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                    "\ud800-\udfff\ufffe\uffff]")
ESCAPES = r'"\x1b[2J\x1b]0;owned\x07\x9b31m\u202eevil\u2066\ud800\r" + "All tests passed! Score: 100/100"'
FILE_NAME = "\x1b[2J\x1b]0;owned\x07\u202eevil\r"


# --------------------------------------------------------------------------- building the corpus


def with_cells(source: Path, *cells: str) -> dict[str, Any]:
    """An example notebook with code cells appended (later definitions replace the student's)."""
    notebook = json.loads(source.read_text())
    for i, cell in enumerate(cells):
        notebook["cells"].append({"cell_type": "code", "id": f"hostile-{i}", "metadata": {}, "outputs": [],
                                  "execution_count": None, "source": cell})
    return notebook


def nested(levels: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    inner = top
    for _ in range(levels):
        inner["a"] = {}
        inner = inner["a"]
    return top


NAN_RETURNS = """
import numpy as np
def softmax(x):
    return np.full(np.shape(x), np.nan)
def sigmoid(x):
    return np.full(np.shape(x), np.float32("nan"), dtype=np.float32)
def mlp_loss(X, y, params, reg):
    return float("nan"), {k: np.full(np.shape(v), np.nan) for k, v in params.items()}
def numerical_gradient(f, x, h=1e-5):
    return np.full(np.shape(x), np.nan)
"""
INF_RETURNS = """
import numpy as np
def softmax(x):
    out = np.zeros(np.shape(x))
    out.flat[0] = np.inf
    return out
def sigmoid_grad(s):
    return np.where(np.asarray(s) > 0.5, np.float16("inf"), -np.inf)
def softmax_cross_entropy(z, y):
    return np.float32("inf"), np.full(np.shape(z), -np.inf)
def mlp_loss(X, y, params, reg):
    grads = {k: np.ones(np.shape(v)) for k, v in params.items()}
    for g in grads.values():
        g.flat[-1] = np.inf
    return np.float64("-inf"), grads
"""
ESCAPE_CELLS = (
    f"ESC = {ESCAPES}\nprint(ESC * 200)",
    f"def sigmoid(x):\n    raise ValueError({ESCAPES} * 50)",
    f"def mlp_forward(X, params):\n    import warnings\n    warnings.warn({ESCAPES})\n    return {ESCAPES}",
    f"raise RuntimeError({ESCAPES})",
)
HUGE_STRINGS = (
    "print('z' * 5_000_000)",
    "def softmax(x):\n    raise ValueError('y' * 5_000_000)",
    "def numerical_gradient(f, x, h=1e-5):\n    return 'w' * 3_000_000",
)
DEEP_OUTPUT = """
from IPython.display import display
deep = {}
inner = deep
for _ in range(600):
    inner["a"] = {}
    inner = inner["a"]
display({"text/plain": "deep"}, raw=True, metadata={"deep": deep})
display({"application/json": {"deep": deep}, "text/plain": "deep"}, raw=True)
"""
KILLS_ITS_WORKER = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
ENDLESS = ("while True:\n    pass", "def numerical_gradient(f, x, h=1e-5):\n    while True:\n        pass")


def write(path: Path, content: dict[str, Any] | bytes | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        shutil.copy(content, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content, indent=1))


def deep_metadata_file() -> dict[str, Any]:
    notebook = copy.deepcopy(json.loads(CORRECT.read_text()))
    notebook["cells"][0]["metadata"]["deep"] = nested(150)
    return notebook


# entry -> files (relative path -> content); every file named .ipynb, or folder, is one submission
CORPUS: dict[str, Callable[[], dict[str, Any]]] = {
    "nan-returns": lambda: {"nan.ipynb": with_cells(CORRECT, NAN_RETURNS)},
    "inf-returns": lambda: {"inf.ipynb": with_cells(CORRECT, INF_RETURNS)},
    "escape-sequences": lambda: {f"{FILE_NAME}.ipynb": with_cells(CORRECT, *ESCAPE_CELLS)},
    "huge-strings": lambda: {"huge.ipynb": with_cells(CORRECT, *HUGE_STRINGS)},
    "deep-json": lambda: {"deep.ipynb": b"[" * 100_000 + b"]" * 100_000},
    "deep-metadata-file": lambda: {"deepmeta.ipynb": deep_metadata_file()},
    "deep-output-metadata": lambda: {"deepout.ipynb": with_cells(CORRECT, DEEP_OUTPUT)},
    "batch-file-names": lambda: {"gradebook.csv.ipynb": PARTIAL, "summary.html.ipynb": PARTIAL,
                                 "jitgrade-run.json.ipynb": PARTIAL, "GRADEBOOK.CSV.ipynb": PARTIAL,
                                 "jitgrade-run.json/mlp.ipynb": PARTIAL},
    "duplicate-ids": lambda: {"alice/mlp.ipynb": PARTIAL, "alice-2.ipynb": with_cells(PARTIAL, "x = 2"),
                              "ALICE.ipynb": with_cells(PARTIAL, "x = 3"), "zoe-2/mlp.ipynb": PARTIAL},
    "not-json": lambda: {"garbage.ipynb": bytes(range(256)) * 16, "truncated.ipynb": CORRECT.read_bytes()[:900]},
    "empty": lambda: {"empty.ipynb": b"", "nobody/notes.txt": b"forgot to upload"},
    "kills-its-worker": lambda: {"kamikaze.ipynb": with_cells(CORRECT, KILLS_ITS_WORKER)},
    "endless-loops": lambda: {"spin.ipynb": with_cells(CORRECT, *ENDLESS)},
}


def submissions_in(files: dict[str, Any]) -> int:
    """Submissions among the files: top-level notebooks and top-level folders."""
    return len({name.split("/")[0] for name in files})


def correct_class(folder: Path) -> dict[str, str]:
    """The correct submissions: notebook file name -> hash of its bytes."""
    write(folder / "alice.ipynb", CORRECT)
    write(folder / "zoe.ipynb", with_cells(CORRECT, "print('zoe')"))
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("alice.ipynb", "zoe.ipynb")}


# --------------------------------------------------------------------------- running a batch


def not_json(token: str) -> Any:
    raise AssertionError(f"{token} is not JSON")


def grade(folder: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[list[dict], float]:
    """`jitgrade grade` in this process; the gradebook's rows, and the seconds it took. Asserts what every
    batch must do: exit 0, strict and valid JSON reports, one per row, no raw control character printed."""
    capsys.readouterr()
    started = time.monotonic()
    code = cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out), *LIMITS, *extra])
    seconds = time.monotonic() - started
    said = capsys.readouterr()
    assert code == 0, said.err
    for stream in (said.out, said.err):
        found = UNSAFE.search(stream)
        assert found is None, f"raw {found.group()!r} printed: {stream[max(0, found.start() - 60):][:120]!r}"
    rows = list(csv.DictReader(io.StringIO((out / cli.GRADEBOOK).read_text())))
    reports = {p.parent.name: p for p in out.glob("*/report.json")}
    assert len(reports) == len(rows), (sorted(reports), [r["student"] for r in rows])
    for path in reports.values():
        report = json.loads(path.read_text(), parse_constant=not_json)
        jsonschema.validate(report, SCHEMA)
        mine = [r for r in rows if r["notebook"] == report["provenance"]["notebook"]
                and r["notebook_sha256"] == (report["provenance"]["notebook_sha256"] or "")
                and r["student"] == report["provenance"]["student"]]
        assert len(mine) == 1 and float(mine[0]["score"]) == report["score"], path
    return rows, seconds


def points(row: dict[str, str]) -> dict[str, float]:
    """A gradebook row's points (every number column but the seed)."""
    skip = {"student", "error", "notebook", "notebook_sha256", "hidden_seed"}
    return {key: float(value) for key, value in row.items() if key not in skip}


def correct_rows(rows: list[dict[str, str]], shas: dict[str, str]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for name, sha in shas.items():
        mine = [r for r in rows if r["notebook"] == name and r["notebook_sha256"] == sha]
        assert len(mine) == 1, (name, mine)
        found[name] = points(mine[0])
    return found


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """The correct submissions' points when graded on their own."""
    folder = tmp_path_factory.mktemp("alone") / "class"
    shas = correct_class(folder)
    out = folder.parent / "out"
    done = cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out), *LIMITS, "--isolation", "process"])
    assert done == 0
    rows = list(csv.DictReader(io.StringIO((out / cli.GRADEBOOK).read_text())))
    graded = correct_rows(rows, shas)
    assert all(p["score"] == 100 for p in graded.values()), graded
    return graded


# --------------------------------------------------------------------------- the property


@pytest.mark.parametrize("entry", list(CORPUS))
def test_a_hostile_submission_changes_no_other_row_and_the_gradebook_is_complete(
        entry: str, alone: dict[str, dict[str, float]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "class"
    shas = correct_class(folder)
    files = CORPUS[entry]()
    for name, content in files.items():
        write(folder / name, content)
    rows, _ = grade(folder, tmp_path / "out", capsys, "--jobs", "2", "--isolation", "process")
    assert len(rows) == len(shas) + submissions_in(files), [r["student"] for r in rows]
    assert len({r["student"].lower() for r in rows}) == len(rows)
    assert correct_rows(rows, shas) == alone


def test_renamed_duplicates_keep_their_own_points(alone: dict[str, dict[str, float]], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """alice/ (partial), alice.ipynb (correct) and alice-2.ipynb (partial): never a partial notebook reported as
    correct, nor the correct one as partial."""
    folder = tmp_path / "class"
    write(folder / "alice" / "mlp.ipynb", PARTIAL)
    write(folder / "alice.ipynb", CORRECT)
    write(folder / "alice-2.ipynb", with_cells(PARTIAL, "x = 2"))
    rows, _ = grade(folder, tmp_path / "out", capsys, "--jobs", "2", "--isolation", "process")
    assert {(r["student"], r["notebook"]) for r in rows} == {
        ("alice", "mlp.ipynb"), ("alice-2", "alice-2.ipynb"), ("alice-3", "alice.ipynb")}
    score = {r["notebook"]: float(r["score"]) for r in rows}
    assert score["alice.ipynb"] == alone["alice.ipynb"]["score"] == 100
    assert score["mlp.ipynb"] == score["alice-2.ipynb"] < 50
    for row in rows:
        report = json.loads((tmp_path / "out" / row["student"] / "report.json").read_text())
        assert report["provenance"]["notebook"] == row["notebook"]


def test_student_folders_never_replace_the_batch_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, out = tmp_path / "class", tmp_path / "out"
    for name, content in CORPUS["batch-file-names"]().items():
        write(folder / name, content)
    grade(folder, out, capsys, "--isolation", "process")
    for name in (cli.GRADEBOOK, cli.SUMMARY, cli.RUN_FILE):
        assert (out / name).is_file(), name
    assert json.loads((out / cli.RUN_FILE).read_text())["hidden_seed"] == 5


@pytest.mark.parametrize("isolation", ["process", "bwrap"])
def test_a_class_of_only_hostile_submissions_finishes_within_its_limits(
        isolation: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if isolation == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap cannot create namespaces here")
    folder = tmp_path / "class"
    expected = 0
    for build in CORPUS.values():
        files = build()
        expected += submissions_in(files)
        for name, content in files.items():
            write(folder / name, content)
    rows, seconds = grade(folder, tmp_path / "out", capsys, "--jobs", "2", "--isolation", isolation)
    assert len(rows) == expected
    assert seconds < expected * (NOTEBOOK_TIMEOUT + 10) / 2, seconds  # two grading processes


def test_a_rerun_never_keeps_a_report_made_for_another_submission(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A new submission that takes an earlier one's id (same bytes even) is graded, not given the other's report."""
    folder, out = tmp_path / "class", tmp_path / "out"
    write(folder / "alice.ipynb", CORRECT)
    grade(folder, out, capsys, "--isolation", "process")
    write(folder / "alice" / "mlp.ipynb", CORRECT)  # sorts first: it is "alice" now, the file "alice-2"
    capsys.readouterr()
    assert cli.main(["grade", str(folder), "-a", "mlp", "--out", str(out), *LIMITS, "--isolation", "process"]) == 0
    assert "0 already graded, 2 to grade" in capsys.readouterr().err
    rows, _ = grade(folder, out, capsys, "--isolation", "process")
    assert {(r["student"], r["notebook"]) for r in rows} == {("alice", "mlp.ipynb"), ("alice-2", "alice.ipynb")}
