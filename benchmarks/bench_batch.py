"""How fast does `jitgrade grade` get through a class, locally and on Dask?

A generated class of 200 submissions (40 with --quick): the eight bundled examples of `mlp`,
each copied 25 times with small variations (the training cell's variables renamed and its
constants changed, a harmless print cell added), so that every notebook has its own bytes and
is graded in full. Grace's endless `while True: pass` becomes a bounded loop (it would otherwise
cost a cell timeout per copy); the runs use --cell-timeout 2 all the same.

The whole command is timed, from process start to exit (interpreter start, discovery, the pool
or the cluster connection, grading, writing every report, the gradebook and the summary page),
with --force so that every sample grades every notebook, in three configurations whose samples
are interleaved:
  - `--jobs 1` and `--jobs 2`: the local pool; target: --jobs 2 >= 1.8x faster than --jobs 1 on
    this 2-core machine, and the class of 200 in <= 30 s with --jobs 2;
  - `--scheduler ADDRESS`: a 2-worker LocalCluster (one thread each) started here; its workers
    are restarted before every sample, so that, like a local pool, each sample starts its grading
    processes cold; target: within 10% of --jobs 2.
Per-notebook cost (sample / class size) is set against the floor `python -c "import numpy"`,
measured in the same run. The reports of the three configurations are checked to be the same
(apart from timings) before any number is written.

    python benchmarks/bench_batch.py [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import REPO_ROOT, Report, Target, Timing, parse_args, time_command  # noqa: E402

EXAMPLES = REPO_ROOT / "assignments" / "mlp" / "examples"
LIMITS = ["--cell-timeout", "2", "--call-timeout", "2"]
SEED = "20240917"


# ----------------------------------------------------------------------------- the class


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def vary(notebook, k):
    """Copy k of a submission: renamed training variables, other constants, one more print cell."""
    nb = json.loads(json.dumps(notebook))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        if cell.get("id") == "training":
            src = re.sub(r"\bX_train\b", f"X_tr{k}", src)
            src = re.sub(r"\by_train\b", f"y_tr{k}", src)
            src = src.replace("range(301)", f"range({301 - 20 * (k % 5)})")
            src = src.replace("learning_rate, reg = 0.5, 1e-3", f"learning_rate, reg = {0.5 - 0.01 * (k % 4):g}, 1e-3")
        src = src.replace("while True:\n    pass", "for _ in range(100_000):\n    pass")
        cell["source"] = src
    nb["cells"].insert(3, {"cell_type": "code", "id": f"variant-{k}", "metadata": {}, "outputs": [],
                           "execution_count": None, "source": f"print('submission {k}: my own copy')"})
    return nb


def make_class(folder, size):
    """`size` notebooks, cycling through the examples (grace's loop bounded)."""
    folder.mkdir(parents=True)
    examples = sorted(EXAMPLES.glob("*.ipynb"))
    originals = {p.stem: json.loads(p.read_text()) for p in examples}
    for i in range(size):
        name = examples[i % len(examples)].stem
        k = i // len(examples)
        (folder / f"{name}-{k:03d}.ipynb").write_text(json.dumps(vary(originals[name], k), indent=1))
    return folder


# ----------------------------------------------------------------------------- runs


def grade_command(folder, out, *extra):
    return [sys.executable, "-m", "grader", "grade", str(folder), "-a", "mlp", "--out", str(out), "--force",
            "--seed", SEED, *LIMITS, *extra]


def without_timings(report):
    report["provenance"].pop("graded_at")
    report["provenance"].pop("wall_seconds")
    if report["execution"] is not None:
        report["execution"].pop("seconds")
        for cell in report["execution"]["cells"]:
            cell.pop("seconds")
    return report


def reports(out):
    return {p.parent.name: without_timings(json.loads(p.read_text())) for p in sorted(out.glob("*/report.json"))}


def check_same_reports(outs, size):
    """Refuse to report times for runs that did not grade the same class to the same reports."""
    first_label, first = None, None
    for label, out in outs.items():
        got = reports(out)
        if len(got) != size:
            raise AssertionError(f"{label}: {len(got)} reports for {size} submissions")
        errors = [s for s, r in got.items() if r["error"]]
        if errors:
            raise AssertionError(f"{label}: not graded: {errors[:5]}")
        if first is None:
            first_label, first = label, got
        elif got != first:
            different = [s for s in got if got[s] != first.get(s)]
            raise AssertionError(f"{label} and {first_label} differ (apart from timings) for {different[:5]}")


def main(argv=None):
    args = parse_args("bench_batch", __doc__, argv)
    from distributed import Client, LocalCluster

    size = 40 if args.quick else 200
    repeat = 1 if args.quick else 3
    report = Report("bench_batch", quick=args.quick)
    scratch = Path(tempfile.mkdtemp(prefix="jitgrade-bench-batch-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        folder = make_class(scratch / "class", size)
        outs = {"jobs1": scratch / "out-jobs1", "jobs2": scratch / "out-jobs2", "dask": scratch / "out-dask"}
        samples = {label: [] for label in outs}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            commands = {
                "jobs1": grade_command(folder, outs["jobs1"], "--jobs", "1"),
                "jobs2": grade_command(folder, outs["jobs2"], "--jobs", "2"),
                "dask": grade_command(folder, outs["dask"], "--scheduler", cluster.scheduler_address),
            }
            # One untimed run of each fills the Numba cache and the OS page cache for all of them.
            for command in commands.values():
                time_command(command, runs=1, env=env, cwd=scratch)
            for _ in range(repeat):
                for label, command in commands.items():
                    if label == "dask":
                        client.restart()  # cold grading processes, as a fresh local pool has
                    samples[label] += time_command(command, runs=1, env=env, cwd=scratch).samples
            warm = time_command(commands["dask"], runs=repeat, env=env, cwd=scratch)  # workers kept from before
        check_same_reports(outs, size)
        floor = time_command([sys.executable, "-c", "import numpy"], runs=3 if args.quick else 7, env=env, cwd=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    timings = {label: Timing(values) for label, values in samples.items()}
    per_notebook = {label: Timing([s / size for s in t.samples]) for label, t in timings.items()}
    rate = {label: size / t.median for label, t in timings.items()}
    report.notes.update({
        "class_size": size,
        "notebooks_per_second": rate,
        "per_notebook_seconds": {label: t.median for label, t in per_notebook.items()},
        "dask_warm_workers_seconds": warm.median,
        "load_average": os.getloadavg(),
        "cell_timeout_s": 2,
    })
    floor_label = "python -c 'import numpy'"
    report.add("jobs1", f"grade {size}, --jobs 1 ({rate['jobs1']:.1f} notebooks/s)", timings["jobs1"])
    report.add("jobs2", f"grade {size}, --jobs 2 ({rate['jobs2']:.1f} notebooks/s)", timings["jobs2"],
               target=None if args.quick else Target.max_seconds(30.0, "<= 30 s for 200"))
    report.add("dask", f"grade {size}, 2-worker LocalCluster ({rate['dask']:.1f} notebooks/s)", timings["dask"])
    report.add("speedup_jobs", "--jobs 2 vs --jobs 1", timings["jobs2"], baseline=timings["jobs1"],
               baseline_label="--jobs 1", target=Target.min_speedup(1.8))
    report.add("dask_overhead", "LocalCluster vs --jobs 2", timings["dask"], baseline=timings["jobs2"],
               baseline_label="--jobs 2", target=Target.min_speedup(1 / 1.1, "within 10% of --jobs 2"))
    report.add("dask_warm", f"grade {size}, LocalCluster, warm workers (informational)", warm,
               baseline=timings["jobs2"], baseline_label="--jobs 2")
    for label, text in (("jobs1", "--jobs 1"), ("jobs2", "--jobs 2"), ("dask", "LocalCluster")):
        report.add(f"per_notebook_{label}", f"per notebook, {text}", per_notebook[label], baseline=floor,
                   baseline_label=floor_label)
    report.add("import_numpy", f"floor: {floor_label}", floor)
    report.print_table()
    path = report.write_json(args.json)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
