"""What does the sandbox cost per notebook, compared with merely starting Python with NumPy?

Every graded notebook runs in a fresh worker forked from the sandbox zygote, and every check
talks to that worker over the frame channel. Measured here, each against a floor taken in the
same run (samples interleaved, so load from elsewhere on the machine hits both alike):

(a) warm: start a worker from an already running zygote, execute the master solution notebook
    (assignments/mlp/solution.ipynb, every code cell, its 301-step training loop included), stop
    the worker: Sandbox(zygote, cells, limits).execute() then close();
(b) cold: the same, preceded by starting a new Zygote (what one `jitgrade check` pays) and
    followed by stopping it;
    both for isolation "process" and "bwrap" (bwrap rows are skipped where bubblewrap cannot
    create its namespaces), against the floor `python -c "import numpy"`; target: start plus
    execution <= 3x the floor. Two informational rows per isolation locate the cost: a worker
    started and stopped without executing anything, and a new zygote until it reports ready.
(c) the round trip of a call of `f(a, b) = a + b` with two (64, 10) float64 arrays, median of
    single calls; target <= 200 us. Beside it, in the same interleaved run: a call without
    arguments or result (the fixed cost of a call), the same frames written and read by one
    process through a pipe (all the protocol work of that round trip, without a second
    process), a bare pipe ping-pong with a forked echo process carrying the same byte counts
    (the operating system's floor), and a callback-heavy call: the master's
    numerical_gradient(f, x) of a 10-element x, whose 20 evaluations of f are each a round
    trip back to the grader (reported in total and per callback).

Every timed notebook is first checked to execute without a cell error, and every timed call
to return the right value.

    python benchmarks/bench_sandbox.py [--quick] [--json PATH]
"""

from __future__ import annotations

import gc
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import REPO_ROOT, Report, Target, Timing, parse_args  # noqa: E402

from grader import notebook as nb  # noqa: E402
from grader.assignment import load as load_assignment  # noqa: E402
from grader.sandbox import protocol  # noqa: E402
from grader.sandbox.limits import Limits  # noqa: E402
from grader.sandbox.session import Sandbox  # noqa: E402
from grader.sandbox.zygote import Zygote, bwrap_usable  # noqa: E402

SOLUTION = REPO_ROOT / "assignments" / "mlp" / "solution.ipynb"
FLOOR_LABEL = "python -c 'import numpy'"
START_TARGET = Target.min_speedup(1 / 3, "<= 3x the floor")
ROUND_TRIP_TARGET = Target.max_seconds(200e-6, "<= 200 us")
CALL_SHAPE = (64, 10)
CALL_CELL = '''
def f(a, b):
    return a + b


def nothing():
    return None
'''
GRADIENT_SIZE = 10  # numerical_gradient evaluates f twice per entry: 20 callbacks


# ----------------------------------------------------------------------------- interleaved probes


def sample_interleaved(probes: Sequence[Callable[[], float]], rounds: int, warmup: int = 1) -> list[Timing]:
    """Run the probes round-robin (a, b, c, a, b, c, ...) `rounds` times; each probe times itself and
    returns the seconds to record (so set-up and tear-down outside its phase stay out of the sample).
    The garbage collector is off while sampling."""
    for probe in probes:
        for _ in range(warmup):
            probe()
    samples: list[list[float]] = [[] for _ in probes]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for probe, out in zip(probes, samples, strict=True):
                out.append(probe())
    finally:
        if gc_was_enabled:
            gc.enable()
    return [Timing(out, 1) for out in samples]


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """A probe that times the whole of fn()."""

    def probe() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return probe


def run_floor(cwd: str) -> None:
    """The floor: a new interpreter that imports NumPy and exits."""
    proc = subprocess.run([sys.executable, "-c", "import numpy"], cwd=cwd, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"python -c 'import numpy' failed: {proc.stderr.decode(errors='replace')}")


# ----------------------------------------------------------------------------- (a, b) start + execution


def execute_notebook(zygote: Zygote, cells: list[tuple[int, str]], limits: Limits) -> list[str]:
    """Start a worker, execute the cells, stop the worker; the cells' statuses."""
    sandbox = Sandbox(zygote, cells, limits)
    try:
        record = sandbox.execute()
    finally:
        sandbox.close()
    return [cell.status for cell in record.cells]


def require_clean_run(label: str, statuses: list[str]) -> None:
    """Refuse to time a notebook that does not execute cleanly."""
    if not statuses or any(status != "ok" for status in statuses):
        raise AssertionError(f"{label}: the solution notebook did not execute cleanly: {statuses}")


def cold_probe(isolation: str, cells: list[tuple[int, str]], limits: Limits) -> Callable[[], float]:
    """New zygote, worker, execution of the notebook, worker and zygote stopped: all timed."""

    def probe() -> float:
        start = time.perf_counter()
        zygote = Zygote(isolation=isolation)
        try:
            zygote.start()
            statuses = execute_notebook(zygote, cells, limits)
        finally:
            zygote.close()
        elapsed = time.perf_counter() - start
        require_clean_run(f"cold {isolation}", statuses)
        return elapsed

    return probe


def zygote_ready_probe(isolation: str) -> Callable[[], float]:
    """From Zygote() to its ready message (NumPy and IPython loaded); stopping it is not timed."""

    def probe() -> float:
        start = time.perf_counter()
        zygote = Zygote(isolation=isolation)
        try:
            zygote.start()
            return time.perf_counter() - start
        finally:
            zygote.close()

    return probe


def bench_start(report: Report, isolations: list[str], cells: list[tuple[int, str]], limits: Limits,
                quick: bool) -> None:
    scratch = tempfile.mkdtemp(prefix="jitgrade-bench-sandbox-")
    warm = {iso: Zygote(isolation=iso) for iso in isolations}
    try:
        for iso, zygote in warm.items():
            zygote.start()
            require_clean_run(f"warm {iso}", execute_notebook(zygote, cells, limits))
            if zygote.isolation != iso:
                raise AssertionError(f"asked for isolation {iso!r}, the zygote runs with {zygote.isolation!r}")
        probes: list[Callable[[], float]] = [timed(lambda: run_floor(scratch))]
        for iso in isolations:
            zygote = warm[iso]
            probes += [
                timed(lambda z=zygote: execute_notebook(z, cells, limits)),
                cold_probe(iso, cells, limits),
                timed(lambda z=zygote: execute_notebook(z, [], limits)),
                zygote_ready_probe(iso),
            ]
        timings = sample_interleaved(probes, rounds=4 if quick else 15)
    finally:
        for zygote in warm.values():
            zygote.close()
        os.rmdir(scratch)
    floor, rest = timings[0], timings[1:]
    for index, iso in enumerate(isolations):
        warm_t, cold_t, worker_t, zygote_t = rest[4 * index: 4 * index + 4]
        report.add(f"sandbox_warm_{iso}", f"warm zygote ({iso}): worker start + solution notebook", warm_t,
                   baseline=floor, baseline_label=FLOOR_LABEL, target=START_TARGET)
        report.add(f"sandbox_cold_{iso}", f"cold ({iso}): new zygote + worker + solution notebook", cold_t,
                   baseline=floor, baseline_label=FLOOR_LABEL, target=START_TARGET)
        report.add(f"worker_start_{iso}", f"warm zygote ({iso}): worker start + stop, no cells", worker_t,
                   baseline=floor, baseline_label=FLOOR_LABEL)
        report.add(f"zygote_ready_{iso}", f"new zygote ({iso}) until ready", zygote_t,
                   baseline=floor, baseline_label=FLOOR_LABEL)
    report.add("import_numpy", f"floor: {FLOOR_LABEL}", floor)


# ----------------------------------------------------------------------------- (c) round trips


class PipeEcho:
    """A forked process that answers each message of `request_size` bytes with `reply_size` bytes
    over two pipes: the operating system's floor for one round trip of those sizes."""

    def __init__(self, request_size: int, reply_size: int) -> None:
        self.request = b"\x01" * request_size
        self.reply_size = reply_size
        request_r, self.request_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the echo: nothing but reads and writes, then exit without cleanup
            try:
                low, high = sorted((request_r, reply_w))
                os.closerange(3, low)
                os.closerange(low + 1, high)
                os.closerange(high + 1, 1024)
                reply = b"\x02" * reply_size
                while True:
                    got = 0
                    while got < request_size:
                        chunk = os.read(request_r, request_size - got)
                        if not chunk:
                            os._exit(0)
                        got += len(chunk)
                    view = memoryview(reply)
                    while view:
                        view = view[os.write(reply_w, view):]
            finally:
                os._exit(0)
        os.close(request_r)
        os.close(reply_w)

    def round_trip(self) -> None:
        """Send one request and wait (with select, as the grader does) for the whole reply."""
        view = memoryview(self.request)
        while view:
            view = view[os.write(self.request_w, view):]
        got = 0
        while got < self.reply_size:
            select.select([self.reply_r], [], [], 10.0)
            chunk = os.read(self.reply_r, 1 << 16)
            if not chunk:
                raise RuntimeError("the echo process died")
            got += len(chunk)

    def close(self) -> None:
        os.close(self.request_w)
        os.close(self.reply_r)
        os.waitpid(self.pid, 0)


class InProcessFrames:
    """All the protocol work of one call round trip, done by one process through one pipe: encode
    the arguments, write and read the request frame, decode; encode the result, write and read
    the reply frame, decode."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a, b
        self.read_fd, self.write_fd = os.pipe()
        self.reader = protocol.FrameReader(self.read_fd)

    def sizes(self) -> tuple[int, int]:
        """Bytes on the wire of the request and of the reply frame."""
        sizes = []
        for header, payloads in (self._request(), self._reply(self.a + self.b)):
            protocol.write_frame(self.write_fd, header, payloads)
            sizes.append(len(os.read(self.read_fd, 1 << 20)))
        return sizes[0], sizes[1]

    def _request(self) -> tuple[dict, list[bytes]]:
        tree, payloads = protocol.encode(([self.a, self.b], {}), strict=True)
        args, kwargs = tree["v"]
        return {"op": "call", "fn": "f", "args": args, "kwargs": kwargs, "echo_args": False, "seq": 1}, payloads

    @staticmethod
    def _reply(value: np.ndarray) -> tuple[dict, list[bytes]]:
        tree, payloads = protocol.encode((value, None))
        header = {"op": "returned", "value": tree, "warnings": [], "stdout": "", "seq": 1, "import_attempts": []}
        return header, payloads

    def round_trip(self) -> np.ndarray:
        header, payloads = self._request()
        protocol.write_frame(self.write_fd, header, payloads)
        header, payloads = self.reader.read(time.monotonic() + 10.0)
        args = protocol.decode(header["args"], payloads)
        header, payloads = self._reply(args[0] + args[1])
        protocol.write_frame(self.write_fd, header, payloads)
        header, payloads = self.reader.read(time.monotonic() + 10.0)
        value, _ = protocol.decode(header["value"], payloads)
        return value

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def square_norm(x: np.ndarray) -> float:
    """The grader-side function numerical_gradient differentiates: sum of squares (gradient 2x)."""
    return float(np.sum(x * x))


def bench_round_trips(report: Report, zygote: Zygote, cells: list[tuple[int, str]], limits: Limits,
                      quick: bool) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(CALL_SHAPE), rng.standard_normal(CALL_SHAPE)
    x = rng.standard_normal(GRADIENT_SIZE)
    frames = InProcessFrames(a, b)
    request_size, reply_size = frames.sizes()
    echo = PipeEcho(request_size, reply_size)
    sandbox = Sandbox(zygote, [*cells, (max(i for i, _ in cells) + 1, CALL_CELL)], limits)
    try:
        require_clean_run("call notebook", [c.status for c in sandbox.execute().cells])
        # Refuse to time calls that do not compute the right thing.
        assert np.array_equal(sandbox.call("f", a, b).value, a + b)
        assert sandbox.call("nothing").value is None
        assert np.array_equal(frames.round_trip(), a + b)
        gradient = sandbox.call("numerical_gradient", square_norm, x.copy(), functions=[square_norm]).value
        np.testing.assert_allclose(gradient, 2 * x, rtol=1e-6, atol=1e-8)

        def numerical_gradient() -> object:
            return sandbox.call("numerical_gradient", square_norm, x.copy(), functions=[square_norm])

        call, empty, in_process, pipe, callbacks = sample_interleaved(
            [timed(lambda: sandbox.call("f", a, b)), timed(lambda: sandbox.call("nothing")), timed(frames.round_trip),
             timed(echo.round_trip), timed(numerical_gradient)],
            rounds=200 if quick else 1000, warmup=20,
        )
    finally:
        sandbox.close()
        echo.close()
        frames.close()
    per_callback = Timing([s / (2 * GRADIENT_SIZE) for s in callbacks.samples], 1)
    report.notes["frame_bytes"] = {"request": request_size, "reply": reply_size}
    report.add("call_roundtrip", f"call f(a, b), two {CALL_SHAPE} float64 arrays ({zygote.isolation})", call,
               baseline=in_process, baseline_label="same frames, one process", target=ROUND_TRIP_TARGET)
    report.add("call_roundtrip_empty", "call nothing(): no arguments, returns None", empty)
    report.add("frames_in_process", "protocol work of that round trip, one process", in_process)
    report.add("pipe_pingpong", f"pipe ping-pong, forked echo, {request_size} B / {reply_size} B", pipe)
    report.add("numgrad_callbacks_call", f"numerical_gradient, {GRADIENT_SIZE}-element x, "
               f"{2 * GRADIENT_SIZE} callbacks: whole call", callbacks)
    report.add("numgrad_per_callback", "numerical_gradient: per callback", per_callback,
               baseline=empty, baseline_label="call nothing()")


# ----------------------------------------------------------------------------- main


def summary(report: Report) -> list[str]:
    """One line per start-up variant: does start plus execution stay within 3x the floor?"""
    lines = []
    for row in report.rows:
        if row.id.startswith("sandbox_") and row.ratio is not None:
            lines.append(f"{row.description}: {1 / row.ratio:.2f}x the floor -> {row.status}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("bench_sandbox", __doc__, argv)
    report = Report("bench_sandbox", quick=args.quick)
    cells = nb.read(SOLUTION).code_cells()
    limits = load_assignment("mlp").limits
    isolations = ["process"]
    if bwrap_usable():
        isolations.append("bwrap")
    report.notes.update({
        "notebook": str(SOLUTION.relative_to(REPO_ROOT)),
        "code_cells": len(cells),
        "isolations": isolations,
        "bwrap_skipped": None if "bwrap" in isolations else "bwrap_usable() is False on this machine",
        "limits": limits.as_dict(),
    })
    report.notes["load_average_before"] = os.getloadavg()
    bench_start(report, isolations, cells, limits, args.quick)
    zygote = Zygote(isolation=isolations[-1])
    try:
        zygote.start()
        bench_round_trips(report, zygote, cells, limits, args.quick)
    finally:
        zygote.close()
    report.notes["load_average_after"] = os.getloadavg()
    report.notes["start_summary"] = summary(report)
    report.print_table()
    print()
    for line in report.notes["start_summary"]:
        print(f"- {line}")
    path = report.write_json(args.json)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
