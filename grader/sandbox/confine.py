"""Confine the current process before it runs student code: rlimits, no privileges, seccomp, Landlock.

Loaded inside the sandbox worker (standard library only). Each layer is applied when the
platform supports it and reported by name, so the grade report can state the isolation in force:

- ``rlimits``: address space (a generous backstop: the zygote bounds memory actually used), CPU
  seconds, file size, open files, tasks (RLIMIT_NPROC, for a root grader's workers only), no core dumps.
- ``no-privileges``: every capability dropped and no_new_privs set; a root process first becomes
  an unprivileged user (uid and gid 65534, no supplementary groups).
- ``seccomp``: a BPF filter that refuses new processes (fork, vfork, clone without CLONE_THREAD,
  clone3), every socket but an AF_UNIX socketpair, io_uring (which makes sockets without socket()),
  signals to other processes, limits, priorities, schedulers or CPUs of other processes (a worker
  could slow the grader or other workers down), ptrace and cross-process memory access, namespaces and mounts, BPF,
  keys, modules, file handles, memory files and IPC objects (RAM outside the limits, or outliving
  the worker), and every system call newer than the newest one known here (a new
  kernel's new families are refused until reviewed). Threads still work. Only for x86_64 and
  aarch64, whose system-call numbers are known here.
- ``landlock``: file access only beneath an allow-list (read: interpreter and system
  directories, a few entries of the process's own /proc; read-write: the worker's own temporary
  directory), so grader sources, hidden tests, reports, other submissions and the host's mount
  table are out of reach even for a root process; with ABI 6, abstract unix sockets and signals
  outside the sandbox are out of reach too.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
from collections.abc import Iterable
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
SECCOMP_MODE_FILTER = 2
UNPRIVILEGED_ID = 65534  # "nobody": what a root worker becomes
CAP_DAC_READ_SEARCH = 2


@dataclass(frozen=True)
class ResourceLimits:
    """Kernel-enforced per-process limits (bytes and seconds); 0 leaves a limit unchanged."""

    address_space_bytes: int = 8 * 1024**3
    cpu_seconds: int = 0
    file_bytes: int = 64 * 1024**2
    open_files: int = 256
    processes: int = 0


def apply_rlimits(limits: ResourceLimits) -> list[str]:
    """Set the rlimits; returns the names of those set."""
    applied = []
    table = [
        ("address-space", resource.RLIMIT_AS, limits.address_space_bytes),
        ("cpu", resource.RLIMIT_CPU, limits.cpu_seconds),
        ("file-size", resource.RLIMIT_FSIZE, limits.file_bytes),
        ("open-files", resource.RLIMIT_NOFILE, limits.open_files),
        ("processes", resource.RLIMIT_NPROC, limits.processes),
        ("core", resource.RLIMIT_CORE, 0),
    ]
    for name, which, value in table:
        if value or name == "core":
            try:
                resource.setrlimit(which, (value, value))
                applied.append(name)
            except (ValueError, OSError):
                pass
    return applied


# --------------------------------------------------------------------------- privileges


def make_undumpable() -> bool:
    """Mark this process (and the children it forks) non-dumpable: a process of the same user can then
    open none of its /proc/<pid> files that need ptrace access (mem, environ, fd links, cwd)."""
    return _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def drop_privileges(become: int | None = None, keep_read_search: bool = False) -> bool:
    """Set no_new_privs, become `become` (uid and gid, no supplementary groups) if this process is root,
    and drop every capability. keep_read_search keeps CAP_DAC_READ_SEARCH alone, for an interpreter
    that only root may read (Landlock still decides what is read; nothing more may be written)."""
    ok = _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    kept = 1 << CAP_DAC_READ_SEARCH if keep_read_search else 0
    for cap in range(64):
        if not kept >> cap & 1:
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly without CAP_SETPCAP or past the last cap
    if become is not None and os.geteuid() == 0:
        try:
            _libc.prctl(PR_SET_KEEPCAPS, 1 if kept else 0, 0, 0, 0)  # what setuid keeps; capset trims it below
            os.setgroups([])
            os.setresgid(become, become, become)
            os.setresuid(become, become, become)
        except OSError:
            ok = False
    capset = _SYSCALLS.get(platform.machine(), {}).get("capset")
    if capset is None:
        return False
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    for keep in dict.fromkeys((kept, 0)):  # if the kept capability cannot be had, none at all
        data = struct.pack("=6I", keep, keep, 0, 0, 0, 0)  # {effective, permitted, inheritable} x 2
        if _libc.syscall(capset, ctypes.c_char_p(header), ctypes.c_char_p(data)) == 0:
            return ok and keep == kept
    return False


# --------------------------------------------------------------------------- seccomp

# Numbers from 424 on are shared by every architecture.
_COMMON = {
    "pidfd_send_signal": 424,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_open": 434,
    "clone3": 435,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "landlock_create_ruleset": 444,
    "landlock_add_rule": 445,
    "landlock_restrict_self": 446,
    "memfd_secret": 447,
    "process_mrelease": 448,
}
# fmt: off
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        **_COMMON,
        "shmget": 29, "shmat": 30, "semget": 64, "msgget": 68, "mq_open": 240, "memfd_create": 319,
        "socket": 41, "connect": 42, "bind": 49, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58,
        "kill": 62, "ptrace": 101, "syslog": 103, "setpgid": 109, "setsid": 112, "capset": 126,
        "rt_sigqueueinfo": 129, "uselib": 134, "personality": 135, "vhangup": 153, "modify_ldt": 154,
        "pivot_root": 155, "_sysctl": 156, "adjtimex": 159, "chroot": 161, "acct": 163, "settimeofday": 164,
        "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
        "setdomainname": 171, "iopl": 172, "ioperm": 173, "create_module": 174, "init_module": 175,
        "delete_module": 176, "get_kernel_syms": 177, "query_module": 178, "quotactl": 179, "nfsservctl": 180,
        "tkill": 200, "lookup_dcookie": 212, "clock_settime": 227, "tgkill": 234, "kexec_load": 246,
        "add_key": 248, "request_key": 249, "keyctl": 250, "ioprio_set": 251, "migrate_pages": 256,
        "unshare": 272, "move_pages": 279, "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "prlimit64": 302,
        "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
        "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "setpriority": 141, "sched_setparam": 142,
        "sched_setscheduler": 144, "sched_setaffinity": 203, "sched_setattr": 314,
    },
    "aarch64": {
        **_COMMON,
        "mq_open": 180, "msgget": 186, "semget": 190, "shmget": 194, "shmat": 196, "memfd_create": 279,
        "lookup_dcookie": 18, "ioprio_set": 30, "umount2": 39, "mount": 40, "pivot_root": 41,
        "nfsservctl": 42, "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89, "capset": 91,
        "personality": 92, "unshare": 97, "kexec_load": 104, "init_module": 105, "delete_module": 106,
        "clock_settime": 112, "syslog": 116, "ptrace": 117, "kill": 129, "tkill": 130, "tgkill": 131,
        "rt_sigqueueinfo": 138, "reboot": 142, "setpgid": 154, "setsid": 157, "sethostname": 161,
        "setdomainname": 162, "settimeofday": 170, "adjtimex": 171, "socket": 198, "socketpair": 199,
        "bind": 200, "connect": 203, "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220,
        "swapon": 224, "swapoff": 225, "migrate_pages": 238, "move_pages": 239, "rt_tgsigqueueinfo": 240,
        "perf_event_open": 241, "prlimit64": 261, "fanotify_init": 262, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "bpf": 280, "userfaultfd": 282,
        "kexec_file_load": 294, "sched_setparam": 118, "sched_setscheduler": 119, "sched_setaffinity": 122,
        "setpriority": 140, "sched_setattr": 274,
    },
}
# fmt: on
# futex_requeue (Linux 6.7). Newer calls are answered ENOSYS (libc falls back) until reviewed: statmount
# and listmount (6.8), for one, would show the host's mount points.
NEWEST_KNOWN_SYSCALL = 456
# Refused whatever their arguments. Sockets: a worker gets none but an AF_UNIX socketpair (checked
# below), which reaches nothing; io_uring would create sockets (and files) without these calls.
REFUSED_SYSCALLS = (
    "socket", "connect", "bind", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # other processes: memory, handles, priorities; new sessions or groups would escape the group kill
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "process_mrelease", "kcmp",
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "migrate_pages", "move_pages", "ioprio_set",
    "setsid", "setpgid", "tkill",
    # memory outside the address-space limit, and objects that outlive the worker (System V and POSIX IPC)
    "memfd_create", "memfd_secret", "shmget", "shmat", "semget", "msgget", "mq_open",
    # namespaces, mounts, roots
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "quotactl", "quotactl_fd",
    # kernel facilities a grader never needs
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "lookup_dcookie", "syslog", "keyctl", "add_key",
    "request_key", "name_to_handle_at", "open_by_handle_at", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module", "nfsservctl", "_sysctl",
    "uselib", "reboot", "swapon", "swapoff", "acct", "sethostname", "setdomainname", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "modify_ldt", "vhangup",
)  # fmt: skip
_SIGNALLING = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")  # first argument: the target process
# First argument: the process whose limits, scheduling or CPUs change; allowed for this process only.
_SELF_ONLY = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
_PRIO_USER = 2  # setpriority(which, ...): PRIO_PROCESS 0, PRIO_PGRP 1, PRIO_USER 2

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# classic BPF opcodes
_LD_W_ABS = 0x20
_AND_K = 0x54
_JEQ_K = 0x15
_JSET_K = 0x45
_JGE_K = 0x35
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000
# CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET
_CLONE_NAMESPACES = 0x7E020080
_AF_UNIX = 1
_SOCK_STREAM, _SOCK_SEQPACKET, _SOCK_TYPE_MASK = 1, 5, 0xF
_PERSONALITY_QUERY, _PER_LINUX = 0xFFFFFFFF, 0
# offsets in struct seccomp_data: nr (0), arch (4), args[i] low word (16 + 8*i)
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24


class _Program:
    """A tiny assembler for classic BPF with forward labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def _offset(self, target: object, index: int) -> int:
        """A jump target as BPF wants it: instructions to skip after the one at `index`."""
        return target if isinstance(target, int) else self.labels[str(target)] - index - 1

    def assemble(self) -> bytes:
        out = b""
        for index, (code, jt, jf, k) in enumerate(self.code):
            out += struct.pack("=HBBI", code, self._offset(jt, index), self._offset(jf, index), k & 0xFFFFFFFF)
        return out


def _errno(code: int) -> int:
    return _RET_ERRNO | code


def seccomp_program(machine: str, own_pid: int, allow_processes: bool = False) -> bytes | None:
    """The filter for this architecture as packed sock_filter structs, or None when unknown.

    With allow_processes (an assignment that lets student code start processes), fork and
    clone are allowed and signals may also go to processes created after this one (its
    children have larger pids; the grader and the zygote have smaller ones); everything else
    stays refused, new namespaces included.
    """
    nr = _SYSCALLS.get(machine)
    if nr is None:
        return None
    p = _Program()
    p.op(_LD_W_ABS, _ARCH)
    p.op(_JEQ_K, _AUDIT_ARCH[machine], 1, 0)
    p.op(_RET_K, _errno(errno.EPERM))  # another ABI (e.g. 32-bit calls on x86_64): refuse everything
    p.op(_LD_W_ABS, _NR)
    if machine == "x86_64":
        p.op(_JGE_K, 0x40000000, "deny", 0)  # x32 ABI
    p.op(_JGE_K, NEWEST_KNOWN_SYSCALL + 1, "nosys", 0)
    refused = [*REFUSED_SYSCALLS, *(() if allow_processes else ("fork", "vfork"))]
    for name in refused:
        if name in nr:
            p.op(_JEQ_K, nr[name], "deny", 0)
    p.op(_JEQ_K, nr["clone3"], "nosys", 0)  # glibc then falls back to clone, which we can inspect
    p.op(_JEQ_K, nr["clone"], "clone", 0)
    p.op(_JEQ_K, nr["socketpair"], "socketpair", 0)
    p.op(_JEQ_K, nr["personality"], "personality", 0)
    for name in _SELF_ONLY:
        p.op(_JEQ_K, nr[name], "self_only", 0)
    p.op(_JEQ_K, nr["setpriority"], "priority", 0)
    for name in _SIGNALLING:
        p.op(_JEQ_K, nr[name], "signal", 0)
    p.op(_RET_K, _RET_ALLOW)
    p.label("clone")  # threads only (or, when allowed, processes), never new namespaces
    p.op(_LD_W_ABS, _ARG0)
    p.op(_JSET_K, _CLONE_NAMESPACES, "deny", 0)
    p.op(_JSET_K, _CLONE_THREAD, "allow", "allow" if allow_processes else "deny")
    p.label("socketpair")  # AF_UNIX stream or seqpacket: connected to each other, unable to address anything
    p.op(_LD_W_ABS, _ARG0)
    p.op(_JEQ_K, _AF_UNIX, 0, "deny")
    p.op(_LD_W_ABS, _ARG1)
    p.op(_AND_K, _SOCK_TYPE_MASK)
    p.op(_JEQ_K, _SOCK_STREAM, "allow", 0)
    p.op(_JEQ_K, _SOCK_SEQPACKET, "allow", "deny")
    p.label("personality")  # the query and plain Linux only (no ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC...)
    p.op(_LD_W_ABS, _ARG0)
    p.op(_JEQ_K, _PERSONALITY_QUERY, "allow", 0)
    p.op(_JEQ_K, _PER_LINUX, "allow", "deny")
    p.label("priority")  # setpriority(which, who): a process or a group (then who is the target), never a user's
    p.op(_LD_W_ABS, _ARG0)
    p.op(_JGE_K, _PRIO_USER, "deny", 0)
    p.op(_LD_W_ABS, _ARG1)
    p.op(_JEQ_K, 0, "allow", 0)  # this process, or its own group (the worker leads its group)
    p.op(_JEQ_K, own_pid, "allow", "deny")
    p.label("self_only")  # prlimit64(pid), sched_setaffinity(pid)...: this process (0 or its pid), no other
    p.op(_LD_W_ABS, _ARG0)
    p.op(_JEQ_K, 0, "allow", 0)
    p.op(_JEQ_K, own_pid, "allow", "deny")
    p.label("signal")  # kill(pid) / tgkill(tgid): this process, its own group (pid 0 / -pid), [its children]
    p.op(_LD_W_ABS, _ARG0)
    p.op(_JEQ_K, own_pid, "allow", 0)
    p.op(_JEQ_K, 0, "allow", 0)
    p.op(_JEQ_K, -own_pid, "allow", 0)
    if allow_processes:
        p.op(_JSET_K, 0x80000000, "deny", 0)  # any other negative pid: another group, or -1 (everyone)
        p.op(_JGE_K, own_pid, "allow", "deny")
    else:
        p.op(_RET_K, _errno(errno.EPERM))
    p.label("allow")
    p.op(_RET_K, _RET_ALLOW)
    p.label("deny")
    p.op(_RET_K, _errno(errno.EPERM))
    p.label("nosys")
    p.op(_RET_K, _errno(errno.ENOSYS))
    return p.assemble()


def install_seccomp(allow_processes: bool = False) -> bool:
    """Install the filter for this process and every thread or child it will have."""
    program = seccomp_program(platform.machine(), os.getpid(), allow_processes)
    if program is None:
        return False
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(buf))  # struct sock_fprog
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) == 0


# --------------------------------------------------------------------------- landlock

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ALL_V1 = (1 << 13) - 1  # execute .. make_sym
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_FILE_ONLY_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_O_PATH = getattr(os, "O_PATH", 0o10000000)
# What Python, NumPy, BLAS threads and IPython read of their own /proc/<pid>: not mountinfo, mounts,
# mountstats, net, environ or cmdline, which tell host paths or the grader's command line, nor task/,
# whose per-thread folders hold all of those again.
OWN_PROC_ENTRIES = ("stat", "statm", "status", "limits", "maps", "fd")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable."""
    nr = _SYSCALLS.get(platform.machine(), {}).get("landlock_create_ruleset")
    if nr is None:
        return 0
    version = _libc.syscall(nr, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(0, int(version))


def own_proc_paths() -> list[str]:
    """The entries of this process's /proc directory that a worker may read (see OWN_PROC_ENTRIES)."""
    return [f"/proc/{os.getpid()}/{name}" for name in OWN_PROC_ENTRIES]


def install_landlock(read_only: Iterable[str], read_write: Iterable[str], list_only: Iterable[str] = ()) -> bool:
    """Allow file access only beneath the given paths, listing only beneath `list_only` (and deny TCP,
    abstract unix sockets and signals leaving the sandbox where the ABI can)."""
    abi = landlock_abi()
    if abi < 1:
        return False
    nr = _SYSCALLS[platform.machine()]
    handled = _FS_ALL_V1
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    fields = (handled, net, scoped)[: 3 if scoped else 2 if net else 1]
    attr = struct.pack(f"={len(fields)}Q", *fields)
    ruleset = _libc.syscall(nr["landlock_create_ruleset"], ctypes.c_char_p(attr), len(attr), 0)
    if ruleset < 0:
        return False
    try:
        reading = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        rules = [(path, reading) for path in read_only] + [(path, handled & ~_FS_REFER) for path in read_write]
        rules += [(path, _FS_READ_DIR) for path in list_only]
        for path, rights in rules:
            try:
                fd = os.open(path, _O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= _FILE_ONLY_RIGHTS
                rule = struct.pack("=Qi", rights & handled, fd)
                _libc.syscall(nr["landlock_add_rule"], ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.c_char_p(rule), 0)
            finally:
                os.close(fd)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return _libc.syscall(nr["landlock_restrict_self"], ruleset, 0) == 0
    finally:
        os.close(ruleset)
