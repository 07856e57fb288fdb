"""The channel between grader and worker: what may cross, and what a hostile worker cannot do."""

from __future__ import annotations

import io
import os
import struct
import time

import numpy as np
import pytest

from grader.sandbox import protocol
from grader.sandbox.protocol import (
    ChannelClosed,
    ChannelTimeout,
    FrameLimits,
    FrameReader,
    ProtocolError,
    Refused,
    decode,
    encode,
    read_npy,
    write_frame,
)


def roundtrip(value: object) -> object:
    tree, payloads = encode(value)
    return decode(tree, payloads)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12.0).reshape(3, 4),
        np.float32(2.5),
        np.array(7, dtype=np.uint8),
        np.zeros((0, 3)),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(10.0)[::3],
        np.ones((2, 2, 2), dtype=bool),
        np.arange(5, dtype=np.int32),
    ],
)
def test_numeric_arrays_and_scalars_roundtrip_exactly(value: np.ndarray) -> None:
    out = roundtrip(value)
    assert np.asarray(out).dtype == np.asarray(value).dtype
    assert np.shape(out) == np.shape(value)
    assert np.array_equal(out, value)


def test_nested_containers_and_plain_numbers_roundtrip() -> None:
    value = {"W1": np.ones((2, 3)), "meta": [1, 2.5, True, None, (3, float("inf"))], "nan": float("nan")}
    out = roundtrip(value)
    assert isinstance(out, dict) and set(out) == {"W1", "meta", "nan"}
    assert out["meta"][:4] == [1, 2.5, True, None] and out["meta"][4] == (3, float("inf"))
    assert np.isnan(out["nan"])


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (np.matrix([[1.0]]), "numpy.matrix"),
        (np.array([object()]), "dtype object"),
        (np.array(["a"]), "dtype <U1"),
        (np.ma.masked_array([1.0]), "MaskedArray"),
        ("text", "str"),
        (print, "builtin_function_or_method"),
        ({1: 2}, "dict"),
        (np.array([1 + 2j]), "complex128"),
    ],
)
def test_values_that_may_not_cross_are_refused_by_name(value: object, type_name: str) -> None:
    out = roundtrip([value])[0]
    assert isinstance(out, Refused)
    assert type_name in out.type


def test_strict_encoding_raises_instead_of_refusing() -> None:
    with pytest.raises(TypeError):
        encode([np.matrix([[1.0]])], strict=True)


def test_deep_nesting_is_refused_not_recursed() -> None:
    value: list = []
    for _ in range(100):
        value = [value]
    tree, payloads = encode(value)
    assert "refused" in str(tree)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def test_pickled_object_arrays_are_never_unpickled() -> None:
    class Boom:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned > /tmp/jitgrade-pwned",))

    data = npy(np.array([Boom()], dtype=object))
    with pytest.raises(ProtocolError):
        read_npy(data)
    assert not os.path.exists("/tmp/jitgrade-pwned")


def test_npy_whose_size_does_not_match_its_header_is_rejected() -> None:
    data = npy(np.arange(4.0))
    with pytest.raises(ProtocolError):
        read_npy(data[:-8])
    with pytest.raises(ProtocolError):
        read_npy(data + b"\0" * 8)


def test_npy_declaring_a_huge_shape_is_rejected_without_allocating() -> None:
    data = npy(np.arange(4.0)).replace(b"(4,)", b"(999999999999,)")
    with pytest.raises(ProtocolError):
        read_npy(data)


def test_malformed_value_trees_are_protocol_errors() -> None:
    for tree in ({"t": "array", "i": 5}, {"t": "nope"}, [1], {"t": "dict", "v": [[1, 2]]}):
        with pytest.raises(ProtocolError):
            decode(tree, [])


def test_a_payload_named_twice_is_a_protocol_error_not_a_copy_per_node() -> None:
    """A forged tree naming one payload at each of its MAX_NODES nodes would make that many copies of it
    (10,000 x the frame's cap in the grader's memory); each payload crosses once, as encode writes them."""
    value = (np.ones(3), [np.zeros(2), np.float32(1.5)])
    tree, payloads = encode(value)
    assert len(payloads) == 3
    again = decode(tree, payloads)
    assert np.array_equal(again[0], value[0]) and np.array_equal(again[1][0], value[1][0])
    for reused in ({"t": "list", "v": [{"t": "array", "i": 0}] * 2}, {"t": "tuple", "v": [tree, tree]}):
        with pytest.raises(ProtocolError, match="payload twice"):
            decode(reused, payloads)


def test_frames_roundtrip_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        tree, payloads = encode({"x": np.arange(3.0)})
        write_frame(w, {"op": "call", "value": tree}, payloads)
        header, got = FrameReader(r).read(time.monotonic() + 5)
        assert header["op"] == "call"
        assert np.array_equal(decode(header["value"], got)["x"], np.arange(3.0))
    finally:
        os.close(r)
        os.close(w)


def test_reading_times_out_and_notices_a_closed_channel() -> None:
    r, w = os.pipe()
    with pytest.raises(ChannelTimeout):
        FrameReader(r).read(time.monotonic() + 0.05)
    os.close(w)
    with pytest.raises(ChannelClosed):
        FrameReader(r).read(time.monotonic() + 1)
    os.close(r)


def test_garbage_and_oversized_frames_are_rejected_before_allocation() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"XXXX" + b"\0" * 8)
        with pytest.raises(ProtocolError, match="magic"):
            FrameReader(r).read(time.monotonic() + 1)
        os.write(w, struct.pack("<4sII", protocol.MAGIC, 16, 1) + struct.pack("<Q", 2**40))
        with pytest.raises(ProtocolError, match="too large"):
            FrameReader(r, FrameLimits()).read(time.monotonic() + 1)
        os.write(w, struct.pack("<4sII", protocol.MAGIC, 2**31, 0))
        with pytest.raises(ProtocolError, match="too large"):
            FrameReader(r).read(time.monotonic() + 1)
    finally:
        os.close(r)
        os.close(w)
