"""benchmarks/bench_torch.py: who is charged with importing torch, the class it grades, its skip without torch,
and (with torch, slow) a --quick run end to end.

Only the shape of the timings is checked, never their values: performance is measured by the benchmark
itself, not asserted in (noisy, shared-machine) tests. The count of torch imports is asserted: it is a fact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_torch  # noqa: E402

PYTHON = b"/usr/bin/python3\0"
FORKSERVER = PYTHON + b"-c\0from multiprocessing.forkserver import main\0"
BATCH = PYTHON + b"jitgrade\0grade\0"
BWRAP = b"bwrap\0--unshare-all\0" + PYTHON + b"-I\0/tmp/jitgrade-runtime-x/worker.py\0"
SANDBOX = PYTHON + b"-I\0/tmp/jitgrade-runtime-x/worker.py\0"
ROW_KEYS = {"description", "median_s", "samples_s", "number", "baseline", "speedup", "target", "status"}


def tree(*processes: tuple[int, int, bytes]) -> tuple[dict[int, int], dict[int, str], dict[int, bytes]]:
    """parents, kinds and command lines of (pid, parent, command line) rows, parents first, as TorchWatch sees them."""
    parents, kinds, commands = {}, {}, {}
    for pid, parent, command in processes:
        parents[pid], commands[pid] = parent, command
        kinds[pid] = bench_torch.process_kind(command, kinds.get(parent))
    return parents, kinds, commands


# A batch (1) with its fork server (2) and two pool processes forked from it (3, 4), each with a zygote under
# bubblewrap (3 -> 5 -> 6 -> 7, 4 -> 8 -> 9 -> 10) and workers forked from the zygotes (11, 12, 13).
POOL = (
    (1, 0, BATCH), (2, 1, FORKSERVER), (3, 2, FORKSERVER), (4, 2, FORKSERVER),
    (5, 3, BWRAP), (6, 5, BWRAP), (7, 6, SANDBOX), (8, 4, BWRAP), (9, 8, BWRAP), (10, 9, SANDBOX),
    (11, 7, SANDBOX), (12, 7, SANDBOX), (13, 10, SANDBOX),
)  # fmt: skip
# The same without bubblewrap (isolation "process"): each zygote is a child of its pool process.
POOL_PROCESS = tuple((pid, {7: 3, 10: 4}.get(pid, parent), cmd) for pid, parent, cmd in POOL if cmd != BWRAP)
POOLS = pytest.mark.parametrize("pool", [POOL, POOL_PROCESS], ids=["bwrap", "process"])


def test_bubblewrap_naming_worker_py_is_bwrap_and_a_zygotes_forks_are_workers():
    _, kinds, _ = tree(*POOL)
    assert {pid: kinds[pid] for pid in (1, 2, 3, 5, 6, 7, 11)} == {
        1: "grader", 2: "grader", 3: "grader", 5: "bwrap", 6: "bwrap", 7: "zygote", 11: "worker"
    }  # fmt: skip


@POOLS
def test_each_zygote_is_one_load_charged_to_its_pool_process_and_its_workers_none(pool):
    summary = bench_torch.torch_loads(*tree(*pool), mapped={7, 10, 11, 12, 13})
    assert summary["zygotes"] == [7, 10] and summary["zygotes_without_torch"] == []
    assert summary["grading_processes"] == [3, 4]
    assert summary["loads_by_grading_process"] == {"3": 1, "4": 1}
    bench_torch.assert_torch_loaded_once(summary, "grade")


def test_a_restarted_zygote_is_a_second_load_of_its_grading_process_and_fails():
    restarted = (*POOL, (14, 3, BWRAP), (15, 14, BWRAP), (16, 15, SANDBOX))
    summary = bench_torch.torch_loads(*tree(*restarted), mapped={7, 10, 16})
    assert summary["loads_by_grading_process"] == {"3": 2, "4": 1}
    with pytest.raises(AssertionError, match="grading process 3 loaded torch 2 times"):
        bench_torch.assert_torch_loaded_once(summary, "grade")


@POOLS
def test_a_grading_process_importing_torch_beside_its_zygote_fails_though_the_zygote_inherits_nothing_from_it(pool):
    summary = bench_torch.torch_loads(*tree(*pool), mapped={3, 7, 10})
    assert summary["loads_by_grading_process"] == {"3": 2, "4": 1}
    with pytest.raises(AssertionError, match="grading process 3 loaded torch 2 times"):
        bench_torch.assert_torch_loaded_once(summary, "grade")


def test_pool_processes_forked_from_a_fork_server_holding_torch_inherit_it():
    summary = bench_torch.torch_loads(*tree(*POOL[:4]), mapped={2, 3, 4})
    assert [row["pid"] for row in summary["loaders"]] == [2]


@pytest.mark.parametrize(
    ("mapped", "message"),
    [({7}, r"zygote\(s\) \[10\] never mapped libtorch"), (set(), r"zygote\(s\) \[7, 10\] never mapped")],
)
def test_a_zygote_that_never_loaded_torch_fails(mapped, message):
    with pytest.raises(AssertionError, match=message):
        bench_torch.assert_torch_loaded_once(bench_torch.torch_loads(*tree(*POOL), mapped=mapped), "grade")


def test_a_tree_without_any_zygote_fails_rather_than_counting_nothing():
    with pytest.raises(AssertionError, match="no sandbox zygote was seen"):
        bench_torch.assert_torch_loaded_once(bench_torch.torch_loads(*tree(*POOL[:4]), mapped=()), "grade")


def test_the_class_is_one_template_in_ten_every_notebook_with_its_own_bytes(tmp_path):
    template = tmp_path / "template.ipynb"
    template.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    students = bench_torch.make_class(tmp_path / "class", template, 20)
    files = sorted((tmp_path / "class").glob("*.ipynb"))
    assert len(files) == 20 and len({f.read_bytes() for f in files}) == 20
    assert sorted(name for name, is_master in students.items() if not is_master) == ["template-009", "template-019"]


def test_without_torch_nothing_is_measured_and_the_json_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_torch, "torch_available", lambda: False)
    assert bench_torch.main(["--quick", "--json", str(tmp_path / "torch.json")]) == 0
    results = json.loads((tmp_path / "torch.json").read_text())
    assert results["results"] == {} and "torch is not installed" in results["notes"]["skipped"]
    assert "skipped" in capsys.readouterr().out


WATCHED = textwrap.dedent(
    """
    import os, subprocess, sys, time
    import torch
    child = os.fork()  # a fork inherits torch: not a load
    if child == 0:
        time.sleep(4)
        os._exit(0)
    subprocess.run([sys.executable, "-c", "import torch, time; time.sleep(2)"], check=True)  # its own load
    os.waitpid(child, 0)
    """
)


@pytest.mark.slow
def test_the_watch_charges_a_real_process_and_its_exec_d_child_but_not_its_fork():
    pytest.importorskip("torch")
    proc = subprocess.Popen([sys.executable, "-c", WATCHED])
    with bench_torch.TorchWatch(proc.pid, interval=0.1) as watch:
        assert proc.wait(timeout=120) == 0
    children = {pid for pid, parent in watch.parents.items() if parent == proc.pid}
    exec_d = {pid for pid in children if watch.commands[pid] != watch.commands[proc.pid]}
    assert len(children) == 2 and len(exec_d) == 1 and children <= watch.mapped  # both children map torch ...
    assert [row["pid"] for row in watch.summary()["loaders"]] == sorted({proc.pid, *exec_d})  # ... one loaded it


@pytest.mark.slow
def test_bench_torch_quick_times_the_check_beside_its_floors_and_counts_one_torch_load_per_grading_process(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "torch.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_torch.py"), "--quick", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| benchmark" in proc.stdout and "per grading process" in proc.stdout
    results = json.loads(out.read_text())
    assert results["name"] == "bench_torch" and results["quick"] is True
    assert set(results["results"]) == {
        "check_torch", "check_torch_vs_numpy", "check_torch_cold", "check_numpy", "import_torch", "import_numpy",
        "batch_jobs2", "per_submission", "per_submission_amortized",
    }  # fmt: skip
    for row_id, row in results["results"].items():
        assert set(row) >= ROW_KEYS and row["samples_s"] and row["median_s"] > 0, row_id
    check = results["results"]["check_torch"]
    assert check["baseline"]["label"] == "import torch + NumPy check" and check["status"] in {"PASS", "MISS"}
    assert check["target"] == {"kind": "min_speedup", "value": 1 / 1.5,
                               "description": "within 1.5x of import torch + NumPy check"}
    assert len(results["results"]["per_submission"]["samples_s"]) == results["notes"]["class_size"] == 20
    (watch,) = results["notes"]["torch_loads"]
    assert len(watch["zygotes"]) == len(watch["grading_processes"]) == 2  # --jobs 2: one zygote each
    assert set(watch["loads_by_grading_process"].values()) == {1}
    assert results["notes"]["torch_loads_max_per_grading_process"] == 1
