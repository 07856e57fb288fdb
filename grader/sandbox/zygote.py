"""Start and talk to the zygote: one long-lived process (inside bubblewrap when available) that
has NumPy and IPython (and the modules an assignment asks to preload) loaded and forks a fresh,
confined worker per submission in milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.assignment import assignment_roots
from grader.sandbox import confine
from grader.sandbox.limits import Limits
from grader.truth import REFERENCE_DISTRIBUTION

_HERE = Path(__file__).resolve().parent
_RUNTIME_FILES = ("worker.py", "protocol.py", "confine.py", "calls.py")
BLOCKED_IMPORTS = ("grader", "reference", "jitgrade")
DISTRIBUTION = "jitgrade"
SANDBOX_TMP_BYTES = 1024**3  # bubblewrap's /tmp is RAM: its size bounds every worker directory of a zygote together
# What a worker may read besides the interpreter's own directories.
SYSTEM_READ_ONLY = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/opt",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/fonts",
    "/etc/matplotlibrc",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
)
WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}
READY_TIMEOUT = 60.0
PRELOAD_FAILED = (
    "the sandbox could not preload {module} ([sandbox] preload of the assignment): {error}. Submissions that "
    "import it will fail the same way; install it in the grader's environment (for torch: pip install "
    "'jitgrade[torch]') or remove it from preload"
)


class ZygoteError(RuntimeError):
    """The zygote could not be started or stopped answering."""


def installed_distribution_paths(name: str = DISTRIBUTION) -> list[str]:
    """Every top-level folder an installed copy of the grader's distribution put on disk (its packages,
    anything bundled in them, its .dist-info), in every environment on sys.path: a wheel installed
    next to a source checkout may hold assignments the checkout's paths do not cover."""
    paths: dict[str, None] = {}
    for dist in importlib.metadata.distributions(name=name):
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":  # scripts in bin/ say nothing private
                top = Path(str(dist.locate_file(file.parts[0])))
                if top.is_dir():
                    paths[str(top.resolve())] = None
    return list(paths)


def grader_private_paths() -> list[str]:
    """Directories a worker must never read: the grader's and reference's sources and data, wherever
    they are installed."""
    paths = [str(_HERE.parent)]
    spec = importlib.util.find_spec("reference")  # located, not imported (importing compiles nothing, but costs)
    if spec is not None and spec.origin is not None:
        paths.append(str(Path(spec.origin).resolve().parent))
    paths += [str(p.resolve()) for p in assignment_roots()]
    paths += installed_distribution_paths() + installed_distribution_paths(REFERENCE_DISTRIBUTION)
    checkout = _HERE.parent.parent / ".git"  # a source checkout's history holds every solution ever committed
    if checkout.exists():
        paths.append(str(checkout.resolve()))
    return list(dict.fromkeys(paths))


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def readable_paths(roots: Iterable[str], hidden: Iterable[str]) -> list[str]:
    """Allow-list for Landlock: every root, except that roots containing a hidden path are
    replaced by their children (recursively), so the hidden paths themselves stay out. Children
    are resolved first: a rule follows symbolic links (a virtual environment's lib64 -> lib would
    otherwise allow all of lib, hidden folders included)."""
    hidden = [os.path.realpath(h) for h in hidden]
    out: list[str] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen or any(_is_within(path, h) for h in hidden):
            return
        seen.add(path)
        if any(_is_within(h, path) for h in hidden):
            try:
                children = sorted(os.listdir(path))
            except OSError:
                return
            for child in children:
                visit(os.path.realpath(os.path.join(path, child)))
            return
        out.append(path)

    for root in dict.fromkeys(os.path.realpath(r) for r in roots if r and os.path.exists(r)):
        visit(root)
    return out


def listable_folders(roots: Iterable[str], hidden: Iterable[str]) -> list[str]:
    """The folders readable_paths opened up to leave hidden paths out (a root holding one, and each
    folder on the way down to it). A worker may list them, and so what is beneath, but not read a
    file in them: the import system lists site-packages before it imports from it. Names of hidden
    entries stay listable this way (under bubblewrap the hidden folders are empty mounts anyway)."""
    hidden = [os.path.realpath(h) for h in hidden]
    out: dict[str, None] = {}
    for root in dict.fromkeys(os.path.realpath(r) for r in roots if r and os.path.exists(r)):
        for h in hidden:
            if _is_within(h, root) and h != root:
                folder = Path(h).parent
                while _is_within(str(folder), root):
                    out[str(folder)] = None
                    folder = folder.parent
    return list(out)


def _is_site_dir(path: str) -> bool:
    return os.path.basename(path.rstrip("/")) in ("site-packages", "dist-packages")


def worker_sys_path(hidden: Iterable[str]) -> list[str]:
    """The grader's import path minus what a worker must not see.

    Entries inside a hidden folder go. An entry that contains one stays only if it is a
    site-packages folder (numpy and friends live there; the grader's own packages in it are
    blocked by the import guard and left out of the readable paths). Any other such entry,
    e.g. the project root of an editable install, goes whole: it may also hold .git, tests or
    solutions.

    Only the interpreter's own folders and site folders are kept at all: the folder of the script
    that runs the grader (an instructor's course folder, say), the current directory and PYTHONPATH
    entries may hold anything, so they are neither imported from nor readable by a worker.
    """
    hidden = [os.path.realpath(h) for h in hidden]
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    keep = []
    for entry in sys.path:
        if not entry or not os.path.exists(entry):
            continue
        real = os.path.realpath(entry)
        if not _is_site_dir(real) and not any(_is_within(real, p) for p in prefixes):
            continue
        if any(_is_within(real, h) for h in hidden):
            continue
        if any(_is_within(h, real) for h in hidden) and not _is_site_dir(real):
            continue
        keep.append(entry)
    return keep


def _interpreter_paths(hidden: Iterable[str]) -> list[str]:
    return [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *worker_sys_path(hidden)]


def readable_by_anyone(path: str) -> bool:
    """Whether a user without privileges can read `path`: readable by others, every folder on the way
    searchable by others (an interpreter under /root is not)."""
    real = Path(os.path.realpath(path))
    try:
        folders = [real, *real.parents] if real.is_dir() else list(real.parents)
        return bool(os.stat(real).st_mode & stat.S_IROTH) and all(os.stat(f).st_mode & stat.S_IXOTH for f in folders)
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def bwrap_usable() -> bool:
    """Whether bubblewrap exists and can create its namespaces here (cached per process)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    try:
        probe = subprocess.run([exe, *_bwrap_base_args(), "--", "/bin/true"], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _bwrap_base_args() -> list[str]:
    args = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--size",
        str(SANDBOX_TMP_BYTES),
        "--tmpfs",
        "/tmp",
    ]
    if os.geteuid() == 0:  # without this the sandbox would keep root's capabilities
        args += ["--uid", "65534", "--gid", "65534"]
    return args


@dataclass
class WorkerHandle:
    """A forked worker: its pid (in the zygote's namespace) and our ends of its pipes."""

    pid: int
    request_fd: int
    response_fd: int

    def close(self) -> None:
        for fd in (self.request_fd, self.response_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Zygote:
    """The fork server. Start once per grading process; spawn a worker per submission."""

    def __init__(self, isolation: str = "auto", hidden_paths: Iterable[str] = (), preload: Iterable[str] = ()) -> None:
        if isolation not in ("auto", "bwrap", "process"):
            raise ValueError(f"isolation must be auto, bwrap or process, got {isolation!r}")
        self.requested = isolation
        self.hidden = grader_private_paths() + [os.path.realpath(p) for p in hidden_paths]
        self.preload = list(preload)
        self.preload_failed: dict[str, str] = {}  # module -> error, as the zygote reported it (warned once)
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        self.runtime: str | None = None
        self.uses_bwrap = False
        self.ready = False

    @property
    def isolation(self) -> str:
        """'bwrap' when the zygote runs inside bubblewrap, else 'process'."""
        return "bwrap" if self.uses_bwrap else "process"

    def _config(self) -> dict[str, Any]:
        """What the zygote needs to confine its workers. A root grader's workers become an unprivileged
        user; if that user could not read the interpreter, they keep the right to read (not to write)."""
        interpreter = _interpreter_paths(self.hidden)
        becomes_nobody = not self.uses_bwrap and os.geteuid() == 0
        roots = [*interpreter, *SYSTEM_READ_ONLY]
        return {
            "env": WORKER_ENV,
            "sys_path": worker_sys_path(self.hidden),
            "read_only": readable_paths(roots, self.hidden),
            "list_only": listable_folders(roots, self.hidden),
            "blocked_imports": list(BLOCKED_IMPORTS),
            "tmp_root": "/tmp",
            "private_tmp": self.uses_bwrap,  # bubblewrap's /tmp is this zygote's alone
            "keep_read_search": becomes_nobody and not all(readable_by_anyone(p) for p in interpreter),
            "preload": self.preload,
        }

    def start(self) -> None:
        """Launch the zygote (if needed) and wait until it has NumPy and IPython loaded."""
        self.launch()
        if self.ready:
            return
        try:
            ready = self._receive(READY_TIMEOUT)
        except ZygoteError as exc:
            detail = self._stderr_tail()
            self.close()
            raise ZygoteError(f"the sandbox zygote did not start: {exc}. {detail}") from None
        if not ready.get("ready"):
            self.close()
            raise ZygoteError(f"unexpected first message from the zygote: {ready}")
        self.ready = True
        self._note_preload_failures(ready.get("preload_failed") or {})

    def _note_preload_failures(self, failed: dict[str, str]) -> None:
        """Warn once per module that the zygote could not preload (a restarted zygote fails the same way)."""
        for module, error in failed.items():
            if module not in self.preload_failed:
                self.preload_failed[module] = error
                warnings.warn(PRELOAD_FAILED.format(module=module, error=error), RuntimeWarning, stacklevel=3)

    def launch(self) -> None:
        """Start the zygote process without waiting for it (start() or spawn() wait)."""
        if self.proc is not None:
            return
        self.ready = False
        # The process that talks to workers is the one they would attack: no process of the same user may open
        # its memory, environment or descriptors through /proc (a grader not run as root, without Landlock).
        confine.make_undumpable()
        self.runtime = tempfile.mkdtemp(prefix="jitgrade-runtime-")
        os.chmod(self.runtime, 0o755)
        for name in _RUNTIME_FILES:
            shutil.copyfile(_HERE / name, os.path.join(self.runtime, name))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.uses_bwrap = self.requested == "bwrap" or (self.requested == "auto" and bwrap_usable())
        settings = self._config()
        # The configuration goes over the control socket, not on the command line: a fork's copy of argv
        # (sys.orig_argv, /proc/<pid>/cmdline) would show every worker the host paths it names.
        command = [
            sys.executable,
            "-I",
            "-X",
            "frozen_modules=on",
            os.path.join(self.runtime, "worker.py"),
            str(theirs.fileno()),
        ]
        if self.uses_bwrap:
            if shutil.which("bwrap") is None:
                raise ZygoteError("isolation 'bwrap' was requested but bwrap is not installed (Debian: bubblewrap)")
            # The sandbox gets a fresh /tmp: an interpreter or virtual environment that lives under /tmp
            # (a CI checkout, say) is bound back in, read-only; then the private folders are hidden.
            keep: list[str] = []
            for path in settings["read_only"]:
                if _is_within(path, "/tmp") and os.path.exists(path):
                    keep += ["--ro-bind", path, path]
            hide: list[str] = []
            for path in self.hidden:
                if os.path.isdir(path):
                    hide += ["--tmpfs", path]
            command = [
                "bwrap",
                *_bwrap_base_args(),
                *keep,
                *hide,
                "--ro-bind",
                self.runtime,
                self.runtime,
                "--chdir",
                "/tmp",
                "--",
                *command,
            ]
        env = {**WORKER_ENV, "HOME": "/tmp", "IPYTHONDIR": "/tmp/.ipython"}
        with open(os.path.join(self.runtime, "zygote.log"), "wb") as log:
            self.proc = subprocess.Popen(
                command,
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd="/tmp",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        theirs.close()
        self.control = ours
        try:
            ours.send(json.dumps(settings).encode())
        except OSError as exc:
            self.close()
            raise ZygoteError(f"the sandbox zygote did not take its configuration: {exc}") from None

    def _stderr_tail(self) -> str:
        if self.runtime is None:
            return ""
        try:
            return Path(self.runtime, "zygote.log").read_bytes()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self.control is not None
        self.control.settimeout(timeout)
        try:
            data = self.control.recv(65536)
        except TimeoutError:
            raise ZygoteError(f"no answer within {timeout:g} s") from None
        except OSError as exc:
            raise ZygoteError(str(exc)) from None
        if not data:
            raise ZygoteError("the zygote exited")
        return json.loads(data)

    def spawn(self, limits: Limits) -> WorkerHandle:
        """Fork a fresh confined worker; returns its pid and our ends of its pipes."""
        if self.proc is None or self.proc.poll() is not None:
            self.close()
        self.start()
        assert self.control is not None
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        request = {
            "op": "spawn",
            "rlimits": limits.worker_rlimits(),
            "memory_bytes": limits.memory_mb * 1024**2,
            "output_limit": limits.output_kb * 1024,
            "disk_bytes": limits.disk_mb * 1024**2,
            "max_files": limits.max_files,
            "no_subprocesses": limits.max_processes <= 1,
            "max_processes": limits.max_processes,
            "max_threads": limits.max_threads,
        }
        try:
            socket.send_fds(self.control, [json.dumps(request).encode()], [req_r, resp_w])
            reply = self._receive(READY_TIMEOUT)
        except (OSError, ZygoteError):
            for fd in (req_r, req_w, resp_r, resp_w):
                os.close(fd)
            self.close()
            raise ZygoteError("the sandbox zygote stopped answering") from None
        finally:
            if self.control is not None:
                os.close(req_r)
                os.close(resp_w)
        return WorkerHandle(int(reply["pid"]), req_w, resp_r)

    def finish(self, worker: WorkerHandle, grace: float = 0.0) -> dict[str, Any]:
        """Kill and reap a worker (after `grace` seconds to exit by itself); returns its exit code or
        signal, whether it was still running, and the tail of its stderr."""
        worker.close()
        if self.control is None or self.proc is None or self.proc.poll() is not None:
            return {"exitcode": None, "signal": None, "stderr": "", "zygote_lost": True}
        try:
            self.control.send(json.dumps({"op": "finish", "pid": worker.pid, "grace": grace}).encode())
            return self._receive(30.0)
        except (OSError, ZygoteError):
            self.close()
            return {"exitcode": None, "signal": None, "stderr": "", "zygote_lost": True}

    def close(self) -> None:
        """Stop the zygote (and with it, under bwrap, every process it started)."""
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.send(b'{"op": "exit"}')
            self.control.close()
            self.control = None
        self.ready = False
        if self.proc is not None:
            try:  # the zygote finishes its workers and exits; under bwrap, killing the outer bwrap would not
                self.proc.wait(timeout=2)  # reach the sandbox's own init, so let it exit by itself first
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.runtime is not None:
            shutil.rmtree(self.runtime, ignore_errors=True)
            self.runtime = None

    def __enter__(self) -> Zygote:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
