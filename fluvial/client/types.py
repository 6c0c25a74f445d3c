"""The client's value types: offsets, records, produce results, and what the admin API returns.

Pure: no I/O. ``Offset.resolve`` is the official client's start-offset rule (spu.md §9.2), kept
here as plain arithmetic so it can be tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter
from typing import NamedTuple

from fluvial.errors import ConfigError
from fluvial.protocol.record import Compression
from fluvial.protocol.sc_objects import CompressionAlgorithm
from fluvial.protocol.spu_api import Isolation

__all__ = [
    "Compression", "ConsumerOffsetInfo", "DeliverySemantic", "Isolation", "Offset",
    "PartitionInfo", "Record", "RecordMetadata", "ReplicaInfo", "SpuInfo", "TopicInfo",
    "TOPIC_TO_BATCH_COMPRESSION", "compression_from", "isolation_from", "topic_compression_from",
]


# ------------------------------------------------------------------------------------ offsets


class _OffsetKind(Enum):
    ABSOLUTE = "absolute"
    FROM_BEGINNING = "from_beginning"
    FROM_END = "from_end"


@dataclass(frozen=True, slots=True)
class Offset:
    """Where a consumer starts, as in the official client (``fluvio.Offset``).

    Build one with ``Offset.beginning()``, ``Offset.end()``, ``Offset.absolute(n)``,
    ``Offset.from_beginning(n)`` or ``Offset.from_end(n)``; ``resolve`` turns it into an absolute
    offset once the partition's offsets are known.
    """

    kind: _OffsetKind
    value: int

    def __post_init__(self) -> None:
        if type(self.value) is not int or self.value < 0:
            raise ValueError(f"Offset.{self.kind.value}() needs an int >= 0, not {self.value!r}")

    @classmethod
    def absolute(cls, offset: int) -> Offset:
        """Exactly ``offset`` (no clamping: past the end, the SPU reports an error)."""
        return cls(_OffsetKind.ABSOLUTE, offset)

    @classmethod
    def beginning(cls) -> Offset:
        """The first record still stored (or the stored consumer offset + 1)."""
        return cls(_OffsetKind.FROM_BEGINNING, 0)

    @classmethod
    def from_beginning(cls, n: int) -> Offset:
        """``n`` records after the beginning."""
        return cls(_OffsetKind.FROM_BEGINNING, n)

    @classmethod
    def end(cls) -> Offset:
        """The next record to be written: only new records are read."""
        return cls(_OffsetKind.FROM_END, 0)

    @classmethod
    def from_end(cls, n: int) -> Offset:
        """``n`` records before the end: ``from_end(1)`` is the last record."""
        return cls(_OffsetKind.FROM_END, n)

    def resolve(self, start: int, hw: int, consumer_offset: int | None = None) -> int:
        """The absolute offset to fetch from (``crates/fluvio/src/offset.rs``).

        Args:
            start: the partition's log start offset (FetchOffsets ``start_offset``).
            hw: its high watermark (FetchOffsets ``last_stable_offset``).
            consumer_offset: the stored consumer offset + 1, if a consumer id has one. It
                replaces the base of ``from_beginning`` (normally ``start``) and ``from_end``
                (normally ``hw``).

        Returns:
            ``absolute``: the value itself. Otherwise ``clamp(base ± n, start, hw)``, then at
            least 0.

        Worked example, start 10, hw 50: ``beginning()`` -> 10, ``from_beginning(5)`` -> 15,
        ``from_beginning(100)`` -> 50, ``end()`` -> 50, ``from_end(1)`` -> 49, ``from_end(100)``
        -> 10, ``absolute(7)`` -> 7. With a stored consumer offset 20 (consumer_offset 21):
        ``beginning()`` -> 21, ``from_end(3)`` -> 18.
        """
        if self.kind is _OffsetKind.ABSOLUTE:
            return self.value
        if self.kind is _OffsetKind.FROM_BEGINNING:
            base = start if consumer_offset is None else consumer_offset
            target = base + self.value
        else:
            base = hw if consumer_offset is None else consumer_offset
            target = base - self.value
        # Rust's clamp panics when min > max; a partition never reports start > hw, but a
        # confused server might: prefer hw then, as the later bound.
        target = min(max(target, start), hw)
        return max(target, 0)

    def __repr__(self) -> str:
        if self.kind is _OffsetKind.FROM_BEGINNING and self.value == 0:
            return "Offset.beginning()"
        if self.kind is _OffsetKind.FROM_END and self.value == 0:
            return "Offset.end()"
        return f"Offset.{self.kind.value}({self.value})"


# ------------------------------------------------------------------------------------ records


class Record(tuple):
    """A consumed record: the tuple ``(partition, offset, key, value, timestamp)`` with those
    names as attributes (like ``os.stat_result``, it is built from one sequence:
    ``Record((0, 5, None, b"v", -1))``; the decoder makes millions, and this is the cheapest
    tuple subclass Python can create).

    Attributes:
        partition: the partition it was read from.
        offset: its offset in that partition.
        key: the key bytes, or None for a record produced without a key.
        value: the value bytes.
        timestamp: milliseconds since the Unix epoch as the producer stamped the batch, or -1
            when the batch carries no timestamp.
        headers: ``(key, value)`` pairs (str, bytes); () when it has none.
    """

    __slots__ = ()
    _fields = ("partition", "offset", "key", "value", "timestamp")

    partition = property(itemgetter(0), doc="the partition it was read from")
    offset = property(itemgetter(1), doc="its offset in that partition")
    key = property(itemgetter(2), doc="the key bytes, or None")
    value = property(itemgetter(3), doc="the value bytes")
    timestamp = property(itemgetter(4), doc="ms since the Unix epoch, or -1")

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]:
        """The record's headers, ``(key, value)`` pairs in the order they were sent; () for a
        record sent without (such a record is the usual 5-tuple; one with headers has them as
        a sixth item)."""
        return self[5] if len(self) > 5 else ()

    @property
    def is_control(self) -> bool:
        """A stream marker (``fluvial.protocol.markers``), not data; only a consumer opened
        with ``markers=True`` (a stream source) gets these."""
        return len(self) > 6 and self[6]

    def __repr__(self) -> str:
        return ("Record(" + ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self)) + ")")

    def _asdict(self) -> dict:
        return dict(zip(self._fields, self))

    def value_string(self) -> str:
        """The value decoded as UTF-8 (invalid bytes replaced)."""
        return self[3].decode("utf-8", "replace")

    def key_string(self) -> str:
        """The key decoded as UTF-8; "" when there is no key (as the official client does)."""
        return "" if self[2] is None else self[2].decode("utf-8", "replace")


class RecordMetadata(NamedTuple):
    """Where a produced record was stored."""

    partition: int
    offset: int


# ------------------------------------------------------------------------- producer settings


class DeliverySemantic(str, Enum):
    """``at_least_once``: retry retriable failures (a retry may store a record twice).
    ``at_most_once``: send once, never retry."""

    AT_LEAST_ONCE = "at_least_once"
    AT_MOST_ONCE = "at_most_once"


_COMPRESSION_NAMES = {
    "none": Compression.None_, "gzip": Compression.Gzip, "snappy": Compression.Snappy,
    "lz4": Compression.Lz4, "zstd": Compression.Zstd,
}
# topic CompressionAlgorithm -> batch Compression (Any has none: the producer chooses)
TOPIC_TO_BATCH_COMPRESSION = {
    CompressionAlgorithm.None_: Compression.None_, CompressionAlgorithm.Gzip: Compression.Gzip,
    CompressionAlgorithm.Snappy: Compression.Snappy, CompressionAlgorithm.Lz4: Compression.Lz4,
    CompressionAlgorithm.Zstd: Compression.Zstd,
}


def compression_from(value: str | Compression | None) -> Compression | None:
    """A batch ``Compression`` from a name ("none", "gzip", "snappy", "lz4", "zstd"), a
    ``Compression`` member, or None (meaning: the topic decides).

    Raises:
        ConfigError: an unknown name.
    """
    if value is None or isinstance(value, Compression):
        return value
    if isinstance(value, str):
        try:
            return _COMPRESSION_NAMES[value.lower()]
        except KeyError:
            pass
    raise ConfigError(f"unknown compression {value!r}; expected one of {', '.join(_COMPRESSION_NAMES)}")


def topic_compression_from(value: str | Compression | CompressionAlgorithm | None) -> CompressionAlgorithm:
    """A topic's ``CompressionAlgorithm`` from a name (the batch names plus "any"), a batch
    ``Compression`` or a ``CompressionAlgorithm``; None means "any".

    Raises:
        ConfigError: an unknown name.
    """
    if value is None:
        return CompressionAlgorithm.Any
    if isinstance(value, CompressionAlgorithm):
        return value
    if isinstance(value, str) and value.lower() == "any":
        return CompressionAlgorithm.Any
    batch = compression_from(value)
    return next(t for t, b in TOPIC_TO_BATCH_COMPRESSION.items() if b == batch)


def isolation_from(value: str | Isolation | None) -> Isolation:
    """An ``Isolation`` from ``"read_committed"``/``"read_uncommitted"`` or the enum; None is
    read-uncommitted (the official client's default).

    Raises:
        ConfigError: an unknown name.
    """
    if value is None:
        return Isolation.ReadUncommitted
    if isinstance(value, Isolation):
        return value
    names = {"read_committed": Isolation.ReadCommitted, "read_uncommitted": Isolation.ReadUncommitted,
             "readcommitted": Isolation.ReadCommitted, "readuncommitted": Isolation.ReadUncommitted}
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    raise ConfigError(f"unknown isolation {value!r}; expected 'read_committed' or 'read_uncommitted'")


# ------------------------------------------------------------------------------- admin views


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the SC describes it.

    Attributes:
        name: the topic name.
        partitions: the partition count.
        replication_factor: replicas per partition (None for mirror topics).
        retention_seconds: how long segments are kept.
        segment_size: the segment size in bytes, None for the cluster default.
        max_partition_size: the partition size limit in bytes, None for the cluster default.
        compression: the topic's compression ("any" lets each producer choose).
        assigned: the replica map ``{partition: [spu ids, leader first]}`` (computed or assigned).
        system: a system topic (hidden from a plain list).
        resolution: the SC's status ("Provisioned", "Pending"...).
        reason: the SC's explanation when not provisioned.
    """

    name: str
    partitions: int
    replication_factor: int | None
    retention_seconds: int
    segment_size: int | None
    max_partition_size: int | None
    compression: str
    assigned: dict[int, list[int]]
    system: bool
    resolution: str
    reason: str
    ignore_rack_assignment: bool = False
    spec: object = field(default=None, repr=False, compare=False)


class ReplicaInfo(NamedTuple):
    spu: int
    hw: int
    leo: int


@dataclass(frozen=True)
class PartitionInfo:
    """One partition as the SC reports it.

    Attributes:
        topic, partition: which partition.
        leader: the leader SPU id (the spec's leader, which clients route to).
        replicas: every replica's SPU id, leader first.
        resolution: "Online", "Offline", "LeaderOffline", "ElectionLeaderFound", "OutOfStorage".
        hw, leo: the leader's high watermark and log end offset (-1 when unknown).
        isr: the SPUs holding everything committed: the leader, and the followers whose LEO is
            at least the leader's HW (derived from the reported follower offsets).
        lsr: the SC's live-replica count, as reported.
        followers: the followers' reported offsets.
        size: bytes stored (-1 error, -2 unknown).
        base_offset: the first offset still stored.
    """

    topic: str
    partition: int
    leader: int
    replicas: list[int]
    resolution: str
    hw: int
    leo: int
    isr: list[int]
    lsr: int
    followers: list[ReplicaInfo]
    size: int
    base_offset: int
    is_being_deleted: bool = False
    system: bool = False


@dataclass(frozen=True)
class SpuInfo:
    """An SPU as the SC knows it.

    Attributes:
        name: the object name (the TLS SNI prefix).
        id: the SPU id.
        type: "Managed" or "Custom".
        public_address: the ``host:port`` clients dial.
        private_address: the ``host:port`` of the SPU-to-SC/SPU-to-SPU listener.
        rack: its rack, if any.
        resolution: "Online", "Offline" or "Init".
    """

    name: str
    id: int
    type: str
    public_address: str
    private_address: str
    rack: str | None
    resolution: str

    @property
    def online(self) -> bool:
        return self.resolution == "Online"


@dataclass(frozen=True)
class ConsumerOffsetInfo:
    """A stored consumer offset: the last record ``consumer_id`` consumed from a partition.

    ``modified_time`` is seconds since the Unix epoch.
    """

    consumer_id: str
    topic: str
    partition: int
    offset: int
    modified_time: int
