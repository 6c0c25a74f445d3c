"""Request/response headers and the request base shared by every server's API.

A request class is a ``@message`` with class attributes ``API_KEY``, ``DEFAULT_API_VERSION``,
``MIN_API_VERSION``, ``MAX_API_VERSION`` and ``Response`` (a ``@message`` class), as in Fluvio's
``Request`` trait. Frames:

    request  := size:i32  api_key:u16 api_version:i16 correlation_id:i32 client_id:str  body
    response := size:i32  correlation_id:i32  body

The body of a response is encoded with the version of the request it answers
(../shared/fluvio-protocol/README.md §3.3, §4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from fluvial.errors import Error
from fluvial.protocol.codec import ERROR_CODE, STR, DecodeError, Reader, SplicedWriter

_HDR = struct.Struct(">Hhi")
_I32 = struct.Struct(">i")


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str = "fluvio"

    def encode(self) -> bytes:
        w = bytearray(_HDR.pack(self.api_key, self.api_version, self.correlation_id))
        STR.encode(w, self.client_id, 0)
        return bytes(w)

    @classmethod
    def read(cls, r: Reader) -> RequestHeader:
        key, version, corr = r.unpack(_HDR, "request header")
        return cls(key, version, corr, STR.decode(r, 0))


_API_KEY = struct.Struct(">H")


def peek_api_key(payload: bytes) -> int | None:
    """The api key of a request payload (no size prefix), read without decoding the rest (what a
    server needs to bound a request before decoding it); None when too short to hold one.
    ``RequestHeader.read`` is its full twin."""
    if len(payload) < _API_KEY.size:
        return None
    return _API_KEY.unpack_from(payload, 0)[0]


class Request:
    """Mixin for request messages; subclasses set the class attributes below."""

    API_KEY: ClassVar[int]
    DEFAULT_API_VERSION: ClassVar[int] = 0
    MIN_API_VERSION: ClassVar[int] = 0
    MAX_API_VERSION: ClassVar[int] = 0
    Response: ClassVar[type]


def encode_request(req: Any, correlation_id: int, version: int | None = None,
                   client_id: str = "fluvio") -> bytes:
    """The whole frame (size prefix included) for ``req``."""
    return b"".join(encode_request_pieces(req, correlation_id, version, client_id))


def encode_request_pieces(req: Any, correlation_id: int, version: int | None = None,
                          client_id: str = "fluvio") -> list[bytes]:
    """The frame of ``encode_request`` in pieces, for one writev: its large record sets (a
    producer's batches) are pieces of their own, never copied (``codec.SplicedWriter``).

    >>> from fluvial.protocol.spu_api import ProduceRequest, TopicProduceData, PartitionProduceData
    >>> batches = [b"a" * 20_000, b"b" * 10, b"c" * 30_000]
    >>> req = ProduceRequest(None, 1, 1000, [TopicProduceData("t", [PartitionProduceData(0, batches)])], [])
    >>> pieces = encode_request_pieces(req, 7)
    >>> pieces[1] is batches[0], pieces[2], pieces[3] is batches[2], len(pieces)  # header, a, b, c, tail
    (True, b'bbbbbbbbbb', True, 5)
    >>> b"".join(pieces) == encode_request(req, 7)
    True
    """
    v = req.DEFAULT_API_VERSION if version is None else version
    w = SplicedWriter(4)
    w += _HDR.pack(req.API_KEY, v, correlation_id)
    STR.encode(w, client_id, 0)
    req.wire_encode(w, v)
    _I32.pack_into(w, 0, w.total() - 4)
    return w.pieces()


def encode_response(resp: Any, correlation_id: int, version: int) -> bytes:
    """The whole frame (size prefix included) for ``resp`` answering ``correlation_id``."""
    w = bytearray(8)
    resp.wire_encode(w, version)
    _I32.pack_into(w, 0, len(w) - 4)
    _I32.pack_into(w, 4, correlation_id)
    return bytes(w)


def encode_error_response(correlation_id: int, error: Error) -> bytes:
    """The answer to a request we cannot decode at all (unknown api key or version): the
    correlation id followed by an ErrorCode. Every fluvial response that can fail as a whole starts
    with its ErrorCode, and ApiVersionsResponse does too, so a client reads it as an error."""
    w = bytearray(8)
    ERROR_CODE.encode(w, error, 0)
    _I32.pack_into(w, 0, len(w) - 4)
    _I32.pack_into(w, 4, correlation_id)
    return bytes(w)


def decode_request(payload: bytes, registry: dict[int, type]) -> tuple[RequestHeader, Any]:
    """Decode a request payload (no size prefix) with the class registered for its api key.

    Raises:
        UnsupportedRequest: the key is unknown or the version out of range; carries the header.
        DecodeError: the bytes are malformed.
    """
    r = Reader(payload)
    header = RequestHeader.read(r)
    cls = registry.get(header.api_key)
    if cls is None:
        raise UnsupportedRequest(header, f"unknown api key {header.api_key}")
    if not cls.MIN_API_VERSION <= header.api_version <= cls.MAX_API_VERSION:
        raise UnsupportedRequest(
            header, f"api key {header.api_key} version {header.api_version} not in "
                    f"{cls.MIN_API_VERSION}..{cls.MAX_API_VERSION}")
    return header, cls.wire_decode(r, header.api_version)


def decode_response(payload: bytes, cls: type, version: int) -> tuple[int, Any]:
    """(correlation_id, response) from a response payload (no size prefix)."""
    r = Reader(payload)
    (corr,) = r.unpack(_I32, "correlation id")
    return corr, cls.wire_decode(r, version)


def response_correlation_id(payload: bytes) -> int:
    if len(payload) < 4:
        raise DecodeError(f"response: {len(payload)} bytes, shorter than a correlation id")
    return _I32.unpack_from(payload, 0)[0]


class UnsupportedRequest(DecodeError):
    def __init__(self, header: RequestHeader, reason: str):
        super().__init__(reason)
        self.header = header


# ------------------------------------------------------------------------------ ApiVersions (18)
# Shared by the SC and the SPU (sc.md §2). Defined here so both servers' registries can use it.

from fluvial.protocol.codec import I16, Vec, message, wire  # noqa: E402

API_VERSIONS_KEY = 18


@message
class ApiVersionKey:
    api_key: int = wire(I16)
    min_version: int = wire(I16)
    max_version: int = wire(I16)


@message
class ApiVersionsResponse:
    error_code: Error = wire(ERROR_CODE)
    api_keys: list[ApiVersionKey] = wire(Vec(ApiVersionKey))
    platform_version: str = wire(STR, default="0.0.0")

    def lookup_version(self, api_key: int, min_version: int, max_version: int) -> int | None:
        """Fluvio's lookup_version: the first overlapping entry gives min(max_version, entry.max)."""
        for k in self.api_keys:
            if k.api_key == api_key and k.max_version >= min_version and k.min_version <= max_version:
                return min(max_version, k.max_version)
        return None


@message
class ApiVersionsRequest(Request):
    API_KEY: ClassVar[int] = API_VERSIONS_KEY
    DEFAULT_API_VERSION: ClassVar[int] = 2
    MIN_API_VERSION: ClassVar[int] = 0
    MAX_API_VERSION: ClassVar[int] = 2
    Response: ClassVar[type] = ApiVersionsResponse

    client_version: str = wire(STR, min_version=1, default="0.15.2")
    client_os: str = wire(STR, min_version=1, default="linux")
    client_arch: str = wire(STR, min_version=1, default="x86_64")
