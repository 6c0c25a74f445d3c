"""fluvial.storage.compaction: which records survive, and the batches they end up in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.protocol.batch import ATTR_COMPACTED, check_batch, follows, iter_batches
from fluvial.protocol.record import Compression, ProducerRecord, decode_batches, encode_batch
from fluvial.storage.compaction import KeyMap, clean_segment, is_tombstone

TS = 1_700_000_000_000
HOUR = 3_600_000


def build(segments: list[list[list[tuple[bytes | None, bytes, int]]]], compression=Compression.None_):
    """Segments of batches of (key, value, timestamp) records -> [(base, next, bytes)],
    offsets assigned from 0 as a leader would."""
    out, offset = [], 0
    for seg in segments:
        base, parts = offset, []
        for batch in seg:
            first = batch[0][2]
            parts.append(encode_batch([ProducerRecord(v, k) for k, v, _ in batch], base_offset=offset,
                                      first_timestamp=first, compression=compression,
                                      timestamp_deltas=[t - first for _, _, t in batch]))
            offset += len(batch)
        out.append((base, offset, b"".join(parts)))
    return out


def compact(segments, now_ms: int, retention_ms: int):
    keys = KeyMap()
    for _, _, data in segments:
        keys.add_segment(data)
    pinned = keys.pinned()
    return [(base, nxt, b"".join(clean_segment(data, base, keys, pinned, now_ms - retention_ms).batches))
            for base, nxt, data in segments]


def records(segments):
    return [r for _, _, data in segments for b in decode_batches(data) for r in b.records]


def latest_by_key(recs):
    out = {}
    for r in recs:
        if r.key is not None:
            out[r.key] = r
    return out


def check_layout(segments):
    """Every segment's batches are valid, follow each other (gaps only after a compacted
    batch's flag) and end exactly at the segment's end."""
    for base, nxt, data in segments:
        expected = base
        for pos, h in iter_batches(data):
            assert follows(h, expected), (base, pos, h.base_offset, expected)
            expected = h.next_offset
        assert expected == nxt


def test_worked_example():
    old = TS - 2 * HOUR
    segs = build([[[(b"a", b"1", old), (b"b", b"1", old)], [(b"a", b"2", old), (b"a", b"", old)],
                   [(b"c", b"1", old)]]])
    out = compact(segs, TS, HOUR)
    assert [(r.offset, r.key, r.value) for r in records(out)] == [(1, b"b", b"1"), (4, b"c", b"1")]
    kept = compact(segs, TS, 3 * HOUR)  # the tombstone has not expired
    assert [r.offset for r in records(kept)] == [1, 3, 4]
    check_layout(out)
    check_layout(kept)


def test_split_batch_keeps_offsets_timestamps_and_epoch():
    segs = build([[[(b"a", b"1", TS), (b"b", b"1", TS + 5), (b"a", b"2", TS + 7), (b"c", b"1", TS + 9)],
                   [(b"z", b"9", TS + 20)]]])
    out = compact(segs, TS, HOUR)
    hs = [h for _, h in iter_batches(out[0][2])]
    # [b, a2, c] are consecutive (1, 2, 3): one batch from offset 1, flagged, same first timestamp
    assert [(h.base_offset, h.last_offset_delta) for h in hs] == [(1, 2), (4, 0)]
    assert hs[0].attributes & ATTR_COMPACTED and hs[0].first_timestamp == TS
    assert [(r.offset, r.timestamp, r.value) for r in records(out)][:3] == [
        (1, TS + 5, b"1"), (2, TS + 7, b"2"), (3, TS + 9, b"1")]
    check_layout(out)


def test_a_batch_after_a_gap_is_flagged_but_unchanged_batches_keep_their_bytes():
    segs = build([[[(b"a", b"1", TS)], [(b"b", b"1", TS)], [(b"a", b"2", TS)], [(b"b", b"2", TS)]]])
    out = compact(segs, TS, HOUR)
    hs = [h for _, h in iter_batches(out[0][2])]
    assert [h.base_offset for h in hs] == [2, 3]
    assert hs[0].attributes & ATTR_COMPACTED  # offsets 0..1 removed before it
    assert out[0][2].endswith(segs[0][2][-len(out[0][2]) // 2:])  # the last batch kept as is


def test_segment_last_record_is_kept_and_pins_its_key_tombstone():
    old = TS - 2 * HOUR
    segs = build([[[(b"k", b"old", old)]], [[(b"k", b"", old)], [(b"x", b"1", old)]]])
    out = compact(segs, TS, HOUR)
    recs = records(out)
    # k=old ends segment 0, so it stays; its tombstone must stay too or k would come back
    assert [(r.offset, r.value) for r in recs] == [(0, b"old"), (1, b""), (2, b"1")]
    assert latest_by_key(recs)[b"k"].value == b""


def test_compressed_batches_are_recompressed():
    segs = build([[[(b"a", b"1", TS), (b"a", b"2", TS), (b"b", b"3", TS)]]], Compression.Gzip)
    out = compact(segs, TS, HOUR)
    (h,) = [h for _, h in iter_batches(out[0][2])]
    assert h.compression == Compression.Gzip
    assert [(r.offset, r.value) for r in records(out)] == [(1, b"2"), (2, b"3")]


def test_compaction_is_idempotent():
    segs = build([[[(b"a", b"1", TS), (b"b", b"1", TS)], [(b"a", b"2", TS)]], [[(b"b", b"", TS)],
                                                                               [(None, b"n", TS)]]])
    once = compact(segs, TS, HOUR)
    assert compact(once, TS, HOUR) == once


record = st.tuples(st.sampled_from([None, b"a", b"b", b"c", b"d"]), st.sampled_from([b"", b"v", b"w"]),
                   st.sampled_from([TS - 2 * HOUR, TS - HOUR // 2, 0]))
batches = st.lists(st.lists(record, min_size=1, max_size=4), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(st.lists(batches, min_size=1, max_size=4), st.sampled_from([0, HOUR]))
def test_property_latest_per_key_is_kept_minus_expired_tombstones(segments, retention):
    segs = build(segments)
    out = compact(segs, TS, retention)
    check_layout(out)
    before, after = records(segs), records(out)
    by_offset = {r.offset: r for r in before}
    assert all(by_offset[r.offset] == r for r in after)  # nothing altered: offset, ts, key, value
    assert [r for r in before if r.key is None] == [r for r in after if r.key is None]
    old, new = latest_by_key(before), latest_by_key(after)
    horizon = TS - retention
    for key, r in old.items():
        expired = is_tombstone(r) and 0 < r.timestamp <= horizon
        if expired:
            assert key not in new or new[key] == r  # deleted either way
        else:
            assert new[key] == r
    assert compact(out, TS, retention) == out


def test_headers_survive_a_rewrite_and_markers_are_kept_whole():
    """Records with headers keep them when their batch is split; a stream's control batch
    (a marker) is kept whole and its key supersedes nothing; the bits stay apart."""
    import struct

    from fluvial.protocol.markers import ATTR_CONTROL, MARKER_KEY, MarkerKind, encode_marker
    from fluvial.protocol.record_fast import decode_fetched_batches
    from fluvial.protocol.record_headers import ATTR_HEADERS, encode_headers_batch

    def at(batch: bytes, base: int) -> bytes:
        return struct.pack(">q", base) + batch[8:]  # the base offset lies outside the CRC

    with_headers = at(encode_headers_batch(
        [(b"a", b"1", (("h", b"x"),)), (b"b", b"1", (("h", b"y"),)), (b"a", b"2", (("h", b"z"),))],
        first_timestamp=TS, timestamp_deltas=[0, 1, 2]), 0)
    marker = at(encode_marker(MarkerKind.EOS, "s1", first_timestamp=TS + 3), 3)
    user = at(encode_batch([ProducerRecord(b"3", MARKER_KEY), ProducerRecord(b"9", b"z")],
                           first_timestamp=TS + 4), 4)
    segments = [(0, 6, with_headers + marker + user)]
    [(_, _, data)] = compact(segments, now_ms=TS + HOUR, retention_ms=HOUR)
    check_layout([(0, 6, data)])
    rows, _, _ = decode_fetched_batches(data, 0, len(data), 0, control=True)
    by_offset = {r[1]: r for r in rows}
    assert sorted(by_offset) == [1, 2, 3, 4, 5]  # a=1 superseded; the marker and key 3 kept
    assert by_offset[1][5] == (("h", b"y"),) and by_offset[2][5] == (("h", b"z"),)
    assert len(by_offset[3]) == 7 and by_offset[3][2] == MARKER_KEY  # still a control record
    attrs = [h.attributes for _, h in iter_batches(data)]
    assert attrs[0] & ATTR_HEADERS and attrs[0] & ATTR_COMPACTED and not attrs[0] & ATTR_CONTROL
    assert attrs[1] & ATTR_CONTROL and not attrs[1] & ATTR_COMPACTED
    assert ATTR_COMPACTED not in (ATTR_HEADERS, ATTR_CONTROL)
