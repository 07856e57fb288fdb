"""What does grading a PyTorch assignment cost, compared with importing torch and grading a NumPy one?

The PyTorch master (assignments/eecs498-two-layer, `[sandbox] preload = ["torch"]`: the sandbox's
zygote imports torch once and every worker it forks inherits it), measured end to end:

1. `jitgrade check` of the PyTorch master, warm, as a student runs it, beside the floors of the same
   run (samples interleaved: a, b, c, d, a, b, ...): `python -c "import torch"`, `jitgrade check`
   of the NumPy master (assignments/mlp) and `python -c "import numpy"`. Target (issue 12): the
   PyTorch check within 1.5x of import torch + the NumPy check, summed round by round.
   Warm means: the Numba cache filled first by reference.warmup.warm_up() in a process of its own
   (the same persistent cache bench_check.py uses, NUMBA_CACHE_DIR in the system's temporary
   directory), then one untimed run of every command, which brings torch's shared libraries and
   bytecode (and the grader's) into the OS page cache.
   Cold means: a fresh, empty NUMBA_CACHE_DIR, so that the check compiles every reference kernel it
   needs (what the first check on a new machine pays). The OS page cache is not dropped (that would
   slow every other process on this shared machine), so torch's files are still in memory.
2. `jitgrade grade` of a class of 100 submissions (20 with --quick) with `--jobs 2`: copies of the
   master, every tenth one the student template made by `jitgrade assign` (which scores 0), each with
   an extra print cell of its own so that every notebook has its own bytes. Reported: the whole
   command's wall time, the per-submission median (each report's own wall_seconds, from its
   grading process) and the class time divided by its size, beside `python -c "import torch"`.
   Every report must be graded, masters at full marks and templates at 0, before any time counts.

   Proof that torch is imported at most once per grading process, observed from outside while each
   batch runs: a thread walks the command's process tree in /proc four times a second (a few
   milliseconds of one core per walk) and records which processes map libtorch and did not inherit it
   through fork (a fork keeps its parent's command line; an exec'd process has its own). A worker forked
   from a zygote that preloaded torch inherits it (the zygote imports its preload before it says
   ready, and forks workers only afterwards), so those are not read. Each such process is charged to
   its grading process (itself, or its nearest ancestor that is neither a sandbox process nor
   bubblewrap). The benchmark fails when a grading process loaded torch more than once (a zygote
   restarted, or the grading process importing it as well), when a zygote never mapped torch, or
   when no zygote was seen.

Without torch (not installed: an optional extra) nothing is measured; the JSON says why and the
exit code is 0.

    python benchmarks/bench_torch.py [--quick] [--json PATH]
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, Report, Target, Timing, parse_args, time_command  # noqa: E402
from bench_check import (  # noqa: E402
    NUMBA_CACHE,
    WARM_UP_ALONE,
    child_env,
    command_probe,
    jitgrade_command,
    run_checked,
)
from bench_sandbox import sample_interleaved  # noqa: E402

ASSIGNMENT = "eecs498-two-layer"
MASTER = REPO_ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"
NUMPY_ASSIGNMENT = "mlp"
NUMPY_MASTER = REPO_ROOT / "assignments" / NUMPY_ASSIGNMENT / "solution.ipynb"
CHECK_FACTOR = 1.5  # issue 12: the PyTorch check within 1.5x of import torch + the NumPy check
TEMPLATE_EVERY = 10  # one submission in ten is the student template
SEED = "498"
WATCH_INTERVAL = 0.25  # seconds between two walks of the process tree
TORCH_LIBRARY = b"/libtorch"  # in /proc/PID/maps of any process that imported torch (or forked from one)
MAX_TORCH_LOADS = 1  # per grading process
# Kinds read again on every walk: a fork not yet exec'd shows its parent's command line.
PROVISIONAL = ("grader", "bwrap")
SANDBOX_SCRIPT = "worker.py"  # the zygote and its workers run grader/sandbox/worker.py (copied to a runtime dir)

NO_TORCH = (
    "bench_torch: skipped: torch is not installed for {python} (it is the optional extra: "
    "pip install 'jitgrade[torch]'); nothing was measured"
)
TOO_MANY_LOADS = (
    "{command}: grading process {pid} loaded torch {count} times (processes {loaders}); expected at most "
    f"{MAX_TORCH_LOADS}: its zygote preloads torch and every worker inherits it. Look for zygote restarts "
    "(execution events in the reports) or an import of torch in the grader itself"
)
ZYGOTE_WITHOUT_TORCH = (
    "{command}: sandbox zygote(s) {pids} never mapped libtorch; expected the assignment's "
    "[sandbox] preload = ['torch'] to import it before any submission ran. Check that `import torch` works "
    "in {python}"
)
NO_ZYGOTE = (
    "{command}: no sandbox zygote was seen in the command's process tree (expected one per grading process); "
    "the watch had nothing to count. Was the batch too short for a walk every {interval} s?"
)
WRONG_SCORES = (
    "the class was not graded as expected (masters at full marks, templates at 0, no errors); "
    "found: {found}. Rerun `jitgrade check` of the master and of the template to see why"
)


# ----------------------------------------------------------------------------- watching torch imports


def parent_pids() -> dict[int, int]:
    """Every live process's parent, from /proc/PID/stat (processes that vanish mid-walk are skipped)."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_bytes()
        except OSError:
            continue
        parents[int(name)] = int(stat[stat.rindex(b")") + 2 :].split()[1])  # after "pid (comm) state"
    return parents


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """root and every process below it, parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    order, todo = [], [root]
    while todo:
        pid = todo.pop()
        order.append(pid)
        todo.extend(children.get(pid, ()))
    return order


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def process_kind(command: bytes, parent_kind: str | None) -> str:
    """'worker' (forked by a zygote), 'zygote' (the sandbox's fork server), 'bwrap' or 'grader' (anything else),
    from a process's command line (/proc/PID/cmdline: NUL-separated arguments)."""
    argv = command.split(b"\0")
    if os.path.basename(argv[0]) == b"bwrap":  # its command line names worker.py too: the zygote it starts
        return "bwrap"
    if any(arg.endswith(b"/" + SANDBOX_SCRIPT.encode()) for arg in argv):
        return "worker" if parent_kind in ("zygote", "worker") else "zygote"
    return "grader"


class TorchWatch:
    """Walks a command's process tree through /proc while it runs and records which processes map libtorch
    (sandbox workers are not read: they inherit whatever their zygote loaded)."""

    def __init__(self, root: int, interval: float = WATCH_INTERVAL) -> None:
        self.root = root
        self.interval = interval
        self.parents: dict[int, int] = {}
        self.kinds: dict[int, str] = {}
        self.commands: dict[int, bytes] = {}
        self.mapped: set[int] = set()
        self.walks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="torch-watch", daemon=True)

    def __enter__(self) -> TorchWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.walk()
            if self._stop.wait(self.interval):
                return

    def walk(self) -> None:
        """One look at the tree. The PROVISIONAL kinds are read again on every walk until the process exits
        (an exec starts its record afresh); 'zygote' and 'worker' are final."""
        parents = parent_pids()
        for pid in descendants(self.root, parents):
            self.parents[pid] = parents.get(pid, 0)
            if self.kinds.get(pid, "grader") in PROVISIONAL:
                command = _read(Path("/proc", str(pid), "cmdline"))
                if command and command != self.commands.get(pid):
                    self.commands[pid] = command
                    self.kinds[pid] = process_kind(command, self.kinds.get(self.parents[pid]))
                    self.mapped.discard(pid)
            unread = self.kinds.get(pid) in ("zygote", "grader") and pid not in self.mapped
            if unread and TORCH_LIBRARY in _read(Path("/proc", str(pid), "maps")):
                self.mapped.add(pid)
        self.walks += 1

    def summary(self) -> dict[str, Any]:
        return torch_loads(self.parents, self.kinds, self.commands, self.mapped) | {"walks": self.walks}


def torch_loads(
    parents: Mapping[int, int], kinds: Mapping[int, str], commands: Mapping[int, bytes], mapped: Iterable[int]
) -> dict[str, Any]:
    """Who loaded torch itself, charged to its grading process. A process that maps torch inherited it when it is
    a fork of a parent that maps it too (same command line: no exec in between); otherwise it loaded it."""
    mapped = set(mapped)

    def inherited(pid: int) -> bool:
        parent = parents.get(pid)
        return parent in mapped and commands.get(pid) == commands.get(parent)

    def grading_process(pid: int) -> int:
        while kinds.get(pid) in ("zygote", "worker", "bwrap") and pid in parents:
            pid = parents[pid]
        return pid

    loaders = sorted(pid for pid in mapped if not inherited(pid))
    zygotes = sorted(pid for pid, kind in kinds.items() if kind == "zygote")
    loads: dict[int, list[int]] = {}
    for pid in loaders:
        loads.setdefault(grading_process(pid), []).append(pid)
    return {
        "zygotes": zygotes,
        "zygotes_without_torch": [pid for pid in zygotes if pid not in mapped],
        "grading_processes": sorted({grading_process(pid) for pid in zygotes}),
        "loaders": [{"pid": pid, "kind": kinds.get(pid, "grader")} for pid in loaders],
        "loads_by_grading_process": {str(pid): len(pids) for pid, pids in sorted(loads.items())},
        "max_loads_per_grading_process": max((len(pids) for pids in loads.values()), default=0),
    }


def assert_torch_loaded_once(summary: Mapping[str, Any], command: str) -> None:
    """Raise unless some zygote was seen, every zygote loaded torch, and no grading process loaded it twice."""
    if not summary["zygotes"]:
        raise AssertionError(NO_ZYGOTE.format(command=command, interval=WATCH_INTERVAL))
    if summary["zygotes_without_torch"]:
        raise AssertionError(
            ZYGOTE_WITHOUT_TORCH.format(command=command, pids=summary["zygotes_without_torch"], python=sys.executable)
        )
    for pid, count in summary["loads_by_grading_process"].items():
        if count > MAX_TORCH_LOADS:
            loaders = [row["pid"] for row in summary["loaders"]]
            raise AssertionError(TOO_MANY_LOADS.format(command=command, pid=pid, count=count, loaders=loaders))


def run_watched(cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> tuple[float, dict[str, Any]]:
    """Run a command to completion under a TorchWatch; (wall seconds, the watch's summary). A failure raises."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with TorchWatch(proc.pid) as watch:
        out, err = proc.communicate(timeout=1800)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{list(cmd)!r} exited with {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}")
    return elapsed, watch.summary()


# ----------------------------------------------------------------------------- the class


def with_own_cell(notebook: dict[str, Any], k: int) -> dict[str, Any]:
    """A copy of the notebook with one more code cell, a print of its own, so that every copy has its own bytes."""
    copy = json.loads(json.dumps(notebook))
    copy["cells"].append(
        {
            "cell_type": "code",
            "id": f"bench-{k}",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": f"print('submission {k}: my own copy')",
        }
    )
    return copy


def make_class(folder: Path, template: Path, size: int) -> dict[str, bool]:
    """`size` notebooks in folder (every TEMPLATE_EVERY-th the template, else the master); student -> is a master."""
    folder.mkdir(parents=True)
    sources = {True: json.loads(MASTER.read_text()), False: json.loads(template.read_text())}
    students = {}
    for k in range(size):
        is_master = k % TEMPLATE_EVERY != TEMPLATE_EVERY - 1
        name = f"{'master' if is_master else 'template'}-{k:03d}"
        (folder / f"{name}.ipynb").write_text(json.dumps(with_own_cell(sources[is_master], k), indent=1))
        students[name] = is_master
    return students


def graded_seconds(out: Path, students: Mapping[str, bool]) -> list[float]:
    """Each report's wall_seconds, after checking that every student was graded as expected."""
    reports = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}
    wrong = {
        name: "missing" if name not in reports else (reports[name]["error"] or reports[name]["score"])
        for name, is_master in students.items()
        if name not in reports
        or reports[name]["error"]
        or reports[name]["score"] != (reports[name]["max_score"] if is_master else 0)
    }
    if wrong:
        raise AssertionError(WRONG_SCORES.format(found=dict(list(wrong.items())[:5])))
    return [reports[name]["provenance"]["wall_seconds"] for name in students]


# ----------------------------------------------------------------------------- runs


def torch_available() -> bool:
    """Whether this interpreter (the one the benchmark's commands run) can import torch."""
    return importlib.util.find_spec("torch") is not None


def bench_check(report: Report, scratch: Path, quick: bool) -> dict[str, Timing]:
    """Part 1: the warm PyTorch check beside its floors, then the cold one. Returns the timings by row."""
    python = sys.executable
    env = child_env(NUMBA_CACHE)
    commands = {
        "check_torch": [*jitgrade_command(), "check", str(MASTER), "-a", ASSIGNMENT, "-q"],
        "check_numpy": [*jitgrade_command(), "check", str(NUMPY_MASTER), "-a", NUMPY_ASSIGNMENT, "-q"],
        "import_torch": [python, "-c", "import torch"],
        "import_numpy": [python, "-c", "import numpy"],
    }
    run_checked([python, "-c", WARM_UP_ALONE], env, str(scratch))  # the Numba cache, complete
    probes = [command_probe(cmd, env, str(scratch)) for cmd in commands.values()]
    timings = dict(zip(commands, sample_interleaved(probes, rounds=2 if quick else 7, warmup=1), strict=True))
    floor = Timing(
        [a + b for a, b in zip(timings["import_torch"].samples, timings["check_numpy"].samples, strict=True)]
    )
    cold = time_command(
        commands["check_torch"],
        runs=1 if quick else 2,
        cwd=scratch,
        env=lambda run: child_env(scratch / f"numba-cold-{run}"),
    )
    report.add(
        "check_torch",
        "jitgrade check of the PyTorch master (warm)",
        timings["check_torch"],
        baseline=floor,
        baseline_label="import torch + NumPy check",
        target=Target.min_speedup(1 / CHECK_FACTOR, f"within {CHECK_FACTOR:g}x of import torch + NumPy check"),
    )
    report.add(
        "check_torch_vs_numpy",
        "jitgrade check, PyTorch master vs NumPy master (warm)",
        timings["check_torch"],
        baseline=timings["check_numpy"],
        baseline_label="NumPy check",
    )
    report.add(
        "check_torch_cold",
        "jitgrade check of the PyTorch master, empty Numba cache",
        cold,
        baseline=timings["check_torch"],
        baseline_label="warm",
    )
    report.add("check_numpy", "jitgrade check of the NumPy master (mlp, warm)", timings["check_numpy"])
    report.add(
        "import_torch",
        "floor: python -c 'import torch'",
        timings["import_torch"],
        baseline=timings["import_numpy"],
        baseline_label="python -c 'import numpy'",
    )
    report.add("import_numpy", "floor: python -c 'import numpy'", timings["import_numpy"])
    report.notes["check_commands"] = commands
    return timings


def bench_batch(report: Report, scratch: Path, quick: bool, import_torch: Timing) -> None:
    """Part 2: a class graded with --jobs 2, with torch's imports counted by grading process."""
    env = child_env(NUMBA_CACHE)
    size = 20 if quick else 100
    run_checked([*jitgrade_command(), "assign", ASSIGNMENT, "--out", str(scratch / "template")], env, str(scratch))
    template = next((scratch / "template").glob("*.ipynb"))
    students = make_class(scratch / "class", template, size)
    out = scratch / "out"
    command = [
        *jitgrade_command(),
        "grade",
        str(scratch / "class"),
        "-a",
        ASSIGNMENT,
        "--out",
        str(out),
        "--force",
        "--seed",
        SEED,
        "--jobs",
        "2",
    ]
    walls, per_submission, watches = [], [], []
    for _ in range(1 if quick else 3):
        seconds, watch = run_watched(command, env, scratch)
        assert_torch_loaded_once(watch, "jitgrade grade --jobs 2")
        per_submission += graded_seconds(out, students)
        walls.append(seconds)
        watches.append(watch)
    batch = Timing(walls)
    masters = sum(students.values())
    report.add(
        "batch_jobs2",
        f"grade {size} ({masters} masters, {size - masters} templates), --jobs 2 ({size / batch.median:.1f}/s)",
        batch,
    )
    report.add(
        "per_submission",
        "per submission, in its grading process (report wall_seconds)",
        Timing(per_submission),
        baseline=import_torch,
        baseline_label="python -c 'import torch'",
    )
    report.add(
        "per_submission_amortized",
        "per submission, class time / class size",
        Timing([s / size for s in walls]),
        baseline=import_torch,
        baseline_label="python -c 'import torch'",
    )
    report.notes.update(
        {
            "class_size": size,
            "class_templates": size - masters,
            "batch_command": command,
            "torch_loads": watches,
            "torch_loads_max_per_grading_process": max(w["max_loads_per_grading_process"] for w in watches),
            "torch_loads_target": f"<= {MAX_TORCH_LOADS} per grading process",
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("bench_torch", __doc__, argv)
    report = Report("bench_torch", quick=args.quick)
    if not torch_available():
        report.notes["skipped"] = NO_TORCH.format(python=sys.executable)
        print(report.notes["skipped"])
        report.write_json(args.json)
        return 0
    report.notes["torch"] = run_checked(
        [sys.executable, "-c", "import torch; print(torch.__version__)"], os.environ, "."
    ).strip()
    report.notes["load_average_before"] = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="jitgrade-bench-torch-"))
    try:
        timings = bench_check(report, scratch, args.quick)
        bench_batch(report, scratch, args.quick, timings["import_torch"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.notes["load_average_after"] = os.getloadavg()
    report.print_table()
    loads = report.notes["torch_loads"]
    print(
        f"\ntorch loaded at most {report.notes['torch_loads_max_per_grading_process']} time(s) per grading process "
        f"(target <= {MAX_TORCH_LOADS}); zygotes per batch run: {[len(w['zygotes']) for w in loads]}, "
        f"grading processes: {[len(w['grading_processes']) for w in loads]}"
    )
    path = report.write_json(args.json)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
