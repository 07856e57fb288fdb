"""One submission's sandbox: execute its cells once, then serve calls of its functions.

The grader side of the channel. The worker belongs to the student (student code shares its
interpreter), so nothing it says is trusted: every read and write has a deadline, every frame a
size cap (a call's answer at most RESULT_FACTOR times its arguments), the output budget and the
notebook's total time budget are counted here, and a forged, out-of-sequence or malformed frame
is a protocol error charged to that cell or call. A timeout, a dead worker or a broken channel
is turned into an exception for the affected cell or call only, and the worker is restarted
(re-executing the notebook without the cells that killed it, or with only their definitions when the
grader built a replay of them) before the next call.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grader.sandbox import protocol
from grader.sandbox.calls import DIRECT, Via
from grader.sandbox.exceptions import (
    BudgetExhausted,
    CallSkipped,
    CallTimeout,
    CellTimeout,
    ChannelBroken,
    MemoryLimit,
    MissingFunction,
    NotImplementedByStudent,
    ResultTooLarge,
    SandboxError,
    StudentError,
    WorkerDied,
)
from grader.sandbox.limits import Limits
from grader.sandbox.zygote import WorkerHandle, Zygote

HELLO_TIMEOUT = 30.0
EXIT_GRACE = 0.5  # seconds a worker whose channel closed gets to finish exiting before it counts as alive
SIGNAL_HINTS = {
    6: "aborted: a crash inside compiled code",
    9: "killed: by its own code, or by the kernel when the machine ran out of memory",
    11: "segmentation fault: a crash inside compiled code",
    24: "it used up its CPU-time limit",
    25: "it wrote a file larger than the file-size limit",
}
EXIT_CHANNEL_BROKEN = 72  # the worker's own exit code when its pipes to the grader failed
EXIT_HINTS = {
    70: "the worker itself failed while serving the grader",
    71: "it ran out of memory (the limit is {memory} MiB)",
}
NOT_RUN = "the notebook's total time limit was reached"
OUT_OF_MEMORY = "cell {index} ran out of memory; the notebook was restarted without it"
OUT_OF_MEMORY_REPLAY = (
    "cell {index} ran out of memory; the notebook was restarted with only that cell's definitions (def, class, import)"
)
REPLAY_FAILED = "cell {index}'s definitions, replayed on their own, failed too ({why}); the whole cell was skipped"
STALLED = "it stopped reading the grader's requests"
CACHE_RESTARTED = (
    "{function}() was to receive a cache that an earlier call returned, but the notebook's process was restarted "
    "since (a call timed out, crashed or broke the channel) and the cache was lost with it; fix the failure "
    "reported before this one"
)
CACHE_DROPPED = (
    "{function}() was to receive a cache that an earlier call returned, but it was dropped: the notebook's process "
    "holds at most {limit} caches at once for the grader"
)
NOT_ISSUED = "a handle #{id} that the grader did not issue"

# What the grader reads from a worker is bounded per frame (the worker belongs to the student):
RESULT_FLOOR = 4 * 2**20  # bytes of arrays any call may answer with ...
RESULT_FACTOR = 16  # ... or this many times the bytes of its arguments, whichever is more
CALL_HEADER = 2 * 2**20  # an answer's value tree (at most protocol.MAX_NODES nodes) and its capped texts
CELL_HEADER = 8 * 2**20  # a cell's answer: at least this, or 8 bytes per byte of the output budget (JSON escapes) ...
CELL_HEADER_SLACK = 2**20  # ... plus this for its error and traceback (the grader keeps only the budget of it)
SMALL = protocol.FrameLimits(max_header=256 * 1024, max_payloads=0, max_total=0)  # hello, ok
ANSWERS = {  # the frames that may answer each request (callbacks aside)
    "run_cell": ("cell_done",),
    "call": ("returned", "raised", "missing", "not_callable"),
    "seed": ("ok",),
}
MAX_IMPORT_ATTEMPTS = 100
MAX_OUTPUTS = 2000  # outputs kept per cell
MAX_MIME = 20  # representations kept per display output
MIME = re.compile(r"[a-z]+/[A-Za-z0-9.+_-]{1,80}")


class OutputBudget:
    """The bytes of student output the grader keeps for one notebook (cell outputs, prints and warnings of
    calls, tracebacks): counted here, whatever the worker's own count says, and cut past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # room for the worker's own truncation note, so that an honest worker's output is never cut twice
        self.left = limit + len(protocol.TRUNCATION_NOTE.format(limit=limit))
        self.cut = False
        self.noted = False

    def take(self, text: Any, partial: bool = True) -> str:
        """`text` (only strings count) as far as the budget allows: cut there, or dropped whole unless partial."""
        if not isinstance(text, str) or not text:
            return ""
        encoded = text.encode("utf-8", "replace")
        if len(encoded) <= self.left:
            self.left -= len(encoded)
            return text
        kept = encoded[: self.left].decode("utf-8", "ignore") if partial else ""
        self.left -= len(kept.encode())
        self.cut = True
        return kept

    def note(self) -> dict[str, Any] | None:
        """The truncation note as a stream output, the first time the budget was passed (else None)."""
        if not self.cut or self.noted:
            return None
        self.noted = True
        return {"output_type": "stream", "name": "stderr", "text": protocol.TRUNCATION_NOTE.format(limit=self.limit)}


def _items(value: Any, count: int) -> list[Any]:
    """The first `count` items of a list field ([] when it is not a list)."""
    return value[:count] if isinstance(value, list) else []


def _count(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value < 2**31 else None


def _cell_output(item: dict[str, Any], budget: OutputBudget) -> dict[str, Any] | None:
    """One output in nbformat's shape, rebuilt from strings only (metadata dropped), or None."""
    kind = item.get("output_type")
    if kind == "stream":
        text = budget.take(item.get("text"))
        return (
            {"output_type": kind, "name": "stderr" if item.get("name") == "stderr" else "stdout", "text": text}
            if text
            else None
        )
    if kind in ("display_data", "execute_result"):
        data = item.get("data")
        clean = {}
        for mime, value in list(data.items() if isinstance(data, dict) else ())[:MAX_MIME]:
            kept = budget.take(value, partial=mime.startswith("text/")) if MIME.fullmatch(mime) else ""
            if kept:
                clean[mime] = kept
        if not clean:
            return None
        output: dict[str, Any] = {"output_type": kind, "data": clean, "metadata": {}}
        if kind == "execute_result":
            output["execution_count"] = _count(item.get("execution_count"))
        return output
    if kind == "error":  # kept while the budget lasts (the cell's record keeps its error message anyway)
        ename = budget.take(protocol.text_field(item.get("ename"), 100) or "Error")
        lines = item.get("traceback")
        return (
            {
                "output_type": kind,
                "ename": ename,
                "evalue": budget.take(protocol.text_field(item.get("evalue"), 2000)),
                "traceback": [line for line in (budget.take(x) for x in _items(lines, 40)) if line],
            }
            if ename
            else None
        )
    return None


def cell_outputs(raw: Any, budget: OutputBudget) -> list[dict[str, Any]]:
    """A cell's outputs as the grader keeps them: known kinds only, string fields only, charged to `budget`
    (with the truncation note where it ran out)."""
    items = [item for item in _items(raw, MAX_OUTPUTS) if isinstance(item, dict)]
    outputs = [o for o in (_cell_output(item, budget) for item in items) if o is not None]
    note = budget.note()
    return outputs + [note] if note else outputs


def bounded(value: Any, depth: int = 3) -> Any:
    """A JSON value cut to a few levels, 50 items per container and 200 characters per string
    (for what a worker reports about itself, e.g. its isolation layers)."""
    if isinstance(value, str):
        return value[:200]
    if value is None or type(value) in (bool, int) or (type(value) is float and math.isfinite(value)):
        return value
    if depth > 0 and isinstance(value, list):
        return [bounded(v, depth - 1) for v in value[:50]]
    if depth > 0 and isinstance(value, dict):
        return {str(k)[:80]: bounded(v, depth - 1) for k, v in list(value.items())[:50]}
    return None


@dataclass
class CellRecord:
    """What happened to one code cell on its first execution."""

    index: int
    status: str  # ok | error | timeout | crashed | not_run
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    execution_count: int | None = None
    seconds: float = 0.0


@dataclass
class ExecutionRecord:
    """The execution of one notebook: per-cell records and what the sandbox had to do."""

    cells: list[CellRecord]
    isolation: dict[str, Any]
    import_attempts: list[str]
    restarts: int
    seconds: float
    events: list[str]
    # cells that timed out, crashed or ran out of memory, whose definitions alone were replayed after a restart:
    # None when that replay ran, else why it failed (the whole cell was then skipped)
    replayed: dict[int, str | None] = field(default_factory=dict)


@dataclass
class CallResult:
    """A student function's return value (decoded, untrusted), and what it printed or warned."""

    value: Any
    args_after: tuple[Any, ...] | None
    warnings: list[str]
    stdout: str
    nbytes: int = 0  # bytes of arrays in the answer (what keeping this result costs)


class CacheLost(SandboxError):
    """A call was to receive an object held in the worker (a layer's cache) that is no longer there."""


class _WorkerGone(Exception):
    """Internal: the worker must be replaced (timed out, died, stalled, broke the protocol, answered too much)."""

    def __init__(self, kind: str, detail: str = "", size: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.size = size


class Sandbox:
    """Runs one notebook's code cells in a confined worker and calls its functions.

    ``limits.notebook_timeout`` is the notebook's total time budget: its cells (replays after a restart
    included) and every call of its functions spend it; once it is used up, calls raise BudgetExhausted.
    A cell that timed out, crashed or ran out of memory is left out of the replays after a restart, or
    replaced by its entry in `replays` (its definitions alone, built by the grader) until that fails too.
    """

    def __init__(
        self,
        zygote: Zygote,
        cells: Sequence[tuple[int, str]],
        limits: Limits,
        replays: Mapping[int, str] | None = None,
    ) -> None:
        self.zygote = zygote
        self.cells = list(cells)
        self.limits = limits
        self.replays = dict(replays or {})
        self.replayed: dict[int, str | None] = {}
        self.worker: WorkerHandle | None = None
        self.reader: protocol.FrameReader | None = None
        self.seq = 0
        self.layers: dict[str, Any] = {}
        self.import_attempts: list[str] = []
        self.records: dict[int, CellRecord] = {}
        self.poisoned: set[int] = set()
        self.restarts = 0
        self.events: list[str] = []
        self.strikes: Counter[str] = Counter()
        self.last_failure: dict[str, str] = {}
        self.gave_up = False
        self.seconds = 0.0
        self.spent = {"cells": 0.0, "calls": 0.0}  # seconds of the time budget, by what used them
        self.output = OutputBudget(limits.output_kb * 1024)
        self.epoch = 0  # the current worker's number: handles of an earlier one name objects that died with it
        self.held: dict[int, protocol.Handle] = {}  # handles the current worker holds objects for, by id
        self.handle_ids = 0  # the last handle id issued (ids are never reused)

    # ------------------------------------------------------------------ lifecycle

    def execute(self) -> ExecutionRecord:
        """Execute every code cell in order, continuing past failing cells; record the outcome."""
        started = time.monotonic()
        self._bring_up()
        self.seconds = time.monotonic() - started
        return self.record()

    def record(self) -> ExecutionRecord:
        """The execution record so far (call it again after the checks: calls add restarts and events)."""
        cells = [self.records.get(i) or CellRecord(i, "not_run") for i, _ in self.cells]
        isolation = dict(level=self.zygote.isolation, layers=self.layers)  # (keywords: "layers" is also an assignment)
        return ExecutionRecord(
            cells,
            isolation,
            list(self.import_attempts),
            self.restarts,
            self.seconds,
            list(self.events),
            dict(self.replayed),
        )

    def close(self) -> None:
        """Stop the worker (its temporary directory goes with it)."""
        if self.worker is not None:
            self.zygote.finish(self.worker)
            self.worker = None
            self.reader = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> None:
        self.worker = self.zygote.spawn(self.limits)
        self.epoch += 1
        self.held.clear()
        self.reader = protocol.FrameReader(self.worker.response_fd)
        header, _ = self._read(time.monotonic() + HELLO_TIMEOUT, SMALL)
        if header.get("op") != "hello":
            raise _WorkerGone("protocol", "the worker did not say hello")
        layers = bounded(header.get("layers"))
        self.layers = layers if isinstance(layers, dict) else {}

    def _kill(self, grace: float = 0.0) -> dict[str, Any]:
        """Stop the current worker (after `grace` seconds to exit by itself) and say how it ended."""
        status: dict[str, Any] = {"exitcode": None, "signal": None, "stderr": ""}
        if self.worker is not None:
            status = self.zygote.finish(self.worker, grace)
            self.worker = None
            self.reader = None
        return status

    def _lost(self, during: str, gone: _WorkerGone) -> SandboxError:
        """Stop the worker and say why it stopped answering: its own exit or crash, or a broken channel."""
        status = self._kill(grace=EXIT_GRACE)
        stderr = status.get("stderr", "") or ""
        if (
            gone.kind in ("protocol", "stalled", "too_large")
            or status.get("was_running")
            or status.get("exitcode") == EXIT_CHANNEL_BROKEN
        ):
            detail = gone.detail or "it closed its end"
            return ChannelBroken(
                f"{during} broke the notebook's channel to the grader ({detail}); "
                "do not write to or close file descriptors your code did not open"
            )
        if status.get("zygote_lost"):
            return WorkerDied(during, None, None, stderr, "the sandbox's process server stopped")
        sig: int | None = status.get("signal")
        code: int | None = status.get("exitcode")
        if sig:
            hint = SIGNAL_HINTS.get(sig, "")
        else:
            hint = EXIT_HINTS.get(code or 0, "os._exit() or a crash of the interpreter")
        if "MemoryError" in stderr and not sig:
            hint = EXIT_HINTS[71]
        hint = hint.format(memory=self.limits.memory_mb)
        if isinstance(status.get("stopped_for"), str):  # the zygote stopped it (its files over the disk quota)
            hint = status["stopped_for"][:300]
        return WorkerDied(during, code, sig, stderr, hint)

    def _bring_up(self) -> None:
        """Start a worker and run the notebook's cells (first run: recorded; later: replayed)."""
        while True:
            if self.restarts > self.limits.max_restarts:
                self.gave_up = True
                self.events.append(f"gave up after {self.limits.max_restarts} restarts of the notebook's process")
                return
            try:
                self._spawn()
            except _WorkerGone as gone:
                self._kill()
                self.restarts += 1
                self.events.append(f"the worker failed to start ({gone.detail or gone.kind})")
                continue
            if self._run_cells():
                return
            self.restarts += 1

    def _cell_limits(self) -> protocol.FrameLimits:
        return protocol.FrameLimits(
            max_header=max(CELL_HEADER, 8 * self.output.limit) + CELL_HEADER_SLACK, max_payloads=0, max_total=0
        )

    def _run_cells(self) -> bool:
        """Run all cells within the time budget (poisoned ones as their replay, or not at all); False when a
        cell killed the worker or a replay failed."""
        for index, source in self.cells:
            replay = index in self.poisoned
            if replay:
                if index not in self.replays:
                    continue
                source = self.replays[index]
            first_time = index not in self.records
            remaining = self._remaining()
            if remaining <= 0:
                if first_time:
                    self.records[index] = CellRecord(index, "not_run", error=NOT_RUN)
                continue
            timeout = min(self.limits.cell_timeout, remaining)
            started = time.monotonic()
            try:
                header, _ = self._request({"op": "run_cell", "source": source}, [], timeout, self._cell_limits())
            except _WorkerGone as gone:
                self.poisoned.add(index)
                if gone.kind == "timeout":
                    budget = self.limits.notebook_timeout if timeout < self.limits.cell_timeout else None
                    error: SandboxError = CellTimeout(index, timeout, source, notebook_limit=budget)
                    self._kill()
                    status = "timeout"
                else:
                    error = self._lost(f"cell {index}", gone)
                    status = "crashed"
                if replay:
                    self._replay_failed(index, str(error))
                else:
                    self.events.append(str(error))
                if first_time:
                    self.records[index] = CellRecord(
                        index, status, error=str(error), seconds=time.monotonic() - started
                    )
                return False
            err = header.get("error") if isinstance(header.get("error"), dict) else None
            ename = protocol.text_field(err.get("ename"), 100) or "Error" if err is not None else ""
            out_of_memory = ename == "MemoryError"
            message = None if err is None else f"{ename}: {protocol.text_field(err.get('evalue'), 2000)}"
            if replay:
                self.replayed[index] = None
                if message is None:
                    continue
                self._kill()  # start over without the cell: its replay's partial definitions must not linger
                self._replay_failed(index, message)
                return False
            if first_time:
                if out_of_memory:
                    message = f"MemoryError: the cell ran out of memory (the limit is {self.limits.memory_mb} MiB)"
                self.records[index] = CellRecord(
                    index,
                    "ok" if err is None else "error",
                    cell_outputs(header.get("outputs"), self.output),
                    message,
                    _count(header.get("execution_count")),
                    time.monotonic() - started,
                )
            if out_of_memory:
                # What the cell allocated may still be held: start over without it rather than starve the rest.
                self.poisoned.add(index)
                self._kill()
                event = OUT_OF_MEMORY_REPLAY if index in self.replays else OUT_OF_MEMORY
                self.events.append(event.format(index=index))
                return False
        return True

    def _replay_failed(self, index: int, why: str) -> None:
        """A cell's definitions-only replay failed: say so, and skip the whole cell from now on."""
        del self.replays[index]
        self.replayed[index] = why
        self.events.append(REPLAY_FAILED.format(index=index, why=why))

    # ------------------------------------------------------------------ the time budget

    def _remaining(self) -> float:
        return self.limits.notebook_timeout - self.spent["cells"] - self.spent["calls"]

    def _out_of_time(self, function: str | None = None) -> BudgetExhausted:
        """The error for a call the budget does not allow (or cut short); noted once in the events."""
        error = BudgetExhausted(self.limits.notebook_timeout, self.spent["cells"], self.spent["calls"], function)
        if not any(event.startswith("the notebook's total time budget") for event in self.events):
            self.events.append(
                f"the notebook's total time budget of {self.limits.notebook_timeout:g} s was used up; "
                "the checks after that point were not run"
            )
        return error

    # ------------------------------------------------------------------ the channel

    def _read(self, deadline: float, limits: protocol.FrameLimits) -> tuple[dict[str, Any], list[bytes]]:
        assert self.reader is not None
        try:
            header, payloads = self.reader.read(deadline, limits)
        except protocol.ChannelTimeout:
            raise _WorkerGone("timeout") from None
        except protocol.ChannelClosed:
            raise _WorkerGone("died") from None
        except protocol.FrameTooLarge as exc:
            raise _WorkerGone("too_large" if exc.what == "arrays" else "protocol", str(exc), exc.size) from None
        except protocol.ProtocolError as exc:
            raise _WorkerGone("protocol", str(exc)) from None
        self._note_imports(header.get("import_attempts"))
        return header, payloads

    def _note_imports(self, attempts: Any) -> None:
        """Add blocked imports the worker reports to the record (kept whatever later frames say)."""
        for name in _items(attempts, 50):
            name = protocol.text_field(name, 200)
            if name and name not in self.import_attempts and len(self.import_attempts) < MAX_IMPORT_ATTEMPTS:
                self.import_attempts.append(name)

    def _write(self, header: dict[str, Any], payloads: list[bytes], deadline: float) -> None:
        assert self.worker is not None
        try:
            protocol.write_frame(self.worker.request_fd, header, payloads, deadline)
        except protocol.ChannelTimeout:
            raise _WorkerGone("stalled", STALLED) from None
        except OSError:
            raise _WorkerGone("died") from None

    def _request(
        self,
        header: dict[str, Any],
        payloads: list[bytes],
        timeout: float,
        limits: protocol.FrameLimits,
        callback: Callable[[dict[str, Any], list[bytes]], tuple[dict[str, Any], list[bytes]]] | None = None,
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send a request and wait for its answer, at most `timeout` seconds in all (charged to the time
        budget); callbacks are answered on the way, import notices recorded, anything else is a protocol error."""
        self.seq += 1
        header["seq"] = self.seq
        started = time.monotonic()
        deadline = started + timeout
        try:
            self._write(header, payloads, deadline)
            while True:
                reply, reply_payloads = self._read(deadline, limits)
                op = reply.get("op")
                if op == protocol.IMPORT_NOTICE:
                    continue
                if reply.get("seq") != self.seq:
                    raise _WorkerGone("protocol", "an answer out of sequence")
                if op == "callback" and callback is not None:
                    self._write(*callback(reply, reply_payloads), deadline)
                    continue
                if op not in ANSWERS[header["op"]]:
                    shown = protocol.text_field(op, 40) or type(op).__name__
                    raise _WorkerGone("protocol", f"a {shown!r} frame in answer to a {header['op']} request")
                return reply, reply_payloads
        finally:
            self.spent["cells" if header["op"] == "run_cell" else "calls"] += time.monotonic() - started

    # ------------------------------------------------------------------ calls

    def seed(self, value: int) -> None:
        """Seed the notebook's global random generators (numpy.random and random); once the time budget
        is used up there is nothing to seed for (the next call says so)."""
        if self._remaining() <= 0:
            return
        self._ensure_worker()
        timeout = min(self.limits.call_timeout, self._remaining())
        try:
            self._request({"op": "seed", "value": int(value)}, [], timeout, SMALL)
        except _WorkerGone:
            self._kill()

    def _ensure_worker(self) -> None:
        if self.worker is None and not self.gave_up:
            self.restarts += 1  # the previous worker timed out, crashed or broke the channel
            self._bring_up()
        if self.worker is None:
            raise WorkerDied("start-up", None, None, hint="the notebook could not be run; see the execution record")

    def call(
        self,
        function: str,
        *args: Any,
        echo_args: bool = False,
        functions: Sequence[Callable[..., Any]] = (),
        via: Via = DIRECT,
        keep: Sequence[int] = (),
        **kwargs: Any,
    ) -> CallResult:
        """Call `function` in the notebook with copies of the arguments (or a method of an instance of the
        class `function`, as `via` says).

        The positions `keep` of a returned tuple stay in the worker and come back as opaque handles
        (protocol.Handle), which later calls may pass as arguments while that worker lives (CacheLost after).

        Callables listed in `functions` may appear among the arguments: the student
        receives a stand-in, and each call of it is evaluated here, in the grader.
        With echo_args, the arguments are sent back after the call (to detect mutation), followed by
        the instance attributes `via` assigned.
        The answer may carry at most RESULT_FACTOR times the arguments' bytes (at least
        RESULT_FLOOR) besides the echoed arguments; a larger one is refused unread.
        """
        lookup, function = function, via.name(function)
        if self.strikes[function] >= self.limits.failures_per_function:
            raise CallSkipped(function, self.strikes[function], self.last_failure[function])
        if self._remaining() <= 0:
            raise self._out_of_time()
        self._ensure_worker()
        if self._remaining() <= 0:  # replaying the cells after a restart used it up
            raise self._out_of_time()

        try:
            tree, payloads = protocol.encode(
                (list(args), kwargs, list(via.init), dict(via.attrs)),
                functions=protocol.identify(functions),
                strict=True,
                handles=self._handle_id,
            )
        except protocol.HandleLost as lost:
            raise CacheLost(str(lost).format(function=function, limit=protocol.MAX_HANDLES)) from None
        kept = {self._issue(): position for position in keep}
        arg_bytes = sum(len(p) for p in payloads)
        result_cap = max(RESULT_FLOOR, RESULT_FACTOR * arg_bytes) + (arg_bytes if echo_args else 0)
        limits = protocol.FrameLimits(max_header=CALL_HEADER, max_payloads=protocol.MAX_NODES, max_total=result_cap)
        budget = [self.limits.max_callbacks]

        def answer(request: dict[str, Any], request_payloads: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
            budget[0] -= 1
            fid = request.get("id")
            if budget[0] < 0:
                return {"op": "callback_error", "message": "too many evaluations of the function"}, []
            if type(fid) is not int or not 0 <= fid < len(functions):
                return {"op": "callback_error", "message": "that function is no longer available"}, []
            try:
                cb_args = protocol.decode(request.get("args"), request_payloads)
                if not isinstance(cb_args, (list, tuple)):
                    raise protocol.ProtocolError("the arguments are not a list")
                value = functions[fid](*cb_args)
            except protocol.ProtocolError as exc:
                return {"op": "callback_error", "message": f"invalid arguments: {exc}"}, []
            except Exception as exc:  # the grader's function refused what the student passed it
                return {"op": "callback_error", "message": str(exc)[:500]}, []
            value_tree, value_payloads = protocol.encode(value)
            return {"op": "callback_result", "value": value_tree}, value_payloads

        header = {"op": "call", "fn": lookup, "args": tree, "echo_args": echo_args, **via.header()}
        if kept:
            header["keep"] = [[position, hid] for hid, position in kept.items()]
        timeout = min(self.limits.call_timeout, self._remaining())
        try:
            reply, reply_payloads = self._request(header, payloads, timeout, limits, answer)
            echoed = len(args) + len(via.attrs) if echo_args else None
            return self._result(function, reply, reply_payloads, echoed, kept)
        except _WorkerGone as gone:
            raise self._call_failed(function, gone, timeout, arg_bytes, result_cap) from None

    def _call_failed(
        self, function: str, gone: _WorkerGone, timeout: float, arg_bytes: int, result_cap: int
    ) -> SandboxError:
        """The error for a call whose worker must go. Each timeout, crash or breach is a strike against the
        function: after a few, it is not called again (every new attempt would cost a restart of the notebook)."""
        if gone.kind == "timeout" and timeout < self.limits.call_timeout:
            self._kill()
            failure: SandboxError = self._out_of_time(function)  # the budget cut it short: no strike
            self.events.append(str(failure))
            return failure
        self.strikes[function] += 1
        if gone.kind == "timeout":
            self._kill()
            failure = CallTimeout(function, self.limits.call_timeout)
        elif gone.kind == "too_large":
            self._kill()
            size = protocol.size_text
            failure = ResultTooLarge(function, size(gone.size), size(arg_bytes), size(result_cap))
        else:
            failure = self._lost(f"a call of {function}()", gone)
        self.last_failure[function] = str(failure)
        self.events.append(str(failure))
        return failure

    def _texts(self, value: Any, count: int, length: int) -> list[str]:
        """Up to `count` strings of a list field, each cut to `length`, charged to the output budget."""
        texts = (self.output.take(protocol.text_field(v, length)) for v in _items(value, count))
        return [text for text in texts if text]

    def _issue(self) -> int:
        self.handle_ids += 1
        return self.handle_ids

    def _handle_id(self, handle: protocol.Handle) -> int:
        """The id of a handle among a call's arguments, if the current worker still holds its object."""
        if handle.owner is not self or handle.epoch != self.epoch:
            raise protocol.HandleLost(CACHE_RESTARTED)
        if handle.id not in self.held:
            raise protocol.HandleLost(CACHE_DROPPED)
        return handle.id

    def _held(self, kept: Mapping[int, int]) -> Callable[[int], protocol.Handle]:
        """Decode's `held` for an answer: a handle the worker holds, or one of this call's `kept` ids (issued
        now); any other id is forged."""

        def held(hid: int) -> protocol.Handle:
            if hid not in self.held and hid not in kept:
                raise protocol.ProtocolError(NOT_ISSUED.format(id=hid))
            return self.held.setdefault(hid, protocol.Handle(self, self.epoch, hid))

        return held

    def _result(
        self,
        function: str,
        reply: dict[str, Any],
        payloads: list[bytes],
        echoed: int | None,
        kept: Mapping[int, int],
    ) -> CallResult:
        """The call's outcome from its answer; `echoed` is how many arguments the answer must send back (None:
        none), `kept` the handle ids issued for its kept positions. A return value that is not a (value, echo)
        pair, an echo of another length, or a handle the grader did not issue, is forged."""
        op = reply.get("op")
        if op == "returned":
            try:
                pair = protocol.decode(reply.get("value"), payloads, held=self._held(kept))
                protocol.drop_oldest(self.held)
            except (protocol.ProtocolError, ValueError, TypeError) as exc:
                raise _WorkerGone("protocol", f"an unreadable return value: {str(exc)[:200]}") from None
            if type(pair) is not tuple or len(pair) != 2:
                raise _WorkerGone("protocol", "a return value that is not a (value, arguments) pair")
            value, args_after = pair
            if echoed is None and args_after is not None:
                raise _WorkerGone("protocol", "arguments sent back unasked")
            if echoed is not None and (type(args_after) is not tuple or len(args_after) != echoed):
                raise _WorkerGone("protocol", f"the arguments sent back are not the {echoed} the call passed")
            return CallResult(
                value,
                args_after,
                self._texts(reply.get("warnings"), 20, 300),
                self.output.take(protocol.text_field(reply.get("stdout"), 4000)),
                sum(len(p) for p in payloads),
            )
        if op == "raised":
            ename = protocol.text_field(reply.get("ename"), 100) or "Exception"
            evalue = protocol.text_field(reply.get("evalue"), 2000)
            if ename == "MemoryError":
                raise MemoryLimit(f"{function}()", self.limits.memory_mb * 1024**2)
            cls = NotImplementedByStudent if ename == "NotImplementedError" else StudentError
            raise cls(function, ename, evalue, self._texts(reply.get("traceback"), 12, 2000))
        if op == "missing":
            raise MissingFunction(function)
        raise MissingFunction(function, protocol.text_field(reply.get("type"), 100) or "value")
