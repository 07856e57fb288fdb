"""Does a deeper network cost the student more waiting? `jitgrade check` of the deep-mlp master against the mlp master.

Both warm (Numba's cache complete: the reference warm-up runs once, untimed, then one untimed run of each command),
sampled interleaved in the same run (a, b, a, b, ...) so that machine noise hits both alike. Target (issue 13): the
deep-mlp check (L = 3 hidden layers, as bundled) takes at most 1.5x the mlp check's median. Every command must
succeed: both masters earn every point.

    python benchmarks/bench_deep.py [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, Report, Target, parse_args  # noqa: E402
from bench_check import NUMBA_CACHE, WARM_UP_ALONE, child_env, command_probe, jitgrade_command, run_checked  # noqa: E402
from bench_sandbox import sample_interleaved  # noqa: E402

SLOWDOWN = 1.5  # issue 13: the deep-mlp check within 1.5x of the mlp check
ASSIGNMENTS = ("deep-mlp", "mlp")  # the candidate, then its baseline


def bench(report: Report, quick: bool) -> None:
    """The two warm checks, interleaved; the deep one against the mlp one."""
    env = child_env(NUMBA_CACHE)
    with tempfile.TemporaryDirectory(prefix="bench-deep-") as scratch:
        run_checked([sys.executable, "-c", WARM_UP_ALONE], env, scratch)
        commands = [
            [*jitgrade_command(), "check", str(REPO_ROOT / "assignments" / name / "solution.ipynb"), "-a", name, "-q"]
            for name in ASSIGNMENTS
        ]
        deep, mlp = sample_interleaved(
            [command_probe(cmd, env, scratch) for cmd in commands], rounds=2 if quick else 9, warmup=1
        )
    report.add(
        "check_deep",
        "jitgrade check of the deep-mlp master (L = 3, warm)",
        deep,
        baseline=mlp,
        baseline_label="jitgrade check of the mlp master",
        target=Target.min_speedup(1 / SLOWDOWN, f"at most {SLOWDOWN:g}x the mlp check"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("bench_deep", __doc__, argv)
    report = Report("bench_deep", quick=args.quick)
    report.notes["load_average_before"] = os.getloadavg()
    bench(report, args.quick)
    report.notes["load_average_after"] = os.getloadavg()
    report.print_table()
    print(f"\nresults written to {report.write_json(args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
