"""Leader -> follower replication over the SPU private port (docs/replication.md).

Fetch-based, as in Kafka: each follower runs ``run_follower``, a loop of long-poll
``FetchReplica`` requests to its leader. The fetch offset is the follower's durable LEO, so the
leader learns every follower's position from the fetches themselves, a slow follower simply
fetches less often (natural backpressure), and a follower decides for itself when to truncate.

Before its first fetch from a leader of a new epoch, a follower reconciles its log (KIP-101/279):
it asks ``OffsetForLeaderEpoch`` for its latest epoch and truncates to the leader's end offset
for it (``fluvial.replication.election.truncation_offset``), never merely to its HW. Then:

    loop: fetch(fetch_offset = durable LEO, epoch) -> append_replica(batches) -> fsync
          -> set HW = min(leader HW, LEO)

The leader answers a fetch at once when it has durable data past the offset, otherwise when
something changes or after ``max_wait_ms``. A fetch carrying another epoch than the leader's is
refused (NotLeaderForPartition): a stale leader or a stale follower never exchanges records.
"""

from __future__ import annotations

import logging

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.protocol import internal_api as ia
from fluvial.replication.election import truncation_offset
from fluvial.replication.isr import FollowerAheadError
from fluvial.spu.partition import PartitionReplica, Waiter

log = logging.getLogger("fluvial.spu.replication")

FETCH_MAX_BYTES = 1 << 20
FETCH_MAX_WAIT_MS = 500


async def handle_fetch_replica(ctx, req: ia.FetchReplicaRequest) -> ia.FetchReplicaResponse:
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
                                       st.leo, r.log_start_offset, b"")
    r.update_hw()
    if st.isr != isr_before:
        r.notify()  # producers waiting for min_isr
        if r.on_change:
            r.on_change()
    if req.fetch_offset < r.log_start_offset:
        return ia.FetchReplicaResponse(Error(ErrorCode.OffsetEvicted, (req.fetch_offset, r.log_start_offset)),
                                       r.leader_epoch, r.hw, st.leo, r.log_start_offset, b"")
    hw_seen = r.hw
    if req.fetch_offset >= st.leo:
        w = Waiter()
        r.waiters.add(w)
        try:
            with trio.move_on_after(max(req.max_wait_ms, 0) / 1000):
                while (r.leader_state is st and req.fetch_offset >= st.leo and r.hw == hw_seen
                       and not r.closed):
                    await w.wake.wait()
                    w.reset()
        finally:
            r.waiters.discard(w)
        if r.leader_state is not st or r.closed:
            return ia.FetchReplicaResponse(Error(ErrorCode.NotLeaderForPartition), -1, 0, 0, 0, b"")
    records = b""
    if req.fetch_offset < st.leo:
        chunk = r.storage.read(req.fetch_offset, max(req.max_bytes, 1), st.leo)
        records = chunk.read_bytes()
    return ia.FetchReplicaResponse(OK, r.leader_epoch, r.hw, st.leo, r.log_start_offset, records)


async def handle_offset_for_leader_epoch(ctx, req: ia.OffsetForLeaderEpochRequest) -> ia.OffsetForLeaderEpochResponse:
    r = ctx.replicas.get((req.topic, req.partition))
    if r is None or not r.is_leader or req.leader_epoch != r.leader_epoch:
        return ia.OffsetForLeaderEpochResponse(Error(ErrorCode.NotLeaderForPartition), -1, -1)
    if req.follower_id not in r.assignment.replicas:
        return ia.OffsetForLeaderEpochResponse(Error(ErrorCode.PermissionDenied), -1, -1)
    epoch, end = r.storage.end_offset_for_epoch(req.requested_epoch)
    # a leader serves only durable data, so an epoch never ends past its durable LEO for others
    return ia.OffsetForLeaderEpochResponse(OK, epoch, min(end, r.storage.durable_leo) if end >= 0 else end)


async def _reconcile(r: PartitionReplica, conn, spu_id: int, epoch: int) -> None:
    """KIP-279: truncate to where this log and the leader's agree."""
    storage = r.storage
    while True:
        epochs = [(e.epoch, e.start_offset) for e in storage.epochs]
        if not epochs:
            return
        asked = epochs[-1][0]
        resp = await conn.call(ia.OffsetForLeaderEpochRequest(
            spu_id, r.topic, r.partition, epoch, asked), timeout=10)
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


class _Retry(Exception):
    pass


async def run_follower(ctx, r: PartitionReplica) -> None:
    """Follow ``r``'s current leader until the assignment changes (the caller cancels us)."""
    a = r.assignment
    leader, epoch = a.leader, a.leader_epoch
    delay = 0.05
    while not r.closed and r.assignment.leader == leader and r.assignment.leader_epoch == epoch:
        peer = ctx.peers.get(leader)
        try:
            if peer is None:
                raise _Retry(f"no address for leader {leader}")
            async with ctx.connect_member(peer.host, peer.port) as conn:
                await _reconcile(r, conn, ctx.spu_id, epoch)
                delay = 0.05
                while not r.closed:
                    await trio.to_thread.run_sync(r.storage.flush)
                    resp = await conn.call(ia.FetchReplicaRequest(
                        ctx.spu_id, r.topic, r.partition, epoch, r.storage.durable_leo,
                        FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS), timeout=FETCH_MAX_WAIT_MS / 1000 + 10)
                    if resp.error_code.code == ErrorCode.OffsetOutOfRange:
                        await _reconcile(r, conn, ctx.spu_id, epoch)
                        continue
                    if not resp.error_code.ok:
                        raise _Retry(resp.error_code.message)
                    if resp.records:
                        r.storage.append_replica(resp.records)
                        await trio.to_thread.run_sync(r.storage.flush)
                    hw = min(resp.hw, r.storage.durable_leo)
                    if hw > r.storage.hw:
                        r.storage.set_hw(hw)
                    r.notify()
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, _Retry, Exception) as e:  # noqa: BLE001
            if r.closed:
                return
            log.info("%s-%s: following %d: %s", r.topic, r.partition, leader, e)
        await trio.sleep(delay)
        delay = min(delay * 2, 1.0)
