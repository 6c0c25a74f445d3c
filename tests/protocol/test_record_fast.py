"""The fast paths of the wire format (``record_fast``'s encoder and decoder, the StreamFetch
parser), held against their general twins (``record``, ``StreamFetchResponse``'s decoder)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.client.types import Record
from fluvial.errors import Error, ErrorCode
from fluvial.protocol.api import decode_response, encode_response
from fluvial.protocol.batch import read_header, set_base_offset, stamp_producer
from fluvial.protocol.codec import DecodeError, EncodeError
from fluvial.protocol.record import (
    Compression, decode_batch, decode_record_set as reference_decode, encode_batch,
)
from fluvial.protocol.record_fast import (
    decode_fetched_batches, encode_producer_batch, scan_record_set,
)
from fluvial.protocol.spu_api import (
    FetchablePartitionResponse, StreamFetchResponse, parse_stream_fetch_response,
)


def decode_record_set(buf, pos, end, partition, min_offset=0, limit=None, **kw):
    """``decode_fetched_batches`` into the client's ``Record``: (records, next_offset)."""
    records, _, next_offset = decode_fetched_batches(buf, pos, end, partition, min_offset, limit,
                                                     row=Record, **kw)
    return records, next_offset


def with_base(batch: bytes, base: int) -> bytes:
    b = bytearray(batch)
    set_base_offset(b, 0, base)
    return bytes(b)


def record_set(batches_of_records, codec=Compression.None_, ts=1_700_000_000_000):
    out, base = [], 0
    for recs in batches_of_records:
        out.append(with_base(encode_batch(recs, first_timestamp=ts, compression=codec), base))
        base += len(recs)
    return b"".join(out)


def expected(data: bytes, partition: int):
    return [Record((partition, r.offset, r.key, r.value, r.timestamp)) for r in reference_decode(data)]


def frame_payload(resp: StreamFetchResponse, version: int) -> bytes:
    return encode_response(resp, 77, version)[4:]  # drop the size prefix, keep the correlation id


record = st.tuples(st.one_of(st.none(), st.binary(max_size=12)), st.binary(max_size=60))


@st.composite
def uniform_batch(draw):
    """Records of one shape (what the fast paths are for): equal value lengths, keys all absent
    or all of one length."""
    n = draw(st.integers(1, 300))
    vlen = draw(st.integers(0, 40))
    klen = draw(st.one_of(st.none(), st.integers(0, 12)))
    seed = draw(st.integers(0, 255))
    return [(None if klen is None else bytes([(seed + i) % 7]) * klen, bytes([(seed + i) % 256]) * vlen)
            for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.one_of(st.lists(record, min_size=1, max_size=40), uniform_batch()),
                        min_size=1, max_size=4),
       codec=st.sampled_from(list(Compression)), ts=st.integers(0, 2**41),
       version=st.sampled_from([10, 11, 24]))
def test_fast_and_general_paths_agree_on_the_same_bytes(batches, codec, ts, version):
    """Every fast path against its general twin: the producer's encoder against
    ``encode_batch`` (byte for byte), the consumer's decoder against ``decode_record_set`` over
    the record set they made, and the StreamFetch parser against the generic response decoder
    over a response carrying it."""
    parts, base = [], 0
    for recs in batches:
        keys = [k for k, _ in recs]
        values = [v for _, v in recs]
        general = encode_batch(recs, first_timestamp=ts, compression=codec)
        no_keys = None if all(k is None for k in keys) else keys
        assert encode_producer_batch(values, no_keys, compression=codec, first_timestamp=ts) == general
        parts.append(with_base(general, base))
        base += len(recs)
    data = b"".join(parts)

    got, after = decode_record_set(data, 0, len(data), 3)
    assert got == expected(data, 3)
    assert after == base

    resp = StreamFetchResponse("topic", 5, FetchablePartitionResponse(3, Error(), base, 1, 0, None, data))
    payload = frame_payload(resp, version)
    chunk = parse_stream_fetch_response(payload, version)
    _, twin = decode_response(payload, StreamFetchResponse, version)
    assert (chunk.stream_id, chunk.error, chunk.high_watermark, chunk.next_filter_offset) == (
        twin.stream_id, twin.partition.error_code, twin.partition.high_watermark,
        twin.partition.next_filter_offset)
    assert payload[chunk.records_pos:chunk.records_end] == twin.partition.records


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9000), vlen=st.integers(0, 200), klen=st.one_of(st.none(), st.integers(0, 30)),
       varying_ts=st.booleans())
def test_uniform_batches_take_the_fast_path_and_decode_exactly(n, vlen, klen, varying_ts):
    values = [bytes([i % 256]) * vlen for i in range(n)]
    keys = None if klen is None else [bytes([i % 5]) * klen for i in range(n)]
    deltas = [i % 60 for i in range(n)] if varying_ts else None
    data = with_base(encode_producer_batch(values, keys, first_timestamp=10_000, deltas=deltas), 40)
    got, after = decode_record_set(data, 0, len(data), 0)
    assert got == expected(data, 0)
    assert after == 40 + n
    assert all(type(r) is Record for r in got)


@settings(max_examples=60, deadline=None)
@given(batch=st.one_of(st.lists(record, min_size=1, max_size=30), uniform_batch()),
       varying_ts=st.booleans(), codec=st.sampled_from([Compression.None_, Compression.Gzip]),
       producer=st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**15 - 1),
                          st.integers(0, 2**31 - 1)))
def test_a_batch_encoded_with_its_producer_is_the_stamped_batch(batch, varying_ts, codec, producer):
    """An idempotent producer's batch is encoded with its id, epoch and sequence in one pass
    (fast path and fallback alike): the same bytes as stamping the plain batch afterwards."""
    values = [v for _, v in batch]
    keys = [k for k, _ in batch] if any(k is not None for k, _ in batch) else None
    deltas = [i % 7 for i in range(len(values))] if varying_ts else None
    args = dict(compression=codec, first_timestamp=1_700_000_000_000, deltas=deltas)
    data = encode_producer_batch(values, keys, producer=producer, **args)
    assert data == stamp_producer(encode_producer_batch(values, keys, **args), *producer)
    h = read_header(data)
    assert (h.producer_id, h.producer_epoch, h.first_sequence) == producer


def test_a_batch_with_one_odd_record_falls_back_and_still_decodes():
    values = [b"x" * 10] * 100
    values[70] = b"longer value"
    data = encode_batch(values, first_timestamp=5)
    got, _ = decode_record_set(data, 0, len(data), 0)
    assert [r.value for r in got] == values


def test_no_timestamp_gives_minus_one():
    data = encode_batch([b"v"] * 30, first_timestamp=0)
    got, _ = decode_record_set(data, 0, len(data), 0)
    assert {r.timestamp for r in got} == {-1}


def test_min_offset_and_limit_cut_records_and_skip_whole_batches():
    data = record_set([[b"a", b"b", b"c"], [b"d", b"e"], [b"f"]])
    got, after = decode_record_set(data, 0, len(data), 0, min_offset=1, limit=5)
    assert [(r.offset, r.value) for r in got] == [(1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert after == 6
    got, after = decode_record_set(data, 0, len(data), 0, min_offset=3)
    assert [r.value for r in got] == [b"d", b"e", b"f"] and after == 6
    got, after = decode_record_set(data, 0, len(data), 0, min_offset=6)
    assert got == [] and after == 6


def test_a_batch_cut_short_at_the_end_is_left_for_the_next_response():
    data = record_set([[b"a", b"b"], [b"c"] * 3])
    first = len(record_set([[b"a", b"b"]]))
    got, after = decode_record_set(data, 0, len(data) - 5, 0)
    assert [r.value for r in got] == [b"a", b"b"] and after == 2
    got, after = decode_record_set(data, 0, first - 1, 0)
    assert got == [] and after is None


def test_corruption_is_a_decode_error():
    data = bytearray(encode_batch([b"payload"] * 20, first_timestamp=9))
    data[-5] ^= 0x40
    with pytest.raises(DecodeError, match="CRC"):
        decode_record_set(bytes(data), 0, len(data), 0)
    # with the CRC switched off, the bad record bytes are still caught
    bad = bytearray(encode_batch([b"v"] * 20, first_timestamp=9))
    bad[-3] = 0x08  # the last record's value length: 4 instead of 1
    with pytest.raises(DecodeError):
        decode_record_set(bytes(bad), 0, len(bad), 0, verify_crc=False)


@settings(max_examples=100, deadline=None)
@given(seed_batch=st.lists(st.binary(max_size=20), min_size=20, max_size=60), flip=st.integers(0, 10_000),
       bit=st.integers(0, 7))
def test_random_bit_flips_raise_only_decode_errors(seed_batch, flip, bit):
    data = bytearray(encode_batch(seed_batch, first_timestamp=1))
    i = 61 + flip % (len(data) - 61)  # inside the records section
    data[i] ^= 1 << bit
    try:
        got, _ = decode_record_set(bytes(data), 0, len(data), 0, verify_crc=False)
    except DecodeError:
        return
    assert len(got) == len(seed_batch)


# --------------------------------------------------------------------------- stream fetch


@pytest.mark.parametrize("version", [10, 11, 24])
def test_parse_stream_fetch_finds_the_record_set_in_place(version):
    records = record_set([[b"a", b"b"]])
    resp = StreamFetchResponse("topic", 3, FetchablePartitionResponse(0, Error(), 9, 0, 0, None, records))
    payload = frame_payload(resp, version)
    chunk = parse_stream_fetch_response(payload, version)
    assert (chunk.stream_id, chunk.error.ok, chunk.high_watermark) == (3, True, 9)
    assert chunk.records is payload
    assert payload[chunk.records_pos:chunk.records_end] == records


def test_parse_stream_fetch_with_an_error_uses_the_generic_decoder():
    err = Error(ErrorCode.OffsetEvicted, (3, 10))
    resp = StreamFetchResponse("t", 1, FetchablePartitionResponse(0, err, 0, 0, 0, None, b""))
    chunk = parse_stream_fetch_response(frame_payload(resp, 24), 24)
    assert chunk.error == err and chunk.records_end == chunk.records_pos


def test_parse_stream_fetch_rejects_a_truncated_response():
    resp = StreamFetchResponse("t", 1, FetchablePartitionResponse(0, Error(), 0, 0, 0, None, b"abcd"))
    payload = frame_payload(resp, 24)
    with pytest.raises(DecodeError):
        parse_stream_fetch_response(payload[:-2], 24)
    with pytest.raises(DecodeError):
        parse_stream_fetch_response(payload[:9], 24)
    assert struct.unpack(">i", payload[:4])[0] == 77


def test_scan_finds_the_next_offset_and_whether_records_are_wanted():
    data = record_set([[b"a", b"b", b"c"], [b"d", b"e"], [b"f"]])
    assert scan_record_set(data, 0, len(data)) == (6, True)
    assert scan_record_set(data, 0, len(data), min_offset=6) == (6, False)
    assert scan_record_set(data, 0, len(data), min_offset=5) == (6, True)
    assert scan_record_set(data, 0, len(data), limit=0) == (6, False)
    assert scan_record_set(data, 0, len(data) - 3) == (5, True)  # the last batch is cut off
    assert scan_record_set(data, 0, 10) == (None, False)
    bad = bytearray(data)
    struct.pack_into(">i", bad, 8, 3)  # a batch_length shorter than a header
    assert scan_record_set(bytes(bad), 0, len(bad)) == (None, True)
    with pytest.raises(DecodeError):
        decode_record_set(bytes(bad), 0, len(bad), 0)


def test_decode_batches_stops_after_max_records_and_says_where():
    data = record_set([[b"a", b"b", b"c"], [b"d", b"e"], [b"f"]])
    first, pos, after = decode_fetched_batches(data, 0, len(data), 0, max_records=2, row=Record)
    assert [r.value for r in first] == [b"a", b"b", b"c"] and after == 3
    rest, end, after = decode_fetched_batches(data, pos, len(data), 0, max_records=100, row=Record)
    assert [r.value for r in rest] == [b"d", b"e", b"f"] and (end, after) == (len(data), 6)


# ------------------------------------------------------------------------------ encoding

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9000), value_len=st.integers(0, 300), key_len=st.one_of(st.none(), st.integers(0, 40)),
       codec=st.sampled_from([Compression.None_, Compression.Lz4]))
def test_uniform_batches_of_any_length_encode_exactly(n, value_len, key_len, codec):
    values = [bytes([i % 251]) * value_len for i in range(n)]
    keys = None if key_len is None else [bytes([i % 7]) * key_len for i in range(n)]
    recs = values if keys is None else list(zip(keys, values))
    expected = encode_batch(recs, first_timestamp=5, compression=codec)
    got = encode_producer_batch(values, keys, compression=codec, first_timestamp=5)
    assert got == expected
    assert [r.value for r in decode_batch(got).records] == values


def test_timestamp_deltas_are_encoded():
    got = encode_producer_batch([b"a"] * 20, first_timestamp=1000, deltas=[0] * 10 + [7] * 10)
    decoded = decode_batch(got)
    assert [r.timestamp for r in decoded.records] == [1000] * 10 + [1007] * 10
    assert decoded.header.max_time_stamp == 1007


def test_encoding_errors():
    with pytest.raises(EncodeError):
        encode_producer_batch([], first_timestamp=0)
    with pytest.raises(EncodeError):
        encode_producer_batch([1] * 20, first_timestamp=0)
    with pytest.raises(EncodeError):
        encode_producer_batch([b"x"], compression=7, first_timestamp=0)
