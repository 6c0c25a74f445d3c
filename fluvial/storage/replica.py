"""A partition replica's log on disk: append, read, flush, truncate, retain, recover.

Theory of operation
-------------------
A replica is one directory, ``<base_dir>/<topic>-<partition>/``::

    00000000000000000000.log     batches, byte for byte as produced (leader-stamped)
    00000000000000000000.index   sparse index: u32 relative offset -> u32 position
    00000000000000000742.log     the next segment starts at offset 742
    00000000000000000742.index   (written when the segment is sealed)
    replication.chk              high watermark (i64 BE), atomic
    leader-epoch.chk             leader-epoch cache, atomic

The last segment is the *active* one: appends go there, and it rolls (a new segment starts at
the LEO) before a batch would take it past ``segment_max_bytes``. The others are *sealed* and
never change, except that retention deletes them whole, ``truncate_to`` cuts them, and the
log cleaner of a compacted topic replaces them with cleaned copies (``compact``; see
``fluvial.storage.cleaner``: offsets are kept, removed records leave gaps that only batches
flagged ``ATTR_COMPACTED`` may follow).
``log_start_offset`` is the first segment's base offset; ``leo`` is where the next batch goes.

Rules
~~~~~
1. Check before writing. Every batch of an append passes ``iter_batches`` (lengths, magic,
   CRC) and the size limit before a byte reaches the disk; a bad one rejects the whole append
   (``InvalidBatch``). The leader stamps base offsets and its epoch into a copy of each batch's
   first 16 bytes; both lie outside the CRC.
2. All or nothing. An append is one ``os.pwritev`` per segment it touches (usually one): the
   stamped 16-byte heads and the producer's bytes, uncopied, into space preallocated with
   ``posix_fallocate``. If any step fails, every file it touched is truncated back and new
   segments are deleted, and the in-memory sizes never moved, so nothing half-written is ever
   read (``DiskFull`` for ENOSPC, ``StorageIOError`` otherwise). If even the undo fails, the
   replica is short-circuited: appends and flushes raise ``ShortCircuited`` until it is
   reopened (recovery then cuts the garbage). Reads keep working.
3. Durable LEO. ``append`` does not fsync, except that sealing a segment on a roll trims and
   fsyncs it before the next segment exists (so only the last segment ever needs repair).
   ``flush()`` fdatasyncs every segment written since
   the last flush (and the directory after a roll) and returns ``durable_leo``: every record
   below it survives a crash. Under the "sync" policy the server acknowledges a produce only
   once ``durable_leo`` covers it (see ``group_commit.py``). A failed fsync short-circuits the
   replica: after an fsync error the page cache may have dropped the dirty pages, so nothing
   written since the last good flush can be trusted (PostgreSQL's "fsyncgate"). Every fsync of
   segment data goes through ``journal.sync_segment``, which also feeds the sync journal of the
   power-loss tests (``FLUVIAL_SYNC_JOURNAL``) before any durable LEO is published.
4. Check after reading. A read walks batch headers only (lengths, magic, offset continuity),
   and CRC-checks batches the first time they are served from a segment region nobody has
   verified yet (sealed segments after a restart). A batch that fails is recorded and never
   served: a read that starts on it raises ``CorruptLog``; a read that reaches it stops before
   it.
5. Recovery on open: the active segment is scanned fully (lengths, CRC, continuity) and cut at
   the first batch that does not check out, with everything after it: nothing after the last
   fsync was acknowledged, and after a power cut pages reach the disk out of order, so a valid
   batch after a bad one proves nothing. Its index is rebuilt. Sealed segments (fsynced when
   sealed) are trusted until read (rule 4) or verified (rule 6), but a missing or malformed
   ``.index`` is rebuilt on open.
6. Corruption in sealed segments (bit rot). ``verify_sealed(max_bytes)``, called repeatedly
   from housekeeping on the event-loop thread, CRC-checks the sealed segments a bounded step at
   a time, once each, oldest first. Every corrupt batch found (by it or by a read) is recorded;
   ``corrupt_offset`` is the base offset of the lowest one, None when none. The replica does
   not hold the records from there on: it never serves them and must not count them as
   durable copies. A follower calls ``truncate_to(corrupt_offset)`` (which locates the batch by
   its position, so a garbage header is no obstacle) and refetches from the leader; a leader
   hands its leadership to an in-sync replica.

Threads
~~~~~~~
Everything except ``flush()`` and ``checkpoint_hw()`` must be called from one thread (the
server's event-loop thread). ``flush()`` is meant to run in a worker thread while appends go
on: it holds ``_lock`` only to snapshot (the LEO, the dirty segments, whose fds it ``os.dup``s)
and to publish ``durable_leo``; the fsyncs run outside the lock on the duplicated descriptors,
so a concurrent roll, retention or close cannot close a descriptor under it. Appends that land
during the fsync are not claimed: the snapshot LEO predates them, and their segment is marked
dirty again for the next flush. ``truncate_to`` and ``truncate_fully_and_start_at`` bump a
generation number (under ``_lock``, before they touch a file); a flush that started before one
journals and publishes nothing. Flushes are serialised by ``_flush_lock``.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

from fluvial.protocol.batch import (
    EPOCH_OFFSET,
    BatchError,
    BatchHeader,
    follows,
    iter_batches,
    set_base_offset,
    set_leader_epoch,
)
from fluvial.durable import TMP_SUFFIX, fsync_dir, make_dirs_durable
from fluvial.storage.cleaner import CleanPlan, SegmentSnapshot, finish_interrupted_swap, prepare, swap_in
from fluvial.storage.checkpoint import (
    EPOCH_CHECKPOINT,
    HW_CHECKPOINT,
    decode_epochs,
    decode_hw,
    encode_epochs,
    encode_hw,
    read_file,
    write_atomic,
)
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.epochs import EpochEndOffset, EpochEntry, LeaderEpochCache
from fluvial.storage.errors import (
    BatchTooLarge,
    CorruptLog,
    InvalidBatch,
    OffsetOutOfRange,
    ReplicaClosed,
    ShortCircuited,
    StaleLeaderEpoch,
    StorageError,
    StorageIOError,
    os_error,
)
from fluvial.storage.journal import record_durable, sync_segment
from fluvial.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    Segment,
    SegmentGone,
    parse_segment_name,
    pwrite_all,
    pwritev_all,
)

log = logging.getLogger("fluvial.storage")

_U32_MAX = 2**32 - 1
_STAMPED_BYTES = EPOCH_OFFSET + 4  # base_offset, batch_length, partition_leader_epoch


class FileSlice(NamedTuple):
    """``length`` bytes at ``position`` in the segment file ``path``: whole batches, ready for
    ``os.sendfile`` (open ``path`` read-only; retention may have deleted it, then treat the
    records as evicted)."""

    path: str
    position: int
    length: int


class OpenSlice(NamedTuple):
    """``length`` bytes at ``position`` of the open descriptor ``fd``: a piece of a read to
    send with ``os.sendfile`` (``ReadResult.opened``)."""

    fd: int
    position: int
    length: int


class AppendResult(NamedTuple):
    """What an append wrote.

    Attributes:
        base_offset: offset of the first record written.
        last_offset: offset of the last record written.
        leo: the log end offset after the append (last_offset + 1).
        end_position: byte position after the append in the active segment.
        batch_count: batches written.
        size_bytes: bytes written.
    """

    base_offset: int
    last_offset: int
    leo: int
    end_position: int
    batch_count: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    base_offset: int
    size_bytes: int
    path: str


@dataclass(frozen=True, slots=True)
class DeletedSegment:
    """A segment retention removed: its offsets were [base_offset, next_offset)."""

    base_offset: int
    next_offset: int
    size_bytes: int
    reason: str  # "time" or "size"


@dataclass
class RecoveryReport:
    """What ``Replica.open`` found and repaired."""

    truncated_bytes: int = 0
    rebuilt_indexes: list[int] = field(default_factory=list)  # base offsets
    removed_files: list[str] = field(default_factory=list)
    epochs_rebuilt: bool = False
    hw_reset: bool = False


class _Chunk:
    """Part of a read: ``length`` bytes at ``position`` of ``segment``, whose first batch has
    base offset ``offset``; ``data`` once read."""

    __slots__ = ("segment", "position", "offset", "length", "data")

    def __init__(self, segment: Segment, position: int, offset: int, length: int):
        self.segment = segment
        self.position = position
        self.offset = offset
        self.length = length
        self.data: bytes | None = None


class ReadResult:
    """Whole batches from ``first_offset`` (the base offset of the batch holding the requested
    offset) up to ``next_offset`` (exclusive), as file slices and, on demand, as bytes.

    ``hw``, ``leo`` and ``log_start_offset`` are the replica's values at the time of the read;
    ``attributes`` is the bitwise or of every batch's attributes (whether any batch is
    compressed, carries headers, ...). An empty result has ``first_offset == next_offset ==``
    the requested offset.

    Take the bytes (``read_bytes()``) or send the slices before the replica is truncated:
    ``read_bytes()`` raises ``OffsetOutOfRange`` if a truncation or retention removed the data
    in between. To send the batches without reading them (``opened``), hold the descriptors it
    gives for as long as the send runs and ask ``intact()`` after every await.
    """

    __slots__ = ("first_offset", "next_offset", "hw", "leo", "log_start_offset", "attributes",
                 "_chunks", "_replica", "_generation", "_bytes")

    def __init__(self, replica: Replica, chunks: list[_Chunk], first_offset: int, next_offset: int,
                 attributes: int = 0):
        self.first_offset = first_offset
        self.next_offset = next_offset
        self.attributes = attributes
        self.hw = replica.hw
        self.leo = replica.leo
        self.log_start_offset = replica.log_start_offset
        self._chunks = chunks
        self._replica = replica
        self._generation = replica._generation
        self._bytes: bytes | None = None

    def __repr__(self) -> str:
        return (f"<ReadResult offsets {self.first_offset}..{self.next_offset} size={self.size} "
                f"hw={self.hw} leo={self.leo}>")

    @property
    def slices(self) -> list[FileSlice]:
        return [FileSlice(c.segment.log_path, c.position, c.length) for c in self._chunks]

    @property
    def size(self) -> int:
        """Bytes of batches in the result."""
        return sum(c.length for c in self._chunks)

    def __len__(self) -> int:
        return self.size

    def _gone(self) -> OffsetOutOfRange:
        r = self._replica
        return OffsetOutOfRange(self.first_offset, r.log_start_offset, r.leo)

    def read_bytes(self) -> bytes:
        """The batches, concatenated.

        Raises:
            OffsetOutOfRange: the data was truncated or deleted since the read.
            StorageIOError: reading failed.
        """
        if self._bytes is not None:
            return self._bytes
        if self._generation != self._replica._generation:
            raise self._gone()
        parts = []
        for c in self._chunks:
            data = c.data
            if data is None:
                try:
                    data = c.segment.pread(c.length, c.position)
                except SegmentGone:
                    raise self._gone() from None
                if len(data) != c.length:
                    raise self._gone()
            parts.append(data)
        self._bytes = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._bytes

    @property
    def bytes(self) -> bytes:
        return self.read_bytes()

    def intact(self) -> bool:
        """Whether the log still holds the bytes this read counted: no truncation since (a
        truncation may cut them and appends refill the same file positions). Retention and
        compaction replace or delete whole files; ``opened`` descriptors still read the old
        ones."""
        return self._generation == self._replica._generation and not self._replica._closed

    @contextlib.contextmanager
    def opened(self) -> Iterator[list[bytes | OpenSlice]]:
        """The batches as pieces to send without reading them: an ``OpenSlice`` per segment
        part, on a duplicate of the segment's descriptor (``os.dup``), or the bytes where the
        read already holds them (regions it CRC-checked). Retention, compaction or closing the
        replica close a segment's own descriptor (and its number may then name another file);
        a duplicate keeps the file it was made from open until the block ends, with the bytes
        this read counted. Call it right after ``read`` (no await in between) and ask
        ``intact()`` after every await while sending. ``os.sendfile`` sends from the page
        cache until the peer has the bytes: send this way only batches that are never cut and
        rewritten in place (below the HW).

        Raises:
            OffsetOutOfRange: the data was truncated or deleted since the read.
            StorageIOError: a descriptor could not be duplicated.
        """
        if not self.intact():
            raise self._gone()
        pieces: list[bytes | OpenSlice] = []
        fds: list[int] = []
        try:
            for c in self._chunks:
                if c.data is not None:
                    pieces.append(c.data)
                    continue
                if c.segment.closed:  # retired since the read planned it
                    raise self._gone()
                try:
                    fd = os.dup(c.segment.fd)
                except OSError as exc:
                    raise os_error(exc, f"duplicating the descriptor of {c.segment.log_path}") from exc
                fds.append(fd)
                pieces.append(OpenSlice(fd, c.position, c.length))
            yield pieces
        finally:
            for fd in fds:
                os.close(fd)


class _Run:
    """Part of an append that goes to one segment."""

    __slots__ = ("segment", "base_offset", "start", "end", "file_position", "first_item", "entries",
                 "next_offset", "max_timestamp")

    def __init__(self, segment: Segment | None, base_offset: int, start: int, file_position: int,
                 first_item: int):
        self.segment = segment  # None: a new segment, created when the run is written
        self.base_offset = base_offset
        self.first_item = first_item  # index of the run's first batch in the append's items
        self.start = start  # in the record set
        self.end = start
        self.file_position = file_position
        self.entries: list[tuple[int, int]] = []  # (relative offset, file position) per batch
        self.next_offset = base_offset
        self.max_timestamp = -1


class Replica:
    """One partition replica's log. Open with ``Replica.open``; see the module docstring."""

    def __init__(self, path: str, topic: str, partition: int, config: ReplicaConfig):
        self.path = path
        self.topic = topic
        self.partition = partition
        self.config = config
        self.recovery = RecoveryReport()
        self._segments: list[Segment] = []
        self._leo = 0
        self._hw = 0
        self._durable_leo = 0
        self._epochs = LeaderEpochCache()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._epoch_file_lock = threading.Lock()  # prepare_epoch writes leader-epoch.chk in a worker
        self._dirty: dict[int, Segment] = {}
        self._unflushed = 0  # bytes appended since the last flush took its snapshot
        self._dir_dirty = False
        self._generation = 0
        # verify_sealed's cursor: (segment base offset, position, offset there, generation).
        self._scrub = (-1, 0, 0, -1)
        self._failure: str | None = None
        self._closed = False
        self._cleaned_end = -1  # the log cleaner's last pass covered offsets below this

    def __repr__(self) -> str:
        return (f"<Replica {self.topic}-{self.partition} start={self.log_start_offset} hw={self._hw} "
                f"leo={self._leo} durable={self._durable_leo}>")

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, base_dir: str | os.PathLike, topic: str, partition: int,
             config: ReplicaConfig | None = None) -> Replica:
        """Open (creating if needed) ``<base_dir>/<topic>-<partition>/`` and recover it.

        Raises:
            StorageIOError: the directory or its files cannot be read or repaired.
        """
        path = os.path.join(os.fspath(base_dir), f"{topic}-{partition}")
        replica = cls(path, topic, partition, config or ReplicaConfig())
        try:
            make_dirs_durable(path)
            replica._recover()
        except OSError as exc:
            replica._close_files()
            raise os_error(exc, f"opening replica {path}") from exc
        except BaseException:
            replica._close_files()
            raise
        return replica

    def _recover(self) -> None:
        report = self.recovery
        interval = self.config.index_max_interval_bytes
        logs: set[int] = set()
        indexes: set[int] = set()
        report.removed_files += finish_interrupted_swap(self.path)
        for name in os.listdir(self.path):
            if name.endswith(TMP_SUFFIX):
                os.unlink(os.path.join(self.path, name))
                report.removed_files.append(name)
            elif (base := parse_segment_name(name, LOG_SUFFIX)) is not None:
                logs.add(base)
            elif (base := parse_segment_name(name, INDEX_SUFFIX)) is not None:
                indexes.add(base)
        for base in sorted(indexes - logs):
            seg_index = os.path.join(self.path, f"{base:020d}{INDEX_SUFFIX}")
            os.unlink(seg_index)
            report.removed_files.append(os.path.basename(seg_index))

        bases = sorted(logs)
        if not bases:
            self._segments.append(Segment.create(self.path, 0, interval))
        for i, base in enumerate(bases):
            seg = Segment.open(self.path, base, interval)
            self._segments.append(seg)
            if i + 1 < len(bases):
                seg.sealed = True
                seg.next_offset = bases[i + 1]
                if not seg.load_index():
                    error = seg.rebuild_index()
                    report.rebuilt_indexes.append(base)
                    log.warning("%s: index missing or malformed; rebuilt%s", seg.index_path,
                                f" up to a corrupt batch: {error}" if error else "")
        active = self._segments[-1]
        epoch_changes: list[tuple[int, int]] = []
        if bases:
            truncated, epoch_changes = active.recover()
            report.truncated_bytes = truncated
        self._leo = active.next_offset
        log_start = self.log_start_offset

        data = read_file(os.path.join(self.path, EPOCH_CHECKPOINT))
        cache = decode_epochs(data) if data is not None else None
        if cache is None and (data is not None or self._leo > log_start):
            cache = self._epochs_from_headers()
            report.epochs_rebuilt = True
            log.warning("%s: leader-epoch checkpoint %s; rebuilt from the batch headers", self.path,
                        "missing" if data is None else "malformed")
        cache = cache or LeaderEpochCache()
        for epoch, start in epoch_changes:
            if epoch > cache.latest_epoch:
                cache.assign(epoch, start)
        cache.truncate_from_end(self._leo)
        cache.truncate_from_start(log_start)
        self._epochs = cache
        if data is None or encode_epochs(cache) != data:
            write_atomic(os.path.join(self.path, EPOCH_CHECKPOINT), encode_epochs(cache))

        data = read_file(os.path.join(self.path, HW_CHECKPOINT))
        hw = decode_hw(data) if data is not None else None
        if hw is None:
            report.hw_reset = data is not None
            hw = log_start
        self._hw = min(max(hw, log_start), self._leo)

        # What survived the restart may still sit only in the page cache: make it durable.
        fsync_dir(self.path)
        sync_segment(active.fd, active.log_path, active.size, metadata=True)
        self._durable_leo = self._leo

    def _epochs_from_headers(self) -> LeaderEpochCache:
        cache = LeaderEpochCache()
        for seg in self._segments:
            try:
                for _, h in seg.headers(0, seg.base_offset):
                    if h.partition_leader_epoch > cache.latest_epoch:
                        cache.assign(h.partition_leader_epoch, h.base_offset)
            except CorruptLog as exc:
                log.warning("rebuilding leader epochs: %s", exc)
        return cache

    def batch_headers(self, from_offset: int | None = None) -> Iterator[BatchHeader]:
        """The header of every batch in the log from the one holding ``from_offset`` (default:
        the log start), in offset order (no CRC check; a segment whose headers stop checking out
        is read up to there). For state kept in the batches themselves, such as the idempotent
        producers' sequences."""
        self._check_open()
        segments = list(self._segments)
        first = 0
        if from_offset is not None and segments and from_offset > segments[0].base_offset:
            if from_offset >= self._leo:
                return
            first = max(0, self._segment_index(from_offset))
        for i, seg in enumerate(segments[first:]):
            try:
                if i == 0 and from_offset is not None and from_offset > seg.base_offset:
                    pos, h = seg.find(from_offset)
                    start = (pos, h.base_offset)
                else:
                    start = (0, seg.base_offset)
                for _, h in seg.headers(*start):
                    yield h
            except CorruptLog as exc:
                log.warning("reading batch headers: %s", exc)

    # --- state --------------------------------------------------------------------------------

    @property
    def leo(self) -> int:
        """Log end offset: the offset the next record gets."""
        return self._leo

    @property
    def hw(self) -> int:
        """High watermark, as last set with ``set_hw`` (or recovered from replication.chk)."""
        return self._hw

    @property
    def durable_leo(self) -> int:
        """Every record below this offset has been fsynced."""
        return self._durable_leo

    @property
    def needs_flush(self) -> bool:
        return self._durable_leo < self._leo

    @property
    def unflushed_bytes(self) -> int:
        """Bytes appended since the last ``flush`` began: about what the next one writes."""
        return self._unflushed

    @property
    def log_start_offset(self) -> int:
        return self._segments[0].base_offset

    @property
    def epochs(self) -> list[EpochEntry]:
        """The leader-epoch cache: (epoch, start_offset) entries, oldest first."""
        return list(self._epochs.entries)

    @property
    def latest_epoch(self) -> int:
        """The newest epoch in the cache, -1 when empty."""
        return self._epochs.latest_epoch

    @property
    def corrupt_offset(self) -> int | None:
        """The base offset of the lowest batch known to be corrupt (found by a read or by
        ``verify_sealed``), None when none is. The replica does not hold the records from here
        on: it never serves them, and it must not count them as durable copies. A follower
        truncates here (``truncate_to(corrupt_offset)``) and refetches; a leader hands its
        leadership to an in-sync replica."""
        if not any([s.corrupt for s in self._segments]):  # the common case, asked on every fetch round
            return None
        return min((c.base_offset for s in self._segments for c in s.corrupt.values()), default=None)

    def verify_sealed(self, max_bytes: int) -> int | None:
        """CRC-check the next not yet verified region of the sealed segments, about
        ``max_bytes`` of it (at least one batch), and record any corrupt batch; returns
        ``corrupt_offset``. Call it repeatedly from housekeeping, on the event-loop thread: it
        walks the sealed segments once, oldest first, then only segments sealed since; it
        starts over after a truncation. A batch that is bad ends the check of its segment.

        Raises:
            StorageIOError, ReplicaClosed.
        """
        self._check_open()
        base, position, offset, generation = self._scrub
        if generation != self._generation or base < self.log_start_offset:
            first = self._segments[0]
            base, position, offset = first.base_offset, 0, first.base_offset
        budget = max_bytes
        i = self._segment_index(base)
        while budget > 0 and self._segments[i].sealed:
            seg = self._segments[i]
            if position < seg.size:
                end, offset, bad = seg.verify_region(position, offset, budget)
                budget -= max(end - position, 1)
                position = seg.size if bad is not None else end
                continue
            if offset != seg.next_offset and not seg.corrupt:
                seg.mark_corrupt(seg.size, offset, -1, f"the segment ends at offset {offset} but "
                                 f"the next one starts at {seg.next_offset}")
            i += 1
            base = offset = self._segments[i].base_offset
            position = 0
        self._scrub = (base, position, offset, self._generation)
        return self.corrupt_offset

    @property
    def short_circuited(self) -> str | None:
        """Why appends are refused, or None."""
        return self._failure

    @property
    def segments(self) -> list[SegmentInfo]:
        return [SegmentInfo(s.base_offset, s.size, s.log_path) for s in self._segments]

    def size_bytes(self) -> int:
        """Bytes of log data (the .log files; indexes and checkpoints are not counted)."""
        return sum(s.size for s in self._segments)

    def _check_open(self) -> None:
        if self._closed:
            raise ReplicaClosed(f"replica {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._failure is not None:
            raise ShortCircuited(f"replica {self.path} is short-circuited: {self._failure}")

    def _short_circuit(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
            log.error("replica %s short-circuited: %s", self.path, reason)

    # --- append -------------------------------------------------------------------------------

    def _validate(self, record_set) -> list[tuple[int, BatchHeader]]:
        if not len(record_set):
            raise InvalidBatch("empty record set")
        try:
            batches = list(iter_batches(record_set))
        except BatchError as exc:
            raise InvalidBatch(f"record set rejected: {exc}") from exc
        limit = self.config.max_batch_bytes
        for pos, h in batches:
            if h.size > limit:
                raise BatchTooLarge(f"batch at {pos}: {h.size} bytes exceeds max_batch_bytes {limit}")
        return batches

    def append(self, record_set: bytes, *, leader_epoch: int) -> AppendResult:
        """Append a producer's record set as the leader: check every batch, stamp base offsets
        (from the LEO) and ``leader_epoch`` in place, write. Does not fsync (see ``flush``).

        Example: leo 10, a set of two batches of 3 and 2 records -> they get base offsets 10 and
        13; the result is base_offset 10, last_offset 14, leo 15.

        Raises:
            InvalidBatch, BatchTooLarge: nothing was written.
            StaleLeaderEpoch: ``leader_epoch`` is older than the latest epoch in the log.
            DiskFull, StorageIOError: the write failed and was undone.
            ShortCircuited, ReplicaClosed.
        """
        if self._closed or self._failure is not None:
            self._check_writable()
        entries = self._epochs.entries
        latest = entries[-1].epoch if entries else -1
        if leader_epoch < 0:
            raise ValueError(f"leader epoch must be >= 0, got {leader_epoch}")
        if leader_epoch < latest:
            raise StaleLeaderEpoch(f"leader epoch {leader_epoch} is older than the log's latest epoch {latest}")
        batches = self._validate(record_set)
        offset = self._leo
        items = []
        heads = []  # each batch's first 16 bytes, stamped; the rest is written from record_set
        for pos, h in batches:
            head = bytearray(record_set[pos:pos + _STAMPED_BYTES])
            set_base_offset(head, 0, offset)
            set_leader_epoch(head, 0, leader_epoch)
            heads.append(head)
            next_offset = offset + h.record_count
            items.append((pos, h.size, offset, next_offset, max(h.first_timestamp, h.max_time_stamp)))
            offset = next_offset
        epochs = None
        if leader_epoch != latest:
            epochs = self._epochs.copy()
            epochs.assign(leader_epoch, self._leo)
        return self._write(record_set, items, epochs, heads)

    def append_replica(self, record_set: bytes) -> AppendResult:
        """Append batches fetched from the leader, byte for byte: they already carry base
        offsets and epochs. The first must start at the LEO and each must follow the previous.
        The epoch cache follows the batches' epochs.

        Raises:
            InvalidBatch: a bad batch or an offset gap; nothing was written.
            DiskFull, StorageIOError, ShortCircuited, ReplicaClosed: as ``append``.
        """
        self._check_writable()
        batches = self._validate(record_set)
        expected = self._leo
        epochs = self._epochs.copy()
        changed = False
        items = []
        for pos, h in batches:
            if not follows(h, expected):
                raise InvalidBatch(f"batch at {pos}: base offset {h.base_offset}, expected {expected}")
            expected = h.next_offset
            items.append((pos, h.size, h.base_offset, expected, max(h.first_timestamp, h.max_time_stamp)))
            if h.partition_leader_epoch >= 0:
                changed |= epochs.assign(h.partition_leader_epoch, h.base_offset)
        return self._write(record_set, items, epochs if changed else None)

    def _plan(self, items: list[tuple[int, int, int, int, int]]) -> list[_Run]:
        """Split an append's batches, ``(position in the set, size, base offset, next offset,
        max timestamp)``, into runs per segment, rolling where the limits say so."""
        limit = self.config.segment_max_bytes
        active = self._segments[-1]
        seg: Segment | None = active
        base, size = active.base_offset, active.size
        runs: list[_Run] = []
        run = None
        prev_next = self._leo
        for k, (pos, batch_size, base_offset, next_offset, max_ts) in enumerate(items):
            if size > 0 and (size + batch_size > limit or next_offset - 1 - base > _U32_MAX):
                # the new segment starts where the log ends: a compacted batch after a gap
                # (``follows``) starts inside it, so segments stay contiguous
                seg, base, size, run = None, prev_next, 0, None
            prev_next = next_offset
            if run is None:
                run = _Run(seg, base, pos, size, k)
                runs.append(run)
            run.entries.append((base_offset - base, size))
            run.end = pos + batch_size
            run.next_offset = next_offset
            if max_ts > run.max_timestamp:
                run.max_timestamp = max_ts
            size += batch_size
        return runs

    def _write(self, record_set, items: list[tuple[int, int, int, int, int]],
               epochs: LeaderEpochCache | None, heads: list[bytearray] | None = None) -> AppendResult:
        """Write ``items`` (see ``_plan``) of ``record_set``; with ``heads``, each batch's first
        16 bytes come from ``heads`` instead (the stamped base offset, length and epoch), so
        the producer's bytes are written without copying them."""
        cfg = self.config
        runs = self._plan(items)
        total = len(record_set)
        touched: list[tuple[Segment, int]] = []
        created: list[Segment] = []
        prev = self._segments[-1]
        prev_end = prev.size
        try:
            for run in runs:
                if run.segment is None:
                    # Seal: the index and the exact length are durable before the next segment
                    # exists, so recovery only ever has to repair the last segment.
                    if prev not in created and not any(t is prev for t, _ in touched):
                        touched.append((prev, prev.size))
                    prev.write_index_file()
                    prev.trim(prev_end)
                    sync_segment(prev.fd, prev.log_path, prev_end, metadata=True)
                    run.segment = Segment.create(self.path, run.base_offset, cfg.index_max_interval_bytes)
                    created.append(run.segment)
                else:
                    touched.append((run.segment, run.segment.size))
                seg = prev = run.segment
                end = prev_end = run.file_position + (run.end - run.start)
                if end > seg.allocated:
                    seg.ensure_allocated(end, cfg.segment_max_bytes, cfg.preallocate_bytes)
                if heads is not None:
                    view = memoryview(record_set)
                    parts = []
                    for k in range(run.first_item, run.first_item + len(run.entries)):
                        pos, size = items[k][0], items[k][1]
                        parts.append(heads[k])
                        parts.append(view[pos + _STAMPED_BYTES:pos + size])
                    pwritev_all(seg.fd, parts, run.file_position)
                else:
                    data = record_set if run.end - run.start == total else memoryview(record_set)[run.start:run.end]
                    written = os.pwrite(seg.fd, data, run.file_position)
                    if written < len(data):  # a short write: finish it (or fail trying)
                        pwrite_all(seg.fd, memoryview(data)[written:], run.file_position + written)
                index = seg.index
                for relative_offset, file_pos in run.entries:
                    if file_pos - index.last_position >= index.interval:
                        index.add(relative_offset, file_pos)
            if epochs is not None:
                write_atomic(os.path.join(self.path, EPOCH_CHECKPOINT), encode_epochs(epochs))
        except (OSError, StorageIOError) as exc:
            self._undo(touched, created)
            if isinstance(exc, StorageIOError):
                raise
            raise os_error(exc, f"appending to {self.path}") from exc

        with self._lock:
            for run in runs:
                seg = run.segment
                end = run.file_position + (run.end - run.start)
                if seg.verified_end == seg.size:
                    seg.verified_end = end
                seg.size = end
                if end > seg.allocated:  # not preallocated: the write grew the file
                    seg.allocated = end
                seg.next_offset = run.next_offset
                seg.tail = (run.base_offset + run.entries[-1][0], run.entries[-1][1])
                if seg.max_timestamp is None or run.max_timestamp > seg.max_timestamp:
                    seg.max_timestamp = run.max_timestamp
                self._dirty[seg.base_offset] = seg
                self._unflushed += run.end - run.start
            if created:
                for seg in [self._segments[-1], *created[:-1]]:
                    seg.sealed = True
                self._segments.extend(created)
                self._dir_dirty = True
            self._leo = leo = items[-1][3]
            if epochs is not None:
                self._epochs = epochs
        return AppendResult(items[0][2], leo - 1, leo, self._segments[-1].size, len(items), total)

    def _undo(self, touched: list[tuple[Segment, int]], created: list[Segment]) -> None:
        """Take back a failed append: forget new index entries, delete new segments, cut the
        touched files back. Short-circuits the replica if that fails."""
        for seg, size in touched:
            seg.index.truncate(size)
            seg.tail = None
        try:
            for seg in reversed(created):
                seg.remove_files()
            for seg, size in touched:
                os.ftruncate(seg.fd, size)
                seg.allocated = size
                # A roll may have fsynced (and journaled) bytes this undo takes back: make the
                # cut durable too, or a power cut could bring the failed append back.
                sync_segment(seg.fd, seg.log_path, size, metadata=True)
        except OSError as exc:
            self._short_circuit(f"could not undo a failed write: {exc}")

    # --- flush --------------------------------------------------------------------------------

    def flush(self) -> int:
        """fdatasync everything appended so far; returns ``durable_leo``. Safe to call from a
        worker thread while the event-loop thread appends (module docstring, "Threads").

        Raises:
            ShortCircuited: the fsync failed (the replica stays short-circuited), or it was
                already short-circuited.
            StorageIOError: a descriptor could not be duplicated (nothing was claimed durable).
            ReplicaClosed.
        """
        with self._flush_lock:
            with self._lock:
                self._check_writable()
                target, generation = self._leo, self._generation
                # (descriptor, path, size): the size is the one this snapshot covers, not what
                # a later append makes it.
                snapshot: list[tuple[int, str, int]] = []
                try:
                    for seg in self._dirty.values():
                        snapshot.append((os.dup(seg.fd), seg.log_path, seg.size))
                except OSError as exc:
                    for fd, _, _ in snapshot:
                        os.close(fd)
                    raise os_error(exc, f"flushing {self.path}") from exc
                fds = [fd for fd, _, _ in snapshot]
                self._dirty.clear()
                self._unflushed = 0
                sync_dir, self._dir_dirty = self._dir_dirty, False
            try:
                if sync_dir:  # first, so that a segment created by a roll exists when its data is durable
                    fsync_dir(self.path)
                synced = [sync_segment(fd, path, size, journal=False) for fd, path, size in snapshot]
            except OSError as exc:
                with self._lock:
                    self._short_circuit(f"fsync failed: {exc}")
                raise ShortCircuited(f"flushing {self.path}: {exc.strerror or exc}; the replica is "
                                     "short-circuited until reopened") from exc
            finally:
                for fd in fds:
                    os.close(fd)
            with self._lock:
                # Journaled under the lock, with the generation check: a truncation bumps the
                # generation (under the lock) before it touches a file, so a size journaled
                # here is never one a truncation has already taken back.
                if generation == self._generation:
                    for path, size in synced:
                        record_durable(path, size)
                    if target > self._durable_leo:
                        self._durable_leo = target
                return self._durable_leo

    # --- read -------------------------------------------------------------------------------

    def _segment_index(self, offset: int) -> int:
        return bisect.bisect_right(self._segments, offset, key=lambda s: s.base_offset) - 1

    def read(self, start_offset: int, max_bytes: int, upper_bound: int | None = None) -> ReadResult:
        """Whole batches from the one holding ``start_offset``, ending before any batch that
        reaches ``upper_bound`` (the HW for consumers, the LEO for followers; default and cap:
        the LEO) and before the total would exceed ``max_bytes`` -- but at least one batch when
        one fits under the bound.

        Example: batches [0..2] [3..4] [5..9] of 80, 60 and 90 bytes, hw 10:
        read(4, 100, 10) -> offsets 3..4 only (60 bytes; adding 90 would exceed 100);
        read(4, 10, 10) -> still offsets 3..4 (at least one batch); read(4, 1000, 5) -> 3..4.

        Raises:
            OffsetOutOfRange: ``start_offset`` is below the log start (``evicted``) or above
                the LEO.
            CorruptLog: the first batch to serve failed its check.
            StorageIOError, ReplicaClosed.
        """
        self._check_open()
        leo, log_start = self._leo, self.log_start_offset
        if not log_start <= start_offset <= leo:
            raise OffsetOutOfRange(start_offset, log_start, leo)
        upper = leo if upper_bound is None else min(upper_bound, leo)
        chunks: list[_Chunk] = []
        if start_offset >= upper:
            return ReadResult(self, chunks, start_offset, start_offset)

        i = self._segment_index(start_offset)
        seg = self._segments[i]
        try:
            pos, first = seg.find(start_offset)
        except CorruptLog as exc:
            seg.mark_corrupt(exc.position, exc.offset, -1, exc.reason)
            raise
        expected = first.base_offset
        next_offset = expected
        total = 0
        attributes = 0
        done = False
        while True:
            run_start, run_offset, run_length = pos, expected, 0
            try:
                for p, h in seg.headers(pos, expected):
                    if h.next_offset > upper or (total and total + h.size > max_bytes):
                        done = True
                        break
                    if p in seg.corrupt:
                        if not total:
                            bad = seg.corrupt[p]
                            raise CorruptLog(bad.path, bad.position, bad.base_offset, bad.reason)
                        done = True
                        break
                    run_length += h.size
                    total += h.size
                    attributes |= h.attributes
                    next_offset = h.next_offset
            except CorruptLog as exc:
                seg.mark_corrupt(exc.position, exc.offset, -1, exc.reason)
                if not total:
                    raise
                done = True
            if run_length:
                chunks.append(_Chunk(seg, run_start, run_offset, run_length))
            i += 1
            if done or i == len(self._segments):
                break
            seg, pos, expected = self._segments[i], 0, next_offset
            if seg.base_offset != next_offset:
                if total:
                    break
                prev = self._segments[i - 1]
                bad = prev.mark_corrupt(prev.size, next_offset, -1, f"the segment ends at offset "
                                        f"{next_offset} but the next one starts at {seg.base_offset}")
                raise CorruptLog(bad.path, bad.position, bad.base_offset, bad.reason)

        chunks, next_offset = self._verify(chunks, next_offset)
        return ReadResult(self, chunks, first.base_offset if chunks else start_offset,
                          next_offset if chunks else start_offset, attributes)

    def _verify(self, chunks: list[_Chunk], next_offset: int) -> tuple[list[_Chunk], int]:
        """CRC-check the parts of ``chunks`` beyond their segment's ``verified_end``; cut the
        read before the first bad batch."""
        for k, c in enumerate(chunks):
            seg = c.segment
            if c.position + c.length <= seg.verified_end:
                continue
            data = seg.pread(c.length, c.position)
            good, end_offset, bad = seg.verify(c.position, data, c.offset)
            if bad is None and good < c.length:
                bad = seg.mark_corrupt(c.position + good, end_offset, -1,
                                       f"the file ends {c.length - good} bytes early")
            if bad is None:
                c.data = data
                continue
            if good == 0 and k == 0:
                raise CorruptLog(bad.path, bad.position, bad.base_offset, bad.reason)
            kept = chunks[:k]
            if good:
                c.length, c.data = good, data[:good]
                kept.append(c)
            return kept, bad.base_offset
        return chunks, next_offset

    # --- high watermark and epochs ----------------------------------------------------------

    def set_hw(self, hw: int) -> int:
        """Set the high watermark, clamped to [log_start_offset, leo]; returns the value set.
        Not durable until ``checkpoint_hw``."""
        self._hw = min(max(hw, self.log_start_offset), self._leo)
        return self._hw

    def checkpoint_hw(self) -> int:
        """Write the HW to replication.chk atomically and durably; returns the HW written.
        Safe to call from a worker thread.

        Raises:
            DiskFull, StorageIOError: the previous checkpoint is left in place.
        """
        with self._checkpoint_lock:
            hw = self._hw
            write_atomic(os.path.join(self.path, HW_CHECKPOINT), encode_hw(hw))
            return hw

    def _save_epochs(self, cache: LeaderEpochCache) -> None:
        with self._epoch_file_lock:
            write_atomic(os.path.join(self.path, EPOCH_CHECKPOINT), encode_epochs(cache))
        self._epochs = cache

    def prepare_epoch(self, epoch: int) -> tuple[LeaderEpochCache, LeaderEpochCache] | None:
        """The worker-thread half of a new leader's ``flush`` + ``assign_epoch``: fsync the log,
        then durably write ``leader-epoch.chk`` with ``epoch`` starting at the LEO. The cache is
        not changed yet: ``install_epochs`` does it on the replica's thread. Returns what to
        install, or None when ``epoch`` is not newer than the log's latest (nothing written).
        Only while nothing appends to this replica (it neither leads nor follows).

        Raises:
            ShortCircuited, DiskFull, StorageIOError: as ``flush`` and ``write_atomic``.
        """
        self._check_writable()
        self.flush()
        base = self._epochs
        cache = base.copy()
        if not cache.assign(epoch, self._durable_leo):
            return None
        with self._epoch_file_lock:
            write_atomic(os.path.join(self.path, EPOCH_CHECKPOINT), encode_epochs(cache))
        return base, cache

    def install_epochs(self, prepared: tuple[LeaderEpochCache, LeaderEpochCache]) -> bool:
        """Take the cache ``prepare_epoch`` made durable, if the log has not changed since (same
        cache, LEO still where the new epoch starts, all of it durable). False: it changed; the
        caller falls back to ``flush`` + ``assign_epoch``."""
        base, cache = prepared
        if (self._epochs is not base or self._closed or self._failure is not None
                or cache.entries[-1].start_offset != self._leo or self._durable_leo != self._leo):
            return False
        self._epochs = cache
        return True

    def assign_epoch(self, epoch: int, start_offset: int | None = None) -> bool:
        """Record that ``epoch`` starts at ``start_offset`` (default: the LEO), as a new leader
        does before its first append (Kafka's rules, ``LeaderEpochCache.assign``). Returns True
        when the cache changed (and was checkpointed)."""
        self._check_writable()
        cache = self._epochs.copy()
        if not cache.assign(epoch, self._leo if start_offset is None else start_offset):
            return False
        self._save_epochs(cache)
        return True

    def end_offset_for_epoch(self, epoch: int) -> EpochEndOffset:
        """OffsetsForLeaderEpoch (KIP-101/279): the largest epoch <= ``epoch`` and the offset
        where it ended; the LEO when ``epoch`` is the latest; (-1, -1) when unknown.
        Worked examples in ``fluvial.storage.epochs``."""
        return self._epochs.end_offset_for(epoch, self._leo)

    # --- truncation -------------------------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Drop every record at and after ``offset``; returns the new LEO.

        Batches are never split: when ``offset`` falls inside a batch, that whole batch goes
        too, so the new LEO is that batch's base offset (<= ``offset``). Later segments are
        deleted (newest first, so a crash never leaves a gap), the segment holding the cut is
        truncated there and becomes the active one. The HW and durable LEO are clamped to the
        new LEO, and epochs starting at or after it are dropped. Durable before it returns.
        A known corrupt batch (``corrupt_offset``) at or before ``offset`` in that segment is
        located by its position, not its header (which may be garbage), and the cut is made
        there: ``truncate_to(corrupt_offset)`` always works.
        Nothing happens when ``offset >= leo``. An offset at or below the log start empties the
        log (``truncate_fully_and_start_at(offset)``).

        Example: batches [0..2] [3..4] [5..9]: truncate_to(5) -> leo 5; truncate_to(4) -> leo 3.

        Raises:
            CorruptLog: the batch holding ``offset`` cannot be located.
            StorageIOError: the files could not be changed (the replica is short-circuited).
        """
        self._check_writable()
        if offset >= self._leo:
            return self._leo
        if offset <= self.log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return self._leo
        i = self._segment_index(offset)
        seg = self._segments[i]
        bad = min((c for c in seg.corrupt.values() if c.base_offset <= offset), default=None,
                  key=lambda c: c.position)
        if bad is not None:  # its header may be garbage: cut by position
            pos, cut = bad.position, bad.base_offset
        else:
            pos, h = seg.find(offset)
            # after a compaction gap the batch found starts above ``offset``: the log then ends
            # where the batch before it ends
            cut = h.base_offset if h.base_offset <= offset else seg.end_before(pos)
        doomed = self._segments[i + 1:]
        removed: list[Segment] = []
        with self._lock:  # from here on, a running flush publishes nothing (see ``flush``)
            self._generation += 1
        try:
            self._remove_newest_first(doomed, removed)
            os.ftruncate(seg.fd, pos)
            seg.allocated = pos
            sync_segment(seg.fd, seg.log_path, pos, metadata=True)
            seg.index.truncate(pos)
            seg.write_index_file()
            fsync_dir(self.path)
        except OSError as exc:
            self._failed_removal(removed, f"truncation to {offset} failed: {exc}")
            raise os_error(exc, f"truncating {self.path} to offset {offset}") from exc
        with self._lock:
            self._remove_segments(doomed)
            seg.size = pos
            seg.tail = None
            seg.next_offset = cut
            seg.verified_end = min(seg.verified_end, pos)
            seg.corrupt = {p: c for p, c in seg.corrupt.items() if p < pos}
            seg.sealed = False
            self._dirty.pop(seg.base_offset, None)
            self._leo = cut
            self._hw = min(self._hw, cut)
            self._durable_leo = min(self._durable_leo, cut)
        seg.max_timestamp = None
        seg.newest_timestamp()
        cache = self._epochs.copy()
        if cache.truncate_from_end(cut):
            self._save_epochs(cache)
        return cut

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and start an empty log at ``offset`` (log start = HW = LEO =
        ``offset``), clearing the epoch cache: a follower whose log is entirely behind the
        leader's log start, or entirely divergent, starts over here.

        Raises:
            StorageIOError: the files could not be changed (the replica is short-circuited).
        """
        self._check_writable()
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        doomed = list(self._segments)
        removed: list[Segment] = []
        with self._lock:  # from here on, a running flush publishes nothing (see ``flush``)
            self._generation += 1
        try:
            self._remove_newest_first(doomed, removed)
            fresh = Segment.create(self.path, offset, self.config.index_max_interval_bytes)
            fsync_dir(self.path)
        except OSError as exc:
            self._failed_removal(removed, f"emptying the log failed: {exc}")
            raise os_error(exc, f"emptying {self.path}") from exc
        with self._lock:
            self._remove_segments(doomed)
            self._segments = [fresh]
            self._dirty.clear()
            self._unflushed = 0
            self._leo = self._hw = self._durable_leo = offset
        self._save_epochs(LeaderEpochCache())

    def _remove_newest_first(self, doomed: list[Segment], removed: list[Segment]) -> None:
        """Delete the files of ``doomed``, newest first, each deletion durable before the next
        (a power cut never leaves a gap between segments); ``removed`` collects what went, for
        ``_failed_removal`` if a step fails. Raises OSError."""
        for s in reversed(doomed):
            s.remove_files()
            removed.append(s)
            fsync_dir(self.path)

    def _failed_removal(self, removed: list[Segment], reason: str) -> None:
        """A truncation failed half-way: forget the segments whose files are gone, end the log
        where the remaining ones end, and short-circuit."""
        with self._lock:
            self._remove_segments(removed)
            self._generation += 1
            if not self._segments:
                self._closed = True
            else:
                last = self._segments[-1]
                last.sealed = False
                self._leo = min(self._leo, last.next_offset)
                self._hw = min(self._hw, self._leo)
                self._durable_leo = min(self._durable_leo, self._leo)
        self._short_circuit(reason)

    def _remove_segments(self, segments: list[Segment]) -> None:
        for s in segments:
            if not s.closed:
                try:
                    s.close()
                except OSError:
                    pass
            self._dirty.pop(s.base_offset, None)
            if s in self._segments:
                self._segments.remove(s)

    # --- retention --------------------------------------------------------------------------

    def enforce_retention(self, now: float | None = None) -> list[DeletedSegment]:
        """Delete old sealed segments; returns what was deleted, oldest first.

        From the oldest, a segment goes while (a) its newest batch timestamp is older than
        ``retention_seconds`` before ``now`` (seconds since the epoch; default: the clock), or
        (b) the log is larger than ``max_partition_bytes``. Never the active segment, and never
        a segment holding offsets at or above the HW (records not yet committed). The log start
        offset then moves to the first remaining segment, and the epoch cache is trimmed.
        Meant to run periodically, off the request path.

        Raises:
            StorageIOError: a file could not be deleted (what was deleted before stays deleted).
        """
        self._check_open()
        cfg = self.config
        if cfg.cleanup_policy == "compact":
            return []  # the log cleaner keeps the latest record per key instead
        now = time.time() if now is None else now
        deleted: list[DeletedSegment] = []
        try:
            while len(self._segments) > 1:
                seg, following = self._segments[0], self._segments[1]
                if following.base_offset > self._hw:
                    break
                if (cfg.retention_seconds is not None
                        and seg.newest_timestamp() < (now - cfg.retention_seconds) * 1000):
                    reason = "time"
                elif cfg.max_partition_bytes is not None and self.size_bytes() > cfg.max_partition_bytes:
                    reason = "size"
                else:
                    break
                size = seg.size
                os.unlink(seg.log_path)
                try:
                    os.unlink(seg.index_path)
                except FileNotFoundError:
                    pass
                with self._lock:
                    self._remove_segments([seg])
                deleted.append(DeletedSegment(seg.base_offset, following.base_offset, size, reason))
                log.info("%s: retention deleted segment %d (%s)", self.path, seg.base_offset, reason)
        except OSError as exc:
            raise os_error(exc, f"deleting old segments of {self.path}") from exc
        finally:
            if deleted:
                cache = self._epochs.copy()
                if cache.truncate_from_start(self.log_start_offset):
                    try:
                        self._save_epochs(cache)
                    except StorageError as exc:  # the next open trims it again
                        self._epochs = cache
                        log.warning("%s: could not checkpoint leader epochs: %s", self.path, exc)
        return deleted

    # --- compaction -------------------------------------------------------------------------

    def cleanable(self, now: float | None = None) -> list[SegmentSnapshot]:
        """The sealed segments a compaction pass may clean, oldest first: below the HW (only
        committed records), each with its newest record at least ``min_compaction_lag_seconds``
        old, none known corrupt. Never the active segment."""
        self._check_open()
        now = time.time() if now is None else now
        lag_ms = (now - self.config.min_compaction_lag_seconds) * 1000
        out = []
        for seg in self._segments[:-1]:
            if seg.next_offset > self._hw or seg.corrupt or seg.newest_timestamp() > lag_ms:
                break
            out.append(SegmentSnapshot(seg.base_offset, seg.next_offset, seg.size, seg.log_path))
        return out

    def dirty_ratio(self, segments: list[SegmentSnapshot]) -> float:
        """The share of ``segments``' bytes that no compaction pass of this process covered."""
        total = sum(s.size for s in segments)
        dirty = sum(s.size for s in segments if s.next_offset > self._cleaned_end)
        return dirty / total if total else 0.0

    def prepare_compaction(self, now: float | None = None, *, force: bool = False) -> CleanPlan | None:
        """Step 1 of a pass (``fluvial.storage.cleaner``): None when the policy is not
        "compact", nothing is cleanable or the dirty ratio is below the threshold (unless
        ``force``). The file work runs in ``run_prepared`` (safe in a worker thread)."""
        cfg = self.config
        if cfg.cleanup_policy != "compact":
            return None
        segments = self.cleanable(now)
        if not segments or (not force and self.dirty_ratio(segments) < cfg.min_cleanable_dirty_ratio):
            return None
        return CleanPlan(self.path, segments)

    def run_prepared(self, plan: CleanPlan, now: float | None = None) -> CleanPlan:
        """Step 1's file work for ``plan`` (read, decide, write fsynced cleaned copies). Safe
        in a worker thread. Raises OSError, DecodeError (nothing is left behind then)."""
        now = time.time() if now is None else now
        horizon_ms = int((now - self.config.tombstone_retention_seconds) * 1000)
        return prepare(plan.directory, plan.segments, horizon_ms=horizon_ms,
                       index_interval=self.config.index_max_interval_bytes)

    def install_cleaned(self, plan: CleanPlan) -> bool:
        """Steps 2 and 3 of a pass, on the replica's thread: swap the cleaned copies in and
        reopen those segments. False (the copies deleted) when a segment of the plan changed
        since it was read (truncated, deleted by retention, found corrupt).

        Raises:
            StorageIOError: the swap failed; reopening the replica completes it.
        """
        self._check_writable()
        current = {s.base_offset: s for s in self._segments[:-1]}
        for snap in plan.segments:
            seg = current.get(snap.base_offset)
            if seg is None or seg.size != snap.size or seg.next_offset != snap.next_offset or seg.corrupt:
                plan.discard()
                return False
        try:
            swap_in(self.path, plan.rewritten)
            fresh = []
            for base in plan.rewritten:
                seg = Segment.open(self.path, base, self.config.index_max_interval_bytes)
                fresh.append(seg)
                seg.sealed, seg.next_offset = True, current[base].next_offset
                seg.verified_end = seg.size  # written and checked by this process
                if not seg.load_index():
                    seg.rebuild_index()
        except OSError as exc:
            self._short_circuit(f"compaction swap failed: {exc}")
            raise os_error(exc, f"swapping compacted segments into {self.path}") from exc
        with self._lock:
            for seg in fresh:
                i = self._segments.index(current[seg.base_offset])
                old = self._segments[i]
                self._segments[i] = seg
                if self._dirty.get(seg.base_offset) is old:
                    self._dirty[seg.base_offset] = seg
                try:
                    old.close()
                except OSError:
                    pass
            self._scrub = (-1, 0, 0, -1)
        self._cleaned_end = max(self._cleaned_end, plan.segments[-1].next_offset)
        if plan.rewritten:
            log.info("%s: compacted %d segment(s): %d -> %d records, %d -> %d bytes", self.path,
                     len(plan.rewritten), plan.records_in, plan.records_out, plan.bytes_in, plan.bytes_out)
        return True

    def compact(self, now: float | None = None, *, force: bool = False) -> CleanPlan | None:
        """One whole compaction pass on this thread (tests, tools); the SPU runs
        ``run_prepared`` in a worker thread instead. Returns the plan carried out, or None."""
        plan = self.prepare_compaction(now, force=force)
        if plan is None:
            return None
        plan = self.run_prepared(plan, now)
        return plan if self.install_cleaned(plan) else None

    # --- closing ----------------------------------------------------------------------------

    def _close_files(self) -> None:
        for seg in self._segments:
            try:
                seg.close()
            except OSError:
                pass

    def close(self) -> None:
        """Write the active segment's index, trim its preallocated space, flush (unless
        short-circuited), close the files.
        Idempotent.

        Raises:
            ShortCircuited, StorageIOError: the final flush failed; the files are closed anyway.
        """
        if self._closed:
            return
        try:
            if self._failure is None:
                active = self._segments[-1]
                try:
                    active.write_index_file()
                    if active.allocated != active.size:
                        active.trim()
                        with self._lock:
                            self._dirty[active.base_offset] = active
                except OSError as exc:
                    log.warning("%s: could not trim or index the active segment: %s", self.path, exc)
                self.flush()
        finally:
            with self._flush_lock, self._lock:
                self._closed = True
                self._close_files()

    def delete(self) -> None:
        """Close without flushing and remove the replica's directory."""
        if not self._closed:
            with self._flush_lock, self._lock:
                self._closed = True
                self._close_files()
        shutil.rmtree(self.path, ignore_errors=True)
