"""Batch grading at class scale (`jitgrade grade --jobs N | --scheduler ADDRESS`): parallel and on
Dask with the same reports, never stalled by one bad submission, resumable, and crash-safe down
to a SIGKILL of the whole batch or of one of its grading processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import solution_cells, write_notebook

from grader import cli, executors
from grader.sandbox.zygote import bwrap_usable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assignments" / "mlp" / "examples"
# the first eight examples (later ones exercise diagnoses, not the batch): the classes below keep their size
EIGHT = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
SCHEMA = json.loads((ROOT / "grader" / "reports" / "report.schema.json").read_text())
LIMITS = ["--cell-timeout", "2", "--call-timeout", "2"]
RUNTIME = re.compile(r"/tmp/jitgrade-runtime-[\w]+")
# Process-level isolation: no PID namespace takes the sandbox workers down with their zygote.
TWELVE = ["--jobs", "2", "--seed", "11", "--isolation", "process"]
KILLS_ITS_WORKER = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


# --------------------------------------------------------------------------- helpers


def grade_command(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "grader", "grade", str(folder), "-a", "mlp", "--out", str(out), *LIMITS, *extra]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def without_timings(report: dict[str, Any]) -> dict[str, Any]:
    """The report minus what may differ between two gradings of the same notebook: timings."""
    report = json.loads(json.dumps(report))
    for key in ("graded_at", "wall_seconds"):
        report["provenance"].pop(key)
    if report["execution"] is not None:
        report["execution"].pop("seconds")
        for cell in report["execution"]["cells"]:
            cell.pop("seconds")
    return report


def reports(out: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/report.json"))}


def temporaries(out: Path) -> list[Path]:
    return sorted(out.rglob(".*.tmp"))


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process on the machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        found[int(entry.name)] = (int(ppid), state, cmdline)
    return found


def descendants(pid: int, table: dict[int, tuple[int, str, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def living(pids: set[int] | None = None, runtimes: set[str] = frozenset()) -> dict[int, str]:
    """Living (not zombie) processes among `pids` or running from one of the `runtimes`: pid -> command line."""
    return {pid: cmd for pid, (_, state, cmd) in processes().items()
            if state != "Z" and ((pids is not None and pid in pids) or any(r in cmd for r in runtimes))}


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def grading_process(pid: int, table: dict[int, tuple[int, str, str]]) -> int:
    """The grading (pool) process a sandbox process belongs to: its nearest multiprocessing ancestor."""
    while pid in table and "multiprocessing" not in table[pid][2]:
        pid = table[pid][0]
    return pid


def sandboxes(batch: int, table: dict[int, tuple[int, str, str]] | None = None) -> dict[int, str]:
    """The batch's sandbox processes (zygotes and student workers, not bubblewrap): pid -> command line."""
    table = processes() if table is None else table
    return {pid: table[pid][2] for pid in descendants(batch, table)
            if "worker.py" in table[pid][2] and not table[pid][2].startswith("bwrap")}


def pool_processes(batch: int) -> list[int]:
    """The grading processes that own sandboxes, from one snapshot of the process table (a worker that exits
    between two snapshots would otherwise be counted as its own grading process)."""
    table = processes()
    return sorted({grading_process(pid, table) for pid in sandboxes(batch, table)})


def variant(source: Path, target: Path, marker: str) -> None:
    """A copy of an example notebook with a harmless extra cell (so its bytes and hash differ)."""
    nb = json.loads(source.read_text())
    nb["cells"].insert(3, {"cell_type": "code", "id": f"extra-{marker}", "metadata": {}, "outputs": [],
                           "execution_count": None, "source": f"print('variant {marker}')"})
    target.write_text(json.dumps(nb, indent=1))


# --------------------------------------------------------------------------- classes


@pytest.fixture(scope="module")
def mixed_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The eight examples (grace never finishes her last cell), garbage, a notebook that kills its
    own worker, and a student folder without a notebook."""
    folder = tmp_path_factory.mktemp("mixed") / "class"
    folder.mkdir()
    for name in EIGHT:
        shutil.copy(EXAMPLES / f"{name}.ipynb", folder)
    (folder / "empty.ipynb").write_bytes(b"")
    (folder / "truncated.ipynb").write_bytes((EXAMPLES / "alice.ipynb").read_bytes()[:700])
    (folder / "binary.ipynb").write_bytes(bytes(range(256)) * 8)
    (folder / "json.ipynb").write_text('{"hello": "world"}')
    write_notebook(folder / "kamikaze.ipynb", [KILLS_ITS_WORKER, *solution_cells()])
    (folder / "nobody").mkdir()
    (folder / "nobody" / "notes.txt").write_text("forgot to upload")
    return folder


@pytest.fixture(scope="module")
def mixed_local(mixed_class: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("mixed-local")
    return run(grade_command(mixed_class, out, "--jobs", "2", "--seed", "5")), out


@pytest.fixture(scope="module")
def mixed_dask(mixed_class: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    from distributed import LocalCluster

    out = tmp_path_factory.mktemp("mixed-dask")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        done = run(grade_command(mixed_class, out, "--scheduler", cluster.scheduler_address, "--seed", "5"))
    return done, out


@pytest.fixture(scope="module")
def twelve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class of twelve: the examples and four variants of them (grace's endless cell included)."""
    folder = tmp_path_factory.mktemp("twelve") / "class"
    folder.mkdir()
    for name in EIGHT:
        shutil.copy(EXAMPLES / f"{name}.ipynb", folder)
    for name in ("alice", "bob", "erin", "grace"):
        variant(EXAMPLES / f"{name}.ipynb", folder / f"{name}2.ipynb", name)
    return folder


@pytest.fixture(scope="module")
def twelve_clean(twelve: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reports of a clean, uninterrupted run of the class of twelve."""
    out = tmp_path_factory.mktemp("twelve-clean")
    done = run(grade_command(twelve, out, *TWELVE))
    assert done.returncode == 0, done.stderr
    return out


# --------------------------------------------------------------------------- one bad submission


def test_one_bad_submission_never_stalls_the_batch_each_gets_its_report(mixed_local: tuple) -> None:
    done, out = mixed_local
    assert done.returncode == 0, done.stderr
    got = reports(out)
    assert set(got) == {"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "empty", "truncated",
                        "binary", "json", "kamikaze", "nobody"}
    for report in got.values():
        jsonschema.validate(report, SCHEMA)
    assert "empty" in got["empty"]["error"] and "invalid JSON" in got["truncated"]["error"]
    assert "not a notebook" in got["binary"]["error"] and "not a Jupyter notebook" in got["json"]["error"]
    assert got["nobody"]["error"].startswith("no notebook")
    assert all(got[s]["score"] == 0 for s in ("empty", "truncated", "binary", "json", "nobody"))
    assert got["grace"]["execution"]["timeouts"] == [29] and got["grace"]["score"] > 80
    assert got["kamikaze"]["execution"]["crashes"] == [0] and got["kamikaze"]["score"] == 100
    assert got["alice"]["score"] == 100 and got["heidi"]["score"] == 15
    assert not temporaries(out)
    assert (out / "gradebook.csv").read_text().count("\n") == 15 and (out / "summary.html").is_file()


def test_dask_grades_the_same_reports_as_the_local_pool(mixed_local: tuple, mixed_dask: tuple) -> None:
    done, out = mixed_dask
    assert done.returncode == 0, done.stderr
    local, remote = reports(mixed_local[1]), reports(out)
    assert set(local) == set(remote)
    for student in local:
        assert without_timings(remote[student]) == without_timings(local[student]), student


# --------------------------------------------------------------------------- resumable


def test_a_rerun_skips_what_is_graded_and_regrades_what_changed(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name in ("alice", "bob", "heidi"):
        shutil.copy(EXAMPLES / f"{name}.ipynb", folder)

    def grade(*extra: str) -> str:
        """`jitgrade grade` in this process (it starts its pool all the same); returns what it said."""
        capsys.readouterr()
        assert cli.main(grade_command(folder, out, *extra)[3:]) == 0
        return capsys.readouterr().err

    assert "0 already graded, 3 to grade" in grade()
    first = {p: p.read_bytes() for p in out.glob("*/*")}
    assert len(first) == 9  # report, feedback page and executed notebook per student
    assert "3 already graded, 0 to grade" in grade()
    assert {p: p.read_bytes() for p in out.glob("*/*")} == first  # not even rewritten

    variant(EXAMPLES / "bob.ipynb", folder / "bob.ipynb", "resubmitted")
    (out / "heidi" / "feedback.html").unlink()
    said = grade()
    assert "2 already graded, 1 to grade" in said and "[1/1] bob" in said
    assert (out / "alice" / "report.json").read_bytes() == first[out / "alice" / "report.json"]
    assert (out / "heidi" / "feedback.html").read_bytes() == first[out / "heidi" / "feedback.html"]  # re-rendered
    assert json.loads((out / "bob" / "report.json").read_text())["provenance"]["notebook_sha256"] != \
        json.loads(first[out / "bob" / "report.json"])["provenance"]["notebook_sha256"]

    assert "0 already graded, 3 to grade" in grade("--force")
    assert "0 already graded, 3 to grade" in grade("--seed", "12345")
    said = grade("--seed", "12345", "--cell-timeout", "3")
    assert "0 already graded, 3 to grade" in said and "limits changed" in said


def test_report_folders_stay_distinct_when_student_ids_clean_up_alike() -> None:
    folders = cli._folders(["Ann Lee", "Ann_Lee", "ann lee", "../etc", "bob"])
    assert folders == {"Ann Lee": "Ann_Lee", "Ann_Lee": "Ann_Lee-2", "ann lee": "ann_lee-3", "../etc": "etc",
                       "bob": "bob"}


# --------------------------------------------------------------------------- crash-safe


def test_sigkill_of_the_batch_loses_no_report_and_leaves_nothing_running(twelve: Path, twelve_clean: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = grade_command(twelve, out, *TWELVE)
    with open(tmp_path / "stderr", "w") as log:
        batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: batch.poll() is not None or len(list(out.glob("*/report.json"))) >= 3, 120, "reports")
        assert batch.poll() is None, (tmp_path / "stderr").read_text()
        second = run(grade_command(twelve, out, "--seed", "11"))
        assert second.returncode == 2 and "another jitgrade grade is writing" in second.stderr
        table = processes()
        family = descendants(batch.pid, table) | {batch.pid}
        runtimes = {m for pid in family for m in RUNTIME.findall(table.get(pid, (0, "", ""))[2])}
        assert len(runtimes) == 2  # one sandbox zygote per grading process
    finally:
        os.killpg(batch.pid, signal.SIGKILL)
        batch.wait()
    # Pool processes, zygotes and student workers all go; so do the zygotes' runtime folders.
    wait_for(lambda: not living(family, runtimes), 20, f"the batch's processes to exit: {living(family, runtimes)}")
    wait_for(lambda: not any(Path(r).exists() for r in runtimes), 10, "the runtime folders to be removed")

    finished = {p.parent.name: p.read_bytes() for p in out.glob("*/report.json")}
    assert len(finished) >= 3
    for data in finished.values():
        jsonschema.validate(json.loads(data), SCHEMA)
    # A kill between a write and its rename leaves a temporary file: the rerun removes any it finds.
    (out / "bob" / ".report.json.k1ll3d0x.tmp").write_text('{"score": ')
    done = run(command)
    assert done.returncode == 0, done.stderr
    assert f"{len(finished)} already graded, {12 - len(finished)} to grade" in done.stderr
    assert not temporaries(out)
    for name, data in finished.items():
        assert (out / name / "report.json").read_bytes() == data  # kept as it was, not regraded
    final, clean = reports(out), reports(twelve_clean)
    assert set(final) == set(clean) and len(final) == 12
    for student in clean:
        assert without_timings(final[student]) == without_timings(clean[student]), student


def test_a_grading_process_killed_mid_batch_is_replaced_and_the_class_completes(twelve: Path, twelve_clean: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(tmp_path / "stderr", "w") as log:
        batch = subprocess.Popen(grade_command(twelve, out, *TWELVE), stdout=subprocess.DEVNULL, stderr=log,
                                 start_new_session=True)
    try:
        wait_for(lambda: batch.poll() is not None or len(list(out.glob("*/report.json"))) >= 1, 120, "a report")
        pool = pool_processes(batch.pid)
        assert len(pool) == 2 and batch.poll() is None
        os.kill(pool[0], signal.SIGKILL)  # as the OOM killer would
        assert batch.wait(timeout=240) == 0, (tmp_path / "stderr").read_text()
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
    final, clean = reports(out), reports(twelve_clean)
    assert set(final) == set(clean)
    for student in clean:
        assert final[student]["error"] is None, final[student]["error"]
        assert without_timings(final[student]) == without_timings(clean[student]), student


# --------------------------------------------------------------------------- the self-healing pool


def square_unless_13(x: int) -> int:
    """Kills the process running it for 13, as a grading process taken down by a notebook would die."""
    if x == 13:
        os._exit(70)
    time.sleep(0.02)
    return x * x


def test_the_pool_isolates_an_item_that_takes_its_process_down_and_finishes_the_rest() -> None:
    results = dict(executors.run_pool(square_unless_13, range(24), 2))
    assert results.pop(13) == executors.Crashed(executors.MAX_CRASHES)
    assert results == {x: x * x for x in range(24) if x != 13}




@pytest.mark.parametrize("isolation", ["bwrap", "process"])
def test_a_grading_process_killed_while_a_notebook_spins_leaves_no_worker_behind(isolation: str,
                                                                                 tmp_path: Path) -> None:
    if isolation == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap cannot create namespaces here")
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    shutil.copy(EXAMPLES / "grace.ipynb", folder)
    variant(EXAMPLES / "grace.ipynb", folder / "grace2.ipynb", "2")
    batch = subprocess.Popen(grade_command(folder, out, "--jobs", "2", "--seed", "3", "--isolation", isolation),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runtimes: set[str] = set()
    try:
        spinning: list[int] = []

        def a_worker_spins() -> bool:
            spinning[:] = [pid for pid in sandboxes(batch.pid) if cpu_seconds(pid) > 0.5]  # grace's endless cell
            return bool(spinning) or batch.poll() is not None

        wait_for(a_worker_spins, 120, "a student worker in grace's endless loop")
        table = processes()
        runtimes = set(RUNTIME.findall(table[spinning[0]][2]))
        os.kill(grading_process(spinning[0], table), signal.SIGKILL)
        assert batch.wait(timeout=240) == 0
        graded = reports(out)
        assert len(graded) == 2 and all(r["error"] is None and len(r["execution"]["timeouts"]) == 1
                                        for r in graded.values())
        wait_for(lambda: not living(runtimes=runtimes), 10, "the killed grading process's sandbox to go")
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
        for pid in living(runtimes=runtimes) if runtimes else {}:
            os.kill(pid, signal.SIGKILL)  # an orphan would otherwise spin until its CPU limit
