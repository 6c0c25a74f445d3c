"""The leader-epoch cache: which epoch wrote which offsets (Kafka's LeaderEpochFileCache, KIP-101
and KIP-279). Pure: no files; ``checkpoint.py`` stores it.

The cache is a list of ``(epoch, start_offset)``: the first offset written in each epoch.
Both fields increase strictly from one entry to the next. An epoch's end offset is the next
entry's start offset, or the LEO for the latest epoch.

Worked example: entries [(1, 0), (3, 150), (4, 200)], leo 260::

    end_offset_for(4) -> (4, 260)    the latest epoch ends at the LEO
    end_offset_for(3) -> (3, 200)    ends where epoch 4 starts
    end_offset_for(2) -> (1, 150)    epoch 2 never wrote: the largest epoch <= 2 is 1, and it
                                     ended where the next known epoch (3) starts
    end_offset_for(0) -> (0, 0)      older than anything known: the start of the first epoch
    end_offset_for(5) -> (-1, -1)    newer than anything known: undefined
    end_offset_for(-1) -> (-1, -1)
"""

from __future__ import annotations

from typing import NamedTuple

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class EpochEntry(NamedTuple):
    epoch: int
    start_offset: int


class EpochEndOffset(NamedTuple):
    """The answer to OffsetsForLeaderEpoch: the largest known epoch <= the requested one, and
    the offset where it ended."""

    epoch: int
    end_offset: int


class LeaderEpochCache:
    """(epoch, start_offset) entries with Kafka's update rules."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[EpochEntry] | None = None):
        self.entries: list[EpochEntry] = []
        for epoch, start in entries or ():
            self.assign(epoch, start)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LeaderEpochCache) and self.entries == other.entries

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.entries!r})"

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1].epoch if self.entries else UNDEFINED_EPOCH

    def copy(self) -> LeaderEpochCache:
        cache = LeaderEpochCache()
        cache.entries = list(self.entries)
        return cache

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; returns True when the cache changed.

        Nothing changes when ``epoch`` is already the latest and starts at or before
        ``start_offset``. Otherwise every trailing entry whose epoch >= ``epoch`` or whose start
        >= ``start_offset`` is dropped first (the data proves them wrong), then the entry is
        appended. Example: [(1, 0), (3, 150)] + assign(2, 100) -> [(1, 0), (2, 100)].

        Raises:
            ValueError: a negative epoch or offset.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"cannot assign epoch {epoch} at offset {start_offset}")
        if self.entries:
            last = self.entries[-1]
            if last.epoch == epoch and last.start_offset <= start_offset:
                return False
        while self.entries and (self.entries[-1].epoch >= epoch or self.entries[-1].start_offset >= start_offset):
            self.entries.pop()
        self.entries.append(EpochEntry(epoch, start_offset))
        return True

    def truncate_from_end(self, end_offset: int) -> bool:
        """Forget epochs that start at or after ``end_offset`` (the log was truncated there).
        Returns True when the cache changed."""
        n = len(self.entries)
        while self.entries and self.entries[-1].start_offset >= end_offset:
            self.entries.pop()
        return len(self.entries) != n

    def truncate_from_start(self, start_offset: int) -> bool:
        """The log now starts at ``start_offset``: drop epochs that ended before it, and move
        the start of the epoch that covers it up to ``start_offset``.
        Example: [(1, 0), (3, 150), (4, 200)] from 170 -> [(3, 170), (4, 200)]."""
        covering, dropped = None, 0
        while self.entries and self.entries[0].start_offset <= start_offset:
            covering = self.entries.pop(0)
            dropped += 1
        if covering is None:
            return False
        self.entries.insert(0, EpochEntry(covering.epoch, start_offset))
        return dropped > 1 or covering.start_offset != start_offset

    def end_offset_for(self, epoch: int, leo: int) -> EpochEndOffset:
        """Kafka's OffsetsForLeaderEpoch answer for ``epoch`` (worked example in the module
        docstring)."""
        if epoch == UNDEFINED_EPOCH or not self.entries:
            return EpochEndOffset(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        if epoch == self.latest_epoch:
            return EpochEndOffset(epoch, leo)
        higher = next((e for e in self.entries if e.epoch > epoch), None)
        if higher is None:
            return EpochEndOffset(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        floor = None
        for e in self.entries:
            if e.epoch > epoch:
                break
            floor = e
        if floor is None:
            return EpochEndOffset(epoch, higher.start_offset)
        return EpochEndOffset(floor.epoch, higher.start_offset)
