"""The log cleaner's file work: read sealed segments, write cleaned copies, swap them in.

Theory of operation
-------------------
A cleaning pass over a replica has three steps (``Replica.compact`` runs them; the SPU runs the
first in a worker thread, off the request path):

1. ``prepare(snapshots, ...)``: read the cleanable sealed segments through descriptors of its
   own, decide the survivors (``fluvial.storage.compaction``), and for every segment that
   changes write ``<base>.log.cleaned`` and ``<base>.index.cleaned``, each fsynced. Nothing the
   replica reads is touched. Pure file work, safe in a worker thread: sealed segments never
   change, and step 2 checks that none was truncated or deleted meanwhile.
2. ``swap_in(directory, bases)``, on the replica's thread: write the marker ``cleaner.swap``
   (atomically, fsynced, listing the bases), rename every ``.cleaned`` file over its segment
   file, fsync the directory, delete the marker, fsync the directory.
3. The replica reopens the swapped segments.

A crash at any point leaves either every old segment or every new one, never a mix: before the
marker exists, ``finish_interrupted_swap`` (called by ``Replica.open``) deletes the ``.cleaned``
files; once it exists, it completes the renames the marker lists. The cleaned files were fsynced
before the marker was written, so a power cut cannot leave a renamed but empty segment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from fluvial.durable import fsync_dir, replace_durably, write_synced
from fluvial.storage.compaction import KeyMap, clean_segment
from fluvial.storage.index import OffsetIndex
from fluvial.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, _pread_all, segment_name

log = logging.getLogger("fluvial.storage")

CLEANED_SUFFIX = ".cleaned"
# Segment bytes whose decoded records pass 1 keeps for pass 2 (about 3x as much memory), so that
# small passes decode each record once; larger ones decode the rest again.
REUSE_DECODED_BYTES = 16 * 1024 * 1024
SWAP_MARKER = "cleaner.swap"


class SegmentSnapshot(NamedTuple):
    """A sealed segment as the cleaner saw it: ``size`` bytes of batches, offsets
    [base_offset, next_offset)."""

    base_offset: int
    next_offset: int
    size: int
    path: str


@dataclass
class CleanPlan:
    """What ``prepare`` wrote: cleaned copies of ``rewritten`` (base offsets) of ``segments``."""

    directory: str
    segments: list[SegmentSnapshot]
    rewritten: list[int] = field(default_factory=list)
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def discard(self) -> None:
        """Delete the cleaned copies (the swap will not happen)."""
        for base in self.rewritten:
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX):
                try:
                    os.unlink(_cleaned(self.directory, base, suffix))
                except FileNotFoundError:
                    pass
        self.rewritten = []


def _cleaned(directory: str, base: int, suffix: str) -> str:
    return os.path.join(directory, segment_name(base, suffix) + CLEANED_SUFFIX)


def _read_segment(s: SegmentSnapshot) -> bytes:
    fd = os.open(s.path, os.O_RDONLY)
    try:
        data = _pread_all(fd, s.size, 0)
    finally:
        os.close(fd)
    if len(data) != s.size:
        raise OSError(f"{s.path}: {len(data)} bytes, expected {s.size}")
    return data


def prepare(directory: str, segments: list[SegmentSnapshot], *, horizon_ms: int,
            index_interval: int) -> CleanPlan:
    """Steps 1 of the module docstring. ``horizon_ms``: tombstones at or before it expire.
    Reads each segment twice (two passes), except that the records of the first
    ``REUSE_DECODED_BYTES`` of segments are kept decoded between the passes.

    Raises:
        OSError: a read or write failed (the cleaned copies written so far are deleted).
        DecodeError: a batch does not decode (the segment is corrupt; nothing is written).
    """
    plan = CleanPlan(directory, list(segments))
    keys = KeyMap()
    kept: dict[int, tuple[bytes, list]] = {}  # base offset -> (data, rows), within the budget
    budget = REUSE_DECODED_BYTES
    for s in segments:
        data = _read_segment(s)
        rows = keys.add_segment(data)
        if len(data) <= budget:
            kept[s.base_offset] = (data, rows)
            budget -= len(data)
    pinned = keys.pinned()
    try:
        for s in segments:
            data, rows = kept.pop(s.base_offset, None) or (_read_segment(s), None)
            cleaned = clean_segment(data, s.base_offset, keys, pinned, horizon_ms, rows)
            plan.records_in += cleaned.records_in
            plan.records_out += cleaned.records_out
            plan.bytes_in += cleaned.bytes_in
            if not cleaned.changed:
                plan.bytes_out += cleaned.bytes_in
                continue
            index = OffsetIndex(index_interval)
            pos = 0
            for batch in cleaned.batches:
                index.maybe_add(int.from_bytes(batch[:8], "big") - s.base_offset, pos)
                pos += len(batch)
            plan.rewritten.append(s.base_offset)
            write_synced(_cleaned(directory, s.base_offset, LOG_SUFFIX), b"".join(cleaned.batches))
            write_synced(_cleaned(directory, s.base_offset, INDEX_SUFFIX), index.to_bytes())
            plan.bytes_out += pos
    except BaseException:
        plan.discard()
        raise
    return plan


def swap_in(directory: str, bases: list[int]) -> None:
    """Step 2 of the module docstring: make the cleaned copies of ``bases`` the segments, all
    or nothing across a crash. Raises OSError (``finish_interrupted_swap`` completes it)."""
    if not bases:
        return
    fsync_dir(directory)  # the cleaned files' names, before a marker points at them
    replace_durably(os.path.join(directory, SWAP_MARKER), "".join(f"{b}\n" for b in bases).encode())
    _rename_listed(directory, bases)
    fsync_dir(directory)
    os.unlink(os.path.join(directory, SWAP_MARKER))
    fsync_dir(directory)


def _rename_listed(directory: str, bases: list[int]) -> None:
    for base in bases:
        for suffix in (INDEX_SUFFIX, LOG_SUFFIX):  # the index first: the log's rename ends it
            src = _cleaned(directory, base, suffix)
            if os.path.exists(src):
                os.replace(src, os.path.join(directory, segment_name(base, suffix)))


def finish_interrupted_swap(directory: str) -> list[str]:
    """At open: complete a swap whose marker exists, then delete leftover ``.cleaned`` files
    (a pass that crashed before its marker). Returns the names deleted. Raises OSError."""
    marker = os.path.join(directory, SWAP_MARKER)
    try:
        with open(marker, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except FileNotFoundError:
        text = None
    if text is not None:
        bases = [int(line) for line in text.split() if line.isdigit()]
        log.warning("%s: completing an interrupted compaction swap of %d segment(s)", directory, len(bases))
        _rename_listed(directory, bases)
        fsync_dir(directory)
        os.unlink(marker)
        fsync_dir(directory)
    removed = []
    for name in os.listdir(directory):
        if name.endswith(CLEANED_SUFFIX):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed
