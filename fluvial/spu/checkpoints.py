"""An SPU's checkpoints batched over its replicas (issue 19): one HW file for all of them, and
the leader-epoch files of many take-overs made durable in one worker-thread hop.

* **The shared HW checkpoint** (``HwCheckpoint``, Kafka's ``replication-offset-checkpoint``;
  format in ``fluvial.storage.checkpoint``): every replica's (topic, partition, topic
  incarnation, HW), rewritten whole and atomically once per interval, and only when some HW
  changed or a replica left. On open, a replica's HW comes from it when it holds an entry of the
  same incarnation, else from the replica's own ``replication.chk`` (written before this file
  existed); a torn or corrupt file counts as absent. Either way the HW is clamped to the log's
  recovered (and fsynced) LEO, so it never exceeds what is durable. A HW lower than the one
  acknowledged is safe: the leader recomputes it from its ISR.
* **Epoch take-overs** (``prepare_epochs``): a replica told to lead at a new epoch does not lead
  until its log is flushed and its ``leader-epoch.chk`` holding the new epoch is durable (an SPU
  never leads at an epoch its log does not hold durably); the files of every replica taking over
  in one push are written in one thread hop, off the event loop.
"""

from __future__ import annotations

import os

from fluvial.storage import errors as serr
from fluvial.storage.checkpoint import (
    SHARED_HW_CHECKPOINT,
    SharedHws,
    decode_shared_hws,
    encode_shared_hws,
    read_file,
    write_atomic,
)
from fluvial.storage.replica import Replica


class HwCheckpoint:
    """The shared HW checkpoint of one SPU data directory."""

    def __init__(self, data_dir) -> None:
        self.path = os.path.join(os.fspath(data_dir), SHARED_HW_CHECKPOINT)
        self._loaded: SharedHws | None = None  # the file as read at the first open, less what was used
        self.dirty = False  # a replica left since the last write: rewrite even if no HW changed

    def _load(self) -> SharedHws:
        if self._loaded is None:
            try:
                data = read_file(self.path)
            except OSError:
                data = None
            self._loaded = (decode_shared_hws(data) if data is not None else None) or {}
        return self._loaded

    def restore(self, storage: Replica, topic_id: int) -> bool:
        """Give ``storage`` (just opened) the HW the file holds for it, when the entry is of
        incarnation ``topic_id``; the entry is used once. Returns whether it did (if not, the
        HW stays the one ``replication.chk`` gave). Clamped to the recovered LEO by ``set_hw``."""
        entry = self._load().pop((storage.topic, storage.partition), None)
        if entry is None or entry[0] != topic_id:
            return False
        storage.set_hw(entry[1])
        return True

    def write(self, entries: SharedHws) -> None:
        """Replace the file with ``entries`` (write tmp, fsync, rename, fsync the directory).

        Raises:
            DiskFull, StorageIOError: the previous file is left in place.
        """
        write_atomic(self.path, encode_shared_hws(entries))


def hw_entries(replicas) -> SharedHws:
    """What the shared file holds for ``replicas`` (``PartitionReplica``; closed ones left out)."""
    return {(r.topic, r.partition): (r.assignment.topic_id, r.storage.hw)
            for r in replicas if not r.closed}


def prepare_epochs(batch: list[tuple[Replica, int]]) -> list:
    """For each (storage, epoch): flush the log, then make ``leader-epoch.chk`` with ``epoch``
    starting at the LEO durable (``Replica.prepare_epoch``). Runs in a worker thread; one
    replica's failure does not stop the others. Per entry: what ``prepare_epoch`` returned, or
    the storage error."""
    out: list = []
    for storage, epoch in batch:
        try:
            out.append(storage.prepare_epoch(epoch))
        except (OSError, serr.StorageError) as e:
            out.append(e)
    return out
