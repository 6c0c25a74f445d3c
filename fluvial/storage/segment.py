"""One segment: a ``.log`` file of whole batches and its sparse ``.index``.

Theory of operation
-------------------
``{base_offset:020}.log`` holds batches back to back, byte for byte as they were appended
(records.md §4): the first batch's base offset is the segment's base offset, and each batch's
base offset is the previous batch's ``next_offset``. That continuity, the batch lengths and the
CRC are the three things every reader checks; nothing else in the file is trusted.

``size`` is the number of bytes that belong to the log. Readers never look past it, so bytes a
failed write left beyond it are never served, even before they are truncated away. The active
segment's file is usually longer (``allocated``), grown ahead of the data with
``posix_fallocate``: fdatasync then has less metadata to commit (no new file size), and a full
disk shows up before data is written. Sealing a segment trims the file back to ``size``;
recovery cuts the zeros of an untrimmed one.

A segment remembers what it has already proven:

* ``verified_end``: every batch before this position passed its CRC check (on recovery, before
  it was appended, or when it was first served). Reads re-check only what lies beyond it.
* ``corrupt``: positions of batches that failed a check (``mark_corrupt``), with the offset each
  should start at. They are never served; ``Replica.corrupt_offset`` is the lowest.

Header walks read windows of ``WINDOW_BYTES`` with ``os.pread`` and decode only the 57-byte
batch headers, never records.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator, NamedTuple

from fluvial.protocol.batch import (
    HEADER,
    HEADER_BYTES,
    MAGIC,
    BatchError,
    BatchHeader,
    check_batch,
    follows,
    read_header,
    scan_valid_prefix,
)
from fluvial.protocol.frame import IOV_MAX
from fluvial.durable import replace_durably
from fluvial.storage.errors import CorruptLog, os_error
from fluvial.storage.index import OffsetIndex
from fluvial.storage.journal import forget_segment, sync_segment

log = logging.getLogger("fluvial.storage")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
OFFSET_DIGITS = 20
WINDOW_BYTES = 16 * 1024  # header walks
MIN_PREALLOCATE_BYTES = 64 * 1024
RECOVERY_WINDOW_BYTES = 4 * 1024 * 1024  # recovery scans (CRC of everything)


def segment_name(base_offset: int, suffix: str) -> str:
    """``00000000000000000042.log`` for base offset 42."""
    return f"{base_offset:0{OFFSET_DIGITS}d}{suffix}"


def parse_segment_name(name: str, suffix: str) -> int | None:
    """The base offset a segment file name encodes, or None if it is not one."""
    stem = name[: -len(suffix)] if name.endswith(suffix) else ""
    if len(stem) != OFFSET_DIGITS or not stem.isdigit():
        return None
    return int(stem)


class CorruptBatch(NamedTuple):
    """A stored batch that failed a check: where, which offsets, why."""

    path: str
    position: int
    base_offset: int
    next_offset: int
    reason: str


def _reason(exc: BatchError) -> str:
    """A BatchError's text without its "batch at N: " prefix (N is relative to a buffer)."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    return rest if sep and head.startswith("batch at ") else text


class SegmentGone(Exception):
    """The segment's file was deleted (retention, truncation) before a read finished."""


def pwrite_all(fd: int, data, position: int) -> None:
    """Write all of ``data`` at ``position`` (os.pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, position)
        view = view[n:]
        position += n


def pwritev_all(fd: int, parts: list, position: int) -> None:
    """Write the buffers ``parts`` back to back at ``position`` (``os.pwritev``, at most IOV_MAX
    buffers a call; a short write is finished with plain writes)."""
    for i in range(0, len(parts), IOV_MAX):
        group = parts[i:i + IOV_MAX]
        total = sum(len(p) for p in group)
        written = os.pwritev(fd, group, position)
        if written < total:
            pwrite_all(fd, memoryview(b"".join(group))[written:], position + written)
        position += total


class Segment:
    """A segment's files, its in-memory index and what is known about its batches."""

    def __init__(self, directory: str, base_offset: int, fd: int, size: int, index_interval: int):
        self.directory = directory
        self.base_offset = base_offset
        self.log_path = os.path.join(directory, segment_name(base_offset, LOG_SUFFIX))
        self.index_path = os.path.join(directory, segment_name(base_offset, INDEX_SUFFIX))
        self.fd = fd
        self.size = size
        self.allocated = size  # the file's length
        self.index = OffsetIndex(index_interval)
        self.verified_end = 0
        self.corrupt: dict[int, CorruptBatch] = {}
        # The offset after the last batch: always known for the active segment; for a sealed one,
        # the next segment's base offset (what it should end at).
        self.next_offset: int = base_offset
        # Newest batch timestamp (ms); None until a header walk computed it.
        self.max_timestamp: int | None = None
        # Sealed segments (all but the last) keep their .index file up to date; the active one's
        # index lives in memory and is written when it is sealed.
        self.sealed = False
        self.closed = False
        # (base offset, position) of the batch this process appended last: where a tailing
        # reader (a live consumer, a follower) asks next. ``find`` tries it before the index
        # walk, which re-reads up to ``index_max_interval_bytes`` of headers. A hint only: it is
        # checked against the header it points at, and dropped when the segment is cut back.
        self.tail: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<Segment {self.base_offset} size={self.size} next={self.next_offset}>"

    # --- files ---------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str, base_offset: int, index_interval: int) -> Segment:
        """A new, empty segment file (raises OSError)."""
        path = os.path.join(directory, segment_name(base_offset, LOG_SUFFIX))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        forget_segment(path)
        seg = cls(directory, base_offset, fd, 0, index_interval)
        seg.max_timestamp = -1
        return seg

    @classmethod
    def open(cls, directory: str, base_offset: int, index_interval: int) -> Segment:
        """An existing segment file; ``size`` is the file's length (raises OSError)."""
        path = os.path.join(directory, segment_name(base_offset, LOG_SUFFIX))
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        return cls(directory, base_offset, fd, size, index_interval)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def remove_files(self) -> None:
        """Close and delete both files (a missing index is fine)."""
        self.close()
        os.unlink(self.log_path)
        forget_segment(self.log_path)
        try:
            os.unlink(self.index_path)
        except FileNotFoundError:
            pass

    def ensure_allocated(self, end: int, segment_max_bytes: int, max_step: int) -> None:
        """Grow the file (``posix_fallocate``) so that it holds at least ``end`` bytes, ahead by
        a step as large as the data (at least ``MIN_PREALLOCATE_BYTES``, at most ``max_step``),
        never past ``segment_max_bytes`` unless ``end`` is. Raises OSError (ENOSPC) with the
        file unchanged in length, or trimmed back to ``allocated`` by the caller's undo."""
        if end <= self.allocated:
            return
        if not max_step or not hasattr(os, "posix_fallocate"):
            return
        step = min(max_step, max(MIN_PREALLOCATE_BYTES, end))
        target = max(end, min(segment_max_bytes, end + step))
        os.posix_fallocate(self.fd, self.allocated, target - self.allocated)
        self.allocated = target

    def trim(self, size: int | None = None) -> None:
        """Cut the file back to ``size`` (default: ``self.size``), dropping preallocated space.
        Raises OSError."""
        size = self.size if size is None else size
        if self.allocated != size:
            os.ftruncate(self.fd, size)
            self.allocated = size

    def pread(self, length: int, position: int) -> bytes:
        """Up to ``length`` bytes at ``position`` (fewer only at the end of the file).

        Raises:
            SegmentGone: the segment was closed and its file deleted.
            StorageIOError: the read failed.
        """
        try:
            if self.closed:  # deleted by retention after a read planned it; the file may linger
                try:
                    fd = os.open(self.log_path, os.O_RDONLY)
                except FileNotFoundError:
                    raise SegmentGone(self.log_path) from None
                try:
                    return _pread_all(fd, length, position)
                finally:
                    os.close(fd)
            return _pread_all(self.fd, length, position)
        except OSError as exc:
            raise os_error(exc, f"reading {self.log_path}") from exc

    def write_index_file(self) -> None:
        """Replace the .index file with the whole in-memory index, atomically and durably
        (``replace_durably``; raises OSError). Sealing writes it before the next segment
        exists, so after a crash or a power cut a sealed segment's index is the one written
        when it was sealed, never an older one that is well-formed but points elsewhere."""
        replace_durably(self.index_path, self.index.to_bytes())

    def load_index(self) -> bool:
        """Load the .index file; False when it is missing or does not check out."""
        try:
            with open(self.index_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return False
        index = OffsetIndex.from_bytes(data, self.index.interval, self.size)
        if index is None:
            return False
        self.index = index
        return True

    # --- header walks ----------------------------------------------------------------------

    def _corrupt(self, position: int, offset: int, reason: str) -> CorruptLog:
        return CorruptLog(self.log_path, position, offset, reason)

    def headers(self, position: int, expected_offset: int, end: int | None = None
                ) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from ``position`` (whose base offset must be
        ``expected_offset``) up to ``end`` (default ``size``).

        Checks each header's lengths, magic and offset continuity; not the CRC.

        Raises:
            CorruptLog: a header does not check out.
        """
        end = self.size if end is None else end
        buf, buf_pos = b"", position
        pos, expected = position, expected_offset
        while pos < end:
            rel = pos - buf_pos
            if rel + HEADER_BYTES > len(buf):
                buf, buf_pos, rel = self.pread(min(WINDOW_BYTES, end - pos), pos), pos, 0
                if len(buf) < HEADER_BYTES:
                    raise self._corrupt(pos, expected, f"{end - pos} bytes left, too short for a batch header")
            h = BatchHeader._make(HEADER.unpack_from(buf, rel))
            if not follows(h, expected):
                raise self._corrupt(pos, expected, f"base offset {h.base_offset}, expected {expected}")
            if h.magic != MAGIC or h.last_offset_delta < 0 or h.size < HEADER_BYTES:
                raise self._corrupt(pos, expected, f"bad header (magic {h.magic}, batch_length "
                                                   f"{h.batch_length}, last_offset_delta {h.last_offset_delta})")
            if h.size > end - pos:
                raise self._corrupt(pos, expected, f"batch of {h.size} bytes runs past the segment's "
                                                   f"end at {end}")
            yield pos, h
            pos += h.size
            expected = h.next_offset

    def find(self, offset: int) -> tuple[int, BatchHeader]:
        """(position, header) of the batch that holds ``offset``: index lookup, then a short
        header walk. Rebuilds the index once if an entry points at the wrong batch.

        Raises:
            CorruptLog: the batches on the way do not check out, or the segment ends before
                ``offset``.
        """
        tail = self.tail
        if tail is not None and tail[0] == offset and tail[1] + HEADER_BYTES <= self.size:
            head = self.pread(HEADER_BYTES, tail[1])
            if len(head) == HEADER_BYTES and HEADER.unpack_from(head)[0] == offset:
                for p, h in self.headers(tail[1], offset):
                    return p, h
        rel, pos = self.index.lookup(offset - self.base_offset)
        if pos:
            head = self.pread(HEADER_BYTES, pos)
            if len(head) < HEADER_BYTES or HEADER.unpack_from(head)[0] != self.base_offset + rel:
                log.warning("%s: index entry (%d, %d) points at the wrong batch; rebuilding the index",
                            self.index_path, rel, pos)
                self.rebuild_index()
                rel, pos = self.index.lookup(offset - self.base_offset)
        for p, h in self.headers(pos, self.base_offset + rel):
            if h.next_offset > offset:
                return p, h
        raise self._corrupt(self.size, offset, f"offset {offset} is missing: the segment's batches end "
                                               f"before it (next segment or LEO at {self.next_offset})")

    def end_before(self, position: int) -> int:
        """The offset after the last batch that ends at or before ``position`` (a batch
        boundary); the segment's base offset when none does. Differs from the base offset of
        the batch at ``position`` only after a compaction gap.

        Raises:
            CorruptLog: the batches before ``position`` do not check out.
        """
        end = self.base_offset
        for _, h in self.headers(0, self.base_offset, position):
            end = h.next_offset
        return end

    def rebuild_index(self) -> CorruptLog | None:
        """Rebuild the index (and the max timestamp) from the batch headers. Stops at the first
        header that does not check out and returns that error; the index then covers the
        batches before it."""
        index = OffsetIndex(self.index.interval)
        max_ts = -1
        error = None
        try:
            for pos, h in self.headers(0, self.base_offset):
                index.maybe_add(h.base_offset - self.base_offset, pos)
                max_ts = max(max_ts, h.first_timestamp, h.max_time_stamp)
        except CorruptLog as exc:
            error = exc
        self.index = index
        self.max_timestamp = max_ts
        if self.sealed:
            try:
                self.write_index_file()
            except OSError as exc:
                log.warning("%s: could not write the rebuilt index: %s", self.index_path, exc)
        return error

    def newest_timestamp(self) -> int:
        """The newest batch timestamp in ms (walking the headers once if needed); the file's
        mtime when no batch carries a timestamp."""
        if self.max_timestamp is None:
            max_ts = -1
            try:
                for _, h in self.headers(0, self.base_offset):
                    max_ts = max(max_ts, h.first_timestamp, h.max_time_stamp)
            except CorruptLog as exc:
                log.warning("%s", exc)
            self.max_timestamp = max_ts
        if self.max_timestamp > 0:
            return self.max_timestamp
        try:
            return int(os.stat(self.log_path).st_mtime * 1000)
        except OSError:
            return 0

    # --- recovery ----------------------------------------------------------------------------

    def _check_at(self, pos: int, file_size: int, expected: int) -> tuple[BatchHeader | None, str]:
        """(header, "") of the batch at ``pos`` if it is whole, CRC-valid and has base offset
        ``expected``; (None, why not) otherwise."""
        head = self.pread(HEADER_BYTES, pos)
        try:
            h = read_header(head)
        except BatchError as exc:
            return None, _reason(exc)
        if not follows(h, expected):
            return None, f"base offset {h.base_offset}, expected {expected}"
        if h.size > file_size - pos:
            return None, f"batch of {h.size} bytes runs past the end of the file"
        try:
            check_batch(self.pread(h.size, pos))
        except BatchError as exc:
            return None, _reason(exc)
        return h, ""

    def recover(self) -> tuple[int, list[tuple[int, int]]]:
        """Scan the whole segment as the active one after an unclean stop: check every batch
        (lengths, CRC, offset continuity), rebuild the index, find the max timestamp, and cut
        the segment at the first batch that does not check out, with everything after it.

        Nothing after the last fsync was acknowledged, and after a power cut pages reach the
        disk out of order: a valid-looking batch after an invalid one is not trustworthy, so it
        is cut too (and the replica refetches it from the leader).

        Returns:
            (bytes of garbage cut, not counting the zeros of preallocated space at the end;
            [(epoch, base_offset) where the batch epoch changes]).

        Raises:
            OSError: reading, truncating or syncing failed.
        """
        file_size = os.fstat(self.fd).st_size
        index = OffsetIndex(self.index.interval)
        epochs: list[tuple[int, int]] = []
        max_ts, last_epoch = -1, None
        pos, expected = 0, self.base_offset
        reason = ""
        while pos < file_size:
            buf = self.pread(min(RECOVERY_WINDOW_BYTES, file_size - pos), pos)
            end, count = scan_valid_prefix(buf)
            good: list[tuple[int, BatchHeader]] = []
            rel = 0
            while count and rel < end:
                h = read_header(buf, rel)
                if not follows(h, expected):
                    break
                good.append((pos + rel, h))
                expected = h.next_offset
                rel += h.size
            if not good:  # the first batch is bad, or does not fit in the window
                h, reason = self._check_at(pos, file_size, expected)
                if h is None:
                    break
                good = [(pos, h)]
                expected = h.next_offset
                rel = h.size
            for p, h in good:
                index.maybe_add(h.base_offset - self.base_offset, p)
                max_ts = max(max_ts, h.first_timestamp, h.max_time_stamp)
                if h.partition_leader_epoch >= 0 and h.partition_leader_epoch != last_epoch:
                    epochs.append((h.partition_leader_epoch, h.base_offset))
                    last_epoch = h.partition_leader_epoch
            pos += rel
        garbage = self._nonzero_end(pos, file_size) - pos
        if garbage:
            log.warning("%s: the batch at position %d (offset %d) does not check out (%s): cutting "
                        "%d bytes from there, every record from offset %d on", self.log_path, pos,
                        expected, reason, garbage, expected)
        if file_size > pos:
            os.ftruncate(self.fd, pos)
            sync_segment(self.fd, self.log_path, pos, metadata=True)
        self.size = self.allocated = pos
        self.index = index
        self.corrupt = {}
        self.verified_end = pos
        self.next_offset = expected
        self.max_timestamp = max_ts
        return garbage, epochs

    def _nonzero_end(self, start: int, end: int) -> int:
        """The position after the last non-zero byte in [start, end), or ``start``."""
        while end > start:
            window = max(start, end - RECOVERY_WINDOW_BYTES)
            data = self.pread(end - window, window).rstrip(b"\0")
            if data:
                return window + len(data)
            end = window
        return start

    def mark_corrupt(self, position: int, offset: int, next_offset: int, reason: str) -> CorruptBatch:
        """Record that the batch at ``position``, which should start at ``offset``, failed a
        check (``next_offset`` -1 when its header is unreadable). It is never served, and
        ``Replica.corrupt_offset`` counts from it. Logged once per batch."""
        bad = self.corrupt.get(position)
        if bad is None:
            bad = self.corrupt[position] = CorruptBatch(self.log_path, position, offset, next_offset, reason)
            log.error("%s: corrupt batch at position %d (offset %d): %s; it will not be served",
                      self.log_path, position, offset, reason)
        return bad

    def verify(self, position: int, data, offset: int) -> tuple[int, int, CorruptBatch | None]:
        """CRC-check the batches in ``data`` (read from ``position``; the first should start at
        ``offset``), and their offset continuity. Returns how many leading bytes are valid, the
        offset after them, and the first bad batch (None if all are good; a batch cut short by
        the end of ``data`` is bad); moves ``verified_end`` when the checked range touches it,
        and records the bad batch (``mark_corrupt``)."""
        rel, bad = 0, None
        while rel < len(data):
            try:
                h = check_batch(data, rel)
                reason = "" if follows(h, offset) else f"base offset {h.base_offset}, expected {offset}"
            except BatchError as exc:
                h, reason = None, _reason(exc)
            if reason:
                try:
                    next_offset = read_header(data, rel).next_offset
                except BatchError:
                    next_offset = -1
                bad = self.mark_corrupt(position + rel, offset, next_offset, reason)
                break
            rel += h.size
            offset = h.next_offset
        if position <= self.verified_end < position + rel:
            self.verified_end = position + rel
        return rel, offset, bad

    def verify_region(self, position: int, offset: int, max_bytes: int) -> tuple[int, int, CorruptBatch | None]:
        """``verify`` the whole batches from ``position`` (base offset ``offset``) that fit in
        ``max_bytes``, or the one batch there if it alone is larger. Returns (position after the
        valid batches, the offset there, the first bad batch or None)."""
        data = memoryview(self.pread(min(max(max_bytes, HEADER_BYTES), self.size - position), position))
        rel = 0
        while rel < len(data):
            try:
                size = read_header(data, rel).size
            except BatchError:
                break  # verify reports it
            if rel + size > len(data):
                if rel == 0 and size <= self.size - position:
                    data = memoryview(self.pread(size, position))
                    rel = size
                break
            rel += size
        good, offset, bad = self.verify(position, data[:rel] if rel else data, offset)
        return position + good, offset, bad


def _pread_all(fd: int, length: int, position: int) -> bytes:
    data = os.pread(fd, length, position)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
