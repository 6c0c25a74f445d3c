"""Record headers: key/value pairs on records, in fluvial's record encoding, and the compat
function that takes them out for clients that did not ask for them.

Theory of operation
-------------------
Fluvio writes every record's header count as 0 and its decoder reads that count and nothing
more (records.md §7): a record with header entries would be misparsed by the official client.
So headers live only in batches marked with attribute bit ``ATTR_HEADERS`` (0x40, unused by
Fluvio and Kafka), and their records end with Kafka's header layout::

    varint  header_count
    header_count * (varint key_len, key bytes (UTF-8), varint value_len, value bytes)

Everything else in the batch is as ``fluvial.protocol.record`` writes it. The bit is set after
framing (``set_attributes``, which recomputes the CRC over the attributes).

An SPU sends such batches unchanged only to a connection that asked for headers (fluvial's
client, with ``EnableRecordHeadersRequest``, key 9002, which the SPU advertises in ApiVersions).
For every other connection ``strip_record_set`` rewrites each marked batch: the same records,
offsets and timestamps, header counts 0, the bit cleared, compressed again with the batch's codec
and a new CRC. Unmarked batches pass through untouched (no copy when a record set holds none).

Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import Iterable, NamedTuple, Sequence

from fluvial.protocol.batch import (
    ATTR_COMPRESSION_MASK, ATTR_SCHEMA_ID, CRC_OFFSET, CRC_START, HEADER, HEADER_BYTES, PREAMBLE_BYTES,
    check_batch, compute_crc, iter_batches,
)
from fluvial.protocol.codec import DecodeError, EncodeError, encode_varint
from fluvial.protocol.record import (
    RECORD_COUNT, compress, frame_batch, read_uvarint, records_section,
)

ATTR_HEADERS = 0x40
_ATTRIBUTES = struct.Struct(">h")
_U32 = struct.Struct(">I")
_ATTR_POS = CRC_START  # attributes are the first field the CRC covers

Headers = tuple[tuple[str, bytes], ...]


class HeaderRecord(NamedTuple):
    """A decoded record of a headers batch."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: Headers


def normalize_headers(headers) -> Headers:
    """``headers`` (a mapping, or (key, value) pairs; keys str, values bytes or str) as a tuple
    of ``(str, bytes)`` pairs.

    Raises:
        TypeError: a key that is not a str, or a value that is not bytes-like or str.
    """
    if not headers:
        return ()
    items = headers.items() if hasattr(headers, "items") else headers
    out = []
    for k, v in items:
        if not isinstance(k, str):
            raise TypeError(f"a header key must be a str, not {type(k).__name__}")
        if isinstance(v, str):
            v = v.encode()
        elif isinstance(v, (bytearray, memoryview)):
            v = bytes(v)
        elif not isinstance(v, bytes):
            raise TypeError(f"header {k!r}: the value must be bytes or str, not {type(v).__name__}")
        out.append((k, v))
    return tuple(out)


def _encode_headers(headers: Headers) -> bytes:
    parts = [encode_varint(len(headers))]
    for k, v in headers:
        kb = k.encode()
        parts += (encode_varint(len(kb)), kb, encode_varint(len(v)), v)
    return b"".join(parts)


def encode_header_records(records: Iterable[tuple[bytes | None, bytes, Headers]],
                          timestamp_deltas: Sequence[int] | None = None) -> tuple[bytes, int]:
    """The uncompressed records section (count included) of ``(key, value, headers)`` records;
    returns (section, count)."""
    parts = [b""]
    i = -1
    for i, (key, value, headers) in enumerate(records):
        tsd = timestamp_deltas[i] if timestamp_deltas is not None else 0
        body = [b"\x00", encode_varint(tsd), encode_varint(i)]
        if key is None:
            body.append(b"\x00")
        else:
            body += (b"\x01", encode_varint(len(key)), key)
        body += (encode_varint(len(value)), value, _encode_headers(headers))
        rec = b"".join(body)
        parts += (encode_varint(len(rec)), rec)
    parts[0] = RECORD_COUNT.pack(i + 1)
    return b"".join(parts), i + 1


def set_attributes(batch: bytes, attributes: int) -> bytes:
    """A copy of one whole batch with ``attributes`` and its CRC recomputed."""
    buf = bytearray(batch)
    _ATTRIBUTES.pack_into(buf, _ATTR_POS, attributes)
    _U32.pack_into(buf, CRC_OFFSET, compute_crc(buf, 0, len(buf)))
    return bytes(buf)


def encode_headers_batch(records: Sequence[tuple[bytes | None, bytes, Headers]], *,
                         first_timestamp: int, compression: int = 0,
                         timestamp_deltas: Sequence[int] | None = None,
                         producer: tuple[int, int, int] | None = None) -> bytes:
    """One batch of ``(key, value, headers)`` records, marked ``ATTR_HEADERS``; ``producer``: an
    idempotent producer's ``(id, epoch, first sequence)`` for the header, or None.

    Raises:
        EncodeError: no records, or a field that does not encode.
    """
    try:
        section, count = encode_header_records(records, timestamp_deltas)
    except (TypeError, ValueError, AttributeError) as e:
        raise EncodeError(f"records with headers: {e}") from None
    if count == 0:
        raise EncodeError("a batch needs at least one record")
    last_tsd = timestamp_deltas[-1] if timestamp_deltas else 0
    if compression:
        section = compress(compression, section)
    batch = frame_batch(section, count=count, compression=compression,
                        first_timestamp=first_timestamp, max_time_stamp=first_timestamp + last_tsd,
                        producer=producer)
    return set_attributes(batch, (compression & ATTR_COMPRESSION_MASK) | ATTR_HEADERS)


def _varint(data: bytes, p: int) -> tuple[int, int]:
    raw, p = read_uvarint(data, p)
    return (raw >> 1) ^ -(raw & 1), p


def _read_bytes(data: bytes, p: int, what: str) -> tuple[bytes, int]:
    n, p = _varint(data, p)
    if n < 0 or p + n > len(data):
        raise DecodeError(f"{what} length {n} does not fit")
    return data[p:p + n], p + n


def _decode_one(data: bytes, p: int) -> tuple[int, bytes | None, bytes, Headers, int, int]:
    """(timestamp delta, key, value, headers, start of the header count, record end) at ``p``."""
    length, p = _varint(data, p)
    if length < 0:
        raise DecodeError("negative record length")
    end = p + length
    if end > len(data):
        raise DecodeError("record runs past the section")
    tsd, q = _varint(data, p + 1)
    _, q = read_uvarint(data, q)  # offset delta: read past
    tag = data[q]
    q += 1
    if tag == 1:
        key, q = _read_bytes(data, q, "key")
    elif tag == 0:
        key = None
    else:
        raise DecodeError(f"key tag {tag}, expected 0 or 1")
    value, q = _read_bytes(data, q, "value")
    hstart = q
    n, q = _varint(data, q)
    if n < 0 or n > end - q:
        raise DecodeError(f"header count {n}")
    headers = []
    for _ in range(n):
        k, q = _read_bytes(data, q, "header key")
        v, q = _read_bytes(data, q, "header value")
        try:
            headers.append((k.decode(), v))
        except UnicodeDecodeError:
            raise DecodeError("a header key is not UTF-8") from None
    if q != end:
        raise DecodeError(f"fields end at {q}, the record's length says {end}")
    return tsd, key, value, tuple(headers), hstart, end


def decode_header_records(data: bytes, pos: int, end: int, count: int, base_offset: int,
                          first_timestamp: int) -> list[HeaderRecord]:
    """Decode exactly ``count`` records filling ``data[pos:end]``, headers included.

    Raises:
        DecodeError: a truncated or malformed record, or bytes left over.
    """
    out = []
    p = pos
    known_ts = first_timestamp > 0
    data = bytes(data[:end])
    try:
        for i in range(count):
            tsd, key, value, headers, _, p = _decode_one(data, p)
            out.append(HeaderRecord(base_offset + i, first_timestamp + tsd if known_ts else -1,
                                    key, value, headers))
    except IndexError:
        raise DecodeError(f"record at or after offset {p}: truncated") from None
    if p != end:
        raise DecodeError(f"records section: {end - p} bytes left after the last record")
    return out


def strip_headers(buf, pos: int = 0) -> bytes:
    """The batch at ``pos`` (marked ``ATTR_HEADERS``) as an official client can read it: the
    same records, offsets and timestamps with header count 0, the bit cleared, recompressed,
    a new CRC; base offset and leader epoch kept.

    Raises:
        DecodeError: the batch or one of its records is malformed.
    """
    h = check_batch(buf, pos, verify_crc=False)
    data, p, e, count = records_section(buf, pos, h)
    data = bytes(data)
    parts = [RECORD_COUNT.pack(count)]
    try:
        for _ in range(count):
            start = p
            _, _, _, _, hstart, p = _decode_one(data, p)
            # the record without its header entries: everything up to the header count, then 0
            length, body = read_uvarint(data, start)
            body_len = hstart - body + 1
            parts += (encode_varint(body_len), data[body:hstart], b"\x00")
    except IndexError:
        raise DecodeError(f"batch at {pos}: a record is truncated") from None
    section = b"".join(parts)
    codec = h.attributes & ATTR_COMPRESSION_MASK
    if codec:
        section = compress(codec, section)
    out = bytearray(frame_batch(section, count=count, compression=codec,
                                first_timestamp=h.first_timestamp, max_time_stamp=h.max_time_stamp,
                                base_offset=h.base_offset,
                                partition_leader_epoch=h.partition_leader_epoch))
    # keep the producer fields and any other attribute bits the batch had
    keep = HEADER.pack(*h)[CRC_START:HEADER_BYTES]
    attrs = h.attributes & ~(ATTR_HEADERS | ATTR_SCHEMA_ID)  # the schema id is not carried over
    out[CRC_START:HEADER_BYTES] = keep
    _ATTRIBUTES.pack_into(out, _ATTR_POS, attrs)
    _U32.pack_into(out, CRC_OFFSET, compute_crc(out, 0, len(out)))
    return bytes(out)


def has_headers(buf, pos: int = 0, end: int | None = None) -> bool:
    """Whether any whole batch of the record set ``buf[pos:end]`` is marked ``ATTR_HEADERS``
    (header reads only)."""
    end = len(buf) if end is None else end
    while end - pos >= HEADER_BYTES:
        batch_length, = struct.unpack_from(">i", buf, pos + 8)
        attrs, = _ATTRIBUTES.unpack_from(buf, pos + _ATTR_POS)
        if attrs & ATTR_HEADERS:
            return True
        if batch_length <= 0:
            return False
        pos += PREAMBLE_BYTES + batch_length
    return False


def check_header_batches(record_set) -> None:
    """Decode every ``ATTR_HEADERS`` batch of a produced record set, so that none is stored
    that the SPU could not strip later (and a client not read). Other batches are not looked at.

    Raises:
        DecodeError: a marked batch whose records do not decode.
    """
    for pos, h in iter_batches(record_set, verify_crc=False):
        if h.attributes & ATTR_HEADERS:
            data, p, e, count = records_section(record_set, pos, h)
            try:
                decode_header_records(data, p, e, count, h.base_offset, h.first_timestamp)
            except DecodeError as exc:
                raise DecodeError(f"batch at {pos}: {exc}") from None


def strip_record_set(buf) -> bytes:
    """A record set (whole batches) with every ``ATTR_HEADERS`` batch stripped
    (``strip_headers``); ``buf`` itself (as bytes) when none is marked. A trailing partial batch
    is kept as it is.

    Raises:
        DecodeError: a marked batch that does not decode.
    """
    if not has_headers(buf):
        return buf if isinstance(buf, bytes) else bytes(buf)
    out = []
    pos, end = 0, len(buf)
    while end - pos >= HEADER_BYTES:
        h = HEADER.unpack_from(buf, pos)
        size = PREAMBLE_BYTES + h[1]
        if size > end - pos:
            break
        if h[5] & ATTR_HEADERS:
            out.append(strip_headers(buf, pos))
        else:
            out.append(bytes(buf[pos:pos + size]))
        pos += size
    out.append(bytes(buf[pos:end]))
    return b"".join(out)


__all__ = [
    "ATTR_HEADERS", "HeaderRecord", "Headers", "check_header_batches", "decode_header_records", "encode_header_records",
    "encode_headers_batch", "has_headers", "normalize_headers", "set_attributes",
    "strip_headers", "strip_record_set",
]
