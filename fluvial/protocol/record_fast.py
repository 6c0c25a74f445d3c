"""The record codec's fast paths: batches whose records all have one shape, encoded and decoded
without a Python loop per record.

Theory of operation
-------------------
``fluvial.protocol.record`` is the general encoder and decoder; this module is its fast twin for
the client's hot paths, and falls back to it for anything else. tests/protocol/test_record_fast.py
runs both over the same bytes and holds them equal.

* **Encoding** (``encode_producer_batch``, the producer's). When every value has the same length,
  and either no record has a key or all keys have one length, and no record has a timestamp
  delta, a record is a constant *separator* (length, attributes, timestamp delta, offset delta,
  key tag and lengths) around its key and value; only the offset-delta varint changes from record
  to record, so separators come from a cached table and the section is one ``b"".join`` of
  (separator, key, value) pieces. The bytes are exactly ``encode_batch``'s.
* **Decoding** (``decode_fetched_batches``, the consumer's). Runs of records that share their
  offset-delta width and whose structural bytes are all equal are cut apart with ``struct`` (one
  call per 512 records), and each record is built in C by the caller's ``row`` type (the client's
  ``Record``, a tuple subclass) from ``(partition, offset, key, value, timestamp)``. Unlike the
  general decoder it takes an offset window and leaves a batch cut off at the end of the buffer
  (a server that caps bytes mid-batch) for the next response; ``scan_record_set`` walks the batch
  headers only.
"""

from __future__ import annotations

import gc
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, repeat
from typing import Any

from fluvial.protocol.batch import (
    BATCH_HEADER_SIZE, HEADER, HEADER_BYTES, PREAMBLE_BYTES, check_batch,
)
from fluvial.protocol.codec import DecodeError, EncodeError, encode_varint
from fluvial.protocol.markers import ATTR_CONTROL
from fluvial.protocol.record_headers import ATTR_HEADERS, decode_header_records
from fluvial.protocol.record import (
    DEFAULT_MAX_UNCOMPRESSED_BYTES, RECORD_COUNT, UNZIGZAG, Compression, compress, decode_records,
    encode_batch, frame_batch, read_uvarint, records_section,
)

__all__ = ["decode_fetched_batches", "encode_producer_batch", "scan_record_set"]

# the first index whose ZigZag varint is wider than ``width`` bytes (2*i < 128**width)
_WIDTH_END = {w: 128**w // 2 for w in range(1, 11)}
_MIN_FAST_DECODE = 16  # records in a run below which the general decoder is as fast

Row = Callable[[tuple], Any]  # builds one decoded record from (partition, offset, key, value, timestamp)


# ------------------------------------------------------------------------------------ decoder


def _raw_varint(data: bytes, p: int, end: int) -> tuple[int, int] | None:
    """(raw LEB128 value, width) at ``p`` as ``read_uvarint`` reads it, or None if it runs past
    ``end`` or 10 bytes (the general decoder then says what is wrong)."""
    if p < end and data[p] < 0x80:  # one byte: most varints a probe reads
        return data[p], 1
    try:
        v, q = read_uvarint(data, p)
    except (IndexError, DecodeError):
        return None
    return (v, q - p) if q <= end else None


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
    r = _raw_varint(data, p, end)
    if r is None or r[0] & 1:
        return None
    length, lw = r[0] >> 1, r[1]
    size = lw + length
    if p + size > end or length < 7:
        return None
    t = _raw_varint(data, p + lw + 1, end)
    if t is None:
        return None
    tsd_raw, tw = t
    o = _raw_varint(data, p + lw + 1 + tw, end)
    if o is None:
        return None
    ow = o[1]
    tag_pos = lw + 1 + tw + ow
    tag = data[p + tag_pos]
    q = tag_pos + 1
    key_len = 0
    if tag == 1:
        k = _raw_varint(data, p + q, end)
        if k is None or k[0] & 1:
            return None
        key_len = k[0] >> 1
        q += k[1]
    elif tag != 0:
        return None
    key_pos = q
    q += key_len
    v = _raw_varint(data, p + q, end)
    if v is None or v[0] & 1:
        return None
    value_len = v[0] >> 1
    value_pos = q + v[1]
    if value_pos + value_len + 1 != size or data[p + size - 1] != 0:
        return None
    return _Layout(size, lw, tw, (tsd_raw >> 1) ^ -(tsd_raw & 1), ow, tag, key_pos, key_len, q,
                   value_pos, value_len)


_UNPACK_CHUNK = 512  # records per struct.unpack_from call


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
                 first_ts: int, row: Row) -> list | None:
    """Decode ``m`` records at ``q`` that all have layout ``lay`` into ``row``s, or None if they
    do not.

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
            table = [first_ts + d for d in UNZIGZAG]
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
            return list(map(row, rows))
        finally:
            gc.enable()
    return list(map(row, rows))


def _decode_section(data: bytes, p: int, e: int, count: int, base_offset: int, first_ts: int,
                    partition: int, row: Row) -> list:
    """The ``count`` records filling ``data[p:e]`` (the records after the i32 count), as ``row``s.

    Runs of records share their offset-delta width (indexes 0..63, 64..8191, ...); a run whose
    records all have one layout is decoded by ``_uniform_run``. From the first run that is not
    uniform on, ``fluvial.protocol.record.decode_records`` decodes the rest.
    """
    out: list = []
    i = 0
    while i < count:
        run_end = min(count, _WIDTH_END[1 if i < 64 else 2 if i < 8192 else 3 if i < 1 << 20 else 4])
        m = run_end - i
        if m >= _MIN_FAST_DECODE:
            lay = _probe(data, p, e)
            if lay is not None:
                recs = _uniform_run(data, p, m, lay, partition, base_offset + i, first_ts, row)
                if recs is not None:
                    out += recs
                    p += m * lay.size
                    i = run_end
                    continue
        rest = decode_records(data, p, e, count - i, base_offset + i, first_ts)
        out += [row((partition, o, k, v, t)) for o, t, k, v in rest]
        return out
    if p != e:
        raise DecodeError(f"records section: {e - p} bytes left after record {count - 1} at offset {p}")
    return out


def decode_fetched_batches(buf: bytes, pos: int, end: int, partition: int, min_offset: int = 0,
                           limit: int | None = None, *, max_records: int | None = None,
                           verify_crc: bool = True,
                           max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
                           row: Row = tuple, control: bool = False) -> tuple[list, int, int | None]:
    """Decode the whole batches of a fetched record set ``buf[pos:end]`` into ``row``s.

    Args:
        buf: bytes holding the record set (e.g. a whole StreamFetch response payload).
        partition: stamped on every record.
        min_offset: records below it are dropped (a response starts with the batch holding the
            requested offset, which may begin earlier); batches wholly below are not decoded.
        limit: records at or above it are dropped (and batches wholly above not decoded).
        max_records: stop after the batch that brings the count to this many.
        verify_crc: check each batch's CRC-32C.
        row: called with each ``(partition, offset, key, value, timestamp)`` tuple; a type
            implemented in C (a tuple subclass) keeps the fast path free of Python calls.
            Records of a headers batch get their headers as a sixth item.
        control: decode control batches (``markers.ATTR_CONTROL``: stream markers) as records
            ``(..., headers, True)``; by default they are skipped (their offsets still count).

    Returns:
        ``(records, position, next_offset)``: ``position`` is where the next undecoded batch
        starts (``end``, or the start of a batch cut off at ``end``, once everything is decoded);
        ``next_offset`` is the offset after the last whole batch (what the client acknowledges
        with UpdateOffsets), or None if there was no whole batch.

    Raises:
        DecodeError: a malformed batch or record.
    """
    out: list = []
    next_offset = None
    while end - pos >= HEADER_BYTES:
        h = HEADER.unpack_from(buf, pos)
        size = PREAMBLE_BYTES + h[1]
        if size > end - pos:
            break  # cut short: the next response starts with it again
        base = h[0]
        after = base + h[6] + 1  # base_offset + last_offset_delta + 1
        if (after <= min_offset or (limit is not None and base >= limit)
                or (h[5] & ATTR_CONTROL and not control)):
            check_batch(buf, pos, verify_crc=False)
            next_offset = after
            pos += size
            continue
        hdr = check_batch(buf, pos, verify_crc=verify_crc)
        try:
            data, p, e, count = records_section(buf, pos, hdr, max_uncompressed_bytes)
            if hdr.attributes & ATTR_CONTROL:
                recs = [row((partition, r.offset, r.key, r.value, r.timestamp, r.headers, True))
                        for r in decode_header_records(data, p, e, count, base,
                                                       hdr.first_timestamp)]
            elif hdr.attributes & ATTR_HEADERS:
                recs = [row((partition, r.offset, r.key, r.value, r.timestamp, r.headers))
                        for r in decode_header_records(data, p, e, count, base,
                                                       hdr.first_timestamp)]
            else:
                recs = _decode_section(data, p, e, count, base, hdr.first_timestamp, partition,
                                       row)
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


# ------------------------------------------------------------------------------------ encoder

_OD: list[bytes] = [encode_varint(i) for i in range(8192)]  # offset-delta varints
_OD_LIMIT = 1 << 20  # grown on demand up to here (3-byte varints); beyond, computed per batch
_SEP_CACHE: OrderedDict[tuple, list[bytes]] = OrderedDict()
_SEP_CACHE_ENTRIES = 8
_SEP_CACHE_MAX_LEN = 16384
_MIN_FAST_ENCODE = 8  # records below which encode_batch is as fast


def _offset_deltas(n: int) -> list[bytes]:
    if n > len(_OD) and n <= _OD_LIMIT:
        _OD.extend(encode_varint(i) for i in range(len(_OD), n))
    if n <= len(_OD):
        return _OD[:n] if n < len(_OD) else _OD
    return _OD + [encode_varint(i) for i in range(len(_OD), n)]


def _separators(key_len: int | None, value_len: int, n: int) -> list[bytes]:
    """sep[i] = [b"\\0" header count of record i-1] + length + attributes + timestamp delta 0 +
    offset delta i + key tag [+ key length] (+ value length when there is no key)."""
    cache_key = (key_len, value_len)
    cached = _SEP_CACHE.get(cache_key)
    if cached is not None and len(cached) >= n:
        _SEP_CACHE.move_to_end(cache_key)
        return cached if len(cached) == n else cached[:n]
    vlb = encode_varint(value_len)
    if key_len is None:
        tail = b"\x00" + vlb
        body = 1 + 1 + 1 + len(vlb) + value_len + 1  # attributes, ts delta, key tag, value, headers
    else:
        klb = encode_varint(key_len)
        tail = b"\x01" + klb
        body = 1 + 1 + 1 + len(klb) + key_len + len(vlb) + value_len + 1
    ods = _offset_deltas(n)
    seps: list[bytes] = []
    i = 0
    while i < n:  # runs of offset deltas of one varint width: 0..63, 64..8191, 8192..2**20-1...
        width = len(ods[i])
        j = min(n, _WIDTH_END[width])
        head = b"\x00" + encode_varint(body + width) + b"\x00\x00"
        run = list(map(bytes.__add__, map(head.__add__, ods[i:j]), repeat(tail)))
        if i == 0:
            run[0] = run[0][1:]  # the first record has no previous header count before it
        seps += run
        i = j
    if n <= _SEP_CACHE_MAX_LEN:
        _SEP_CACHE[cache_key] = seps
        _SEP_CACHE.move_to_end(cache_key)
        while len(_SEP_CACHE) > _SEP_CACHE_ENTRIES:
            _SEP_CACHE.popitem(last=False)
    return seps


def _uniform_section(values: list[bytes], keys: list[bytes | None] | None) -> bytes | None:
    """The records section when every record has the same shape, else None."""
    n = len(values)
    if n < _MIN_FAST_ENCODE:
        return None
    lengths = set(map(len, values))
    if len(lengths) != 1:
        return None
    (vl,) = lengths
    if keys is None:
        seps = _separators(None, vl, n)
        pieces = chain.from_iterable(zip(seps, values))
    else:
        if None in keys:
            return None
        key_lengths = set(map(len, keys))
        if len(key_lengths) != 1:
            return None
        (kl,) = key_lengths
        seps = _separators(kl, vl, n)
        pieces = chain.from_iterable(zip(seps, keys, repeat(encode_varint(vl)), values))
    return b"".join((RECORD_COUNT.pack(n), b"".join(pieces), b"\x00"))


def encode_producer_batch(values: list[bytes], keys: list[bytes | None] | None = None, *,
                          compression: int = Compression.None_, first_timestamp: int,
                          deltas: list[int] | None = None,
                          producer: tuple[int, int, int] | None = None) -> bytes:
    """A whole batch holding ``values`` (with ``keys``), byte for byte what
    ``fluvial.protocol.record.encode_batch`` writes for the same records, base_offset 0.

    Args:
        values: the values (bytes).
        keys: None, or one key (bytes or None) per value.
        compression: a ``Compression`` code.
        first_timestamp: the batch timestamp, ms since the Unix epoch.
        deltas: per-record timestamp deltas in ms, or None for all 0.
        producer: an idempotent producer's ``(id, epoch, first sequence)``, or None.

    Raises:
        EncodeError: no records, an unknown codec, a value that is not bytes-like.
    """
    if not values:
        raise EncodeError("a batch needs at least one record")
    section = None
    if deltas is None or not any(deltas):
        try:
            section = _uniform_section(values, keys)
        except TypeError as e:  # a value or key without a length
            raise EncodeError(f"records: a key or value is not bytes-like: {e}") from None
    if section is None:
        records = values if keys is None else list(zip(keys, values))
        return encode_batch(records, first_timestamp=first_timestamp, compression=compression,
                            timestamp_deltas=deltas, producer=producer)
    if compression:
        section = compress(compression, section)
    return frame_batch(section, count=len(values), compression=compression,
                       first_timestamp=first_timestamp, max_time_stamp=first_timestamp,
                       producer=producer)
