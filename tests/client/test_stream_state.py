"""The pure parts of bounded streams: markers, the source's decisions, the sink's life cycle and
the leader's sessions."""

from __future__ import annotations

import pytest

from fluvial.client.stream_state import Action, SinkClosed, SinkState, SourceState
from fluvial.client.types import Record
from fluvial.protocol.batch import check_batch
from fluvial.protocol.markers import (
    ATTR_CONTROL, MARKER_KEY, STREAM_HEADER, Marker, MarkerKind, encode_marker, marker_of,
)
from fluvial.protocol.record import Compression
from fluvial.protocol.record_fast import decode_fetched_batches
from fluvial.protocol.record_headers import strip_record_set
from fluvial.protocol.record import decode_record_set
from fluvial.spu.stream_sessions import StreamSessions, markers_in


def data(offset, stream, value=b"v"):
    return Record((0, offset, None, value, -1, ((STREAM_HEADER, stream.encode()),)))


def marker(offset, kind, stream):
    batch = encode_marker(kind, stream, first_timestamp=1)
    (rec,), _, _ = decode_fetched_batches(batch, 0, len(batch), 0, row=Record, control=True)
    return Record((0, offset, *rec[2:]))


def test_a_marker_is_a_control_batch_plain_decoders_skip_and_official_clients_can_read():
    batch = encode_marker(MarkerKind.EOS, "s-1", first_timestamp=5)
    assert check_batch(batch).attributes & ATTR_CONTROL
    assert decode_fetched_batches(batch, 0, len(batch), 0)[0] == []
    (r,), _, nxt = decode_fetched_batches(batch, 0, len(batch), 0, row=Record, control=True)
    assert r.is_control and nxt == 1
    assert marker_of(r.headers) == Marker(MarkerKind.EOS, "s-1")
    (plain,) = decode_record_set(strip_record_set(batch))  # what an official client gets
    assert (plain.key, plain.value) == (MARKER_KEY, b"EOS s-1")
    gz = encode_marker(MarkerKind.BEGIN, "s", first_timestamp=5, session_ms=900,
                       compression=Compression.Gzip)
    assert check_batch(gz).compression == Compression.Gzip
    assert markers_in(gz) == [Marker(MarkerKind.BEGIN, "s", 900)]


def test_the_source_delivers_only_its_stream_and_ends_at_its_eos():
    s = SourceState("a")
    feed = [marker(0, MarkerKind.BEGIN, "a"), data(1, "a"), data(2, "b"),
            marker(3, MarkerKind.EOS, "b"), data(4, "a"), Record((0, 5, None, b"x", -1)),
            marker(6, MarkerKind.EOS, "a"), data(7, "a")]
    assert [s.feed(r) for r in feed] == [
        Action.SKIP, Action.DELIVER, Action.SKIP, Action.SKIP, Action.DELIVER, Action.SKIP,
        Action.END, Action.END]
    assert s.delivered == 2 and s.last_offset == 6


def test_a_resumed_read_never_delivers_a_record_twice():
    s = SourceState("a")
    assert s.feed(data(1, "a")) is Action.DELIVER
    assert s.feed(data(1, "a")) is Action.SKIP  # read again after a reconnect
    assert s.feed(data(2, "a")) is Action.DELIVER


def test_a_data_record_that_fakes_marker_headers_is_data():
    fake = Record((0, 1, None, b"v", -1, (("fluvial-marker", b"EOS"), (STREAM_HEADER, b"a"))))
    s = SourceState("a")
    assert s.feed(fake) is Action.DELIVER
    assert s.feed(marker(2, MarkerKind.ABORT, "a")) is Action.ABORTED


def test_the_sink_life_cycle():
    st = SinkState(max_unacked_bytes=10)
    st.sent(11)
    assert st.over_budget()
    st.acked(11)
    st.start_close()
    with pytest.raises(SinkClosed):
        st.check_send()
    with pytest.raises(SinkClosed):
        st.start_close()
    st.closed()
    assert st.abort() is False  # never an abort after EOS
    other = SinkState()
    assert other.abort() is True and other.abort() is False


def test_sessions_expire_unless_touched_and_are_rebuilt_from_begin_markers():
    ss = StreamSessions()
    ss.touch(("t", 0), "s", 2000, now=10)
    ss.touch(("t", 0), "s", 2000, now=11)
    assert ss.expired(12.5) == []
    assert ss.expired(13) == [(("t", 0), "s")]
    ss.ended(("t", 0), "s")
    assert ss.expired(100) == []
    ss.touch(("t", 0), "big", 10**9, now=0)  # capped at 60 s
    assert ss.expired(60) == [(("t", 0), "big")]
    ss.rebuild(("t", 1), [Marker(MarkerKind.BEGIN, "x", 1000), Marker(MarkerKind.BEGIN, "y", 1000),
                          Marker(MarkerKind.EOS, "x")], now=50)
    assert ss.is_open(("t", 1), "y") and not ss.is_open(("t", 1), "x")
    assert (("t", 1), "y") in ss.expired(51)
