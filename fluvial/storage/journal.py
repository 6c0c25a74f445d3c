"""Segment fsyncs, and the sync journal that lets tests replay a power cut.

Every fsync of a segment's data goes through ``sync_segment``. That is the one place where
storage learns that bytes of a ``.log`` file are durable, so it is also the one place that can
tell a test harness so.

The sync journal is a test facility. When the environment variable ``FLUVIAL_SYNC_JOURNAL``
names a file (read once, at the first fsync), ``sync_segment`` appends one line after each
successful fsync::

    <absolute path of the .log file>\\t<bytes of it now known durable>\\n

with one ``os.write`` on an ``O_APPEND`` descriptor, so lines from several threads or processes
never interleave. Callers journal before they publish a new ``durable_leo``: when a process is
killed, every record it counted durable is covered by a journal line. After ``kill -9``,
``apply_power_loss`` (tests/harness/powerloss.py) cuts every segment file back to its last
journaled size, which is what a power cut does to data that was never fsynced.

``forget_segment`` journals size 0 for a segment file that is created or deleted: a new file at
the same path (a roll after a truncation) must not inherit the old file's durable size.

Without the variable nothing is written and the cost is one attribute test per fsync.
"""

from __future__ import annotations

import os

from fluvial.durable import ENV_VAR, record_durable, use_journal

# the journal itself lives in fluvial.durable (the SC's metadata journal is journaled too)
__all__ = ["ENV_VAR", "forget_segment", "record_durable", "sync_segment", "use_journal"]


def sync_segment(fd: int, path: str, size: int, *, metadata: bool = False,
                 journal: bool = True) -> tuple[str, int]:
    """fsync the segment file open as ``fd`` (``fdatasync`` unless ``metadata``: after a
    ``ftruncate`` the new length must be committed) and journal that ``size`` bytes of ``path``
    are durable. Returns ``(path, size)``. Raises OSError; then nothing is journaled.

    ``journal=False`` is for ``Replica.flush``, which fsyncs outside its lock and journals the
    returned pairs under it (``record_durable``), only if no truncation started meanwhile: what
    it journals still comes only from fsyncs that happened."""
    if metadata:
        os.fsync(fd)
    else:
        getattr(os, "fdatasync", os.fsync)(fd)
    if journal:
        record_durable(path, size)
    return path, size


def forget_segment(path: str) -> None:
    """Journal that no byte of the segment file ``path`` is durable: it was just created or
    deleted."""
    record_durable(path, 0)
