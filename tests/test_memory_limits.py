"""The memory limit bounds memory a notebook actually uses, not the address space it reserves.

A reservation it never touches (PyTorch's CUDA build maps about 3.5 GiB at import) runs under the
default 2048 MiB; memory written past the limit, in a cell or in a call, from Python, a C thread or
many small allocations, stops the notebook with the memory message, and the grader carries on.
Each test runs at both isolation levels (bubblewrap where usable).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from conftest import FAST, ROOT

from grader.sandbox.exceptions import MemoryLimit, WorkerDied
from grader.sandbox.limits import Limits
from grader.sandbox.session import Sandbox
from grader.sandbox.zygote import Zygote, bwrap_usable

DEFAULT = FAST.override(cell_timeout=20.0, call_timeout=20.0, notebook_timeout=120.0)  # memory_mb: the default 2048
SMALL = DEFAULT.override(memory_mb=256)
MEMORY_MESSAGE = re.compile(r"out of memory.*limit (of|is) 256 MiB|memory limit of 0\.25 GiB")
RESERVE_4_GIB = "import mmap\nreserved = mmap.mmap(-1, 4 << 30, prot=0)  # PROT_NONE\nprint(len(reserved) >> 30)"
RESERVE_4_GIB_PRIVATE = (
    "import ctypes, mmap\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.mmap.restype = ctypes.c_void_p\n"
    "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\n"
    "MAP_NORESERVE = 0x4000\n"
    "address = libc.mmap(None, 4 << 30, mmap.PROT_READ | mmap.PROT_WRITE,\n"
    "                    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)\n"
    "assert address not in (None, 2**64 - 1), ctypes.get_errno()\n"
    "print('reserved')"
)
WRITE_1_GIB = "import numpy as np\nfilled = np.ones(1 << 30 >> 3)\nprint(filled.nbytes >> 20)"
WRITE_IN_STEPS = "chunks = []\nfor _ in range(1024):\n    chunks.append(bytearray(b'x' * (1 << 20)))"
SHARED_MEMORY = "import mmap\nshared = mmap.mmap(-1, 1 << 30)\nfor at in range(0, 1 << 30, 4096):\n    shared[at] = 1"
SMALL_ALLOCATIONS = "objects = []\nfor _ in range(30_000_000):\n    objects.append([0.5])"
C_THREAD = """
import ctypes, threading
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def fill():  # ctypes releases the GIL: this writes from a thread while the cell waits
    for _ in range(1024):
        libc.memset(libc.malloc(1 << 20), 1, 1 << 20)
thread = threading.Thread(target=fill)
thread.start()
thread.join()
"""
GROWING_FUNCTION = "import numpy as np\ndef grow(n):\n    held = []\n    while True:\n        held.append(np.ones(n))"


@pytest.fixture(scope="module", params=["process", "bwrap"])
def zygote(request: pytest.FixtureRequest) -> Iterator[Zygote]:
    """A fork server at each isolation level."""
    if request.param == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap cannot create its namespaces here")
    with Zygote(isolation=request.param) as server:
        yield server


def run_cells(zygote: Zygote, cells: list[str], limits: Limits) -> tuple[list[tuple[str, str]], dict[str, object]]:
    """Each cell's (status, error or printed text), and the isolation layers the worker reported."""
    with Sandbox(zygote, list(enumerate(cells)), limits) as sandbox:
        record = sandbox.execute()
    outcomes = [(c.status, c.error or "".join(o.get("text", "") for o in c.outputs)) for c in record.cells]
    return outcomes, record.isolation["layers"]


def test_the_worker_reports_what_bounds_its_memory(zygote: Zygote) -> None:
    _, layers = run_cells(zygote, ["1"], DEFAULT)
    assert layers["memory"] in ("cgroup", "rss-watchdog"), layers


@pytest.mark.parametrize("source", [RESERVE_4_GIB, RESERVE_4_GIB_PRIVATE], ids=["prot_none", "map_noreserve"])
def test_reserving_4_GiB_without_touching_it_runs_under_the_default_limit(zygote: Zygote, source: str) -> None:
    assert DEFAULT.memory_mb == 2048
    outcomes, _ = run_cells(zygote, [source, "print('after')"], DEFAULT)
    assert outcomes[0][0] == "ok", outcomes
    assert outcomes[1] == ("ok", "after\n"), outcomes


@pytest.mark.parametrize(
    "source",
    [WRITE_1_GIB, WRITE_IN_STEPS, SHARED_MEMORY, SMALL_ALLOCATIONS, C_THREAD],
    ids=["numpy_array", "bytearrays_in_steps", "shared_mmap", "small_objects", "c_thread"],
)
def test_memory_written_past_the_limit_stops_the_cell_with_the_memory_message(zygote: Zygote, source: str) -> None:
    started = time.monotonic()
    outcomes, _ = run_cells(zygote, ["x = 1", source, "print(x)"], SMALL)
    assert time.monotonic() - started < 60
    status, error = outcomes[1]
    assert status in ("crashed", "error") and MEMORY_MESSAGE.search(error), outcomes
    assert outcomes[2] == ("ok", "1\n"), outcomes  # the notebook was restarted without that cell


def test_writing_3_GiB_fails_under_the_default_limit(zygote: Zygote) -> None:
    source = "import numpy as np\nfilled = np.ones(3 << 30 >> 3)"
    outcomes, _ = run_cells(zygote, [source, "print('after')"], DEFAULT)
    status, error = outcomes[0]
    assert status in ("crashed", "error") and re.search(r"out of memory.*limit (of|is) 2048 MiB", error), outcomes
    assert outcomes[1] == ("ok", "after\n"), outcomes


def test_a_call_that_grows_past_the_limit_is_stopped_with_the_memory_message(zygote: Zygote) -> None:
    with Sandbox(zygote, [(0, GROWING_FUNCTION), (1, "def one():\n    return 1.0")], SMALL) as sandbox:
        sandbox.execute()
        with pytest.raises((WorkerDied, MemoryLimit)) as caught:
            sandbox.call("grow", 1 << 17)
        assert MEMORY_MESSAGE.search(str(caught.value)), caught.value
        assert sandbox.call("one").value == 1.0  # restarted, still answering


def test_memory_of_a_subprocess_counts_against_the_notebook(zygote: Zygote) -> None:
    forking = (
        "import os\npid = os.fork()\nif pid == 0:\n    chunks = [bytearray(b'x' * (1 << 20)) for _ in range(1024)]\n"
        "    os._exit(0)\nos.waitpid(pid, 0)"
    )
    outcomes, _ = run_cells(zygote, ["x = 1", forking, "print(x)"], SMALL.override(max_processes=4))
    status, error = outcomes[1]
    assert status == "crashed" and MEMORY_MESSAGE.search(error), outcomes
    assert outcomes[2] == ("ok", "1\n"), outcomes


def test_memory_a_cell_leaves_allocated_is_charged_to_that_cell(zygote: Zygote) -> None:
    # Faster than the watch polls: the worker checks itself at the end of each cell and call.
    outcomes, _ = run_cells(zygote, ["x = 1", "import numpy as np\nheld = np.ones(300 << 20 >> 3)", "print(x)"], SMALL)
    status, error = outcomes[1]
    assert status in ("crashed", "error") and MEMORY_MESSAGE.search(error), outcomes
    assert outcomes[2] == ("ok", "1\n"), outcomes


def _worker_module() -> ModuleType:
    """grader/sandbox/worker.py as the zygote runs it (a script, loaded by path)."""
    path = ROOT / "grader" / "sandbox" / "worker.py"
    spec = importlib.util.spec_from_file_location("worker_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_a_worker_cgroup_gets_the_limit_and_reports_the_kernel_kill(tmp_path: Path) -> None:
    # The machines that run this suite may have no delegable cgroup v2: a folder stands in for the cgroup
    # filesystem, whose files the kernel provides (here they are created by the writes).
    worker = _worker_module()
    folder = worker._enter_cgroup(str(tmp_path), 4242, 256 << 20, 64)
    assert folder == str(tmp_path / "jitgrade-worker-4242")
    written = {name: (tmp_path / folder / name).read_text() for name in os.listdir(folder)}
    assert written == {"memory.max": str(256 << 20), "memory.oom.group": "1", "cgroup.procs": "4242"}
    assert worker._cgroup_verdict(folder, 256 << 20) == ""  # no memory.events: nothing was killed
    Path(folder, "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n")
    Path(folder, "memory.peak").write_text(str(300 << 20))
    verdict = worker._cgroup_verdict(folder, 256 << 20)
    assert verdict.startswith("it ran out of memory: it used 300 MiB, over the limit of 256 MiB (cgroup)"), verdict
    assert worker._enter_cgroup(str(tmp_path / "missing"), 4242, 1 << 20, 64) is None  # refused: the watch holds it


def test_a_directory_that_cannot_be_measured_stops_its_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker that swaps files and folders under the same names makes the walk fail (NotADirectoryError):
    # a failure once in a while counts as nothing, a run of them stops the worker (the measure fails closed).
    worker = _worker_module()
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands for the worker: its own group
    try:
        child = worker.Child(str(tmp_path), -1, 1 << 20, 100, 1 << 30, None, 0, False, 256, 1, tmp_path.stat().st_dev)
        children = {sleeper.pid: child}
        outcomes = iter([NotADirectoryError(20, "Not a directory")] * (worker.UNMEASURABLE_LIMIT - 1) + [(0, 1, True)])

        def walk(*_: object) -> tuple[int, int, bool]:
            outcome = next(outcomes, NotADirectoryError(20, "Not a directory"))
            if isinstance(outcome, OSError):
                raise outcome
            return outcome

        monkeypatch.setattr(worker, "walk_tree", walk)
        for _ in range(worker.UNMEASURABLE_LIMIT):  # a success among the failures starts the count again
            worker._check_quotas(children, None, 0)
        assert child.stopped_for == "" and sleeper.poll() is None
        for _ in range(worker.UNMEASURABLE_LIMIT):
            worker._check_quotas(children, None, 0)
        assert child.stopped_for.startswith("its working directory could not be measured 5 times in a row"), child
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()
