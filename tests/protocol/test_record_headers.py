"""Record headers in fluvial's record encoding (fluvial.protocol.record_headers): golden bytes,
round trips, hostile input, and the strip an official client gets."""

from __future__ import annotations

import struct

import pytest

from fluvial.protocol.batch import check_batch, stamp_producer
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record import Compression, decode_record_set, encode_batch, records_section
from fluvial.protocol.record_fast import decode_fetched_batches
from fluvial.protocol.record_headers import (
    ATTR_HEADERS, decode_header_records, encode_header_records, encode_headers_batch,
    has_headers, normalize_headers, strip_headers, strip_record_set,
)


def test_golden_bytes_of_a_record_with_one_header():
    section, n = encode_header_records([(b"k", b"v", (("h", b"xy"),))])
    body = b"".join([
        b"\x00",          # attributes
        b"\x00",          # timestamp delta 0
        b"\x00",          # offset delta 0
        b"\x01\x02k",     # key tag 1, key length 1 (ZigZag 2), "k"
        b"\x02v",         # value length 1, "v"
        b"\x02",          # header count 1
        b"\x02h",         # header key length 1, "h"
        b"\x04xy",        # header value length 2, "xy"
    ])
    assert n == 1
    assert section == struct.pack(">i", 1) + bytes([len(body) * 2]) + body


def _decode(batch: bytes):
    h = check_batch(batch)
    data, p, e, count = records_section(batch, 0, h)
    return decode_header_records(data, p, e, count, h.base_offset, h.first_timestamp)


RECORDS = [(None, b"a", ()), (b"key", b"b" * 300, (("x", b"1"), ("y", b""))),
           (b"", b"", (("\u00e9t\u00e9", b"\x00\xff"),))]


@pytest.mark.parametrize("codec", list(Compression))
def test_round_trip_and_strip_for_every_codec(codec):
    batch = encode_headers_batch(RECORDS, first_timestamp=1000, compression=codec)
    h = check_batch(batch)
    assert h.attributes == codec | ATTR_HEADERS
    got = _decode(batch)
    assert [(r.key, r.value, r.headers) for r in got] == RECORDS
    assert [r.offset for r in got] == [0, 1, 2]
    stripped = strip_headers(batch)
    sh = check_batch(stripped)  # a valid CRC
    assert sh.attributes == codec and not has_headers(stripped)
    plain = decode_record_set(stripped)  # the strict header-count-0 decoder reads it
    assert [(r.key, r.value) for r in plain] == [(k, v) for k, v, _ in RECORDS]


def test_strip_keeps_offsets_epochs_timestamps_and_producer_fields():
    batch = bytearray(stamp_producer(
        encode_headers_batch(RECORDS, first_timestamp=5000, timestamp_deltas=[0, 3, 7]), 9, 1, 4))
    struct.pack_into(">qi", batch, 0, 40, len(batch) - 12)
    struct.pack_into(">i", batch, 12, 6)  # leader epoch, outside the CRC
    stripped = strip_headers(bytes(batch))
    a, b = check_batch(bytes(batch)), check_batch(stripped)
    assert (b.base_offset, b.partition_leader_epoch, b.first_timestamp, b.max_time_stamp) == (
        40, 6, 5000, 5007)
    assert (b.producer_id, b.producer_epoch, b.first_sequence) == (9, 1, 4)
    assert a.last_offset_delta == b.last_offset_delta
    assert [r.timestamp for r in decode_record_set(stripped)] == [5000, 5003, 5007]


@pytest.mark.parametrize("codec", [Compression.None_, Compression.Gzip])
def test_a_headers_batch_encoded_with_its_producer_is_the_stamped_batch(codec):
    args = dict(first_timestamp=5000, compression=codec, timestamp_deltas=[0, 3, 7])
    assert (encode_headers_batch(RECORDS, producer=(9, 1, 4), **args)
            == stamp_producer(encode_headers_batch(RECORDS, **args), 9, 1, 4))


def test_a_record_set_without_headers_passes_untouched():
    plain = encode_batch([b"a"]) + encode_batch([b"b"])
    assert strip_record_set(plain) is plain
    mixed = plain + encode_headers_batch(RECORDS, first_timestamp=1) + encode_batch([b"c"])
    out = strip_record_set(mixed)
    assert out.startswith(plain)  # unmarked batches are copied as they are
    assert [r.value for r in decode_record_set(out)] == [b"a", b"b", b"a", b"b" * 300, b"", b"c"]


def test_the_consumers_fast_decoder_gives_headers_as_a_sixth_item():
    buf = encode_batch([b"a"]) + encode_headers_batch(RECORDS, first_timestamp=1000)
    recs, pos, nxt = decode_fetched_batches(buf, 0, len(buf), 3)
    assert pos == len(buf)
    assert recs[0][:4] == (3, 0, None, b"a") and len(recs[0]) == 5
    assert [r[5] for r in recs[1:]] == [(), (("x", b"1"), ("y", b"")), (("\u00e9t\u00e9", b"\x00\xff"),)]


def test_hostile_headers_are_decode_errors():
    section, _ = encode_header_records([(None, b"v", (("k", b"val"),))])
    for cut in range(5, len(section)):
        with pytest.raises(DecodeError):
            decode_header_records(section[:cut], 4, cut, 1, 0, 0)
    huge = bytearray(section)
    huge[-7] = 0x7E  # the header count (1 -> 63): more headers than bytes
    with pytest.raises(DecodeError):
        decode_header_records(bytes(huge), 4, len(huge), 1, 0, 0)


def test_normalize_headers():
    assert normalize_headers({"a": "b", "c": b"d"}) == (("a", b"b"), ("c", b"d"))
    assert normalize_headers([("a", bytearray(b"x"))]) == (("a", b"x"),)
    assert normalize_headers(None) == ()
    with pytest.raises(TypeError):
        normalize_headers({1: b"x"})
    with pytest.raises(TypeError):
        normalize_headers({"a": 3})
