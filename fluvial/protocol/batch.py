"""Record-batch headers: the cheap, header-only view servers use without decoding records.

Theory of operation
-------------------
A batch (../shared/fluvio-protocol/records.md §4) is a 12-byte preamble, a 45-byte header and the
records section::

    Batch =>
      base_offset            i64   set by the leader at append; outside the CRC
      batch_length           i32   bytes after this field: 45 + records section
      partition_leader_epoch i32   fluvial: the leader's epoch at append; outside the CRC
      magic                  i8    2
      crc                    u32   CRC-32C of everything from attributes to the batch's end
      attributes             i16   bits 0..2 compression, 0x10 schema id present
      last_offset_delta      i32   record count - 1
      first_timestamp        i64
      max_time_stamp         i64
      producer_id            i64
      producer_epoch         i16
      first_sequence         i32
      [schema_id             u32]  only with attributes & 0x10
      records                      i32 count + records, or one compressed blob holding both

Because base_offset, batch_length, epoch and magic lie outside the CRC, a server can stamp the
offset and epoch in place and the stored CRC stays valid. Servers check the CRC of every batch they
receive (Fluvio does not) and again when a log is recovered from disk.
"""

from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

from crc32c import crc32c

from fluvial.protocol.codec import DecodeError

HEADER = struct.Struct(">qiibIhiqqqhi")
PREAMBLE_BYTES = struct.calcsize(">qi")  # base_offset + batch_length = 12
HEADER_BYTES = HEADER.size  # 57: preamble + the 45 bytes batch_length counts first
BATCH_HEADER_SIZE = HEADER_BYTES - PREAMBLE_BYTES  # 45, Fluvio's name
CRC_OFFSET = struct.calcsize(">qiib")  # 17
CRC_START = CRC_OFFSET + 4  # 21: first byte of attributes
EPOCH_OFFSET = struct.calcsize(">qi")  # 12
MAGIC = 2
ATTR_COMPRESSION_MASK = 0x07
ATTR_SCHEMA_ID = 0x10
# fluvial: a batch the log cleaner rewrote (fluvial.storage.compaction). It may start after a gap of
# offsets whose records compaction removed; the bit lies inside the CRC, and Fluvio's client
# ignores it (it reads only the compression bits and 0x10). 0x40 marks records with headers
# (fluvial.protocol.record_headers), 0x20 control batches (fluvial.protocol.markers).
ATTR_COMPACTED = 0x80
NO_EPOCH = -1

_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")


class BatchError(DecodeError):
    """A batch whose lengths or CRC are wrong."""


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_time_stamp: int
    producer_id: int
    producer_epoch: int
    first_sequence: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies."""
        return PREAMBLE_BYTES + self.batch_length

    @property
    def record_count(self) -> int:
        return self.last_offset_delta + 1 if self.last_offset_delta >= 0 else 0

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """The offset after this batch: base_offset + last_offset_delta + 1."""
        return self.base_offset + self.record_count

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK


def follows(h: BatchHeader, expected: int) -> bool:
    """Whether batch ``h`` may come where offset ``expected`` is next: at it, or, when the log
    cleaner wrote it (``ATTR_COMPACTED``), after a gap of removed offsets.

    >>> h = BatchHeader(7, 60, 0, MAGIC, 0, 0, 0, 0, 0, -1, -1, -1)
    >>> follows(h, 7), follows(h, 5), follows(h._replace(attributes=ATTR_COMPACTED), 5)
    (True, False, True)
    """
    return h.base_offset == expected or (h.base_offset > expected and bool(h.attributes & ATTR_COMPACTED))


def read_header(buf, pos: int = 0) -> BatchHeader:
    """The header of the batch at ``pos``. Checks only that the header is there and that
    batch_length is at least the fixed header; use ``check_batch`` for the full check."""
    if len(buf) - pos < HEADER_BYTES:
        raise BatchError(f"batch at {pos}: {len(buf) - pos} bytes, shorter than a {HEADER_BYTES}-byte header")
    h = BatchHeader._make(HEADER.unpack_from(buf, pos))
    if h.batch_length < BATCH_HEADER_SIZE:
        raise BatchError(f"batch at {pos}: batch_length {h.batch_length} < {BATCH_HEADER_SIZE}")
    return h


def compute_crc(buf, pos: int, size: int) -> int:
    """CRC-32C over attributes..end of the batch at ``pos`` whose total size is ``size``."""
    return crc32c(memoryview(buf)[pos + CRC_START : pos + size])


def check_batch(buf, pos: int = 0, *, verify_crc: bool = True,
                max_batch_bytes: int | None = None) -> BatchHeader:
    """Validate the batch at ``pos``: whole, sane lengths, magic 2, records ≥ 0, CRC right.

    Raises:
        BatchError: naming what is wrong and where.
    """
    h = read_header(buf, pos)
    size = h.size
    if size > len(buf) - pos:
        raise BatchError(f"batch at {pos}: batch_length {h.batch_length} runs past the "
                         f"{len(buf) - pos} bytes available")
    if max_batch_bytes is not None and size > max_batch_bytes:
        raise BatchError(f"batch at {pos}: {size} bytes exceeds the limit of {max_batch_bytes}")
    if h.magic != MAGIC:
        raise BatchError(f"batch at {pos}: magic {h.magic}, expected {MAGIC}")
    if h.last_offset_delta < 0:
        raise BatchError(f"batch at {pos}: empty batch (last_offset_delta {h.last_offset_delta})")
    if h.attributes & ATTR_SCHEMA_ID and h.batch_length < BATCH_HEADER_SIZE + 4:
        raise BatchError(f"batch at {pos}: schema id flag set but no room for it")
    if verify_crc:
        crc = compute_crc(buf, pos, size)
        if crc != h.crc:
            raise BatchError(f"batch at {pos}: CRC mismatch (stored {h.crc:#010x}, computed {crc:#010x})")
    return h


def iter_batches(buf, *, verify_crc: bool = True,
                 max_batch_bytes: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) for every batch of a record set that must hold whole batches only.

    Raises:
        BatchError: on the first bad batch, or trailing bytes that are not a whole batch.
    """
    pos, end = 0, len(buf)
    while pos < end:
        h = check_batch(buf, pos, verify_crc=verify_crc, max_batch_bytes=max_batch_bytes)
        yield pos, h
        pos += h.size


def scan_valid_prefix(buf, start: int = 0) -> tuple[int, int]:
    """Walk whole, CRC-valid batches from ``start``; returns (end position of the valid prefix,
    number of batches). Used by recovery to find where a torn tail begins."""
    pos, n, end = start, 0, len(buf)
    while pos < end:
        try:
            h = check_batch(buf, pos)
        except BatchError:
            break
        pos += h.size
        n += 1
    return pos, n


def set_base_offset(buf: bytearray, pos: int, base_offset: int) -> None:
    _I64.pack_into(buf, pos, base_offset)


def set_leader_epoch(buf: bytearray, pos: int, epoch: int) -> None:
    _I32.pack_into(buf, pos + EPOCH_OFFSET, epoch)


PRODUCER_OFFSET = struct.calcsize(">qiibIhiqq")  # 43: producer_id, producer_epoch, first_sequence
_PRODUCER_FIELDS = struct.Struct(">qhi")


def stamp_producer(batch: bytes, producer_id: int, producer_epoch: int,
                   first_sequence: int) -> bytes:
    """A copy of one whole batch with an idempotent producer's id, epoch and first sequence in
    its header, and its CRC recomputed (those fields are inside the CRC).

    Raises:
        struct.error: a value that does not fit its field.
    """
    buf = bytearray(batch)
    _PRODUCER_FIELDS.pack_into(buf, PRODUCER_OFFSET, producer_id, producer_epoch, first_sequence)
    _U32.pack_into(buf, CRC_OFFSET, compute_crc(buf, 0, len(buf)))
    return bytes(buf)
