"""The sparse offset index of one segment.

File layout (Fluvio's): a flat array of 8-byte entries, no header::

    Entry =>
      relative_offset  u32 BE   batch base offset - segment base offset
      position         u32 BE   byte position of that batch in the segment's .log

Entries are strictly increasing in both fields. The first batch (relative offset 0, position 0)
is implied and not stored. A batch gets an entry when it starts at least
``index_max_interval_bytes`` after the previous entry, so a lookup scans at most about one
interval of batch headers.

The index is a hint, never the truth: the log is. An index file that does not parse, is not
increasing, or points past the end of its log is rebuilt from the log's batch headers, and a
lookup that lands on a header whose base offset disagrees with the entry triggers a rebuild too.
"""

from __future__ import annotations

import bisect
import struct
from array import array

ENTRY = struct.Struct(">II")
ENTRY_BYTES = ENTRY.size  # 8


class OffsetIndex:
    """In-memory sparse index: parallel arrays of relative offsets and positions."""

    __slots__ = ("interval", "relative_offsets", "positions")

    def __init__(self, interval: int):
        self.interval = interval
        self.relative_offsets = array("L")
        self.positions = array("L")

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def maybe_add(self, relative_offset: int, position: int) -> bool:
        """Record the batch at ``position`` if it is at least one interval past the last entry."""
        if position - self.last_position < self.interval:
            return False
        self.add(relative_offset, position)
        return True

    def add(self, relative_offset: int, position: int) -> None:
        self.relative_offsets.append(relative_offset)
        self.positions.append(position)

    def lookup(self, relative_offset: int) -> tuple[int, int]:
        """(relative offset, position) of the last entry at or before ``relative_offset``;
        (0, 0) when there is none.

        Example: entries [(30, 4100), (100, 8300)]: lookup(50) -> (30, 4100),
        lookup(1000) -> (100, 8300), lookup(10) -> (0, 0).
        """
        i = bisect.bisect_right(self.relative_offsets, relative_offset)
        if i == 0:
            return 0, 0
        return self.relative_offsets[i - 1], self.positions[i - 1]

    def truncate(self, position: int) -> None:
        """Forget entries for batches at or after ``position``."""
        i = bisect.bisect_left(self.positions, position)
        del self.relative_offsets[i:]
        del self.positions[i:]

    def to_bytes(self) -> bytes:
        out = bytearray(len(self) * ENTRY_BYTES)
        for i, (rel, pos) in enumerate(zip(self.relative_offsets, self.positions)):
            ENTRY.pack_into(out, i * ENTRY_BYTES, rel, pos)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, interval: int, log_size: int) -> OffsetIndex | None:
        """Parse an index file; None when it is not a plausible index for a log of
        ``log_size`` bytes (odd length, not strictly increasing, a position past the log)."""
        if len(data) % ENTRY_BYTES:
            return None
        index = cls(interval)
        prev_rel, prev_pos = 0, 0
        for rel, pos in ENTRY.iter_unpack(data):
            if rel <= prev_rel or pos <= prev_pos or pos >= log_size:
                return None
            index.relative_offsets.append(rel)
            index.positions.append(pos)
            prev_rel, prev_pos = rel, pos
        return index
