"""Replication end to end in one process: RF=3, leader failover, rejoin, epochs."""

from __future__ import annotations

import trio

from fluvial.errors import ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.record import decode_record_set, encode_batch
from fluvial.testing.cluster import open_test_cluster


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


async def test_committed_produce_times_out_below_min_isr(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=3, heartbeat_timeout=2) as cluster:
            st = await sc_call(cluster, sa.ObjectApiCreateRequest.of("minisr", so.TopicSpec.computed(1, 3)))
            assert st.error_code.ok
            p = await partition(cluster, "minisr-0")
            leader = p.spec.leader
            followers = [s for s in p.spec.replicas if s != leader]
            for f in followers:
                await cluster.stop_spu(f)

            res = await produce_committed(cluster, leader, "minisr", [b"never"], timeout_ms=1500)
            assert res[0].error_code.code == ErrorCode.RequestTimedOut
            for f in followers:
                await cluster.start_spu(f)

            async def healed():
                q = await partition(cluster, "minisr-0")
                return q.status.lsr == 2 or None

            await wait_for(healed, "followers back")
            res = await produce_committed(cluster, leader, "minisr", [b"now"])
            assert res[0].error_code.ok


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
