"""The SmartModule ABI: what the host writes into a module and reads back out. Pure.

Fluvio v0.17.3 (``crates/fluvio-smartmodule/src/{input,output}.rs``), each encoded with the
StreamFetch request's version, as Fluvio's SPU does::

    SmartModuleInput =
      i64      base_offset                   of the batch the records come from
      Vec<u8>  raw_bytes                     i32 length + (i32 count + records, as in a batch)
      SmartModuleExtraParams params          only when version <= 22 (map + lookback from v20)
      Vec<u8>  join_record                   only when 16 <= version <= 22 (always empty here)
      i64      base_timestamp                only when version >= 22
    SmartModuleAggregateInput = SmartModuleInput, Vec<u8> accumulator
    SmartModuleInitInput = SmartModuleExtraParams

    SmartModuleOutput =
      Vec<Record> successes                  i32 count + records (offset_delta kept)
      Option<SmartModuleTransformRuntimeError> error
    SmartModuleAggregateOutput = SmartModuleOutput, Vec<u8> accumulator (version >= 16)
    SmartModuleInitOutput = SmartModuleInitRuntimeError (read only when init returns -2)

A record inside ``Vec<Record>`` has the layout of a record in a batch (``fluvial.protocol.record``):
varint length, i8 attributes, varint timestamp_delta, varint offset_delta, u8 key tag [+ varint
length + key], varint value length + value, varint header count (0).

Output records keep their ``offset_delta`` relative to the input batch's base offset, so each
keeps its source offset. ``frame_output`` frames them as Fluvio's SPU does (the batch's
``last_offset_delta`` spans the input processed, however few records came out);
``decode_output_batches`` reads that back by ``offset_delta`` (fluvial's client; the official one
numbers records ``base_offset + index``, as it does with Fluvio's SPU).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import NamedTuple

from fluvial.protocol.codec import (
    DecodeError, Reader, SmartModuleInitRuntimeError, SmartModuleTransformRuntimeError, encode_varint,
)
from fluvial.protocol.batch import (
    ATTR_SCHEMA_ID, CRC_OFFSET, HEADER_BYTES, check_batch, compute_crc, read_header,
)
from fluvial.protocol.record import UNZIGZAG, SCHEMA_ID_BYTES, decompress, frame_batch, read_uvarint
from fluvial.protocol.spu_api import SmartModuleExtraParams

TIMESTAMPS_VERSION = 22  # base_timestamp appears, params and join_record go
JOIN_RECORD_MIN_VERSION = 16
AGGREGATE_ACCUMULATOR_MIN_VERSION = 16

_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")

WASM_MAGIC = b"\x00asm"
GZIP_MAGIC = b"\x1f\x8b"
MAX_WASM_BYTES = 64 << 20  # a module larger than this once unzipped is refused


class TransformStatus:
    """Negative returns of a transform (``SmartModuleTransformErrorStatus``)."""

    NAMES = {-1: "unknown error", -11: "decoding base input", -22: "decoding records",
             -33: "encoding output", -44: "parsing extra params", -55: "undefined right record"}


class InitStatus:
    """Negative returns of ``init`` (``SmartModuleInitErrorStatus``)."""

    INIT_ERROR = -2
    NAMES = {-1: "unknown error", -2: "init error", -10: "decoding input", -11: "encoding output"}


class OutRecord(NamedTuple):
    """A record a module returned: deltas relative to its input batch."""

    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes


class LookbackStatus:
    """Negative returns of ``look_back`` (``SmartModuleLookbackErrorStatus``)."""

    PROPAGATED_ERROR = -99
    NAMES = {-1: "unknown error", -66: "decoding base input", -77: "decoding records",
             -88: "encoding output", -99: "propagated error"}


class TransformOutput(NamedTuple):
    """What a transform returned: its records still encoded (``raw``: i32 count + records, the
    layout of a batch's records section), their count, its error and its accumulator."""

    raw: bytes
    count: int
    error: SmartModuleTransformRuntimeError | None
    accumulator: bytes | None  # aggregate only

    @property
    def records(self) -> list[OutRecord]:
        return decode_out_records(Reader(self.raw))


class ModuleError(ValueError):
    """Bytes that are not a SmartModule (neither wasm nor gzipped wasm)."""


def wasm_bytes(payload: bytes, limit: int = MAX_WASM_BYTES) -> bytes:
    """The raw wasm of a SmartModule payload: raw wasm, gzipped wasm (Fluvio's CLI and AdHoc
    invocations gzip it; ``FluvioAdmin.create_smartmodule`` does not), or WAT text.

    Raises:
        ModuleError: anything else, or more than ``limit`` bytes once unzipped.
    """
    data = bytes(payload)
    if data[:2] == GZIP_MAGIC:
        try:
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            data = d.decompress(data, limit + 1)
        except (zlib.error, gzip.BadGzipFile, EOFError) as e:
            raise ModuleError(f"gzip: {e}") from None
        if len(data) > limit:
            raise ModuleError(f"module larger than {limit} bytes once unzipped")
    if data[:4] == WASM_MAGIC:
        return data
    if data.lstrip()[:1] == b"(":
        return data  # WAT text; wasmtime compiles it
    raise ModuleError("not a wasm module (no \\0asm magic, not gzip)")


# ---------------------------------------------------------------------------------- encoders


def _params(params: dict[str, str], version: int) -> bytes:
    w = bytearray()
    SmartModuleExtraParams(dict(sorted(params.items())), None).wire_encode(w, version)
    return bytes(w)


def encode_input(base_offset: int, records: bytes, version: int, *, base_timestamp: int = 0,
                 params: dict[str, str] | None = None, accumulator: bytes | None = None) -> bytes:
    """A ``SmartModuleInput`` (``SmartModuleAggregateInput`` when ``accumulator`` is given).

    ``records`` is an uncompressed records section: i32 count + the records, as stored.

    >>> encode_input(5, b"\\0\\0\\0\\0", 24, base_timestamp=7).hex()
    '00000000000000050000000400000000' + '0000000000000007'
    """
    parts = [_I64.pack(base_offset), _I32.pack(len(records)), records]
    if version <= TIMESTAMPS_VERSION:
        parts.append(_params(params or {}, version))
        if version >= JOIN_RECORD_MIN_VERSION:
            parts.append(_I32.pack(0))
    if version >= TIMESTAMPS_VERSION:
        parts.append(_I64.pack(base_timestamp))
    if accumulator is not None:
        parts += [_I32.pack(len(accumulator)), accumulator]
    return b"".join(parts)


def encode_init_input(params: dict[str, str], version: int) -> bytes:
    """A ``SmartModuleInitInput``: the params (map<string,string>, lookback None from v20)."""
    return _params(params, version)


def encode_out_records(records: list[OutRecord]) -> bytes:
    """``Vec<Record>`` (the inverse of ``decode_out_records``; used by tests and fakes)."""
    parts = [_I32.pack(len(records))]
    for r in records:
        body = [b"\x00", encode_varint(r.timestamp_delta), encode_varint(r.offset_delta)]
        if r.key is None:
            body.append(b"\x00")
        else:
            body += [b"\x01", encode_varint(len(r.key)), r.key]
        body += [encode_varint(len(r.value)), r.value, b"\x00"]
        b = b"".join(body)
        parts += [encode_varint(len(b)), b]
    return b"".join(parts)


# ---------------------------------------------------------------------------------- decoders


def _varint(data: bytes, p: int) -> tuple[int, int]:
    raw, p = read_uvarint(data, p)
    return (raw >> 1) ^ -(raw & 1), p


def decode_out_records(r: Reader, make=OutRecord._make) -> list:
    """``Vec<Record>`` at ``r``: one ``make((offset_delta, timestamp_delta, key, value))`` per
    record (``OutRecord`` by default).

    Raises:
        DecodeError: truncated or malformed, naming the record.
    """
    (count,) = r.unpack(_I32, "Vec<Record> count")
    if count < 0 or count > r.remaining() // 7:
        raise DecodeError(f"Vec<Record>: count {count} does not fit {r.remaining()} bytes")
    data = bytes(r.buf[r.pos:r.end])
    base = r.pos
    out = []
    append = out.append
    unzigzag = UNZIGZAG
    slow = _varint
    p = 0
    i = 0
    try:
        for i in range(count):
            b = data[p]  # length: 1-byte varints inline, the rest through _varint
            if b < 0x80:
                n, p = unzigzag[b], p + 1
            else:
                n, p = slow(data, p)
            end = p + n
            if n < 0 or end > len(data):
                raise DecodeError(f"length {n} runs past the output")
            b = data[p + 1]  # after the attributes byte: timestamp_delta
            if b < 0x80:
                tsd, p = unzigzag[b], p + 2
            else:
                tsd, p = slow(data, p + 1)
            b = data[p]
            if b < 0x80:
                od, p = unzigzag[b], p + 1
            else:
                od, p = slow(data, p)
            tag = data[p]
            p += 1
            key = None
            if tag == 1:
                kl, p = slow(data, p)
                if kl < 0 or p + kl > end:
                    raise DecodeError(f"key length {kl}")
                key, p = data[p:p + kl], p + kl
            elif tag != 0:
                raise DecodeError(f"key tag {tag}")
            b = data[p]
            if b < 0x80:
                vl, p = unzigzag[b], p + 1
            else:
                vl, p = slow(data, p)
            if vl < 0 or p + vl > end:
                raise DecodeError(f"value length {vl}")
            value, p = data[p:p + vl], p + vl
            if data[p] or p + 1 != end:
                raise DecodeError("headers are not supported" if data[p] else "record length mismatch")
            p = end
            append(make((od, tsd, key, value)))
    except IndexError:
        raise DecodeError(f"output record {i}: truncated") from None
    except DecodeError as e:
        raise DecodeError(f"output record {i} at {base + p}: {e}") from None
    r.pos = base + p
    return out


def _walk_records(data: bytes) -> tuple[int, int]:
    """``(count, end)`` of the ``Vec<Record>`` at the start of ``data``, checking only that each
    record's length fits: the records are passed on as they are (a consumer's decoder checks
    their fields), so a module's output costs one varint per record here.

    Raises:
        DecodeError: a count or a length that does not fit.
    """
    if len(data) < 4:
        raise DecodeError(f"Vec<Record>: {len(data)} bytes, no count")
    (count,) = _I32.unpack_from(data, 0)
    if count < 0 or count > (len(data) - 4) // 7:
        raise DecodeError(f"Vec<Record>: count {count} does not fit {len(data) - 4} bytes")
    p = 4
    n = len(data)
    try:
        for _ in range(count):
            b = data[p]
            if b < 0x80:
                p += 1 + (b >> 1) if not b & 1 else -1 << 40
            else:
                raw, q = read_uvarint(data, p)
                p = q + (raw >> 1) if not raw & 1 else -1 << 40
            if not 0 <= p <= n:
                raise DecodeError(f"Vec<Record>: a record runs past the {n}-byte output")
    except IndexError:
        raise DecodeError("Vec<Record>: truncated") from None
    return count, p


def decode_output(data: bytes, version: int, *, aggregate: bool = False) -> TransformOutput:
    """A ``SmartModuleOutput`` (``SmartModuleAggregateOutput`` with ``aggregate``).

    Raises:
        DecodeError: the module returned bytes that are not one.
    """
    count, end = _walk_records(data)
    r = Reader(data, end)
    (tag,) = r.unpack(struct.Struct(">B"), "Option<error> tag")
    if tag not in (0, 1):
        raise DecodeError(f"Option<error>: tag {tag}")
    error = SmartModuleTransformRuntimeError.wire_decode(r, version) if tag else None
    acc = None
    if aggregate:
        acc = b""
        if version >= AGGREGATE_ACCUMULATOR_MIN_VERSION:
            (n,) = r.unpack(_I32, "accumulator length")
            acc = r.take(n, "accumulator")
    return TransformOutput(bytes(data[:end]), count, error, acc)


def decode_init_error(data: bytes, version: int) -> str:
    """The hint of a ``SmartModuleInitOutput``."""
    return SmartModuleInitRuntimeError.decode(data, version).hint


def decode_lookback_error(data: bytes, version: int) -> str:
    """The hint of a ``SmartModuleLookbackOutput`` (``SmartModuleLookbackRuntimeError``: hint,
    offset, key, value; only the hint is read)."""
    return SmartModuleInitRuntimeError.decode(data, version).hint  # same first field: hint str


# ------------------------------------------------------------------------------ batch output

_LOD_OFFSET = struct.calcsize(">qiibIh")  # last_offset_delta: after base, length, epoch, magic, crc, attributes


class Produced(NamedTuple):
    """An output record placed in the partition: its source offset and timestamp (ms, -1 unknown)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


def frame_output(section: bytes, count: int, base_offset: int, last_offset_delta: int,
                 first_timestamp: int = -1, max_time_stamp: int = -1) -> bytes:
    """A batch of ``count`` encoded records (``section``: i32 count + records) spanning
    ``base_offset .. base_offset + last_offset_delta``, in the form Fluvio's SPU sends SmartModule
    output (``process_batch``): the records keep their ``offset_delta``, the span covers every
    input record processed (the official client counts ``last_offset_delta + 1`` per batch to
    know when a non-continuous stream is done), so the count is usually smaller than
    ``last_offset_delta + 1``; ``count`` 0 is a batch that only covers a span. Uncompressed.

    >>> b = frame_output(encode_out_records([OutRecord(1, 0, None, b"x")]), 1, 2, 3)
    >>> read_header(b).last_offset_delta, read_header(b).base_offset
    (3, 2)
    """
    batch = bytearray(frame_batch(section, count=max(count, 1), compression=0,
                                  first_timestamp=first_timestamp, max_time_stamp=max_time_stamp,
                                  base_offset=base_offset))
    _I32.pack_into(batch, _LOD_OFFSET, last_offset_delta)
    _U32.pack_into(batch, CRC_OFFSET, compute_crc(batch, 0, len(batch)))
    return bytes(batch)


def span_batch(start: int, end: int) -> bytes:
    """A batch with no records covering offsets ``[start, end)`` (see ``frame_output``)."""
    return frame_output(_I32.pack(0), 0, start, end - 1 - start)


def decode_output_batches(buf, pos: int, end: int, make=Produced._make) -> list:
    """The records of SmartModule output batches ``buf[pos:end]`` (as ``frame_output`` makes
    them, or plain stored batches), each at ``base_offset + offset_delta``: the decoder of a
    consumer that asked for SmartModules, since these batches hold fewer records than
    ``last_offset_delta + 1``. One ``make((offset, timestamp, key, value))`` per record
    (``Produced`` by default; timestamp -1 when the batch has none).

    Raises:
        DecodeError: a batch that is cut off, fails its CRC, or does not decode.
    """
    out: list = []
    while pos < end:
        h = check_batch(buf, pos)
        if pos + h.size > end:
            raise DecodeError(f"batch at {pos}: cut off at {end}")
        start = pos + HEADER_BYTES + (SCHEMA_ID_BYTES if h.attributes & ATTR_SCHEMA_ID else 0)
        data = bytes(memoryview(buf)[start:pos + h.size])
        if h.compression:
            data = decompress(h.compression, data)
        base, ts = h.base_offset, h.first_timestamp
        if ts > 0:
            out += decode_out_records(Reader(data), lambda r: make((base + r[0], ts + r[1], r[2], r[3])))
        else:
            out += decode_out_records(Reader(data), lambda r: make((base + r[0], -1, r[2], r[3])))
        pos += h.size
    return out


__all__ = [
    "AGGREGATE_ACCUMULATOR_MIN_VERSION", "GZIP_MAGIC", "InitStatus", "LookbackStatus", "ModuleError",
    "OutRecord",
    "Produced", "TIMESTAMPS_VERSION", "TransformOutput", "TransformStatus", "WASM_MAGIC",
    "decode_init_error", "decode_lookback_error", "decode_out_records", "decode_output", "decode_output_batches",
    "encode_init_input", "encode_input", "encode_out_records", "frame_output", "span_batch",
    "wasm_bytes",
]
