"""Smoke tests: bench_sandbox.py --quick and bench_check.py --quick run end to end and write the documented JSON.

Only the shape of the results is checked, never the timings: performance is measured by the
benchmarks themselves, not asserted in (noisy, shared-machine) tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader.sandbox.zygote import bwrap_usable

REPO_ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {"description", "median_s", "samples_s", "number", "baseline", "speedup", "target", "status"}
SANDBOX_ROWS_PER_ISOLATION = ("sandbox_warm_{}", "sandbox_cold_{}", "worker_start_{}", "zygote_ready_{}")
SANDBOX_ROWS = {
    "import_numpy",
    "call_roundtrip",
    "call_roundtrip_empty",
    "frames_in_process",
    "pipe_pingpong",
    "numgrad_callbacks_call",
    "numgrad_per_callback",
}
CHECK_ROWS = {
    "check_e2e",
    "check_students_install",
    "nbconvert_execute",
    "import_numpy",
    "import_numba",
    "numba_cached_floor",
    "phase_total",
    "what_if_freeze",
    "what_if_lazy",
    "what_if_freeze_lazy",
}
CHECK_PHASES = {
    "phase_interpreter", "phase_import_cli", "phase_read_notebook", "phase_load_assignment", "phase_launch_zygote",
    "phase_import_grading", "phase_zygote_wait", "phase_execute", "phase_reference_wait", "phase_checks",
    "phase_report", "phase_exit", "phase_zygote_ready_at", "phase_reference_ready_at", "phase_warm_up_thread",
    "phase_alone_interpreter", "phase_alone_import_numba", "phase_alone_import_reference",
    "phase_alone_import_checks", "phase_alone_warm_up", "phase_alone_exit",
}


def run_quick(script: str, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), "--quick", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| benchmark" in proc.stdout  # the Markdown table was printed
    return json.loads(out.read_text())


def assert_report_shape(results: dict, name: str) -> None:
    assert {"name", "quick", "created", "environment", "notes", "results"} <= set(results)
    assert results["name"] == name and results["quick"] is True
    assert {"python", "numpy", "cpu_count"} <= set(results["environment"])
    for row_id, row in results["results"].items():
        assert set(row) >= ROW_KEYS, row_id
        assert row["samples_s"] and row["median_s"] > 0, row_id
        assert row["status"] in {"PASS", "MISS", "INFO"}, row_id
        if row["baseline"] is not None:
            assert {"label", "median_s", "samples_s"} <= set(row["baseline"]), row_id
            assert row["speedup"] > 0, row_id
        if row["target"] is not None:
            assert row["status"] in {"PASS", "MISS"}, row_id


@pytest.mark.slow
def test_bench_sandbox_quick_reports_start_rows_per_isolation_and_round_trips(tmp_path):
    results = run_quick("bench_sandbox.py", tmp_path / "sandbox.json")
    assert_report_shape(results, "bench_sandbox")

    isolations = ["process", "bwrap"] if bwrap_usable() else ["process"]
    assert results["notes"]["isolations"] == isolations
    expected = SANDBOX_ROWS | {row.format(iso) for iso in isolations for row in SANDBOX_ROWS_PER_ISOLATION}
    assert set(results["results"]) == expected

    rows = results["results"]
    for iso in isolations:
        for variant in ("warm", "cold"):
            row = rows[f"sandbox_{variant}_{iso}"]
            assert row["target"]["kind"] == "min_speedup" and row["baseline"]["label"] == "python -c 'import numpy'"
    assert rows["call_roundtrip"]["target"] == {"kind": "max_seconds", "value": 200e-6, "description": "<= 200 us"}
    assert rows["numgrad_per_callback"]["baseline"] is not None
    assert {"request", "reply"} <= set(results["notes"]["frame_bytes"])
    assert len(results["notes"]["start_summary"]) == 2 * len(isolations)


@pytest.mark.slow
def test_bench_check_quick_reports_end_to_end_floors_phases_and_what_ifs(tmp_path):
    results = run_quick("bench_check.py", tmp_path / "check.json")
    assert_report_shape(results, "bench_check")
    # The warm-up thread's markers exist when it finished before the check did (always, on a warm cache).
    optional = {"phase_reference_ready_at", "phase_warm_up_thread"}
    assert (CHECK_ROWS | CHECK_PHASES) - optional <= set(results["results"]) <= CHECK_ROWS | CHECK_PHASES

    rows = results["results"]
    assert rows["check_e2e"]["target"] == {"kind": "max_seconds", "value": 1.0, "description": "<= 1.0 s"}
    assert rows["check_e2e"]["baseline"]["label"] == "jupyter nbconvert --execute"
    assert rows["phase_total"]["baseline"]["label"] == "jitgrade check"
    assert results["notes"]["import_self_time_by_package_s"]
    assert {"check", "nbconvert"} <= set(results["notes"]["commands"])
