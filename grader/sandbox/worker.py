"""Sandbox worker: a zygote that preloads NumPy and IPython once, and forks one confined
process per submission, which executes the notebook's cells and serves calls of its functions.

Run as ``python -I worker.py CONTROL_FD`` by ``grader.sandbox.zygote``, whose first message on the control
socket is the zygote's configuration (JSON; never on the command line, which every fork inherits). This file
never imports the grader: it loads its two siblings (``protocol``, ``confine``) by path under
private names, and the forked child blocks imports of the grader's packages.

Zygote control messages (JSON over a SOCK_SEQPACKET socket, one message per packet): first the
zygote's ``{"ready": true, "pid": ..., "preload_failed": {module: error}}``, once it has imported
NumPy, IPython and the modules of ``preload`` in its config (an assignment's, e.g. torch: every
worker then inherits them); then
``{"op": "spawn", "rlimits": ..., "memory_bytes": ..., "output_limit": ..., "disk_bytes": ..., "max_files": ...,
"no_subprocesses": ..., "max_processes": ..., "max_threads": ...}``
with two file descriptors attached (the request pipe to read, the response pipe to write) -> ``{"pid": ...}``;
``{"op": "finish", "pid": ..., "grace": seconds}`` gives that child up to ``grace`` seconds (at most 2) to
exit by itself, kills its process group, reaps it and removes its directory -> ``{"exitcode": ..., "signal": ...,
"was_running": ..., "stderr": "last bytes of its stderr", "cleaned": ...}``
(plus ``"stopped_for"`` when the zygote itself stopped the child); ``{"op": "exit"}`` or EOF ends
the zygote. Between messages the zygote measures each live child's directory ten times a second
and stops a child over its quota of bytes or entries (``disk_bytes``, ``max_files`` in spawn):
the directory is RAM under bubblewrap (whose /tmp also has a fixed size) and outside the memory
limit, and RLIMIT_FSIZE bounds one file only. Files the child removed but keeps open or mapped count
too, and a directory that cannot be measured several times in a row (its entries keep changing type
under the walk) stops the child: the measure fails closed. The same watch counts the tasks (threads
and processes) of the child's process group against ``max_threads`` and its processes against
``max_processes``.

Memory (``memory_bytes``) bounds what a child actually uses, not its address space (an import
of PyTorch reserves gigabytes it never touches): a cgroup v2 child per worker with ``memory.max``
and no swap when the zygote may create one (its kernel kills the worker, ``memory.events`` says
so), else the same ten-a-second watch reads the resident memory of the child's process group
(anonymous and shared-memory pages, beyond what the child inherited from the zygote) and stops
it over the limit, while the child checks itself at the end of each cell and call (memory a cell
leaves allocated is that cell's MemoryError, not a kill during whatever runs next). The child's
hello names the mechanism in force (``layers["memory"]``); RLIMIT_AS stays as a generous backstop.

The zygote trusts nothing in a child's directory: it reads the child's stderr through the
descriptor it opened before the fork (never by name), and removes the directory without
following symbolic links, giving back to the owner the rights a ``chmod 0`` took.

Child requests (frames, see protocol.py), each answered by one frame with the same ``seq``:
``run_cell`` {source} -> ``cell_done`` {outputs, error, execution_count};
``call`` {fn, args, kwargs, echo_args, keep} -> ``returned`` {value, warnings, stdout}, ``raised``,
``missing`` or ``not_callable``, interleaved with ``callback`` frames that the grader answers
with ``callback_result`` / ``callback_error``;
``seed`` {value} -> ``ok``; ``exit`` ends the child. ``keep`` ([[position, id], ...]) has the child hold those
positions of a returned tuple in its table of handles (at most protocol.MAX_HANDLES, the oldest dropped) and send
handle nodes in their place; a handle among a call's arguments is replaced by the object it holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import json
import os
import random
import re
import select
import signal
import socket
import stat
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
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
calls = _load_sibling("calls")

import numpy as np  # noqa: E402  (after the siblings: numpy is preloaded for every child)
from IPython.core.displayhook import DisplayHook  # noqa: E402
from IPython.core.displaypub import DisplayPublisher  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets.config import Config  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRUNCATION_NOTE = protocol.TRUNCATION_NOTE
STDERR_FILE = ".stderr"  # in the worker's directory; the zygote reads it through its own descriptor only
STDERR_TAIL = 4096
QUOTA_POLL = 0.1  # seconds between two measures of the live workers' directories
REMOVE_TIMEOUT = 20.0  # seconds the removal of a worker's directory may take (the grader waits 30 s for finish)
# Why the zygote stopped a worker, as finish() reports it ("stopped_for") and as a last line of its stderr.
DISK_QUOTA_NOTE = (
    "its files took {found} MiB in its working directory, over the limit of {limit} MiB; "
    "write less to files, or delete those it no longer needs"
)
FILE_COUNT_NOTE = "it created more than {limit} files and folders in its working directory; keep fewer files"
MEMORY_NOTE = (
    "it ran out of memory: it used {found} MiB, over the limit of {limit} MiB ({mechanism}); "
    "look for huge arrays or loops that keep allocating"
)
CGROUP, RSS_WATCHDOG = "cgroup", "rss-watchdog"  # how a worker's memory is bounded (its hello's layers["memory"])
CGROUP_PREFIX = "jitgrade-worker-"
STOPPED_LINE = "jitgrade: the notebook's process was stopped: {reason}\n"
TASK_COUNT_NOTE = (
    "it started {found} threads; at most {limit} may run at once (max_threads); "
    "use a small pool of threads and let them finish"
)
PROCESS_COUNT_NOTE = (
    "it started {found} processes; at most {limit} may run at once (max_processes); wait for subprocesses to exit"
)
UNMEASURABLE_NOTE = (
    "its working directory could not be measured {count} times in a row ({error}): its files and folders "
    "kept changing type under the count; do not swap files and folders under the same names"
)
UNMEASURABLE_LIMIT = 5  # consecutive failed measures (half a second) before the watch fails closed
CONFIG_BYTES = 1 << 22  # the largest configuration message the zygote accepts
HANDLE_GONE = (
    "the object held for the grader as handle #{id} is gone from the notebook's process (its table of handles was "
    "changed); do not touch the grader's objects"
)


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
    """Meta-path finder that refuses the grader's packages and reports each attempt to the grader at once
    (an import_attempt frame), so clearing this object's record later erases nothing the grader holds."""

    def __init__(self, blocked: list[str], resp_fd: int) -> None:
        self.blocked = set(blocked)
        self.attempts: list[str] = []
        self.resp_fd = resp_fd

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.blocked:
            if fullname not in self.attempts:
                self.attempts.append(fullname)
                with contextlib.suppress(OSError):
                    protocol.write_frame(self.resp_fd, {"op": protocol.IMPORT_NOTICE, "import_attempts": [fullname]})
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

    def __init__(
        self,
        shell: GradingShell,
        req_fd: int,
        resp_fd: int,
        output_limit: int,
        guard: ImportGuard,
        watched: tuple[int, int] | None = None,
    ) -> None:
        self.shell = shell
        self.watched = watched  # (memory limit, bytes inherited) when the zygote's watch, not a cgroup, holds it
        self.reader = protocol.FrameReader(req_fd)
        self.resp_fd = resp_fd
        self.budget = [output_limit]
        self.output_limit = output_limit
        self.capture = Capture([1 << 30], output_limit)
        self.guard = guard
        self.seq = 0
        self.held: dict[int, Any] = {}  # handle id -> an object kept for the grader (protocol.Handle)
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

    def check_memory(self) -> None:
        """Raise MemoryError when this process holds more than its limit at the end of a cell or call: the
        zygote's watch polls ten times a second and would stop it later, during whatever ran next."""
        if self.watched is not None:
            limit, inherited = self.watched
            used = _resident_bytes(os.getpid()) - inherited
            if used > limit:
                raise MemoryError(MEMORY_NOTE.format(found=used // 2**20, limit=limit // 2**20, mechanism=RSS_WATCHDOG))

    def run_cell(self, source: str) -> None:
        capture = Capture(self.budget, self.output_limit)
        self._redirect(capture)
        try:
            result = self.shell.run_cell(source, store_history=True)
            error = result.error_before_exec or result.error_in_exec
            if error is None:
                self.check_memory()
        except MemoryError as exc:  # the cell left too much allocated: its own traceback says nothing
            capture.error("MemoryError", str(exc), [])
            error = exc
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
            args, kwargs, init, attrs = protocol.decode(header.get("args"), payloads, GraderFunction, self._held)
        except protocol.HandleLost as exc:  # the notebook's code emptied the table: that call's failure only
            self.send({"op": "raised", "ename": "LookupError", "evalue": str(exc), "traceback": [], "stdout": ""})
            return
        except (protocol.ProtocolError, ValueError, TypeError) as exc:
            self.send({"op": "bad_request", "message": str(exc)})
            return
        method = header.get("method")
        capture = Capture([256 * 1024], 256 * 1024)
        self._redirect(capture)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value, echo = calls.invoke(
                    fn,
                    (args, kwargs, init, attrs),
                    method,
                    header.get("tensors") is True,
                    bool(header.get("echo_args")),
                )
                self.check_memory()
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
        echo = protocol.held_again(echo, self.held)  # before holding: a kept result may be an argument itself
        value = protocol.hold(value, self._kept(header.get("keep")), self.held)
        tree, out = protocol.encode((value, echo), handles=lambda handle: handle.id)
        self.send({"op": "returned", "value": tree, "warnings": shown, "stdout": capture.text()[-4000:]}, out)

    def _held(self, hid: int) -> Any:
        """The object a handle among the arguments stands for."""
        if hid not in self.held:
            raise protocol.HandleLost(HANDLE_GONE.format(id=hid))
        return self.held[hid]

    @staticmethod
    def _kept(keep: Any) -> list[tuple[int, int]]:
        """The (position, id) pairs of a request's `keep` field (malformed entries ignored)."""
        pairs = [p for p in keep if isinstance(p, list) and len(p) == 2] if isinstance(keep, list) else []
        return [(pos, hid) for pos, hid in pairs if type(pos) is int and type(hid) is int and pos >= 0]

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
    os.closerange(max(keep) + 1, 0x7FFFFFFF)


def child_main(
    fds: list[int],
    log: int,
    workdir: str,
    config: dict[str, Any],
    request: dict[str, Any],
    shell: GradingShell,
    zygote: int,
    memory: str,
    inherited: int,
) -> None:
    """Confine this fresh fork of `zygote`, then serve the grader until told to exit. Never returns.
    `memory` names what bounds its memory (CGROUP or RSS_WATCHDOG, which charges it beyond the
    `inherited` bytes it shares with the zygote)."""
    global WORKER
    req_fd, resp_fd = fds
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _keep_only_fds({req_fd, resp_fd})  # the zygote's control socket, its log, other workers' logs: all gone
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(config["env"])
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "MPLCONFIGDIR": workdir, "IPYTHONDIR": workdir})
    tempfile.tempdir = workdir
    sys.argv[:] = [""]
    sys.orig_argv[:] = []  # the zygote's command line: its interpreter and runtime folder
    sys.path[:] = [""] + config["sys_path"]
    sys.path_importer_cache.clear()  # its keys name the folders the zygote searched (a project root, say)
    rlimits = dict(request["rlimits"])
    if os.geteuid() != 0:  # RLIMIT_NPROC counts all tasks of a user: only a root worker gets one of its own (65534)
        rlimits["processes"] = 0
    limits = confine.ResourceLimits(**rlimits)
    layers: dict[str, Any] = {"rlimits": confine.apply_rlimits(limits), "memory": memory}
    readable = config["read_only"] + confine.own_proc_paths()
    layers["landlock"] = confine.install_landlock(readable, [workdir, "/dev/null"], config["list_only"])
    layers["no-privileges"] = confine.drop_privileges(confine.UNPRIVILEGED_ID, config["keep_read_search"])
    layers["unprivileged-user"] = os.geteuid() != 0
    _die_with(zygote)  # a change of user clears the parent-death signal: set it again
    layers["seccomp"] = confine.install_seccomp(allow_processes=not request["no_subprocesses"])
    _limit_torch_threads(int(config["env"].get("OMP_NUM_THREADS", "1")))
    guard = ImportGuard(config["blocked_imports"], resp_fd)
    sys.meta_path.insert(0, guard)  # type: ignore[arg-type]
    random.seed(0)
    np.random.seed(0)
    watched = (int(request["memory_bytes"]), inherited) if memory == RSS_WATCHDOG else None
    WORKER = Worker(shell, req_fd, resp_fd, int(request["output_limit"]), guard, watched)
    try:
        WORKER.send(dict(op="hello", pid=os.getpid(), layers=layers))  # (keywords: "layers" is also an assignment)
        WORKER.serve()
    except BaseException as exc:  # the worker itself failed (out of memory, a broken channel): say so, exit non-zero
        with contextlib.suppress(BaseException):
            os.write(2, f"jitgrade worker: {type(exc).__name__}: {exc}\n".encode("utf-8", "replace")[:2000])
        os._exit(71 if isinstance(exc, MemoryError) else 72 if isinstance(exc, OSError) else 70)
    os._exit(0)


# --------------------------------------------------------------------------- the zygote's side of a child


def _limit_torch_threads(threads: int) -> None:
    """Hold a preloaded PyTorch to the submission's CPU budget (it read OMP_NUM_THREADS in the zygote,
    whose environment may differ; a later import by the student reads the worker's). After the
    confinement: a thread started earlier would escape Landlock and seccomp, which bind new threads only."""
    torch = sys.modules.get("torch")
    if torch is not None:
        for limit in (torch.set_num_threads, torch.set_num_interop_threads):
            with contextlib.suppress(Exception):  # interop: refused once set, or once used (never in the zygote)
                limit(threads)


@dataclass
class Child:
    """A forked worker as the zygote tracks it: its directory, the zygote's own descriptor of its
    stderr file, its directory's quota (bytes, entries), its memory limit and what holds it (its cgroup's
    folder, or None: the watch of its resident set, less the `inherited` bytes of the zygote it shares),
    whether it may have subprocesses, how many tasks and processes it may run, the device of its directory,
    how many measures of it failed in a row, and why the zygote stopped it, if it did."""

    workdir: str
    log: int
    disk_bytes: int
    max_files: int
    memory_bytes: int
    cgroup: str | None
    inherited: int
    subprocesses: bool
    max_threads: int
    max_processes: int
    device: int
    walk_failures: int = 0
    stopped_for: str = ""


def _enter(name: str, dir_fd: int | None) -> int:
    """Open a directory for listing without following a symbolic link, first giving its owner back the
    rights a `chmod 0` took (through an O_PATH handle, so the mode of nothing else can change)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        fd = os.open(name, flags, dir_fd=dir_fd)
    mode = os.fstat(fd).st_mode
    if mode & 0o700 != 0o700:  # listable but not searchable (chmod 444): entries could not be examined
        os.fchmod(fd, stat.S_IMODE(mode) | 0o700)
    return fd


def walk_tree(root: str, remove: bool, max_entries: int, deadline: float) -> tuple[int, int, bool]:
    """Visit the tree under `root` whatever its owner did to it: any depth with two descriptors at most, no
    symbolic link followed, locked directories unlocked. Returns (bytes allocated, entries, finished); stops
    after `max_entries` entries or at `deadline`. With remove, every entry goes as it is seen, then `root`."""
    size = entries = 0
    fd = _enter(root, None)
    here = os.fstat(fd)
    ids = [(here.st_dev, here.st_ino)]  # the directories from root down to the current one
    names: list[str] = []
    pending: list[list[str]] = []  # per level: subdirectories not visited yet
    finished = False
    try:
        while entries <= max_entries and time.monotonic() < deadline:
            if len(pending) < len(ids):  # entered a directory: list it
                subdirs = []
                with os.scandir(fd) as listing:
                    for entry in listing:
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:  # a live worker removed it meanwhile
                            continue
                        entries += 1
                        size += info.st_blocks * 512
                        if stat.S_ISDIR(info.st_mode):
                            subdirs.append(entry.name)
                        elif remove:
                            os.unlink(entry.name, dir_fd=fd)
                pending.append(subdirs)
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    child = _enter(name, fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = child
                here = os.fstat(fd)
                ids.append((here.st_dev, here.st_ino))
                names.append(name)
                continue
            if not names:
                finished = True
                break
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = parent
            pending.pop()
            ids.pop()
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) != ids[-1]:  # moved while we were below: never walk anywhere else
                break
            if remove:
                os.rmdir(names[-1], dir_fd=fd)
            names.pop()
    finally:
        os.close(fd)
    if finished and remove:
        os.rmdir(root)
    return size, entries, finished


def _unlinked_bytes(members: list[int], device: int) -> int:
    """Bytes in files on `device` (the worker's directory's) that the processes removed but keep open or
    mapped (no walk sees them; libc's mmap keeps no descriptor), each file counted once. Both folders of
    links need ptrace access to the worker, which is undumpable: a root zygote has it (following map_files
    takes CAP_SYS_ADMIN, which it has too); under bubblewrap the private /tmp's usage tells instead; a
    zygote of an unprivileged grader, outside bubblewrap, sees none of these files."""
    files: dict[int, int] = {}
    for pid in members:
        for folder in (f"/proc/{pid}/fd", f"/proc/{pid}/map_files"):
            with contextlib.suppress(OSError):
                for name in os.listdir(folder):
                    with contextlib.suppress(OSError):
                        info = os.stat(os.path.join(folder, name))
                        if stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and info.st_dev == device:
                            files[info.st_ino] = info.st_blocks * 512
    return sum(files.values())


def _used_bytes(folder: str) -> int:
    info = os.statvfs(folder)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


def _task_usage(pid: int) -> tuple[int, int]:
    """(resident bytes, threads) of a process. Memory counts what no one else could give back: resident
    anonymous and shared-memory pages (file pages can be dropped; shared memory, e.g. mmap(-1, n), cannot).
    /proc/<pid>/status needs no ptrace right: a zygote may read it of an undumpable worker of another user."""
    resident = threads = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith((b"RssAnon:", b"RssShmem:")):
                resident += int(line.split()[1]) * 1024
            elif line.startswith(b"Threads:"):
                threads = int(line.split()[1])
    return resident, threads


def _resident_bytes(pid: int) -> int:
    """A process's resident memory as _task_usage counts it."""
    return _task_usage(pid)[0]


def _group(pgid: int) -> list[int]:
    """The processes of process group `pgid`: a worker (its own group since setsid) and its subprocesses,
    which cannot leave it (seccomp refuses setsid and setpgid)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{name}/stat", "rb") as stat_file:
                data = stat_file.read()
                if int(data[data.rindex(b")") + 2 :].split()[2]) == pgid:  # fields after comm: state ppid pgrp
                    members.append(int(name))
    return members


def _measure(child: Child) -> tuple[int, int]:
    """(bytes, entries) of a worker's directory. A walk that fails (the worker swaps files and folders under
    the same names while it runs) counts as nothing at first, as over the quota after UNMEASURABLE_LIMIT
    failures in a row: the measure fails closed."""
    try:
        size, entries, _ = walk_tree(child.workdir, False, child.max_files, time.monotonic() + 1.0)
    except OSError as exc:
        child.walk_failures += 1
        if child.walk_failures >= UNMEASURABLE_LIMIT and not child.stopped_for:
            child.stopped_for = UNMEASURABLE_NOTE.format(count=child.walk_failures, error=exc)
        return 0, 0
    child.walk_failures = 0
    return size, entries


def _verdict(pid: int, child: Child, size: int, entries: int, unseen: int) -> str:
    """Why the watch stops a worker now (the first limit it is over), or "" when it is within them all.
    `unseen` is what a private /tmp's usage shows beyond the walks (it includes the removed files)."""
    members = _group(pid) if child.subprocesses else [pid]
    usage = [_task_usage(member) for member in members]
    memory = 0 if child.cgroup else max(0, sum(resident for resident, _ in usage) - child.inherited)
    threads = sum(count for _, count in usage)
    size += max(unseen, _unlinked_bytes(members, child.device))
    if memory > child.memory_bytes:
        return MEMORY_NOTE.format(found=memory // 2**20, limit=child.memory_bytes // 2**20, mechanism=RSS_WATCHDOG)
    if threads > child.max_threads:
        return TASK_COUNT_NOTE.format(found=threads, limit=child.max_threads)
    if child.subprocesses and len(members) > child.max_processes:
        return PROCESS_COUNT_NOTE.format(found=len(members), limit=child.max_processes)
    if size > child.disk_bytes:
        return DISK_QUOTA_NOTE.format(found=size // 2**20, limit=child.disk_bytes // 2**20)
    if entries > child.max_files:
        return FILE_COUNT_NOTE.format(limit=child.max_files)
    return ""


def _check_quotas(children: dict[int, Child], private_tmp: str | None, baseline: int) -> None:
    """Stop each live worker over one of its limits: memory (when no cgroup holds it), threads, processes,
    or files that take more than its quota of bytes or entries: the walk of its directory, plus what it
    removed but keeps open or mapped (RLIMIT_FSIZE bounds one file only, and the directory is RAM under
    bubblewrap, outside the memory limit). On a private /tmp (bubblewrap), whatever its usage shows beyond
    the walks is charged to every live worker: one zygote grades one submission at a time, so that is the
    one that hid it."""
    measured = {pid: _measure(child) for pid, child in children.items()}
    unseen = 0
    if private_tmp is not None:
        unseen = max(0, _used_bytes(private_tmp) - baseline - sum(size for size, _ in measured.values()))
    for pid, child in children.items():
        if not child.stopped_for:
            size, entries = measured[pid]
            child.stopped_for = _verdict(pid, child, size, entries, unseen)
        if child.stopped_for:
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(OSError):
            target()  # also ends what the child left running in its group


def _stderr_tail(log: int) -> str:
    """The last STDERR_TAIL bytes the child wrote, read through the zygote's own descriptor of the file
    (whatever the child did to the name: a symbolic link to /dev/zero or a FIFO is never opened)."""
    try:
        size = os.fstat(log).st_size
        return os.pread(log, STDERR_TAIL, max(0, size - STDERR_TAIL)).decode("utf-8", "replace")
    except OSError:
        return ""


def _finish(pid: int, child: Child | None, grace: float) -> dict[str, Any]:
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
    _kill_group(pid)
    if done == 0:
        status["was_running"] = True
        with contextlib.suppress(ChildProcessError):
            _, raw = os.waitpid(pid, 0)
    if raw is not None:
        if os.WIFSIGNALED(raw):
            status["signal"] = os.WTERMSIG(raw)
        else:
            status["exitcode"] = os.WEXITSTATUS(raw)
    if child is not None:
        status["stderr"] = _stderr_tail(child.log)
        os.close(child.log)
        if child.cgroup is not None:
            child.stopped_for = child.stopped_for or _cgroup_verdict(child.cgroup, child.memory_bytes)
            _remove_cgroup(child.cgroup)
        if child.stopped_for:
            status["stopped_for"] = child.stopped_for
            status["stderr"] = (status["stderr"] + STOPPED_LINE.format(reason=child.stopped_for))[-STDERR_TAIL:]
        try:
            _, _, removed = walk_tree(child.workdir, True, 1 << 62, time.monotonic() + REMOVE_TIMEOUT)
        except OSError:
            removed = False
        status["cleaned"] = removed
    return status


def _write(path: str, value: object) -> None:
    with open(path, "w") as file:
        file.write(str(value))


def _memory_cgroups() -> str | None:
    """The zygote's own cgroup v2 folder when it may hold one child cgroup per worker with the memory
    controller (already delegated to its children, or enabled here: a root zygote in a cgroup of its own),
    else None: inside a container without delegation, under cgroup v1, or as bubblewrap's unprivileged user."""
    try:
        with open("/proc/self/cgroup") as own:
            path = next(line[3:].strip() for line in own if line.startswith("0::"))
        with open("/proc/self/mountinfo") as mounts:
            mount = next(line.split()[4] for line in mounts if line.split(" - ")[1].startswith("cgroup2 "))
        folder = os.path.join(mount, path.lstrip("/"))
        subtree = os.path.join(folder, "cgroup.subtree_control")
        with open(subtree) as control:
            enabled = control.read().split()
        if "memory" not in enabled:
            _write(subtree, "+memory")
        if "pids" not in enabled:
            with contextlib.suppress(OSError):  # optional: the watch counts tasks anyway
                _write(subtree, "+pids")
        return folder
    except (OSError, StopIteration, IndexError):
        return None


def _enter_cgroup(parent: str, pid: int, limit: int, tasks: int) -> str | None:
    """Put worker `pid` (and so its subprocesses) in a cgroup of its own under `parent`: at most `limit`
    bytes of memory, no swap, killed whole when over; at most `tasks` threads and processes where the pids
    controller is on (the kernel refuses more: no window between two polls of the watch). Returns its
    folder, or None (nothing left behind)."""
    folder = os.path.join(parent, f"{CGROUP_PREFIX}{pid}")
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # left by a zygote that was killed, for a process of the same pid
    try:
        os.mkdir(folder)
    except OSError:
        return None
    try:
        _write(os.path.join(folder, "memory.max"), limit)
        if os.path.exists(os.path.join(folder, "memory.swap.max")):  # absent without swap accounting
            _write(os.path.join(folder, "memory.swap.max"), 0)
        _write(os.path.join(folder, "memory.oom.group"), 1)
        if os.path.exists(os.path.join(folder, "pids.max")):
            _write(os.path.join(folder, "pids.max"), tasks)
        _write(os.path.join(folder, "cgroup.procs"), pid)
    except OSError:
        _remove_cgroup(folder)
        return None
    return folder


def _cgroup_verdict(folder: str, limit: int) -> str:
    """MEMORY_NOTE when the kernel killed something in the worker's cgroup for its memory limit, else ""."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError), open(os.path.join(folder, "memory.events")) as events:
        counts = {name: int(value) for name, value in (line.split() for line in events)}
    if not counts.get("oom_kill"):
        return ""
    peak = limit
    with contextlib.suppress(OSError, ValueError), open(os.path.join(folder, "memory.peak")) as recorded:
        peak = int(recorded.read())
    return MEMORY_NOTE.format(found=peak // 2**20, limit=limit // 2**20, mechanism=CGROUP)


def _remove_cgroup(folder: str) -> None:
    """Remove a worker's cgroup once its processes are gone (the kernel lets go of them a moment after
    they are reaped)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            os.rmdir(folder)
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


def _die_with(parent: int) -> None:
    """Have the kernel kill this child when its parent (the zygote) dies, and check it did not already."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)


def _spawn(
    control: socket.socket,
    fds: list[int],
    config: dict[str, Any],
    request: dict[str, Any],
    shell: GradingShell,
    cgroups: str | None,
) -> tuple[int, Child]:
    """Fork a worker with its own directory (owned by the unprivileged user when the zygote is root), a
    stderr file the zygote keeps a descriptor of, and its own memory cgroup under `cgroups` when possible
    (it waits until it is in there before doing anything); returns its pid."""
    workdir = tempfile.mkdtemp(prefix="jitgrade-", dir=config["tmp_root"])
    device = os.stat(workdir).st_dev
    log = os.open(os.path.join(workdir, STDERR_FILE), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    if os.geteuid() == 0:
        os.chown(workdir, confine.UNPRIVILEGED_ID, confine.UNPRIVILEGED_ID)
    zygote = os.getpid()
    inherited = _resident_bytes(zygote)
    wait, go = os.pipe()
    pid = os.fork()
    if pid == 0:
        control.close()
        os.close(go)
        _die_with(zygote)
        mechanism = os.read(wait, 64).decode()  # once the zygote has put this process in its cgroup, if any
        os.close(wait)
        child_main(fds, log, workdir, config, request, shell, zygote, mechanism, inherited)
    os.close(wait)
    memory = int(request["memory_bytes"])
    cgroup = _enter_cgroup(cgroups, pid, memory, int(request["max_threads"])) if cgroups else None
    with contextlib.suppress(OSError):  # a child that died already is reaped at finish like any other
        os.write(go, (CGROUP if cgroup else RSS_WATCHDOG).encode())
    os.close(go)
    quota = int(request["disk_bytes"]), int(request["max_files"])
    tasks = int(request["max_threads"]), int(request["max_processes"])
    child = Child(workdir, log, *quota, memory, cgroup, inherited, not request["no_subprocesses"], *tasks, device)
    return pid, child


def _preload(modules: list[str]) -> dict[str, str]:
    """Import the modules an assignment asked for, once for every worker; returns the failures by name."""
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a module may fail any way it likes: it is reported, never fatal
            failed[name] = f"{type(exc).__name__}: {exc}"[:1000]
    return failed


def zygote_main(control: socket.socket, config: dict[str, Any]) -> None:
    """Serve spawn/finish requests from the grader until it says exit or goes away; meanwhile hold
    every live worker to its disk quota and (without a cgroup) its memory limit."""
    confine.make_undumpable()  # a worker of the same user cannot open this process's mem, environ or fds
    preload_failed = _preload(config["preload"])
    cgroups = _memory_cgroups()
    shell = _make_shell()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, Child] = {}
    private_tmp = config["tmp_root"] if config["private_tmp"] else None
    baseline = _used_bytes(private_tmp) if private_tmp else 0
    ready = {"ready": True, "pid": os.getpid(), "time": time.time(), "preload_failed": preload_failed}
    control.send(json.dumps(ready).encode())
    while True:
        if not select.select([control], [], [], QUOTA_POLL if children else None)[0]:
            _check_quotas(children, private_tmp, baseline)
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 65536, 4)
        except OSError:
            message, fds = b"", []
        request = json.loads(message) if message else {}
        op = request.get("op")
        if op == "spawn":
            pid, children[pid] = _spawn(control, fds, config, request, shell, cgroups)
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"pid": pid}).encode())
        elif op == "finish":
            pid = int(request["pid"])
            grace = min(float(request.get("grace", 0.0)), 2.0)
            control.send(json.dumps({"pid": pid, **_finish(pid, children.pop(pid, None), grace)}).encode())
        else:  # exit, or the grader is gone (exited or killed): take every worker with us
            for pid, child in list(children.items()):
                _finish(pid, child, 0.0)
            return


if __name__ == "__main__":
    _control = socket.socket(fileno=int(sys.argv[1]))
    zygote_main(_control, json.loads(_control.recv(CONFIG_BYTES)))
