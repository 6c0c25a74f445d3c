"""Several SCs over one etcd, in-process (fluvial.sc.ha): writes through either SC, the
revision guard, the controller's fencing, epochs across failovers, an etcd member lost."""

from __future__ import annotations

import trio

from fluvial.errors import ErrorCode
from fluvial.protocol import sc_objects as so
from fluvial.protocol import sc_api as sa
from fluvial.sc.election import campaign_result, campaign_txn, election_key
from fluvial.sc.etcd import EtcdBackend, EtcdClient, MetadataConflict
from fluvial.sc.state import META_READERS
from harness.client import wait_until
from harness.ha import ThreadedProxies, open_ha_cluster, unique_prefix


def _topic(name: str):
    from fluvial.metadata.store import StoredObject

    return StoredObject(name, so.TopicSpec.computed(1, 1), so.TopicStatus())


def _partition_epoch(etcd, prefix: str, name: str) -> int:
    """The leader epoch saved in etcd for partition ``name``."""
    b = EtcdBackend(EtcdClient(etcd.endpoints), prefix)
    b.open()
    objs = {o.name: o for o in b.load("Partition", so.PartitionSpec, so.PartitionStatus,
                                        META_READERS["Partition"])}
    return objs[name].meta.epoch


async def test_topic_created_through_either_sc_is_served_by_both(tmp_path, etcd):
    async with open_ha_cluster(tmp_path, etcd.url, scs=2, spus=1) as cluster:
        ctl = cluster.controller()
        other = 1 - ctl
        await cluster.admin(other).create_topic("via-standby", 1, 1)
        await cluster.admin(ctl).create_topic("via-controller", 1, 1)
        for i in (0, 1):
            for t in ("via-standby", "via-controller"):
                parts = await cluster.admin(i).partitions(t)
                assert parts[0].spec.leader == 5001


def test_two_writers_of_one_new_key_exactly_one_wins(etcd):
    """The revision guard itself: two SCs that both saw no topic 'x' save it; one fails."""
    prefix = unique_prefix("cas")
    a, b = (EtcdBackend(EtcdClient(etcd.endpoints), prefix) for _ in range(2))
    for backend in (a, b):
        backend.open()
        backend.load("Topic", so.TopicSpec, so.TopicStatus)
    a.save({"Topic": [_topic("x")]})
    try:
        b.save({"Topic": [_topic("x"), _topic("y")]})
    except MetadataConflict:
        pass
    else:
        raise AssertionError("the second writer overwrote the first")
    c = EtcdBackend(EtcdClient(etcd.endpoints), prefix)
    c.open()
    assert [o.name for o in c.load("Topic", so.TopicSpec, so.TopicStatus)] == ["x"]  # all or nothing


def test_a_deposed_controller_cannot_write(etcd):
    """Fencing by revision: once the election key is gone (lease expired) and another SC holds
    it, the old controller's guarded writes fail in etcd, whatever its own clock says."""
    prefix = unique_prefix("fence")
    client = EtcdClient(etcd.endpoints)
    key = election_key(prefix)
    lease = client.lease_grant(5)
    holding = campaign_result(key, lease, *client.txn(*campaign_txn(key, "old", lease)))
    assert holding is not None
    b = EtcdBackend(client, prefix)
    b.open()
    b.load("Topic", so.TopicSpec, so.TopicStatus)
    b.guard = holding.guard()
    b.save({"Topic": [_topic("one")]})  # accepted while it holds the key
    client.lease_revoke(lease)  # what expiry does: the key goes
    other = client.lease_grant(5)
    assert campaign_result(key, other, *client.txn(*campaign_txn(key, "new", other))) is not None
    try:
        b.save({"Topic": [_topic("one"), _topic("two")]})
    except MetadataConflict:
        pass
    else:
        raise AssertionError("a deposed controller's write went through")
    c = EtcdBackend(client, prefix)
    c.open()
    assert [o.name for o in c.load("Topic", so.TopicSpec, so.TopicStatus)] == ["one"]


async def test_two_scs_racing_on_one_topic_create_exactly_one_wins(tmp_path, etcd):
    """Whichever SC loses (by its cache, or by the revision guard and a fresh read of the
    keys) answers that the topic exists."""
    async with open_ha_cluster(tmp_path, etcd.url, scs=2, spus=1) as cluster:
        for n in range(3):
            name = f"race-{n}"
            results = []

            async def create(i):
                status = await cluster.admin(i).call(sa.ObjectApiCreateRequest.of(
                    name, so.TopicSpec.computed(1, 1), timeout_ms=10_000))
                results.append(status.error_code.code)

            async with trio.open_nursery() as n_:
                n_.start_soon(create, 0)
                n_.start_soon(create, 1)
            assert sorted(results) == sorted([ErrorCode.None_, ErrorCode.TopicAlreadyExists]), results
            assert (await cluster.admin(0).partitions(name))[0].spec.leader == 5001


async def test_epochs_continue_across_a_controller_failover(tmp_path, etcd):
    """Kill the controller SC, then the partition's leader: the new controller elects the
    follower with an epoch above every epoch the old one handed out."""
    async with open_ha_cluster(tmp_path, etcd.url, scs=2, spus=2, lease=1.0) as cluster:
        first = cluster.controller()
        await cluster.admin(first).create_topic("ep", 1, 2)
        before = _partition_epoch(etcd, cluster.settings.prefix, "ep-0")
        await cluster.stop_sc(first)
        second = await cluster.wait_controller(10, other_than=first)
        # the SC that stopped failed nobody on its way out: same leader, same epoch
        assert _partition_epoch(etcd, cluster.settings.prefix, "ep-0") == before
        leader = (await cluster.admin(second).partitions("ep"))[0].spec.leader
        await cluster.stop_spu(leader)

        async def new_leader():
            p = (await cluster.admin(second).partitions("ep"))[0]
            return p.spec.leader != leader and p.status.resolution == so.PartitionResolution.Online and p
        await wait_until(new_leader, "a new leader elected by the new controller", 20)
        assert _partition_epoch(etcd, cluster.settings.prefix, "ep-0") > before


async def test_sc_cut_off_from_etcd_stops_acting_before_another_starts(tmp_path, etcd):
    lease = 1.0
    with ThreadedProxies(etcd.endpoints) as proxies:
        async with open_ha_cluster(tmp_path, etcd.url, scs=0, spus=0, lease=lease) as cluster:
            # SC 0 reaches etcd through the proxies, SC 1 directly; SC 0 starts first and wins
            from fluvial.sc.ha import EtcdSettings

            await cluster.start_sc(settings=EtcdSettings(proxies.url, cluster.settings.prefix, lease))
            assert await cluster.wait_controller(10) == 0
            await cluster.start_sc()
            await cluster.start_spu(5001)
            stopped_at = []

            async def watch_roles():
                while True:
                    c = cluster.controller()  # asserts there is never more than one
                    if c is None and not stopped_at:
                        stopped_at.append(trio.current_time())
                    await trio.sleep(0.005)

            async with trio.open_nursery() as n:
                n.start_soon(watch_roles)
                cut_at = trio.current_time()
                proxies.cut()
                assert await cluster.wait_controller(10 * lease, other_than=0) == 1
                n.cancel_scope.cancel()
            # it stopped by its lease clock: within 0.7 lease of its last keepalive
            assert stopped_at and stopped_at[0] - cut_at <= lease
            assert cluster.scs[0].role.acting is False
            await cluster.admin(1).create_topic("after-cut", 1, 1)
            # SC 0 still serves reads from its cache, and cannot write
            status = await cluster.admin(0).call(sa.ObjectApiCreateRequest.of(
                "through-cut-sc", so.TopicSpec.computed(1, 1), timeout_ms=2_000))
            assert not status.error_code.ok
            proxies.heal()

            async def caught_up():
                return 0 in await cluster.admin(0).partitions("after-cut")
            await wait_until(caught_up, "the healed SC's cache catching up", 10)


def _raft_leader(etcd) -> int:
    """The index of the etcd member that leads its raft group now."""
    for i, ep in enumerate(etcd.endpoints):
        status = EtcdClient([ep]).call("/v3/maintenance/status", {})
        if status.get("leader") == status.get("header", {}).get("member_id"):
            return i
    raise AssertionError("no etcd member leads")


async def test_losing_one_etcd_member_changes_nothing_visible(tmp_path, own_etcd):
    """The raft leader goes: the other two elect another within etcd's election timeout, and
    the SCs' requests move to them. (The default heartbeat timeout: a save blocks the SC's
    loop, and here every member of the cluster shares one loop.)"""
    async with open_ha_cluster(tmp_path, own_etcd.url, scs=2, spus=1, lease=3.0,
                               heartbeat_timeout=10.0) as cluster:
        ctl = cluster.controller()
        terms = cluster.scs[ctl].role.terms
        await cluster.admin(0).create_topic("before", 1, 1)
        own_etcd.kill(_raft_leader(own_etcd))
        await cluster.admin(0).create_topic("after-0", 1, 1)
        await cluster.admin(1).create_topic("after-1", 1, 1)
        for i in (0, 1):
            for t in ("before", "after-0", "after-1"):
                assert (await cluster.admin(i).partitions(t))[0].status.resolution == \
                    so.PartitionResolution.Online
        assert cluster.controller() == ctl and cluster.scs[ctl].role.terms == terms



def test_producer_ids_from_several_scs_never_repeat(etcd):
    """Each SC reserves its blocks of producer ids in etcd by compare-and-swap: SCs racing for
    blocks, and a restarted SC, never hand out an id twice (a repeated id would make a leader
    take one producer's batch for another's retry and drop it)."""
    import threading

    from fluvial.sc.producer_ids import SharedProducerIds

    prefix = unique_prefix("pids")
    backends = [EtcdBackend(EtcdClient(etcd.endpoints), prefix) for _ in range(3)]
    allocators = [SharedProducerIds(b.reserve_producer_ids, block=5) for b in backends]
    got: list[list[int]] = [[] for _ in allocators]

    def run(i):
        for _ in range(40):
            got[i].append(allocators[i].allocate())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(allocators))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    restarted = SharedProducerIds(backends[0].reserve_producer_ids, block=5)
    ids = [i for g in got for i in g] + [restarted.allocate()]
    assert len(ids) == len(set(ids)) == 121


async def test_producers_through_two_scs_get_distinct_ids(tmp_path, etcd):
    import fluvial
    from fluvial.protocol.producer_api import AllocateProducerIdRequest

    async with open_ha_cluster(tmp_path, etcd.url, scs=2, spus=1) as cluster:
        ids = []
        for i in (0, 1, 0, 1):
            async with fluvial.connect(endpoint=f"127.0.0.1:{cluster.scs[i].ports[0]}") as fl:
                resp = await fl.sc_call(AllocateProducerIdRequest())
                assert resp.error_code.ok, resp.error_code
                ids.append(resp.producer_id)
        assert len(set(ids)) == 4, ids
