"""Replication: end to end in one process (RF=3, leader failover, rejoin, epochs), then the
follower task and the leader's fetch handler driven directly against a scripted peer."""

from __future__ import annotations

from contextlib import asynccontextmanager

import trio
import trio.testing

from fluvial.errors import OK, Error, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.batch import set_leader_epoch
from fluvial.protocol.record import decode_record_set, encode_batch
from fluvial.spu.partition import PartitionReplica
from fluvial.spu.replication import Following, LeaderFetcher, handle_fetch_replicas, run_fetcher, run_follower
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.replica import Replica
from harness.cluster import open_test_cluster


async def sc_call(cluster, *requests):
    """Send ``requests`` to the SC one after the other; returns the last answer."""
    host, port = cluster.endpoint.split(":")
    async with open_connection(host, int(port)) as sc:
        await sc.handshake()
        for req in requests:
            resp = await sc.call(req)
        return resp


async def partition(cluster, name):
    parts = await sc_call(cluster, sa.ObjectApiListRequest.of(so.PartitionSpec))
    return next(m for m in parts.items if m.name == name)


async def wait_for(pred, what, timeout=15):
    with trio.fail_after(timeout):
        while not (res := await pred()):
            await trio.sleep(0.05)
    return res


async def produce_committed(cluster, leader, topic, values, timeout_ms=5000):
    port = cluster.spus[leader].config.public_port
    async with open_connection("127.0.0.1", port) as spu:
        await spu.handshake()
        req = api.ProduceRequest(None, api.Isolation.ReadCommitted, timeout_ms, [api.TopicProduceData(
            topic, [api.PartitionProduceData(0, encode_batch([v])) for v in values])])
        resp = await spu.call(req, timeout=30)
        return resp.responses[0].partitions


def replica_log(cluster, spu_id, topic):
    from fluvial.storage.config import ReplicaConfig
    from fluvial.storage.replica import Replica

    r = Replica.open(cluster.base / f"spu-{spu_id}", topic, 0, ReplicaConfig())
    try:
        data = r.read(0, 1 << 30, r.leo).read_bytes() if r.leo else b""
        return [(x.offset, x.value) for x in decode_record_set(data)], [tuple(e) for e in r.epochs]
    finally:
        r.close()


async def test_failover_elects_an_in_sync_replica_and_the_old_leader_rejoins(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=3, heartbeat_timeout=2) as cluster:
            st = await sc_call(cluster, sa.ObjectApiCreateRequest.of("rep", so.TopicSpec.computed(1, 3)))
            assert st.error_code.ok
            p = await partition(cluster, "rep-0")
            first = p.spec.leader
            res = await produce_committed(cluster, first, "rep", [b"a", b"b", b"c"])
            assert [(r.error_code.ok, r.base_offset) for r in res] == [(True, 0), (True, 1), (True, 2)]

            await cluster.stop_spu(first)

            async def new_leader():
                q = await partition(cluster, "rep-0")
                return q if q.spec.leader != first and q.status.resolution == so.PartitionResolution.Online else None

            q = await wait_for(new_leader, "a new leader")
            second = q.spec.leader
            assert second in p.spec.replicas
            res = await produce_committed(cluster, second, "rep", [b"d"])
            assert res[0].error_code.ok and res[0].base_offset == 3

            # the old leader refuses produce: it is no longer the leader once it is back
            await cluster.start_spu(first)

            async def caught_up():
                q = await partition(cluster, "rep-0")
                return q if q.status.lsr == 2 and q.status.leader.leo == 4 else None

            await wait_for(caught_up, "every replica caught up")
            res = await produce_committed(cluster, first, "rep", [b"x"])
            assert res[0].error_code.code == ErrorCode.NotLeaderForPartition

        logs = [replica_log(cluster, s, "rep") for s in p.spec.replicas]
        records = [lg for lg, _ in logs]
        assert all(r == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")] for r in records)
        assert all(epochs[-1][0] == 2 for _, epochs in logs)  # the failover bumped the epoch


async def test_a_committed_produce_below_min_isr_is_refused_until_the_followers_return(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=3, heartbeat_timeout=2) as cluster:
            st = await sc_call(cluster, sa.ObjectApiCreateRequest.of("minisr", so.TopicSpec.computed(1, 3)))
            assert st.error_code.ok  # replication factor 3: min ISR 2
            p = await partition(cluster, "minisr-0")
            leader = p.spec.leader
            followers = [s for s in p.spec.replicas if s != leader]
            for f in followers:
                await cluster.stop_spu(f)

            res = await produce_committed(cluster, leader, "minisr", [b"never"], timeout_ms=1500)
            assert res[0].error_code.code == ErrorCode.RequestTimedOut  # NOT_ENOUGH_REPLICAS
            for f in followers:
                await cluster.start_spu(f)

            async def accepted():  # the client retries: the ISR the leader and SC agree on grows back
                res = await produce_committed(cluster, leader, "minisr", [b"now"])
                return res[0] if res[0].error_code.ok else None

            assert (await wait_for(accepted, "min ISR again")).base_offset == 0
        records, _ = replica_log(cluster, leader, "minisr")
        assert records == [(0, b"now")]  # the refused record was never written


async def test_unclean_election_only_for_topics_that_opt_in(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=2, heartbeat_timeout=2) as cluster:
            host, port = cluster.endpoint.split(":")
            async with open_connection(host, int(port)) as sc:
                await sc.handshake()
                for name, unclean in (("clean", False), ("unclean", True)):
                    spec = so.TopicSpec(so.AssignedReplicas([so.PartitionMap(0, [5001, 5002], None)]))
                    assert (await sc.call(sa.ObjectApiCreateRequest.of(name, spec))).error_code.ok
                    st = await sc.call(sa.ObjectApiUpdateRequest.of(
                        so.TopicSpec, name, so.SetReplicationConfig(1, unclean)))
                    assert st.error_code.ok
            for name in ("clean", "unclean"):
                assert (await produce_committed(cluster, 5001, name, [b"1"]))[0].error_code.ok
            await cluster.stop_spu(5002)  # the follower goes: ISR {5001}

            # the SC fails 5002 and stops listing it as a live peer: the leader drops it from
            # the ISR at once, so a committed produce succeeds with the leader alone (min_isr 1)
            for name in ("clean", "unclean"):
                assert (await produce_committed(cluster, 5001, name, [b"2"]))[0].error_code.ok
            await cluster.stop_spu(5001)  # the only in-sync replica goes
            await cluster.start_spu(5002)  # an out-of-sync replica comes back

            async def unclean_elected():
                q = await partition(cluster, "unclean-0")
                return q if q.spec.leader == 5002 else None

            await wait_for(unclean_elected, "the unclean election")
            clean = await partition(cluster, "clean-0")
            assert clean.spec.leader == 5001
            assert clean.status.resolution == so.PartitionResolution.LeaderOffline


# ------------------------------------- the follower task against a scripted leader (no sockets)

LEADER, FOLLOWER = 1, 2


def assignment(leader=LEADER, epoch=1, replicas=(LEADER, FOLLOWER)):
    return ia.ReplicaAssignment("t", 0, leader, epoch, list(replicas), list(replicas),
                                ia.ReplicaSettings())


def batch(value, epoch, base_offset):
    """One batch as a leader of ``epoch`` stored it at ``base_offset``."""
    b = bytearray(encode_batch([value], base_offset=base_offset))
    set_leader_epoch(b, 0, epoch)
    return bytes(b)


def open_replica(path, a, spu_id=FOLLOWER, config=None):
    storage = Replica.open(path, a.topic, a.partition, config or ReplicaConfig())
    return PartitionReplica(storage, a, spu_id)


def values(r: PartitionReplica) -> list[tuple[int, bytes]]:
    s = r.storage
    data = s.read(s.log_start_offset, 1 << 30, s.leo).read_bytes() if s.leo > s.log_start_offset else b""
    return [(x.offset, x.value) for x in decode_record_set(data)]


class ScriptedLeader:
    """The slice of SpuContext ``run_follower`` uses, connected to a leader played by
    ``answer(request) -> response`` (an async function). ``requests`` lists what was asked."""

    def __init__(self, r: PartitionReplica, answer):
        self.spu_id = r.spu_id
        self.replicas = {(r.topic, r.partition): r}
        self.peers = {LEADER: ia.SpuAddress(LEADER, "127.0.0.1", 1)}
        self.answer = answer
        self.requests: list = []

    @asynccontextmanager
    async def connect_member(self, host, port):
        yield self

    async def call(self, req, timeout=None):
        if isinstance(req, ia.FetchReplicasRequest):  # one partition followed: answer it alone
            assert len(req.partitions) == 1
            self.requests.append(req.partitions[0])
            return ia.FetchReplicasResponse(OK, [await self.answer(req.partitions[0])])
        self.requests.append(req)
        return await self.answer(req)

    def fetches(self) -> list[int]:
        return [q.fetch_offset for q in self.requests if isinstance(q, ia.FetchPartition)]


def fetched(epoch, records=b"", hw=0, leo=0, log_start=0, error=OK):
    return ia.FetchedPartition("t", 0, error, epoch, hw, leo, log_start, records)


NOT_LEADER = fetched(-1, error=Error(ErrorCode.NotLeaderForPartition))


async def test_a_fetch_answered_after_the_spu_became_leader_touches_nothing(tmp_path):
    """The answer was already delivered when the new assignment landed: no append, no HW."""
    r = open_replica(tmp_path, assignment())

    async def answer(req):
        r.reassign(assignment(leader=FOLLOWER, epoch=2))  # this SPU leads epoch 2 now
        return fetched(1, batch(b"old leader", 1, 0), hw=1, leo=1)

    with trio.fail_after(10):
        await run_follower(ScriptedLeader(r, answer), r)
    assert r.is_leader and r.storage.leo == 0 and r.storage.hw == 0
    assert r.storage.epochs == [(2, 0)]
    r.storage.close()


async def test_a_reconcile_answered_after_the_epoch_moved_does_not_truncate(tmp_path):
    r = open_replica(tmp_path, assignment(epoch=2))
    r.storage.append_replica(batch(b"a", 1, 0) + batch(b"b", 1, 1))

    async def answer(req):
        assert isinstance(req, ia.OffsetForLeaderEpochRequest)
        r.reassign(assignment(leader=3, epoch=3, replicas=(LEADER, FOLLOWER, 3)))  # another leader now
        return ia.OffsetForLeaderEpochResponse(OK, 1, 0)  # the deposed leader says: cut to 0

    ctx = ScriptedLeader(r, answer)
    with trio.fail_after(10):
        await run_follower(ctx, r)
    assert values(r) == [(0, b"a"), (1, b"b")]
    r.storage.close()


async def test_a_fetch_answered_as_the_replica_set_grows_keeps_the_partition_followed(tmp_path):
    """The leader stays, the epoch moves (a replica joined) while a fetch is out, and the SPU
    hands the fetcher the new ``Following`` (SpuContext._follow). The old fetch's answer,
    delivered anyway, is dropped, and the partition goes on being fetched at the new epoch."""
    r = open_replica(tmp_path, assignment())
    fetcher = LeaderFetcher(LEADER)
    fetcher.add(Following(r, LEADER, 1))

    async def answer(req):
        if isinstance(req, ia.OffsetForLeaderEpochRequest):
            return ia.OffsetForLeaderEpochResponse(OK, req.requested_epoch, r.storage.leo)
        if req.leader_epoch == 1:
            r.reassign(assignment(epoch=2, replicas=(LEADER, FOLLOWER, 3)))
            fetcher.add(Following(r, LEADER, 2))
            return fetched(1, batch(b"old epoch", 1, 0), hw=1, leo=1)
        if r.storage.leo == 0:
            return fetched(2, batch(b"new epoch", 2, 0), hw=1, leo=1)
        r.reassign(assignment(leader=FOLLOWER, epoch=3))  # done: this SPU leads now
        return NOT_LEADER

    ctx = ScriptedLeader(r, answer)
    with trio.fail_after(10):
        await run_fetcher(ctx, fetcher)
    assert [q.leader_epoch for q in ctx.requests if isinstance(q, ia.FetchPartition)][:2] == [1, 2]
    assert values(r) == [(0, b"new epoch")]
    r.storage.close()


async def test_a_fetch_answer_of_another_epoch_is_not_appended(tmp_path):
    r = open_replica(tmp_path, assignment(epoch=4))
    leos = []

    async def answer(req):
        leos.append(r.storage.leo)
        if len(leos) == 1:  # an answer for epoch 3, e.g. from a stale leader process
            return fetched(3, batch(b"stale", 3, 0), hw=1, leo=1)
        r.reassign(assignment(leader=3, epoch=5, replicas=(LEADER, FOLLOWER, 3)))
        return NOT_LEADER

    with trio.fail_after(10):
        await run_follower(ScriptedLeader(r, answer), r)
    assert leos == [0, 0] and r.storage.leo == 0
    r.storage.close()


async def test_a_follower_behind_the_leaders_log_start_restarts_there(tmp_path):
    r = open_replica(tmp_path, assignment())
    r.storage.append_replica(batch(b"old", 1, 0))

    async def answer(req):
        if len(ctx.requests) > 5:  # retrying for ever
            r.reassign(assignment(leader=3, epoch=2, replicas=(LEADER, FOLLOWER, 3)))
            return NOT_LEADER
        if isinstance(req, ia.OffsetForLeaderEpochRequest):
            return ia.OffsetForLeaderEpochResponse(OK, 1, 12)  # the leader's log: epoch 1, 10..11
        if req.fetch_offset < 10:
            return fetched(1, hw=12, leo=12, log_start=10,
                           error=Error(ErrorCode.OffsetEvicted, (req.fetch_offset, 10)))
        if req.fetch_offset == 10:
            return fetched(1, batch(b"ten", 1, 10), hw=12, leo=12, log_start=10)
        r.reassign(assignment(leader=3, epoch=2, replicas=(LEADER, FOLLOWER, 3)))  # done: stop
        return NOT_LEADER

    ctx = ScriptedLeader(r, answer)
    with trio.fail_after(10):
        await run_follower(ctx, r)
    assert ctx.fetches()[:3] == [1, 10, 11]
    assert (r.storage.log_start_offset, r.storage.leo) == (10, 11)
    assert values(r) == [(10, b"ten")]
    r.storage.close()


async def test_a_follower_with_a_corrupt_batch_truncates_there_and_refetches(tmp_path):
    config = ReplicaConfig(segment_max_bytes=1)  # one batch per segment: all but the last sealed
    leader = Replica.open(tmp_path / "leader", "t", 0, ReplicaConfig())
    for v in (b"a", b"b", b"c", b"d"):
        leader.append(encode_batch([v]), leader_epoch=1)
    r = open_replica(tmp_path / "follower", assignment(), config=config)
    r.storage.append_replica(leader.read(0, 1 << 30, leader.leo).read_bytes())
    r.storage.flush()
    seg = r.storage.segments[1]  # offset 1, sealed
    with open(seg.path, "r+b") as f:  # flip the batch's last byte: its CRC no longer matches
        f.seek(seg.size_bytes - 1)
        last = f.read(1)
        f.seek(seg.size_bytes - 1)
        f.write(bytes([last[0] ^ 0xFF]))
    assert r.storage.verify_sealed(1 << 20) == 1

    async def answer(req):
        if isinstance(req, ia.OffsetForLeaderEpochRequest):
            return ia.OffsetForLeaderEpochResponse(OK, *leader.end_offset_for_epoch(req.requested_epoch))
        if req.fetch_offset < leader.leo:
            data = leader.read(req.fetch_offset, 1 << 30, leader.leo).read_bytes()
            return fetched(1, data, hw=leader.leo, leo=leader.leo)
        r.reassign(assignment(leader=3, epoch=2, replicas=(LEADER, FOLLOWER, 3)))  # done: stop
        return NOT_LEADER

    ctx = ScriptedLeader(r, answer)
    with trio.fail_after(10):
        await run_follower(ctx, r)
    assert ctx.fetches()[0] == 1
    assert r.storage.corrupt_offset is None
    assert values(r) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    r.storage.close()
    leader.close()


class OneLeader:
    """The slice of SpuContext ``handle_fetch_replicas`` uses."""

    def __init__(self, r: PartitionReplica, max_fetch_bytes: int):
        self.spu_id = r.spu_id
        self.replicas = {(r.topic, r.partition): r}
        self.max_fetch_bytes = max_fetch_bytes


async def test_a_replica_fetch_is_capped_at_the_spus_max_fetch_bytes(tmp_path):
    r = open_replica(tmp_path, assignment(), spu_id=LEADER)
    for v in range(20):
        r.append_nowait(encode_batch([b"x" * 100]))
    r.storage.flush()
    one = len(encode_batch([b"x" * 100]))
    req = ia.FetchReplicasRequest(FOLLOWER, [ia.FetchPartition("t", 0, 1, 0)], [0], 1 << 30, 0)
    resp = await handle_fetch_replicas(OneLeader(r, max_fetch_bytes=3 * one), None, None, req)
    assert resp.error_code.ok
    assert resp.partitions[0].error_code.ok
    assert 0 < len(resp.partitions[0].records) <= 3 * one
    r.storage.close()


class Leader:
    """The slice of SpuContext ``handle_fetch_replicas`` uses, leading several partitions."""

    def __init__(self, replicas: list[PartitionReplica], max_fetch_bytes: int = 1 << 20):
        self.spu_id = LEADER
        self.replicas = {(r.topic, r.partition): r for r in replicas}
        self.max_fetch_bytes = max_fetch_bytes


def leader_of(path, partition: int, epoch: int) -> PartitionReplica:
    a = ia.ReplicaAssignment("t", partition, LEADER, epoch, [LEADER, FOLLOWER], [LEADER, FOLLOWER],
                             ia.ReplicaSettings())
    r = PartitionReplica(Replica.open(path, "t", partition, ReplicaConfig()), a, LEADER)
    r.append_nowait(encode_batch([b"p%d" % partition]))
    r.storage.flush()
    return r


async def test_a_batched_fetch_answers_each_partition_on_its_own_epoch(tmp_path):
    """One request, three partitions: the one asked at the leader's epoch gets its records, the
    one asked at a stale epoch and the one this SPU does not have get NotLeader and nothing."""
    rs = [leader_of(tmp_path, 0, 3), leader_of(tmp_path, 1, 3)]
    req = ia.FetchReplicasRequest(FOLLOWER, [ia.FetchPartition("t", 0, 3, 0), ia.FetchPartition("t", 1, 2, 0),
                                             ia.FetchPartition("t", 7, 3, 0)], [0, 0, 0], 1 << 20, 0)
    with trio.fail_after(10):
        resp = await handle_fetch_replicas(Leader(rs), None, None, req)
    got = {p.partition: (p.error_code.code, p.records != b"") for p in resp.partitions}
    assert got == {0: (ErrorCode.None_, True), 1: (ErrorCode.NotLeaderForPartition, False),
                   7: (ErrorCode.NotLeaderForPartition, False)}
    for r in rs:
        r.storage.close()


async def test_a_batched_fetch_waits_until_one_partition_has_records(tmp_path):
    """Nothing new on either partition: the poll parks on both and returns as soon as one of them
    gets a record, with that record, well before ``max_wait_ms``."""
    rs = [leader_of(tmp_path, 0, 1), leader_of(tmp_path, 1, 1)]
    req = ia.FetchReplicasRequest(FOLLOWER, [ia.FetchPartition("t", 0, 1, 1), ia.FetchPartition("t", 1, 1, 1)],
                                  [1, 1], 1 << 20, 60_000)
    answered = trio.Event()
    out = []

    async def poll():
        out.append(await handle_fetch_replicas(Leader(rs), None, None, req))
        answered.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(poll)
            await trio.testing.wait_all_tasks_blocked()
            assert not answered.is_set()  # parked: nothing to say yet
            rs[1].append_nowait(encode_batch([b"late"]))
            await answered.wait()
    got = {p.partition: [x.value for x in decode_record_set(p.records)] for p in out[0].partitions}
    assert got == {1: [b"late"]}  # partition 0 has nothing new: left out
    for r in rs:
        r.storage.close()


async def test_a_hostile_batched_fetch_is_answered_partition_by_partition(tmp_path):
    """A negative offset, an offset past the log, no known HWs at all: each bad partition gets
    its own error, the good one its records, and nothing raises."""
    rs = [leader_of(tmp_path, 0, 1), leader_of(tmp_path, 1, 1), leader_of(tmp_path, 2, 1)]
    req = ia.FetchReplicasRequest(FOLLOWER, [ia.FetchPartition("t", 0, 1, -5), ia.FetchPartition("t", 1, 1, 99),
                                             ia.FetchPartition("t", 2, 1, 0)], [], 1 << 20, 0)
    with trio.fail_after(10):
        resp = await handle_fetch_replicas(Leader(rs), None, None, req)
    got = {p.partition: (p.error_code.code, len(decode_record_set(p.records))) for p in resp.partitions}
    assert got == {0: (ErrorCode.OffsetOutOfRange, 0), 1: (ErrorCode.OffsetOutOfRange, 0), 2: (ErrorCode.None_, 1)}
    for r in rs:
        r.storage.close()


async def test_a_poll_with_only_a_hw_to_give_waits_a_little_for_records_to_carry_it(tmp_path, mock_clock):
    """The follower's fetch moves the leader's HW past what the follower knows: no records yet,
    so the poll is held (``HW_LINGER_MS``, virtual time here) for records to carry the HW; a
    record arriving meanwhile is answered at once, with the HW, and without one the HW alone is
    answered when the linger ends, long before ``max_wait_ms``."""
    from fluvial.replication.fetch import HW_LINGER_MS

    r = leader_of(tmp_path, 0, 1)  # offset 0 written; ISR {leader, follower}: the HW waits for it

    async def poll(out, answered):
        req = ia.FetchReplicasRequest(FOLLOWER, [ia.FetchPartition("t", 0, 1, r.storage.leo)], [r.hw], 1 << 20, 60_000)
        out.append(await handle_fetch_replicas(Leader([r]), None, None, req))
        answered.set()

    async with trio.open_nursery() as n:
        n.start_soon(r.run_flusher)
        await r.wait_durable(r.storage.leo)
        assert r.hw == 0
        # 1. a record comes during the linger: answered at once, records and HW together
        out, answered = [], trio.Event()
        n.start_soon(poll, out, answered)
        await trio.testing.wait_all_tasks_blocked()
        assert r.hw == 1 and not answered.is_set()  # the fetch moved the HW, and is held
        r.append_nowait(encode_batch([b"next"]))
        await trio.testing.wait_all_tasks_blocked()
        assert answered.is_set()  # no virtual time passed: answered at once
        (p,) = out[0].partitions
        assert (p.hw, [x.value for x in decode_record_set(p.records)]) == (1, [b"next"])
        # 2. the follower has it (follower LEO 2 moves the HW to 2): nothing comes, the HW
        # alone is answered when the linger ends
        await r.wait_durable(r.storage.leo)
        out, answered = [], trio.Event()
        n.start_soon(poll, out, answered)
        await trio.testing.wait_all_tasks_blocked()
        assert r.hw == 2 and not answered.is_set()
        mock_clock.jump(HW_LINGER_MS / 1000 / 2)
        await trio.testing.wait_all_tasks_blocked()
        assert not answered.is_set()
        mock_clock.jump(HW_LINGER_MS / 1000)
        await trio.testing.wait_all_tasks_blocked()
        assert answered.is_set()  # the linger is over: the HW alone, 59 s before max_wait_ms
        (p,) = out[0].partitions
        assert (p.hw, p.records) == (2, b"")
        n.cancel_scope.cancel()
    r.storage.close()
