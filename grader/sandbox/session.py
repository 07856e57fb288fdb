"""One submission's sandbox: execute its cells once, then serve calls of its functions.

The grader side of the channel. Every wait has a deadline; a timeout or a dead worker is
turned into an exception for the affected cell or call only, and the worker is restarted
(re-executing the notebook without the cells that killed it) before the next call.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grader.sandbox import protocol
from grader.sandbox.exceptions import (
    CallSkipped,
    CallTimeout,
    CellTimeout,
    ChannelBroken,
    MemoryLimit,
    MissingFunction,
    NotImplementedByStudent,
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


@dataclass
class CallResult:
    """A student function's return value (decoded, untrusted), and what it printed or warned."""

    value: Any
    args_after: tuple[Any, ...] | None
    warnings: list[str]
    stdout: str


class _WorkerGone(Exception):
    """Internal: the worker must be replaced (timed out, died, or broke the protocol)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class Sandbox:
    """Runs one notebook's code cells in a confined worker and calls its functions."""

    def __init__(self, zygote: Zygote, cells: Sequence[tuple[int, str]], limits: Limits) -> None:
        self.zygote = zygote
        self.cells = list(cells)
        self.limits = limits
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

    # ------------------------------------------------------------------ lifecycle

    def execute(self) -> ExecutionRecord:
        """Execute every code cell in order, continuing past failing cells; record the outcome."""
        started = time.monotonic()
        self._bring_up(deadline=started + self.limits.notebook_timeout)
        self.seconds = time.monotonic() - started
        return self.record()

    def record(self) -> ExecutionRecord:
        """The execution record so far (call it again after the checks: calls add restarts and events)."""
        cells = [self.records.get(i) or CellRecord(i, "not_run") for i, _ in self.cells]
        isolation = {"level": self.zygote.isolation, "layers": self.layers}
        return ExecutionRecord(
            cells, isolation, list(self.import_attempts), self.restarts, self.seconds, list(self.events)
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
        self.reader = protocol.FrameReader(self.worker.response_fd)
        header, _ = self._read(time.monotonic() + HELLO_TIMEOUT)
        if header.get("op") != "hello":
            raise _WorkerGone("protocol", "the worker did not say hello")
        self.layers = header.get("layers", {})

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
        if gone.kind == "protocol" or status.get("was_running") or status.get("exitcode") == EXIT_CHANNEL_BROKEN:
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
        return WorkerDied(during, code, sig, stderr, hint.format(memory=self.limits.memory_mb))

    def _bring_up(self, deadline: float) -> None:
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
            if self._run_cells(deadline):
                return
            self.restarts += 1

    def _run_cells(self, deadline: float) -> bool:
        """Run all non-poisoned cells; False when a cell killed the worker (restart needed)."""
        for index, source in self.cells:
            if index in self.poisoned:
                continue
            first_time = index not in self.records
            remaining = deadline - time.monotonic()
            if first_time and remaining <= 0:
                self.records[index] = CellRecord(index, "not_run", error="the notebook's total time limit was reached")
                continue
            timeout = min(self.limits.cell_timeout, max(remaining, 0.0)) if first_time else self.limits.cell_timeout
            started = time.monotonic()
            try:
                header, _ = self._request({"op": "run_cell", "source": source}, [], started + timeout)
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
                self.events.append(str(error))
                if first_time:
                    self.records[index] = CellRecord(
                        index, status, error=str(error), seconds=time.monotonic() - started
                    )
                return False
            err = header.get("error") if isinstance(header.get("error"), dict) else None
            out_of_memory = err is not None and err.get("ename") == "MemoryError"
            if first_time:
                raw = header.get("outputs")
                outputs: list[dict[str, Any]] = [o for o in raw if isinstance(o, dict)] if isinstance(raw, list) else []
                message = None if err is None else f"{err.get('ename', 'Error')}: {err.get('evalue', '')}"
                if out_of_memory:
                    message = f"MemoryError: the cell ran out of memory (the limit is {self.limits.memory_mb} MiB)"
                self.records[index] = CellRecord(
                    index,
                    "ok" if err is None else "error",
                    outputs,
                    message,
                    header.get("execution_count") if isinstance(header.get("execution_count"), int) else None,
                    time.monotonic() - started,
                )
            if out_of_memory:
                # What the cell allocated may still be held: start over without it rather than starve the rest.
                self.poisoned.add(index)
                self._kill()
                self.events.append(f"cell {index} ran out of memory; the notebook was restarted without it")
                return False
        return True

    # ------------------------------------------------------------------ the channel

    def _read(self, deadline: float) -> tuple[dict[str, Any], list[bytes]]:
        assert self.reader is not None
        try:
            header, payloads = self.reader.read(deadline)
        except protocol.ChannelTimeout:
            raise _WorkerGone("timeout") from None
        except protocol.ChannelClosed:
            raise _WorkerGone("died") from None
        except protocol.ProtocolError as exc:
            raise _WorkerGone("protocol", str(exc)) from None
        attempts = header.get("import_attempts")
        if isinstance(attempts, list):
            for name in attempts[:50]:
                if isinstance(name, str) and name[:200] not in self.import_attempts:
                    self.import_attempts.append(name[:200])
        return header, payloads

    def _request(
        self,
        header: dict[str, Any],
        payloads: list[bytes],
        deadline: float,
        callback: Callable[[dict[str, Any], list[bytes]], tuple[dict[str, Any], list[bytes]]] | None = None,
    ) -> tuple[dict[str, Any], list[bytes]]:
        assert self.worker is not None
        self.seq += 1
        header["seq"] = self.seq
        try:
            protocol.write_frame(self.worker.request_fd, header, payloads)
        except OSError:
            raise _WorkerGone("died") from None
        while True:
            reply, reply_payloads = self._read(deadline)
            if reply.get("op") == "callback" and callback is not None:
                answer, answer_payloads = callback(reply, reply_payloads)
                try:
                    protocol.write_frame(self.worker.request_fd, answer, answer_payloads)
                except OSError:
                    raise _WorkerGone("died") from None
                continue
            if reply.get("seq") != self.seq:
                raise _WorkerGone("protocol", "an answer out of sequence")
            return reply, reply_payloads

    # ------------------------------------------------------------------ calls

    def seed(self, value: int) -> None:
        """Seed the notebook's global random generators (numpy.random and random)."""
        self._ensure_worker()
        try:
            self._request({"op": "seed", "value": int(value)}, [], time.monotonic() + self.limits.call_timeout)
        except _WorkerGone:
            self._kill()

    def _ensure_worker(self) -> None:
        if self.worker is None and not self.gave_up:
            self.restarts += 1  # the previous worker timed out, crashed or broke the channel
            self._bring_up(deadline=time.monotonic() + self.limits.notebook_timeout)
        if self.worker is None:
            raise WorkerDied("start-up", None, None, hint="the notebook could not be run; see the execution record")

    def call(
        self,
        function: str,
        *args: Any,
        echo_args: bool = False,
        functions: Sequence[Callable[..., Any]] = (),
        **kwargs: Any,
    ) -> CallResult:
        """Call `function` in the notebook with copies of the arguments.

        Callables listed in `functions` may appear among the arguments: the student
        receives a stand-in, and each call of it is evaluated here, in the grader.
        With echo_args, the arguments are sent back after the call (to detect mutation).
        """
        if self.strikes[function] >= self.limits.failures_per_function:
            raise CallSkipped(function, self.strikes[function], self.last_failure[function])
        self._ensure_worker()

        tree, payloads = protocol.encode((list(args), kwargs), functions=protocol.identify(functions), strict=True)
        args_tree, kwargs_tree = tree["v"]
        budget = [self.limits.max_callbacks]

        def answer(request: dict[str, Any], request_payloads: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
            budget[0] -= 1
            fid = request.get("id")
            if budget[0] < 0:
                return {"op": "callback_error", "message": "too many evaluations of the function"}, []
            if not isinstance(fid, int) or not 0 <= fid < len(functions):
                return {"op": "callback_error", "message": "that function is no longer available"}, []
            try:
                cb_args = protocol.decode(request.get("args"), request_payloads)
                value = functions[fid](*cb_args)
            except protocol.ProtocolError as exc:
                return {"op": "callback_error", "message": f"invalid arguments: {exc}"}, []
            except (TypeError, ValueError) as exc:
                return {"op": "callback_error", "message": str(exc)}, []
            value_tree, value_payloads = protocol.encode(value)
            return {"op": "callback_result", "value": value_tree}, value_payloads

        header = {"op": "call", "fn": function, "args": args_tree, "kwargs": kwargs_tree, "echo_args": echo_args}
        try:
            reply, reply_payloads = self._request(header, payloads, time.monotonic() + self.limits.call_timeout, answer)
        except _WorkerGone as gone:
            # Each timeout or crash is a strike against the function: after a few, it is not called
            # again (every new attempt would cost a restart of the notebook).
            self.strikes[function] += 1
            if gone.kind == "timeout":
                self._kill()
                failure: SandboxError = CallTimeout(function, self.limits.call_timeout)
            else:
                failure = self._lost(f"a call of {function}()", gone)
            self.last_failure[function] = str(failure)
            self.events.append(str(failure))
            raise failure from None
        return self._result(function, reply, reply_payloads)

    def _result(self, function: str, reply: dict[str, Any], payloads: list[bytes]) -> CallResult:
        op = reply.get("op")
        if op == "returned":
            try:
                value, args_after = protocol.decode(reply.get("value"), payloads)
            except (protocol.ProtocolError, ValueError, TypeError) as exc:
                raise ChannelBroken(f"{function}() returned something unreadable: {exc}") from None
            warnings = (
                [str(w)[:300] for w in reply.get("warnings", [])[:20]]
                if isinstance(reply.get("warnings"), list)
                else []
            )
            return CallResult(value, args_after, warnings, str(reply.get("stdout", ""))[:4000])
        if op == "raised":
            ename = str(reply.get("ename", "Exception"))[:100]
            evalue = str(reply.get("evalue", ""))[:2000]
            tb = (
                [str(line)[:2000] for line in reply.get("traceback", [])][:12]
                if isinstance(reply.get("traceback"), list)
                else []
            )
            if ename == "MemoryError":
                raise MemoryLimit(f"{function}()", self.limits.memory_mb * 1024**2)
            cls = NotImplementedByStudent if ename == "NotImplementedError" else StudentError
            raise cls(function, ename, evalue, tb)
        if op == "missing":
            raise MissingFunction(function)
        if op == "not_callable":
            raise MissingFunction(function, str(reply.get("type", "value"))[:100])
        raise ChannelBroken(f"unexpected answer {str(op)[:40]!r} to a call of {function}()")
