"""Sandbox worker: a zygote that preloads NumPy and IPython once, and forks one confined
process per submission, which executes the notebook's cells and serves calls of its functions.

Run as ``python -I worker.py CONTROL_FD CONFIG_JSON`` by ``grader.sandbox.zygote``. This file
never imports the grader: it loads its two siblings (``protocol``, ``confine``) by path under
private names, and the forked child blocks imports of the grader's packages.

Zygote control messages (JSON over a SOCK_SEQPACKET socket, one message per packet):
``{"op": "spawn", "rlimits": ..., "output_limit": ..., "no_subprocesses": ...}`` with two file
descriptors attached (the request pipe to read, the response pipe to write) -> ``{"pid": ...}``;
``{"op": "finish", "pid": ...}`` kills that child's process group, reaps it and removes its
directory -> ``{"exitcode": ..., "signal": ..., "stderr": "last bytes of its stderr"}``;
``{"op": "exit"}`` or EOF ends the zygote.

Child requests (frames, see protocol.py), each answered by one frame with the same ``seq``:
``run_cell`` {source} -> ``cell_done`` {outputs, error, execution_count};
``call`` {fn, args, kwargs, echo_args} -> ``returned`` {value, warnings, stdout}, ``raised``,
``missing`` or ``not_callable``, interleaved with ``callback`` frames that the grader answers
with ``callback_result`` / ``callback_error``;
``seed`` {value} -> ``ok``; ``exit`` ends the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any


def _load_sibling(name: str) -> Any:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_jitgrade_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


protocol = _load_sibling("protocol")
confine = _load_sibling("confine")

import numpy as np  # noqa: E402  (after the siblings: numpy is preloaded for every child)
from IPython.core.displayhook import DisplayHook  # noqa: E402
from IPython.core.displaypub import DisplayPublisher  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets.config import Config  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRUNCATION_NOTE = "\n[jitgrade: output truncated: this notebook printed more than {limit} bytes]\n"


# --------------------------------------------------------------------------- output capture


class Capture:
    """Outputs of one cell or call, in nbformat's shape, under a byte budget shared by the notebook."""

    def __init__(self, budget: list[int], limit: int) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.budget = budget  # one-element list: bytes left, shared across captures
        self.limit = limit

    def _spend(self, size: int) -> bool:
        if self.budget[0] <= 0:
            return False
        self.budget[0] -= size
        if self.budget[0] <= 0:
            self.outputs.append(
                {"output_type": "stream", "name": "stderr", "text": TRUNCATION_NOTE.format(limit=self.limit)}
            )
            return False
        return True

    def stream(self, name: str, text: str) -> None:
        if not text or not self._spend(len(text)):
            return
        last = self.outputs[-1] if self.outputs else None
        if last is not None and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def data(self, kind: str, data: dict[str, Any], metadata: dict[str, Any] | None, count: int | None) -> None:
        clean = {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in data.items()}
        if not self._spend(sum(len(v) for v in clean.values())):
            return
        output: dict[str, Any] = {"output_type": kind, "data": clean, "metadata": {}}
        if kind == "execute_result":
            output["execution_count"] = count
        self.outputs.append(output)

    def error(self, ename: str, evalue: str, traceback_lines: list[str]) -> None:
        lines = [_ANSI.sub("", line) for line in traceback_lines][-40:]
        self._spend(sum(len(line) for line in lines))
        self.outputs.append({"output_type": "error", "ename": ename, "evalue": evalue[:2000], "traceback": lines})

    def text(self) -> str:
        """All stream text (for calls, whose prints are reported, not stored)."""
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream")


class _CaptureStream:
    """A text stream that appends to the current capture (student code replaces or closes it at will)."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name: str, worker: Worker) -> None:
        self.name = name
        self.worker = worker

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.worker.capture.stream(self.name, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("jitgrade captures this stream; it has no file descriptor")


class RecordingDisplayHook(DisplayHook):
    """Records the value of a cell's last expression as an execute_result output."""

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None) -> None:
        WORKER.capture.data("execute_result", format_dict, md_dict, self.prompt_count)

    def finish_displayhook(self) -> None:
        pass


class RecordingPublisher(DisplayPublisher):
    """Records display() calls (and inline figures) as display_data outputs."""

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> None:
        WORKER.capture.data("display_data", data, metadata, None)

    def clear_output(self, wait: bool = False) -> None:
        pass


class GradingShell(InteractiveShell):
    """IPython without a terminal: outputs and tracebacks go to the current capture."""

    displayhook_class = RecordingDisplayHook
    display_pub_class = RecordingPublisher

    def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
        lines = stb if isinstance(stb, list) else [str(stb)]
        WORKER.capture.error(getattr(etype, "__name__", str(etype)), str(evalue), lines)

    def ask_exit(self) -> None:  # exit() / quit() in a cell must not end anything
        pass

    def enable_gui(self, gui: Any = None) -> None:  # no event loops while grading (%matplotlib inline asks)
        pass


def _make_shell() -> GradingShell:
    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.autocall = 0
    config.InteractiveShell.automagic = True
    config.InteractiveShell.xmode = "Context"
    try:
        config.InteractiveShell.colors = "nocolor"
        return GradingShell.instance(config=config)
    except Exception:  # IPython 8 spells it NoColor
        GradingShell.clear_instance()
        config.InteractiveShell.colors = "NoColor"
        return GradingShell.instance(config=config)


# --------------------------------------------------------------------------- imports


class ImportGuard:
    """Meta-path finder that refuses the grader's packages and remembers who asked."""

    def __init__(self, blocked: list[str]) -> None:
        self.blocked = set(blocked)
        self.attempts: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.blocked:
            if fullname not in self.attempts:
                self.attempts.append(fullname)
            raise ImportError(f"importing {fullname!r} is not allowed in a graded notebook (jitgrade)")
        return None

    def invalidate_caches(self) -> None:
        pass


# --------------------------------------------------------------------------- the child


class GraderFunction:
    """A function the grader passed in: calling it asks the grader to evaluate it."""

    __slots__ = ("_fid",)

    def __init__(self, fid: int) -> None:
        self._fid = fid

    def __call__(self, *args: Any) -> Any:
        return WORKER.callback(self._fid, args)

    def __repr__(self) -> str:
        return "<function provided by the grader>"


class Worker:
    """The per-submission server: reads requests, runs cells and calls, answers with frames."""

    def __init__(self, shell: GradingShell, req_fd: int, resp_fd: int, output_limit: int, guard: ImportGuard) -> None:
        self.shell = shell
        self.reader = protocol.FrameReader(req_fd)
        self.resp_fd = resp_fd
        self.budget = [output_limit]
        self.output_limit = output_limit
        self.capture = Capture([1 << 30], output_limit)
        self.guard = guard
        self.seq = 0
        # Created once and never replaced: print() in a student's thread may hold a borrowed
        # reference to sys.stdout while we swap captures (freeing a stream under it crashed CPython).
        self.streams = (_CaptureStream("stdout", self), _CaptureStream("stderr", self))

    def send(self, header: dict[str, Any], payloads: list[bytes] = ()) -> None:  # type: ignore[assignment]
        header["seq"] = self.seq
        header["import_attempts"] = list(self.guard.attempts)
        protocol.write_frame(self.resp_fd, header, list(payloads))

    def serve(self) -> None:
        while True:
            try:
                header, payloads = self.reader.read()
            except protocol.ChannelClosed:
                return
            self.seq = header.get("seq", 0)
            op = header.get("op")
            if op == "run_cell":
                self.run_cell(str(header.get("source", "")))
            elif op == "call":
                self.call(header, payloads)
            elif op == "seed":
                value = int(header.get("value", 0))
                random.seed(value)
                np.random.seed(value)
                self.send({"op": "ok"})
            elif op == "exit":
                return
            else:
                self.send({"op": "bad_request", "message": f"unknown op {op!r}"})

    def _redirect(self, capture: Capture) -> None:
        self.capture = capture
        sys.stdout, sys.stderr = self.streams  # type: ignore[assignment]

    def run_cell(self, source: str) -> None:
        capture = Capture(self.budget, self.output_limit)
        self._redirect(capture)
        try:
            result = self.shell.run_cell(source, store_history=True)
            error = result.error_before_exec or result.error_in_exec
        except BaseException as exc:  # the shell itself gave up (e.g. an exception in a hook)
            capture.error(type(exc).__name__, str(exc), traceback.format_exception(exc))
            error = exc
        self._redirect(Capture([1 << 30], self.output_limit))
        summary = None if error is None else {"ename": type(error).__name__, "evalue": str(error)[:2000]}
        self.send(
            {
                "op": "cell_done",
                "outputs": capture.outputs,
                "error": summary,
                "execution_count": self.shell.execution_count - 1,
            }
        )

    def call(self, header: dict[str, Any], payloads: list[bytes]) -> None:
        name = str(header.get("fn", ""))
        fn = self.shell.user_ns.get(name)
        if fn is None:
            self.send({"op": "missing"})
            return
        if not callable(fn):
            self.send({"op": "not_callable", "type": type(fn).__name__})
            return
        try:
            args = protocol.decode(header.get("args"), payloads, GraderFunction)
            kwargs = protocol.decode(header.get("kwargs"), payloads, GraderFunction)
        except protocol.ProtocolError as exc:
            self.send({"op": "bad_request", "message": str(exc)})
            return
        capture = Capture([256 * 1024], 256 * 1024)
        self._redirect(capture)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = fn(*args, **kwargs)
        except BaseException as exc:
            self._redirect(Capture([1 << 30], self.output_limit))
            frames = traceback.format_exception(exc)
            self.send(
                {
                    "op": "raised",
                    "ename": type(exc).__name__,
                    "evalue": str(exc)[:2000],
                    "traceback": [_ANSI.sub("", f) for f in frames[-12:]],
                    "stdout": capture.text()[-4000:],
                }
            )
            return
        self._redirect(Capture([1 << 30], self.output_limit))
        shown = [f"{w.category.__name__}: {w.message}" for w in caught[:20]]
        tree, out = protocol.encode((value, tuple(args) if header.get("echo_args") else None))
        self.send({"op": "returned", "value": tree, "warnings": shown, "stdout": capture.text()[-4000:]}, out)

    def callback(self, fid: int, args: tuple[Any, ...]) -> Any:
        tree, payloads = protocol.encode(args)
        header = {
            "op": "callback",
            "id": fid,
            "args": tree,
            "seq": self.seq,
            "import_attempts": list(self.guard.attempts),
        }
        protocol.write_frame(self.resp_fd, header, payloads)
        reply, reply_payloads = self.reader.read()
        if reply.get("op") == "callback_result":
            return protocol.decode(reply.get("value"), reply_payloads)
        raise RuntimeError(str(reply.get("message", "the grader could not evaluate this function")))


WORKER: Worker  # the child's server, reached by the IPython hooks above


def _keep_only_fds(keep: set[int]) -> None:
    for fd in range(3, max(keep) + 1):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.closerange(max(keep) + 1, 65536)


def child_main(
    fds: list[int], workdir: str, config: dict[str, Any], request: dict[str, Any], shell: GradingShell
) -> None:
    """Confine this fresh fork, then serve the grader until told to exit. Never returns."""
    global WORKER
    req_fd, resp_fd = fds
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(os.path.join(workdir, ".stderr"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _keep_only_fds({req_fd, resp_fd})
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(config["env"])
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir, "IPYTHONDIR": workdir})
    tempfile.tempdir = workdir
    sys.path[:] = [""] + config["sys_path"]
    limits = confine.ResourceLimits(**request["rlimits"])
    layers = {"rlimits": confine.apply_rlimits(limits)}
    layers["no-privileges"] = confine.drop_privileges()
    readable = config["read_only"] + [f"/proc/{os.getpid()}"]
    layers["landlock"] = confine.install_landlock(readable, [workdir, "/dev/null"])
    layers["seccomp"] = confine.install_seccomp(allow_processes=not request["no_subprocesses"])
    guard = ImportGuard(config["blocked_imports"])
    sys.meta_path.insert(0, guard)  # type: ignore[arg-type]
    random.seed(0)
    np.random.seed(0)
    WORKER = Worker(shell, req_fd, resp_fd, int(request["output_limit"]), guard)
    try:
        WORKER.send({"op": "hello", "pid": os.getpid(), "layers": layers})
        WORKER.serve()
    except BaseException as exc:  # the worker itself failed (out of memory, a broken channel): say so, exit non-zero
        with contextlib.suppress(BaseException):
            os.write(2, f"jitgrade worker: {type(exc).__name__}: {exc}\n".encode("utf-8", "replace")[:2000])
        os._exit(71 if isinstance(exc, MemoryError) else 72 if isinstance(exc, OSError) else 70)
    os._exit(0)


def _finish(pid: int, workdir: str | None, grace: float) -> dict[str, Any]:
    """Stop a child (and its process group), reap it, read the tail of its stderr, remove its directory.

    The child gets `grace` seconds to finish exiting by itself (its pipes close a moment before it
    can be reaped); `was_running` then tells whether its status is its own doing or our kill's.
    """
    status: dict[str, Any] = {"exitcode": None, "signal": None, "stderr": "", "was_running": False}
    deadline = time.monotonic() + grace
    while True:
        try:
            done, raw = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, raw = pid, None
        if done != 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.002)
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(OSError):
            target()  # also ends what the child left running in its group
    if done == 0:
        status["was_running"] = True
        with contextlib.suppress(ChildProcessError):
            _, raw = os.waitpid(pid, 0)
    if raw is not None:
        if os.WIFSIGNALED(raw):
            status["signal"] = os.WTERMSIG(raw)
        else:
            status["exitcode"] = os.WEXITSTATUS(raw)
    if workdir:
        try:
            with open(os.path.join(workdir, ".stderr"), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                status["stderr"] = f.read().decode("utf-8", "replace")
        except OSError:
            pass
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def _die_with(parent: int) -> None:
    """Have the kernel kill this child when its parent (the zygote) dies, and check it did not already."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)


def zygote_main(control: socket.socket, config: dict[str, Any]) -> None:
    """Serve spawn/finish requests from the grader until it says exit or goes away."""
    shell = _make_shell()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workdirs: dict[int, str] = {}
    zygote = os.getpid()
    control.send(json.dumps({"ready": True, "pid": zygote, "time": time.time()}).encode())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 65536, 4)
        except OSError:
            message, fds = b"", []
        if not message:  # the grader is gone (exited or killed): take every worker with us
            for pid, workdir in list(workdirs.items()):
                _finish(pid, workdir, 0.0)
            return
        request = json.loads(message)
        op = request.get("op")
        if op == "spawn":
            workdir = tempfile.mkdtemp(prefix="jitgrade-", dir=config["tmp_root"])
            pid = os.fork()
            if pid == 0:
                control.close()
                _die_with(zygote)
                child_main(fds, workdir, config, request, shell)
            for fd in fds:
                os.close(fd)
            workdirs[pid] = workdir
            control.send(json.dumps({"pid": pid}).encode())
        elif op == "finish":
            pid = int(request["pid"])
            grace = min(float(request.get("grace", 0.0)), 2.0)
            control.send(json.dumps({"pid": pid, **_finish(pid, workdirs.pop(pid, None), grace)}).encode())
        else:
            for pid, workdir in list(workdirs.items()):
                _finish(pid, workdir, 0.0)
            return


if __name__ == "__main__":
    _control = socket.socket(fileno=int(sys.argv[1]))
    zygote_main(_control, json.loads(sys.argv[2]))
