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

Output records keep their ``offset_delta`` relative to the input batch's base offset; Fluvio's SPU
relies on that to give each output record its source offset. ``output_batches`` turns them into
stored-format batches in which ``offset = base_offset + index`` holds (fluvial's decoder and the
official client agree on that form): one batch per run of consecutive offsets.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from typing import NamedTuple

from fluvial.protocol.codec import (
    DecodeError, Reader, SmartModuleInitRuntimeError, SmartModuleTransformRuntimeError, encode_varint,
)
from fluvial.protocol.record import ProducerRecord, encode_batch, read_uvarint
from fluvial.protocol.spu_api import SmartModuleExtraParams

TIMESTAMPS_VERSION = 22  # base_timestamp appears, params and join_record go
JOIN_RECORD_MIN_VERSION = 16
AGGREGATE_ACCUMULATOR_MIN_VERSION = 16

_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

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


class TransformOutput(NamedTuple):
    records: list[OutRecord]
    error: SmartModuleTransformRuntimeError | None
    accumulator: bytes | None  # aggregate only


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


def decode_out_records(r: Reader) -> list[OutRecord]:
    """``Vec<Record>`` at ``r``.

    Raises:
        DecodeError: truncated or malformed, naming the record.
    """
    (count,) = r.unpack(_I32, "Vec<Record> count")
    if count < 0 or count > r.remaining() // 7:
        raise DecodeError(f"Vec<Record>: count {count} does not fit {r.remaining()} bytes")
    data = bytes(r.buf[r.pos:r.end])
    base = r.pos
    out = []
    p = 0
    i = 0
    try:
        for i in range(count):
            n, p = _varint(data, p)
            end = p + n
            if n < 0 or end > len(data):
                raise DecodeError(f"length {n} runs past the output")
            p += 1  # attributes
            tsd, p = _varint(data, p)
            od, p = _varint(data, p)
            tag = data[p]
            p += 1
            key = None
            if tag == 1:
                kl, p = _varint(data, p)
                if kl < 0 or p + kl > end:
                    raise DecodeError(f"key length {kl}")
                key, p = data[p:p + kl], p + kl
            elif tag != 0:
                raise DecodeError(f"key tag {tag}")
            vl, p = _varint(data, p)
            if vl < 0 or p + vl > end:
                raise DecodeError(f"value length {vl}")
            value, p = data[p:p + vl], p + vl
            headers, p = _varint(data, p)
            if headers != 0 or p != end:
                raise DecodeError("headers are not supported" if headers else "record length mismatch")
            out.append(OutRecord(od, tsd, key, value))
    except IndexError:
        raise DecodeError(f"output record {i}: truncated") from None
    except DecodeError as e:
        raise DecodeError(f"output record {i} at {base + p}: {e}") from None
    r.pos = base + p
    return out


def decode_output(data: bytes, version: int, *, aggregate: bool = False) -> TransformOutput:
    """A ``SmartModuleOutput`` (``SmartModuleAggregateOutput`` with ``aggregate``).

    Raises:
        DecodeError: the module returned bytes that are not one.
    """
    r = Reader(data)
    records = decode_out_records(r)
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
    return TransformOutput(records, error, acc)


def decode_init_error(data: bytes, version: int) -> str:
    """The hint of a ``SmartModuleInitOutput``."""
    return SmartModuleInitRuntimeError.decode(data, version).hint


# ------------------------------------------------------------------------------ batch output


def output_batches(records: list[OutRecord], base_offset: int, first_timestamp: int) -> list[bytes]:
    """Stored-format batches (uncompressed, CRC set) holding ``records`` at their source
    offsets: ``base_offset + offset_delta``. A new batch starts wherever the next record's offset
    is not one more than the previous one, so that ``offset = base_offset + index`` in each.

    >>> [len(b) > 0 for b in output_batches([OutRecord(0, 0, None, b"a"),
    ...                                      OutRecord(2, 0, None, b"c")], 10, 1)]
    [True, True]
    """
    out: list[bytes] = []
    run: list[OutRecord] = []

    def flush():
        if run:
            out.append(encode_batch(
                [ProducerRecord(r.value, r.key, 0) for r in run],
                base_offset=base_offset + run[0].offset_delta, first_timestamp=first_timestamp,
                timestamp_deltas=[r.timestamp_delta for r in run]))
            run.clear()

    for r in records:
        if run and r.offset_delta != run[-1].offset_delta + 1:
            flush()
        run.append(r)
    flush()
    return out


__all__ = [
    "AGGREGATE_ACCUMULATOR_MIN_VERSION", "GZIP_MAGIC", "InitStatus", "ModuleError", "OutRecord",
    "TIMESTAMPS_VERSION", "TransformOutput", "TransformStatus", "WASM_MAGIC", "decode_init_error",
    "decode_out_records", "decode_output", "encode_init_input", "encode_input", "encode_out_records",
    "output_batches", "wasm_bytes",
]
