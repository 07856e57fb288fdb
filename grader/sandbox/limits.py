"""Resource limits for student code, with the defaults an assignment or a CLI run may override."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# The address-space rlimit is only a backstop: memory_mb bounds memory actually used (a cgroup, or the
# zygote's watch of the resident set, ten times a second). Reservations never touched cost nothing (PyTorch's
# CUDA build maps about 3.5 GiB at import), so the backstop leaves room for them on top of a default 2 GiB
# limit (8 GiB), or 4x the limit for larger ones; and it bounds what a worker can touch between two polls
# of the watch (a tight loop writes a few GiB per tenth of a second), so one worker cannot exhaust the machine.
ADDRESS_SPACE_FLOOR = 8 * 1024**3
ADDRESS_SPACE_FACTOR = 4
# RLIMIT_NPROC counts every task (thread or process) of a user, not of a worker: a root grader's workers
# all run as uid 65534 (every zygote, every --jobs slot, and any other "nobody" process on the host). It
# is a kernel backstop for the zygote's watch of max_threads (ten times a second; a loop starts a few
# hundred threads between two polls), so it leaves room for this many workers at their max_threads at once
# and bounds what one runaway worker can start before the watch stops it. Only a root grader's workers
# outside bubblewrap get it: those under bubblewrap are host uid 0, which it never binds, and an
# unprivileged grader's workers share their uid with the grader and the rest of its user's session.
CONCURRENT_WORKERS = 16


@dataclass(frozen=True)
class Limits:
    """What one submission may use; enforced from outside the student's code.

    Timeouts are wall-clock seconds measured by the grader: ``cell_timeout`` per cell,
    ``call_timeout`` per call of a student function, and ``notebook_timeout`` for the whole
    submission, its cells, replays and every call together (checks left when it is used up are
    reported as not run). ``memory_mb`` bounds the memory the worker (and its subprocesses)
    actually use, held by a cgroup or by the zygote's watch of its resident set; file size is a kernel
    limit on the worker. ``max_threads`` bounds the tasks (threads and processes) the worker and its
    subprocesses run at once: the zygote counts them ten times a second and stops a worker over it
    (NumPy's BLAS, PyTorch's pools and a student's thread pool need a few dozen at most; 256 leaves them
    room, while each task costs the host a PID). ``max_processes = 1`` means the worker alone: forks and
    subprocesses are refused; above 1, the same watch stops a worker running more processes than that.
    ``disk_mb`` and ``max_files`` bound the worker's directory as a whole (the zygote measures it ten
    times a second and stops a worker over it). A function that times out or crashes the worker
    ``failures_per_function`` times is not called again (each attempt costs a restart).
    """

    cell_timeout: float = 30.0
    call_timeout: float = 10.0
    notebook_timeout: float = 300.0
    memory_mb: int = 2048
    output_kb: int = 1024
    max_processes: int = 1
    max_threads: int = 256
    max_file_mb: int = 64
    disk_mb: int = 256
    max_files: int = 4096
    max_restarts: int = 5
    failures_per_function: int = 2
    max_callbacks: int = 200_000

    def override(self, **changes: Any) -> Limits:
        """A copy with the given fields replaced; None values are ignored, unknown names rejected."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **{k: type(getattr(self, k))(v) for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for reports."""
        return asdict(self)

    def worker_rlimits(self) -> dict[str, int]:
        """Kernel limits for the worker process (see confine.ResourceLimits)."""
        budget = self.notebook_timeout + 20 * self.call_timeout
        memory = self.memory_mb * 1024**2
        return {
            "address_space_bytes": max(ADDRESS_SPACE_FLOOR, ADDRESS_SPACE_FACTOR * memory),
            "cpu_seconds": int(budget * 2),
            "file_bytes": self.max_file_mb * 1024**2,
            "open_files": 256,
            "processes": self.max_threads * CONCURRENT_WORKERS,
        }
