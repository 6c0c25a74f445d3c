"""Primitive encodings and the @message DSL: golden bytes, gates, three-way decoding, fuzz."""

from __future__ import annotations

from enum import IntEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.errors import Error, ErrorCode
from fluvial.protocol.codec import (
    BOOL, BYTES, DURATION, ERROR_CODE, I16, I32, I64, STR, U8, U16, U32, U64, DecodeError, Enum, Map,
    Opt, Reader, Union, Vec, decode_varint, encode_varint, message, wire,
)


def enc(t, v, version=0) -> bytes:
    w = bytearray()
    t.encode(w, v, version)
    return bytes(w)


def dec(t, data, version=0):
    r = Reader(data)
    return t.decode(r, version), r.pos


def three_ways(t, value, data, version=0):
    """Decode whole, every strict prefix (must raise), and with trailing bytes (left unread)."""
    got, used = dec(t, data, version)
    assert got == value and used == len(data)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            dec(t, data[:cut], version)
    got, used = dec(t, data + b"\xde\xad", version)
    assert got == value and used == len(data)


GOLDEN = [
    (BOOL, True, "01"),
    (BOOL, False, "00"),
    (I16, -1, "ffff"),
    (U16, 9010, "2332"),
    (I32, 5001, "00001389"),
    (U32, 0xFFFFFFFF, "ffffffff"),
    (I64, 1, "0000000000000001"),
    (U64, 2**64 - 1, "ffffffffffffffff"),
    (STR, "demo", "000464656d6f"),
    (Opt(STR), "wo", "010002776f"),
    (Opt(STR), None, "00"),
    (Vec(STR), ["test"], "00000001000474657374"),
    (Map(U32, Vec(I32)), {0: [5001]}, "00010000000000000001" + "00001389"),
    (BYTES, b"\x00asm", "000000040061736d"),
    (DURATION, 1.5, "0000000000000001" + "1dcd6500"),
]


@pytest.mark.parametrize("t,value,hexs", GOLDEN, ids=[f"{g[0].name}-{i}" for i, g in enumerate(GOLDEN)])
def test_golden_primitives(t, value, hexs):
    data = bytes.fromhex(hexs)
    assert enc(t, value) == data
    three_ways(t, value, data)


def test_string_decodes_nonpositive_length_as_empty():
    assert dec(STR, b"\x00\x00") == ("", 2)
    assert dec(STR, b"\xff\xff") == ("", 2)  # read as i16 -1, as Fluvio does


def test_vec_decodes_nonpositive_count_as_empty():
    assert dec(Vec(I32), b"\xff\xff\xff\xff") == ([], 4)


def test_invalid_bool_and_utf8_are_decode_errors():
    with pytest.raises(DecodeError, match="bool"):
        dec(BOOL, b"\x02")
    with pytest.raises(DecodeError, match="UTF-8"):
        dec(STR, b"\x00\x02\xff\xfe")


def test_forged_vec_count_is_rejected_before_allocation():
    with pytest.raises(DecodeError, match="exceeds"):
        dec(Vec(I64), b"\x7f\xff\xff\xff" + b"\x00" * 8)


class Color(IntEnum):
    Blue = 0
    Yellow = 1


@message
class Inner:
    a: int = wire(U8)


@message
class Empty:
    pass


SHAPE = Union("Shape", {0: Empty, 3: Inner})


@message
class Gated:
    x: int = wire(U32)
    since3: str = wire(STR, min_version=3, default="dflt")
    window: int = wire(I16, min_version=2, max_version=4, default=-7)
    color: Color = wire(Enum(Color))
    shape: object = wire(SHAPE, default=Empty())
    inner: Inner = wire(Inner)
    items: list = wire(Vec(Inner))


def test_version_gates_encode_and_decode():
    g = Gated(1, "s", 5, Color.Yellow, Inner(9), Inner(2), [Inner(3)])
    v1 = g.encode(1)
    assert v1 == bytes.fromhex("00000001" "01" "03" "09" "02" "00000001" "03")
    assert Gated.decode(v1, 1) == Gated(1, "dflt", -7, Color.Yellow, Inner(9), Inner(2), [Inner(3)])
    v3 = g.encode(3)
    assert v3 == bytes.fromhex("00000001" "000173" "0005" "01" "0309" "02" "00000001" "03")
    assert Gated.decode(v3, 3) == g
    assert Gated.decode(g.encode(5), 5).window == -7  # past max_version: absent, default


def test_unknown_enum_and_union_tags_are_decode_errors():
    with pytest.raises(DecodeError, match="Unknown Color type 7"):
        dec(Enum(Color), b"\x07")
    with pytest.raises(DecodeError, match="Unknown Shape type 1"):
        dec(SHAPE, b"\x01")


def test_message_three_ways():
    g = Gated(1, "s", 5, Color.Yellow, Empty(), Inner(2), [Inner(3), Inner(4)])
    three_ways(Gated.WIRE_TYPE, g, g.encode(3), 3)


@pytest.mark.parametrize("n,hexs", [(0, "00"), (-1, "01"), (1, "02"), (5, "0a"), (63, "7e"),
                                    (8191, "fe7f"), (-134217729, "8180808001")])
def test_varint_vectors(n, hexs):
    data = bytes.fromhex(hexs)
    assert encode_varint(n) == data
    assert decode_varint(data, 0, len(data)) == (n, len(data))
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_varint(data[:cut], 0, cut)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varint_round_trip(n):
    data = encode_varint(n)
    assert decode_varint(data + b"\x00", 0, len(data) + 1) == (n, len(data))


ERROR_GOLDEN = [
    (Error(), "0000"),
    (Error.other("x"), "0002000178"),
    (Error(ErrorCode.RequestTimedOut, (1500, 0)), "000700000000000005dc00"),
    (Error(ErrorCode.OffsetEvicted, (3, 10)), "0047" "0000000000000003" "000000000000000a"),
    (Error(ErrorCode.PartitionFull, (("t", 0),)), "004800017400000000"),
    (Error(ErrorCode.SmartModuleNotFound, ("m",)), "17710001" "6d"),
    (Error(ErrorCode.SystemSpecDeletionAttempt, ("topic", "sys")), "2ee10005746f706963000373797300"[:-2]),
]


@pytest.mark.parametrize("err,hexs", ERROR_GOLDEN, ids=[e.code.name for e, _ in ERROR_GOLDEN])
def test_error_code_golden(err, hexs):
    data = bytes.fromhex(hexs)
    assert enc(ERROR_CODE, err) == data
    three_ways(ERROR_CODE, err, data)


def test_error_messages_are_fluvios_display_text():
    assert Error(ErrorCode.RequestTimedOut, (1500, 0)).message == \
        "the request 'Produce' exceeded the timeout 1500 ms"
    assert Error(ErrorCode.SystemSpecDeletionAttempt, ("topic", "sys")).message == \
        "system topic 'sys' can only be deleted forcibly"
    assert Error(ErrorCode.TopicNotFound).exception().__class__.__name__ == "TopicNotFoundError"


def test_unknown_error_code_is_a_decode_error():
    with pytest.raises(DecodeError, match="Unknown ErrorCode type 4242"):
        dec(ERROR_CODE, (4242).to_bytes(2, "big"))


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data):
    for t in (Gated.WIRE_TYPE, ERROR_CODE, Vec(STR), Map(STR, Opt(U32))):
        try:
            dec(t, data, 3)
        except DecodeError:
            pass
