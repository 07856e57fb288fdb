"""Smoke test: benchmarks/bench_reference.py --quick runs end to end and writes the documented JSON.

Only the shape of the results is checked, never the timings: performance is measured by the
benchmarks themselves, not asserted in (noisy, shared-machine) tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_ROWS = {
    "fwd_bwd_small",
    "fwd_bwd_large",
    "numgrad_full",
    "start_cold",
    "start_warm",
    "start_warm_import_only",
    "import_numpy",
    "import_numba",
    "numba_cached_floor",
}


@pytest.mark.slow
def test_bench_reference_quick_writes_every_row_with_medians_samples_and_a_status(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_reference.py"), "--quick", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| benchmark" in proc.stdout  # the Markdown table was printed

    results = json.loads(out.read_text())
    assert {"name", "quick", "created", "environment", "notes", "results"} <= set(results)
    assert results["name"] == "bench_reference" and results["quick"] is True
    assert {"python", "numpy", "numba", "cpu_count"} <= set(results["environment"])
    assert set(results["results"]) == EXPECTED_ROWS

    for row_id, row in results["results"].items():
        assert {"description", "median_s", "samples_s", "number", "baseline", "speedup", "target", "status"} <= set(
            row
        ), row_id
        assert row["samples_s"] and row["median_s"] > 0, row_id
        assert row["status"] in {"PASS", "MISS", "INFO"}, row_id
        if row["baseline"] is not None:
            assert {"label", "median_s", "samples_s"} <= set(row["baseline"]), row_id
            assert row["speedup"] > 0, row_id

    rows = results["results"]
    for with_target in ("fwd_bwd_small", "fwd_bwd_large", "numgrad_full", "start_warm"):
        assert rows[with_target]["target"] is not None and rows[with_target]["status"] in {"PASS", "MISS"}
    assert rows["start_warm"]["target"]["kind"] == "max_seconds"
    assert rows["numgrad_full"]["target"] == {"kind": "min_speedup", "value": 20.0, "description": ">= 20x faster"}


@pytest.mark.slow
def test_bench_deep_quick_compares_the_deep_check_with_the_mlp_check(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_deep.py"), "--quick", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["results"]["check_deep"]
    assert row["baseline"]["label"] == "jitgrade check of the mlp master" and row["status"] in ("PASS", "MISS")
