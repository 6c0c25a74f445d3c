"""Frame decoder: whole, byte by byte, many per feed, and hostile size prefixes."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluvial.protocol.codec import DecodeError
from fluvial.protocol.frame import FrameDecoder, FrameTooLarge, frame


def test_whole_frames_and_several_per_feed():
    d = FrameDecoder()
    assert d.feed(frame(b"abc") + frame(b"") + frame(b"xy")) == [b"abc", b"", b"xy"]
    assert d.buffered() == 0


def test_byte_by_byte_incomplete_until_the_last_byte():
    data = frame(b"hello")
    d = FrameDecoder()
    for b in data[:-1]:
        assert d.feed(bytes([b])) == []
    assert d.feed(data[-1:]) == [b"hello"]


def test_trailing_partial_frame_left_buffered():
    d = FrameDecoder()
    assert d.feed(frame(b"one") + frame(b"two")[:5]) == [b"one"]
    assert d.buffered() == 1  # the size prefix is consumed; one payload byte waits
    assert d.feed(frame(b"two")[5:]) == [b"two"]


def test_oversized_size_rejected_before_payload_arrives():
    d = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(FrameTooLarge, match="exceeds"):
        d.feed(struct.pack(">i", 1025))
    assert d.buffered() <= 4  # nothing beyond the prefix was ever held
    with pytest.raises(FrameTooLarge):
        d.feed(b"more")  # poisoned: the stream is out of sync


def test_negative_size_rejected():
    with pytest.raises(DecodeError, match="negative"):
        FrameDecoder().feed(b"\xff\xff\xff\xfe")


def test_tls_client_hello_on_plain_port_is_rejected_at_default_limit():
    # 16 03 01 xx read as a size is ~370 MB (README §6.5.1), above the 64 MiB default
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(bytes.fromhex("16030100a5"))


@given(st.lists(st.binary(max_size=50), max_size=10), st.data())
def test_any_split_yields_the_same_frames(payloads, data):
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    d, out, prev = FrameDecoder(), [], 0
    for c in cuts + [len(stream)]:
        out += d.feed(stream[prev:c])
        prev = c
    assert out == payloads
