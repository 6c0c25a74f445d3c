"""Leader -> follower replication over the SPU private port (docs/replication.md).

Fetch-based, as in Kafka, and batched per pair of SPUs as Kafka's replica fetcher is: a follower
SPU runs one ``LeaderFetcher`` per leader SPU, a loop of long-poll ``FetchReplicas`` requests
that each carry *every* partition it follows from that leader (the pure decisions are in
fluvial.replication.fetch). Each partition's fetch offset is the follower's durable LEO, so the
leader learns every follower's position from the fetches themselves, a slow follower simply
fetches less often (natural backpressure), and a follower decides for itself when to truncate.

Before its first fetch of a partition from a leader of a new epoch (and on every new
connection), a follower reconciles that log (KIP-101/279): it asks ``OffsetForLeaderEpoch`` for
its latest epoch and truncates to the leader's end offset for it
(``fluvial.replication.election.truncation_offset``), never merely to its HW. Then, for all the
partitions at once:

    loop: fsync what is unsynced -> fetch(every partition: durable LEO, epoch, HW)
          -> append_replica(batches) per partition -> fsync -> set HW = min(leader HW, durable LEO)

The follower changes a log only while it still follows that leader at that epoch
(``Following.check``/``holds``, after every await): an answer delivered just before the
assignment changed (this SPU now leads, or follows another epoch) is dropped, and so is an
answer that names another leader epoch than the one followed (``fetch.follower_step``). Three
answers change the log otherwise:

* ``OffsetOutOfRange``: this log holds records the leader never wrote; reconcile again.
* ``OffsetEvicted``: the leader's log now starts past this log's end (retention); the follower
  empties its log and starts at the leader's log start (``truncate_fully_and_start_at``).
* a corrupt batch in this log (``Replica.corrupt_offset``): truncate there and fetch it again.

The leader serves what it has written (``LeaderState.log_end``), not only what is fsynced: the
HW still counts only durable copies. It answers a fetch at once when any partition has data past
its offset (or an error), within ``HW_LINGER_MS`` when the only news is a HW the follower can
use (the next records usually carry it: one round trip per record, not two), otherwise when one
of them changes or after ``max_wait_ms``, and never more than the SPU's ``max_fetch_bytes`` (or
one whole batch), whatever the request asks. A partition asked at another epoch than the
leader's is refused (NotLeaderForPartition): a stale leader or a stale follower never exchanges
records.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.protocol import internal_api as ia
from fluvial.replication.election import truncation_offset
from fluvial.replication.fetch import (
    FETCH_MAX_WAIT_MS, Action, Followed, answer_in, build_request, byte_budget, fetched,
    follower_step, has_news, refusal,
)
from fluvial.replication.isr import FollowerAheadError
from fluvial.spu.partition import PartitionReplica, Waiter, flush_placed
from fluvial.storage import errors as serr
from fluvial import trace

log = logging.getLogger("fluvial.spu.replication")


def _serve_one(ctx, follower_id: int, p: ia.FetchPartition, now: float):
    """The leader's bookkeeping for one partition of a fetch: the checks of ``fetch.refusal``,
    then the follower's LEO fed to the ISR. Returns ``(replica, leadership)`` when the partition
    is served, else its (error) answer."""
    r: PartitionReplica | None = ctx.replicas.get((p.topic, p.partition))
    leads = r is not None and r.is_leader and r.leader_state is not None
    refused = refusal(leads=leads, replicas=r.assignment.replicas if leads else (),
                      leader_epoch=r.leader_epoch if leads else -1, self_id=ctx.spu_id,
                      follower_id=follower_id, requested_epoch=p.leader_epoch)
    if refused is not None:
        return fetched(p, Error(refused), r.leader_epoch if leads else -1)
    st = r.leader_state
    isr_before = st.isr
    before = st.followers.get(follower_id)
    if trace.enabled():
        trace.mark(f"leader.fetch_from_{follower_id}", p.topic, p.partition, p.fetch_offset - 1)
    try:
        st.on_follower_fetch(follower_id, p.fetch_offset, now)
    except (FollowerAheadError, ValueError):
        # the follower holds records this leader never wrote (or sent a negative offset): it
        # must reconcile first
        return fetched(p, Error(ErrorCode.OffsetOutOfRange), r.leader_epoch, r.hw, st.log_end,
                       r.log_start_offset)
    r.update_hw()
    if st.isr != isr_before:
        r.notify()  # producers waiting for min_isr
        if r.on_change:
            r.on_change()
    elif before is None or before.leo != p.fetch_offset:
        if r.on_notify:  # the follower LEO it reports to the SC moved
            r.on_notify(r)
    if p.fetch_offset < r.log_start_offset:
        return fetched(p, Error(ErrorCode.OffsetEvicted, (p.fetch_offset, r.log_start_offset)),
                       r.leader_epoch, r.hw, st.log_end, r.log_start_offset)
    return r, st


def _news(served, req: ia.FetchReplicasRequest) -> float | None:
    """How long (ms) the fetch may still wait (``fetch.answer_in``, the least over its
    partitions): 0 for records, an error or a changed leadership (answered NotLeader), the HW
    linger when the only news is a HW, None when there is none."""
    wait = None
    for i, s in enumerate(served):
        if not isinstance(s, tuple):
            return 0
        r, st = s
        if r.leader_state is not st or r.closed:
            return 0
        p = req.partitions[i]
        known = req.known_hws[i] if i < len(req.known_hws) else -1
        ms = answer_in(p.fetch_offset, known, st.log_end, r.hw)
        if ms == 0:
            return 0
        if ms is not None and (wait is None or ms < wait):
            wait = ms
    return wait


async def handle_fetch_replicas(ctx, conn, header, req: ia.FetchReplicasRequest) -> ia.FetchReplicasResponse:
    """Every partition the follower replicates from this SPU, in one long poll: answered at once
    when one of them has records or an error, within ``HW_LINGER_MS`` when all it has is a HW the
    follower can use, else when one changes (one ``Waiter`` parked on all of them) or after
    ``max_wait_ms``. Each partition is checked as a fetch of its own (``fetch.refusal``: leader,
    replica, epoch); the answer holds at most the SPU's ``max_fetch_bytes`` (or one whole batch),
    whatever the request asks. A partition with nothing for the follower (no records, no usable
    HW, no error) is left out of the answer."""
    now = trio.current_time()
    served = [_serve_one(ctx, req.follower_id, p, now) for p in req.partitions]
    wait = _news(served, req)
    if wait != 0:
        w = Waiter()
        parked = [s[0] for s in served if isinstance(s, tuple)]
        for r in parked:
            r.waiters.add(w)
        deadline = now + max(req.max_wait_ms, 0) / 1000
        try:
            with trio.move_on_at(deadline) as poll:
                while wait != 0:
                    if wait is not None:  # only a HW to give: records soon carry it, or time does
                        poll.deadline = min(poll.deadline, trio.current_time() + wait / 1000)
                    await w.wake.wait()
                    w.reset()
                    wait = _news(served, req)
        finally:
            for r in parked:
                r.waiters.discard(w)
    max_bytes = min(max(req.max_bytes, 1), ctx.max_fetch_bytes)  # bounded, whatever was asked
    used = 0
    out = []
    for i, (p, s) in enumerate(zip(req.partitions, served)):
        known = req.known_hws[i] if i < len(req.known_hws) else -1
        if not isinstance(s, tuple):
            out.append(s)
            continue
        r, st = s
        if r.leader_state is not st or r.closed:
            out.append(fetched(p, Error(ErrorCode.NotLeaderForPartition)))
            continue
        if not has_news(p.fetch_offset, known, st.log_end, r.hw):
            continue  # nothing for the follower: left out of the answer (the follower waits on)
        records = b""
        budget = byte_budget(max_bytes, used)
        if p.fetch_offset < st.log_end and budget > 0:
            try:
                records = r.storage.read(p.fetch_offset, max(budget, 1), st.log_end).read_bytes()
            except serr.StorageError as e:  # this partition's log only: the others are answered
                log.error("%s-%s: serving a follower failed: %s", r.topic, r.partition, e)
                out.append(fetched(p, Error(ErrorCode.StorageError), r.leader_epoch))
                continue
            used += len(records)
            if trace.enabled():
                trace.mark(f"leader.serve_{req.follower_id}", p.topic, p.partition, p.fetch_offset, st.log_end - 1)
        out.append(fetched(p, OK, r.leader_epoch, r.hw, st.log_end, r.log_start_offset, records))
    return ia.FetchReplicasResponse(OK, out)


async def serve_fetch_replicas(ctx, conn, header, req: ia.FetchReplicasRequest) -> None:
    """The private port's FetchReplicas handler: ``handle_fetch_replicas``, its answer sent as
    pieces (``ia.encode_fetch_replicas_response_parts``), the records as read, not copied into
    one buffer."""
    resp = await handle_fetch_replicas(ctx, conn, header, req)
    await conn.send_parts(ia.encode_fetch_replicas_response_parts(
        resp, header.correlation_id, header.api_version))


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


class LeaderFetcher:
    """Every partition this SPU follows from one leader, fetched together: one task, one
    connection, one ``FetchReplicasRequest`` per round (fluvial.replication.fetch).

    ``add`` and ``remove`` change the set at any time: a partition added while a fetch is in
    flight cancels it, so a new leadership is reconciled and fetched at once, not after the long
    poll. A partition whose answer says "retry" (another epoch, not the leader yet, a storage
    error) sits out with a growing delay, while the others go on."""

    def __init__(self, leader: int):
        self.leader = leader
        self.following: dict[tuple[str, int], Following] = {}
        self.unreconciled: set[tuple[str, int]] = set()
        self.backoff: dict[tuple[str, int], tuple[float, float]] = {}  # key -> (until, delay)
        self.changed = trio.Event()
        self.in_flight: trio.CancelScope | None = None
        self.rounds = 0  # fetch requests sent (tests and benches count them)
        self._start = 0  # rotates which partition comes first (fetch.build_request)

    def add(self, f: Following) -> None:
        key = (f.r.topic, f.r.partition)
        self.following[key] = f
        self.unreconciled.add(key)
        self.backoff.pop(key, None)
        self._changed()

    def remove(self, key: tuple[str, int]) -> None:
        if self.following.pop(key, None) is not None:
            self.unreconciled.discard(key)
            self.backoff.pop(key, None)

    def forget(self, f: Following) -> None:
        """Stop following ``f`` (it no longer holds), but only ``f``: an answer to a fetch sent
        for an older epoch must not unfollow the ``Following`` that replaced it meanwhile (the
        same leader at a new epoch, as when the replica set grows)."""
        key = (f.r.topic, f.r.partition)
        if self.following.get(key) is f:
            self.remove(key)

    def _changed(self) -> None:
        self.changed.set()
        if self.in_flight is not None:
            self.in_flight.cancel()

    def prune(self) -> bool:
        """Forget the partitions no longer followed from this leader; True while any remain."""
        for key, f in list(self.following.items()):
            if not f.holds():
                self.remove(key)
        return bool(self.following)

    def recheck(self, key: tuple[str, int]) -> None:
        """Cut a corrupt tail and reconcile ``key`` again before its next fetch (the SPU found a
        corrupt batch in its log)."""
        if key in self.following:
            self.unreconciled.add(key)
            self.backoff.pop(key, None)
            self._changed()

    def retry_later(self, key: tuple[str, int], why: str, now: float) -> None:
        if key not in self.following:
            return
        _, delay = self.backoff.get(key, (0.0, 0.025))
        delay = min(delay * 2, 1.0)
        self.backoff[key] = (now + delay, delay)
        log.info("%s-%s: following %d: %s", *key, self.leader, why)

    def ready(self, now: float) -> list[Following]:
        return [f for key, f in self.following.items()
                if key not in self.unreconciled and self.backoff.get(key, (0.0, 0.0))[0] <= now]

    def next_start(self) -> int:
        self._start += 1
        return self._start


async def _flush_followed(replicas: list[PartitionReplica]) -> dict[tuple[str, int], Exception]:
    """fsync every replica in ``replicas``, all in one place (one worker-thread hop for all, or
    on this thread: ``flush_placed``); the errors by key."""
    return await flush_placed(replicas[0].flushes, functools.partial(_flush_all, replicas),
                              lambda: sum(r.storage.unflushed_bytes for r in replicas))


def _flush_all(replicas: list[PartitionReplica]) -> dict[tuple[str, int], Exception]:
    """fsync every replica in ``replicas``; the errors by key."""
    errors = {}
    for r in replicas:
        try:
            r.storage.flush()
        except Exception as e:  # noqa: BLE001 - one replica's disk error is that replica's
            errors[(r.topic, r.partition)] = e
    return errors


async def _reconcile_pending(fetcher: LeaderFetcher, conn, spu_id: int) -> None:
    """KIP-279 for every partition that joined (or whose leader answered OffsetOutOfRange),
    concurrently: a failover hands this SPU hundreds of new leaderships at once."""
    limiter = trio.CapacityLimiter(64)

    async def one(key, f: Following) -> None:
        async with limiter:
            try:
                f.check()
                _cut_corrupt_tail(f.r)
                await _reconcile(f, conn, spu_id)
            except _Superseded:
                fetcher.forget(f)
                return
            except (_Retry, OSError, trio.TooSlowError, serr.StorageError) as e:
                fetcher.retry_later(key, f"reconcile: {e}", trio.current_time())
                return
            if fetcher.following.get(key) is f:
                fetcher.unreconciled.discard(key)

    pending = [(key, fetcher.following[key]) for key in list(fetcher.unreconciled)
               if key in fetcher.following]
    async with trio.open_nursery() as n:
        for key, f in pending:
            n.start_soon(one, key, f)


async def _fetch_rounds(fetcher: LeaderFetcher, conn, spu_id: int) -> None:
    """One connection's worth of following: reconcile what joined, then rounds of fsync ->
    fetch every partition -> append what came -> fsync -> set the HWs. Every partition's log is
    touched only while it is still followed from this leader at the epoch asked (``Following``),
    checked after every await."""
    while fetcher.prune():
        fetcher.changed = trio.Event()
        now = trio.current_time()
        # a new leadership's truncation first; those waiting out a backoff are skipped
        if any(k not in fetcher.backoff or fetcher.backoff[k][0] <= now for k in fetcher.unreconciled):
            await _reconcile_pending(fetcher, conn, spu_id)
        dirty = [f.r for f in fetcher.following.values() if f.r.storage.needs_flush]
        if dirty:
            for key, e in (await _flush_followed(dirty)).items():
                fetcher.retry_later(key, f"flush failed: {e}", trio.current_time())
            for r in dirty:
                r.notify()
        fetcher.prune()
        ready = fetcher.ready(trio.current_time())  # (a corrupt tail is cut when reconciling: ``recheck``)
        if not ready:
            waits = [until for until, _ in fetcher.backoff.values()]
            with trio.move_on_after(max(min(waits, default=1.0) - trio.current_time(), 0.01)):
                await fetcher.changed.wait()
            continue
        sent = {(f.r.topic, f.r.partition): (f, f.r.storage.durable_leo) for f in ready}
        req = build_request(spu_id, [Followed(f.r.topic, f.r.partition, f.epoch, off, f.r.storage.hw)
                                     for f, off in sent.values()], fetcher.next_start())
        with trio.CancelScope() as scope:
            fetcher.in_flight = scope
            try:
                fetcher.rounds += 1
                resp = await conn.call(req, timeout=FETCH_MAX_WAIT_MS / 1000 + 10)
            finally:
                fetcher.in_flight = None
        if scope.cancelled_caught:
            continue  # the set changed under the poll: ask again with the new one
        if not resp.error_code.ok:
            raise _Retry(resp.error_code.message)
        _apply_answers(fetcher, sent, resp)
        appended = [f for f, _ in sent.values() if f.holds() and f.r.storage.needs_flush]
        if appended:
            for key, e in (await _flush_followed([f.r for f in appended])).items():
                fetcher.retry_later(key, f"flush failed: {e}", trio.current_time())
            for f in appended:
                f.r.notify()  # its durable LEO moved (reported to the SC)
                if trace.enabled():
                    trace.mark("follower.durable", f.r.topic, f.r.partition,
                               sent[(f.r.topic, f.r.partition)][1], f.r.storage.durable_leo - 1)
        for a in resp.partitions:
            entry = sent.get((a.topic, a.partition))
            if entry is None or not entry[0].holds() or not a.error_code.ok or a.leader_epoch != entry[0].epoch:
                continue
            r = entry[0].r
            hw = min(a.hw, r.storage.durable_leo)
            if hw > r.storage.hw:
                r.storage.set_hw(hw)
                r.notify()


def _apply_answers(fetcher: LeaderFetcher, sent, resp: ia.FetchReplicasResponse) -> None:
    """Each partition's answer, as ``fetch.follower_step`` decides, to a log still followed at
    the epoch asked (no await in here: one check per partition covers its changes)."""
    now = trio.current_time()
    for a in resp.partitions:
        key = (a.topic, a.partition)
        entry = sent.get(key)
        if entry is None:
            continue
        f, fetch_offset = entry
        if not f.holds():
            fetcher.forget(f)
            continue
        r, storage = f.r, f.r.storage
        step = follower_step(f.epoch, fetch_offset, a)
        if step.action is Action.RETRY:
            fetcher.retry_later(key, step.reason, now)
        elif step.action is Action.RECONCILE:  # this log holds records the leader never wrote
            fetcher.unreconciled.add(key)
        elif step.action is Action.START_AT:
            log.warning("%s-%s: the leader's log starts at %d, past this log's end %d: starting over there",
                        r.topic, r.partition, step.offset, fetch_offset)
            try:
                storage.truncate_fully_and_start_at(step.offset)
            except serr.StorageError as e:
                fetcher.retry_later(key, f"restart at {step.offset}: {e}", now)
            r.notify()
        elif step.records:
            try:
                storage.append_replica(step.records)
            except serr.StorageError as e:
                fetcher.retry_later(key, f"append: {e}", now)
                continue
            trace.mark("follower.appended", r.topic, r.partition, fetch_offset, storage.leo - 1)
            fetcher.backoff.pop(key, None)
            r.notify()
        else:
            fetcher.backoff.pop(key, None)


async def run_fetcher(ctx, fetcher: LeaderFetcher) -> None:
    """Fetch for ``fetcher``'s partitions from its leader until none is followed from it any
    more; reconnects (with backoff) whatever breaks a connection, and reconciles every partition
    again on the new one."""
    delay = 0.05
    while fetcher.prune():
        peer = ctx.peers.get(fetcher.leader)
        try:
            if peer is None:
                raise _Retry(f"no address for leader {fetcher.leader}")
            async with ctx.connect_member(peer.host, peer.port) as conn:
                delay = 0.05
                await _fetch_rounds(fetcher, conn, ctx.spu_id)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, _Retry, Exception) as e:  # noqa: BLE001
            if not fetcher.prune():
                return
            log.info("following %d: %s", fetcher.leader, e)
        fetcher.unreconciled = set(fetcher.following)
        with trio.move_on_after(delay):
            await fetcher.changed.wait()
        fetcher.changed = trio.Event()
        delay = min(delay * 2, 1.0)


async def run_follower(ctx, r: PartitionReplica) -> None:
    """Follow ``r``'s current leader on its own until the assignment changes (a fetcher of one
    partition; the SPU shares one ``LeaderFetcher`` per leader instead)."""
    fetcher = LeaderFetcher(r.assignment.leader)
    fetcher.add(Following(r, r.assignment.leader, r.assignment.leader_epoch))
    await run_fetcher(ctx, fetcher)
