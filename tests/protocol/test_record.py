"""Record batches (fluvial.protocol.record): golden bytes, three-way decoding, compression, fuzz."""

from __future__ import annotations

import gzip
import random
import struct
import time

import cramjam
import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.protocol.batch import CRC_START, HEADER_BYTES, BatchError, check_batch
from fluvial.protocol.codec import DecodeError, EncodeError, encode_varint
from fluvial.protocol.record import (
    Compression, ConsumerRecord, ProducerRecord, compress, decode_batch, decode_batches,
    decode_record_set, decode_records, decompress, encode_batch, encode_records,
)

T = 1_700_000_000_000  # 00 00 01 8b cf e5 68 00

# records.md §10.1-§10.3, spelled out field by field.
BATCH_A = bytes.fromhex(
    "0000000000000000"  # base_offset 0
    "0000003d"          # batch_length 61
    "ffffffff"          # partition_leader_epoch -1
    "02"                # magic
    "af7dd96c"          # crc
    "0000"              # attributes
    "00000000"          # last_offset_delta 0
    "0000018bcfe56800"  # first_timestamp T
    "0000018bcfe56800"  # max_time_stamp T
    "ffffffffffffffff"  # producer_id -1
    "ffff"              # producer_epoch -1
    "ffffffff"          # first_sequence -1
    "00000001"          # record count 1
    "16" "00" "00" "00" "00" "0a" "68656c6c6f" "00"  # len 11, attrs, ts, off, no key, "hello", 0 hdrs
)
BATCH_B = bytes.fromhex(
    "0000000000000000" "0000003f" "ffffffff" "02" "81bed24d" "0000" "00000000"
    "0000018bcfe56800" "0000018bcfe56800" "ffffffffffffffff" "ffff" "ffffffff"
    "00000001"
    "1a" "00" "00" "00" "01" "02" "6b" "0a" "68656c6c6f" "00"  # key Some(len 1, "k")
)
BATCH_C = bytes.fromhex(
    "0000000000000001"  # base_offset 1 (the client's n - 1)
    "00000043" "ffffffff" "02" "40726740"
    "0000" "00000001"   # attributes, last_offset_delta 1
    "0000018bcfe56800"  # first_timestamp T
    "0000018bcfe56805"  # max_time_stamp T + 5
    "ffffffffffffffff" "ffff" "ffffffff"
    "00000002"
    "0e" "00" "00" "00" "00" "02" "61" "00"              # no key, "a", +0 ms, offset delta 0
    "12" "00" "0a" "02" "01" "02" "6b" "02" "62" "00"    # key "k", "b", +5 ms, offset delta 1
)
# The batch inside Fluvio's crates/fluvio-spu-schema/tests/produce_request.bin: one empty record,
# timestamps unset (-1).
BATCH_EMPTY_VALUE = bytes.fromhex(
    "0000000000000000" "00000038" "ffffffff" "02" "0c48500e" "0000" "00000000"
    "ffffffffffffffff"  # first_timestamp -1
    "ffffffffffffffff"  # max_time_stamp -1
    "ffffffffffffffff" "ffff" "ffffffff"
    "00000001"
    "0c" "00" "00" "00" "00" "00" "00"  # len 6, attrs, ts 0, offset 0, no key, empty value, 0 hdrs
)
GOLDEN = {
    "A": (BATCH_A, 0, [ProducerRecord(b"hello")]),
    "B": (BATCH_B, 0, [ProducerRecord(b"hello", b"k")]),
    "C": (BATCH_C, 1, [ProducerRecord(b"a"), ProducerRecord(b"b", b"k", 5)]),
}
CODECS = list(Compression)


def raw_batch(section: bytes, *, last_offset_delta: int, base_offset: int = 0,
              first_timestamp: int = T, attributes: int = 0, schema_id: bytes = b"") -> bytes:
    """A batch around an arbitrary (possibly malformed) records section, with a correct CRC."""
    tail = struct.pack(">hiqqqhi", attributes, last_offset_delta, first_timestamp, first_timestamp,
                       -1, -1, -1) + schema_id + section
    body = struct.pack(">ibI", -1, 2, crc32c(tail)) + tail
    return struct.pack(">qi", base_offset, len(body)) + body


def record_bytes(value: bytes, key: bytes | None = None, ts_delta: int = 0, offset_delta: int = 0,
                 *, headers: bytes = b"\x00", key_tag: bytes | None = None) -> bytes:
    """The §12 reference encoder for one record, with hooks for malformed variants."""
    body = b"\x00" + encode_varint(ts_delta) + encode_varint(offset_delta)
    if key_tag is not None:
        body += key_tag
    elif key is None:
        body += b"\x00"
    else:
        body += b"\x01" + encode_varint(len(key)) + key
    body += encode_varint(len(value)) + value + headers
    return encode_varint(len(body)) + body


def section(*records: bytes, count: int | None = None) -> bytes:
    return struct.pack(">i", len(records) if count is None else count) + b"".join(records)


# ------------------------------------------------------------------------------- golden bytes


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_batches_encode_byte_for_byte(name):
    data, base_offset, records = GOLDEN[name]
    assert encode_batch(records, base_offset=base_offset, first_timestamp=T) == data
    # the same batch from the fast-path shapes: (key, value) tuples and plain values
    tuples = [(r.key, r.value) for r in records]
    deltas = [r.timestamp_delta for r in records]
    assert encode_batch(tuples, base_offset=base_offset, first_timestamp=T,
                        timestamp_deltas=deltas) == data
    if all(r.key is None for r in records):
        assert encode_batch([r.value for r in records], base_offset=base_offset,
                            first_timestamp=T) == data


def test_golden_crcs_and_lengths():
    assert (len(BATCH_A), len(BATCH_B), len(BATCH_C)) == (73, 75, 79)
    assert [check_batch(b).crc for b in (BATCH_A, BATCH_B, BATCH_C)] == [0xAF7DD96C, 0x81BED24D,
                                                                         0x40726740]


def test_fluvio_crc_constant_from_the_encoder():
    # batch.rs test_encode_and_decode_batch_basic: value "test", ts 1555478494747, and
    # last_offset_delta left at -1; the CRC covers it, so patch it before recomputing.
    b = bytearray(encode_batch([b"test"], first_timestamp=1555478494747))
    struct.pack_into(">i", b, 23, -1)
    assert crc32c(bytes(b[CRC_START:])) == 1430948200


def test_python_send_string_record_has_a_present_empty_key():
    b = encode_batch([(b"", b"hello")], first_timestamp=T)
    assert b[HEADER_BYTES + 4:] == bytes.fromhex("18000000010" "00a68656c6c6f00")
    assert decode_batch(b).records == [ConsumerRecord(0, T, b"", b"hello")]


def test_fluvio_produce_request_batch():
    assert encode_batch([b""], first_timestamp=-1) == BATCH_EMPTY_VALUE
    assert decode_batch(BATCH_EMPTY_VALUE).records == [ConsumerRecord(0, -1, None, b"")]
    assert_three_ways(BATCH_EMPTY_VALUE)


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_batches_decode(name):
    data, base_offset, records = GOLDEN[name]
    batch = decode_batch(data)
    assert batch.size == len(data) and batch.header.base_offset == base_offset
    assert batch.records == [
        ConsumerRecord(base_offset + i, T + r.timestamp_delta, r.key, r.value)
        for i, r in enumerate(records)
    ]


def test_max_time_stamp_is_first_plus_the_last_delta():
    b = encode_batch([ProducerRecord(b"x", None, 9), ProducerRecord(b"y", None, 2)],
                     first_timestamp=T)
    h = check_batch(b)
    assert (h.first_timestamp, h.max_time_stamp) == (T, T + 2)
    assert [r.timestamp for r in decode_batch(b).records] == [T + 9, T + 2]


def test_first_timestamp_defaults_to_now_and_epoch_and_offset_are_written():
    before = time.time_ns() // 1_000_000
    b = encode_batch([b"v"], base_offset=41, partition_leader_epoch=3)
    after = time.time_ns() // 1_000_000
    h = check_batch(b)
    assert before <= h.first_timestamp <= after
    assert (h.base_offset, h.partition_leader_epoch, h.producer_id, h.producer_epoch,
            h.first_sequence, h.magic) == (41, 3, -1, -1, -1, 2)
    assert decode_batch(b).records[0].offset == 41


def test_timestamp_is_minus_one_without_a_first_timestamp():
    for first in (-1, 0):
        b = encode_batch([ProducerRecord(b"a", None, 5)], first_timestamp=first)
        assert decode_batch(b).records[0].timestamp == -1


def test_offsets_come_from_the_index_not_offset_delta():
    # records.md §8: offset_delta is not read; a batch with odd deltas still numbers 10, 11.
    sec = section(record_bytes(b"a", offset_delta=7), record_bytes(b"b", offset_delta=-3))
    b = raw_batch(sec, base_offset=10, last_offset_delta=1)
    assert [(r.offset, r.value) for r in decode_batch(b).records] == [(10, b"a"), (11, b"b")]


def test_schema_id_batches_decode():
    sec = section(record_bytes(b"test"))
    b = raw_batch(sec, last_offset_delta=0, attributes=0x10, schema_id=struct.pack(">I", 42))
    assert decode_batch(b).records == [ConsumerRecord(0, T, None, b"test")]


def test_large_values_keys_and_offsets_use_multi_byte_varints():
    recs = [ProducerRecord(b"v" * 20000, b"k" * 9000, 1 << 40),
            ProducerRecord(b"", None, -(1 << 35))]
    recs += [(None, b"%d" % i) for i in range(9000)]  # offset deltas past 8191: 3-byte varints
    b = encode_batch(recs, first_timestamp=T)
    got = decode_batch(b).records
    assert got[0] == ConsumerRecord(0, T + (1 << 40), b"k" * 9000, b"v" * 20000)
    assert got[1] == ConsumerRecord(1, T - (1 << 35), None, b"")
    assert got[-1] == ConsumerRecord(9001, T, None, b"8999")
    assert len(got) == 9002


def test_ten_byte_varints_accepted_eleven_rejected():
    def batch_with_ts_varint(ts_varint: bytes) -> bytes:
        body = b"\x00" + ts_varint + b"\x00" + b"\x00" + b"\x02a" + b"\x00"
        return raw_batch(section(encode_varint(len(body)) + body), last_offset_delta=0,
                         first_timestamp=1)

    for delta in (2**63 - 1, -(2**63), 2**40, -5):
        v = encode_varint(delta)
        assert len(v) <= 10
        assert decode_batch(batch_with_ts_varint(v)).records[0].timestamp == 1 + delta
    padded = bytes([0x8A, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])  # 5, in 10 bytes
    assert decode_batch(batch_with_ts_varint(padded)).records[0].timestamp == 6
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        decode_batch(batch_with_ts_varint(bytes([0x80] * 10 + [0x00])))


# ----------------------------------------------------------------------------- three ways


def assert_three_ways(data: bytes, **kwargs) -> None:
    """Whole; every strict prefix raises DecodeError; trailing bytes are left unread."""
    whole = decode_batch(data, **kwargs)
    assert whole.size == len(data)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_batch(data[:cut], **kwargs)
    padded = data + b"\x00\x00\x00\x01\xff"
    assert decode_batch(padded, **kwargs) == whole
    assert decode_batch(b"\x07" * 5 + padded, 5, **kwargs).records == whole.records
    assert decode_batch(bytearray(padded), **kwargs) == whole
    assert decode_batch(memoryview(padded), **kwargs) == whole


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_batches_three_ways(name):
    assert_three_ways(GOLDEN[name][0])


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: c.name)
def test_compressed_batches_three_ways(codec):
    recs = [ProducerRecord(b"value %d" % i, b"k%d" % i if i % 2 else None, i) for i in range(5)]
    assert_three_ways(encode_batch(recs, first_timestamp=T, compression=codec))


def test_record_set_three_ways():
    one = encode_batch([b"a", b"b"], first_timestamp=T)
    two = encode_batch([(b"k", b"c")], base_offset=2, first_timestamp=T, compression=Compression.Gzip)
    data = one + two
    expected = [ConsumerRecord(0, T, None, b"a"), ConsumerRecord(1, T, None, b"b"),
                ConsumerRecord(2, T, b"k", b"c")]
    assert decode_record_set(data) == expected
    assert [b.size for b in decode_batches(data)] == [len(one), len(two)]
    for cut in range(1, len(data)):
        if cut == len(one):
            assert decode_record_set(data[:cut]) == expected[:2]
            continue
        with pytest.raises(DecodeError):
            decode_record_set(data[:cut])
    assert decode_record_set(data + b"\x01\x02\x03", end=len(data)) == expected
    assert decode_record_set(b"xx" + data + b"yy", 2, 2 + len(data)) == expected
    assert decode_record_set(b"") == []
    with pytest.raises(DecodeError):
        decode_record_set(data + b"\x01\x02\x03")
    with pytest.raises(DecodeError, match="cut off by the end of the record set"):
        decode_record_set(data + b"\x01\x02\x03", end=len(data) - 1)
    with pytest.raises(ValueError, match="past the"):
        decode_record_set(data, end=len(data) + 1)


def test_decode_records_directly():
    sec = section(record_bytes(b"x"), record_bytes(b"y", b"k", 3, 1))
    assert decode_records(sec, 4, len(sec), 2, 100, T) == [
        ConsumerRecord(100, T, None, b"x"), ConsumerRecord(101, T + 3, b"k", b"y")]
    with pytest.raises(DecodeError, match="left after record 0"):
        decode_records(sec, 4, len(sec), 1, 100, T)
    with pytest.raises(DecodeError, match="negative record count"):
        decode_records(sec, 4, len(sec), -1, 0, T)
    with pytest.raises(DecodeError, match="cannot fit"):
        decode_records(sec, 4, len(sec), 3, 0, T)


# ----------------------------------------------------------------------- malformed records

MALFORMED = {
    "key tag 2": (section(record_bytes(b"v", key_tag=b"\x02")), "key tag 2"),
    "header count 1": (section(record_bytes(b"v", headers=b"\x02")), "headers are not supported"),
    "record longer than its fields": (
        section(encode_varint(9) + record_bytes(b"v")[1:] + b"\x00"), "the record's length says"),
    "record shorter than its fields": (
        section(encode_varint(5) + record_bytes(b"v")[1:]), "the record's length says"),
    "negative record length": (section(b"\x01" + record_bytes(b"v")[1:]), "negative record length"),
    "negative key length": (section(record_bytes(b"v", key_tag=b"\x01\x01")), "negative key length"),
    "negative value length": (section(b"\x0c\x00\x00\x00\x00\x03v\x00"), "negative value length"),
    "bytes after the last record": (section(record_bytes(b"v")) + b"\x00", "left after record 0"),
    "count disagrees with last_offset_delta": (section(record_bytes(b"v"), record_bytes(b"w")),
                                               "last_offset_delta 0"),
    "no record count": (b"\x00\x00", "no record count"),
    "record cut short": (section(record_bytes(b"value")[:-2]), "truncated"),
}


@pytest.mark.parametrize("name", MALFORMED)
@pytest.mark.parametrize("codec", [Compression.None_, Compression.Zstd], ids=lambda c: c.name)
def test_malformed_records_are_decode_errors(name, codec):
    sec, message = MALFORMED[name]
    b = raw_batch(compress(codec, sec), last_offset_delta=0, attributes=codec)
    with pytest.raises(DecodeError, match=message) as info:
        decode_batch(b)
    assert str(info.value).startswith("batch at 0: ")


# ------------------------------------------------------------------------------ compression

SIGNATURES = {
    Compression.Gzip: bytes.fromhex("1f8b08000000000000ff"),
    Compression.Snappy: bytes.fromhex("ff060000734e61507059"),
    Compression.Lz4: bytes.fromhex("04224d18"),
    Compression.Zstd: bytes.fromhex("28b52ffd"),
}


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: c.name)
def test_compressed_section_holds_the_count_and_has_the_client_signature(codec):
    recs = [ProducerRecord(b"hello"), ProducerRecord(b"b", b"k", 5)]
    b = encode_batch(recs, first_timestamp=T, compression=codec)
    h = check_batch(b)
    assert h.compression == codec and h.attributes == codec
    blob = b[HEADER_BYTES:]
    assert blob.startswith(SIGNATURES[codec])
    plain = encode_batch(recs, first_timestamp=T)
    assert bytes(getattr(cramjam, codec.name.lower()).decompress(blob)) == plain[HEADER_BYTES:]
    assert decompress(codec, blob) == plain[HEADER_BYTES:]
    assert decode_batch(b).records == decode_batch(plain).records


def client_style(codec: Compression, data: bytes) -> bytes:
    """Compressed the way Fluvio's Rust client writes it (records.md §6.2), as near as Python can."""
    if codec == Compression.Gzip:
        return gzip.compress(data, mtime=0)
    if codec == Compression.Lz4:
        c = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
    elif codec == Compression.Zstd:
        c = cramjam.zstd.Compressor()  # a streaming frame: no content size, as the client writes
    else:
        c = cramjam.snappy.Compressor()
    c.compress(data)
    return bytes(c.finish())


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: c.name)
def test_other_encoders_frames_decode(codec):
    recs = [ProducerRecord(b"x" * 150_000, b"big"), ProducerRecord(b"small")]
    plain = encode_batch(recs, first_timestamp=T)
    blob = client_style(codec, plain[HEADER_BYTES:])
    if codec == Compression.Zstd:
        assert blob[4] & 0xC0 == 0  # frame header: no content size field
    b = raw_batch(blob, last_offset_delta=1, attributes=codec)
    assert decode_batch(b).records == decode_batch(plain).records


@pytest.mark.parametrize("code", [5, 6, 7])
def test_unknown_compression_codes(code):
    sec = section(record_bytes(b"v"))
    with pytest.raises(DecodeError, match="unknown compression format: %d" % code):
        decode_batch(raw_batch(sec, last_offset_delta=0, attributes=code))
    with pytest.raises(EncodeError, match="unknown compression"):
        encode_batch([b"v"], compression=code)


def test_unused_attribute_bits_are_ignored():
    sec = section(record_bytes(b"v"))
    b = raw_batch(compress(Compression.Lz4, sec), last_offset_delta=0, attributes=0x0100 | 0x08 | 3)
    assert decode_batch(b).records == [ConsumerRecord(0, T, None, b"v")]


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: c.name)
def test_corrupt_compressed_sections_are_decode_errors(codec):
    b = bytearray(encode_batch([b"payload " * 50], first_timestamp=T, compression=codec))
    for cut in (HEADER_BYTES, HEADER_BYTES + 3, len(b) - 2):
        trunc = raw_batch(bytes(b[HEADER_BYTES:cut]), last_offset_delta=0, attributes=codec)
        with pytest.raises(DecodeError):
            decode_batch(trunc)
    b[HEADER_BYTES + 1] ^= 0xFF  # inside the codec's magic or header
    with pytest.raises(DecodeError):
        decode_batch(b, verify_crc=False)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CODECS[1:]), st.binary(max_size=80), st.data())
def test_garbage_after_a_codec_signature_is_a_decode_error(codec, garbage, data):
    blob = SIGNATURES[codec] + garbage
    valid = compress(codec, b"\x00\x00\x00\x01" + bytes(500) + b"abc" * 100)
    flipped = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        flipped[data.draw(st.integers(0, len(valid) - 1))] = data.draw(st.integers(0, 255))
    for candidate in (blob, bytes(flipped), valid[: data.draw(st.integers(0, len(valid) - 1))]):
        try:
            decompress(codec, candidate, 1 << 16)
        except DecodeError:
            pass


BOMB_BYTES = 10_000_000
CAP = 1_000_000


@pytest.fixture(scope="module")
def bomb_section() -> bytes:
    return encode_records([bytes(BOMB_BYTES)])[0]


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: c.name)
def test_decompression_bomb_is_refused(codec, bomb_section):
    b = raw_batch(compress(codec, bomb_section), last_offset_delta=0, attributes=codec)
    assert len(b) < CAP
    with pytest.raises(DecodeError, match="more than 1000000 bytes"):
        decode_batch(b, max_uncompressed_bytes=CAP)
    with pytest.raises(DecodeError):
        decode_record_set(b + b, max_uncompressed_bytes=CAP)
    n = len(bomb_section)
    assert len(decompress(codec, b[HEADER_BYTES:], n)) == n  # exactly at the cap is allowed
    with pytest.raises(DecodeError, match="more than"):
        decompress(codec, b[HEADER_BYTES:], n - 1)
    assert decode_batch(b).records[0].value == bytes(BOMB_BYTES)  # the 64 MiB default


def test_uncompressed_section_over_the_cap_is_refused():
    b = encode_batch([bytes(2000)], first_timestamp=T)
    with pytest.raises(DecodeError, match="exceeds 1000"):
        decode_batch(b, max_uncompressed_bytes=1000)


# ---------------------------------------------------------------------------- encode errors


def test_encode_rejects_what_it_cannot_encode():
    with pytest.raises(EncodeError, match="at least one record"):
        encode_batch([])
    with pytest.raises(EncodeError, match="record 1"):
        encode_batch([b"ok", 42])
    with pytest.raises(EncodeError):
        encode_batch([(None, "text")])
    with pytest.raises(EncodeError):
        encode_batch([ProducerRecord(b"v", "str key")])
    with pytest.raises(EncodeError, match="timestamp deltas"):
        encode_batch([b"a", b"b"], timestamp_deltas=[1, 2, 3])
    with pytest.raises(EncodeError):
        encode_batch([b"a", b"b"], timestamp_deltas=[1])
    with pytest.raises(EncodeError):
        encode_batch([b"a"], first_timestamp=1 << 63)


def test_encode_accepts_bytes_like_values_and_iterables():
    expected = encode_batch([b"ab", b"cd"], first_timestamp=T)
    assert encode_batch([bytearray(b"ab"), memoryview(b"cd")], first_timestamp=T) == expected
    assert encode_batch((v for v in [b"ab", b"cd"]), first_timestamp=T) == expected


# --------------------------------------------------------------------------------- property

keys = st.none() | st.binary(max_size=40)
records_st = st.lists(
    st.builds(ProducerRecord, st.binary(max_size=300), keys, st.integers(-(1 << 40), 1 << 40)),
    min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(records_st, st.sampled_from(CODECS), st.integers(-1, 1 << 42), st.integers(0, 1 << 60))
def test_round_trip(records, codec, first_timestamp, base_offset):
    b = encode_batch(records, base_offset=base_offset, first_timestamp=first_timestamp,
                     compression=codec)
    h = check_batch(b)
    assert (h.compression, h.record_count, h.base_offset) == (codec, len(records), base_offset)
    assert h.max_time_stamp == first_timestamp + records[-1].timestamp_delta
    got = decode_batch(b)
    known = first_timestamp > 0
    assert got.records == [
        ConsumerRecord(base_offset + i, first_timestamp + r.timestamp_delta if known else -1,
                       r.key, r.value)
        for i, r in enumerate(records)
    ]
    assert all(type(r.value) is bytes and (r.key is None or type(r.key) is bytes)
               for r in got.records)
    # tuples and Records encode identically
    tuples = [(r.key, r.value) for r in records]
    assert encode_batch(tuples, base_offset=base_offset, first_timestamp=first_timestamp,
                        compression=codec,
                        timestamp_deltas=[r.timestamp_delta for r in records]) == b


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 8))
def test_random_bytes_raise_only_decode_errors(data, pos):
    for verify in (True, False):
        try:
            decode_batch(data, pos, verify_crc=verify)
        except DecodeError:
            pass
        try:
            decode_record_set(data, verify_crc=verify)
        except DecodeError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 4), st.integers(0, 3))
def test_random_records_sections_raise_only_decode_errors(sec, codec, lod):
    # a correct header and CRC around garbage: the record decoder itself must cope
    b = raw_batch(compress(codec, sec) if codec else sec, last_offset_delta=lod, attributes=codec)
    try:
        decode_batch(b, max_uncompressed_bytes=1 << 16)
    except DecodeError:
        pass


def valid_batches(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        recs = [ProducerRecord(rng.randbytes(rng.randint(0, 150)),
                       rng.choice([None, rng.randbytes(rng.randint(0, 10))]),
                       rng.randint(-100, 1 << 20))
                for _ in range(rng.randint(1, 6))]
        out.append(encode_batch(recs, first_timestamp=T, compression=CODECS[i % len(CODECS)]))
    return out


def test_bit_flips_in_the_crc_range_are_detected():
    rng = random.Random(1)
    for b in valid_batches(rng, 25):
        for _ in range(40):
            bad = bytearray(b)
            bit = rng.randrange(CRC_START * 8, len(b) * 8)
            bad[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(DecodeError):
                decode_batch(bad)


def test_bit_flips_and_truncations_without_crc_raise_only_decode_errors():
    rng = random.Random(2)
    for b in valid_batches(rng, 40):
        for _ in range(60):
            bad = bytearray(b)
            for _ in range(rng.randint(1, 3)):
                bit = rng.randrange(len(b) * 8)
                bad[bit // 8] ^= 1 << (bit % 8)
            if rng.random() < 0.3:
                bad = bad[: rng.randrange(len(bad))]
            try:
                decode_batch(bytes(bad), verify_crc=False, max_uncompressed_bytes=1 << 16)
            except DecodeError:
                pass
            try:
                check_batch(bad)
            except BatchError:
                pass
