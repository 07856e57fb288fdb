"""Escapes from the sandbox, one class at a time, each tried several ways, under isolation "process"
(no bubblewrap: the common case in Docker) and "bwrap" (skipped where bubblewrap is unusable).

Student code shares the worker's interpreter, so it controls the worker completely: every attack
here is plain student code in a cell. Each test proves the escape from OUTSIDE the sandbox: a
listener that must receive nothing, a proof file that must not appear, a secret host path that must
not show up in anything the worker reports, a directory that must be gone. The attack cells print
what they achieved as one ``RESULT {json}`` line, so a failure shows what got through.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, ROOT

from grader.sandbox.limits import Limits
from grader.sandbox.session import CellRecord, Sandbox
from grader.sandbox.zygote import Zygote, bwrap_usable

ISOLATIONS = ["process", "bwrap"]
REFUSED = ("EPERM", "EACCES", "EROFS", "ENOSYS", "ENOENT", "EAFNOSUPPORT", "ECONNREFUSED")
QUIET = 0.3  # seconds a listener waits for anything the sandbox might have sent

RESULT_HELPERS = r"""
import errno as _errno, json as _json, os
RESULT = {}
def attempt(name, action):
    try:
        value = action()
        RESULT[name] = "allowed" if value is None else value
    except OSError as exc:
        RESULT[name] = _errno.errorcode.get(exc.errno, str(exc))
def report():
    print("RESULT " + _json.dumps(RESULT, default=str))
"""


# --------------------------------------------------------------------------- fixtures and helpers


@dataclass
class Outside:
    """Folders on the host that stand for a batch's submissions and output (hidden from the sandbox,
    the submissions folder a mount point like a Docker volume when we may mount) and a scratch folder
    for proof files and listeners."""

    root: Path
    submissions: Path
    output: Path
    scratch: Path
    mounted: bool


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    root = Path(f"/var/tmp/jitgrade-escapes-{uuid.uuid4().hex[:12]}")  # outside /tmp, which bwrap replaces
    folders = Outside(root, root / "submissions-of-cs101", root / "grades-of-cs101", root / "scratch", False)
    for folder in (folders.submissions, folders.output, folders.scratch):
        folder.mkdir(parents=True)
    (folders.output / "alice.json").write_text('{"score": 97}')
    folders.mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "jitgrade-test", str(folders.submissions)], capture_output=True
    ).returncode == 0
    try:
        yield folders
    finally:
        if folders.mounted:
            subprocess.run(["umount", str(folders.submissions)], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def start_zygote(isolation: str, hidden: Sequence[Path] = ()) -> Zygote:
    if isolation == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap is not usable here")
    zygote = Zygote(isolation=isolation, hidden_paths=[str(p) for p in hidden])
    zygote.start()
    assert zygote.isolation == isolation
    return zygote


@pytest.fixture(scope="module", params=ISOLATIONS)
def zygote(request: pytest.FixtureRequest, outside: Outside) -> Iterator[Zygote]:
    """A fork server for the module, hiding the submissions and output folders as `jitgrade grade` does."""
    z = start_zygote(request.param, [outside.submissions, outside.output])
    yield z
    z.close()


def run_cells(zygote: Zygote, *sources: str, limits: Limits = FAST) -> list[CellRecord]:
    """Execute the cells in a fresh worker, stop it, and return the cells' records."""
    with Sandbox(zygote, list(enumerate(sources)), limits) as sandbox:
        return sandbox.execute().cells


def text_of(record: CellRecord) -> str:
    """Everything a cell showed: its outputs (what the student's feedback would contain) and its error."""
    shown = [str(o.get("text", "")) + (json.dumps(o["data"]) if "data" in o else "") for o in record.outputs]
    return "".join(shown) + str(record.error or "")


def result_of(record: CellRecord) -> dict[str, Any]:
    """The RESULT line an attack cell printed."""
    for line in text_of(record).splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError(f"the attack cell printed no result: {record.status} {record.error} {text_of(record)}")


def attack(zygote: Zygote, body: str, limits: Limits = FAST) -> dict[str, Any]:
    """Run an attack cell (RESULT_HELPERS, then `body`, then report()) and return its RESULT."""
    (record,) = run_cells(zygote, RESULT_HELPERS + body + "\nreport()", limits=limits)
    assert record.status == "ok", (record.status, record.error)
    return result_of(record)


def assert_refused(result: dict[str, Any], *names: str) -> None:
    for name in names or tuple(result):
        assert result[name] in REFUSED, f"{name}: {result[name]} (all: {result})"


def sandbox_host_path(zygote: Zygote, path: str) -> Path:
    """Where a path inside the zygote's sandbox is on the host (under bubblewrap, through the root of
    the zygote's own process, which lives in the sandbox's mount namespace)."""
    if zygote.isolation == "process":
        return Path(path)
    assert zygote.proc is not None
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    descendants, frontier = [], [zygote.proc.pid]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        descendants += children
        frontier = children
    assert descendants, "no process inside the sandbox"
    return Path(f"/proc/{descendants[-1]}/root{path}")


# --------------------------------------------------------------------------- sockets: no socket reaches anything


class Listeners:
    """A UDP and a TCP listener on 127.0.0.1, unix stream listeners (path and abstract) and a unix
    datagram listener, all in the test process: `heard()` says which received anything."""

    def __init__(self, scratch: Path) -> None:
        tag = uuid.uuid4().hex[:10]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(4)
        self.unix_path = str(scratch / f"listener-{tag}")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        self.unix.listen(4)
        self.abstract_name = f"jitgrade-escape-{tag}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(4)
        self.dgram_path = str(scratch / f"dgram-{tag}")
        self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram.bind(self.dgram_path)
        os.chmod(self.unix_path, 0o777)  # reachable by any user: only the sandbox may stop a worker
        os.chmod(self.dgram_path, 0o777)
        scratch.chmod(0o755)
        self.all = [self.udp, self.tcp, self.unix, self.abstract, self.dgram]
        for s in self.all:
            s.setblocking(False)

    def targets(self) -> dict[str, Any]:
        return {"port_udp": self.udp.getsockname()[1], "port_tcp": self.tcp.getsockname()[1],
                "unix_path": self.unix_path, "abstract": self.abstract_name, "dgram_path": self.dgram_path}

    def heard(self) -> list[str]:
        time.sleep(QUIET)
        got = []
        for name, s in zip(("udp", "tcp", "unix", "abstract", "dgram"), self.all, strict=True):
            try:
                if s.type == socket.SOCK_DGRAM:
                    got.append(f"{name}: {s.recv(100)!r}")
                else:
                    s.accept()[0].close()
                    got.append(f"{name}: a connection")
            except BlockingIOError:
                pass
        return got

    def close(self) -> None:
        for s in self.all:
            s.close()


@pytest.fixture
def listeners(outside: Outside) -> Iterator[Listeners]:
    ears = Listeners(outside.scratch)
    yield ears
    ears.close()


IO_URING_UDP = r"""
import ctypes, mmap, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(number, *args):
    result = libc.syscall(number, *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result
def io_uring_udp(port):
    params = ctypes.create_string_buffer(120)
    ring = call(425, 8, params)  # io_uring_setup
    sq_entries, cq_entries = struct.unpack_from("=2I", params, 0)
    sq_head, sq_tail, sq_mask, _, _, _, sq_array = struct.unpack_from("=7I", params, 40)
    cq_head, _, cq_mask, _, _, cq_cqes = struct.unpack_from("=6I", params, 80)
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    rings = mmap.mmap(ring, max(sq_array + 4 * sq_entries, cq_cqes + 16 * cq_entries), mmap.MAP_SHARED, rw)
    sqes = mmap.mmap(ring, 64 * sq_entries, mmap.MAP_SHARED, rw, offset=0x10000000)
    def submit(opcode, fd, addr=0, length=0, off=0):
        tail = struct.unpack_from("=I", rings, sq_tail)[0]
        slot = tail & struct.unpack_from("=I", rings, sq_mask)[0]
        sqes[64 * slot:64 * slot + 64] = struct.pack("=BBHiQQIIQHHiQQ", opcode, 0, 0, fd, off, addr, length, 0, 1,
                                                     0, 0, 0, 0, 0)
        struct.pack_into("=I", rings, sq_array + 4 * slot, slot)
        struct.pack_into("=I", rings, sq_tail, tail + 1)
        call(426, ring, 1, 1, 1, None, 0)  # io_uring_enter, waiting for the completion
        head = struct.unpack_from("=I", rings, cq_head)[0]
        cqe = cq_cqes + 16 * (head & struct.unpack_from("=I", rings, cq_mask)[0])
        _, result, _ = struct.unpack_from("=QiI", rings, cqe)
        struct.pack_into("=I", rings, cq_head, head + 1)
        if result < 0:
            raise OSError(-result, os.strerror(-result))
        return result
    sock = submit(45, socket.AF_INET, off=socket.SOCK_DGRAM)  # IORING_OP_SOCKET: no socket() call
    address = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
                                          + socket.inet_aton("127.0.0.1") + bytes(8))
    submit(16, sock, ctypes.addressof(address), off=16)  # IORING_OP_CONNECT
    payload = ctypes.create_string_buffer(b"escaped through io_uring")
    submit(26, sock, ctypes.addressof(payload), length=len(payload.value))  # IORING_OP_SEND
"""

SOCKET_ATTACKS = {
    "udp_datagram": "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "s.sendto(b'escaped', ('127.0.0.1', T['port_udp']))",
    "tcp_connection": "socket.create_connection(('127.0.0.1', T['port_tcp']), timeout=1)",
    "unix_path": "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(T['unix_path'])",
    "unix_abstract": "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect('\\0' + T['abstract'])",
    "unix_datagram": "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'escaped', T['dgram_path'])",
    "socketpair_datagram_retargeted": "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                                      "a.sendto(b'escaped', T['dgram_path'])",
    "socketpair_stream_retargeted": "a, b = socket.socketpair()\na.sendto(b'escaped', T['dgram_path'])",
    "socketpair_stream_connect": "a, b = socket.socketpair()\na.connect('\\0' + T['abstract'])",
    "io_uring_udp": IO_URING_UDP + "io_uring_udp(T['port_udp'])",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SOCKET_ATTACKS))
def test_no_socket_reaches_a_listener_outside(zygote: Zygote, listeners: Listeners, name: str) -> None:
    body = f"import socket\nT = {listeners.targets()!r}\ndef go():\n"
    body += "".join(f"    {line}\n" for line in SOCKET_ATTACKS[name].splitlines())
    result = attack(zygote, body + f"attempt({name!r}, go)")
    assert listeners.heard() == []
    assert result[name] in (*REFUSED, "EISCONN", "EOPNOTSUPP"), result


@pytest.mark.parametrize("family", ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_VSOCK"])
def test_no_socket_of_any_family_is_created(zygote: Zygote, family: str) -> None:
    number = getattr(socket, family, 40)
    kinds = {"AF_NETLINK": "socket.SOCK_RAW", "AF_PACKET": "socket.SOCK_RAW"}.get(family, "socket.SOCK_STREAM")
    result = attack(zygote, f"import socket\nattempt('socket', lambda: socket.socket({number}, {kinds}).close())")
    assert result["socket"] in ("EPERM", "EACCES"), result


def test_io_uring_is_refused(zygote: Zygote) -> None:
    result = attack(zygote, IO_URING_UDP + "params = ctypes.create_string_buffer(120)\n"
                    "attempt('io_uring_setup', lambda: call(425, 8, params))\n"
                    "attempt('io_uring_enter', lambda: call(426, 0, 0, 0, 0, None, 0))\n"
                    "attempt('io_uring_register', lambda: call(427, 0, 0, None, 0))")
    assert all(v in ("EPERM", "ENOSYS") for v in result.values()), result


def test_the_io_uring_attack_reaches_a_listener_when_not_sandboxed(listeners: Listeners, tmp_path: Path) -> None:
    """The io_uring attack above is real: unconfined, it delivers its datagram (so its test can fail)."""
    if Path("/proc/sys/kernel/io_uring_disabled").exists() and \
            Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() != "0":
        pytest.skip("io_uring is disabled on this host")
    script = tmp_path / "uring.py"
    script.write_text(IO_URING_UDP + f"io_uring_udp({listeners.udp.getsockname()[1]})\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    if "Invalid argument" in done.stderr or "Function not implemented" in done.stderr:
        pytest.skip(f"this kernel's io_uring lacks IORING_OP_SOCKET: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr
    assert listeners.heard() == ["udp: b'escaped through io_uring'"]


# --------------------------------------------------------------------------- the batch pool's fork server

FORKSERVER_ATTACK = r"""
import glob, io, pickle, socket
found = set(GUESSES)
for table in ("/proc/self/net/unix", "/proc/net/unix"):
    try:
        for line in open(table).read().splitlines()[1:]:
            if len(line.split()) >= 8:
                found.add(line.split()[7])
    except OSError as exc:
        RESULT[table] = _errno.errorcode.get(exc.errno)
found.update(glob.glob("/tmp/pymp-*/listener-*"))
class Proof:
    def __reduce__(self):
        return (io.open, (PROOF, "w"))  # run by pickle.load in the fork server's child
connected = []
for name in sorted(found):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect("\0" + name[1:] if name.startswith("@") else name)
            connected.append(name)
            child_r, parent_w = os.pipe()
            parent_r, child_w = os.pipe()
            os.write(parent_w, pickle.dumps(Proof()))
            socket.send_fds(s, [bytes([4])], [child_r, child_w, child_r, child_r])  # the forkserver's protocol
    except OSError as exc:
        RESULT.setdefault("refusals", []).append(_errno.errorcode.get(exc.errno))
RESULT["found"] = sorted(found)
RESULT["connected"] = connected
"""


@pytest.fixture(scope="module")
def forkserver() -> Iterator[str]:
    """A real multiprocessing fork server in the test process, as the batch pool starts one; its address."""
    from multiprocessing import forkserver as module

    pool = multiprocessing.get_context("forkserver").Pool(1)
    try:
        assert pool.apply(os.getpid) != os.getpid()
        address = module._forkserver._forkserver_address
        assert address is not None
        os.chmod(os.path.dirname(address), 0o755)  # any user could reach it: only the sandbox may stop a worker
        yield address
    finally:  # a fork server that served an attack may never let the pool join: do not wait for it
        threading.Thread(target=pool.terminate, daemon=True).start()


def test_the_fork_server_of_the_batch_pool_is_out_of_reach(zygote: Zygote, forkserver: str, outside: Outside) -> None:
    proof = outside.scratch / f"forkserver-proof-{uuid.uuid4().hex[:8]}"
    result = attack(zygote, f"GUESSES = [{forkserver!r}]\nPROOF = {str(proof)!r}\n" + FORKSERVER_ATTACK)
    time.sleep(QUIET)
    assert not proof.exists(), "a pickle sent to the fork server ran as the grader"
    assert result["connected"] == [], result
    assert set(result["refusals"]) <= set(REFUSED), result


# --------------------------------------------------------------------------- host paths

HOST_PATHS = r"""
import glob, sys
seen = [os.getcwd(), repr(dict(os.environ)), repr(sys.argv), repr(sys.path), repr(list(sys.path_importer_cache)),
        repr(sorted(str(getattr(m, "__file__", "")) for m in list(sys.modules.values())))]
def read(path):
    with open(path, "rb") as f:
        seen.append(f.read(200000).decode("utf-8", "replace"))
pids = ["self", "thread-self"] + [str(p) for p in range(1, 40)] + [str(os.getppid() + d) for d in range(-40, 40)]
attempt("list_proc", lambda: pids.extend(p for p in os.listdir("/proc") if p.isdigit()))
for pid in dict.fromkeys(pids):
    for entry in ("mountinfo", "mounts", "mountstats", "cmdline", "environ", "net/unix", "net/tcp", "maps"):
        attempt(f"/proc/{pid}/{entry}", lambda: read(f"/proc/{pid}/{entry}"))
    for link in ("cwd", "root", "exe"):
        attempt(f"/proc/{pid}/{link}", lambda: seen.append(os.readlink(f"/proc/{pid}/{link}")))
    attempt(f"/proc/{pid}/fd", lambda: seen.extend(os.readlink(f"/proc/{pid}/fd/" + fd)
                                                  for fd in os.listdir(f"/proc/{pid}/fd")))
for path in ("/proc/mounts", "/etc/mtab", "/proc/net/unix"):
    attempt(path, lambda: read(path))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def listmount():
    request, ids = ctypes.create_string_buffer(32), (ctypes.c_uint64 * 64)()
    if libc.syscall(458, request, ids, 64, 0) < 0:
        raise OSError(ctypes.get_errno(), "listmount")
attempt("listmount", listmount)
print("\n".join(seen))
"""


def test_host_paths_of_the_batch_do_not_reach_the_worker(zygote: Zygote, outside: Outside) -> None:
    """The submissions and output folders (a mount point, as a Docker volume is, and a folder bubblewrap
    hides) appear nowhere the student can look: mount tables, other processes' command lines,
    working directories, open files or environments, the interpreter's own state."""
    witness = subprocess.Popen(["sleep", "60"], cwd=outside.output, stdout=subprocess.DEVNULL,
                               env={"JITGRADE_OUT": str(outside.output), "PATH": "/usr/bin:/bin"})
    try:
        (record,) = run_cells(zygote, RESULT_HELPERS + HOST_PATHS + "report()")
    finally:
        witness.kill()
        witness.wait()
    assert record.status == "ok", record.error
    shown = text_of(record)
    for secret in (outside.submissions, outside.output, outside.root):
        assert str(secret) not in shown, f"{secret} reached the worker"
    result = result_of(record)
    assert_refused(result, "/proc/self/mountinfo", "/proc/self/mounts", "/proc/mounts", "/proc/net/unix", "listmount")


COMMAND_LINE = r"""
import sys
attempt("orig_argv", lambda: list(sys.orig_argv))
attempt("argv", lambda: list(sys.argv))
attempt("cmdline", lambda: open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace"))
"""


def test_the_zygote_command_line_tells_the_worker_nothing(zygote: Zygote) -> None:
    """What started the zygote (its configuration: folders to read and list, the runtime folder, the
    project's paths) is not in the worker's copy of the command line: sys.orig_argv, /proc/self/cmdline."""
    assert zygote.runtime is not None
    result = attack(zygote, COMMAND_LINE)
    shown = json.dumps(result)
    for secret in (zygote.runtime, str(ROOT), "list_only", "read_only"):
        assert secret not in shown, f"{secret} reached the worker: {result}"
    assert result["orig_argv"] == [] and result["argv"] == [""], result


def test_the_worker_only_sees_its_own_directory_as_cwd_home_and_temp(zygote: Zygote) -> None:
    result = attack(zygote, "import sys, tempfile\nRESULT.update(cwd=os.getcwd(), home=os.environ['HOME'], "
                    "tmp=tempfile.gettempdir(), argv=sys.argv)")
    assert result["cwd"] == result["home"] == result["tmp"]
    assert result["cwd"].startswith("/tmp/jitgrade-") and result["argv"] == [""]


# --------------------------------------------------------------------------- privileges and other processes

PRIVILEGES = r"""
import signal
RESULT["ids"] = [list(os.getresuid()), list(os.getresgid()), os.getgroups()]
status = open("/proc/self/status").read()
RESULT["caps"] = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Cap")}
parent = os.getppid()
for entry in ("mem", "environ", "maps", "cmdline", "status"):
    attempt(f"zygote_{entry}", lambda: open(f"/proc/{parent}/{entry}", "rb").read(64) and None)
attempt("zygote_cwd", lambda: os.readlink(f"/proc/{parent}/cwd"))
attempt("zygote_fds", lambda: os.listdir(f"/proc/{parent}/fd"))
attempt("signal_zygote", lambda: os.kill(parent, 0))
attempt("signal_grader", lambda: os.kill(GRADER, 0))
attempt("write_outside", lambda: open(PROOF, "w").write("x") and None)
attempt("own_fds", lambda: sorted(os.listdir("/proc/self/fd")) and None)
attempt("own_status", lambda: open("/proc/self/status").read() and None)
"""


def test_the_worker_is_unprivileged_and_cannot_touch_other_processes(zygote: Zygote, outside: Outside) -> None:
    proof = outside.scratch / f"write-proof-{uuid.uuid4().hex[:8]}"
    outside.scratch.chmod(0o777)  # even a folder anyone may write to stays out of reach
    try:
        result = attack(zygote, f"GRADER = {os.getpid()}\nPROOF = {str(proof)!r}\n" + PRIVILEGES)
    finally:
        outside.scratch.chmod(0o755)
    assert not proof.exists()
    uids, gids, groups = result["ids"]
    assert 0 not in uids and 0 not in gids and 0 not in groups, result["ids"]
    assert int(result["caps"]["CapEff"], 16) & ~(1 << 2) == 0, result["caps"]  # at most read-search, never more
    assert int(result["caps"]["CapInh"], 16) == int(result["caps"]["CapAmb"], 16) == 0
    assert_refused(result, "zygote_mem", "zygote_environ", "zygote_maps", "zygote_cmdline", "zygote_cwd",
                   "zygote_fds", "signal_zygote", "signal_grader", "write_outside")
    assert result["own_fds"] == result["own_status"] == "allowed", result


FDS = r"""
import fcntl, stat
fds = {}
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        continue  # the descriptor listdir itself used
    fds[fd] = [target, {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}[mode]]
RESULT["fds"] = fds
"""


@pytest.mark.parametrize("others", [0, 2], ids=["alone", "with_two_other_workers_alive"])
def test_a_worker_holds_only_its_own_channel(zygote: Zygote, others: int) -> None:
    alive = [Sandbox(zygote, [(0, "x = 1")], FAST) for _ in range(others)]
    try:
        for sandbox in alive:
            sandbox.execute()
        result = attack(zygote, FDS)
    finally:
        for sandbox in alive:
            sandbox.close()
    fds = {int(fd): tuple(value) for fd, value in result["fds"].items()}
    assert fds.pop(0) == ("/dev/null", "r")
    log = fds.pop(1)
    assert fds.pop(2) == log and log[0].endswith("/.stderr")
    assert sorted(mode for target, mode in fds.values() if target.startswith("pipe:")) == ["r", "w"], fds
    assert len(fds) == 2, f"descriptors beyond stdio and the channel: {fds}"


def test_an_unprivileged_worker_still_dies_with_its_zygote() -> None:
    """Changing the worker's user clears its parent-death signal: killing the zygote must still end it."""
    z = start_zygote("process")
    try:
        sandbox = Sandbox(z, [(0, "x = 1")], FAST)
        sandbox.execute()
        assert sandbox.worker is not None and z.proc is not None
        worker = sandbox.worker.pid
        z.proc.kill()
        z.proc.wait()
        deadline = time.monotonic() + 5
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            status = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if status == "Z":  # a zombie waiting for init to reap it: dead
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{worker}").exists() or status == "Z", f"worker {worker} outlived its zygote"
    finally:
        z.close()


# --------------------------------------------------------------------------- the worker's stderr file

STDERR_SWAPS = {
    "symlink_to_dev_zero": "os.symlink('/dev/zero', '.stderr')",
    "fifo": "os.mkfifo('.stderr')",
    "symlink_to_a_secret_outside": "os.symlink(SECRET, '.stderr')",
    "directory": "os.mkdir('.stderr')",
    "huge_sparse_file": "open('.stderr', 'wb').truncate(60 * 2**20)",
}


@pytest.mark.parametrize("swap", sorted(STDERR_SWAPS))
def test_a_replaced_stderr_file_is_never_read_by_name(zygote: Zygote, outside: Outside, swap: str) -> None:
    secret = outside.scratch / "secret.txt"
    secret.write_text("TOP-SECRET " * 100)
    source = (f"import os, sys\nSECRET = {str(secret)!r}\nos.write(2, b'before the swap\\n')\n"
              f"os.unlink('.stderr')\n{STDERR_SWAPS[swap]}\nos.write(2, b'the last words of the worker\\n')")
    sandbox = Sandbox(zygote, [(0, source)], FAST)
    record = sandbox.execute()
    assert record.cells[0].status == "ok", record.cells[0].error
    assert sandbox.worker is not None
    started = time.monotonic()
    status = zygote.finish(sandbox.worker)
    sandbox.worker = None
    assert time.monotonic() - started < 5, "the zygote took long to stop the worker"
    assert not status.get("zygote_lost"), status
    assert status["stderr"].endswith("before the swap\nthe last words of the worker\n"), status["stderr"][-300:]
    assert "TOP-SECRET" not in status["stderr"]
    (after,) = run_cells(zygote, "print('the zygote still serves')")
    assert text_of(after) == "the zygote still serves\n"


# --------------------------------------------------------------------------- files die with the worker

LOCKED_TREE = r"""
import os, stat
base = os.getcwd()
path = base
for depth in range(40):
    path = os.path.join(path, f"level{depth}")
    os.mkdir(path)
    with open(os.path.join(path, "data.bin"), "wb") as f:
        f.write(b"x" * 4096)
for name in ("locked", "listable_only", "search_only"):
    os.mkdir(name)
    open(os.path.join(name, "inside.txt"), "w").write("hidden")
os.symlink(KEEP_FILE, "link_to_a_file_outside")
os.symlink(KEEP_DIR, "link_to_a_folder_outside")
os.symlink(KEEP_DIR, os.path.join(path, "deep_link_to_a_folder_outside"))
os.mkfifo("a_fifo")
for root, dirs, files in os.walk(base, topdown=False):
    for name in files:
        if not os.path.islink(os.path.join(root, name)) and name != ".stderr":  # that one the zygote owns
            os.chmod(os.path.join(root, name), 0)
    if root != base:
        os.chmod(root, 0)
os.chmod("listable_only", stat.S_IRUSR)
os.chmod("search_only", stat.S_IXUSR)
print("WORKDIR " + base)
"""


def test_files_die_with_the_worker_whatever_it_did_to_them(zygote: Zygote, outside: Outside) -> None:
    keep_dir = outside.scratch / "keep"
    keep_dir.mkdir(exist_ok=True)
    (keep_dir / "kept.txt").write_text("kept")
    keep_file = outside.scratch / "kept-file.txt"
    keep_file.write_text("kept")
    (record,) = run_cells(zygote, f"KEEP_FILE = {str(keep_file)!r}\nKEEP_DIR = {str(keep_dir)!r}\n" + LOCKED_TREE)
    assert record.status == "ok", record.error
    workdir = text_of(record).split("WORKDIR ", 1)[1].split()[0]
    assert not sandbox_host_path(zygote, workdir).exists(), f"{workdir} survived its worker"
    assert sandbox_host_path(zygote, "/tmp").exists()  # the check above looked in the right place
    assert keep_file.read_text() == "kept" and (keep_dir / "kept.txt").read_text() == "kept"
    result = attack(zygote, f"attempt('previous', lambda: os.listdir({workdir!r}))\n"
                    "attempt('tmp', lambda: os.listdir('/tmp'))")
    assert result["previous"] in ("ENOENT", "EACCES"), result
    assert result["tmp"] == "EACCES" or not any(n.startswith("jitgrade-") and n != os.path.basename(workdir)
                                                 for n in result["tmp"]), result


SMALL_DISK = FAST.override(disk_mb=16, max_files=1000)
DISK_FILLERS = {
    "big_files": "for i in range(8):\n    open(f'part{i}.bin', 'wb').write(b'x' * 4 * 2**20)",
    "big_files_in_a_locked_folder": "os.mkdir('vault')\nfor i in range(8):\n"
                                    "    open(f'vault/part{i}.bin', 'wb').write(b'x' * 4 * 2**20)\n"
                                    "os.chmod('vault', 0)",
    "removed_files_kept_open": "kept = []\nfor i in range(8):\n    f = open(f'part{i}.bin', 'wb')\n"
                               "    f.write(b'x' * 4 * 2**20)\n    f.flush()\n    os.unlink(f'part{i}.bin')\n"
                               "    kept.append(f)",
    "removed_files_kept_mapped": "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.mmap.restype = ctypes.c_void_p\n"
                                 "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 "
                                 "+ [ctypes.c_long]\nfor i in range(8):\n"
                                 "    fd = os.open(f'part{i}.bin', os.O_RDWR | os.O_CREAT, 0o600)\n"
                                 "    os.ftruncate(fd, 4 * 2**20)\n    at = libc.mmap(None, 4 * 2**20, 3, 1, fd, 0)\n"
                                 "    os.close(fd)\n    os.unlink(f'part{i}.bin')\n"
                                 "    ctypes.memset(at, 1, 4 * 2**20)",  # MAP_SHARED by libc: no descriptor kept
    "many_empty_files": "for i in range(3000):\n    open(f'f{i}', 'w').close()",
    "deep_folders": "for i in range(3000):\n    os.mkdir('d')\n    os.chdir('d')",
}  # fmt: skip


@pytest.mark.parametrize("filler", sorted(DISK_FILLERS))
def test_the_worker_directory_is_held_to_its_disk_quota(zygote: Zygote, filler: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in the worker's directory count against the notebook's disk quota however they hide (in a
    locked folder, as many empty files, as deep folders): the worker is stopped, the zygote says why,
    and the rest of the notebook runs."""
    statuses: list[dict[str, Any]] = []
    finish = zygote.finish
    monkeypatch.setattr(zygote, "finish", lambda *a, **k: statuses.append(finish(*a, **k)) or statuses[-1])
    source = "import os, time\n" + DISK_FILLERS[filler] + "\ntime.sleep(2)"
    started = time.monotonic()
    records = run_cells(zygote, "print('first cell')", source, "print('third cell')", limits=SMALL_DISK)
    assert time.monotonic() - started < 20
    assert records[1].status == "crashed", (records[1].status, records[1].error)
    assert "in its working directory" in (records[1].error or ""), records[1].error
    assert [records[0].status, records[2].status] == ["ok", "ok"]
    stopped = [s["stopped_for"] for s in statuses if "stopped_for" in s]
    assert len(stopped) == 1 and "working directory" in stopped[0], statuses
    assert all(s.get("cleaned") for s in statuses), statuses


THREAD_FLOOD = """
import threading, time
threading.stack_size(64 * 1024)
stop = threading.Event()
started = 0
try:
    for _ in range(2000):  # each thread takes one host PID
        threading.Thread(target=stop.wait, daemon=True).start()
        started += 1
except RuntimeError as exc:
    print("refused after", started, exc)
time.sleep(3)
print("still running with", threading.active_count(), "threads")
"""
A_FEW_THREADS = """
import threading
threads = [threading.Thread(target=sum, args=([1, 2],)) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("sixteen threads ran")
"""


def test_a_worker_running_too_many_threads_is_stopped(zygote: Zygote, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads take host PIDs: a worker over max_threads is stopped (the zygote says how many it started),
    a worker with a few threads runs, and so does the rest of the notebook."""
    statuses: list[dict[str, Any]] = []
    finish = zygote.finish
    monkeypatch.setattr(zygote, "finish", lambda *a, **k: statuses.append(finish(*a, **k)) or statuses[-1])
    started = time.monotonic()
    limits = FAST.override(max_threads=64)
    records = run_cells(zygote, "print('first cell')", THREAD_FLOOD, A_FEW_THREADS, limits=limits)
    assert time.monotonic() - started < 20
    assert records[1].status == "crashed", (records[1].status, records[1].error, text_of(records[1]))
    assert "threads; at most 64 may run at once" in (records[1].error or ""), records[1].error
    assert [records[0].status, records[2].status] == ["ok", "ok"], records
    assert "sixteen threads ran" in text_of(records[2])
    assert [s["stopped_for"] for s in statuses if "stopped_for" in s][0].startswith("it started "), statuses


# --------------------------------------------------------------------------- the grader's own files, wherever installed


def installed_site(distribution: str, files: dict[str, str]) -> Path:
    """A site folder under /var/tmp (outside the sandbox's own folders) holding `files` (path -> text) installed as
    `distribution` 9.9.9: a dist-info whose RECORD lists every file, its own included."""
    top = Path(f"/var/tmp/{distribution}-site-{uuid.uuid4().hex[:10]}")
    site = top / "lib" / "python3" / "site-packages"
    info = f"{distribution.replace('-', '_')}-9.9.9.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 9.9.9\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    for folder in [top, *top.rglob("*")]:
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    return site


@pytest.fixture
def installed_copy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder on sys.path holding an installed jitgrade distribution that bundles a master solution."""
    master = "grader/_bundled/assignments/mlp/solution.ipynb"
    site = installed_site(
        "jitgrade", {"grader/__init__.py": "", master: '{"cells": [{"source": "MASTER-SOLUTION def softmax(x): ..."}]}'}
    )
    monkeypatch.syspath_prepend(str(site))
    yield site / master
    subprocess.run(["rm", "-rf", str(site.parents[2])], check=False)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_installed_copy_of_the_grader_is_unreadable(installed_copy: Path, isolation: str) -> None:
    """Not a byte of an installed copy's files can be read, found by path or by a search of site-packages
    (whose folders stay listable for the import system: names may show, contents never)."""
    master = installed_copy
    z = start_zygote(isolation)
    try:
        result = attack(z, f"MASTER = {str(master)!r}\nSITE = {str(master.parents[4])!r}\nimport glob\n"
                        "attempt('read_master', lambda: open(MASTER).read())\n"
                        "attempt('read_metadata', lambda: open(SITE + '/jitgrade-9.9.9.dist-info/RECORD').read())\n"
                        "attempt('import_the_copy', lambda: __import__('importlib').util.spec_from_file_location("
                        "'g', SITE + '/grader/__init__.py').loader.exec_module(__import__('types').ModuleType('g')))\n"
                        "for path in glob.glob(SITE + '/**/*.ipynb', recursive=True):\n"
                        "    attempt('read ' + path, lambda: open(path).read())")
    finally:
        z.close()
    assert "MASTER-SOLUTION" not in json.dumps(result)
    assert_refused(result)


@pytest.fixture
def installed_reference(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder at the END of sys.path holding an installed jitgrade-reference (the reference solution's own
    distribution, instructor/): the import system finds the checkout's reference first, so only the distribution's
    record says this copy is the grader's."""
    code = "# REFERENCE-SOLUTION\ndef loss_and_grads(x, y, params, spec): ...\n"
    site = installed_site("jitgrade-reference", {"reference/__init__.py": "", "reference/mlp.py": code})
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    yield site / "reference" / "mlp.py"
    subprocess.run(["rm", "-rf", str(site.parents[2])], check=False)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_an_installed_copy_of_the_reference_is_unreadable(installed_reference: Path, isolation: str) -> None:
    """The reference solution installed as its own distribution (jitgrade-reference, on Gradescope and instructors'
    machines) is as unreadable as the grader, wherever on sys.path it lies."""
    z = start_zygote(isolation)
    try:
        result = attack(z, f"MODULE = {str(installed_reference)!r}\n"
                        "attempt('read_reference', lambda: open(MODULE).read())\n"
                        "attempt('read_record', lambda: open(MODULE.rsplit('/', 2)[0] + "
                        "'/jitgrade_reference-9.9.9.dist-info/RECORD').read())\n")
    finally:
        z.close()
    assert "REFERENCE-SOLUTION" not in json.dumps(result)
    assert_refused(result)


def test_no_installed_master_is_readable(zygote: Zygote) -> None:
    """Whatever copies of the distribution this environment holds, none of their files can be opened."""
    from grader.sandbox.zygote import installed_distribution_paths

    files = [str(p) for folder in installed_distribution_paths() for p in Path(folder).rglob("*") if p.is_file()][:50]
    if not files:
        pytest.skip("no installed copy of jitgrade with files in this environment")
    result = attack(zygote, f"for path in {files!r}:\n    attempt(path, lambda: open(path, 'rb').read(1) and None)")
    assert_refused(result)


def test_a_symbolic_link_does_not_open_up_a_hidden_folder(tmp_path: Path) -> None:
    """A virtual environment's lib64 -> lib: allowing the link would allow all of lib, hidden folders too."""
    from grader.sandbox.zygote import listable_folders, readable_paths

    (tmp_path / "lib" / "site-packages" / "grader").mkdir(parents=True)
    (tmp_path / "lib" / "site-packages" / "numpy").mkdir()
    (tmp_path / "lib64").symlink_to(tmp_path / "lib")
    hidden = tmp_path / "lib" / "site-packages" / "grader"
    allowed = readable_paths([str(tmp_path)], [str(hidden)])
    assert str(tmp_path / "lib" / "site-packages" / "numpy") in allowed
    assert not any(str(hidden).startswith(os.path.realpath(path)) for path in allowed), allowed  # rules follow links
    assert listable_folders([str(tmp_path)], [str(hidden)]) == [
        str(tmp_path / "lib" / "site-packages"), str(tmp_path / "lib"), str(tmp_path)]


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("where", ["/var/tmp", "/tmp"])
def test_the_folder_of_the_grading_script_is_out_of_reach(monkeypatch: pytest.MonkeyPatch, isolation: str,
                                                          where: str) -> None:
    """`python ~/course/grade.py` puts the course folder (masters and all) first on sys.path: a worker neither
    imports from it nor reads it, and a folder under /tmp does not stop bubblewrap's private /tmp."""
    course = Path(where) / f"jitgrade-course-{uuid.uuid4().hex[:10]}"
    course.mkdir()
    try:
        (course / "solution_notes.py").write_text("SECRET = 'MASTER-SOLUTION'\n")
        course.chmod(0o755)
        (course / "solution_notes.py").chmod(0o644)
        monkeypatch.syspath_prepend(str(course))
        z = start_zygote(isolation)
        try:
            result = attack(z, f"COURSE = {str(course)!r}\n"
                            "try:\n    RESULT['import'] = __import__('solution_notes').SECRET\n"
                            "except ImportError:\n    RESULT['import'] = 'ENOENT'\n"
                            "attempt('read', lambda: open(COURSE + '/solution_notes.py').read())\n"
                            "attempt('write_tmp', lambda: open('/tmp/jitgrade-probe', 'w').close())")
        finally:
            z.close()
    finally:
        subprocess.run(["rm", "-rf", str(course)], check=False)
    assert "MASTER-SOLUTION" not in json.dumps(result)
    assert_refused(result, "import", "read")


def test_the_process_that_talks_to_workers_is_not_dumpable(zygote: Zygote) -> None:
    """Its /proc/<pid>/mem, environ and fd stay closed to a same-user worker even where Landlock is missing."""
    import ctypes

    pr_get_dumpable = 3
    assert ctypes.CDLL(None).prctl(pr_get_dumpable, 0, 0, 0, 0) == 0
