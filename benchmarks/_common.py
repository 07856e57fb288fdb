"""Shared timing harness for jitgrade benchmarks: medians of repeated runs, ratios, Markdown and JSON.

Conventions every benchmark follows:
- report medians (robust to the odd slow sample), never means; keep every sample in the JSON;
- measure the baseline in the same run, on the same machine, right next to the candidate
  (time_interleaved alternates their samples, so load from elsewhere hits both alike);
- a ratio is baseline / candidate ("speedup"), so > 1 means the candidate is faster;
- each row may carry a target, rendered as PASS or MISS; rows without one are informational.

Typical use::

    args = parse_args("bench_example", __doc__)
    report = Report("bench_example", quick=args.quick)
    fast, slow = time_interleaved([lambda: candidate(x), lambda: baseline(x)], repeat=7)
    start = time_command([sys.executable, "-c", "import mypackage"], runs=5)  # whole-process wall time
    report.add("example", "candidate(x) vs baseline(x)", fast, baseline=slow, baseline_label="baseline",
               target=Target.min_speedup(5.0))
    report.print_table()
    report.write_json(args.json)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS_DIR = REPO_ROOT / "bench-results"


# ----------------------------------------------------------------------------- measurements


@dataclass
class Timing:
    """Wall-clock samples in seconds (per call: a sample that ran `number` calls is divided by it)."""

    samples: list[float]
    number: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median, "samples_s": list(self.samples), "number": self.number}


def _autorange(fn: Callable[[], object], min_sample_time: float) -> int:
    """Smallest number of calls in 1, 2, 5, 10, 20, 50, ... taking at least min_sample_time (as timeit does)."""
    number = 1
    while True:
        for factor in (1, 2, 5):
            calls = number * factor
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            if time.perf_counter() - start >= min_sample_time:
                return calls
        number *= 10


def time_callable(
    fn: Callable[[], object],
    *,
    repeat: int = 7,
    number: int | None = None,
    warmup: int = 1,
    min_sample_time: float = 0.05,
) -> Timing:
    """Time fn(): `warmup` untimed calls, then `repeat` samples of `number` calls each (auto-chosen so a
    sample lasts at least min_sample_time when None); the garbage collector is off while timing."""
    for _ in range(warmup):
        fn()
    if number is None:
        number = _autorange(fn, min_sample_time)
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(samples, number)


def time_interleaved(
    fns: Sequence[Callable[[], object]],
    *,
    repeat: int = 7,
    warmup: int = 1,
    min_sample_time: float = 0.05,
) -> list[Timing]:
    """Time several callables (typically candidate and baseline) with their samples interleaved
    (a, b, a, b, ...), so a burst of load from elsewhere on the machine hits both alike."""
    numbers = []
    for fn in fns:
        for _ in range(warmup):
            fn()
        numbers.append(_autorange(fn, min_sample_time))
    samples: list[list[float]] = [[] for _ in fns]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for fn, number, out in zip(fns, numbers, samples, strict=True):
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                out.append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [Timing(out, number) for out, number in zip(samples, numbers, strict=True)]


EnvFactory = Callable[[int], Mapping[str, str]]


def time_command(
    cmd: Sequence[str],
    *,
    runs: int = 5,
    env: Mapping[str, str] | EnvFactory | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 600.0,
) -> Timing:
    """Median wall time of a subprocess over `runs` runs, from just before it starts to its exit.

    env is the full environment of the child, or a function run_index -> environment called before
    each run (for example to hand every run a fresh empty cache directory). A failing command raises
    RuntimeError with its stderr, so a broken benchmark never reports a time.
    """
    samples = []
    for run in range(runs):
        run_env = env(run) if callable(env) else env
        start = time.perf_counter()
        proc = subprocess.run(
            list(cmd), env=None if run_env is None else dict(run_env), cwd=cwd,
            capture_output=True, text=True, timeout=timeout,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"command {list(cmd)!r} failed with exit code {proc.returncode}:\n{proc.stderr}")
        samples.append(elapsed)
    return Timing(samples, 1)


def speedup(baseline: Timing, candidate: Timing) -> float:
    """baseline median / candidate median: how many times faster the candidate is (< 1: slower)."""
    return baseline.median / candidate.median


# ----------------------------------------------------------------------------- targets and reports


@dataclass(frozen=True)
class Target:
    """A goal for one row: a minimum speedup over its baseline, or a maximum median time."""

    kind: str  # "min_speedup" | "max_seconds"
    value: float
    description: str

    @classmethod
    def min_speedup(cls, factor: float, description: str | None = None) -> Target:
        return cls("min_speedup", factor, description or f">= {factor:g}x faster")

    @classmethod
    def max_seconds(cls, seconds: float, description: str | None = None) -> Target:
        return cls("max_seconds", seconds, description or f"< {format_seconds(seconds)}")

    def met(self, median: float, ratio: float | None) -> bool:
        if self.kind == "min_speedup":
            return ratio is not None and ratio >= self.value
        if self.kind == "max_seconds":
            return median < self.value
        raise ValueError(f"unknown target kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "description": self.description}


@dataclass
class Row:
    """One line of a report: a candidate timing, optionally a baseline and a target."""

    id: str
    description: str
    candidate: Timing
    baseline: Timing | None = None
    baseline_label: str = ""
    target: Target | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else speedup(self.baseline, self.candidate)

    @property
    def status(self) -> str:
        if self.target is None:
            return "INFO"
        return "PASS" if self.target.met(self.candidate.median, self.ratio) else "MISS"

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            **self.candidate.to_json(),
            "baseline": None if self.baseline is None else {"label": self.baseline_label, **self.baseline.to_json()},
            "speedup": self.ratio,
            "target": None if self.target is None else self.target.to_json(),
            "status": self.status,
        }


@dataclass
class Report:
    """The rows of one benchmark run, rendered as a Markdown table and written as JSON."""

    name: str
    quick: bool = False
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        id: str,  # noqa: A002 - the JSON key of the row
        description: str,
        candidate: Timing,
        *,
        baseline: Timing | None = None,
        baseline_label: str = "",
        target: Target | None = None,
    ) -> Row:
        row = Row(id, description, candidate, baseline, baseline_label, target)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        headers = ["benchmark", "median", "baseline", "baseline median", "ratio", "target", "status"]
        lines = []
        for row in self.rows:
            lines.append([
                row.description,
                format_seconds(row.candidate.median),
                row.baseline_label or "-",
                "-" if row.baseline is None else format_seconds(row.baseline.median),
                "-" if row.ratio is None else format_ratio(row.ratio),
                "-" if row.target is None else row.target.description,
                row.status,
            ])
        return markdown_table(headers, lines)

    def print_table(self, file: Any = None) -> None:
        print(self.markdown(), file=file or sys.stdout, flush=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quick": self.quick,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": environment(),
            "notes": self.notes,
            "results": {row.id: row.to_json() for row in self.rows},
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return out


# ----------------------------------------------------------------------------- formatting and CLI


def format_seconds(seconds: float) -> str:
    """Human units: 4.7 us, 47.0 ms, 1.23 s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(ratio: float) -> str:
    """Speedup as text that reads right either way: '12.3x faster' or '1.1x slower'."""
    return f"{ratio:.2f}x faster" if ratio >= 1.0 else f"{1.0 / ratio:.2f}x slower"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table with padded columns."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def environment() -> dict[str, Any]:
    """What the numbers depend on: interpreter, machine, library versions, git commit."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for module in ("numpy", "numba", "scipy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def parse_args(name: str, description: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--quick (fewer repeats, smaller budgets) and --json PATH (default bench-results/<name>.json)."""
    parser = argparse.ArgumentParser(prog=name, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a rough answer in well under a minute")
    parser.add_argument("--json", type=Path, default=DEFAULT_RESULTS_DIR / f"{name}.json",
                        help=f"where to write the results (default: bench-results/{name}.json at the repo root)")
    return parser.parse_args(argv)
