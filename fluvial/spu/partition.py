"""One partition replica on an SPU: the storage log plus what trio needs around it.

Theory of operation
-------------------
* Appends run on the event-loop thread (one ``write``), so the log's LEO moves in program order.
* Durability is group commit: an append asks the flusher for a flush and waits until
  ``durable_leo`` covers its batch. The flusher task runs ``Replica.flush`` (an fsync) in a worker
  thread; every append that lands while an fsync runs is covered by the next one, so N concurrent
  producers cost one fsync per round, not N.
* The high watermark only counts durable data. With a single in-sync replica it is the durable
  LEO; with followers (core-4) it is the minimum LEO over the ISR, capped by the durable LEO.
* Readers (stream fetches, follower fetches) park in ``waiters``; every LEO or HW move wakes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from fluvial.protocol.internal_api import ReplicaAssignment
from fluvial.storage.replica import Replica

log = logging.getLogger("fluvial.spu")


class Waiter:
    """A parked reader: ``wake`` is set whenever the replica changes."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = trio.Event()

    def reset(self) -> None:
        if self.wake.is_set():
            self.wake = trio.Event()


@dataclass
class ProduceTimeout(Exception):
    timeout_ms: int


class PartitionReplica:
    def __init__(self, storage: Replica, assignment: ReplicaAssignment, spu_id: int):
        self.storage = storage
        self.spu_id = spu_id
        self.assignment = assignment
        self.topic, self.partition = assignment.topic, assignment.partition
        self.waiters: set[Waiter] = set()
        self._flush_wanted = trio.Event()
        self._durable_changed = trio.Event()
        self.failed: BaseException | None = None
        self.follower_leos: dict[int, int] = {}
        self.closed = False

    # --------------------------------------------------------------------------------- roles

    @property
    def is_leader(self) -> bool:
        return self.assignment.leader == self.spu_id

    @property
    def leader_epoch(self) -> int:
        return self.assignment.leader_epoch

    @property
    def leo(self) -> int:
        return self.storage.leo

    @property
    def hw(self) -> int:
        return self.storage.hw

    @property
    def log_start_offset(self) -> int:
        return self.storage.log_start_offset

    def limit(self, committed: bool) -> int:
        return self.storage.hw if committed else self.storage.leo

    # ------------------------------------------------------------------------------- changes

    def notify(self) -> None:
        for w in self.waiters:
            w.wake.set()

    def update_hw(self) -> None:
        """HW = min(durable LEO, LEO of every in-sync follower)."""
        hw = self.storage.durable_leo
        isr = [s for s in self.assignment.isr if s != self.spu_id] if self.is_leader else []
        for spu in isr:
            hw = min(hw, self.follower_leos.get(spu, 0))
        if self.is_leader and hw > self.storage.hw:
            self.storage.set_hw(hw)
            self.notify()

    # ------------------------------------------------------------------------------- appends

    async def append(self, record_set: bytes) -> tuple[int, int]:
        """Append as leader; returns (base_offset, leo after) once durable.

        Raises:
            storage errors (InvalidBatch, DiskFull, ...) before anything is visible.
        """
        result = self.storage.append(record_set, leader_epoch=self.leader_epoch)
        self.notify()
        await self.wait_durable(result.leo)
        return result.base_offset, result.leo

    async def wait_durable(self, leo: int) -> None:
        while self.storage.durable_leo < leo:
            if self.failed:
                raise self.failed
            self._flush_wanted.set()
            await self._durable_changed.wait()

    async def wait_hw(self, offset: int) -> None:
        w = Waiter()
        self.waiters.add(w)
        try:
            while self.storage.hw < offset:
                await w.wake.wait()
                w.reset()
        finally:
            self.waiters.discard(w)

    async def run_flusher(self) -> None:
        """Group commit: one fsync (in a worker thread) covers every append made before it."""
        while not self.closed:
            await self._flush_wanted.wait()
            self._flush_wanted = trio.Event()
            try:
                await trio.to_thread.run_sync(self.storage.flush)
            except Exception as e:  # the disk failed under us: fail the waiters, keep serving reads
                log.error("flush of %s-%s failed: %s", self.topic, self.partition, e)
                self.failed = e
            self._durable_changed.set()
            self._durable_changed = trio.Event()
            self.update_hw()
            self.notify()
