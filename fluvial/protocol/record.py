"""Records inside a batch: the full encoder and decoder, with compression.

Theory of operation
-------------------
``fluvial.protocol.batch`` owns the batch header (layout, CRC range, header-only checks); this
module adds the records section (../shared/fluvio-protocol/records.md §6, §7)::

    records section =
      i32 record_count                        compressed as ONE blob together with the records
      Record * record_count                   (unlike Kafka, the count is inside the blob)

    Record =
      varint  length                          bytes of everything below
      i8      attributes                      0
      varint  timestamp_delta                 ms since the batch's first_timestamp
      varint  offset_delta                    the record's index in the batch
      u8      key tag                         0 = no key, 1 = key present (not Kafka's varint -1)
      [varint key_len, key bytes]             only with tag 1; an empty key is 01 00
      varint  value_len, value bytes
      varint  header_count                    always 0: Fluvio has no header entries

Varints are ZigZag + LEB128. We emit standard 64-bit ZigZag (Fluvio's encoder agrees in the i32
range) and accept up to 10 bytes.

Offsets and timestamps (records.md §8): a decoded record's offset is ``base_offset + its index``
(``offset_delta`` is read past, never used), and its timestamp is ``first_timestamp +
timestamp_delta``, or -1 when ``first_timestamp <= 0``. ``max_time_stamp`` is written as
``first_timestamp + the LAST record's delta``, as the Fluvio producer does.

Compression codes (batch attributes bits 0..2): 1 gzip container, 2 snappy *framing* format,
3 lz4 *frame* format, 4 zstd frame; 5..7 are a decode error. cramjam's ``compress`` writes each
format as Fluvio's client accepts it (records.md §6.1; gzip level 6, lz4 and zstd level 1 as the
client uses), and its ``decompress_into`` reads what the client writes (§6.2).

Decoding is strict where Fluvio is lax, so that corruption is found rather than misread: the CRC
is checked (unless ``verify_crc=False``), record_count must equal ``last_offset_delta + 1``, every
record must end exactly where its length says, the header count must be 0, the records must fill
the section exactly, and a record set must hold whole batches (Fluvio ends a set quietly at the
first bad batch; callers that want that catch the ``DecodeError``). Decompression is bounded:
output beyond ``max_uncompressed_bytes`` is a ``DecodeError``, and a decompression bomb costs at
most about twice that in memory and work.

Speed: encode and decode are the client's hot paths. Varints of small non-negative values come
from a table, decoders inline the one- and two-byte varint cases, records are decoded straight from
``bytes`` by index into tuples (a ``NamedTuple``), and an ``IndexError`` anywhere in the loop means
"ran off the end of the buffer" and becomes a ``DecodeError``.
"""

from __future__ import annotations

import struct
import time
from enum import IntEnum
from typing import Iterable, NamedTuple, Sequence

import cramjam
from crc32c import crc32c

from fluvial.protocol.batch import (
    ATTR_COMPRESSION_MASK,
    ATTR_SCHEMA_ID,
    BATCH_HEADER_SIZE,
    CRC_OFFSET,
    CRC_START,
    HEADER,
    HEADER_BYTES,
    MAGIC,
    NO_EPOCH,
    BatchError,
    BatchHeader,
    check_batch,
    read_header,
)
from fluvial.protocol.codec import DecodeError, EncodeError, encode_varint

DEFAULT_MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
SCHEMA_ID_BYTES = 4
RECORD_COUNT = struct.Struct(">i")  # i32 at the start of the (decompressed) records section
MIN_RECORD_BYTES = 7  # length, attributes, ts delta, offset delta, key tag, value length, headers

_U32 = struct.Struct(">I")
_U64_MASK = 0xFFFF_FFFF_FFFF_FFFF


class Compression(IntEnum):
    """Batch attribute compression codes (not the topic's CompressionAlgorithm enum)."""

    None_ = 0
    Gzip = 1
    Snappy = 2
    Lz4 = 3
    Zstd = 4


class ProducerRecord(NamedTuple):
    """A record to encode (``encode_batch``'s input; the client's consumed record is
    ``fluvial.Record``). Headers are not supported (Fluvio writes a count of 0)."""

    value: bytes
    key: bytes | None = None
    timestamp_delta: int = 0


class ConsumerRecord(NamedTuple):
    """A decoded record. ``offset`` = base_offset + index; ``timestamp`` is -1 when unknown."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


class DecodedBatch(NamedTuple):
    header: BatchHeader
    records: list[ConsumerRecord]

    @property
    def size(self) -> int:
        """Bytes the batch occupies; the next batch starts this far after this one."""
        return self.header.size


# ------------------------------------------------------------------------------------ varints

_TABLE_SIZE = 8192
_VARINT = tuple(encode_varint(i) for i in range(_TABLE_SIZE))  # ZigZag encodings of 0..8191


def _varint(n: int) -> bytes:
    return _VARINT[n] if 0 <= n < _TABLE_SIZE else encode_varint(n)


_ATTRS_AND_DELTA = tuple(b"\x00" + _VARINT[i] for i in range(1024))  # attributes + small deltas
UNZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))  # one-byte varints, decoded


def read_uvarint(data, p: int) -> tuple[int, int]:
    """The raw (not yet un-ZigZagged) LEB128 value at ``p``, at most 10 bytes.

    Raises IndexError at the end of ``data`` (callers turn that into DecodeError)."""
    v = 0
    shift = 0
    for q in range(p, p + 10):
        b = data[q]
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v & _U64_MASK, q + 1
        shift += 7
    raise DecodeError(f"varint at offset {p}: longer than 10 bytes")


# -------------------------------------------------------------------------------- compression

_COMPRESSORS = {
    Compression.Gzip: cramjam.gzip.compress,      # level 6, the flate2 default the client uses
    Compression.Snappy: cramjam.snappy.compress,  # framing format (stream identifier first)
    # frame format; level 1 is lz4's fast mode, like lz4_flex (cramjam's default is ~5x slower)
    Compression.Lz4: lambda data: cramjam.lz4.compress(data, level=1),
    Compression.Zstd: lambda data: cramjam.zstd.compress(data, level=1),  # the client's level
}
_DECOMPRESS_INTO = {
    Compression.Gzip: cramjam.gzip.decompress_into,
    Compression.Snappy: cramjam.snappy.decompress_into,
    Compression.Lz4: cramjam.lz4.decompress_into,
    Compression.Zstd: cramjam.zstd.decompress_into,
}
_FIRST_GUESS_BYTES = 64 * 1024
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_FCS_BYTES = (0, 2, 4, 8)  # by Frame_Content_Size_flag; flag 0 means 1 byte if single segment
_ZSTD_DICT_ID_BYTES = (0, 1, 2, 4)
_OUTPUT_FULL = "write whole buffer"  # cramjam's message when the output buffer is too small


def _size_hint(codec: int, data) -> int | None:
    """The decompressed size a gzip trailer (ISIZE) or zstd frame header states, if any. Only a
    first guess for the output buffer: the bounded decompression never trusts it."""
    n = len(data)
    if codec == Compression.Gzip and n >= 18:
        return int.from_bytes(data[n - 4 :], "little")
    if codec == Compression.Zstd and n >= 6 and data[:4] == _ZSTD_MAGIC:
        fhd = data[4]
        single_segment = fhd & 0x20
        fcs_bytes = _ZSTD_FCS_BYTES[fhd >> 6] or (1 if single_segment else 0)
        if not fcs_bytes:
            return None
        p = 5 + (0 if single_segment else 1) + _ZSTD_DICT_ID_BYTES[fhd & 3]
        if n < p + fcs_bytes:
            return None
        return int.from_bytes(data[p : p + fcs_bytes], "little") + (256 if fcs_bytes == 2 else 0)
    return None


def compress(codec: int, data) -> bytes:
    """Compress a records section (count included) with batch compression ``codec``."""
    if codec == Compression.None_:
        return bytes(data)
    try:
        fn = _COMPRESSORS[codec]
    except KeyError:
        raise EncodeError(f"unknown compression code {codec}") from None
    return bytes(fn(data))


def decompress(codec: int, data, max_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES) -> bytes:
    """Decompress a records section, refusing output larger than ``max_bytes``.

    Decompression writes into a buffer of bounded size; a buffer that fills up is retried at
    twice the size, up to ``max_bytes + 1``, so a bomb costs at most ~2x ``max_bytes`` of work.

    Raises:
        DecodeError: unknown code (5..7), corrupt data, or output over ``max_bytes``.
    """
    if codec == Compression.None_:
        if len(data) > max_bytes:
            raise DecodeError(f"records section of {len(data)} bytes exceeds {max_bytes}")
        return bytes(data)
    fn = _DECOMPRESS_INTO.get(codec)
    if fn is None:
        raise DecodeError(f"unknown compression format: {codec}")
    size = _size_hint(codec, data)
    if size is None:
        size = max(_FIRST_GUESS_BYTES, 4 * len(data))
    size = min(size, max_bytes + 1)
    while True:
        out = bytearray(size)
        try:
            n = fn(data, out)
        except cramjam.DecompressionError as e:
            if _OUTPUT_FULL not in str(e):
                raise DecodeError(f"{Compression(codec).name} decompression failed: {e}") from None
            if size > max_bytes:
                raise DecodeError(f"{Compression(codec).name} section decompresses to more than "
                                  f"{max_bytes} bytes") from None
            size = min(max(2 * size, _FIRST_GUESS_BYTES), max_bytes + 1)
            continue
        if n > max_bytes:
            raise DecodeError(f"{Compression(codec).name} section decompresses to more than "
                              f"{max_bytes} bytes")
        del out[n:]
        return bytes(out)


# ------------------------------------------------------------------------------------ encoder


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_records(records: Iterable,
                   timestamp_deltas: Sequence[int] | None = None) -> tuple[bytes, int, int]:
    """The uncompressed records section: (i32 count + records, count, last timestamp delta).

    ``records`` items may be ``ProducerRecord``, ``(key, value)`` tuples, or plain bytes-like
    values.
    """
    parts: list = [b""]  # slot 0: the count, filled in below
    ext = parts.extend
    table = _VARINT
    size = _TABLE_SIZE
    ts_pre = _ATTRS_AND_DELTA
    ts_size = len(ts_pre)
    tsd = 0
    i = -1
    try:
        for i, r in enumerate(records):
            t = type(r)
            if t is bytes:
                key = None
                value = r
                tsd = 0
            elif t is ProducerRecord:
                value, key, tsd = r
            elif t is tuple:
                key, value = r
                tsd = 0
            elif isinstance(r, (bytes, bytearray, memoryview)):
                key = None
                value = r if type(r) is bytearray else bytes(r)  # len() must count bytes
                tsd = 0
            else:
                raise EncodeError(f"record {i}: expected ProducerRecord, (key, value) or bytes, "
                                  f"not {t.__name__}")
            if timestamp_deltas is not None:
                tsd = timestamp_deltas[i]
            vl = len(value)
            offb = table[i] if i < size else encode_varint(i)
            vlb = table[vl] if vl < size else encode_varint(vl)
            # attributes 0, then timestamp_delta
            pre = ts_pre[tsd] if 0 <= tsd < ts_size else b"\x00" + _varint(tsd)
            if key is None:
                n = len(pre) + len(offb) + len(vlb) + vl + 2  # + key tag + header count
                ext((table[n] if n < size else encode_varint(n), pre, offb, b"\x00", vlb, value,
                     b"\x00"))
            else:
                kl = len(key)
                klb = table[kl] if kl < size else encode_varint(kl)
                n = len(pre) + len(offb) + len(klb) + kl + len(vlb) + vl + 2
                ext((table[n] if n < size else encode_varint(n), pre, offb, b"\x01", klb, key, vlb,
                     value, b"\x00"))
    except (TypeError, ValueError, IndexError, struct.error) as e:
        if isinstance(e, EncodeError):
            raise
        raise EncodeError(f"record {i}: cannot encode: {e}") from None
    count = i + 1
    parts[0] = RECORD_COUNT.pack(count)
    try:
        return b"".join(parts), count, tsd
    except TypeError as e:
        raise EncodeError(f"records: a key or value is not bytes-like: {e}") from None


def encode_batch(records: Iterable, *, base_offset: int = 0, first_timestamp: int | None = None,
                 compression: int = Compression.None_, partition_leader_epoch: int = NO_EPOCH,
                 timestamp_deltas: Sequence[int] | None = None,
                 producer: tuple[int, int, int] | None = None) -> bytes:
    """The bytes of one batch holding ``records``, laid out as Fluvio's producer writes it.

    Args:
        records: ``ProducerRecord`` objects, ``(key, value)`` tuples, or plain bytes values (key
            None).
        base_offset: written as is (the Fluvio client writes ``n - 1``; servers overwrite it).
        first_timestamp: ms since the epoch; None means now.
        compression: a ``Compression`` code; the count is compressed with the records.
        partition_leader_epoch: written as is.
        timestamp_deltas: per-record deltas (ms) replacing each record's own (0 for tuples/bytes).
        producer: an idempotent producer's ``(id, epoch, first sequence)`` for the header (as
            ``batch.stamp_producer`` would put them, without a second pass); None: none.

    Returns:
        The whole batch, CRC included. ``max_time_stamp = first_timestamp + last record's delta``.

    Raises:
        EncodeError: no records, an unknown codec, or a record that is not bytes-like.
    """
    section, count, last_tsd = encode_records(records, timestamp_deltas)
    if count == 0:
        raise EncodeError("a batch needs at least one record")
    if timestamp_deltas is not None and len(timestamp_deltas) != count:
        raise EncodeError(f"{len(timestamp_deltas)} timestamp deltas for {count} records")
    if compression:
        section = compress(compression, section)
    if first_timestamp is None:
        first_timestamp = _now_ms()
    return frame_batch(section, count=count, compression=compression,
                       first_timestamp=first_timestamp, max_time_stamp=first_timestamp + last_tsd,
                       base_offset=base_offset, partition_leader_epoch=partition_leader_epoch,
                       producer=producer)


def frame_batch(section: bytes, *, count: int, compression: int, first_timestamp: int,
                max_time_stamp: int, base_offset: int = 0,
                partition_leader_epoch: int = NO_EPOCH,
                producer: tuple[int, int, int] | None = None) -> bytes:
    """The whole batch around an encoded (and, with ``compression``, compressed) records
    section of ``count`` records: the header, its CRC-32C over attributes..end, the section.
    ``producer``: an idempotent producer's ``(id, epoch, first sequence)``, else none.

    Raises:
        EncodeError: a header field that does not fit its type.
    """
    try:
        header = bytearray(HEADER.pack(
            base_offset,
            BATCH_HEADER_SIZE + len(section),
            partition_leader_epoch,
            MAGIC,
            0,  # crc, patched below
            compression & ATTR_COMPRESSION_MASK,
            count - 1,  # last_offset_delta
            first_timestamp,
            max_time_stamp,
            *((NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE) if producer is None else producer),
        ))
    except struct.error as e:
        raise EncodeError(f"batch header: {e}") from None
    _U32.pack_into(header, CRC_OFFSET, crc32c(section, crc32c(memoryview(header)[CRC_START:])))
    return b"".join((header, section))


# ------------------------------------------------------------------------------------ decoder


def decode_records(data: bytes, pos: int, end: int, count: int, base_offset: int,
                   first_timestamp: int) -> list[ConsumerRecord]:
    """Decode exactly ``count`` records filling ``data[pos:end]`` (``data`` must be ``bytes``).

    Raises:
        DecodeError: a record that is truncated, malformed, or does not fill its length, or bytes
        left over after the last record.
    """
    out: list = []
    append = out.append
    new = tuple.__new__
    cls = ConsumerRecord
    slow = read_uvarint
    known_ts = first_timestamp > 0
    if count < 0:
        raise DecodeError(f"records at offset {pos}: negative record count {count}")
    if count > (end - pos) // MIN_RECORD_BYTES:
        raise DecodeError(f"records at offset {pos}: {count} records cannot fit in "
                          f"{end - pos} bytes")
    unzigzag = UNZIGZAG
    i = 0
    p = pos
    try:
        for i in range(count):
            # length: a non-negative varint, so its raw form is even
            b = data[p]
            if b < 0x80:
                p += 1
                rend = p + (b >> 1)
            else:
                c = data[p + 1]
                if c < 0x80:
                    b = (b & 0x7F) | (c << 7)
                    p += 2
                else:
                    b, p = slow(data, p)
                rend = p + (b >> 1)
            if b & 1:
                raise DecodeError("negative record length")
            # attributes (ignored), then timestamp_delta
            b = data[p + 1]
            if b < 0x80:
                tsd = unzigzag[b]
                p += 2
            else:
                tsd, p = slow(data, p + 1)
                tsd = (tsd >> 1) ^ -(tsd & 1)
            # offset_delta: read past, never used (records.md §8)
            if data[p] < 0x80:
                p += 1
            elif data[p + 1] < 0x80:
                p += 2
            else:
                p = slow(data, p)[1]
            # key: tag 0 (none) or 1 (length + bytes)
            b = data[p]
            if b == 0:
                key = None
                p += 1
            elif b == 1:
                b = data[p + 1]
                if b < 0x80:
                    p += 2
                else:
                    b, p = slow(data, p + 1)
                if b & 1:
                    raise DecodeError("negative key length")
                b = p + (b >> 1)
                key = data[p:b]
                p = b
            else:
                raise DecodeError(f"key tag {b}, expected 0 or 1")
            # value
            b = data[p]
            if b < 0x80:
                p += 1
            else:
                c = data[p + 1]
                if c < 0x80:
                    b = (b & 0x7F) | (c << 7)
                    p += 2
                else:
                    b, p = slow(data, p)
            if b & 1:
                raise DecodeError("negative value length")
            b = p + (b >> 1)
            value = data[p:b]
            # header count 0, and the record must end where its length says
            if data[b] or b + 1 != rend:
                if data[b]:
                    raise DecodeError("headers are not supported (header count not 0)")
                raise DecodeError(f"fields end at {b + 1}, the record's length says {rend}")
            p = rend
            append(new(cls, (base_offset + i, first_timestamp + tsd if known_ts else -1, key,
                             value)))
    except IndexError:
        raise DecodeError(f"record {i} at or after offset {p}: truncated") from None
    except DecodeError as e:
        raise DecodeError(f"record {i} at or after offset {p}: {e}") from None
    if p != end:
        raise DecodeError(f"records section: {end - p} bytes left after record {count - 1} "
                          f"at offset {p}")
    return out


def records_section(buf, pos: int, h: BatchHeader,
                    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
                    ) -> tuple[bytes, int, int, int]:
    """Where the records of the batch at ``pos`` (with the checked header ``h``) lie:
    ``(data, p, e, count)``, the ``count`` records filling ``data[p:e]`` after their i32 count.

    ``data`` is the decompressed section, or ``buf`` itself for an uncompressed batch in
    ``bytes`` (no copy).

    Raises:
        DecodeError: the section does not decompress, is larger than ``max_uncompressed_bytes``,
        or its record count is missing or disagrees with ``last_offset_delta``.
    """
    start = pos + HEADER_BYTES
    if h.attributes & ATTR_SCHEMA_ID:
        start += SCHEMA_ID_BYTES
    end = pos + h.size
    codec = h.attributes & ATTR_COMPRESSION_MASK
    if codec:
        data = decompress(codec, memoryview(buf)[start:end], max_uncompressed_bytes)
        p, e = 0, len(data)
    else:
        if end - start > max_uncompressed_bytes:
            raise DecodeError(f"records section of {end - start} bytes exceeds "
                              f"{max_uncompressed_bytes}")
        if type(buf) is bytes:
            data, p, e = buf, start, end
        else:
            data = bytes(memoryview(buf)[start:end])
            p, e = 0, len(data)
    if e - p < RECORD_COUNT.size:
        raise DecodeError(f"records section of {e - p} bytes has no record count")
    (count,) = RECORD_COUNT.unpack_from(data, p)
    if count != h.last_offset_delta + 1:
        raise DecodeError(f"record count {count} but last_offset_delta {h.last_offset_delta}")
    return data, p + RECORD_COUNT.size, e, count


def decode_batch(buf, pos: int = 0, *, verify_crc: bool = True,
                 max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES) -> DecodedBatch:
    """Decode the whole batch at ``pos``: header checks (``check_batch``), then the records.

    Bytes after the batch are not looked at; the next batch starts at ``pos + result.size``.

    Raises:
        DecodeError: (``BatchError`` for header/length/CRC faults) naming what and where.
    """
    h = check_batch(buf, pos, verify_crc=verify_crc)
    try:
        data, p, e, count = records_section(buf, pos, h, max_uncompressed_bytes)
        records = decode_records(data, p, e, count, h.base_offset, h.first_timestamp)
    except DecodeError as exc:
        raise DecodeError(f"batch at {pos}: {exc}") from None
    return DecodedBatch(h, records)


def decode_batches(buf, pos: int = 0, end: int | None = None, *, verify_crc: bool = True,
                   max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
                   ) -> list[DecodedBatch]:
    """Every batch of a record set's batch bytes ``buf[pos:end]``, which must hold whole batches.

    Raises:
        DecodeError: a batch that does not decode or runs past ``end``.
    """
    if end is None:
        end = len(buf)
    elif end > len(buf):
        raise ValueError(f"end {end} is past the {len(buf)}-byte buffer")
    out = []
    while pos < end:
        if end - pos < HEADER_BYTES or pos + read_header(buf, pos).size > end:
            raise BatchError(f"batch at {pos}: cut off by the end of the record set at {end}")
        b = decode_batch(buf, pos, verify_crc=verify_crc,
                         max_uncompressed_bytes=max_uncompressed_bytes)
        out.append(b)
        pos += b.header.size
    return out


def decode_record_set(buf, pos: int = 0, end: int | None = None, *, verify_crc: bool = True,
                      max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
                      ) -> list[ConsumerRecord]:
    """All records of the whole batches in ``buf[pos:end]`` (a record set without its i32 length).

    Raises:
        DecodeError: any batch that does not decode, including a batch cut off at ``end``.
    """
    batches = decode_batches(buf, pos, end, verify_crc=verify_crc,
                             max_uncompressed_bytes=max_uncompressed_bytes)
    if len(batches) == 1:
        return batches[0].records
    out: list[ConsumerRecord] = []
    for b in batches:
        out += b.records
    return out


__all__ = [
    "DEFAULT_MAX_UNCOMPRESSED_BYTES", "UNZIGZAG", "Compression", "ConsumerRecord", "DecodedBatch",
    "ProducerRecord", "compress", "decode_batch", "decode_batches", "decode_record_set",
    "decode_records", "decompress", "encode_batch", "encode_records", "frame_batch", "read_uvarint",
    "records_section",
]
