"""fluvial.storage: partition replica logs on disk (plain synchronous file I/O, no trio).

See ``replica.py`` for the theory of operation and ``docs/storage.md`` for the on-disk format,
recovery rules, flush policies and retention.
"""

from fluvial.storage.config import ReplicaConfig
from fluvial.storage.epochs import EpochEndOffset, EpochEntry, LeaderEpochCache
from fluvial.storage.errors import (
    BatchTooLarge,
    CorruptLog,
    DiskFull,
    InvalidBatch,
    OffsetOutOfRange,
    ReplicaClosed,
    ShortCircuited,
    StaleLeaderEpoch,
    StorageError,
    StorageIOError,
)
from fluvial.storage.group_commit import GroupCommit
from fluvial.storage.replica import (
    AppendResult,
    DeletedSegment,
    FileSlice,
    ReadResult,
    RecoveryReport,
    Replica,
    SegmentInfo,
)

__all__ = [
    "AppendResult", "BatchTooLarge", "CorruptLog", "DeletedSegment", "DiskFull", "EpochEndOffset",
    "EpochEntry", "FileSlice", "GroupCommit", "InvalidBatch", "LeaderEpochCache", "OffsetOutOfRange",
    "ReadResult", "RecoveryReport", "Replica", "ReplicaClosed", "ReplicaConfig", "SegmentInfo",
    "ShortCircuited", "StaleLeaderEpoch", "StorageError", "StorageIOError",
]
