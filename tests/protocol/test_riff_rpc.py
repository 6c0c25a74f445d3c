"""riff's streaming RPC signals (riff-rpc.proto), encoded by hand: golden bytes spelled out field
by field, round trips, and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluvial.protocol.codec import DecodeError
from fluvial.protocol.riff_rpc import (
    InputFrame,
    OutputFrame,
    StartFrame,
    decode_input_signal,
    decode_output_signal,
    encode_input_signal,
    encode_output_signal,
)

START = StartFrame(("application/json",), ("nums",), ("avgs",))
START_BYTES = bytes([
    0x0A, 30,                                  # InputSignal.start (field 1, LEN), 30 bytes
    0x0A, 16, *b"application/json",            # expectedContentTypes[0] (1, LEN)
    0x12, 4, *b"nums",                         # inputNames[0] (2, LEN)
    0x1A, 4, *b"avgs",                         # outputNames[0] (3, LEN)
])

DATA = InputFrame(b"7", "text/plain", {"a": "b"}, arg_index=1)
DATA_BYTES = bytes([
    0x12, 25,                                  # InputSignal.data (field 2, LEN), 25 bytes
    0x0A, 1, *b"7",                            # payload (1, LEN)
    0x12, 10, *b"text/plain",                  # contentType (2, LEN)
    0x1A, 6,                                   # headers entry (3, LEN), 6 bytes:
    0x0A, 1, *b"a",                            #   key (1, LEN)
    0x12, 1, *b"b",                            #   value (2, LEN)
    0x20, 1,                                   # argIndex (4, VARINT) = 1
])

OUT = OutputFrame(b"{}", "", {}, result_index=-1)
OUT_BYTES = bytes([
    0x0A, 15,                                  # OutputSignal.data (field 1, LEN), 15 bytes
    0x0A, 2, *b"{}",                           # payload (1, LEN); no contentType, no headers
    0x20, *[0xFF] * 9, 0x01,                   # resultIndex (4, VARINT) = -1: 64-bit two's complement
])

OUT_DEFAULTS = OutputFrame()
OUT_DEFAULTS_BYTES = bytes([0x0A, 0])          # the oneof's frame is written even when empty


@pytest.mark.parametrize("frame, data", [(START, START_BYTES), (DATA, DATA_BYTES),
                                         (StartFrame(), bytes([0x0A, 0])),
                                         (InputFrame(), bytes([0x12, 0]))],
                         ids=["start", "data", "empty-start", "empty-data"])
def test_input_signal_golden_bytes(frame, data):
    assert encode_input_signal(frame) == data
    assert decode_input_signal(data) == frame


@pytest.mark.parametrize("frame, data", [(OUT, OUT_BYTES), (OUT_DEFAULTS, OUT_DEFAULTS_BYTES)],
                         ids=["negative-index", "defaults"])
def test_output_signal_golden_bytes(frame, data):
    assert encode_output_signal(frame) == data
    assert decode_output_signal(data) == frame


def test_repeated_empty_strings_are_written():
    assert encode_input_signal(StartFrame(("",), (), ())) == bytes([0x0A, 2, 0x0A, 0])
    assert decode_input_signal(bytes([0x0A, 2, 0x0A, 0])) == StartFrame(("",), (), ())


def test_unknown_fields_are_skipped_and_the_last_scalar_wins():
    extra = bytes([
        0x28, 0x96, 0x01,                      # field 5, VARINT 150: unknown
        0x35, 1, 2, 3, 4,                      # field 6, I32: unknown
        0x39, *range(8),                       # field 7, I64: unknown
        0x42, 2, *b"zz",                       # field 8, LEN: unknown
        0x20, 2,                               # argIndex again: 2 wins over 1
    ])
    inner = DATA_BYTES[2:] + extra
    assert decode_input_signal(bytes([0x12, len(inner)]) + inner) == InputFrame(b"7", "text/plain", {"a": "b"}, 2)
    assert decode_output_signal(bytes([0x12, 1, 0])) is None  # a signal kind this end does not know


@pytest.mark.parametrize("data, match", [
    (DATA_BYTES[:-1], "claims 25 bytes"),                      # cut inside the frame
    (bytes([0x12]), "truncated"),                              # a key, no length
    (bytes([0x12, 0x80]), "truncated"),                        # a varint cut short
    (bytes([0x10, 1]), "wire type 0, expected 2"),             # data as a varint
    (bytes([0x12, 2, 0x08, 1]), "InputFrame: field 1 has wire type 0"),
    (bytes([0x12, 3, 0x12, 1, 0xFF]), "not UTF-8"),            # contentType
    (bytes([0x0B]), "wire type 3"),                            # a group
    (bytes([0x02, 0]), "field number 0"),
    (b"", "neither a start nor a data frame"),
    (bytes([0x0A, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), "longer than 10 bytes"),
])
def test_malformed_input_signals_are_decode_errors(data, match):
    with pytest.raises(DecodeError, match=match):
        decode_input_signal(data)


def test_an_index_outside_int32_is_refused():
    with pytest.raises(ValueError, match="not an int32"):
        encode_output_signal(OutputFrame(result_index=1 << 31))


_text = st.text(max_size=20)
_headers = st.dictionaries(_text, _text, max_size=3)
_index = st.integers(-(1 << 31), (1 << 31) - 1)


@given(st.one_of(
    st.builds(StartFrame, st.lists(_text, max_size=3).map(tuple), st.lists(_text, max_size=3).map(tuple),
              st.lists(_text, max_size=3).map(tuple)),
    st.builds(InputFrame, st.binary(max_size=40), _text, _headers, _index)))
def test_input_signals_round_trip(frame):
    assert decode_input_signal(encode_input_signal(frame)) == frame


@given(st.builds(OutputFrame, st.binary(max_size=40), _text, _headers, _index))
def test_output_signals_round_trip(frame):
    assert decode_output_signal(encode_output_signal(frame)) == frame
