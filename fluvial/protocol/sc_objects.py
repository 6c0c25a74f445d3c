"""The SC's object types (spec + status per kind) as they travel in the SC public API.

Theory of operation
-------------------
Every object kind has a *spec* (what the user asked for) and a *status* (what the cluster made of
it). Each spec class carries ``LABEL`` (the TypeBuffer label, sc.md §3.1) and ``Status`` (its
status class). ``SPEC_BY_LABEL`` maps a label back to its spec class; that is how the TypeBuffer
codec of ``sc_api`` chooses a decoder.

Layouts are Fluvio v0.17.3's (``crates/fluvio-controlplane-metadata/src/{topic,partition,spu,spg,
smartmodule,tableformat,mirror}/``), written in field order with their version gates, as
../shared/fluvio-protocol/sc.md §5 lists them. Decode defaults follow README §3.3: a gated field
that is absent keeps Fluvio's ``Default`` value (``compression_type`` Any, ``PartitionStatus.size``
-2, ``ReplicaStatus`` (-1, -1, -1), ``Endpoint.host`` "127.0.0.1").

How Rust enums become Python values:

* payload-free enums are ``IntEnum`` classes carried by ``Enum(...)`` (tag u8);
* enums whose variants carry data are ``Union`` wire types with one ``@message`` class per
  variant. A variant whose payload is a single struct *is* that struct's class (``CleanupPolicy``
  has one variant, ``Segment(SegmentBasedPolicy)``, so a cleanup policy is a ``SegmentBasedPolicy``).
  The struct keeps its own version gates (README §3.2: gates inside a variant's nested struct apply);
  a ``min_version`` on a *variant* is ignored, as Fluvio's derive ignores it.
* ``CustomSpuKey`` is tagged by a *string* ("Name" / "Id"); its Python value is a ``str`` (a name)
  or an ``int`` (an id).

Pure: no I/O. Decoders raise only ``DecodeError``.
"""

from __future__ import annotations

import dataclasses
import re
from enum import IntEnum
from functools import cache
from typing import Any, ClassVar

from fluvial.protocol.codec import (
    BOOL, BYTES, DURATION, I32, I64, STR, U8, U16, U32, U64, DecodeError, EncodeError, Enum, Map,
    Opt, Reader, Union, Vec, WireType, as_type, message, wire,
)

# Fluvio's defaults and limits (crates/fluvio-types/src/defaults.rs, fluvio-sc-schema/src/shared.rs).
STORAGE_RETENTION_SECONDS = 7 * 24 * 3600
STORAGE_RETENTION_SECONDS_MIN = 10
SPU_LOG_SEGMENT_MAX_BYTES = 1073741824
SPU_LOG_SEGMENT_MAX_BYTES_MIN = 1024
CONSUMER_OFFSET_TOPIC = "consumer-offset"  # the system topic that holds consumer offsets
SPU_PARTITION_MAX_BYTES_MIN = 2 * SPU_LOG_SEGMENT_MAX_BYTES_MIN
MAX_RESOURCE_NAME_LEN = 63


# ======================================================================================= Topic


class CompressionAlgorithm(IntEnum):
    None_ = 0
    Gzip = 1
    Snappy = 2
    Lz4 = 3
    Any = 4
    Zstd = 5


COMPRESSION_ALGORITHM = Enum(CompressionAlgorithm, default=CompressionAlgorithm.Any)


@message
class SegmentBasedPolicy:
    """The payload of ``CleanupPolicy::Segment`` (tag 0), the only cleanup policy."""

    time_in_seconds: int = wire(U32)

    def retention_secs(self) -> int:
        return self.time_in_seconds


CLEANUP_POLICY = Union("CleanupPolicy", {0: SegmentBasedPolicy}, default=SegmentBasedPolicy)


@message
class TopicStorageConfig:
    segment_size: int | None = wire(Opt(U32))
    max_partition_size: int | None = wire(Opt(U64))


@message
class Bounds:
    count: int = wire(U64)
    age: float | None = wire(Opt(DURATION))  # seconds; u64 secs + u32 nanos on the wire


@message
class Transform:
    uses: str = wire(STR)
    with_: dict[str, str] = wire(Map(STR, STR))  # Fluvio's field is named ``with``


@message
class Filter:
    transform: Transform = wire(Transform)


@message
class Deduplication:
    bounds: Bounds = wire(Bounds)
    filter: Filter = wire(Filter)


# --- mirroring configuration of a partition (PartitionMirrorConfig, tag 0 Remote / 1 Home)


@message
class RemotePartitionConfig:
    home_cluster: str = wire(STR)
    home_spu_key: str = wire(STR)
    home_spu_id: int = wire(I32)
    home_spu_endpoint: str = wire(STR)
    target: bool = wire(BOOL, min_version=18)


@message
class HomePartitionConfig:
    remote_cluster: str = wire(STR)
    remote_replica: str = wire(STR)
    source: bool = wire(BOOL, min_version=18)


PARTITION_MIRROR_CONFIG = Union(
    "PartitionMirrorConfig", {0: RemotePartitionConfig, 1: HomePartitionConfig},
    default=RemotePartitionConfig)


@message
class PartitionMap:
    id: int = wire(U32)
    replicas: list[int] = wire(Vec(I32))
    mirror: RemotePartitionConfig | HomePartitionConfig | None = wire(
        Opt(PARTITION_MIRROR_CONFIG), min_version=14)


# --- mirroring configuration of a topic (MirrorConfig, tag 0 Remote / 1 Home)


@message
class SpuMirrorConfig:
    id: int = wire(I32)
    key: str = wire(STR)
    endpoint: str = wire(STR)


@message
class RemoteMirrorConfig:
    home_cluster: str = wire(STR)
    home_spus: list[SpuMirrorConfig] = wire(Vec(SpuMirrorConfig))
    target: bool = wire(BOOL, min_version=18)

    def partition_count(self) -> int:
        return len(self.home_spus)

    def as_partition_maps(self) -> list[PartitionMap]:
        return [
            PartitionMap(i, [], RemotePartitionConfig(self.home_cluster, spu.key, spu.id,
                                                      spu.endpoint, self.target))
            for i, spu in enumerate(self.home_spus)
        ]


@message
class HomeMirrorConfig:
    """Fluvio's ``HomeMirrorConfig(HomeMirrorInner)``: a transparent newtype, so the inner
    struct's fields are the payload."""

    partitions: list[HomePartitionConfig] = wire(Vec(HomePartitionConfig))
    source: bool = wire(BOOL, min_version=18)

    def partition_count(self) -> int:
        return len(self.partitions)

    def as_partition_maps(self) -> list[PartitionMap]:
        return [PartitionMap(i, [], p) for i, p in enumerate(self.partitions)]


MIRROR_CONFIG = Union("MirrorConfig", {0: RemoteMirrorConfig, 1: HomeMirrorConfig},
                      default=RemoteMirrorConfig)


# --- ReplicaSpec (tag 0 Assigned, 1 Computed, 2 Mirror)


class ReplicaSpec:
    """Base of the three ``ReplicaSpec`` variants (the wire type is ``REPLICA_SPEC``)."""

    def partition_count(self) -> int:
        raise NotImplementedError

    def replicas_per_partition(self) -> int | None:
        """Fluvio's ``ReplicaSpec::replication_factor()``: None for Mirror, and for an empty
        Assigned map."""
        raise NotImplementedError

    def validate(self) -> str | None:
        """The reason the real SC rejects these parameters (``TopicError``), or None."""
        raise NotImplementedError


@message
class AssignedReplicas(ReplicaSpec):
    """``ReplicaSpec::Assigned(PartitionMaps)``; PartitionMaps is a transparent vec."""

    maps: list[PartitionMap] = wire(Vec(PartitionMap))

    def partition_count(self) -> int:
        return len(self.maps)

    def replicas_per_partition(self) -> int | None:
        return len(self.maps[0].replicas) if self.maps else None

    def validate(self) -> str | None:
        """Fluvio's ``PartitionMaps::validate``: ids 0, 1, 2... without gaps, the same
        non-zero number of distinct, non-negative SPU ids in every partition."""
        if not self.maps:
            return "no assigned partitions found"
        replica_len = len(self.maps[0].replicas)
        for expected_id, pm in enumerate(self.maps):
            if expected_id == 0:
                if pm.id != 0:
                    return "assigned partitions must start with id 0"
                if replica_len == 0:
                    return "assigned replicas must have at least one spu id"
            else:
                if pm.id != expected_id:
                    return "assigned partition ids must be in sequence and without gaps"
                if len(pm.replicas) != replica_len:
                    return f"all assigned replicas must have the same number of spu ids: {replica_len}"
            if len(set(pm.replicas)) != len(pm.replicas):
                return f"duplicate spu ids found in assigned partition with id: {expected_id}"
            for spu in pm.replicas:
                if spu < 0:
                    return f"invalid spu id: {spu} in assigned partition with id: {expected_id}"
        return None


@message
class ComputedReplicas(ReplicaSpec):
    """``ReplicaSpec::Computed(TopicReplicaParam)``; the param's three fields are the payload."""

    partitions: int = wire(U32)
    replication_factor: int = wire(U32)
    ignore_rack_assignment: bool = wire(BOOL)

    def partition_count(self) -> int:
        return self.partitions

    def replicas_per_partition(self) -> int | None:
        return self.replication_factor

    def validate(self) -> str | None:
        if self.partitions == 0:
            return "partition must be greater than 0"
        if self.replication_factor == 0:
            return "replication factor must be greater than 0"
        return None


# Fluvio names the Computed payload TopicReplicaParam; here the variant class is that struct.
TopicReplicaParam = ComputedReplicas


@message
class MirrorReplicas(ReplicaSpec):
    """``ReplicaSpec::Mirror(MirrorConfig)``. Fluvio declares ``min_version = 14`` on this
    variant, which its derive ignores, so it is accepted at every version."""

    mirror: RemoteMirrorConfig | HomeMirrorConfig = wire(MIRROR_CONFIG)

    def partition_count(self) -> int:
        return self.mirror.partition_count()

    def replicas_per_partition(self) -> int | None:
        return None

    def as_partition_maps(self) -> list[PartitionMap]:
        return self.mirror.as_partition_maps()

    def validate(self) -> str | None:
        return None


REPLICA_SPEC = Union("ReplicaSpec", {0: AssignedReplicas, 1: ComputedReplicas, 2: MirrorReplicas},
                     default=ComputedReplicas)


class TopicResolution(IntEnum):
    Init = 0
    Pending = 1
    InsufficientResources = 2
    InvalidConfig = 3
    Provisioned = 4
    Deleting = 5


@message
class TopicStatus:
    resolution: TopicResolution = wire(Enum(TopicResolution))
    replica_map: dict[int, list[int]] = wire(Map(U32, Vec(I32)))
    mirror_map: dict[int, RemotePartitionConfig | HomePartitionConfig] = wire(
        Map(U32, PARTITION_MIRROR_CONFIG), min_version=14)
    reason: str = wire(STR)


@message
class TopicSpec:
    LABEL: ClassVar[str] = "Topic"
    Status: ClassVar[type] = TopicStatus

    replicas: AssignedReplicas | ComputedReplicas | MirrorReplicas = wire(REPLICA_SPEC)
    cleanup_policy: SegmentBasedPolicy | None = wire(Opt(CLEANUP_POLICY), min_version=3)
    storage: TopicStorageConfig | None = wire(Opt(TopicStorageConfig), min_version=4)
    compression_type: CompressionAlgorithm = wire(COMPRESSION_ALGORITHM, min_version=6)
    deduplication: Deduplication | None = wire(Opt(Deduplication), min_version=12)
    system: bool = wire(BOOL, min_version=13)

    @classmethod
    def computed(cls, partitions: int, replication_factor: int = 1,
                 ignore_rack_assignment: bool = False, **kw: Any) -> TopicSpec:
        return cls(ComputedReplicas(partitions, replication_factor, ignore_rack_assignment), **kw)

    def partition_count(self) -> int:
        return self.replicas.partition_count()

    def replication_factor(self) -> int | None:
        return self.replicas.replicas_per_partition()

    def retention_secs(self) -> int:
        """The retention in seconds; 7 days when no cleanup policy is set."""
        if self.cleanup_policy is None:
            return STORAGE_RETENTION_SECONDS
        return self.cleanup_policy.retention_secs()

    def validate_config(self) -> str | None:
        """Fluvio's ``TopicSpec::validate_config``: the reason for ``TopicInvalidConfiguration``,
        or None.

        >>> TopicSpec.computed(1, storage=TopicStorageConfig(None, 4096)).validate_config()
        'max_partition_size 4096 is less than segment size 1073741824'
        """
        if self.cleanup_policy is not None:
            secs = self.cleanup_policy.retention_secs()
            if secs < STORAGE_RETENTION_SECONDS_MIN:
                return f"retention_secs {secs} is less than minimum {STORAGE_RETENTION_SECONDS_MIN}"
        if self.storage is not None:
            segment_size = self.storage.segment_size
            if segment_size is not None and segment_size < SPU_LOG_SEGMENT_MAX_BYTES_MIN:
                return (f"segment_size {segment_size} is less than minimum "
                        f"{SPU_LOG_SEGMENT_MAX_BYTES_MIN}")
            max_size = self.storage.max_partition_size
            if max_size is not None:
                if max_size < SPU_PARTITION_MAX_BYTES_MIN:
                    return (f"max_partition_size {max_size} is less than minimum "
                            f"{SPU_PARTITION_MAX_BYTES_MIN}")
                seg = SPU_LOG_SEGMENT_MAX_BYTES if segment_size is None else segment_size
                if max_size < seg:
                    return f"max_partition_size {max_size} is less than segment size {seg}"
        return None


def validate_topic_name(name: str) -> str | None:
    """Fluvio's ``validate_resource_name``: the reason a topic name is refused, or None.

    At most 63 bytes; only ``a-z``, ``0-9`` and ``-``; no leading or trailing ``-``. As in
    Fluvio, the empty name passes. The real SC answers ``TopicInvalidName`` with the message
    ``"Invalid topic name: '<name>'. <reason>"``.

    >>> validate_topic_name("demo-1") is None
    True
    >>> validate_topic_name("Demo")
    "Contain only lowercase alphanumeric characters or '-'"
    """
    if len(name.encode()) > MAX_RESOURCE_NAME_LEN:
        return f"Name exceeds max characters allowed {MAX_RESOURCE_NAME_LEN}"
    if (all("a" <= c <= "z" or "0" <= c <= "9" or c == "-" for c in name)
            and not name.startswith("-") and not name.endswith("-")):
        return None
    return "Contain only lowercase alphanumeric characters or '-'"


# --- UpdateTopicAction (Update key 1006 payload for topics)


@message
class AddPartition:
    count: int = wire(U32)


@message
class AddMirror:
    remote_cluster: str = wire(STR)
    home_to_mirror: bool = wire(BOOL)


@message
class SetReplicationConfig:
    """fluvial's extension (tag 100; Fluvio's SC has no such action and the official client never
    sends it): a topic's replication settings that Fluvio's TopicSpec has no field for.
    ``None`` leaves a setting as it is."""

    min_isr: int | None = wire(Opt(U32))
    unclean_leader_election: bool | None = wire(Opt(BOOL))


@message
class SetCleanupConfig:
    """fluvial's extension (tag 101, like ``SetReplicationConfig``): a topic's log compaction
    settings. ``cleanup_policy`` "delete" or "compact"; ``None`` leaves a setting as it is."""

    cleanup_policy: str | None = wire(Opt(STR))
    tombstone_retention_secs: int | None = wire(Opt(U64))
    min_compaction_lag_secs: int | None = wire(Opt(U64))
    min_cleanable_dirty_percent: int | None = wire(Opt(U8))


@message
class SetContentType:
    """fluvial's extension (tag 102, like ``SetCleanupConfig``): the topic's content type
    (fluvial.protocol.content_type); "" removes it."""

    content_type: str = wire(STR)


UPDATE_TOPIC_ACTION = Union("UpdateTopicAction", {0: AddPartition, 1: AddMirror,
                                                  100: SetReplicationConfig, 101: SetCleanupConfig,
                                                  102: SetContentType},
                            default=AddPartition)


# =================================================================================== Partition


class PartitionResolution(IntEnum):
    Offline = 0
    Online = 1
    LeaderOffline = 2
    ElectionLeaderFound = 3
    OutOfStorage = 4  # declared min_version 19 on the variant; ignored by Fluvio's derive


@message
class ReplicaStatus:
    spu: int = wire(I32, default=-1)
    hw: int = wire(I64, default=-1)
    leo: int = wire(I64, default=-1)


SIZE_ERROR = -1
SIZE_NOT_SUPPORTED = -2


@message
class PartitionStatus:
    resolution: PartitionResolution = wire(Enum(PartitionResolution))
    leader: ReplicaStatus = wire(ReplicaStatus)
    lsr: int = wire(U32)
    replicas: list[ReplicaStatus] = wire(Vec(ReplicaStatus))
    size: int = wire(I64, min_version=5, default=SIZE_NOT_SUPPORTED)
    is_being_deleted: bool = wire(BOOL)
    base_offset: int = wire(I64, min_version=16)


@message
class PartitionSpec:
    LABEL: ClassVar[str] = "Partition"
    Status: ClassVar[type] = PartitionStatus

    leader: int = wire(I32)
    replicas: list[int] = wire(Vec(I32))
    cleanup_policy: SegmentBasedPolicy | None = wire(Opt(CLEANUP_POLICY), min_version=4)
    storage: TopicStorageConfig | None = wire(Opt(TopicStorageConfig), min_version=4)
    compression_type: CompressionAlgorithm = wire(COMPRESSION_ALGORITHM, min_version=6)
    deduplication: Deduplication | None = wire(Opt(Deduplication), min_version=12)
    system: bool = wire(BOOL, min_version=13)
    mirror: RemotePartitionConfig | HomePartitionConfig | None = wire(
        Opt(PARTITION_MIRROR_CONFIG), min_version=14)

    @classmethod
    def from_replicas(cls, replicas: list[int], topic: TopicSpec,
                      mirror: RemotePartitionConfig | HomePartitionConfig | None = None) -> PartitionSpec:
        """Fluvio's ``PartitionSpec::from_replicas``: leader = replicas[0] (0 when there are none),
        cleanup policy, storage, compression, deduplication and system copied from the topic."""
        return cls(replicas[0] if replicas else 0, list(replicas), topic.cleanup_policy,
                   topic.storage, topic.compression_type, topic.deduplication, topic.system,
                   mirror)

    def followers(self) -> list[int]:
        return [r for r in self.replicas if r != self.leader]


# ========================================================================================= SPU


class SpuType(IntEnum):
    Managed = 0
    Custom = 1


class EncryptionEnum(IntEnum):
    PLAINTEXT = 0
    SSL = 1


ENCRYPTION = Enum(EncryptionEnum)


@message
class IngressAddr:
    hostname: str | None = wire(Opt(STR))
    ip: str | None = wire(Opt(STR))

    def host(self) -> str | None:
        return self.hostname if self.hostname is not None else self.ip


@message
class IngressPort:
    port: int = wire(U16)
    ingress: list[IngressAddr] = wire(Vec(IngressAddr))
    encryption: EncryptionEnum = wire(ENCRYPTION)

    def host(self) -> str:
        """The host the client dials: ``ingress[0]``'s hostname, else its ip, else ""."""
        h = self.ingress[0].host() if self.ingress else None
        return "" if h is None else h

    def addr(self) -> str:
        return f"{self.host()}:{self.port}"


@message
class Endpoint:
    port: int = wire(U16)
    host: str = wire(STR, default="127.0.0.1")
    encryption: EncryptionEnum = wire(ENCRYPTION)

    def addr(self) -> str:
        return f"{self.host}:{self.port}"


class SpuStatusResolution(IntEnum):
    Online = 0
    Offline = 1
    Init = 2


@message
class SpuStatus:
    resolution: SpuStatusResolution = wire(Enum(SpuStatusResolution, default=SpuStatusResolution.Init))


@message
class SpuSpec:
    LABEL: ClassVar[str] = "SPU"
    Status: ClassVar[type] = SpuStatus

    id: int = wire(I32)
    spu_type: SpuType = wire(Enum(SpuType))
    public_endpoint: IngressPort = wire(IngressPort)
    private_endpoint: Endpoint = wire(Endpoint)
    rack: str | None = wire(Opt(STR))
    public_endpoint_local: Endpoint | None = wire(Opt(Endpoint), min_version=1)

    def public_addr(self, use_local: bool = False) -> str:
        """The ``host:port`` the Fluvio client connects to (README §6.4 step 5)."""
        if use_local and self.public_endpoint_local is not None:
            return self.public_endpoint_local.addr()
        return self.public_endpoint.addr()


@message
class CustomSpuSpec:
    """A user-registered SPU. No ``spu_type`` and no version gate, unlike SpuSpec."""

    LABEL: ClassVar[str] = "CustomSpu"
    Status: ClassVar[type] = SpuStatus

    id: int = wire(I32)
    public_endpoint: IngressPort = wire(IngressPort)
    private_endpoint: Endpoint = wire(Endpoint)
    rack: str | None = wire(Opt(STR))
    public_endpoint_local: Endpoint | None = wire(Opt(Endpoint))


class CustomSpuKeyType(WireType):
    """``CustomSpuKey``: the string "Name" then a str, or the string "Id" then an i32.
    Python values: a ``str`` is a name, an ``int`` an id. The default is ``Id(0)``."""

    name = "CustomSpuKey"

    def encode(self, w, v, version):
        if isinstance(v, str):
            STR.encode(w, "Name", version)
            STR.encode(w, v, version)
        elif isinstance(v, int) and not isinstance(v, bool):
            STR.encode(w, "Id", version)
            I32.encode(w, v, version)
        else:
            raise EncodeError(f"CustomSpuKey: {v!r} is neither a name (str) nor an id (int)")

    def decode(self, r, version):
        at = r.pos
        tag = STR.decode(r, version)
        if tag == "Name":
            return STR.decode(r, version)
        if tag == "Id":
            return I32.decode(r, version)
        raise DecodeError(f"CustomSpuKey: invalid spec type {tag!r} at offset {at}")

    def default(self):
        return 0


CUSTOM_SPU_KEY = CustomSpuKeyType()


# ==================================================================================== SpuGroup


@message
class ReplicationConfig:
    in_sync_replica_min: int | None = wire(Opt(U16))


@message
class StorageConfig:
    log_dir: str | None = wire(Opt(STR))
    size: str | None = wire(Opt(STR))


@message
class EnvVar:
    name: str = wire(STR)
    value: str = wire(STR)


@message
class SpuConfig:
    rack: str | None = wire(Opt(STR))
    replication: ReplicationConfig | None = wire(Opt(ReplicationConfig))
    storage: StorageConfig | None = wire(Opt(StorageConfig))
    env: list[EnvVar] = wire(Vec(EnvVar))


class SpuGroupStatusResolution(IntEnum):
    Init = 0
    Invalid = 1
    Reserved = 2


@message
class SpuGroupStatus:
    resolution: SpuGroupStatusResolution = wire(Enum(SpuGroupStatusResolution))
    reason: str | None = wire(Opt(STR))


@message
class SpuGroupSpec:
    LABEL: ClassVar[str] = "SpuGroup"
    Status: ClassVar[type] = SpuGroupStatus

    replicas: int = wire(U16)
    min_id: int = wire(I32)
    spu_config: SpuConfig = wire(SpuConfig)


# ================================================================================= SmartModule


class SmartModuleWasmFormat(IntEnum):
    Binary = 0
    Text = 1


@message
class SmartModuleWasm:
    format: SmartModuleWasmFormat = wire(Enum(SmartModuleWasmFormat))
    payload: bytes = wire(BYTES)


@message
class SmartModuleWasmSummary:
    wasm_length: int = wire(U32)


class SmartModuleVisibility(IntEnum):
    Private = 0
    Public = 1


# semver.org's grammar (what the Rust ``semver`` crate parses), ASCII only.
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
_U64_MAX = (1 << 64) - 1


def is_semver(text: str) -> bool:
    """True when ``text`` is a strict semver ``MAJOR.MINOR.PATCH[-pre][+build]`` (each number a u64)."""
    m = _SEMVER.fullmatch(text)
    return m is not None and all(int(m.group(i)) <= _U64_MAX for i in (1, 2, 3))


class SemverStr(WireType):
    """A str that must be strict semver (Fluvio's ``FluvioSemVersion``); anything else fails to
    decode, as it does in Fluvio."""

    name = "semver"

    def encode(self, w, v, version):
        if not is_semver(v):
            raise EncodeError(f"semver: {v!r} is not a valid semantic version")
        STR.encode(w, v, version)

    def decode(self, r, version):
        at = r.pos
        v = STR.decode(r, version)
        if not is_semver(v):
            raise DecodeError(f"semver: {v!r} at offset {at} is not a valid semantic version")
        return v

    def default(self):
        return "0.1.0"


SEMVER = SemverStr()


@message
class SmartModulePackage:
    name: str = wire(STR)
    group: str = wire(STR)
    version: str = wire(SEMVER)
    api_version: str = wire(SEMVER)
    description: str | None = wire(Opt(STR))
    license: str | None = wire(Opt(STR))
    visibility: SmartModuleVisibility = wire(Enum(SmartModuleVisibility), min_version=19)
    repository: str | None = wire(Opt(STR))

    def store_id(self) -> str:
        """The store key the real SC uses: ``name-group-version``."""
        return f"{self.name}-{self.group}-{self.version}"

    def fqdn(self) -> str:
        return f"{self.group}/{self.name}@{self.version}"


@message
class SmartModuleParam:
    description: str | None = wire(Opt(STR))
    optional: bool = wire(BOOL)


@message
class SmartModuleMetadata:
    package: SmartModulePackage = wire(SmartModulePackage)
    params: dict[str, SmartModuleParam] = wire(Map(STR, SmartModuleParam))  # SmartModuleParams

    def store_id(self) -> str:
        return self.package.store_id()


@message
class SmartModuleStatus:
    """A unit struct: zero bytes on the wire."""


_V2_FORMAT = 10  # SmartModuleSpec's own layout switch


@message
class SmartModuleSpec:
    """Fluvio encodes this by hand. From version 10 on it is ``meta, summary, wasm``; below 10
    it is the V1 layout ``input_kind u8, output_kind u8, source_code opt<{u8, str}>, wasm,
    parameters opt<vec<str>>``, of which only ``wasm`` is kept (and default V1 fields are
    written). The TypeBuffer API (version >= 11) never reaches V1."""

    LABEL: ClassVar[str] = "SmartModule"
    Status: ClassVar[type] = SmartModuleStatus

    meta: SmartModuleMetadata | None = wire(Opt(SmartModuleMetadata))
    summary: SmartModuleWasmSummary | None = wire(Opt(SmartModuleWasmSummary))
    wasm: SmartModuleWasm = wire(SmartModuleWasm)

    def summarized(self) -> SmartModuleSpec:
        """The summary form sent for ``summary=true``: meta kept, ``summary`` = the payload
        length, wasm = an empty Binary payload."""
        return SmartModuleSpec(self.meta, SmartModuleWasmSummary(len(self.wasm.payload)),
                               SmartModuleWasm())

    def store_id(self, name: str) -> str:
        """The store key for a Create named ``name``: ``meta.store_id()`` if meta is present."""
        return self.meta.store_id() if self.meta is not None else name

    def fqdn(self, store_id: str) -> str:
        return self.meta.package.fqdn() if self.meta is not None else store_id


_SM_V2_ENCODE = SmartModuleSpec.wire_encode
_SM_V2_DECODE = SmartModuleSpec.wire_decode


def _sm_wire_encode(self: SmartModuleSpec, w: bytearray, version: int) -> None:
    if version >= _V2_FORMAT:
        _SM_V2_ENCODE(self, w, version)
        return
    w += b"\x00\x00\x00"  # input_kind Stream, output_kind Stream, source_code None
    self.wasm.wire_encode(w, version)
    w.append(0)  # parameters None


def _sm_v1_tag(r: Reader, what: str, limit: int) -> None:
    at = r.pos
    t = U8.decode(r, 0)
    if t > limit:
        raise DecodeError(f"Unknown {what} type {t} at offset {at}")


def _sm_wire_decode(cls: type, r: Reader, version: int) -> SmartModuleSpec:
    if version >= _V2_FORMAT:
        return _SM_V2_DECODE(r, version)
    _sm_v1_tag(r, "SmartModuleInputKind", 1)
    _sm_v1_tag(r, "SmartModuleOutputKind", 2)
    if BOOL.decode(r, version):  # source_code: Some({language, payload})
        _sm_v1_tag(r, "SmartModuleSourceCodeLanguage", 0)
        STR.decode(r, version)
    wasm = SmartModuleWasm.wire_decode(r, version)
    if BOOL.decode(r, version):  # parameters: Some(vec<{name}>)
        Vec(STR).decode(r, version)
    return cls(None, None, wasm)


SmartModuleSpec.wire_encode = _sm_wire_encode
SmartModuleSpec.wire_decode = classmethod(_sm_wire_decode)


# ================================================================================= TableFormat


class DataFormat(IntEnum):
    JSON = 0


class TableFormatAlignment(IntEnum):
    Left = 0
    Right = 1
    Center = 2


class Color(IntEnum):
    Blue = 0
    Yellow = 1
    Green = 2


@message
class TableFormatColumnConfig:
    header_label: str | None = wire(Opt(STR))
    width: str | None = wire(Opt(STR))
    alignment: TableFormatAlignment | None = wire(Opt(Enum(TableFormatAlignment)))
    key_path: str = wire(STR)
    format: str | None = wire(Opt(STR))
    display: bool | None = wire(Opt(BOOL))
    primary_key: bool | None = wire(Opt(BOOL))
    header_bg_color: Color | None = wire(Opt(Enum(Color)))
    header_text_color: Color | None = wire(Opt(Enum(Color)))


class TableFormatStatusResolution(IntEnum):
    Init = 0
    Invalid = 1
    Running = 2
    Pending = 3
    Failed = 4


@message
class TableFormatStatus:
    resolution: TableFormatStatusResolution = wire(Enum(TableFormatStatusResolution))
    reason: str | None = wire(Opt(STR))


@message
class TableFormatSpec:
    LABEL: ClassVar[str] = "TableFormat"
    Status: ClassVar[type] = TableFormatStatus

    name: str = wire(STR)
    input_format: DataFormat | None = wire(Opt(Enum(DataFormat)))
    columns: list[TableFormatColumnConfig] | None = wire(Opt(Vec(TableFormatColumnConfig)))
    smartmodule: str | None = wire(Opt(STR))


# ====================================================================================== Mirror
# crates/fluvio-controlplane-metadata/src/mirror/{spec,status}.rs


@message
class MirrorRemote:
    """``MirrorType::Remote(Remote{id})`` (tag 0): this cluster mirrors to the remote ``id``."""

    id: str = wire(STR)


@message
class ClientTls:
    domain: str = wire(STR)
    ca_cert: str = wire(STR)
    client_cert: str = wire(STR)
    client_key: str = wire(STR, repr=False)


@message
class MirrorHome:
    """``MirrorType::Home(Home{...})`` (tag 1)."""

    id: str = wire(STR)
    remote_id: str = wire(STR)
    public_endpoint: str = wire(STR)
    client_tls: ClientTls | None = wire(Opt(ClientTls))


MIRROR_TYPE = Union("MirrorType", {0: MirrorRemote, 1: MirrorHome}, default=MirrorRemote)


class ConnectionStatus(IntEnum):
    Offline = 0
    Online = 1


# MirrorPairStatus: unit variants 0-4, and DetailFailure(String) at tag 5 (declared
# min_version 17 on the variant, which Fluvio's derive ignores).


@message
class MirrorPairWaiting:
    pass


@message
class MirrorPairSuccessful:
    pass


@message
class MirrorPairFailed:
    pass


@message
class MirrorPairDisabled:
    pass


@message
class MirrorPairUnauthorized:
    pass


@message
class MirrorPairDetailFailure:
    message: str = wire(STR)


MIRROR_PAIR_STATUS = Union(
    "MirrorPairStatus",
    {0: MirrorPairWaiting, 1: MirrorPairSuccessful, 2: MirrorPairFailed, 3: MirrorPairDisabled,
     4: MirrorPairUnauthorized, 5: MirrorPairDetailFailure},
    default=MirrorPairWaiting)


@message
class ConnectionStat:
    last_seen: int = wire(U64)  # milliseconds since the epoch; 0 = never


@message
class MirrorStatus:
    connection_status: ConnectionStatus = wire(Enum(ConnectionStatus))
    pairing_sc: Any = wire(MIRROR_PAIR_STATUS)
    pairing_spu: Any = wire(MIRROR_PAIR_STATUS)
    connection_stat: ConnectionStat = wire(ConnectionStat)


@message
class MirrorSpec:
    LABEL: ClassVar[str] = "Mirror"
    Status: ClassVar[type] = MirrorStatus

    mirror_type: MirrorRemote | MirrorHome = wire(MIRROR_TYPE)


# ==================================================================================== Metadata

from fluvial.protocol.processor_objects import ProcessorSpec  # noqa: E402 - fluvial's own kind

ALL_SPECS: tuple[type, ...] = (TopicSpec, PartitionSpec, SpuSpec, SmartModuleSpec, TableFormatSpec,
                               SpuGroupSpec, CustomSpuSpec, MirrorSpec, ProcessorSpec)
SPEC_BY_LABEL: dict[str, type] = {cls.LABEL: cls for cls in ALL_SPECS}


@dataclasses.dataclass
class Metadata:
    """``Metadata<S>``: the store key, the spec and the status, encoded in that order with the
    spec class's types. The wire type of a ``Metadata`` of one kind is ``metadata_type(SpecCls)``."""

    name: str
    spec: Any
    status: Any = None

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = type(self.spec).Status()

    def summarized(self) -> Metadata:
        """The summary form (only SmartModule specs change; Fluvio's ``AdminSpec::summary``)."""
        s = self.spec.summarized() if isinstance(self.spec, SmartModuleSpec) else self.spec
        return Metadata(self.name, s, self.status)


class MetadataType(WireType):
    """The wire type of ``Metadata`` for one spec class: name str, spec, status."""

    def __init__(self, spec_cls: type):
        self.spec_cls = spec_cls
        self.spec_t = as_type(spec_cls)
        self.status_t = as_type(spec_cls.Status)
        self.name = f"Metadata<{spec_cls.__name__}>"

    def encode(self, w, v, version):
        if not isinstance(v.spec, self.spec_cls) or not isinstance(v.status, self.spec_cls.Status):
            raise EncodeError(f"{self.name}: got {type(v.spec).__name__}/{type(v.status).__name__}")
        STR.encode(w, v.name, version)
        self.spec_t.encode(w, v.spec, version)
        self.status_t.encode(w, v.status, version)

    def decode(self, r, version):
        name = STR.decode(r, version)
        spec = self.spec_t.decode(r, version)
        return Metadata(name, spec, self.status_t.decode(r, version))

    def default(self):
        return Metadata("", self.spec_cls())


@cache
def metadata_type(spec_cls: type) -> MetadataType:
    """The (cached) ``MetadataType`` for ``spec_cls``."""
    return MetadataType(spec_cls)


__all__ = [
    "ALL_SPECS", "CLEANUP_POLICY", "COMPRESSION_ALGORITHM", "CUSTOM_SPU_KEY", "ENCRYPTION",
    "MAX_RESOURCE_NAME_LEN", "MIRROR_CONFIG", "MIRROR_PAIR_STATUS", "MIRROR_TYPE",
    "PARTITION_MIRROR_CONFIG", "REPLICA_SPEC", "SEMVER", "SIZE_ERROR", "SIZE_NOT_SUPPORTED",
    "SPEC_BY_LABEL", "SPU_LOG_SEGMENT_MAX_BYTES", "SPU_LOG_SEGMENT_MAX_BYTES_MIN",
    "SPU_PARTITION_MAX_BYTES_MIN", "STORAGE_RETENTION_SECONDS", "STORAGE_RETENTION_SECONDS_MIN",
    "UPDATE_TOPIC_ACTION",
    "AddMirror", "AddPartition", "SetCleanupConfig", "SetContentType", "SetReplicationConfig", "AssignedReplicas", "Bounds", "ClientTls", "Color",
    "CompressionAlgorithm", "ComputedReplicas", "ConnectionStat", "ConnectionStatus",
    "CustomSpuKeyType", "CustomSpuSpec", "DataFormat", "Deduplication", "EncryptionEnum",
    "Endpoint", "EnvVar", "Filter", "HomeMirrorConfig", "HomePartitionConfig", "IngressAddr",
    "IngressPort", "Metadata", "MetadataType", "MirrorHome", "MirrorPairDetailFailure",
    "MirrorPairDisabled", "MirrorPairFailed", "MirrorPairSuccessful", "MirrorPairUnauthorized",
    "MirrorPairWaiting", "MirrorRemote", "MirrorReplicas", "MirrorSpec", "MirrorStatus",
    "PartitionMap", "PartitionResolution", "PartitionSpec", "PartitionStatus",
    "RemoteMirrorConfig", "RemotePartitionConfig", "ReplicaSpec", "ReplicaStatus",
    "ReplicationConfig", "SegmentBasedPolicy", "SemverStr", "SmartModuleMetadata",
    "SmartModulePackage", "SmartModuleParam", "SmartModuleSpec", "SmartModuleStatus",
    "SmartModuleVisibility", "SmartModuleWasm", "SmartModuleWasmFormat", "SmartModuleWasmSummary",
    "SpuConfig", "SpuGroupSpec", "SpuGroupStatus", "SpuGroupStatusResolution", "SpuMirrorConfig",
    "SpuSpec", "SpuStatus", "SpuStatusResolution", "SpuType", "StorageConfig",
    "TableFormatAlignment", "TableFormatColumnConfig", "TableFormatSpec", "TableFormatStatus",
    "TableFormatStatusResolution", "TopicReplicaParam", "TopicResolution", "TopicSpec",
    "TopicStatus", "TopicStorageConfig", "Transform", "is_semver", "metadata_type",
    "validate_topic_name",
]
