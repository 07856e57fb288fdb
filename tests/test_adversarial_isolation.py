"""The confinement layers on their own: grader/sandbox/confine.py applied in a fresh interpreter.

Each test runs a small script with ``python -c``: it loads confine.py by path (as the worker does),
applies one layer, tries what the layer must refuse and what it must still allow, and prints the
outcomes as JSON (``"allowed"`` or the errno name). The layers are one-way for the process that
applies them, so they never touch the test process. A layer the kernel or the architecture lacks
is skipped by name.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CONFINE = Path(__file__).resolve().parent.parent / "grader" / "sandbox" / "confine.py"

PRELUDE = """
import ctypes, errno, importlib.util, json, os, platform, signal, socket, sys, threading
spec = importlib.util.spec_from_file_location("confine_under_test", sys.argv[1])
confine = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = confine  # as the worker loads it (dataclasses look the module up)
spec.loader.exec_module(confine)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}

def attempt(name, action):
    try:
        result = action()
        out[name] = "allowed" if result is None else result
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))

def raw(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(number, *args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result
"""

SECCOMP = PRELUDE + """
nr = confine._SYSCALLS.get(platform.machine(), {})
parent = os.getppid()
out["installed"] = bool(nr) and confine.install_seccomp()
if out["installed"]:
    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    def clone_process():
        pid = raw(nr["clone"], signal.SIGCHLD, 0, 0, 0, 0)  # fork-like: no CLONE_THREAD
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    def vfork():
        pid = raw(nr["vfork"])
        if pid == 0:
            libc._exit(0)
        os.waitpid(pid, 0)

    attempt("fork", fork)
    attempt("clone_process", clone_process)
    if "vfork" in nr and out["fork"] == "EPERM":  # only once forks are known to be refused
        attempt("vfork", vfork)
    attempt("clone3", lambda: raw(nr["clone3"], 0, 0) and None)
    attempt("subprocess", lambda: __import__("subprocess").run(["true"]) and None)
    attempt("socket_inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    attempt("socket_inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close())
    attempt("socket_unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
    attempt("socket_unix_dgram", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close())
    attempt("socket_netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
    attempt("socket_packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close())
    attempt("socket_vsock", lambda: socket.socket(40, socket.SOCK_STREAM).close())  # AF_VSOCK
    attempt("socketpair", lambda: [s.close() for s in socket.socketpair()] and None)
    attempt("socketpair_seqpacket",
            lambda: [s.close() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)] and None)
    attempt("socketpair_dgram",  # a datagram socket could sendto() any unix address
            lambda: [s.close() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)] and None)
    params = ctypes.create_string_buffer(120)
    attempt("io_uring_setup", lambda: raw(nr["io_uring_setup"], 4, params) and None)
    attempt("io_uring_enter", lambda: raw(nr["io_uring_enter"], 0, 0, 0, 0, 0, 0) and None)
    attempt("bpf", lambda: raw(nr["bpf"], 0, 0, 0) and None)
    attempt("userfaultfd", lambda: raw(nr["userfaultfd"], 0) and None)
    attempt("perf_event_open", lambda: raw(nr["perf_event_open"], 0, 0, -1, -1, 0) and None)
    attempt("unshare_user", lambda: raw(nr["unshare"], 0x10000000) and None)
    attempt("clone_new_user_thread", lambda: raw(nr["clone"], 0x10000000 | 0x00010000, 0, 0, 0, 0) and None)
    attempt("mount", lambda: raw(nr["mount"], 0, 0, 0, 0, 0) and None)
    attempt("keyctl", lambda: raw(nr["keyctl"], 0, 0, 0, 0, 0) and None)
    attempt("open_by_handle_at", lambda: raw(nr["open_by_handle_at"], 0, 0, 0) and None)
    attempt("setsid", lambda: raw(nr["setsid"]) and None)
    attempt("personality_no_randomize", lambda: raw(nr["personality"], 0x0040000) and None)
    attempt("personality_query", lambda: [raw(nr["personality"], 0xFFFFFFFF)] and None)
    import resource
    limit = ctypes.create_string_buffer(16)
    attempt("prlimit_parent", lambda: raw(nr["prlimit64"], parent, resource.RLIMIT_NOFILE, None, limit) and None)
    attempt("prlimit_self", lambda: [raw(nr["prlimit64"], 0, resource.RLIMIT_NOFILE, None, limit)] and None)
    attempt("setrlimit_self", lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    # Each call below leaves its target as it was (same CPUs, nice value, policy) if it gets through.
    cpus, nice = os.sched_getaffinity(parent), os.getpriority(os.PRIO_PROCESS, parent)
    attempt("sched_setaffinity_parent", lambda: os.sched_setaffinity(parent, cpus))
    attempt("setpriority_parent", lambda: os.setpriority(os.PRIO_PROCESS, parent, nice))
    attempt("setpriority_parent_group", lambda: os.setpriority(os.PRIO_PGRP, os.getpgid(parent), nice))
    attempt("setpriority_user", lambda: os.setpriority(os.PRIO_USER, 54321, 0))  # else ESRCH: no such processes
    attempt("sched_setscheduler_parent",
            lambda: os.sched_setscheduler(parent, os.sched_getscheduler(parent), os.sched_param(0)))
    attempt("sched_setparam_parent", lambda: os.sched_setparam(parent, os.sched_param(0)))
    attempt("sched_setattr_parent", lambda: raw(nr["sched_setattr"], parent, None, 0) and None)  # else EINVAL
    attempt("sched_setaffinity_self", lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
    attempt("sched_setaffinity_own_pid", lambda: os.sched_setaffinity(os.getpid(), os.sched_getaffinity(0)))
    attempt("setpriority_self", lambda: os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0)))
    attempt("sched_setscheduler_self", lambda: os.sched_setscheduler(0, os.sched_getscheduler(0), os.sched_param(0)))
    attempt("memfd_create", lambda: os.memfd_create("ram") and None)
    attempt("shmget", lambda: raw(nr["shmget"], 0, 4096, 0o1600) and None)  # IPC_PRIVATE, IPC_CREAT | 0600
    attempt("statmount", lambda: raw(457, 0, 0, 0, 0) and None)  # Linux 6.8: newer than the reviewed table
    attempt("syscall_from_the_future", lambda: raw(1000) and None)
    attempt("kill_parent", lambda: os.kill(parent, 0))
    attempt("kill_pid_1", lambda: os.kill(1, 0))
    attempt("kill_everyone", lambda: os.kill(-1, 0))
    attempt("kill_other_group", lambda: os.kill(-parent, 0))
    attempt("tkill", lambda: raw(nr["tkill"], threading.get_native_id(), 0) and None)
    attempt("ptrace_traceme", lambda: raw(nr["ptrace"], 0, 0, 0, 0) and None)
    attempt("ptrace_attach_parent", lambda: raw(nr["ptrace"], 16, parent, 0, 0) and None)
    attempt("process_vm_readv", lambda: raw(nr["process_vm_readv"], parent, 0, 0, 0, 0, 0) and None)
    attempt("pidfd_open", lambda: raw(nr["pidfd_open"], parent, 0) and None)
    if platform.machine() == "x86_64":
        attempt("x32_abi_getpid", lambda: raw(0x40000000 | 39) and None)
    attempt("kill_self_signal_0", lambda: os.kill(os.getpid(), 0))
    received = []
    signal.signal(signal.SIGUSR1, lambda *a: received.append("kill"))
    signal.signal(signal.SIGUSR2, lambda *a: received.append("raise"))
    attempt("kill_self_sigusr1", lambda: os.kill(os.getpid(), signal.SIGUSR1))
    attempt("kill_own_group_signal_0", lambda: os.kill(0, 0))
    attempt("raise_signal", lambda: signal.raise_signal(signal.SIGUSR2))
    out["signals_received"] = sorted(received)
    results = []
    def work(k):
        results.append(sum(i * k for i in range(10000)))
    def threads():
        pool = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert len(results) == 4
    attempt("threads", threads)
    attempt("getpid", lambda: os.getpid() and None)
print(json.dumps(out))
"""

LANDLOCK = PRELUDE + """
base = sys.argv[2]
allowed, secret, rw = (os.path.join(base, d) for d in ("allowed", "secret", "rw"))
single = os.path.join(base, "single.txt")
out["abi"] = confine.landlock_abi()
if out["abi"] >= 1:
    out["installed"] = confine.install_landlock([allowed, single], [rw])
    def read(path):
        with open(path, "rb") as f:
            f.read()
    def write(path):
        with open(path, "w") as f:
            f.write("x")
    attempt("read_allowed_file", lambda: read(os.path.join(allowed, "ok.txt")))
    attempt("list_allowed_dir", lambda: os.listdir(allowed) and None)
    attempt("read_single_allowed_file", lambda: read(single))
    attempt("read_sibling_of_single_file", lambda: read(os.path.join(base, "sibling.txt")))
    attempt("read_secret_file", lambda: read(os.path.join(secret, "secret.txt")))
    attempt("list_secret_dir", lambda: os.listdir(secret) and None)
    attempt("list_base_dir", lambda: os.listdir(base) and None)
    attempt("read_etc_passwd", lambda: read("/etc/passwd"))
    attempt("write_in_rw_dir", lambda: write(os.path.join(rw, "new.txt")))
    attempt("read_back_in_rw_dir", lambda: read(os.path.join(rw, "new.txt")))
    attempt("mkdir_in_rw_dir", lambda: os.mkdir(os.path.join(rw, "sub")))
    attempt("write_in_allowed_dir", lambda: write(os.path.join(allowed, "new.txt")))
    attempt("overwrite_allowed_file", lambda: write(os.path.join(allowed, "ok.txt")))
    attempt("write_in_secret_dir", lambda: write(os.path.join(secret, "new.txt")))
    attempt("write_outside", lambda: write(os.path.join(base, "new.txt")))
    attempt("rename_out_of_rw_dir", lambda: os.rename(os.path.join(rw, "new.txt"), os.path.join(base, "moved.txt")))
    attempt("symlink_escape", lambda: os.symlink(os.path.join(secret, "secret.txt"), os.path.join(rw, "link"))
            or read(os.path.join(rw, "link")))
print(json.dumps(out))
"""

RLIMITS = PRELUDE + """
rw = sys.argv[2]
applied = confine.apply_rlimits(confine.ResourceLimits(address_space_bytes=512 * 1024**2, cpu_seconds=60,
                                                       file_bytes=1024**2, open_files=64))
out["applied"] = applied
out["privileges_dropped"] = confine.drop_privileges()
out["no_new_privs"] = libc.prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS
status = open("/proc/self/status").read()
out["cap_eff"] = [line.split()[1] for line in status.splitlines() if line.startswith("CapEff")][0]
def allocate():
    try:
        bytearray(1024**3)
    except MemoryError:
        return "MemoryError"
attempt("allocate_1_GiB", allocate)
attempt("allocate_64_MiB", lambda: bytearray(64 * 1024**2) and None)
def big_file():
    with open(os.path.join(rw, "big"), "wb") as f:
        f.write(b"x" * (2 * 1024**2))
attempt("write_2_MiB_file", big_file)
attempt("write_512_KiB_file", lambda: open(os.path.join(rw, "small"), "wb").write(b"x" * 512 * 1024) and None)
files = []
def many_files():
    for _ in range(100):
        files.append(open(os.devnull))
attempt("open_100_files", many_files)
print(json.dumps(out))
"""


def run_script(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script, str(CONFINE), *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seccomp() -> dict[str, Any]:
    out = run_script(SECCOMP)
    if not out["installed"]:
        pytest.skip(f"seccomp filter not available on {platform.machine()} here (confine.install_seccomp failed)")
    return out


REFUSED_BY_SECCOMP = ["fork", "clone_process", "subprocess", "socket_inet", "socket_inet6", "socket_unix",
                      "socket_unix_dgram", "socket_netlink", "socket_packet", "socket_vsock", "socketpair_dgram",
                      "io_uring_setup", "io_uring_enter", "bpf", "userfaultfd", "perf_event_open", "unshare_user",
                      "clone_new_user_thread", "mount", "keyctl", "open_by_handle_at", "setsid",
                      "personality_no_randomize", "prlimit_parent", "memfd_create", "shmget", "kill_parent",
                      "kill_pid_1", "kill_everyone", "kill_other_group", "tkill", "ptrace_traceme",
                      "ptrace_attach_parent", "process_vm_readv", "pidfd_open", "sched_setaffinity_parent",
                      "setpriority_parent", "setpriority_parent_group", "setpriority_user", "sched_setscheduler_parent",
                      "sched_setparam_parent", "sched_setattr_parent"]
ALLOWED_BY_SECCOMP = ["socketpair", "socketpair_seqpacket", "personality_query", "prlimit_self", "setrlimit_self",
                      "kill_self_signal_0", "kill_self_sigusr1", "kill_own_group_signal_0", "raise_signal", "threads",
                      "getpid", "sched_setaffinity_self", "sched_setaffinity_own_pid", "setpriority_self",
                      "sched_setscheduler_self"]


@pytest.mark.parametrize("action", REFUSED_BY_SECCOMP)
def test_seccomp_refuses(seccomp: dict[str, Any], action: str) -> None:
    assert seccomp[action] == "EPERM", seccomp


@pytest.mark.parametrize("action", ALLOWED_BY_SECCOMP)
def test_seccomp_allows(seccomp: dict[str, Any], action: str) -> None:
    assert seccomp[action] == "allowed", seccomp


def test_seccomp_refuses_vfork_and_other_abis(seccomp: dict[str, Any]) -> None:
    if "vfork" in seccomp:  # x86_64 only (aarch64 has no vfork system call)
        assert seccomp["vfork"] == "EPERM"
    if "x32_abi_getpid" in seccomp:
        assert seccomp["x32_abi_getpid"] == "EPERM"


def test_seccomp_answers_clone3_with_enosys_so_libc_falls_back_to_clone(seccomp: dict[str, Any]) -> None:
    assert seccomp["clone3"] == "ENOSYS"


@pytest.mark.parametrize("action", ["statmount", "syscall_from_the_future"])
def test_seccomp_refuses_system_calls_newer_than_its_table(seccomp: dict[str, Any], action: str) -> None:
    assert seccomp[action] == "ENOSYS", seccomp


def _load_confine() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("confine_tables_only", CONFINE)
    assert spec is not None and spec.loader is not None
    confine = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = confine
    try:
        spec.loader.exec_module(confine)
    finally:
        del sys.modules[spec.name]
    return confine


UNISTD_HEADERS = {"x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
                  "aarch64": Path("/usr/include/asm-generic/unistd.h")}


@pytest.mark.parametrize("machine", sorted(UNISTD_HEADERS))
def test_system_call_numbers_match_the_kernel_headers(machine: str) -> None:
    header = UNISTD_HEADERS[machine]
    if not header.exists():
        pytest.skip(f"{header} is not installed (Debian: linux-libc-dev)")
    defined = {m[0]: int(m[1]) for m in re.findall(r"^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$", header.read_text(),
                                                     re.MULTILINE)}
    table = _load_confine()._SYSCALLS[machine]
    known = {name: number for name, number in table.items() if name in defined}
    assert known == {name: defined[name] for name in known}
    assert len(known) >= len(table) - 12, sorted(set(table) - set(defined))  # an older header lacks the newest


def test_every_refused_system_call_is_in_a_table() -> None:
    confine = _load_confine()
    names = set().union(*confine._SYSCALLS.values())
    assert set(confine.REFUSED_SYSCALLS) <= names, sorted(set(confine.REFUSED_SYSCALLS) - names)
    assert all(number <= confine.NEWEST_KNOWN_SYSCALL for table in confine._SYSCALLS.values()
               for number in table.values())


def test_seccomp_lets_signals_to_itself_through(seccomp: dict[str, Any]) -> None:
    assert seccomp["signals_received"] == ["kill", "raise"]


@pytest.fixture(scope="module")
def landlock(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("landlock")
    for name in ("allowed", "secret", "rw"):
        (base / name).mkdir()
    (base / "allowed" / "ok.txt").write_text("ok")
    (base / "secret" / "secret.txt").write_text("secret")
    (base / "single.txt").write_text("single")
    (base / "sibling.txt").write_text("sibling")
    out = run_script(LANDLOCK, str(base))
    if out["abi"] < 1:
        pytest.skip("Landlock is not available on this kernel (landlock_abi() == 0)")
    assert out["installed"], out
    out["base"] = base
    return out


@pytest.mark.parametrize("action", ["read_allowed_file", "list_allowed_dir", "read_single_allowed_file",
                                    "write_in_rw_dir", "read_back_in_rw_dir", "mkdir_in_rw_dir"])
def test_landlock_allows(landlock: dict[str, Any], action: str) -> None:
    assert landlock[action] == "allowed", landlock


@pytest.mark.parametrize("action", ["read_secret_file", "list_secret_dir", "list_base_dir", "read_etc_passwd",
                                    "read_sibling_of_single_file", "write_in_allowed_dir", "overwrite_allowed_file",
                                    "write_in_secret_dir", "write_outside", "rename_out_of_rw_dir",
                                    "symlink_escape"])
def test_landlock_denies(landlock: dict[str, Any], action: str) -> None:
    assert landlock[action] in ("EACCES", "EPERM", "EXDEV"), landlock


def test_landlock_left_the_files_outside_untouched(landlock: dict[str, Any]) -> None:
    base: Path = landlock["base"]
    assert (base / "allowed" / "ok.txt").read_text() == "ok"
    assert not (base / "allowed" / "new.txt").exists()
    assert not (base / "new.txt").exists() and not (base / "moved.txt").exists()
    assert (base / "rw" / "new.txt").exists()


@pytest.fixture(scope="module")
def rlimits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_script(RLIMITS, str(tmp_path_factory.mktemp("rlimits")))


def test_rlimits_cap_memory_file_size_and_open_files(rlimits: dict[str, Any]) -> None:
    assert {"address-space", "cpu", "file-size", "open-files", "core"} <= set(rlimits["applied"])
    assert rlimits["allocate_1_GiB"] == "MemoryError"
    assert rlimits["allocate_64_MiB"] == "allowed"
    assert rlimits["write_2_MiB_file"] == "EFBIG"
    assert rlimits["write_512_KiB_file"] == "allowed"
    assert rlimits["open_100_files"] == "EMFILE"


def test_privileges_are_dropped(rlimits: dict[str, Any]) -> None:
    assert rlimits["no_new_privs"] == 1
    assert int(rlimits["cap_eff"], 16) == 0


def test_seccomp_program_is_only_built_for_known_architectures() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("confine_program_only", CONFINE)
    assert spec is not None and spec.loader is not None
    confine = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = confine
    try:
        spec.loader.exec_module(confine)
    finally:
        del sys.modules[spec.name]
    assert confine.seccomp_program("riscv64", 1234) is None
    for machine in ("x86_64", "aarch64"):
        program = confine.seccomp_program(machine, 1234)
        assert program is not None and len(program) % 8 == 0 and len(program) // 8 < 4096


PRIVILEGES = PRELUDE + """
out["dropped"] = confine.drop_privileges(confine.UNPRIVILEGED_ID, keep_read_search=sys.argv[3] == "keep")
out["ids"] = [list(os.getresuid()), list(os.getresgid()), os.getgroups()]
status = open("/proc/self/status").read()
out["caps"] = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")}
attempt("append_to_root_file", lambda: open(sys.argv[2], "a").write("x") and None)
attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
attempt("read_parent_environ", lambda: open(f"/proc/{os.getppid()}/environ", "rb").read() and None)
print(json.dumps(out))
"""


@pytest.mark.parametrize("keep", ["keep", "none"], ids=["keeping_read_search", "no_capability"])
def test_a_root_worker_becomes_nobody(tmp_path: Path, keep: str) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("only a root process changes its user")
    owned = tmp_path / "root-owned.txt"
    owned.write_text("root")
    owned.chmod(0o666 & ~0o022)
    tmp_path.chmod(0o755)
    out = run_script(PRIVILEGES, str(owned), keep)
    assert out["dropped"] is True
    assert out["ids"] == [[65534] * 3, [65534] * 3, []]
    assert out["caps"]["CapEff"] == out["caps"]["CapPrm"] == (1 << 2 if keep == "keep" else 0)
    assert out["caps"]["CapInh"] == out["caps"]["CapAmb"] == 0
    assert out["append_to_root_file"] == "EACCES" and owned.read_text() == "root"
    assert out["signal_parent"] == "EPERM"
    assert out["read_parent_environ"] == "EACCES"


SCOPE = PRELUDE + """
out["abi"] = confine.landlock_abi()
if out["abi"] >= 6:
    out["installed"] = confine.install_landlock([], [])
    def connect():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(b"\\0" + sys.argv[2].encode())
    attempt("connect_abstract_socket_outside", connect)
    attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
    attempt("signal_self", lambda: os.kill(os.getpid(), 0))
print(json.dumps(out))
"""


def test_landlock_scopes_abstract_sockets_and_signals_to_the_sandbox() -> None:
    import socket
    import uuid

    name = f"jitgrade-scope-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(b"\0" + name.encode())
        server.listen(1)
        server.settimeout(0.0)
        out = run_script(SCOPE, name)
        if out["abi"] < 6:
            pytest.skip(f"Landlock ABI {out['abi']} has no scopes (needs 6, Linux 6.12)")
        with pytest.raises(BlockingIOError):
            server.accept()
    assert out["installed"] is True
    assert out["connect_abstract_socket_outside"] == "EPERM"
    assert out["signal_parent"] == "EPERM"
    assert out["signal_self"] == "allowed"
