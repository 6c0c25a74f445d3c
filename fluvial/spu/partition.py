"""One partition replica on an SPU: the storage log plus what trio needs around it.

Theory of operation
-------------------
* Appends run on the event-loop thread (one ``write``), so the log's LEO moves in program order.
* Durability is group commit: an append asks the flusher for a flush and waits until
  ``durable_leo`` covers its batch. The flusher task runs ``Replica.flush`` (an fsync) in a worker
  thread; every append that lands while an fsync runs is covered by the next one, so N concurrent
  producers cost one fsync per round, not N.
* The high watermark only counts durable data: the leader's durable LEO and the LEOs its
  followers report, which are durable on their side too (a follower fsyncs before it fetches
  again, and fetches from its LEO). Followers are served the leader's data as soon as it is
  written, so their copy and fsync overlap the leader's own fsync.
* HW = min over the ISR (``fluvial.replication.isr.LeaderState``), where the ISR that counts is the
  leader's own ISR *plus* the members the SC still has on record: a shrink takes effect for the HW
  only once the SC has committed it (Kafka's "maximal ISR", KIP-497), so an election, which picks
  from the SC's ISR, can never choose a replica that misses an acknowledged record.
* Readers (stream fetches, follower fetches) park in ``waiters``; every LEO or HW move wakes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from fluvial.protocol.internal_api import ReplicaAssignment
from fluvial.replication.isr import LeaderState
from fluvial.replication.offsets import compute_hw
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


class Lease:
    """The SPU's leader lease: how long its leaderships stay valid without word from the SC.

    Promise: a leader cut off from the SC stops acknowledging (and appending) within ``seconds``
    of sending its last report that the SC answered. The SC grants ``seconds`` below its own
    heartbeat timeout, so by the time the SC declares this SPU failed and elects another leader,
    the lease has run out and this SPU no longer acknowledges: two leaders never both ack.

    ``renew(sent_at)`` counts from when the renewing request was *sent*, not when the answer
    arrived, so a slow answer can only shorten the lease, never stretch it past what the SC
    granted. ``seconds <= 0`` means no lease (always valid, the SC grants none). A lease that
    was never renewed is not valid. Times are ``trio.current_time()`` seconds (monotonic).
    """

    __slots__ = ("seconds", "expires_at")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at: float | None = None  # None: never renewed

    def renew(self, sent_at: float) -> None:
        """The SC answered a report sent at ``sent_at``; the lease never moves backwards."""
        end = sent_at + self.seconds
        if self.expires_at is None or end > self.expires_at:
            self.expires_at = end

    def valid(self, now: float) -> bool:
        """Whether a leader may acknowledge or append at ``now``."""
        if self.seconds <= 0:
            return True
        return self.expires_at is not None and now < self.expires_at


class PartitionReplica:
    def __init__(self, storage: Replica, assignment: ReplicaAssignment, spu_id: int,
                 lease: Lease | None = None):
        self.storage = storage
        self.spu_id = spu_id
        self.lease = lease  # None: no lease (always valid), for unit tests
        self.assignment = assignment
        self.topic, self.partition = assignment.topic, assignment.partition
        self.waiters: set[Waiter] = set()
        self._flush_wanted = trio.Event()
        self._durable_changed = trio.Event()
        self.failed: BaseException | None = None
        self.closed = False
        self.checkpointed_hw = storage.hw  # the HW replication.chk holds (as loaded)
        self.leader_state: LeaderState | None = None
        self.follower_scope: trio.CancelScope | None = None
        self.on_change = None  # called when the ISR changes (the SPU then reports to the SC)
        self._take_role(None)

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

    def lease_valid(self) -> bool:
        """Whether this replica may append or acknowledge now (see ``Lease``)."""
        return self.lease is None or self.lease.valid(trio.current_time())

    def limit(self, committed: bool) -> int:
        return self.storage.hw if committed else self.storage.leo

    def reassign(self, assignment: ReplicaAssignment) -> bool:
        """Apply a new assignment; returns True when the role or epoch changed."""
        old = self.assignment
        self.assignment = assignment
        changed = (old.leader != assignment.leader or old.leader_epoch != assignment.leader_epoch)
        if changed or (self.is_leader and self.leader_state is None):
            self._take_role(old)
        elif self.is_leader:
            self.update_hw()
        self.notify()
        return changed

    def _take_role(self, old: ReplicaAssignment | None) -> None:
        a = self.assignment
        if a.leader != self.spu_id:
            self.leader_state = None
            return
        # a new leader makes its log durable, then starts its epoch at its LEO
        self.storage.flush()
        self.storage.assign_epoch(a.leader_epoch)
        isr = [s for s in a.isr if s in a.replicas]
        self.leader_state = LeaderState(self.spu_id, a.replicas, leo=self.storage.durable_leo,
                                        hw=self.storage.hw, now=trio.current_time(), isr=isr)
        self.update_hw()

    # ------------------------------------------------------------------------------- changes

    def notify(self) -> None:
        for w in self.waiters:
            w.wake.set()

    def hw_members(self) -> set[int]:
        """The followers whose LEO holds the HW: the leader's ISR plus the SC's recorded ISR."""
        st = self.leader_state
        return (set(st.isr) | set(self.assignment.isr)) & set(st.followers)

    def update_hw(self) -> None:
        st = self.leader_state
        if st is None:
            return
        # the leader counts with its durable LEO; followers' LEOs are durable on their side
        leos = [st.followers[s].leo for s in self.hw_members()]
        hw = compute_hw(self.storage.durable_leo, leos, current_hw=self.storage.hw)
        if hw > self.storage.hw:
            self.storage.set_hw(hw)
            self.notify()

    def drop_failed_followers(self, live: set[int]) -> bool:
        """Followers the SC has declared failed leave the ISR now, not after the lag time: the
        SC has already removed them from its own ISR record."""
        st = self.leader_state
        if st is None:
            return False
        failed = {s for s in st.isr if s != self.spu_id and s not in live}
        if not failed:
            return False
        st.remove_from_isr(failed)
        self.update_hw()
        self.notify()
        return True

    def isr(self) -> list[int]:
        return sorted(self.leader_state.isr) if self.leader_state else []

    def under_min_isr(self) -> bool:
        min_isr = self.assignment.settings.min_isr
        st = self.leader_state
        return st is None or len(st.isr & set(self.assignment.isr) | {self.spu_id}) < min_isr

    # ------------------------------------------------------------------------------- appends

    def append_nowait(self, record_set: bytes):
        """Append as leader now (one write, in call order) and ask the flusher for an fsync;
        returns the storage's AppendResult. Wait with ``wait_durable(result.leo)``.

        Raises:
            storage errors (InvalidBatch, DiskFull, ...) before anything is visible.
        """
        result = self.storage.append(record_set, leader_epoch=self.leader_epoch)
        if self.leader_state is not None:
            self.leader_state.update_leader_leo(result.leo, trio.current_time())
        self._flush_wanted.set()
        self.notify()
        return result

    async def append(self, record_set: bytes) -> tuple[int, int]:
        """Append as leader; returns (base_offset, leo after) once durable."""
        result = self.append_nowait(record_set)
        await self.wait_durable(result.leo)
        return result.base_offset, result.leo

    async def wait_durable(self, leo: int) -> None:
        while self.storage.durable_leo < leo:
            if self.failed:
                raise self.failed
            self._flush_wanted.set()
            await self._durable_changed.wait()

    async def wait_change(self) -> None:
        w = Waiter()
        self.waiters.add(w)
        try:
            await w.wake.wait()
        finally:
            self.waiters.discard(w)

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
