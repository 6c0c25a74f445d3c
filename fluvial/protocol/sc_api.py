"""The SC public API: api keys, the TypeBuffer object requests and their responses.

Theory of operation
-------------------
Keys 1001-1004 and 1006 carry one generic body for every object kind, a *TypeBuffer*
(../shared/fluvio-protocol/sc.md §3.1):

    TypeBuffer := label:str  len:u32  payload[len]

``label`` names the object kind (``"Topic"``, ``"SPU"``... the spec classes' ``LABEL``) and so
chooses how ``payload`` decodes; ``payload`` is the kind's inner request or response, encoded with
the request header's version. Each ``ObjectApi*`` class here is one TypeBuffer; its Python value
holds the ``label`` and the typed inner value (``request``, ``items`` or ``update``).

Decoding rules:

* the declared ``len`` must fit in the bytes that remain, and the payload is decoded inside exactly
  that window (bytes left over inside the window are skipped, as Fluvio does);
* a well-framed TypeBuffer whose label the operation does not know raises ``UnknownObjectType``
  (a ``DecodeError``), so that a server can answer as the real SC does,
  ``Status{..., Other("unknown admin object type")}``. ``decode_sc_request`` attaches the header.
* Versions below 11 use Fluvio's "classic" layouts (sc.md §3.7), which fluvial does not speak:
  decoding or encoding a TypeBuffer there raises ``DecodeError``/``EncodeError`` "classic encoding
  not supported". The minimum versions still follow Fluvio (README §5.1) so that the advertisement
  matches the real SC's; with that advertisement the client always uses version 19. One quirk is
  kept: Fluvio's Update decoder reads the ``len`` at every version, so ours does too.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import struct
from enum import IntEnum
from functools import cache
from typing import Any, ClassVar

from fluvial.errors import Error
from fluvial.protocol import PLATFORM_VERSION
from fluvial.protocol.api import (
    ApiVersionKey, ApiVersionsRequest, ApiVersionsResponse, Request, RequestHeader, decode_request,
)
from fluvial.protocol.codec import (
    BOOL, ERROR_CODE, I64, STR, U32, DecodeError, EncodeError, Enum, Opt, Reader, Vec, WireType,
    as_type, message, wire,
)
from fluvial.protocol.processor_objects import UPDATE_PROCESSOR_ACTION, ProcessorSpec
from fluvial.protocol.sc_objects import (
    CUSTOM_SPU_KEY, SPEC_BY_LABEL, UPDATE_TOPIC_ACTION, CustomSpuSpec, Metadata, MirrorSpec,
    SmartModuleSpec, SpuGroupSpec, TableFormatSpec, TopicSpec, metadata_type,
)


class ScApiKey(IntEnum):
    """``AdminPublicApiKey`` (crates/fluvio-sc-schema/src/apis.rs)."""

    ApiVersion = 18
    Create = 1001
    Delete = 1002
    List = 1003
    Watch = 1004
    Mirroring = 1005
    Update = 1006


COMMON_VERSION = 19  # the version of every object request (Fluvio's COMMON_VERSION)
DYN_OBJ = 11  # from this version on, object bodies are TypeBuffers

# What the real SC v0.17.3 advertises (sc.md §2.2); it does not list key 18 itself.
SC_API_VERSIONS: list[ApiVersionKey] = [
    ApiVersionKey(ScApiKey.Create, 9, 19),
    ApiVersionKey(ScApiKey.Delete, 1, 19),
    ApiVersionKey(ScApiKey.List, 15, 19),
    ApiVersionKey(ScApiKey.Watch, 15, 19),
    ApiVersionKey(ScApiKey.Mirroring, 14, 19),
    ApiVersionKey(ScApiKey.Update, 1, 19),
]


def sc_api_versions_response() -> ApiVersionsResponse:
    """The ApiVersions answer of an SC: the §2.2 table and platform "0.17.3"."""
    return ApiVersionsResponse(Error(), [dataclasses.replace(k) for k in SC_API_VERSIONS],
                               PLATFORM_VERSION)


class UnknownObjectType(DecodeError):
    """A well-framed TypeBuffer whose label the operation does not handle. ``header`` is set by
    ``decode_sc_request`` (None when raised by a bare ``wire_decode``)."""

    def __init__(self, api: str, label: str):
        super().__init__(f"unknown admin object type {label!r} for {api}")
        self.api = api
        self.label = label
        self.header: RequestHeader | None = None


# --------------------------------------------------------------------------------- Status


@message
class Status:
    """Response to Create, Delete and Update (sc.md §3.6). ``error_code`` None (0) is success."""

    name: str = wire(STR)
    error_code: Error = wire(ERROR_CODE)
    error_message: str | None = wire(Opt(STR))

    @classmethod
    def new_ok(cls, name: str) -> Status:
        return cls(name, Error(), None)

    @property
    def is_error(self) -> bool:
        return not self.error_code.ok


# ------------------------------------------------------------------------- inner requests


@message
class CommonCreateRequest:
    name: str = wire(STR)
    dry_run: bool = wire(BOOL)
    timeout: int | None = wire(Opt(U32), min_version=7)  # milliseconds


@dataclasses.dataclass
class CreateRequest:
    """``CreateRequest<S>``: ``common`` then the spec."""

    common: CommonCreateRequest
    spec: Any


@dataclasses.dataclass
class DeleteRequest:
    """``DeleteRequest<S>``: the key (a str; for CustomSpu a str name or an int id), then
    ``force`` [v>=13]."""

    key: Any
    force: bool = False


@message
class ListFilter:
    name: str = wire(STR)


@message
class ListRequest:
    name_filters: list[ListFilter] = wire(Vec(ListFilter))
    summary: bool = wire(BOOL, min_version=10)
    system: bool = wire(BOOL, min_version=13)

    def filter_names(self) -> list[str]:
        return [f.name for f in self.name_filters]


@message
class WatchRequest:
    epoch: int = wire(I64)  # the client always sends 0; the real SC ignores it
    summary: bool = wire(BOOL, min_version=10)


@dataclasses.dataclass
class UpdateRequest:
    """``UpdateRequest<S>``: key then action (an ``AddPartition``/``AddMirror`` for topics, a str
    for the other updatable kinds)."""

    key: Any
    action: Any


class MsgType(IntEnum):
    UPDATE = 0
    DELETE = 1


@dataclasses.dataclass
class Message:
    """One watch change: ``header`` then the ``Metadata`` it concerns."""

    header: MsgType
    content: Metadata


@dataclasses.dataclass
class MetadataUpdate:
    """A watch frame's payload. ``all`` non-empty means a full sync; otherwise ``changes`` apply
    in order (README §6.3)."""

    epoch: int = 0
    changes: list[Message] = dataclasses.field(default_factory=list)
    all: list[Metadata] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------- payload wire types


class CreateRequestType(WireType):
    def __init__(self, spec_cls: type):
        self.spec_cls = spec_cls
        self.spec_t = as_type(spec_cls)
        self.name = f"CreateRequest<{spec_cls.__name__}>"

    def encode(self, w, v, version):
        if not isinstance(v.spec, self.spec_cls):
            raise EncodeError(f"{self.name}: spec is a {type(v.spec).__name__}")
        v.common.wire_encode(w, version)
        self.spec_t.encode(w, v.spec, version)

    def decode(self, r, version):
        common = CommonCreateRequest.wire_decode(r, version)
        return CreateRequest(common, self.spec_t.decode(r, version))


class DeleteRequestType(WireType):
    def __init__(self, key_t: WireType):
        self.key_t = key_t
        self.name = f"DeleteRequest<{key_t.name}>"

    def encode(self, w, v, version):
        self.key_t.encode(w, v.key, version)
        if version >= 13:
            BOOL.encode(w, v.force, version)

    def decode(self, r, version):
        key = self.key_t.decode(r, version)
        return DeleteRequest(key, BOOL.decode(r, version) if version >= 13 else False)


class UpdateRequestType(WireType):
    def __init__(self, key_t: WireType, action_t: WireType):
        self.key_t, self.action_t = key_t, action_t
        self.name = f"UpdateRequest<{key_t.name},{action_t.name}>"

    def encode(self, w, v, version):
        self.key_t.encode(w, v.key, version)
        self.action_t.encode(w, v.action, version)

    def decode(self, r, version):
        key = self.key_t.decode(r, version)
        return UpdateRequest(key, self.action_t.decode(r, version))


class WatchMessageType(WireType):
    def __init__(self, spec_cls: type):
        self.content_t = metadata_type(spec_cls)
        self.header_t = Enum(MsgType)
        self.name = f"Message<{self.content_t.name}>"

    def encode(self, w, v, version):
        self.header_t.encode(w, v.header, version)
        self.content_t.encode(w, v.content, version)

    def decode(self, r, version):
        header = self.header_t.decode(r, version)
        return Message(header, self.content_t.decode(r, version))


class MetadataUpdateType(WireType):
    def __init__(self, spec_cls: type):
        self.changes_t = Vec(WatchMessageType(spec_cls))
        self.all_t = Vec(metadata_type(spec_cls))
        self.name = f"MetadataUpdate<{spec_cls.__name__}>"

    def encode(self, w, v, version):
        I64.encode(w, v.epoch, version)
        self.changes_t.encode(w, v.changes, version)
        self.all_t.encode(w, v.all, version)

    def decode(self, r, version):
        epoch = I64.decode(r, version)
        changes = self.changes_t.decode(r, version)
        return MetadataUpdate(epoch, changes, self.all_t.decode(r, version))


_LIST_REQUEST = as_type(ListRequest)
_WATCH_REQUEST = as_type(WatchRequest)

# Which labels each operation handles (crates/fluvio-sc-schema/src/*/mod.rs trait impls).
_CREATABLE = (TopicSpec, SmartModuleSpec, TableFormatSpec, SpuGroupSpec, CustomSpuSpec, MirrorSpec,
              ProcessorSpec)  # the last: fluvial's own kind (processor_objects)
CREATE_LABELS: frozenset[str] = frozenset(c.LABEL for c in _CREATABLE)
DELETE_KEY_TYPES: dict[str, WireType] = {
    c.LABEL: CUSTOM_SPU_KEY if c is CustomSpuSpec else STR for c in _CREATABLE}
UPDATE_TYPES: dict[str, tuple[WireType, WireType]] = {
    TopicSpec.LABEL: (STR, UPDATE_TOPIC_ACTION),
    SmartModuleSpec.LABEL: (STR, STR),
    TableFormatSpec.LABEL: (STR, STR),
    SpuGroupSpec.LABEL: (STR, STR),
    CustomSpuSpec.LABEL: (CUSTOM_SPU_KEY, STR),
    ProcessorSpec.LABEL: (STR, UPDATE_PROCESSOR_ACTION),
}
LIST_LABELS: frozenset[str] = frozenset(SPEC_BY_LABEL)
# The real SC's watch handler serves only these; decoding accepts every label.
WATCH_SERVED_LABELS: frozenset[str] = frozenset(
    {"Topic", "SPU", "SpuGroup", "Partition", "SmartModule", "TableFormat"})


@cache
def _create_t(label: str) -> WireType | None:
    return CreateRequestType(SPEC_BY_LABEL[label]) if label in CREATE_LABELS else None


@cache
def _delete_t(label: str) -> WireType | None:
    key_t = DELETE_KEY_TYPES.get(label)
    return None if key_t is None else DeleteRequestType(key_t)


@cache
def _update_t(label: str) -> WireType | None:
    types = UPDATE_TYPES.get(label)
    return None if types is None else UpdateRequestType(*types)


@cache
def _list_response_t(label: str) -> WireType | None:
    cls = SPEC_BY_LABEL.get(label)
    return None if cls is None else Vec(metadata_type(cls))


@cache
def _watch_response_t(label: str) -> WireType | None:
    cls = SPEC_BY_LABEL.get(label)
    return None if cls is None else MetadataUpdateType(cls)


def _any_label_t(t: WireType):
    return lambda label: t if label in SPEC_BY_LABEL else None


# ---------------------------------------------------------------------------- TypeBuffer

_U32 = struct.Struct(">I")


class TypeBufferMessage:
    """Base of the ``ObjectApi*`` classes: a ``label`` and one inner value, carried as a
    TypeBuffer. Subclasses set ``API`` (a name for errors), ``_INNER`` (the inner field's name)
    and ``_payload_type`` (label -> WireType, or None when the label is not handled)."""

    API: ClassVar[str]
    _INNER: ClassVar[str]
    _LEN_FROM_VERSION: ClassVar[int] = DYN_OBJ  # below it, Fluvio writes no u32 length
    label: str

    @staticmethod
    def _payload_type(label: str) -> WireType | None:
        raise NotImplementedError

    @property
    def spec_class(self) -> type:
        return SPEC_BY_LABEL[self.label]

    def wire_encode(self, w: bytearray, version: int) -> None:
        if version < DYN_OBJ:
            raise EncodeError(f"{self.API}: classic encoding (version {version} < {DYN_OBJ}) "
                              f"not supported")
        t = self._payload_type(self.label)
        if t is None:
            raise EncodeError(f"{self.API}: unknown admin object type {self.label!r}")
        STR.encode(w, self.label, version)
        at = len(w)
        w += b"\x00\x00\x00\x00"
        t.encode(w, getattr(self, self._INNER), version)
        _U32.pack_into(w, at, len(w) - at - 4)

    @classmethod
    def wire_decode(cls, r: Reader, version: int):
        if version < cls._LEN_FROM_VERSION:
            raise DecodeError(f"{cls.API}: classic encoding (version {version} < {DYN_OBJ}) "
                              f"not supported")
        label = STR.decode(r, version)
        (n,) = r.unpack(_U32, f"{cls.API} payload length")
        if n > r.remaining():
            raise DecodeError(f"{cls.API}: payload length {n} at offset {r.pos - 4} exceeds the "
                              f"{r.remaining()} bytes left")
        t = cls._payload_type(label)
        if t is None:
            raise UnknownObjectType(cls.API, label)
        window = Reader(r.buf, r.pos, r.pos + n)
        r.pos += n
        return cls(label, t.decode(window, version))

    def encode(self, version: int = COMMON_VERSION) -> bytes:
        w = bytearray()
        self.wire_encode(w, version)
        return bytes(w)

    @classmethod
    def decode(cls, data, version: int = COMMON_VERSION):
        """Decode one value from the start of ``data`` (trailing bytes are left alone)."""
        return cls.wire_decode(Reader(data), version)


# ------------------------------------------------------------------------------ responses


@dataclasses.dataclass
class ObjectApiListResponse(TypeBufferMessage):
    """TypeBuffer of ``ListResponse<S>{inner: vec<Metadata<S>>}``; ``items`` is that vec."""

    API: ClassVar[str] = "List response"
    _INNER: ClassVar[str] = "items"

    label: str
    items: list[Metadata] = dataclasses.field(default_factory=list)

    _payload_type = staticmethod(_list_response_t)

    @classmethod
    def of(cls, spec_cls: type, items: list[Metadata]) -> ObjectApiListResponse:
        return cls(spec_cls.LABEL, list(items))


@dataclasses.dataclass
class ObjectApiWatchResponse(TypeBufferMessage):
    """TypeBuffer of ``WatchResponse<S>{inner: MetadataUpdate<S>}``; ``update`` is that inner."""

    API: ClassVar[str] = "Watch response"
    _INNER: ClassVar[str] = "update"

    label: str
    update: MetadataUpdate = dataclasses.field(default_factory=MetadataUpdate)

    _payload_type = staticmethod(_watch_response_t)

    @classmethod
    def of(cls, spec_cls: type, epoch: int, changes: list[Message] = (),
           all: list[Metadata] = ()) -> ObjectApiWatchResponse:  # noqa: A002 - Fluvio's name
        return cls(spec_cls.LABEL, MetadataUpdate(epoch, list(changes), list(all)))


# ------------------------------------------------------------------------------- requests


@dataclasses.dataclass
class ObjectApiCreateRequest(TypeBufferMessage, Request):
    API_KEY: ClassVar[int] = ScApiKey.Create
    DEFAULT_API_VERSION: ClassVar[int] = COMMON_VERSION
    MIN_API_VERSION: ClassVar[int] = 9
    MAX_API_VERSION: ClassVar[int] = COMMON_VERSION
    Response: ClassVar[type] = Status
    API: ClassVar[str] = "Create"
    _INNER: ClassVar[str] = "request"

    label: str
    request: CreateRequest

    _payload_type = staticmethod(_create_t)

    @classmethod
    def of(cls, name: str, spec: Any, dry_run: bool = False,
           timeout_ms: int | None = None) -> ObjectApiCreateRequest:
        return cls(type(spec).LABEL,
                   CreateRequest(CommonCreateRequest(name, dry_run, timeout_ms), spec))


@dataclasses.dataclass
class ObjectApiDeleteRequest(TypeBufferMessage, Request):
    API_KEY: ClassVar[int] = ScApiKey.Delete
    DEFAULT_API_VERSION: ClassVar[int] = COMMON_VERSION
    MIN_API_VERSION: ClassVar[int] = 1
    MAX_API_VERSION: ClassVar[int] = COMMON_VERSION
    Response: ClassVar[type] = Status
    API: ClassVar[str] = "Delete"
    _INNER: ClassVar[str] = "request"

    label: str
    request: DeleteRequest

    _payload_type = staticmethod(_delete_t)

    @classmethod
    def of(cls, spec_cls: type, key: Any, force: bool = False) -> ObjectApiDeleteRequest:
        return cls(spec_cls.LABEL, DeleteRequest(key, force))


@dataclasses.dataclass
class ObjectApiListRequest(TypeBufferMessage, Request):
    API_KEY: ClassVar[int] = ScApiKey.List
    DEFAULT_API_VERSION: ClassVar[int] = COMMON_VERSION
    MIN_API_VERSION: ClassVar[int] = 15
    MAX_API_VERSION: ClassVar[int] = COMMON_VERSION
    Response: ClassVar[type] = ObjectApiListResponse
    API: ClassVar[str] = "List"
    _INNER: ClassVar[str] = "request"

    label: str
    request: ListRequest = dataclasses.field(default_factory=ListRequest)

    _payload_type = staticmethod(_any_label_t(_LIST_REQUEST))

    @classmethod
    def of(cls, spec_cls: type, filters: list[str] = (), summary: bool = False,
           system: bool = False) -> ObjectApiListRequest:
        return cls(spec_cls.LABEL, ListRequest([ListFilter(f) for f in filters], summary, system))


@dataclasses.dataclass
class ObjectApiWatchRequest(TypeBufferMessage, Request):
    API_KEY: ClassVar[int] = ScApiKey.Watch
    DEFAULT_API_VERSION: ClassVar[int] = COMMON_VERSION
    MIN_API_VERSION: ClassVar[int] = 15
    MAX_API_VERSION: ClassVar[int] = COMMON_VERSION
    Response: ClassVar[type] = ObjectApiWatchResponse
    API: ClassVar[str] = "Watch"
    _INNER: ClassVar[str] = "request"

    label: str
    request: WatchRequest = dataclasses.field(default_factory=WatchRequest)

    _payload_type = staticmethod(_any_label_t(_WATCH_REQUEST))

    @classmethod
    def of(cls, spec_cls: type, summary: bool = False, epoch: int = 0) -> ObjectApiWatchRequest:
        return cls(spec_cls.LABEL, WatchRequest(epoch, summary))


@dataclasses.dataclass
class ObjectApiUpdateRequest(TypeBufferMessage, Request):
    API_KEY: ClassVar[int] = ScApiKey.Update
    DEFAULT_API_VERSION: ClassVar[int] = COMMON_VERSION
    MIN_API_VERSION: ClassVar[int] = 1
    MAX_API_VERSION: ClassVar[int] = COMMON_VERSION
    Response: ClassVar[type] = Status
    API: ClassVar[str] = "Update"
    _INNER: ClassVar[str] = "request"
    _LEN_FROM_VERSION: ClassVar[int] = 0  # Fluvio's Update decoder always reads the length

    label: str
    request: UpdateRequest

    _payload_type = staticmethod(_update_t)

    @classmethod
    def of(cls, spec_cls: type, key: Any, action: Any) -> ObjectApiUpdateRequest:
        return cls(spec_cls.LABEL, UpdateRequest(key, action))


# Key 1005 (Mirroring) is advertised, as the real SC does, but its body is not documented and
# the client never sends it: decode_request reports it as an UnsupportedRequest.
SC_REQUESTS: dict[int, type] = {
    ScApiKey.ApiVersion: ApiVersionsRequest,
    ScApiKey.Create: ObjectApiCreateRequest,
    ScApiKey.Delete: ObjectApiDeleteRequest,
    ScApiKey.List: ObjectApiListRequest,
    ScApiKey.Watch: ObjectApiWatchRequest,
    ScApiKey.Update: ObjectApiUpdateRequest,
}


def decode_sc_request(payload: bytes) -> tuple[RequestHeader, Any]:
    """``decode_request(payload, SC_REQUESTS)``, with the header attached to an
    ``UnknownObjectType`` so that the server can answer it.

    Raises:
        UnsupportedRequest: unknown api key or version out of range (carries ``header``).
        UnknownObjectType: a well-framed object request for a label it does not handle.
        DecodeError: anything else malformed.
    """
    try:
        return decode_request(payload, SC_REQUESTS)
    except UnknownObjectType as e:
        e.header = RequestHeader.read(Reader(payload))
        raise


__all__ = [
    "COMMON_VERSION", "CREATE_LABELS", "DELETE_KEY_TYPES", "DYN_OBJ", "LIST_LABELS",
    "PLATFORM_VERSION", "SC_API_VERSIONS", "SC_REQUESTS", "UPDATE_TYPES", "WATCH_SERVED_LABELS",
    "CommonCreateRequest", "CreateRequest", "CreateRequestType", "DeleteRequest",
    "DeleteRequestType", "ListFilter", "ListRequest", "Message", "MetadataUpdate",
    "MetadataUpdateType", "MsgType", "ObjectApiCreateRequest", "ObjectApiDeleteRequest",
    "ObjectApiListRequest", "ObjectApiListResponse", "ObjectApiUpdateRequest",
    "ObjectApiWatchRequest", "ObjectApiWatchResponse", "ScApiKey", "Status", "TypeBufferMessage",
    "UnknownObjectType", "UpdateRequest", "UpdateRequestType", "WatchRequest",
    "decode_sc_request", "sc_api_versions_response",
]
