"""Run every benchmark (benchmarks/bench_*.py), one after the other, and collect their results.

Each benchmark runs in its own process (never two at once: they would time each other) with
--json bench-results/<name>.json, and --quick when given here. Their tables are printed as they
finish; at the end every table is printed again, re-rendered from the JSON, followed by a list of
the missed targets, and the lot is written to bench-results/SUMMARY.md. Exit code 1 when a
benchmark failed to run (a missed target is a result, not a failure). Used by `tox -e bench`.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_RESULTS_DIR, format_ratio, format_seconds, markdown_table  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
HEADERS = ["benchmark", "median", "baseline", "baseline median", "ratio", "target", "status"]


def discover(only: Sequence[str] = ()) -> list[Path]:
    """The benchmark scripts, sorted by name; `only` keeps those named (with or without bench_ and .py)."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if not only:
        return scripts
    wanted = {name.removesuffix(".py").removeprefix("bench_") for name in only}
    unknown = wanted - {s.stem.removeprefix("bench_") for s in scripts}
    if unknown:
        raise SystemExit(f"run_all: no benchmark named {', '.join(sorted(unknown))} in {BENCH_DIR}")
    return [s for s in scripts if s.stem.removeprefix("bench_") in wanted]


def run(script: Path, results: Path, quick: bool) -> tuple[Path, int, float]:
    """Run one benchmark with its output going straight to ours; (its JSON, exit code, seconds)."""
    out = results / f"{script.stem}.json"
    cmd = [sys.executable, str(script), "--json", str(out), *(["--quick"] if quick else [])]
    out.unlink(missing_ok=True)  # a stale file must not pass for this run's results
    print(f"\n## {script.stem}{' (quick)' if quick else ''}\n", flush=True)
    start = time.perf_counter()
    code = subprocess.run(cmd, cwd=BENCH_DIR.parent).returncode
    return out, code, time.perf_counter() - start


def table(results: dict[str, Any]) -> str:
    """A benchmark's Markdown table, from its JSON (the same columns its own table has)."""
    rows = []
    for row in results["results"].values():
        baseline = row.get("baseline")
        rows.append([
            row["description"],
            format_seconds(row["median_s"]),
            baseline["label"] if baseline else "-",
            format_seconds(baseline["median_s"]) if baseline else "-",
            format_ratio(row["speedup"]) if row.get("speedup") else "-",
            row["target"]["description"] if row.get("target") else "-",
            row["status"],
        ])
    return markdown_table(HEADERS, rows)


def summary(outcomes: list[tuple[Path, Path, int, float]]) -> tuple[str, list[str]]:
    """Every table under a heading, then the missed targets and the benchmarks that failed."""
    parts, missed, failed = [], [], []
    for script, out, code, seconds in outcomes:
        if code != 0 or not out.is_file():
            failed.append(f"{script.stem}: exit code {code}")
            continue
        results = json.loads(out.read_text())
        quick = " (quick)" if results.get("quick") else ""
        parts.append(f"## {results['name']}{quick}, {seconds:.0f} s\n\n{table(results)}\n")
        for row_id, row in results["results"].items():
            if row["status"] == "MISS":
                missed.append(f"{results['name']}.{row_id}: {row['description']}: "
                              f"{format_seconds(row['median_s'])}, target {row['target']['description']}")
    lines = ["# Benchmark results", "", *parts]
    lines += ["## Missed targets", "", *([f"- {m}" for m in missed] or ["none"]), ""]
    if failed:
        lines += ["## Failed to run", "", *[f"- {f}" for f in failed], ""]
    return "\n".join(lines), failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help="run only these (e.g. sandbox check)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, metavar="DIR",
                        help="where the JSON files and SUMMARY.md go (default: bench-results/ at the repo root)")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for script in discover(args.only):
        out, code, seconds = run(script, args.results, args.quick)
        outcomes.append((script, out, code, seconds))
    text, failed = summary(outcomes)
    print("\n" + text)
    (args.results / "SUMMARY.md").write_text(text)
    print(f"results in {args.results}/ ({', '.join(out.name for _, out, _, _ in outcomes)}, SUMMARY.md)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
