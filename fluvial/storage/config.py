"""Per-replica storage settings (defaults as Fluvio's, except durability: fluvial fsyncs before it
acknowledges)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fluvial.protocol.batch import HEADER_BYTES
from fluvial.protocol.internal_api import CLEANUP_POLICIES

FlushPolicy = Literal["sync", "interval", "none"]
FLUSH_POLICIES: tuple[str, ...] = ("sync", "interval", "none")
CleanupPolicy = Literal["delete", "compact"]

# Segment positions and relative offsets are stored as u32 in the index.
_U32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """How one partition replica stores its log.

    Attributes:
        segment_max_bytes: the active segment rolls before a batch would take it past this size
            (a batch larger than the limit gets a segment of its own).
        index_max_interval_bytes: a sparse index entry is added when a batch starts at least
            this many bytes after the previous entry.
        retention_seconds: delete sealed segments whose newest timestamp is older than this;
            None keeps them.
        max_partition_bytes: delete the oldest sealed segments while the log is larger than
            this; None means no limit.
        flush: "sync" (default): the server acknowledges a produce only after ``flush()`` made
            it durable (group commit). "interval": the server calls ``flush()`` every
            ``flush_interval_ms``; acks do not wait. "none": only ``close()`` fsyncs.
        flush_interval_ms: the period for the "interval" policy.
        max_batch_bytes: the largest batch accepted (Fluvio's default, 2 MiB).
        preallocate_bytes: the active segment's file is grown ahead of the data with
            ``posix_fallocate``, in steps as large as the data so far (at least 64 KiB) and at
            most this (never past ``segment_max_bytes``): fdatasync has less metadata to
            commit, and a full disk shows up before data is written. 0 turns it off.
        cleanup_policy: "delete" (default): retention deletes old segments. "compact": the log
            cleaner keeps the latest record per key (``fluvial.storage.compaction``) and
            retention deletes nothing.
        tombstone_retention_seconds: a tombstone (a keyed record with an empty value) is kept
            this long after its timestamp, then compaction drops it (Kafka's
            delete.retention.ms, 1 day).
        min_compaction_lag_seconds: a sealed segment is compacted only once its newest record
            is at least this old.
        min_cleanable_dirty_ratio: a pass runs when the sealed bytes not yet cleaned are at
            least this share of all sealed bytes (Kafka's min.cleanable.dirty.ratio).
    """

    segment_max_bytes: int = 1 << 30
    index_max_interval_bytes: int = 4096
    retention_seconds: float | None = 7 * 24 * 3600
    max_partition_bytes: int | None = None
    flush: FlushPolicy = "sync"
    flush_interval_ms: int = 1000
    max_batch_bytes: int = 2 * 1024 * 1024
    preallocate_bytes: int = 16 * 1024 * 1024
    cleanup_policy: CleanupPolicy = "delete"
    tombstone_retention_seconds: float = 24 * 3600
    min_compaction_lag_seconds: float = 0
    min_cleanable_dirty_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.segment_max_bytes <= _U32_MAX:
            raise ValueError(f"segment_max_bytes must be in 1..{_U32_MAX}, got {self.segment_max_bytes}")
        if self.index_max_interval_bytes < 1:
            raise ValueError(f"index_max_interval_bytes must be >= 1, got {self.index_max_interval_bytes}")
        if self.retention_seconds is not None and self.retention_seconds < 0:
            raise ValueError(f"retention_seconds must be >= 0 or None, got {self.retention_seconds}")
        if self.max_partition_bytes is not None and self.max_partition_bytes < 0:
            raise ValueError(f"max_partition_bytes must be >= 0 or None, got {self.max_partition_bytes}")
        if self.flush not in FLUSH_POLICIES:
            raise ValueError(f"flush must be one of {FLUSH_POLICIES}, got {self.flush!r}")
        if self.flush_interval_ms < 1:
            raise ValueError(f"flush_interval_ms must be >= 1, got {self.flush_interval_ms}")
        if self.preallocate_bytes < 0:
            raise ValueError(f"preallocate_bytes must be >= 0, got {self.preallocate_bytes}")
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ValueError(f"cleanup_policy must be one of {CLEANUP_POLICIES}, got {self.cleanup_policy!r}")
        if self.tombstone_retention_seconds < 0 or self.min_compaction_lag_seconds < 0:
            raise ValueError("tombstone_retention_seconds and min_compaction_lag_seconds must be >= 0")
        if not 0 <= self.min_cleanable_dirty_ratio <= 1:
            raise ValueError(f"min_cleanable_dirty_ratio must be in 0..1, got {self.min_cleanable_dirty_ratio}")
        if not HEADER_BYTES <= self.max_batch_bytes <= _U32_MAX:
            raise ValueError(f"max_batch_bytes must be in {HEADER_BYTES}..{_U32_MAX}, got {self.max_batch_bytes}")
