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


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, "owned"])
@given(st.lists(st.binary(max_size=120), max_size=8), st.data())
def test_large_frames_collected_in_pieces_come_out_whole(kind, payloads, data):
    """With a small ``collect_from`` most frames here are "large": their pieces are kept as
    they came (bytes, or a buffer handed over: ``owned``) or copied (a buffer the caller may
    reuse), joined once; ``wanted`` says what the frame being collected still needs."""
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    d, out, prev = FrameDecoder(collect_from=16), [], 0
    for c in cuts + [len(stream)]:
        piece = bytearray(stream[prev:c])
        if kind == "owned":  # handed over: the caller never touches it again
            got = d.feed(piece, owned=True)
        else:
            got = d.feed(kind(bytes(piece)) if kind is not bytearray else piece)
            piece[:] = bytes(b ^ 0xFF for b in piece)  # a reused buffer: nothing kept may change
        out += got
        prev = c
        assert 0 <= d.wanted() <= d.buffered() + d.wanted()
    assert out == payloads and all(type(p) is bytes for p in out)
    assert d.buffered() == 0 and d.wanted() == 0


def test_wanted_counts_what_a_large_frame_still_needs():
    payload = bytes(range(256)) * 400  # 100 KiB
    data = frame(payload) + frame(b"next")
    d = FrameDecoder()
    assert d.feed(data[:1000]) == [] and d.wanted() == len(payload) - 996
    assert d.feed(data[1000:50_000]) == [] and d.wanted() == len(payload) - 49_996
    assert d.feed(data[50_000:]) == [payload, b"next"] and d.wanted() == 0
    small = FrameDecoder()
    assert small.feed(frame(b"x" * 100)[:50]) == [] and small.wanted() == 0  # not collected


def test_read_size_asks_for_the_rest_of_a_large_frame_up_to_a_bound():
    from fluvial.protocol.frame import MAX_READ_BYTES

    d = FrameDecoder()
    assert d.read_size(65536) == 65536
    d.feed(frame(bytes(200_000))[:10_000])
    assert d.read_size(65536) == 200_000 - 9_996
    huge = FrameDecoder()
    huge.feed(struct.pack(">i", 32 * 1024 * 1024) + bytes(100))
    assert huge.read_size(65536) == MAX_READ_BYTES
