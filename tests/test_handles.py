"""Opaque handles: a call's result positions kept in the worker (a layer's cache) and passed back by later calls.
The worker belongs to the student: a handle it forges, one from before a restart and one dropped as the oldest
each cost that call only, and never reach the checks as a Handle the grader did not issue."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import FAST

from grader.sandbox import protocol
from grader.sandbox.exceptions import ChannelBroken, StudentError, WorkerDied
from grader.sandbox.protocol import MAX_HANDLES, Handle
from grader.sandbox.session import CacheLost, Sandbox
from grader.sandbox.zygote import Zygote
from grader.selfcheck import KernelSession

SOURCE = """
import numpy as np
import sys

class Cache:  # an arbitrary object, which the channel would refuse
    def __init__(self, x):
        self.x = x

def forward(x):
    return 2 * x, Cache(x)

def backward(dout, cache):
    return dout * 2 * cache.x

def relu_forward(x):  # the cache is the argument itself
    return np.maximum(0, x), x

def is_cache(cache):
    return isinstance(cache, Cache)

def die():
    import os
    os._exit(9)

def forge(hid):
    Handle = sys.modules["_jitgrade_protocol"].Handle
    return 1.0, Handle(None, 0, hid)

def empty_the_table():
    import gc
    for obj in gc.get_objects():
        if type(obj).__name__ == "Worker" and isinstance(getattr(obj, "held", None), dict):
            obj.held.clear()
    return 0.0
"""
CELLS = [(0, SOURCE)]


@pytest.fixture
def sandbox(zygote: Zygote) -> Iterator[Sandbox]:
    with Sandbox(zygote, CELLS, FAST) as sb:
        sb.execute()
        yield sb


def test_a_kept_position_comes_back_as_a_handle_and_is_passed_back_as_the_object(sandbox: Sandbox) -> None:
    x = np.arange(3.0)
    out, cache = sandbox.call("forward", x, keep=[1]).value
    assert isinstance(cache, Handle) and np.array_equal(out, 2 * x)
    assert sandbox.call("is_cache", cache).value is True
    assert np.array_equal(sandbox.call("backward", np.ones(3), cache).value, 2 * x)


def test_a_handle_passed_in_is_echoed_as_the_same_handle(sandbox: Sandbox) -> None:
    _, cache = sandbox.call("forward", np.ones(2), keep=[1]).value
    result = sandbox.call("backward", np.ones(2), cache, echo_args=True)
    assert result.args_after[1] is cache


def test_an_argument_kept_as_the_cache_is_echoed_as_the_array_it_is(sandbox: Sandbox) -> None:
    x = np.array([-1.0, 2.0])
    result = sandbox.call("relu_forward", x, keep=[1], echo_args=True)
    assert isinstance(result.value[1], Handle) and np.array_equal(result.args_after[0], x)
    session = kernel()
    result = session.call("relu_forward", x, keep=[1], echo_args=True)
    assert isinstance(result.value[1], Handle) and np.array_equal(result.args_after[0], x)


def test_without_keep_the_cache_is_refused_as_before(sandbox: Sandbox) -> None:
    _, cache = sandbox.call("forward", np.ones(2)).value
    assert isinstance(cache, protocol.Refused)


def test_a_handle_from_before_a_restart_is_a_lost_cache_for_that_call_only(sandbox: Sandbox) -> None:
    _, old = sandbox.call("forward", np.ones(2), keep=[1]).value
    with pytest.raises(WorkerDied):
        sandbox.call("die")
    with pytest.raises(CacheLost, match="restarted"):
        sandbox.call("backward", np.ones(2), old)
    _, new = sandbox.call("forward", np.ones(2), keep=[1]).value  # the new worker serves new handles
    assert np.array_equal(sandbox.call("backward", np.ones(2), new).value, 2 * np.ones(2))
    assert sandbox.restarts == 1


def test_at_most_max_handles_are_held_and_the_oldest_is_dropped_with_a_clear_message(sandbox: Sandbox) -> None:
    handles = [sandbox.call("forward", np.full(1, float(i)), keep=[1]).value[1] for i in range(MAX_HANDLES + 3)]
    assert len(sandbox.held) == MAX_HANDLES
    with pytest.raises(CacheLost, match=f"at most {MAX_HANDLES}"):
        sandbox.call("backward", np.ones(1), handles[0])
    for i in (3, MAX_HANDLES + 2):  # the oldest still held and the newest: the worker dropped the same ones
        assert sandbox.call("backward", np.ones(1), handles[i]).value[0] == 2.0 * i
    assert sandbox.restarts == 0


def test_a_handle_of_another_sandbox_is_not_passed(zygote: Zygote) -> None:
    with Sandbox(zygote, CELLS, FAST) as one, Sandbox(zygote, CELLS, FAST) as other:
        one.execute()
        other.execute()
        _, cache = one.call("forward", np.ones(2), keep=[1]).value
        other.call("forward", np.ones(2), keep=[1])  # the same id is live there
        with pytest.raises(CacheLost):
            other.call("backward", np.ones(2), cache)


def test_a_handle_forged_by_the_worker_is_a_broken_channel_not_a_handle(sandbox: Sandbox) -> None:
    with pytest.raises(ChannelBroken, match="did not issue"):
        sandbox.call("forge", 12345)
    assert not sandbox.held


def test_a_forged_handle_with_the_id_the_grader_is_about_to_issue_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ChannelBroken, match="did not issue"):
        sandbox.call("forge", sandbox.handle_ids + 1)  # issued only for a call that keeps a position


def test_a_table_emptied_by_the_notebook_costs_that_call_only(sandbox: Sandbox) -> None:
    _, cache = sandbox.call("forward", np.ones(2), keep=[1]).value
    sandbox.call("empty_the_table")
    with pytest.raises(StudentError, match="LookupError"):
        sandbox.call("backward", np.ones(2), cache)
    assert sandbox.restarts == 0
    _, cache = sandbox.call("forward", np.ones(2), keep=[1]).value
    assert sandbox.call("is_cache", cache).value is True


def test_a_value_that_is_not_a_tuple_is_sent_as_it_is(sandbox: Sandbox) -> None:
    value = sandbox.call("backward", np.ones(2), sandbox.call("forward", np.ones(2), keep=[1]).value[1], keep=[1])
    assert np.array_equal(value.value, 2 * np.ones(2)) and len(sandbox.held) == 1


def test_decode_makes_no_handle_without_the_issuer_and_encode_refuses_one() -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode({"t": "handle", "id": 1}, [])
    tree, _ = protocol.encode(Handle(None, 0, 1))
    assert tree["t"] == "refused"


# --------------------------------------------------------------------------- the in-kernel self-check


def kernel() -> KernelSession:
    namespace: dict[str, object] = {}
    exec(SOURCE, namespace)
    return KernelSession(namespace)


def test_the_kernel_session_keeps_the_object_itself() -> None:
    session = kernel()
    _, cache = session.call("forward", np.arange(2.0), keep=[1]).value
    assert isinstance(cache, Handle)
    assert session.call("is_cache", cache).value is True
    assert np.array_equal(session.call("backward", np.ones(2), cache).value, [0.0, 2.0])
    assert session.call("backward", np.ones(2), cache, echo_args=True).args_after[1] is cache


def test_the_kernel_session_drops_the_oldest_and_refuses_forged_handles(monkeypatch: pytest.MonkeyPatch) -> None:
    session = kernel()
    handles = [session.call("forward", np.ones(1), keep=[1]).value[1] for _ in range(MAX_HANDLES + 1)]
    with pytest.raises(CacheLost, match=f"at most {MAX_HANDLES}"):
        session.call("backward", np.ones(1), handles[0])
    assert session.call("is_cache", handles[-1]).value is True
    with pytest.raises(CacheLost):
        session.call("is_cache", Handle(None, 0, handles[-1].id))  # not one this session issued
    monkeypatch.setitem(sys.modules, "_jitgrade_protocol", protocol)  # where forge() finds it in a worker
    with pytest.raises(ChannelBroken, match="did not issue"):
        session.call("forge", 10**6)
