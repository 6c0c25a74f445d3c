"""Batch headers (fluvial.protocol.batch): golden CRCs, the three-way check, in-place stamping, fuzz.

The golden batches are built here field by field with struct, independently of the encoder in
fluvial.protocol.record, so that a layout mistake shared by both cannot pass unnoticed.
"""

from __future__ import annotations

import random
import struct

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from fluvial.protocol.batch import (
    BATCH_HEADER_SIZE, CRC_OFFSET, CRC_START, EPOCH_OFFSET, HEADER_BYTES, PREAMBLE_BYTES, BatchError,
    BatchHeader, check_batch, compute_crc, iter_batches, read_header, scan_valid_prefix,
    set_base_offset, set_leader_epoch,
)
from fluvial.protocol.codec import DecodeError

T = 1_700_000_000_000


def build_batch(records_section: bytes, *, base_offset: int = 0, last_offset_delta: int = 0,
                first_timestamp: int = T, max_time_stamp: int = T, attributes: int = 0,
                schema_id: int | None = None, epoch: int = -1, magic: int = 2) -> bytes:
    """A batch from its fields, one per line (records.md §4), CRC over attributes..end (§5)."""
    tail = struct.pack(">h", attributes)              # attributes
    tail += struct.pack(">i", last_offset_delta)      # last_offset_delta
    tail += struct.pack(">q", first_timestamp)        # first_timestamp
    tail += struct.pack(">q", max_time_stamp)         # max_time_stamp
    tail += struct.pack(">q", -1)                     # producer_id
    tail += struct.pack(">h", -1)                     # producer_epoch
    tail += struct.pack(">i", -1)                     # first_sequence
    if schema_id is not None:
        tail += struct.pack(">I", schema_id)          # schema_id (attributes & 0x10)
    tail += records_section
    body = struct.pack(">i", epoch)                   # partition_leader_epoch
    body += struct.pack(">b", magic)                  # magic
    body += struct.pack(">I", crc32c(tail))           # crc
    body += tail
    return struct.pack(">q", base_offset) + struct.pack(">i", len(body)) + body


# Batch A of records.md §10.1: one record, no key, value "hello".
BATCH_A = bytes.fromhex(
    "0000000000000000" "0000003d" "ffffffff" "02" "af7dd96c" "0000" "00000000"
    "0000018bcfe56800" "0000018bcfe56800" "ffffffffffffffff" "ffff" "ffffffff"
    "00000001" "16000000000a68656c6c6f00"
)
TEST_RECORD = bytes.fromhex("00000001" "140000000008") + b"test" + b"\x00"  # 1 record, value "test"


def test_layout_constants():
    assert PREAMBLE_BYTES == 12
    assert BATCH_HEADER_SIZE == 45
    assert HEADER_BYTES == 57
    assert EPOCH_OFFSET == 12
    assert CRC_OFFSET == 17
    assert CRC_START == 21


def test_builder_reproduces_batch_a():
    section = bytes.fromhex("00000001" "16000000000a68656c6c6f00")
    assert build_batch(section) == BATCH_A
    h = check_batch(BATCH_A)
    assert h == BatchHeader(0, 61, -1, 2, 0xAF7DD96C, 0, 0, T, T, -1, -1, -1)
    assert (h.size, h.record_count, h.last_offset, h.next_offset, h.compression) == (73, 1, 0, 1, 0)


def test_fluvio_crc_constants():
    # batch.rs test_encode_and_decode_batch_basic / _w_schemaid: records pushed directly, so
    # last_offset_delta stays at its default -1.
    plain = build_batch(TEST_RECORD, last_offset_delta=-1, first_timestamp=1555478494747,
                        max_time_stamp=1555478494747)
    assert read_header(plain).crc == 1430948200
    assert compute_crc(plain, 0, len(plain)) == 1430948200
    with_schema = build_batch(TEST_RECORD, last_offset_delta=-1, first_timestamp=1555478494747,
                              max_time_stamp=1555478494747, attributes=0x10, schema_id=42)
    assert read_header(with_schema).crc == 2943551365
    assert compute_crc(with_schema, 0, len(with_schema)) == 2943551365
    with pytest.raises(BatchError, match="empty batch"):
        check_batch(plain)


def test_check_batch_three_ways():
    h = check_batch(BATCH_A)
    for cut in range(len(BATCH_A)):
        with pytest.raises(BatchError):
            check_batch(BATCH_A[:cut])
    assert check_batch(BATCH_A + b"\xde\xad\xbe\xef") == h
    assert check_batch(b"xyz" + BATCH_A, 3) == h


def test_schema_id_batch_accepted_and_counted_in_the_length():
    b = build_batch(TEST_RECORD, attributes=0x10, schema_id=42)
    h = check_batch(b)
    assert h.batch_length == BATCH_HEADER_SIZE + 4 + len(TEST_RECORD)
    no_room = build_batch(b"", attributes=0x10)
    with pytest.raises(BatchError, match="schema id"):
        check_batch(no_room, verify_crc=False)


def test_header_faults_are_named():
    with pytest.raises(BatchError, match="shorter than"):
        read_header(BATCH_A[:56])
    short_length = BATCH_A[:8] + struct.pack(">i", 44) + BATCH_A[12:]
    with pytest.raises(BatchError, match="batch_length 44"):
        read_header(short_length)
    long_length = BATCH_A[:8] + struct.pack(">i", 62) + BATCH_A[12:]
    with pytest.raises(BatchError, match="runs past"):
        check_batch(long_length)
    with pytest.raises(BatchError, match="magic 1"):
        check_batch(build_batch(TEST_RECORD, magic=1))
    with pytest.raises(BatchError, match="exceeds the limit"):
        check_batch(BATCH_A, max_batch_bytes=72)
    assert check_batch(BATCH_A, max_batch_bytes=73).size == 73


def test_crc_mismatch_detected_and_skippable():
    bad = bytearray(BATCH_A)
    bad[-2] ^= 0x01
    with pytest.raises(BatchError, match="CRC mismatch"):
        check_batch(bad)
    assert check_batch(bad, verify_crc=False).size == 73


def test_offset_and_epoch_stamped_in_place_keep_the_crc():
    buf = bytearray(b"pad" + BATCH_A)
    set_base_offset(buf, 3, 7)
    set_leader_epoch(buf, 3, 5)
    h = check_batch(buf, 3)
    assert (h.base_offset, h.partition_leader_epoch, h.crc) == (7, 5, 0xAF7DD96C)
    assert bytes(buf[3:11]) == bytes.fromhex("0000000000000007")  # only these bytes changed ...
    assert bytes(buf[15:19]) == struct.pack(">i", 5)
    assert bytes(buf[11:15]) == BATCH_A[8:12] and bytes(buf[19:]) == BATCH_A[16:]  # ... and these
    assert (h.last_offset, h.next_offset) == (7, 8)


def test_iter_batches_walks_whole_batches_and_rejects_a_partial_tail():
    second = build_batch(TEST_RECORD, base_offset=1)
    both = BATCH_A + second
    assert [(p, h.base_offset) for p, h in iter_batches(both)] == [(0, 0), (73, 1)]
    assert list(iter_batches(b"")) == []
    with pytest.raises(BatchError, match="batch at 145"):
        list(iter_batches(both + second[:-1]))
    with pytest.raises(BatchError, match="CRC"):
        list(iter_batches(BATCH_A[:-1] + b"\x01"))
    assert len(list(iter_batches(BATCH_A[:-1] + b"\x01", verify_crc=False))) == 1


def test_scan_valid_prefix_stops_at_a_torn_or_corrupt_tail():
    second = build_batch(TEST_RECORD, base_offset=1)
    log = BATCH_A + second
    assert scan_valid_prefix(log) == (len(log), 2)
    for cut in range(len(second)):
        assert scan_valid_prefix(log[: 73 + cut]) == (73, 1)
    corrupt = bytearray(log)
    corrupt[-1] ^= 0x80
    assert scan_valid_prefix(corrupt) == (73, 1)
    assert scan_valid_prefix(log, 73) == (len(log), 1)


def test_bit_flips_in_the_crc_range_are_always_detected():
    for i in range(CRC_START * 8, len(BATCH_A) * 8):
        bad = bytearray(BATCH_A)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BatchError):
            check_batch(bad)


def test_bit_flips_outside_the_crc_range_raise_only_batch_errors():
    for i in range(CRC_START * 8):
        bad = bytearray(BATCH_A)
        bad[i // 8] ^= 1 << (i % 8)
        try:
            check_batch(bad)
        except BatchError:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(0, 10))
def test_random_bytes_raise_only_batch_errors(data, pos):
    try:
        check_batch(data, pos)
    except BatchError:
        pass
    try:
        list(iter_batches(data))
    except BatchError:
        pass
    end, n = scan_valid_prefix(data)
    assert 0 <= end <= len(data) and n >= 0


def test_random_batches_with_flips_raise_only_decode_errors():
    rng = random.Random(0)
    for _ in range(200):
        section = rng.randbytes(rng.randint(0, 40))
        b = bytearray(build_batch(section, base_offset=rng.randint(0, 1 << 40),
                                  last_offset_delta=rng.randint(0, 5)))
        check_batch(b)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        try:
            check_batch(b[: rng.randint(0, len(b))] if rng.random() < 0.3 else b)
        except DecodeError as e:
            assert isinstance(e, BatchError)
