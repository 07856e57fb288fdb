"""How long does a student wait for `jitgrade check`, compared with merely running the notebook in Jupyter?

End to end, as a student runs it: `jitgrade check assignments/mlp/solution.ipynb -q` in a new
process, warm (Numba's cache on disk: one untimed run first), target <= 1.0 s median; beside it,
in the same run with interleaved samples, the plain Jupyter floor `jupyter nbconvert --to notebook
--execute --stdout` of the same notebook, and `python -c "import numpy"`.

Where the check's time goes, measured from outside the grader (nothing in grader/ is changed):

- phases: the same `jitgrade check` run in a new process by a small driver that calls
  grader.cli.main unchanged, after installing a post-import hook that wraps a few grader
  functions (notebook read, assignment load, zygote launch/start/close, Sandbox.execute, the first
  call into the sandbox, Sandbox.close) and the start of the reference warm-up thread with
  timestamps. time.perf_counter is CLOCK_MONOTONIC, shared by all processes, so the parent's
  clock reading just before it starts the child is the origin of every phase:
  interpreter start -> import grader.cli -> read notebook -> load assignment -> launch zygote ->
  imports of the grading pipeline -> wait for the zygote -> notebook execution -> wait for the
  reference (Numba) -> checks -> result and report -> interpreter exit;
  plus when the background warm-up thread (import numba, the reference and the checks; load the
  cached kernels) finished, counted from process start;
- what that warm-up thread costs on its own, sequentially in a fresh process (import numba;
  import reference; import grader.checks.runner; reference.warmup.warm_up()), and the Numba
  floors: `python -c "import numba"` and a fresh process that loads one trivial cached @njit
  function (what any cached Numba code pays);
- which packages the check process imports, and what each costs (`python -X importtime`, one
  run, self time summed per top-level package; importtime itself slows imports down a little);
- the students' install: the same check in a process told that the reference is not installed, so that
  it replays the recorded visible expectations and never imports Numba (what `pip install jitgrade` runs);
- what-if rows: the instrumented check with a change one could make in grader/, applied by the
  driver, each against the unchanged instrumented check of the same run: gc.freeze() right
  before interpreter shutdown (whose final collections otherwise traverse every object Numba and
  LLVM created), no eager reference.warmup.warm_up() (kernels load from the cache on first use,
  only those the checks need), and both.

NUMBA_CACHE_DIR points every child at a private cache in the system's temporary directory, kept
between runs (Numba re-validates each entry against its source), so the repository's __pycache__
is neither used nor touched and only the first run on a machine compiles. The untimed first runs
complete it: reference.warmup.warm_up() alone, then one check. (A check alone on a cold cache
leaves it incomplete: its warm-up thread is a daemon, killed at exit in mid-compilation.) Every
command must succeed (the check must exit 0: the master solution earns every point).

    python benchmarks/bench_check.py [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO_ROOT,
    Report,
    Target,
    Timing,
    format_seconds,
    markdown_table,
    parse_args,
)
from bench_sandbox import sample_interleaved  # noqa: E402

SOLUTION = REPO_ROOT / "assignments" / "mlp" / "solution.ipynb"
CHECK_TARGET = Target.max_seconds(1.0, "<= 1.0 s")
BIN = Path(sys.executable).parent
# Persistent across runs (Numba re-validates every entry against its source file), so only the first
# run on a machine pays for compiling the reference.
NUMBA_CACHE = Path(tempfile.gettempdir()) / "jitgrade-bench-numba-cache"
# Variants of the instrumented check, each a change one could make in grader/ (see PHASE_DRIVER).
WHAT_IF = {
    "freeze": "gc.freeze() before exit (shutdown skips collecting Numba's objects)",
    "lazy": "no eager warm_up(): kernels load on first use",
    "freeze,lazy": "gc.freeze() before exit + kernels load on first use",
}

# `jitgrade check` as `pip install jitgrade` runs it: the same grader, told that the reference is not installed (as
# in a students' install, where it is not), so the checks replay the assignment's recorded values (grader.truth).
STUDENTS_DRIVER = """\
import sys
from grader import cli, truth
truth.available = lambda: False
sys.exit(cli.main(["check", sys.argv[1], "-q"]))
"""

# The driver of the phase breakdown: `jitgrade check NOTEBOOK -q` through grader.cli.main, with
# timestamps taken by wrappers that a post-import hook puts around a few grader functions (so
# every module is still imported exactly when the real command imports it).
PHASE_DRIVER = r'''
import time
STAMPS = {"script": time.perf_counter()}
import functools, gc, importlib.abc, importlib.machinery, json, os, sys, threading
WHAT_IF = set(filter(None, os.environ.get("JITGRADE_BENCH_WHAT_IF", "").split(",")))


def stamp(name, first=True):
    if not (first and name in STAMPS):
        STAMPS[name] = time.perf_counter()


def around(owner, attr, before=None, after=None):
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if before:
            stamp(before)
        try:
            return original(*args, **kwargs)
        finally:
            if after:
                stamp(after)

    setattr(owner, attr, wrapper)


def patch_cli(m):
    around(m, "_load_assignment", after="assignment loaded")


def patch_notebook(m):
    around(m, "read", after="notebook read")


def patch_zygote(m):
    around(m.Zygote, "launch", after="zygote launched")
    around(m.Zygote, "start", before="zygote wait begins", after="zygote ready")
    around(m.Zygote, "close", before="zygote close begins", after="zygote closed")


def patch_session(m):
    around(m.Sandbox, "execute", before="execute begins", after="execute ends")
    around(m.Sandbox, "call", before="first call")
    around(m.Sandbox, "seed", before="first call")
    around(m.Sandbox, "close", before="checks done")


def patch_warmup(m):
    m.warm_up = lambda: None  # what-if "lazy": each kernel loads from the cache on its first use


PATCHES = {"grader.cli": patch_cli, "grader.notebook": patch_notebook,
           "grader.sandbox.zygote": patch_zygote, "grader.sandbox.session": patch_session}
if "lazy" in WHAT_IF:
    PATCHES["reference.warmup"] = patch_warmup


class PostImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            PATCHES[name](module)

        spec.loader.exec_module = patched
        return spec


sys.meta_path.insert(0, PostImport())
thread_start = threading.Thread.start


def start(self):
    if self.name == "jitgrade-warm-up":
        target = self._target

        def run(*args, **kwargs):
            stamp("warm-up begins")
            try:
                target(*args, **kwargs)
            finally:
                stamp("reference ready")

        self._target = run
    thread_start(self)


threading.Thread.start = start
from grader import cli
stamp("grader.cli imported")
code = cli.main(["check", sys.argv[1], "-q"])
stamp("main returned")
sys.stdout.write(json.dumps({"exit": code, "stamps": STAMPS}) + "\n")
sys.stdout.flush()
if "freeze" in WHAT_IF:  # what-if: the final collections of interpreter shutdown skip every object so far
    gc.disable()
    gc.freeze()
sys.exit(code)
'''

# (row id, description, stamp where the phase starts, stamp where it ends); "origin" is the
# parent's clock just before it started the child, "exit" just after the child exited.
PHASES = [
    ("interpreter", "python start-up (interpreter, site)", "origin", "script"),
    ("import_cli", "import grader.cli", "script", "grader.cli imported"),
    ("read_notebook", "parse arguments, read the notebook", "grader.cli imported", "notebook read"),
    ("load_assignment", "load the assignment", "notebook read", "assignment loaded"),
    ("launch_zygote", "Zygote(): private paths, launch", "assignment loaded", "zygote launched"),
    ("import_grading", "import the grading pipeline, Grader.start", "zygote launched", "execute begins"),
    ("zygote_wait", "wait for the zygote to be ready", "zygote wait begins", "zygote ready"),
    ("execute", "worker start + notebook execution", "zygote ready", "execute ends"),
    ("reference_wait", "wait for the reference (Numba) + plan", "execute ends", "first call"),
    ("checks", "checks (calls into the sandbox, reference)", "first call", "checks done"),
    ("report", "result, report, stop the zygote", "checks done", "main returned"),
    ("exit", "interpreter exit", "main returned", "exit"),
]
MARKERS = [
    ("zygote_ready_at", "(timeline) zygote ready, from process start", "origin", "zygote ready"),
    ("reference_ready_at", "(timeline) reference ready, from process start", "origin", "reference ready"),
    ("warm_up_thread", "(timeline) background warm-up thread, start to end", "warm-up begins", "reference ready"),
]

# The warm-up thread's work, done sequentially in a fresh process.
WARM_UP_ALONE = r'''
import time
stamps = {"script": time.perf_counter()}
import numba
stamps["numba"] = time.perf_counter()
import reference
stamps["reference"] = time.perf_counter()
import grader.checks.runner
stamps["checks"] = time.perf_counter()
from reference.warmup import warm_up
warm_up()
stamps["warm_up"] = time.perf_counter()
import json, sys
sys.stdout.write(json.dumps(stamps) + "\n")
'''
WARM_UP_PHASES = [
    ("alone_interpreter", "alone: python start-up", "origin", "script"),
    ("alone_import_numba", "alone: import numba", "script", "numba"),
    ("alone_import_reference", "alone: import reference", "numba", "reference"),
    ("alone_import_checks", "alone: import grader.checks.runner", "reference", "checks"),
    ("alone_warm_up", "alone: warm_up() (load every cached kernel)", "checks", "warm_up"),
    ("alone_exit", "alone: interpreter exit", "warm_up", "exit"),
]

FLOOR_KERNEL = """
from numba import njit


@njit(cache=True)
def one_more(x):
    return x + 1.0
"""


# ----------------------------------------------------------------------------- running commands


def run_checked(cmd: Sequence[str], env: Mapping[str, str], cwd: str, ok: Sequence[int] = (0,)) -> str:
    """Run a command to completion; its stdout. A failure raises, so a broken command never reports a time."""
    proc = subprocess.run(list(cmd), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode not in ok:
        raise RuntimeError(f"{list(cmd)!r} exited with {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def command_probe(cmd: Sequence[str], env: Mapping[str, str], cwd: str) -> Callable[[], float]:
    """A probe timing a whole subprocess, from just before it starts to its exit."""

    def probe() -> float:
        start = time.perf_counter()
        run_checked(cmd, env, cwd)
        return time.perf_counter() - start

    return probe


def stamped_probe(cmd: Sequence[str], env: Mapping[str, str], cwd: str, runs: list[dict[str, float]],
                  parse: Callable[[str], dict[str, float]]) -> Callable[[], float]:
    """A probe timing a subprocess that prints perf_counter stamps; keeps them relative to the start."""

    def probe() -> float:
        start = time.perf_counter()
        out = run_checked(cmd, env, cwd)
        end = time.perf_counter()
        stamps = parse(out)
        runs.append({"origin": 0.0, **{k: v - start for k, v in stamps.items()}, "exit": end - start})
        return end - start

    return probe


def phase_stamps(out: str) -> dict[str, float]:
    line = json.loads(out.strip().splitlines()[-1])
    if line["exit"] != 0:
        raise RuntimeError(f"the instrumented check exited with {line['exit']}")
    return line["stamps"]


def last_json_line(out: str) -> dict[str, float]:
    return json.loads(out.strip().splitlines()[-1])


def phase_timings(runs: list[dict[str, float]], phases: list[tuple[str, str, str, str]]) -> dict[str, Timing]:
    """Per phase, its duration in every run (runs that lack a stamp are left out of that phase)."""
    out = {}
    for row_id, _, begin, end in phases:
        samples = [run[end] - run[begin] for run in runs if begin in run and end in run]
        if samples:
            out[row_id] = Timing(samples, 1)
    return out


# ----------------------------------------------------------------------------- -X importtime


def import_costs(stderr: str, top: int = 12) -> list[tuple[str, float]]:
    """Self import time summed per top-level package, largest first, from `python -X importtime` output."""
    totals: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        try:
            self_us, _cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
            totals[name.split(".")[0]] += int(self_us) / 1e6
        except ValueError:  # the header line
            continue
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


# ----------------------------------------------------------------------------- main


def child_env(cache_dir: Path, *extra_paths: Path) -> dict[str, str]:
    """The child's environment: the repo (and extra_paths) importable, Numba's cache in cache_dir."""
    env = dict(os.environ)
    paths = [*map(str, extra_paths), str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


def jitgrade_command() -> list[str]:
    """The installed console script (as a student runs it), else `python -m grader`."""
    script = BIN / "jitgrade"
    return [str(script)] if script.exists() else [sys.executable, "-m", "grader"]


def jupyter_command() -> list[str]:
    script = BIN / "jupyter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyter"]


def bench(report: Report, quick: bool) -> None:
    python = sys.executable
    notebook = str(SOLUTION)
    scratch = Path(tempfile.mkdtemp(prefix="jitgrade-bench-check-"))
    try:
        env = child_env(NUMBA_CACHE)
        kernel_dir = scratch / "floor-kernel"
        kernel_dir.mkdir()
        (kernel_dir / "floor_kernel.py").write_text(FLOOR_KERNEL)
        kernel_env = child_env(scratch / "floor-cache", kernel_dir)
        cwd = str(scratch)
        driver = scratch / "check_phases.py"
        driver.write_text(PHASE_DRIVER)
        students = scratch / "students_check.py"
        students.write_text(STUDENTS_DRIVER)
        students_cmd = [python, str(students), notebook]
        check_cmd = [*jitgrade_command(), "check", notebook, "-q"]
        nbconvert_cmd = [*jupyter_command(), "nbconvert", "--to", "notebook", "--execute", "--stdout", notebook]
        kernel_cmd = [python, "-c", "import floor_kernel; floor_kernel.one_more(1.0)"]

        # Untimed first runs populate the Numba caches. The warm-up runs alone first: a check on a cold
        # cache leaves it incomplete (its warm-up thread is a daemon, killed at exit mid-compilation).
        run_checked([python, "-c", WARM_UP_ALONE], env, cwd)
        run_checked(check_cmd, env, cwd)
        run_checked(kernel_cmd, kernel_env, cwd)
        importtime = subprocess.run([python, "-X", "importtime", "-m", "grader", "check", notebook, "-q"],
                                    env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
        if importtime.returncode != 0:
            raise RuntimeError(f"jitgrade check under -X importtime failed:\n{importtime.stderr[-4000:]}")

        phase_runs: list[dict[str, float]] = []
        alone_runs: list[dict[str, float]] = []
        what_if_runs: dict[str, list[dict[str, float]]] = {name: [] for name in WHAT_IF}
        driver_cmd = [python, str(driver), notebook]
        probes = [
            command_probe(check_cmd, env, cwd),
            command_probe(nbconvert_cmd, env, cwd),
            command_probe([python, "-c", "import numpy"], env, cwd),
            command_probe([python, "-c", "import numba"], env, cwd),
            command_probe(kernel_cmd, kernel_env, cwd),
            command_probe(students_cmd, env, cwd),
            stamped_probe(driver_cmd, env, cwd, phase_runs, phase_stamps),
            stamped_probe([python, "-c", WARM_UP_ALONE], env, cwd, alone_runs, last_json_line),
        ]
        probes += [stamped_probe(driver_cmd, {**env, "JITGRADE_BENCH_WHAT_IF": name}, cwd, runs, phase_stamps)
                   for name, runs in what_if_runs.items()]
        check, nbconvert, numpy_floor, numba_floor, kernel_floor, students_check, *_ = sample_interleaved(
            probes, rounds=2 if quick else 7, warmup=0
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report.add("check_e2e", "jitgrade check solution.ipynb -q (warm)", check, baseline=nbconvert,
               baseline_label="jupyter nbconvert --execute", target=CHECK_TARGET)
    report.add("nbconvert_execute", "floor: jupyter nbconvert --execute", nbconvert)
    report.add("check_students_install", "jitgrade check as students install it (no reference: replayed, no Numba)",
               students_check, baseline=check, baseline_label="jitgrade check (reference installed)",
               target=CHECK_TARGET)
    report.add("import_numpy", "floor: python -c 'import numpy'", numpy_floor)
    report.add("import_numba", "floor: python -c 'import numba'", numba_floor, baseline=numpy_floor,
               baseline_label="python -c 'import numpy'")
    report.add("numba_cached_floor", "floor: fresh process, one cached trivial @njit", kernel_floor,
               baseline=numpy_floor, baseline_label="python -c 'import numpy'")
    for rows, runs in ((PHASES + MARKERS, phase_runs), (WARM_UP_PHASES, alone_runs)):
        timings = phase_timings(runs, rows)
        for row_id, description, _, _ in rows:
            if row_id in timings:
                report.add(f"phase_{row_id}", f"phase: {description}", timings[row_id])
    instrumented = Timing([run["exit"] for run in phase_runs], 1)
    report.add("phase_total", "phase: total of the instrumented check", instrumented, baseline=check,
               baseline_label="jitgrade check")
    for name, runs in what_if_runs.items():
        report.add(f"what_if_{name.replace(',', '_')}", f"what-if: {WHAT_IF[name]}",
                   Timing([run["exit"] for run in runs], 1), baseline=instrumented,
                   baseline_label="instrumented check", target=CHECK_TARGET)
    costs = import_costs(importtime.stderr)
    report.notes["import_self_time_by_package_s"] = dict(costs)
    report.notes["commands"] = {"check": check_cmd, "nbconvert": nbconvert_cmd}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("bench_check", __doc__, argv)
    report = Report("bench_check", quick=args.quick)
    report.notes["load_average_before"] = os.getloadavg()
    bench(report, args.quick)
    report.notes["load_average_after"] = os.getloadavg()
    report.print_table()
    costs: dict[str, Any] = report.notes["import_self_time_by_package_s"]
    print("\nimports of the check process (python -X importtime, self time per top-level package, both threads):\n")
    print(markdown_table(["package", "self time"], [[name, format_seconds(s)] for name, s in costs.items()]))
    path = report.write_json(args.json)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
