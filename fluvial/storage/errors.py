"""Typed storage errors, each carrying the ErrorCode a server answers it with.

``code`` is that ErrorCode: a server maps a storage failure to the wire by it, never by the
class's name (``BatchTooLarge`` is MessageTooLarge, ``DiskFull`` PartitionFull, ``ShortCircuited``
PartitionShortCircuited, anything else StorageError unless its class says otherwise). The
payload a code needs (the partition of PartitionFull, the text of Other) is the server's to add.
None of these is a FluvialError: they never cross the wire as they are.
"""

from __future__ import annotations

import errno

from fluvial.errors import ErrorCode


class StorageError(Exception):
    """Base of every error raised by ``fluvial.storage``."""

    code: ErrorCode = ErrorCode.StorageError


class InvalidBatch(StorageError):
    """A record set the replica refused before writing anything: bad lengths, bad CRC, empty,
    too large, or offsets that do not continue the log (``append_replica``)."""

    code = ErrorCode.Other


class BatchTooLarge(InvalidBatch):
    """One batch is larger than ``ReplicaConfig.max_batch_bytes``."""

    code = ErrorCode.MessageTooLarge


class StaleLeaderEpoch(StorageError):
    """``append`` was called with a leader epoch older than the log's latest epoch: the caller
    is not the current leader any more."""

    code = ErrorCode.NotLeaderForPartition


class StorageIOError(StorageError):
    """An OS error (EIO, EROFS, ...) while touching the replica's files. The operation was undone:
    nothing it wrote is visible."""

    def __init__(self, message: str, os_errno: int | None = None):
        super().__init__(message)
        self.errno = os_errno


class DiskFull(StorageIOError):
    """ENOSPC or EDQUOT. The operation was undone; a later one may succeed once space frees."""

    code = ErrorCode.PartitionFull


class ShortCircuited(StorageIOError):
    """The replica is unusable until reopened: an fsync failed (the page cache can no longer be
    trusted), or undoing a failed write failed too. Reads of data below the failure still work;
    appends and flushes raise this."""

    code = ErrorCode.PartitionShortCircuited


class OffsetOutOfRange(StorageError):
    """A read asked for an offset outside [log_start_offset, leo].

    ``evicted`` tells the two cases apart: below the log start the records were deleted by
    retention (Fluvio's OffsetEvicted); above the LEO they do not exist yet.
    """

    def __init__(self, offset: int, log_start_offset: int, leo: int):
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.leo = leo
        where = "below the log start offset" if self.evicted else "above the log end offset"
        super().__init__(f"offset {offset} is {where} (log start {log_start_offset}, leo {leo})")

    @property
    def evicted(self) -> bool:
        return self.offset < self.log_start_offset

    @property
    def code(self) -> ErrorCode:  # type: ignore[override]
        return ErrorCode.OffsetEvicted if self.evicted else ErrorCode.OffsetOutOfRange


class CorruptLog(StorageError):
    """A stored batch failed its check (CRC, length, offset continuity). It is never served.

    Attributes name the place: ``path`` of the segment file, ``position`` of the batch in it and
    ``offset``, the first offset the batch should hold (-1 when unknown).
    """

    def __init__(self, path: str, position: int, offset: int, reason: str):
        self.path = path
        self.position = position
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt batch in {path} at position {position} (offset {offset}): {reason}; "
                         "it will not be served")


class ReplicaClosed(StorageError):
    """The replica was closed or deleted."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def os_error(exc: OSError, what: str) -> StorageIOError:
    """The typed error for ``exc``, raised while doing ``what``."""
    cls = DiskFull if exc.errno in _DISK_FULL else StorageIOError
    return cls(f"{what}: {exc.strerror or exc}", exc.errno)
