"""The consumer's record decoder (pure): record sets from StreamFetch responses into ``Record``s.

Batches whose records all have the same shape are cut apart with ``struct`` (one call per 512
records) instead of a Python loop per record, and ``Record`` is a tuple subclass that C code can
build without calling Python. ``fluvial.client.consumer`` uses it; tests/client/test_decoder.py
checks it against ``fluvial.protocol.record``.
"""

from __future__ import annotations

import gc
import struct
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Iterable
from itertools import chain, repeat
from typing import Any

from fluvial.client.types import Record
from fluvial.errors import Error
from fluvial.protocol.api import decode_response
from fluvial.protocol.batch import (
    ATTR_COMPRESSION_MASK, ATTR_SCHEMA_ID, BATCH_HEADER_SIZE, HEADER, HEADER_BYTES, PREAMBLE_BYTES,
    check_batch,
)
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record import (
    DEFAULT_MAX_UNCOMPRESSED_BYTES, RECORD_COUNT, SCHEMA_ID_BYTES, decode_records, decompress,
)
from fluvial.protocol.spu_api import WASM_MODULE_API, StreamFetchResponse


_MIN_FAST_RECORDS = 16
_WIDTH_END = {w: 128**w // 2 for w in range(1, 11)}  # first index whose varint is wider
_UNZIGZAG = [(b >> 1) ^ -(b & 1) for b in range(128)]


def _varint(data: bytes, p: int, end: int) -> tuple[int, int] | None:
    """(raw LEB128 value, width) at ``p``, or None if it runs past ``end`` or 10 bytes."""
    v = shift = 0
    for q in range(p, min(p + 10, end)):
        b = data[q]
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, q - p + 1
        shift += 7
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the fields of a record lie, relative to its first byte."""

    size: int  # bytes of the whole record, length varint included
    length_width: int
    ts_width: int
    ts_delta: int
    od_width: int
    key_tag: int
    key_pos: int
    key_len: int
    value_len_pos: int
    value_pos: int
    value_len: int

    def constant_positions(self) -> list[int]:
        """Bytes that must be equal in every record of a run of this layout."""
        tag = self.length_width + 1 + self.ts_width + self.od_width
        positions = list(range(self.length_width + 1))  # length, attributes
        positions.append(tag)
        positions += range(tag + 1, self.key_pos)  # key length, when there is a key
        positions += range(self.value_len_pos, self.value_pos)
        positions.append(self.size - 1)  # the header count
        return positions


def _probe(data: bytes, p: int, end: int) -> _Layout | None:
    """The layout of the record at ``p``, or None if it is not a well-formed record (the general
    decoder then says what is wrong)."""
    r = _varint(data, p, end)
    if r is None or r[0] & 1:
        return None
    length, lw = r[0] >> 1, r[1]
    size = lw + length
    if p + size > end or length < 7:
        return None
    t = _varint(data, p + lw + 1, end)
    if t is None:
        return None
    tsd_raw, tw = t
    o = _varint(data, p + lw + 1 + tw, end)
    if o is None:
        return None
    ow = o[1]
    tag_pos = lw + 1 + tw + ow
    tag = data[p + tag_pos]
    q = tag_pos + 1
    key_len = 0
    if tag == 1:
        k = _varint(data, p + q, end)
        if k is None or k[0] & 1:
            return None
        key_len = k[0] >> 1
        q += k[1]
    elif tag != 0:
        return None
    key_pos = q
    q += key_len
    v = _varint(data, p + q, end)
    if v is None or v[0] & 1:
        return None
    value_len = v[0] >> 1
    value_pos = q + v[1]
    if value_pos + value_len + 1 != size or data[p + size - 1] != 0:
        return None
    return _Layout(size, lw, tw, (tsd_raw >> 1) ^ -(tsd_raw & 1), ow, tag, key_pos, key_len, q,
                   value_pos, value_len)


_UNPACK_CHUNK = 512  # records per struct.unpack_from call
_DECODE_RECORDS = 2048  # records the consumer decodes at a time


@lru_cache(maxsize=128)
def _field_struct(pos: int, length: int, size: int, count: int) -> struct.Struct:
    """Unpacks one field (``length`` bytes at ``pos``) from each of ``count`` consecutive
    records of ``size`` bytes, into one flat tuple."""
    return struct.Struct(f"{pos}x{length}s{size - pos - length}x" * count)


def _field_column(view: memoryview, m: int, pos: int, length: int, size: int) -> Iterable[bytes]:
    """One field of ``m`` records of ``size`` bytes laid end to end in ``view``."""
    full, rest = divmod(m, _UNPACK_CHUNK)
    parts = []
    if full:
        st = _field_struct(pos, length, size, _UNPACK_CHUNK)
        step = _UNPACK_CHUNK * size
        parts.append(chain.from_iterable(map(st.unpack_from, repeat(view, full),
                                             range(0, full * step, step))))
    if rest:
        parts.append(_field_struct(pos, length, size, rest).unpack_from(view, full * _UNPACK_CHUNK * size))
    return parts[0] if len(parts) == 1 else chain.from_iterable(parts)


def _uniform_run(data: bytes, q: int, m: int, lay: _Layout, partition: int, first_offset: int,
                 first_ts: int) -> list[Record] | None:
    """Decode ``m`` records at ``q`` that all have layout ``lay``, or None if they do not.

    Every structural byte of every record is checked (with strided slices, in C): equal to the
    first record's for lengths, attributes, key tag and header count; the offset and timestamp
    delta varints of the same width. So each record parses exactly as the first one did.
    """
    size = lay.size
    end = q + m * size
    if end > len(data):
        return None
    for j in lay.constant_positions():
        col = data[q + j:end:size]
        if col.count(col[0]) != m:
            return None
    od = q + lay.length_width + 1 + lay.ts_width
    for k in range(lay.od_width):
        col = data[od + k:end:size]
        if (max(col) >= 0x80) if k == lay.od_width - 1 else (min(col) < 0x80):
            return None
    ts_at = q + lay.length_width + 1
    if first_ts <= 0:
        stamps: Any = repeat(-1)
        for k in range(lay.ts_width):  # still check the varint's width
            col = data[ts_at + k:end:size]
            if (max(col) >= 0x80) if k == lay.ts_width - 1 else (min(col) < 0x80):
                return None
    elif lay.ts_width == 1:
        col = data[ts_at:end:size]
        if max(col) >= 0x80:
            return None
        if col.count(col[0]) == m:
            stamps = repeat(first_ts + lay.ts_delta)
        else:
            table = [first_ts + d for d in _UNZIGZAG]
            stamps = map(table.__getitem__, col)
    else:
        for k in range(lay.ts_width):
            col = data[ts_at + k:end:size]
            if col.count(col[0]) != m:
                return None
        stamps = repeat(first_ts + lay.ts_delta)
    view = memoryview(data)[q:end]
    values = _field_column(view, m, lay.value_pos, lay.value_len, size)
    keys = _field_column(view, m, lay.key_pos, lay.key_len, size) if lay.key_tag else repeat(None)
    rows = zip(repeat(partition), range(first_offset, first_offset + m), keys, values, stamps)
    # Building the records runs in C and cannot create reference cycles; collections triggered
    # by the allocations would only rescan the young records again and again (measured: ~40% of
    # the consumer's time at 100 B records), so the collector waits until they are built.
    if gc.isenabled():
        gc.disable()
        try:
            return list(map(Record, rows))
        finally:
            gc.enable()
    return list(map(Record, rows))


def _decode_section(data: bytes, p: int, e: int, count: int, base_offset: int, first_ts: int,
                    partition: int) -> list[Record]:
    """The ``count`` records filling ``data[p:e]`` (the records after the i32 count).

    Runs of records share their offset-delta width (indexes 0..63, 64..8191, ...); a run whose
    records all have one layout is decoded by ``_uniform_run``. From the first run that is not
    uniform on, ``fluvial.protocol.record.decode_records`` decodes the rest.
    """
    out: list[Record] = []
    i = 0
    while i < count:
        run_end = min(count, _WIDTH_END[1 if i < 64 else 2 if i < 8192 else 3 if i < 1 << 20 else 4])
        m = run_end - i
        if m >= _MIN_FAST_RECORDS:
            lay = _probe(data, p, e)
            if lay is not None:
                recs = _uniform_run(data, p, m, lay, partition, base_offset + i, first_ts)
                if recs is not None:
                    out += recs
                    p += m * lay.size
                    i = run_end
                    continue
        rest = decode_records(data, p, e, count - i, base_offset + i, first_ts)
        out += [Record((partition, o, k, v, t)) for o, t, k, v in rest]
        return out
    if p != e:
        raise DecodeError(f"records section: {e - p} bytes left after record {count - 1} at offset {p}")
    return out


def decode_record_set(buf: bytes, pos: int, end: int, partition: int, min_offset: int = 0,
                      limit: int | None = None, *, verify_crc: bool = True,
                      max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
                      ) -> tuple[list[Record], int | None]:
    """Decode the whole batches of a record set ``buf[pos:end]`` into ``Record``s.

    Args:
        buf: bytes holding the record set (e.g. a whole StreamFetch response payload).
        partition: stamped on every record.
        min_offset: records below it are dropped (a response starts with the batch holding the
            requested offset, which may begin earlier); batches wholly below are not decoded.
        limit: records at or above it are dropped (and batches wholly above not decoded).
        verify_crc: check each batch's CRC-32C.

    Returns:
        ``(records, next_offset)``: ``next_offset`` is the offset after the last whole batch
        (what the client acknowledges with UpdateOffsets), or None if there was no whole batch.
        A batch cut off at ``end`` (a server that caps bytes mid-batch) is ignored.

    Raises:
        DecodeError: a malformed batch or record.
    """
    records, _, next_offset = decode_batches(buf, pos, end, partition, min_offset, limit,
                                             verify_crc=verify_crc,
                                             max_uncompressed_bytes=max_uncompressed_bytes)
    return records, next_offset


def decode_batches(buf: bytes, pos: int, end: int, partition: int, min_offset: int = 0,
                   limit: int | None = None, *, max_records: int | None = None,
                   verify_crc: bool = True,
                   max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
                   ) -> tuple[list[Record], int, int | None]:
    """``decode_record_set``, stopping after the batch that brings the count to ``max_records``.

    Returns:
        ``(records, position, next_offset)``: ``position`` is where the next undecoded batch
        starts (``end``, or the start of a cut-off batch, once everything is decoded).
    """
    out: list[Record] = []
    next_offset = None
    while end - pos >= HEADER_BYTES:
        h = HEADER.unpack_from(buf, pos)
        size = PREAMBLE_BYTES + h[1]
        if size > end - pos:
            break  # cut short: the next response starts with it again
        base = h[0]
        after = base + h[6] + 1  # base_offset + last_offset_delta + 1
        if after <= min_offset or (limit is not None and base >= limit):
            check_batch(buf, pos, verify_crc=False)
            next_offset = after
            pos += size
            continue
        hdr = check_batch(buf, pos, verify_crc=verify_crc)
        start = pos + HEADER_BYTES + (SCHEMA_ID_BYTES if hdr.attributes & ATTR_SCHEMA_ID else 0)
        stop = pos + size
        codec = hdr.attributes & ATTR_COMPRESSION_MASK
        try:
            if codec:
                data = decompress(codec, memoryview(buf)[start:stop], max_uncompressed_bytes)
                p, e = 0, len(data)
            else:
                data, p, e = (buf, start, stop) if type(buf) is bytes else (bytes(buf), start, stop)
            if e - p < RECORD_COUNT.size:
                raise DecodeError(f"records section of {e - p} bytes has no record count")
            (count,) = RECORD_COUNT.unpack_from(data, p)
            if count != hdr.last_offset_delta + 1:
                raise DecodeError(f"record count {count} but last_offset_delta {hdr.last_offset_delta}")
            recs = _decode_section(data, p + RECORD_COUNT.size, e, count, base, hdr.first_timestamp,
                                   partition)
        except DecodeError as exc:
            raise DecodeError(f"batch at {pos}: {exc}") from None
        if base < min_offset:
            recs = recs[min_offset - base:]
        if limit is not None and after > limit:
            recs = recs[:max(0, len(recs) - (after - limit))]
        if out:
            out += recs
        else:
            out = recs
        next_offset = after
        pos += size
        if max_records is not None and len(out) >= max_records:
            break
    return out, pos, next_offset


def scan_record_set(buf: bytes, pos: int, end: int, min_offset: int = 0,
                    limit: int | None = None) -> tuple[int | None, bool]:
    """Walk the batch headers of ``buf[pos:end]`` without decoding records.

    Returns:
        ``(next_offset, wanted)``: the offset after the last whole batch (None if there is no
        whole batch), and whether any batch may hold records in ``[min_offset, limit)`` (also
        True for a malformed header, so that decoding reports it).
    """
    next_offset = None
    wanted = False
    while end - pos >= HEADER_BYTES:
        h = HEADER.unpack_from(buf, pos)
        size = PREAMBLE_BYTES + h[1]
        if h[1] < BATCH_HEADER_SIZE or h[6] < 0:
            return next_offset, True
        if size > end - pos:
            break
        after = h[0] + h[6] + 1
        if after > min_offset and (limit is None or h[0] < limit):
            wanted = True
        next_offset = after
        pos += size
    return next_offset, wanted


_SF_TOPIC = struct.Struct(">ih")  # correlation id, topic length
_SF_IDS = struct.Struct(">IIh")  # stream_id, partition_index, error code
_SF_OFFSETS = struct.Struct(">qqqBi")  # hw, next_filter_offset, log_start, aborted tag, records len
_SF_OFFSETS_V10 = struct.Struct(">qqBi")  # no next_filter_offset below v11


@dataclass(slots=True)
class FetchChunk:
    """What one StreamFetch response says, with its record set located inside ``payload``."""

    stream_id: int
    error: Error
    high_watermark: int
    next_filter_offset: int
    records: bytes
    records_pos: int
    records_end: int


def parse_stream_fetch_response(payload: bytes, version: int) -> FetchChunk:
    """Parse a StreamFetch response payload without copying its record set.

    The common case (no error, no aborted transactions) is read with ``struct``; anything else
    goes through the generic ``StreamFetchResponse`` decoder.

    Raises:
        DecodeError: a malformed response.
    """
    try:
        _, tlen = _SF_TOPIC.unpack_from(payload, 0)
        p = 6 + max(tlen, 0)
        stream_id, _, code = _SF_IDS.unpack_from(payload, p)
        p += _SF_IDS.size
        if code == 0:
            st = _SF_OFFSETS if version >= WASM_MODULE_API else _SF_OFFSETS_V10
            fields = st.unpack_from(payload, p)
            aborted, n = fields[-2], fields[-1]
            p += st.size
            if aborted == 0 and 0 <= n <= len(payload) - p:
                nfo = fields[1] if version >= WASM_MODULE_API else 0
                return FetchChunk(stream_id, Error(), fields[0], nfo, payload, p, p + n)
    except struct.error:
        pass  # the generic decoder reports exactly what is wrong
    _, resp = decode_response(payload, StreamFetchResponse, version)
    part = resp.partition
    return FetchChunk(resp.stream_id, part.error_code, part.high_watermark,
                      part.next_filter_offset, part.records, 0, len(part.records))


# ================================================================================ the consumer
