"""Primitive encodings and the declarative message codec of Fluvio's wire protocol.

Theory of operation
-------------------
Every wire type is an object with ``encode(w, value, version)`` appending to a ``bytearray`` and
``decode(r, version)`` reading from a ``Reader``. Messages are dataclasses declared with
``@message`` whose fields say their wire type with ``wire(T, min_version=, max_version=)``:

    @message
    class TopicReplicaParam:
        partitions: int = wire(U32)
        replication_factor: int = wire(U32)
        ignore_rack_assignment: bool = wire(BOOL)

Fields go on the wire in declaration order, with no tags and no struct length
(../shared/fluvio-protocol/README.md §3). A gated field is written and read only when
``min_version <= version <= max_version``; when absent it keeps its default, as Fluvio's decoder
does. The version is always the request header's ``api_version``, for the request and its response.

Rules for decoders: all input is untrusted. Every read checks the bytes that remain before it
touches them, so a short or hostile buffer raises ``DecodeError`` naming the field and the offset,
never ``IndexError`` or ``struct.error``. Lengths are checked against the bytes that remain before
anything is allocated, so a length field cannot make us allocate more than the frame holds.
Decoders never look at trailing bytes; the caller decides whether leftovers matter.
"""

from __future__ import annotations

import copy
import dataclasses
import struct
from enum import IntEnum
from typing import Any, Callable

from fluvial.errors import PAYLOAD, Error, ErrorCode


class DecodeError(ValueError):
    """The peer sent bytes that do not decode (what and where)."""


class EncodeError(ValueError):
    """We were asked to encode a value that does not fit its wire type (our bug or bad input)."""


class Reader:
    """A cursor over a bytes-like object. ``pos`` moves forward; ``end`` bounds every read."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None):
        self.buf = data if isinstance(data, memoryview) else memoryview(data)
        self.pos = pos
        self.end = len(self.buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise DecodeError(f"{what}: need {n} bytes at offset {pos}, have {self.end - pos}")
        self.pos = pos + n
        return pos

    def take(self, n: int, what: str = "bytes") -> bytes:
        pos = self.need(n, what)
        return bytes(self.buf[pos : pos + n])

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        pos = self.need(st.size, what)
        return st.unpack_from(self.buf, pos)


# ---------------------------------------------------------------------------------- primitives


class WireType:
    """Base of the wire types. ``default()`` is the value a missing (version-gated) field takes."""

    name = "?"

    def encode(self, w: bytearray, v: Any, version: int) -> None:
        raise NotImplementedError

    def decode(self, r: Reader, version: int) -> Any:
        raise NotImplementedError

    def default(self) -> Any:
        return None

    def __repr__(self) -> str:
        return self.name


class Int(WireType):
    def __init__(self, fmt: str, name: str):
        self.st = struct.Struct(">" + fmt)
        self.name = name

    def encode(self, w, v, version):
        try:
            w += self.st.pack(v)
        except struct.error as e:
            raise EncodeError(f"{self.name}: {v!r}: {e}") from None

    def decode(self, r, version):
        return r.unpack(self.st, self.name)[0]

    def default(self):
        return 0


I8, I16, I32, I64 = Int("b", "i8"), Int("h", "i16"), Int("i", "i32"), Int("q", "i64")
U8, U16, U32, U64 = Int("B", "u8"), Int("H", "u16"), Int("I", "u32"), Int("Q", "u64")
F64 = Int("d", "f64")


class Bool(WireType):
    name = "bool"

    def encode(self, w, v, version):
        w.append(1 if v else 0)

    def decode(self, r, version):
        b = r.buf[r.need(1, "bool")]
        if b > 1:
            raise DecodeError(f"bool: not a valid bool value {b} at offset {r.pos - 1}")
        return b == 1

    def default(self):
        return False


BOOL = Bool()


class Str(WireType):
    """u16 length + UTF-8. Decoded lengths <= 0 give "" (Fluvio reads the length as i16)."""

    name = "str"

    def encode(self, w, v, version):
        data = v.encode()
        if len(data) > 0x7FFF:
            raise EncodeError(f"str: {len(data)} bytes is longer than 32767")
        w += struct.pack(">H", len(data))
        w += data

    def decode(self, r, version):
        (n,) = r.unpack(_I16, "str length")
        if n <= 0:
            return ""
        pos = r.need(n, "str")
        try:
            return str(r.buf[pos : pos + n], "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"str: invalid UTF-8 at offset {pos}: {e.reason}") from None

    def default(self):
        return ""


STR = Str()
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class Bytes(WireType):
    """u32 length + raw bytes (Vec<u8>, ByteBuf). Decoded counts < 1 give b""."""

    name = "bytes"

    def encode(self, w, v, version):
        w += struct.pack(">I", len(v))
        w += v

    def decode(self, r, version):
        (n,) = r.unpack(_I32, "bytes length")
        return r.take(n, "bytes") if n > 0 else b""

    def default(self):
        return b""


BYTES = Bytes()


SPLICE_FROM_BYTES = 16 * 1024  # a record set piece this large is spliced, not copied (below)


class SplicedWriter(bytearray):
    """An encoding buffer that large record sets are not copied into: ``RawRecords`` hands them
    to ``splice``, which notes where they go (the buffer's length now), and ``pieces()`` gives
    the encoding as the bytes written, cut at those points, with the spliced pieces between
    them: ``b"".join(w.pieces())`` is what a plain ``bytearray`` would hold. For frames written
    with one writev (a producer's request: its batches go out as the producer encoded them)."""

    def __init__(self, size: int = 0):
        super().__init__(size)
        self.spliced: list[tuple[int, bytes]] = []  # (where, piece), in order

    def splice(self, piece: bytes) -> None:
        self.spliced.append((len(self), piece))

    def total(self) -> int:
        """The encoding's length, spliced pieces included."""
        return len(self) + sum(len(piece) for _, piece in self.spliced)

    def pieces(self) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        for at, piece in self.spliced:
            if at > start:
                out.append(bytes(self[start:at]))
                start = at
            out.append(piece)
        if start < len(self) or not out:
            out.append(bytes(self[start:]))
        return out


class RawRecords(WireType):
    """A RecordSet carried opaque: i32 byte length + the batch bytes (records.md §3). Encodes
    ``bytes`` or a list of them (a producer's batches, in order, not joined first); pieces of
    ``SPLICE_FROM_BYTES`` or more are spliced into a ``SplicedWriter`` rather than copied."""

    name = "records"

    def encode(self, w, v, version):
        pieces = v if isinstance(v, list) else (v,)
        w += struct.pack(">i", sum(len(p) for p in pieces))
        splicing = type(w) is SplicedWriter
        for p in pieces:
            if splicing and len(p) >= SPLICE_FROM_BYTES:
                w.splice(bytes(p))
            else:
                w += p

    def decode(self, r, version):
        (n,) = r.unpack(_I32, "record set length")
        if n < 0:
            raise DecodeError(f"record set: negative length {n} at offset {r.pos - 4}")
        return r.take(n, "record set")

    def default(self):
        return b""


RECORDS = RawRecords()


class Opt(WireType):
    def __init__(self, inner: Any):
        self.inner = as_type(inner)
        self.name = f"opt<{self.inner.name}>"

    def encode(self, w, v, version):
        if v is None:
            w.append(0)
        else:
            w.append(1)
            self.inner.encode(w, v, version)

    def decode(self, r, version):
        if BOOL.decode(r, version):
            return self.inner.decode(r, version)
        return None


class Vec(WireType):
    """u32 count + elements. Decoded counts < 1 give []. Each element needs >= 1 byte, so a count
    larger than the bytes left is rejected before the loop (no allocation from a forged count)."""

    def __init__(self, inner: Any):
        self.inner = as_type(inner)
        self.name = f"vec<{self.inner.name}>"

    def encode(self, w, v, version):
        w += struct.pack(">I", len(v))
        enc = self.inner.encode
        for item in v:
            enc(w, item, version)

    def decode(self, r, version):
        (n,) = r.unpack(_I32, f"{self.name} count")
        if n <= 0:
            return []
        if n > r.remaining():
            raise DecodeError(f"{self.name}: count {n} exceeds the {r.remaining()} bytes left")
        dec = self.inner.decode
        return [dec(r, version) for _ in range(n)]

    def default(self):
        return []


class Map(WireType):
    """u16 count + key/value pairs, written in ascending key order (a Rust BTreeMap)."""

    def __init__(self, key: Any, value: Any):
        self.key, self.value = as_type(key), as_type(value)
        self.name = f"map<{self.key.name},{self.value.name}>"

    def encode(self, w, v, version):
        w += struct.pack(">H", len(v))
        for k in sorted(v):
            self.key.encode(w, k, version)
            self.value.encode(w, v[k], version)

    def decode(self, r, version):
        (n,) = r.unpack(_U16, f"{self.name} count")
        out = {}
        for _ in range(n):
            k = self.key.decode(r, version)
            out[k] = self.value.decode(r, version)
        return out

    def default(self):
        return {}


_U16 = struct.Struct(">H")


class Duration(WireType):
    """u64 seconds + u32 nanoseconds, as a float of seconds."""

    name = "duration"
    st = struct.Struct(">QI")

    def encode(self, w, v, version):
        secs = int(v)
        w += self.st.pack(secs, int(round((v - secs) * 1e9)))

    def decode(self, r, version):
        s, ns = r.unpack(self.st, "duration")
        return s + ns / 1e9

    def default(self):
        return 0.0


DURATION = Duration()


class Enum(WireType):
    """A payload-free enum: an integer tag (u8 unless said) mapped to an IntEnum."""

    def __init__(self, cls: type[IntEnum], tag: Int = U8, default: IntEnum | None = None):
        self.cls, self.tag = cls, tag
        self.name = cls.__name__
        self._default = default if default is not None else next(iter(cls))

    def encode(self, w, v, version):
        self.tag.encode(w, int(v), version)

    def decode(self, r, version):
        raw = self.tag.decode(r, version)
        try:
            return self.cls(raw)
        except ValueError:
            raise DecodeError(f"Unknown {self.name} type {raw} at offset {r.pos - self.tag.st.size}") from None

    def default(self):
        return self._default


class Union(WireType):
    """A tagged enum whose variants carry payloads. Each variant is a ``@message`` class (an empty
    one for a unit variant); the value on the Python side is an instance of one of them."""

    def __init__(self, name: str, variants: dict[int, type], tag: Int = U8, default: Any = None):
        self.name, self.tag, self.variants = name, tag, variants
        self.tags = {cls: t for t, cls in variants.items()}
        self._default = default

    def encode(self, w, v, version):
        try:
            t = self.tags[type(v)]
        except KeyError:
            raise EncodeError(f"{self.name}: {type(v).__name__} is not a variant") from None
        self.tag.encode(w, t, version)
        v.wire_encode(w, version)

    def decode(self, r, version):
        raw = self.tag.decode(r, version)
        cls = self.variants.get(raw)
        if cls is None:
            raise DecodeError(f"Unknown {self.name} type {raw} at offset {r.pos - self.tag.st.size}")
        return cls.wire_decode(r, version)

    def default(self):
        return self._default() if callable(self._default) else self._default


class Lazy(WireType):
    """Refers to a type defined later (recursive or forward references)."""

    def __init__(self, get: Callable[[], Any]):
        self.get = get
        self.name = "lazy"

    def encode(self, w, v, version):
        as_type(self.get()).encode(w, v, version)

    def decode(self, r, version):
        return as_type(self.get()).decode(r, version)


# ----------------------------------------------------------------------------------- ErrorCode


class ErrorCodeType(WireType):
    """ErrorCode: an i16 tag then the variant's payload fields (errors.md §1)."""

    name = "ErrorCode"

    def encode(self, w, v: Error, version):
        w += _I16.pack(int(v.code))
        kinds = PAYLOAD.get(v.code, ())
        if len(kinds) != len(v.args):
            raise EncodeError(f"{v.code.name}: expects {len(kinds)} payload fields, got {len(v.args)}")
        for kind, arg in zip(kinds, v.args):
            _ERROR_FIELD[kind].encode(w, arg, version)

    def decode(self, r, version):
        (raw,) = r.unpack(_I16, "error code")
        try:
            code = ErrorCode(raw)
        except ValueError:
            raise DecodeError(f"Unknown ErrorCode type {raw} at offset {r.pos - 2}") from None
        kinds = PAYLOAD.get(code)
        if not kinds:
            return Error(code)
        return Error(code, tuple(_ERROR_FIELD[k].decode(r, version) for k in kinds))

    def default(self):
        return Error()


ERROR_CODE = ErrorCodeType()


class _Tuple(WireType):
    """A fixed sequence of types carried as a Python tuple (used inside error payloads)."""

    def __init__(self, *types: Any):
        self.types = [as_type(t) for t in types]
        self.name = "(" + ",".join(t.name for t in self.types) + ")"

    def encode(self, w, v, version):
        for t, x in zip(self.types, v, strict=True):
            t.encode(w, x, version)

    def decode(self, r, version):
        return tuple(t.decode(r, version) for t in self.types)


# ------------------------------------------------------------------------------------ messages

_NO_MAX = 0x7FFF


def wire(t: Any, *, default: Any = dataclasses.MISSING, min_version: int = 0,
         max_version: int = _NO_MAX, repr: bool = True) -> Any:
    """Declare a message field of wire type ``t`` (a WireType or a ``@message`` class)."""
    wt = as_type(t)
    meta = {"wire": wt, "min": min_version, "max": max_version}
    if default is not dataclasses.MISSING:
        if isinstance(default, (list, dict, bytearray)) or _is_message(type(default)):
            return dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta,
                                     repr=repr)
        return dataclasses.field(default=default, metadata=meta, repr=repr)
    d = wt.default()
    if isinstance(d, (list, dict)) or _is_message(type(d)):
        return dataclasses.field(default_factory=lambda: as_type(t).default(), metadata=meta, repr=repr)
    return dataclasses.field(default=d, metadata=meta, repr=repr)


class MessageType(WireType):
    """The wire type of a ``@message`` class."""

    def __init__(self, cls: type):
        self.cls = cls
        self.name = cls.__name__

    def encode(self, w, v, version):
        v.wire_encode(w, version)

    def decode(self, r, version):
        return self.cls.wire_decode(r, version)

    def default(self):
        return self.cls()


def _is_message(cls: type) -> bool:
    return isinstance(cls, type) and "WIRE_FIELDS" in cls.__dict__


def as_type(t: Any) -> WireType:
    if isinstance(t, WireType):
        return t
    if _is_message(t):
        return t.WIRE_TYPE
    raise TypeError(f"not a wire type: {t!r}")


def message(cls: type | None = None, *, frozen: bool = False):
    """Class decorator: a dataclass whose fields are encoded in order with their gates."""

    def wrap(cls: type) -> type:
        cls = dataclasses.dataclass(cls, frozen=frozen, eq=True)
        fields = tuple(
            (f.name, f.metadata["wire"], f.metadata["min"], f.metadata["max"])
            for f in dataclasses.fields(cls)
            if "wire" in f.metadata
        )
        cls.WIRE_FIELDS = fields
        cls.WIRE_TYPE = MessageType(cls)

        def wire_encode(self, w: bytearray, version: int) -> None:
            for name, t, lo, hi in fields:
                if lo <= version <= hi:
                    t.encode(w, getattr(self, name), version)

        def wire_decode(klass, r: Reader, version: int):
            kwargs = {}
            for name, t, lo, hi in fields:
                if lo <= version <= hi:
                    kwargs[name] = t.decode(r, version)
            return klass(**kwargs)

        def encode(self, version: int = 0) -> bytes:
            w = bytearray()
            self.wire_encode(w, version)
            return bytes(w)

        def decode(klass, data, version: int = 0):
            """Decode one value from the start of ``data`` (trailing bytes are left alone)."""
            return klass.wire_decode(Reader(data), version)

        cls.wire_encode = wire_encode
        cls.wire_decode = classmethod(wire_decode)
        cls.encode = encode
        cls.decode = classmethod(decode)
        return cls

    return wrap(cls) if cls is not None else wrap


@message
class SmartModuleTransformRuntimeError:
    hint: str = wire(STR)
    offset: int = wire(I64)
    kind: int = wire(U8)
    record_key: bytes | None = wire(Opt(Lazy(lambda: RDATA)))
    record_value: bytes = wire(Lazy(lambda: RDATA), default=b"")

    def __str__(self) -> str:
        return f"{self.hint} at offset {self.offset}"


@message
class SmartModuleInitRuntimeError:
    hint: str = wire(STR)

    def __str__(self) -> str:
        return self.hint


class VarintBytes(WireType):
    """zigzag-varint length + bytes (RecordData inside error payloads)."""

    name = "rdata"

    def encode(self, w, v, version):
        w += encode_varint(len(v))
        w += v

    def decode(self, r, version):
        n, r.pos = decode_varint(r.buf, r.pos, r.end)
        return r.take(n, "rdata") if n > 0 else b""

    def default(self):
        return b""


RDATA = VarintBytes()


class _ReplicaKeyTuple(WireType):
    name = "ReplicaKey"

    def encode(self, w, v, version):
        STR.encode(w, v[0], version)
        U32.encode(w, v[1], version)

    def decode(self, r, version):
        return (STR.decode(r, version), U32.decode(r, version))


_ERROR_FIELD: dict[str, WireType] = {
    "str": STR,
    "opt_str": Opt(STR),
    "i64": I64,
    "u64": U64,
    "replica_key": _ReplicaKeyTuple(),
    "request_kind": U8,
    "sm_runtime": SmartModuleTransformRuntimeError.WIRE_TYPE,
    "sm_init": SmartModuleInitRuntimeError.WIRE_TYPE,
}


# ------------------------------------------------------------------------------------ varints


def encode_varint(n: int) -> bytes:
    """Standard ZigZag + LEB128 (records.md §2). Identical to Fluvio's encoder in the i32 range."""
    v = (n << 1) ^ (n >> 63)
    v &= 0xFFFFFFFFFFFFFFFF
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def decode_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """Decode a ZigZag varint at ``pos``; returns (value, new_pos). At most 10 bytes."""
    shift = 0
    v = 0
    limit = min(end, pos + 10)
    while pos < limit:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return (v >> 1) ^ -(v & 1), pos
        shift += 7
    if pos >= end:
        raise DecodeError(f"varint: truncated at offset {pos}")
    raise DecodeError(f"varint: longer than 10 bytes at offset {pos}")


__all__ = [
    "BOOL", "BYTES", "DURATION", "ERROR_CODE", "F64", "I8", "I16", "I32", "I64", "RDATA", "RECORDS",
    "STR", "U8", "U16", "U32", "U64", "Bool", "Bytes", "DecodeError", "EncodeError", "Enum", "Int",
    "Lazy", "Map", "MessageType", "Opt", "Reader", "Union", "Vec", "WireType", "as_type",
    "decode_varint", "encode_varint", "message", "wire",
]
