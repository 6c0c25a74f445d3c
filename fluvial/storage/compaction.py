"""Log compaction, the decisions: which records of sealed segments survive, and their new batches.

Theory of operation
-------------------
A topic with cleanup policy ``compact`` keeps, for every key, its latest record; older records of
the key go. A *tombstone* (a keyed record with an empty value) says "the key is deleted": it
survives like a value until it is older than ``tombstone_retention_ms``, then it goes too, so a
consumer that reads the log from the start within that delay still sees the delete. This is
Kafka's log cleaner, in two passes over the cleanable segments (the sealed ones, oldest first):

1. ``KeyMap.add_segment`` for every segment: the latest offset of every key, and each segment's
   last offset.
2. ``clean_segment`` for every segment: the surviving records, as batches.

Offsets never change: a record keeps its offset, and a gap of removed offsets opens before it.
Fluvio's consumer gives a record the offset ``base_offset + index in its batch`` (records.md §8),
so a batch must hold consecutive records: a batch that lost records is split into one batch per
run of consecutive survivors, each with the base offset of its first record. A rewritten batch
keeps its first timestamp, max timestamp, leader epoch and compression, and carries
``ATTR_COMPACTED``, which lets it start after a gap (``fluvial.protocol.batch.follows``). A batch
whose records all survive keeps its bytes; it only gains the flag when a gap precedes it.

Rules:

* A keyless record always survives (it has nothing to be superseded by).
* A keyed record survives while it is the latest of its key, except an expired tombstone.
* The last record of every segment survives, even when superseded, so that each segment still
  ends at the next one's base offset (segments stay contiguous; only batches have gaps).
* Such a kept superseded record *pins* its key: that key's tombstones are kept past their
  retention, or the old value would come back when the tombstone goes.
* A tombstone whose timestamp is unknown (``first_timestamp <= 0``) never expires.
* A batch with a schema id (attribute 0x10) is kept whole, and so is a control batch (a
  bounded stream's marker, ``fluvial.protocol.markers``): its key is not a record key and
  supersedes nothing.
* Records with headers (``ATTR_HEADERS``) keep them when their batch is rewritten.

Worked example, one segment, records ``0:a=1 1:b=1 2:a=2 3:a=<tombstone, old> 4:c=1``: a's latest
is 3, an expired tombstone, and record 4 is the segment's last: survivors 1 (b=1) and 4 (c=1);
without expiry, 1, 3 and 4.

Pure: bytes in, bytes out; no files, no trio.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from crc32c import crc32c

from fluvial.protocol.batch import (
    ATTR_COMPACTED,
    ATTR_SCHEMA_ID,
    CRC_OFFSET,
    CRC_START,
    BatchHeader,
    read_header,
)
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.markers import ATTR_CONTROL
from fluvial.protocol.record_headers import ATTR_HEADERS, encode_header_records
from fluvial.protocol.record import (
    ConsumerRecord,
    ProducerRecord,
    compress,
    encode_records,
    frame_batch,
)
from fluvial.protocol.record_fast import decode_fetched_batches

_ATTRIBUTES_OFFSET = CRC_START  # i16 attributes follow the crc


def is_tombstone(r: ConsumerRecord) -> bool:
    """A keyed record with an empty value: the key is deleted."""
    return r.key is not None and not r.value


# A decoded record, as ``decode_fetched_batches`` builds it: (partition, offset, key, value,
# timestamp), then headers in a headers batch, and True in a control batch
Row = tuple
OFFSET, KEY, VALUE, TIMESTAMP, HEADERS = 1, 2, 3, 4, 5
CONTROL_ROW = 7


def decode_rows(data: bytes) -> list[Row]:
    """Every record of a segment's batches ``data``, decoded in one go by the client's fast
    decoder (CRCs checked).

    Raises:
        DecodeError: a batch does not decode, or the last one is cut short.
    """
    rows, end, _ = decode_fetched_batches(data, 0, len(data), 0, control=True)
    if end != len(data):
        raise DecodeError(f"a batch at {end} runs past the end of the segment at {len(data)}")
    return rows


def iter_decoded(data: bytes, rows: list[Row] | None = None) -> Iterable[tuple[int, BatchHeader, list[Row]]]:
    """(position, header, records) of every batch in ``data``; ``rows``: its records if
    already decoded (``decode_rows``).

    Raises:
        DecodeError: a batch does not decode.
    """
    if rows is None:
        rows = decode_rows(data)
    pos = i = 0
    while pos < len(data):
        h = read_header(data, pos)
        n = h.record_count
        yield pos, h, rows[i:i + n]
        i += n
        pos += h.size


@dataclass
class KeyMap:
    """Pass 1: the latest offset of every key over the cleanable segments, and the last offset
    of each segment."""

    latest: dict[bytes, int] = field(default_factory=dict)
    segment_last: set[int] = field(default_factory=set)
    last_keys: dict[int, bytes | None] = field(default_factory=dict)  # segment last offset -> key

    def add_segment(self, data: bytes) -> list[Row]:
        """Scan one segment's batches (segments must come oldest first); returns its records
        (``decode_rows``), which pass 2 may reuse."""
        rows = decode_rows(data)
        latest = self.latest
        for r in rows:
            if r[KEY] is not None and len(r) != CONTROL_ROW:
                latest[r[KEY]] = r[OFFSET]
        if rows:
            last = rows[-1]
            self.segment_last.add(last[OFFSET])
            self.last_keys[last[OFFSET]] = last[KEY]
        return rows

    def pinned(self) -> set[bytes]:
        """Keys a superseded segment-last record keeps alive: their tombstones never expire."""
        return {k for off, k in self.last_keys.items() if k is not None and self.latest.get(k, off) != off}


def survives(offset: int, key: bytes | None, value: bytes, timestamp: int, latest: Mapping[bytes, int],
             segment_last: set[int], pinned: set[bytes], horizon_ms: int) -> bool:
    """Whether the record at ``offset`` stays (the module's rules). ``horizon_ms``: tombstones
    with a timestamp at or before it have expired.

    >>> latest = {b"a": 3}
    >>> survives(2, b"a", b"x", 10, latest, set(), set(), 0)
    False
    >>> survives(3, b"a", b"", 10, latest, set(), set(), 5), survives(3, b"a", b"", 10, latest, set(), set(), 10)
    (True, False)
    >>> survives(3, b"a", b"", 10, latest, set(), {b"a"}, 10)
    True
    """
    if offset in segment_last or key is None:
        return True
    if latest.get(key, offset) != offset:
        return False
    if not value and timestamp > 0 and timestamp <= horizon_ms and key not in pinned:
        return False
    return True


def mark_compacted(batch: bytearray) -> bytearray:
    """Set ``ATTR_COMPACTED`` on a whole batch and recompute its CRC (in place)."""
    attrs = int.from_bytes(batch[_ATTRIBUTES_OFFSET:_ATTRIBUTES_OFFSET + 2], "big")
    batch[_ATTRIBUTES_OFFSET:_ATTRIBUTES_OFFSET + 2] = (attrs | ATTR_COMPACTED).to_bytes(2, "big")
    batch[CRC_OFFSET:CRC_START] = crc32c(memoryview(batch)[CRC_START:]).to_bytes(4, "big")
    return batch


def encode_run(h: BatchHeader, run: list[Row]) -> bytearray:
    """One batch of the consecutive records ``run`` taken from the batch ``h``: base offset of
    its first record, ``h``'s timestamps, epoch and compression, ``ATTR_COMPACTED`` set."""
    first_ts = h.first_timestamp
    deltas = [r[TIMESTAMP] - first_ts if first_ts > 0 and r[TIMESTAMP] >= 0 else 0 for r in run]
    if h.attributes & ATTR_HEADERS:
        section, count = encode_header_records([(r[KEY], r[VALUE], r[HEADERS]) for r in run], deltas)
    else:
        section, count, _ = encode_records([ProducerRecord(r[VALUE], r[KEY]) for r in run], deltas)
    if h.compression:
        section = compress(h.compression, section)
    batch = bytearray(frame_batch(
        section, count=count, compression=h.compression, first_timestamp=first_ts,
        max_time_stamp=h.max_time_stamp, base_offset=run[0][OFFSET],
        partition_leader_epoch=h.partition_leader_epoch))
    if h.attributes & ATTR_HEADERS:
        attrs = int.from_bytes(batch[_ATTRIBUTES_OFFSET:_ATTRIBUTES_OFFSET + 2], "big")
        batch[_ATTRIBUTES_OFFSET:_ATTRIBUTES_OFFSET + 2] = (attrs | ATTR_HEADERS).to_bytes(2, "big")
    return mark_compacted(batch)


@dataclass
class CleanedSegment:
    """Pass 2's answer for one segment: its new batches, and what went."""

    batches: list[bytes]
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0

    @property
    def bytes_out(self) -> int:
        return sum(len(b) for b in self.batches)

    @property
    def changed(self) -> bool:
        return self.records_out != self.records_in


def clean_segment(data: bytes, base_offset: int, keys: KeyMap, pinned: set[bytes],
                  horizon_ms: int, rows: list[Row] | None = None) -> CleanedSegment:
    """Pass 2 for the batches ``data`` of the segment starting at ``base_offset``: the
    surviving records as batches (see the module docstring). ``pinned`` is ``keys.pinned()``,
    computed once for all segments; ``rows``: the segment's records if pass 1 kept them.

    Raises:
        DecodeError: a batch does not decode.
    """
    out = CleanedSegment([], bytes_in=len(data))
    expected = base_offset  # the offset after the previous output batch
    for pos, h, records in iter_decoded(data, rows):
        out.records_in += len(records)
        if h.attributes & (ATTR_SCHEMA_ID | ATTR_CONTROL):
            kept = records
        else:
            latest, last = keys.latest, keys.segment_last
            kept = [r for r in records if survives(r[OFFSET], r[KEY], r[VALUE], r[TIMESTAMP], latest, last,
                                                   pinned, horizon_ms)]
        if not kept:
            continue
        if len(kept) == len(records):
            raw = data[pos:pos + h.size]
            if h.base_offset != expected and not h.attributes & ATTR_COMPACTED:
                raw = bytes(mark_compacted(bytearray(raw)))
            out.batches.append(raw)
        else:
            run: list[ConsumerRecord] = []
            for r in kept:
                if run and r[OFFSET] != run[-1][OFFSET] + 1:
                    out.batches.append(bytes(encode_run(h, run)))
                    run = []
                run.append(r)
            out.batches.append(bytes(encode_run(h, run)))
        out.records_out += len(kept)
        expected = kept[-1][OFFSET] + 1
    return out


__all__ = ["CleanedSegment", "KeyMap", "clean_segment", "decode_rows", "encode_run", "is_tombstone", "iter_decoded",
           "mark_compacted", "survives"]
