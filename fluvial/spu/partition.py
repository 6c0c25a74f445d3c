"""One partition replica on an SPU: the storage log plus what trio needs around it.

Theory of operation
-------------------
* Appends run on the event-loop thread (one ``write``), so the log's LEO moves in program order.
* Durability is group commit (``fluvial.storage.group_commit.GroupCommit``): an append waits
  until ``durable_leo`` covers its batch. The flusher task runs ``Replica.flush`` (an fsync),
  in a worker thread or, when nothing else is ready to run and the fsync is short, on the loop
  thread (``flush_placed``); a leader with followers lets the tasks woken with its flusher go
  first (their waiting fetches: the followers' copies and fsyncs then overlap its own). Every
  append that lands while an fsync runs is covered by the next one, so N concurrent producers
  cost one fsync per round, not N.
* The high watermark only counts durable data: ``fluvial.replication.isr.LeaderState`` is fed the
  leader's durable LEO after each fsync, and the LEOs its followers report, which are durable on
  their side too (a follower fsyncs before it fetches again, and fetches from its LEO). Followers
  may be served the leader's data as soon as it is written (``LeaderState.log_end``), so their
  copy and fsync overlap the leader's own fsync.
* HW = min over the leader's ISR *plus* the members the SC still has on record
  (``LeaderState.recorded_isr``): a shrink takes effect for the HW only once the SC has
  committed it (Kafka's "maximal ISR", KIP-497), so an election, which picks from the SC's ISR,
  can never choose a replica that misses an acknowledged record.
* A replica leads only when the SC says so *and* the epoch is newer than every epoch in its log
  (or it already leads that epoch in this process): an epoch is never reused for new writes.
* Taking over at a new epoch: the log is flushed and ``leader-epoch.chk`` holding the new epoch
  made durable *before* ``leader_state`` exists. With an ``epoch_writer`` (the SPU's, which
  batches many take-overs into one worker-thread hop, ``fluvial.spu.checkpoints``) the replica
  waits in ``pending_epoch`` (neither leading nor following) until ``take_over_prepared``;
  without one (unit tests) it is done at once on this thread.
* An acknowledgement needs the leadership the append was made under (the same ``LeaderState``)
  and a valid lease at that moment; a demoted, truncated or cut-off leader acknowledges nothing.
* Readers (stream fetches, follower fetches) park in ``waiters``; every LEO or HW move wakes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import trio

from fluvial.protocol.internal_api import ReplicaAssignment
from fluvial.replication.isr import LeaderState
from fluvial.spu.producer_state import ProducerStateTable
from fluvial.storage.group_commit import FlushPlacement, GroupCommit
from fluvial.storage.replica import AppendResult, Replica

log = logging.getLogger("fluvial.spu")

PRODUCER_SCAN_RECORDS = 1_000_000  # records a new leader reads back for producer sequences

T = TypeVar("T")


async def flush_placed(placement: FlushPlacement, flush: Callable[[], T],
                       unflushed_bytes: Callable[[], int], *, after_woken: bool = False) -> T:
    """Run ``flush`` (fsyncs of about ``unflushed_bytes()``) where ``placement`` says: on this
    thread, without a pause, or in a worker thread; its own duration goes back to ``placement``.

    ``after_woken``: the tasks runnable now go first. trio counts as runnable only the tasks of
    its next batch, not the rest of the batch it is running, so a leader's flusher woken by the
    same append as its followers' waiting fetches sees an idle loop, and half the time (trio
    reverses a batch at random) holds it for the fsync before they send the followers their
    copies; the other half it sees them and goes to a thread. After one checkpoint they have
    run, and the rule asks about what is runnable then, with the bytes appended meanwhile."""
    def timed() -> T:
        start = time.perf_counter()
        try:
            return flush()
        finally:
            placement.took(time.perf_counter() - start)

    if after_woken:
        await trio.lowlevel.checkpoint()
    if placement.inline(trio.lowlevel.current_statistics().tasks_runnable, unflushed_bytes()):
        return timed()
    return await trio.to_thread.run_sync(timed)


class Waiter:
    """A parked reader: ``wake`` is set whenever the replica changes."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = trio.Event()

    def reset(self) -> None:
        if self.wake.is_set():
            self.wake = trio.Event()


class NotLeader(Exception):
    """This replica may not append or acknowledge now: it does not lead (any more, or at the
    epoch the records were appended under), or its lease has run out. Retriable by the client."""


class _DurableWait:
    """One append waiting for its fsync (a GroupCommit waiter)."""

    __slots__ = ("event", "error")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.error: BaseException | None = None

    def release(self, error: BaseException | None = None) -> None:
        self.error = error
        self.event.set()


class Lease:
    """The SPU's leader lease: how long its leaderships stay valid without word from the SC.

    Promise: a leader cut off from the SC stops acknowledging (and appending) within ``seconds``
    of sending its last report that the SC answered. The SC grants ``seconds`` below its own
    heartbeat timeout, so when the SC fails this SPU for silence and elects another leader, the
    lease has already run out. When the SC instead sees the SPU's connection close, it elects at
    once (fast failover after a crash); a leader that is in fact alive and still reachable by
    clients may then acknowledge ReadUncommitted produces until its lease runs out, and those can
    be lost, as acks=1 writes can in Kafka. ReadCommitted acknowledgements never are: they need
    the HW, which counts the followers the SC last recorded, and those follow the new leader.

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
                 lease: Lease | None = None, epoch_writer=None,
                 flushes: FlushPlacement | None = None):
        self.storage = storage
        self.flushes = flushes if flushes is not None else FlushPlacement()  # the SPU's, shared
        self.spu_id = spu_id
        self.lease = lease  # None: no lease (always valid), for unit tests
        self.assignment = assignment
        self.topic, self.partition = assignment.topic, assignment.partition
        self.waiters: set[Waiter] = set()
        self._commit = GroupCommit(storage.durable_leo)
        self._flush_wanted = trio.Event()  # wakes run_flusher
        self._led_epoch: int | None = None  # the epoch this process took leadership at
        self.failed: BaseException | None = None
        self.closed = False
        self.checkpointed_hw = storage.hw  # the HW the checkpoint holds (as loaded)
        self.leader_state: LeaderState | None = None
        # idempotent producers' sequences (spu/producer_state.py): built from the log when this
        # replica takes leadership, kept up to date by the produce handler while it leads
        self.producers: ProducerStateTable | None = None
        self.on_change = None  # called when the ISR changes (the SPU then reports to the SC)
        self.on_notify = None  # called with this replica by every ``notify`` (its report is stale)
        # called with this replica when it must take over at a new epoch: the caller makes the
        # epoch durable later and calls ``take_over_prepared``; None: done at once, here
        self.epoch_writer = epoch_writer
        self.pending_epoch: int | None = None  # the epoch it waits to take over at
        self._take_role()

    # --------------------------------------------------------------------------------- roles

    @property
    def is_leader(self) -> bool:
        """Whether this replica leads now (assigned by the SC *and* accepted, see _take_role)."""
        return self.leader_state is not None

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

    def may_ack(self, leadership: LeaderState | None) -> bool:
        """Whether records appended under ``leadership`` (the ``leader_state`` of the append)
        may be acknowledged now: the same leadership still holds and the lease is valid."""
        return leadership is not None and self.leader_state is leadership and self.lease_valid()

    def limit(self, committed: bool) -> int:
        return self.storage.hw if committed else self.storage.leo

    def reassign(self, assignment: ReplicaAssignment) -> bool:
        """Apply a new assignment; returns True when the role or epoch changed."""
        old = self.assignment
        self.assignment = assignment
        changed = (old.leader != assignment.leader or old.leader_epoch != assignment.leader_epoch)
        if changed or (assignment.leader == self.spu_id and self.leader_state is None):
            self._take_role()
        elif self.leader_state is not None:
            self.leader_state.set_recorded_isr(assignment.isr)
            self.update_hw()
        self.notify()
        return changed

    def _take_role(self) -> None:
        a = self.assignment
        kept = (self.leader_state is not None and a.leader == self.spu_id
                and self._led_epoch == a.leader_epoch)
        if not kept:
            # appends waiting for an fsync were made under another leadership: wake them now,
            # their may_ack check refuses them
            for w in self._commit.reset(self.storage.durable_leo):
                w.release()
            self.leader_state = None
            self.producers = None
            self.pending_epoch = None
        if a.leader != self.spu_id or kept or self._refuses(a.leader_epoch):
            return
        if self.epoch_writer is not None:
            self.pending_epoch = a.leader_epoch
            self.epoch_writer(self)
            return
        # a new leader makes its log durable, then starts its epoch at its LEO
        self.storage.flush()
        self.storage.assign_epoch(a.leader_epoch)
        self._lead()

    def _refuses(self, epoch: int) -> bool:
        latest = self.storage.latest_epoch
        if epoch <= latest:
            log.error("%s-%s: refusing to lead at epoch %d: the log already holds epoch %d "
                      "(an epoch is never reused for new writes)", self.topic, self.partition,
                      epoch, latest)
            return True
        return False

    def take_over_prepared(self, epoch: int, prepared) -> bool:
        """Lead at ``epoch`` now that ``Replica.prepare_epoch`` made it durable (``prepared``, its
        result), if this replica still waits to take over at that epoch. A log changed meanwhile
        is flushed and its epoch assigned here instead. Returns whether it leads."""
        a = self.assignment
        if (self.closed or self.pending_epoch != epoch or a.leader != self.spu_id
                or a.leader_epoch != epoch):
            return False
        self.pending_epoch = None
        if prepared is None or not self.storage.install_epochs(prepared):
            if self._refuses(epoch):
                return False
            self.storage.flush()
            self.storage.assign_epoch(epoch)
        self._lead()
        self.notify()
        return True

    def _lead(self) -> None:
        """Become the leader at the assignment's epoch (durable in the log's epoch file)."""
        a = self.assignment
        self._led_epoch = a.leader_epoch
        self._commit.reset(self.storage.durable_leo)  # no waiters: only the durable LEO moves
        self.producers = self.rebuild_producers()
        isr = [s for s in a.isr if s in a.replicas]
        self.leader_state = LeaderState(self.spu_id, a.replicas, leo=self.storage.durable_leo,
                                        hw=self.storage.hw, now=trio.current_time(), isr=isr,
                                        recorded_isr=isr)
        self.update_hw()

    def rebuild_producers(self) -> ProducerStateTable:
        """The idempotent producers' state as this replica's log describes it (its batch
        headers carry producer id, epoch and sequence), so a new leader knows every batch its
        predecessor appended and this one holds. Only the last ``PRODUCER_SCAN_RECORDS`` records
        are scanned (bounded work when leadership moves; retries are minutes old at most):
        producers not seen there count as unknown ones of a log that lost its head."""
        start = max(self.storage.log_start_offset, self.storage.leo - PRODUCER_SCAN_RECORDS)
        return ProducerStateTable.rebuild(self.storage.batch_headers(start), start,
                                          self.storage.config.cleanup_policy == "compact")

    # ------------------------------------------------------------------------------- changes

    def notify(self) -> None:
        for w in self.waiters:
            w.wake.set()
        if self.on_notify is not None:
            self.on_notify(self)

    def update_hw(self) -> None:
        """Publish the ISR bookkeeping's HW to storage (it never moves back)."""
        st = self.leader_state
        if st is not None and st.hw > self.storage.hw:
            self.storage.set_hw(st.hw)
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
        st = self.leader_state
        return st is None or st.is_under_min_isr(self.assignment.settings.min_isr)

    # ------------------------------------------------------------------------------- appends

    def append_nowait(self, record_set: bytes) -> AppendResult:
        """Append as leader now (one write, in call order); returns the storage's AppendResult.
        Wait with ``wait_durable(result.leo)``, then ask ``may_ack`` with the leadership of the
        append (``leader_state`` before the call).

        Raises:
            NotLeader: this replica does not lead, or its lease has run out; nothing written.
            storage errors (InvalidBatch, DiskFull, ...) before anything is visible.
        """
        st = self.leader_state
        if st is None or not self.lease_valid():
            raise NotLeader(f"{self.topic}-{self.partition}: not the leader, or no valid lease")
        result = self.storage.append(record_set, leader_epoch=self.leader_epoch)
        st.on_append(result.leo)
        self.notify()
        return result

    async def append(self, record_set: bytes) -> tuple[int, int]:
        """Append as leader; returns (base_offset, leo after) once durable and acknowledgeable.

        Raises:
            NotLeader: as ``append_nowait``, or the leadership or lease was lost meanwhile.
        """
        leadership = self.leader_state
        result = self.append_nowait(record_set)
        await self.wait_durable(result.leo)
        if not self.may_ack(leadership):
            raise NotLeader(f"{self.topic}-{self.partition}: leadership or lease lost")
        return result.base_offset, result.leo

    async def wait_durable(self, leo: int) -> None:
        """Wait until the records below ``leo`` are durable (group commit), or until the
        leadership changed (the records may not be these any more): ask ``may_ack`` next.

        Raises:
            the flush's error when it failed.
        """
        if self.failed:
            raise self.failed
        if self._commit.covered(leo):
            return
        w = _DurableWait()
        if self._commit.add_waiter(leo, w):
            self._flush_wanted.set()
        await w.event.wait()
        if w.error is not None:
            raise w.error

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
            if self.closed:
                return
            try:
                await flush_placed(self.flushes, self.storage.flush,
                                   lambda: self.storage.unflushed_bytes,
                                   after_woken=len(self.assignment.replicas) > 1)
            except Exception as e:  # the disk failed under us: fail the waiters, keep serving reads
                log.error("flush of %s-%s failed: %s", self.topic, self.partition, e)
                self.failed = e
                for w in self._commit.flush_failed():
                    w.release(e)
                self.notify()  # its report now carries the error
                continue
            self._flushed()

    def _flushed(self) -> None:
        """A flush returned: release the covered waiters and feed the HW the durable LEO. The
        storage's durable LEO is read now: the flush's own result may predate a truncation."""
        durable = self.storage.durable_leo
        released, again = self._commit.flush_done(durable)
        for w in released:
            w.release()
        if again:
            self._flush_wanted.set()
        st = self.leader_state
        if st is not None and durable > st.leo:
            st.update_leader_leo(durable, trio.current_time())
            self.update_hw()
        self.notify()
