"""fluvial's private APIs: SC <-> SPU control and SPU <-> SPU replication (docs/internal-protocol.md).

Same framing, header and encoding as Fluvio's public API; our own api keys, at version 0. Every
request carries the sender's SPU id so a server can refuse a non-member (mTLS identities confirm it
once TLS is on), and every replication request carries the leader epoch the sender believes in, so
a stale leader or follower is refused (``FencedLeaderEpoch``-style, sent as ErrorCode
NotLeaderForPartition with an Other message for detail).
"""

from __future__ import annotations

import dataclasses
import struct
from enum import IntEnum
from typing import ClassVar

from fluvial.errors import Error
from fluvial.protocol.api import ApiVersionsRequest, Request
from fluvial.protocol.codec import (
    BOOL, BYTES, ERROR_CODE, I32, I64, RECORDS, STR, U8, U16, U32, U64, Opt, Vec, message, wire,
)

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")


class InternalScApiKey(IntEnum):
    ApiVersion = 18
    RegisterSpu = 5001
    WatchReplicas = 5002
    ReportReplicas = 5003
    LookupSmartModule = 5004


class InternalSpuApiKey(IntEnum):
    ApiVersion = 18
    # 6001 was a per-partition FetchReplica: replaced by the batched FetchReplicas
    OffsetForLeaderEpoch = 6002
    UpdateConsumerOffsetStore = 6003
    FetchReplicas = 6004


# ----------------------------------------------------------------------------- SC private API


@message
class RegisterSpuResponse:
    error_code: Error = wire(ERROR_CODE)
    message: str | None = wire(Opt(STR))
    # The SPU's leader lease: a leader stops acknowledging produces once this long has passed
    # since it sent the last report the SC answered (0: no lease). The SC sets it below its
    # heartbeat timeout, so a leader cut off from the SC stops before the SC replaces it.
    lease_ms: int = wire(U32)


@message
class RegisterSpuRequest(Request):
    """First request of an SPU on the SC's private port: who it is and where it listens."""

    API_KEY: ClassVar[int] = InternalScApiKey.RegisterSpu
    Response: ClassVar[type] = RegisterSpuResponse

    spu_id: int = wire(I32)
    public_host: str = wire(STR, default="127.0.0.1")
    public_port: int = wire(U16)
    private_host: str = wire(STR, default="127.0.0.1")
    private_port: int = wire(U16)
    rack: str | None = wire(Opt(STR))


#: A topic's cleanup policies; ``ReplicaSettings.cleanup_policy`` is an index into it.
CLEANUP_POLICIES: tuple[str, ...] = ("delete", "compact")


@message
class ReplicaSettings:
    """The topic settings a replica needs (copied from the topic spec by the SC)."""

    segment_max_bytes: int = wire(U32, default=1 << 30)
    retention_seconds: int | None = wire(Opt(U32))
    max_partition_bytes: int | None = wire(Opt(U64))
    compression: int = wire(U8, default=4)  # CompressionAlgorithm, Any
    min_isr: int = wire(U32, default=1)
    system: bool = wire(BOOL)
    # log compaction (fluvial.storage.compaction): cleanup policy 0 delete, 1 compact
    cleanup_policy: int = wire(U8, default=0)
    tombstone_retention_seconds: int = wire(U64, default=24 * 3600)
    min_compaction_lag_seconds: int = wire(U64, default=0)
    min_cleanable_dirty_percent: int = wire(U8, default=50)


NO_TOPIC_ID = 0  # ReplicaAssignment.topic_id of a topic created before topic incarnations


@message
class ReplicaAssignment:
    topic: str = wire(STR)
    partition: int = wire(U32)
    leader: int = wire(I32)
    leader_epoch: int = wire(I32)
    replicas: list[int] = wire(Vec(I32))
    isr: list[int] = wire(Vec(I32))
    settings: ReplicaSettings = wire(ReplicaSettings)
    # The topic's incarnation: a new id each time a topic of this name is created, so a replica
    # left on disk by a deleted topic of the same name is never taken for this one.
    topic_id: int = wire(U64)
    # The SC's version of this partition's ISR (bumped on every ISR change the SC records);
    # a leader's ISR report names the version it builds on, and a stale one is ignored.
    isr_version: int = wire(I32)


@message
class SpuAddress:
    spu_id: int = wire(I32)
    host: str = wire(STR)
    port: int = wire(U16)


@message
class WatchReplicasResponse:
    """One push on the assignment stream: the complete desired state for this SPU."""

    epoch: int = wire(I64)
    replicas: list[ReplicaAssignment] = wire(Vec(ReplicaAssignment))
    peers: list[SpuAddress] = wire(Vec(SpuAddress))
    offsets_leader: int = wire(I32, default=-1)  # leader of consumer-offset/0, -1 when none


@message
class WatchReplicasRequest(Request):
    API_KEY: ClassVar[int] = InternalScApiKey.WatchReplicas
    Response: ClassVar[type] = WatchReplicasResponse

    spu_id: int = wire(I32)


@message
class ReplicaReport:
    topic: str = wire(STR)
    partition: int = wire(U32)
    leader_epoch: int = wire(I32)
    is_leader: bool = wire(BOOL)
    leo: int = wire(I64)
    hw: int = wire(I64)
    log_start_offset: int = wire(I64)
    size: int = wire(I64)
    isr: list[int] = wire(Vec(I32))
    follower_leos: list[int] = wire(Vec(I64))  # flattened pairs: spu, leo, spu, leo, ...
    error: str | None = wire(Opt(STR))
    isr_version: int = wire(I32)  # the assignment's isr_version this report's ISR builds on


@message
class ReportReplicasResponse:
    error_code: Error = wire(ERROR_CODE)


@message
class ReportReplicasRequest(Request):
    """Replica state of one SPU; sent on every change and at least every heartbeat interval."""

    API_KEY: ClassVar[int] = InternalScApiKey.ReportReplicas
    Response: ClassVar[type] = ReportReplicasResponse

    spu_id: int = wire(I32)
    replicas: list[ReplicaReport] = wire(Vec(ReplicaReport))


@message
class LookupSmartModuleResponse:
    error_code: Error = wire(ERROR_CODE)  # SmartModuleNotFound when there is no such module
    payload: bytes = wire(BYTES)  # the wasm as created (raw or gzipped)


@message
class LookupSmartModuleRequest(Request):
    """SPU -> SC: the wasm of the SmartModule ``name`` (a StreamFetch's ``Predefined(name)``):
    its store key, its ``group/name@version`` or, when only one module has it, its package name."""

    API_KEY: ClassVar[int] = InternalScApiKey.LookupSmartModule
    Response: ClassVar[type] = LookupSmartModuleResponse

    spu_id: int = wire(I32)
    name: str = wire(STR)


# ----------------------------------------------------------------------------- SPU private API


@message
class FetchPartition:
    """One partition of a ``FetchReplicasRequest``: the follower's durable LEO (how the leader
    learns it) and the leader epoch the follower follows."""

    topic: str = wire(STR)
    partition: int = wire(U32)
    leader_epoch: int = wire(I32)
    fetch_offset: int = wire(I64)


@message
class FetchedPartition:
    """One partition of a ``FetchReplicasResponse``: its own error (another epoch, not the
    leader, OffsetOutOfRange, OffsetEvicted), the leader's epoch, HW, written LEO, log start, and
    the records from ``fetch_offset`` (possibly none)."""

    topic: str = wire(STR)
    partition: int = wire(U32)
    error_code: Error = wire(ERROR_CODE)
    leader_epoch: int = wire(I32)
    hw: int = wire(I64)
    leo: int = wire(I64)
    log_start_offset: int = wire(I64)
    records: bytes = wire(RECORDS)


@message
class FetchReplicasResponse:
    error_code: Error = wire(ERROR_CODE)  # the request as a whole (e.g. PermissionDenied)
    partitions: list[FetchedPartition] = wire(Vec(FetchedPartition))


def encode_fetch_replicas_response_parts(resp: FetchReplicasResponse, correlation_id: int,
                                         version: int) -> list[bytes]:
    """The frame of ``resp`` (size prefix included) as pieces, each partition's record set a
    piece of its own and never copied: ``b"".join(parts) == encode_response(resp,
    correlation_id, version)``, for ``ServerConnection.send_parts``. A leader answers its
    followers with up to ``max_fetch_bytes`` of records; encoding them into one buffer would
    copy them once more per follower.

    >>> from fluvial.errors import ErrorCode
    >>> from fluvial.protocol.api import encode_response
    >>> ok = Error(ErrorCode.None_)
    >>> resp = FetchReplicasResponse(ok, [FetchedPartition("t", 0, ok, 1, 2, 3, 0, b"batches")])
    >>> parts = encode_fetch_replicas_response_parts(resp, 7, 0)
    >>> parts[1], b"".join(parts) == encode_response(resp, 7, 0)
    (b'batches', True)
    """
    parts: list[bytes] = []
    w = bytearray(8)
    ERROR_CODE.encode(w, resp.error_code, version)
    w += _U32.pack(len(resp.partitions))
    for p in resp.partitions:
        if not p.records:
            p.wire_encode(w, version)
            continue
        # the record set is the last field: encoded empty (its i32 length 0), then its length
        # patched and its bytes sent as they are
        dataclasses.replace(p, records=b"").wire_encode(w, version)
        _I32.pack_into(w, len(w) - 4, len(p.records))
        parts += (bytes(w), p.records)
        w = bytearray()
    if w or not parts:
        parts.append(bytes(w))
    head = bytearray(parts[0])
    _I32.pack_into(head, 0, sum(len(x) for x in parts) - 4)
    _I32.pack_into(head, 4, correlation_id)
    parts[0] = bytes(head)
    return parts


@message
class FetchReplicasRequest(Request):
    """Follower -> leader long-poll fetch for *every* partition the follower replicates from this
    leader (Kafka's replica fetcher: one request per pair of SPUs, not per partition). The leader
    answers as soon as any partition has records past its offset or an error, within
    ``fetch.HW_LINGER_MS`` when all it has is a HW the follower has not seen (``known_hws``),
    otherwise after ``max_wait_ms``; ``max_bytes`` bounds the
    whole answer (at least one batch is always sent)."""

    API_KEY: ClassVar[int] = InternalSpuApiKey.FetchReplicas
    Response: ClassVar[type] = FetchReplicasResponse

    follower_id: int = wire(I32)
    partitions: list[FetchPartition] = wire(Vec(FetchPartition))
    known_hws: list[int] = wire(Vec(I64))  # the follower's HW per entry of ``partitions``
    max_bytes: int = wire(I32, default=1 << 20)
    max_wait_ms: int = wire(I32, default=500)


@message
class OffsetForLeaderEpochResponse:
    error_code: Error = wire(ERROR_CODE)
    epoch: int = wire(I32)
    end_offset: int = wire(I64)


@message
class OffsetForLeaderEpochRequest(Request):
    """KIP-279: the end offset, on the leader, of the largest epoch <= ``requested_epoch``."""

    API_KEY: ClassVar[int] = InternalSpuApiKey.OffsetForLeaderEpoch
    Response: ClassVar[type] = OffsetForLeaderEpochResponse

    follower_id: int = wire(I32)
    topic: str = wire(STR)
    partition: int = wire(U32)
    leader_epoch: int = wire(I32)
    requested_epoch: int = wire(I32)


@message
class UpdateConsumerOffsetStoreResponse:
    error_code: Error = wire(ERROR_CODE)


@message
class UpdateConsumerOffsetStoreRequest(Request):
    """Forwarded to the leader of consumer-offset/0: store (or delete) one consumer offset."""

    API_KEY: ClassVar[int] = InternalSpuApiKey.UpdateConsumerOffsetStore
    Response: ClassVar[type] = UpdateConsumerOffsetStoreResponse

    spu_id: int = wire(I32)
    consumer_id: str = wire(STR)
    topic: str = wire(STR)
    partition: int = wire(U32)
    offset: int = wire(I64)
    delete: bool = wire(BOOL)


INTERNAL_SC_REQUESTS: dict[int, type] = {
    18: ApiVersionsRequest,
    InternalScApiKey.RegisterSpu: RegisterSpuRequest,
    InternalScApiKey.WatchReplicas: WatchReplicasRequest,
    InternalScApiKey.ReportReplicas: ReportReplicasRequest,
    InternalScApiKey.LookupSmartModule: LookupSmartModuleRequest,
}
INTERNAL_SPU_REQUESTS: dict[int, type] = {
    18: ApiVersionsRequest,
    InternalSpuApiKey.FetchReplicas: FetchReplicasRequest,
    InternalSpuApiKey.OffsetForLeaderEpoch: OffsetForLeaderEpochRequest,
    InternalSpuApiKey.UpdateConsumerOffsetStore: UpdateConsumerOffsetStoreRequest,
}
