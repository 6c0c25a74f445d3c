"""Leader -> follower replication over the SPU private port (docs/replication.md).

Fetch-based, as in Kafka: each follower runs ``run_follower``, a loop of long-poll
``FetchReplica`` requests to its leader. The fetch offset is the follower's durable LEO, so the
leader learns every follower's position from the fetches themselves, a slow follower simply
fetches less often (natural backpressure), and a follower decides for itself when to truncate.

Before its first fetch from a leader of a new epoch, a follower reconciles its log (KIP-101/279):
it asks ``OffsetForLeaderEpoch`` for its latest epoch and truncates to the leader's end offset
for it (``fluvial.replication.election.truncation_offset``), never merely to its HW. Then:

    loop: fsync -> fetch(fetch_offset = durable LEO, epoch) -> append_replica(batches) -> fsync
          -> set HW = min(leader HW, durable LEO)

The follower changes its log only while it still follows that leader at that epoch
(``Following.check``, after every await): an answer delivered just before the assignment
changed (this SPU now leads, or follows another epoch) is dropped, and so is an answer that
names another leader epoch than the one followed. Three answers change the log otherwise:

* ``OffsetOutOfRange``: this log holds records the leader never wrote; reconcile again.
* ``OffsetEvicted``: the leader's log now starts past this log's end (retention); the follower
  empties its log and starts at the leader's log start (``truncate_fully_and_start_at``).
* a corrupt batch in this log (``Replica.corrupt_offset``): truncate there and fetch it again.

The leader serves what it has written (``LeaderState.log_end``), not only what is fsynced: the
HW still counts only durable copies. It answers a fetch at once when it has data past the
offset, otherwise when something changes or after ``max_wait_ms``, and never more than the SPU's
``max_fetch_bytes`` (or one whole batch), whatever the request asks. A fetch carrying another
epoch than the leader's is refused (NotLeaderForPartition): a stale leader or a stale follower
never exchanges records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.protocol import internal_api as ia
from fluvial.replication.election import truncation_offset
from fluvial.replication.isr import FollowerAheadError
from fluvial.spu.partition import PartitionReplica, Waiter

log = logging.getLogger("fluvial.spu.replication")

FETCH_MAX_BYTES = 1 << 20
FETCH_MAX_WAIT_MS = 500


async def handle_fetch_replica(ctx, conn, header, req: ia.FetchReplicaRequest) -> ia.FetchReplicaResponse:
    r: PartitionReplica | None = ctx.replicas.get((req.topic, req.partition))
    if r is None or not r.is_leader or r.leader_state is None:
        return ia.FetchReplicaResponse(Error(ErrorCode.NotLeaderForPartition), -1, 0, 0, 0, b"")
    if req.follower_id not in r.assignment.replicas or req.follower_id == ctx.spu_id:
        return ia.FetchReplicaResponse(Error(ErrorCode.PermissionDenied), r.leader_epoch, 0, 0, 0, b"")
    if req.leader_epoch != r.leader_epoch:
        return ia.FetchReplicaResponse(Error(ErrorCode.NotLeaderForPartition), r.leader_epoch, 0, 0, 0, b"")
    st = r.leader_state
    isr_before = st.isr
    try:
        st.on_follower_fetch(req.follower_id, req.fetch_offset, trio.current_time())
    except FollowerAheadError:
        # the follower holds records this leader never wrote: it must reconcile first
        return ia.FetchReplicaResponse(Error(ErrorCode.OffsetOutOfRange), r.leader_epoch, r.hw,
                                       st.log_end, r.log_start_offset, b"")
    r.update_hw()
    if st.isr != isr_before:
        r.notify()  # producers waiting for min_isr
        if r.on_change:
            r.on_change()
    if req.fetch_offset < r.log_start_offset:
        return ia.FetchReplicaResponse(Error(ErrorCode.OffsetEvicted, (req.fetch_offset, r.log_start_offset)),
                                       r.leader_epoch, r.hw, st.log_end, r.log_start_offset, b"")
    hw_seen = r.hw
    if req.fetch_offset >= st.log_end:
        w = Waiter()
        r.waiters.add(w)
        try:
            with trio.move_on_after(max(req.max_wait_ms, 0) / 1000):
                while (r.leader_state is st and req.fetch_offset >= st.log_end and r.hw == hw_seen
                       and not r.closed):
                    await w.wake.wait()
                    w.reset()
        finally:
            r.waiters.discard(w)
        if r.leader_state is not st or r.closed:
            return ia.FetchReplicaResponse(Error(ErrorCode.NotLeaderForPartition), -1, 0, 0, 0, b"")
    records = b""
    if req.fetch_offset < st.log_end:
        max_bytes = min(max(req.max_bytes, 1), ctx.max_fetch_bytes)  # bounded, whatever was asked
        records = r.storage.read(req.fetch_offset, max_bytes, st.log_end).read_bytes()
    return ia.FetchReplicaResponse(OK, r.leader_epoch, r.hw, st.log_end, r.log_start_offset, records)


async def handle_offset_for_leader_epoch(ctx, conn, header, req: ia.OffsetForLeaderEpochRequest
                                         ) -> ia.OffsetForLeaderEpochResponse:
    r = ctx.replicas.get((req.topic, req.partition))
    if r is None or not r.is_leader or req.leader_epoch != r.leader_epoch:
        return ia.OffsetForLeaderEpochResponse(Error(ErrorCode.NotLeaderForPartition), -1, -1)
    if req.follower_id not in r.assignment.replicas:
        return ia.OffsetForLeaderEpochResponse(Error(ErrorCode.PermissionDenied), -1, -1)
    # the one lookup (storage's LeaderEpochCache), over what this leader has written: followers
    # are served written data, and a leader that loses an unsynced tail never leads that epoch again
    epoch, end = r.storage.end_offset_for_epoch(req.requested_epoch)
    return ia.OffsetForLeaderEpochResponse(OK, epoch, end)


@dataclass(frozen=True, slots=True)
class Following:
    """The one state in which the follower task may change the log: ``r`` follows ``leader`` at
    ``epoch``, and this SPU does not lead it.

    Awaits are where the assignment can change under the task (the SPU becoming leader, another
    leader or epoch, the replica dropped), and the cancellation that follows reaches the task
    only at its next checkpoint: an answer already delivered still comes back from ``call``. So
    the task asks ``check()`` after every await and before it truncates, appends or sets the HW.
    """

    r: PartitionReplica
    leader: int
    epoch: int

    def holds(self) -> bool:
        r, a = self.r, self.r.assignment
        return (not r.closed and r.leader_state is None and self.leader != r.spu_id
                and a.leader == self.leader and a.leader_epoch == self.epoch)

    def check(self) -> None:
        if not self.holds():
            raise _Superseded(f"{self.r.topic}-{self.r.partition}: no longer following "
                              f"{self.leader} at epoch {self.epoch}")


class _Superseded(Exception):
    """The assignment moved on: the follower task ends without touching the log again."""


class _Retry(Exception):
    pass


def _cut_corrupt_tail(r: PartitionReplica) -> None:
    """A follower holding a corrupt batch (``Replica.corrupt_offset``) truncates there: the
    batch and everything after it are fetched again from the leader."""
    bad = r.storage.corrupt_offset
    if bad is not None and bad < r.storage.leo:
        log.warning("%s-%s: corrupt batch at offset %d: truncating there to fetch it again",
                    r.topic, r.partition, bad)
        r.storage.truncate_to(bad)
        r.notify()


async def _reconcile(f: Following, conn, spu_id: int) -> None:
    """KIP-279: truncate to where this log and the leader's agree."""
    r, storage = f.r, f.r.storage
    while True:
        f.check()
        epochs = [(e.epoch, e.start_offset) for e in storage.epochs]
        if not epochs:
            return
        resp = await conn.call(ia.OffsetForLeaderEpochRequest(
            spu_id, r.topic, r.partition, f.epoch, epochs[-1][0]), timeout=10)
        f.check()
        if not resp.error_code.ok:
            raise _Retry(resp.error_code.message)
        step = truncation_offset(epochs, storage.leo, (resp.epoch, resp.end_offset),
                                 follower_hw=storage.hw)
        if step.truncate_to < storage.leo:
            log.warning("%s-%s: truncating %d -> %d to match leader epoch %d",
                        r.topic, r.partition, storage.leo, step.truncate_to, resp.epoch)
            storage.truncate_to(step.truncate_to)
            r.notify()
        if step.done:
            return


async def _fetch_from(f: Following, conn, spu_id: int) -> None:
    """One connection's worth of following: reconcile, then fetch, append, fsync, set the HW."""
    r, storage = f.r, f.r.storage
    f.check()
    _cut_corrupt_tail(r)
    await _reconcile(f, conn, spu_id)
    while True:
        await trio.to_thread.run_sync(storage.flush)
        f.check()
        _cut_corrupt_tail(r)
        fetch_offset = storage.durable_leo
        resp = await conn.call(ia.FetchReplicaRequest(
            spu_id, r.topic, r.partition, f.epoch, fetch_offset, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS),
            timeout=FETCH_MAX_WAIT_MS / 1000 + 10)
        f.check()
        code = resp.error_code.code
        if not resp.error_code.ok and code not in (ErrorCode.OffsetOutOfRange, ErrorCode.OffsetEvicted):
            raise _Retry(resp.error_code.message)
        if resp.leader_epoch != f.epoch:
            raise _Retry(f"an answer for epoch {resp.leader_epoch} while following epoch {f.epoch}")
        if code == ErrorCode.OffsetOutOfRange:  # this log holds records the leader never wrote
            await _reconcile(f, conn, spu_id)
            continue
        if code == ErrorCode.OffsetEvicted:
            if fetch_offset >= resp.log_start_offset:
                raise _Retry(resp.error_code.message)
            log.warning("%s-%s: the leader's log starts at %d, past this log's end %d: starting over there",
                        r.topic, r.partition, resp.log_start_offset, fetch_offset)
            storage.truncate_fully_and_start_at(resp.log_start_offset)
            r.notify()
            continue
        if resp.records:
            storage.append_replica(resp.records)
            await trio.to_thread.run_sync(storage.flush)
            f.check()
        hw = min(resp.hw, storage.durable_leo)
        if hw > storage.hw:
            storage.set_hw(hw)
        r.notify()


async def run_follower(ctx, r: PartitionReplica) -> None:
    """Follow ``r``'s current leader until the assignment changes (the caller cancels us, and
    every step re-checks, see ``Following``)."""
    f = Following(r, r.assignment.leader, r.assignment.leader_epoch)
    delay = 0.05
    while f.holds():
        peer = ctx.peers.get(f.leader)
        try:
            if peer is None:
                raise _Retry(f"no address for leader {f.leader}")
            async with ctx.connect_member(peer.host, peer.port) as conn:
                delay = 0.05
                await _fetch_from(f, conn, ctx.spu_id)
        except _Superseded:
            return
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, _Retry, Exception) as e:  # noqa: BLE001
            if not f.holds():
                return
            log.info("%s-%s: following %d: %s", r.topic, r.partition, f.leader, e)
        await trio.sleep(delay)
        delay = min(delay * 2, 1.0)
