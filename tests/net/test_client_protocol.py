"""ClientProtocol: correlation ids, routing by id, streams, and hostile response frames (no I/O)."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.protocol.api import ApiVersionsRequest, encode_request, encode_response
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.connection import ClientProtocol
from fluvial.protocol.frame import FrameTooLarge


def response(corr: int, body: bytes = b"") -> bytes:
    return struct.pack(">ii", 4 + len(body), corr) + body


def test_request_frame_is_encode_request_with_the_assigned_id():
    p = ClientProtocol(client_id="me")
    corr, pieces = p.start_request(ApiVersionsRequest(), 2, "sink")
    assert corr == 1
    assert b"".join(pieces) == encode_request(ApiVersionsRequest(), 1, 2, "me")
    corr, pieces = p.start_request(ApiVersionsRequest(), 1, "sink", client_id="other")
    assert corr == 2
    assert b"".join(pieces) == encode_request(ApiVersionsRequest(), 2, 1, "other")


def test_responses_out_of_order_go_to_their_own_sink():
    p = ClientProtocol()
    ids = {p.start_request(ApiVersionsRequest(), 2, name)[0]: name for name in "abc"}
    assert list(ids) == [1, 2, 3]
    data = response(3, b"C") + response(1, b"A") + response(2, b"B")
    routed = p.receive_data(data)
    assert [(sink, payload[4:]) for sink, payload in routed] == [
        ("c", b"C"), ("a", b"A"), ("b", b"B")]
    assert p.statistics().outstanding_requests == 0


def test_frames_split_at_every_byte_are_routed_once_complete():
    p = ClientProtocol()
    p.start_request(ApiVersionsRequest(), 2, "a")
    p.start_request(ApiVersionsRequest(), 2, "b")
    data = response(2, b"second") + response(1, b"first")
    routed = []
    for i in range(len(data)):
        routed += p.receive_data(data[i : i + 1])
        if i < len(response(2, b"second")) - 1:
            assert routed == []
    assert routed == [("b", response(2, b"second")[4:]), ("a", response(1, b"first")[4:])]


def test_a_stream_keeps_its_id_until_forgotten():
    p = ClientProtocol()
    corr, _ = p.start_request(ApiVersionsRequest(), 2, "stream", stream=True)
    assert p.receive_data(response(corr, b"1") + response(corr, b"2")) == [
        ("stream", response(corr, b"1")[4:]), ("stream", response(corr, b"2")[4:])]
    assert p.statistics().outstanding_streams == 1
    p.forget(corr)
    assert p.receive_data(response(corr, b"3")) == []
    stats = p.statistics()
    assert (stats.outstanding_streams, stats.frames_received, stats.frames_dropped) == (0, 3, 1)


def test_unknown_and_already_answered_ids_are_dropped():
    p = ClientProtocol()
    corr, _ = p.start_request(ApiVersionsRequest(), 2, "a")
    assert p.receive_data(response(corr) + response(corr) + response(77) + response(-1)) == [
        ("a", response(corr)[4:])]
    assert p.statistics().frames_dropped == 3
    assert not p.is_outstanding(corr)


def test_ids_wrap_to_one_and_skip_outstanding_ids():
    p = ClientProtocol()
    p.start_request(ApiVersionsRequest(), 2, "long-lived", stream=True)  # holds id 1
    p._next_id = 2**31 - 1
    assert p.start_request(ApiVersionsRequest(), 2, "x")[0] == 2**31 - 1
    assert p.start_request(ApiVersionsRequest(), 2, "y")[0] == 2  # 1 is still outstanding


def test_payload_shorter_than_a_correlation_id_is_a_decode_error():
    p = ClientProtocol()
    with pytest.raises(DecodeError, match="correlation id"):
        p.receive_data(struct.pack(">i", 3) + b"abc")


def test_oversized_response_frame_is_refused_before_buffering():
    p = ClientProtocol(max_frame_bytes=100)
    with pytest.raises(FrameTooLarge):
        p.receive_data(struct.pack(">i", 101))
    with pytest.raises(DecodeError):
        ClientProtocol().receive_data(struct.pack(">i", -5))


def test_fail_all_hands_back_every_sink_and_clears():
    p = ClientProtocol()
    p.start_request(ApiVersionsRequest(), 2, "a")
    p.start_request(ApiVersionsRequest(), 2, "s", stream=True)
    assert p.fail_all() == ["a", "s"]
    assert p.fail_all() == []
    assert p.receive_data(encode_response(ApiVersionsRequest.Response(), 1, 2)) == []


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_any_order_and_any_split_routes_every_response_once(n, data):
    p = ClientProtocol()
    ids = [p.start_request(ApiVersionsRequest(), 2, f"sink{i}")[0] for i in range(n)]
    order = data.draw(st.permutations(ids))
    wire = b"".join(response(corr, str(corr).encode() * (corr % 5)) for corr in order)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    routed = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)]):
        routed += p.receive_data(wire[a:b])
    assert [sink for sink, _ in routed] == [f"sink{corr - 1}" for corr in order]
    assert all(payload[4:] == str(corr).encode() * (corr % 5)
               for (_, payload), corr in zip(routed, order))
    assert p.statistics().outstanding_requests == 0


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=64))
def test_garbage_from_the_server_raises_only_decode_error(garbage):
    p = ClientProtocol(max_frame_bytes=1024)
    p.start_request(ApiVersionsRequest(), 2, "a", stream=True)
    try:
        p.receive_data(garbage)
    except DecodeError:
        pass
