"""Consumer groups end to end, in-process: members share partitions, rebalance cooperatively,
commit per group, zombies are fenced, the coordinator fails over (fluvial.client.group,
fluvial.spu.group_coordinator)."""

from __future__ import annotations

import struct

import pytest
import trio

import fluvial
from fluvial.client.group import CommitRefusedError, group_call
from fluvial.metadata.group import GroupError
from fluvial.protocol import group_api as g

from .conftest import TEST_TIMEOUT, topic_name

FAST = dict(session_timeout=2.0, heartbeat_interval=0.2, auto_commit_interval=0.2)


async def wait_for(predicate, timeout=15.0, what="condition"):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def owners_disjoint_and_complete(members, partitions):
    got = [p for m in members for p in m.partitions]
    return sorted(got) == list(range(partitions))


async def drain(member, into: list, stop: trio.Event | None = None):
    async for r in member:
        into.append((r.partition, r.offset, r.value))


async def produce(fl, topic, n, prefix="v"):
    """Committed records: a test that stops a leader after this keeps them (acknowledged by the
    leader alone, records its followers had not fetched yet would go with it)."""
    async with fl.producer(topic, isolation="read_committed") as p:
        for i in range(n):
            await p.send(f"{prefix}{i}".encode(), key=str(i).encode())


async def describe(fl, group):
    resp = await group_call(fl, g.DescribeGroupsRequest(group))
    assert resp.error == 0, resp.message
    return resp.groups[0]


async def test_three_members_share_six_partitions_and_commit(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=6)
        got: list = []
        members = [fl.consumer(topic, group="billing", **FAST) for _ in range(3)]
        async with trio.open_nursery() as n:
            for m in members:
                await m._ensure_started()
                n.start_soon(drain, m, got)
            await wait_for(lambda: owners_disjoint_and_complete(members, 6) and
                           all(len(m.partitions) == 2 for m in members))
            await produce(fl, topic, 300)
            await wait_for(lambda: len({(p, o) for p, o, _ in got}) >= 300)
            values = {v for _, _, v in got}
            assert values == {f"v{i}".encode() for i in range(300)}
            # committed per (group, topic, partition): every partition reaches its end
            await wait_for(lambda: all(m._stored == m._consumed for m in members))
            for m in members:
                await m.commit()
            info = await describe(fl, "billing")
            assert info.topic == topic and len(info.members) == 3
            ends = {}
            for p, o, _ in got:
                ends[p] = max(ends.get(p, -1), o + 1)
            assert {o.partition: o.offset for o in info.offsets if o.topic == topic} == ends
            n.cancel_scope.cancel()
        for m in members:
            await m.aclose()
        # a new member of the group starts at the committed offsets: nothing is read again
        again = fl.consumer(topic, group="billing", **FAST)
        async with again:
            await wait_for(lambda: len(again.partitions) == 6)
            await produce(fl, topic, 1, prefix="new")
            with trio.fail_after(10):
                r = await again.__anext__()
            assert r.value == b"new0"


async def test_join_moves_only_some_partitions_and_kept_ones_keep_flowing(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=6)
        members = [fl.consumer(topic, group="g-join", **FAST) for _ in range(3)]
        for m in members:
            await m._ensure_started()
        await wait_for(lambda: owners_disjoint_and_complete(members, 6)
                       and all(len(m.partitions) == 2 for m in members))
        before = {id(m): dict(m._readers) for m in members}
        fourth = fl.consumer(topic, group="g-join", **FAST)
        await fourth._ensure_started()
        everyone = [*members, fourth]
        await wait_for(lambda: owners_disjoint_and_complete(everyone, 6) and len(fourth.partitions) >= 1
                       and max(len(m.partitions) for m in everyone) == 2)
        moved = 0
        for m in members:
            for p, reader in m._readers.items():
                # a partition it keeps is read by the very same reader: it was never paused
                assert before[id(m)][p] is reader
            moved += len(before[id(m)]) - len(m._readers)
        assert moved == len(fourth.partitions) == 6 - sum(len(m.partitions) for m in members)
        for m in everyone:
            await m.aclose()


async def test_leave_hands_partitions_over_and_start_end_policy(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=2)
        await produce(fl, topic, 10, prefix="old")
        a = fl.consumer(topic, group="g-end", start="end", **FAST)
        b = fl.consumer(topic, group="g-end", start="end", **FAST)
        await a._ensure_started()
        await b._ensure_started()
        await wait_for(lambda: owners_disjoint_and_complete([a, b], 2) and len(a.partitions) == 1)
        await b.aclose()
        await wait_for(lambda: a.partitions == [0, 1])
        await produce(fl, topic, 4, prefix="new")
        got = []
        with trio.fail_after(10):
            while len(got) < 4:
                got += await a.receive_many()
        assert sorted(r.value for r in got) == [b"new0", b"new1", b"new2", b"new3"]
        await a.aclose()


async def test_zombie_commit_is_refused(fl, new_topic):
    """A member that stops heartbeating (SIGSTOP, a long GC pause) loses its session; the
    partition goes to another member, and the zombie's commits are refused."""
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=1)
        join = g.JoinGroupRequest("g-zombie", "zombie", "test", "h", topic, 1, 600, "earliest")
        assert (await group_call(fl, join)).error == 0
        hb = await group_call(fl, g.HeartbeatRequest("g-zombie", "zombie", [], 0))
        assert hb.assigned == [0]
        gen = hb.generation
        ok = await group_call(fl, g.CommitOffsetsRequest("g-zombie", "zombie", gen, topic,
                                                         [g.GroupOffset(0, 3)]))
        assert ok.error == 0 and ok.results[0].error == 0
        # the zombie stops heartbeating; a live member gets the partition
        live = fl.consumer(topic, group="g-zombie", **FAST)
        await live._ensure_started()
        await wait_for(lambda: live.partitions == [0])
        refused = await group_call(fl, g.CommitOffsetsRequest("g-zombie", "zombie", gen, topic,
                                                              [g.GroupOffset(0, 1)]))
        assert refused.error == GroupError.UNKNOWN_MEMBER
        info = await describe(fl, "g-zombie")
        assert [(o.partition, o.offset) for o in info.offsets] == [(0, 3)]
        assert [m.member_id for m in info.members] == [live.member_id]
        # an older member that lost a partition (fenced, though alive) cannot commit it either
        other = g.JoinGroupRequest("g-zombie", "late", "test", "h", topic, 1, 5000, "earliest")
        assert (await group_call(fl, other)).error == 0
        fenced = await group_call(fl, g.CommitOffsetsRequest("g-zombie", "late", gen + 5, topic,
                                                             [g.GroupOffset(0, 1)]))
        assert fenced.error == 0 and fenced.results[0].error != 0
        await group_call(fl, g.LeaveGroupRequest("g-zombie", "late"))
        await live.aclose()


async def test_member_whose_session_expired_rejoins_and_its_commit_raises(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=1)
        m = fl.consumer(topic, group="g-exp", commit="manual", **FAST)
        await m._ensure_started()
        await wait_for(lambda: m.partitions == [0])
        await produce(fl, topic, 3)
        with trio.fail_after(10):
            await m.__anext__()
        # the coordinator forgets the member (as when its session runs out)
        assert (await group_call(fl, g.LeaveGroupRequest("g-exp", m.member_id))).error == 0
        with pytest.raises(CommitRefusedError):
            await m.commit()
        await wait_for(lambda: m.partitions == [0])  # it noticed, and joined again
        await m.aclose()


async def _coordinator_address(fl):
    leader = (await fl.metadata.partition("consumer-offset", 0)).spec.leader
    host, _, port = (await fl.metadata.spu(leader)).spec.public_addr().rpartition(":")
    return host, int(port)


async def test_admin_requests_refuse_while_members_and_bad_input(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=2)
        m = fl.consumer(topic, group="g-admin", **FAST)
        await m._ensure_started()
        busy = await group_call(fl, g.SetOffsetsRequest("g-admin", topic, [g.GroupOffset(0, 0)]))
        assert busy.error == GroupError.GROUP_NOT_EMPTY
        assert (await group_call(fl, g.DeleteGroupRequest("g-admin"))).error == GroupError.GROUP_NOT_EMPTY
        other = g.JoinGroupRequest("g-admin", "x", "test", "h", "another-topic", 2, 5000, "earliest")
        assert (await group_call(fl, other)).error == GroupError.INCONSISTENT_TOPIC
        bad = g.JoinGroupRequest("g-admin", "", "test", "h", topic, 2, 5000, "earliest")
        assert (await group_call(fl, bad)).error == GroupError.INVALID_REQUEST
        assert (await group_call(fl, g.DescribeGroupsRequest("nope"))).error == GroupError.GROUP_NOT_FOUND
        huge = g.JoinGroupRequest("g-admin", "y", "test", "h", topic, 0xFFFFFFFF, 5000, "earliest")
        assert (await group_call(fl, huge)).error == GroupError.INVALID_REQUEST
        forever = g.JoinGroupRequest("g-admin", "y", "test", "h", topic, 2, 0xFFFFFFFF, "earliest")
        assert (await group_call(fl, forever)).error == GroupError.INVALID_REQUEST
        unknown = await group_call(fl, g.HeartbeatRequest("g-admin", "nobody", [0, 1], 0xFFFFFFFF))
        assert unknown.error == GroupError.UNKNOWN_MEMBER
        # garbage under a group key: that connection is closed, the coordinator serves on
        host, port = await _coordinator_address(fl)
        s = await trio.open_tcp_stream(host, port)
        await s.send_all(struct.pack(">i", 14) + struct.pack(">hhi", 7101, 0, 1) + b"\xff" * 6)
        with trio.fail_after(5):
            while await s.receive_some(1024):
                pass
        await s.aclose()
        assert (await group_call(fl, g.DescribeGroupsRequest("g-admin"))).error == 0
        await m.aclose()
        assert (await group_call(fl, g.SetOffsetsRequest("g-admin", topic, [g.GroupOffset(1, 7)]))).error == 0
        info = await describe(fl, "g-admin")
        assert (topic, 1, 7) in [(o.topic, o.partition, o.offset) for o in info.offsets]
        assert (await group_call(fl, g.DeleteGroupRequest("g-admin"))).error == 0
        assert (await group_call(fl, g.DescribeGroupsRequest("g-admin"))).error == GroupError.GROUP_NOT_FOUND


async def group_read_all(fl, topic, group, n):
    """Produce ``n`` records, read them all as a member of ``group``, commit; the member."""
    await produce(fl, topic, n)
    m = fl.consumer(topic, group=group, **FAST)
    await m._ensure_started()
    with trio.fail_after(10):
        for _ in range(n):
            await m.__anext__()
    await m.commit()
    return m


OFFICIAL_CONSUMER_ID = """
import gc, json, sys, fluvio
endpoint, topic = sys.argv[1], sys.argv[2]
client = fluvio.Fluvio.connect_with_config(fluvio.FluvioConfig.new(endpoint))
builder = fluvio.ConsumerConfigExtBuilder(topic)
builder.offset_start(fluvio.Offset.beginning())
builder.offset_consumer("official")
builder.offset_strategy(fluvio.OffsetManagementStrategy.MANUAL)
stream = client.consumer_with_config(builder.build())
got = [next(stream).offset() for _ in range(4)]
stream.offset_commit()
stream.offset_flush()
del stream
gc.collect()
stored = sorted([c.consumer_id, c.topic, c.partition, c.offset] for c in client.consumer_offsets())
print(json.dumps({"got": got, "stored": stored}))
"""


async def test_official_client_consumer_id_offsets_beside_a_group(fl, new_topic):
    from .test_cross_client import run_official

    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=1)
        m = await group_read_all(fl, topic, "g-official", 6)
        out = await run_official(OFFICIAL_CONSUMER_ID, fl.cluster.endpoint, topic)
        assert out["got"] == [0, 1, 2, 3]  # the group's commits do not move the consumer id
        assert out["stored"] == [["official", topic, 0, 3]]  # and are not listed as consumer ids
        info = await describe(fl, "g-official")
        assert [(o.partition, o.offset) for o in info.offsets] == [(0, 6)]
        await m.aclose()


async def test_consumer_id_offsets_unchanged_beside_a_group(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=1)
        m = await group_read_all(fl, topic, "g-side", 5)
        plain = fl.consumer(topic, consumer_id="cid", continuous=False)
        async with plain:
            assert [r.offset async for r in plain][:2] == [0, 1]
        offsets = await fl.admin.list_consumer_offsets() if hasattr(fl.admin, "list_consumer_offsets") else None
        again = fl.consumer(topic, consumer_id="cid", continuous=False)
        async with again:
            assert [r.offset async for r in again] == []  # resumed after its own stored offset
        assert offsets is None or any(o.consumer_id == "cid" for o in offsets)
        await m.aclose()


async def test_coordinator_failover_keeps_offsets_and_members(tmp_path):
    from harness.cluster import open_test_cluster

    with trio.fail_after(TEST_TIMEOUT * 2):
        async with open_test_cluster(tmp_path / "c3", spus=3, heartbeat_timeout=1.0) as cluster:
            async with fluvial.connect(endpoint=cluster.endpoint, metadata_timeout=10,
                                       request_timeout=5) as fl:
                topic = topic_name("fo")
                await fl.admin.create_topic(topic, 4, 3)
                meta = await fl.metadata.partition("consumer-offset", 0)
                await wait_for(lambda: len(meta.spec.replicas) == 3, timeout=20)
                members = [fl.consumer(topic, group="g-fo", session_timeout=6.0,
                                       heartbeat_interval=0.3, auto_commit_interval=0.2) for _ in range(2)]
                got: list = []
                async with trio.open_nursery() as n:
                    for m in members:
                        await m._ensure_started()
                        n.start_soon(drain, m, got)
                    await wait_for(lambda: owners_disjoint_and_complete(members, 4))
                    await produce(fl, topic, 40)
                    await wait_for(lambda: len(got) >= 40)
                    for m in members:
                        await m.commit()
                    before = await describe(fl, "g-fo")
                    gen = before.generation
                    coordinator = (await fl.metadata.partition("consumer-offset", 0)).spec.leader
                    # a third member joins, and the coordinator dies in the middle of that rebalance
                    third = fl.consumer(topic, group="g-fo", session_timeout=6.0,
                                        heartbeat_interval=0.3, auto_commit_interval=0.2)
                    await third._ensure_started()
                    members.append(third)
                    n.start_soon(drain, third, got)
                    await cluster.stop_spu(coordinator)
                    # a new coordinator replays the log: same members, generation, offsets
                    with trio.fail_after(30):
                        while True:
                            leader = (await fl.metadata.partition("consumer-offset", 0)).spec.leader
                            if leader not in (-1, coordinator):
                                break
                            await fl.metadata.wait_changed(timeout=0.5)
                    after = await describe(fl, "g-fo")
                    kept = {o.partition: o.offset for o in after.offsets}
                    assert len(before.offsets) == 4
                    assert all(kept.get(o.partition, -1) >= o.offset for o in before.offsets), (before, after)
                    assert after.generation > gen  # the join was stored before it was answered
                    # the group converges: three members, each partition read by exactly one
                    await wait_for(lambda: owners_disjoint_and_complete(members, 4)
                                   and all(m.partitions for m in members), timeout=30)
                    # the group goes on: new records reach the members, commits land
                    await produce(fl, topic, 8, prefix="after")
                    await wait_for(lambda: sum(v.startswith(b"after") for _, _, v in got) >= 8, timeout=30)
                    for m in members:
                        await m.commit()
                    n.cancel_scope.cancel()
                for m in members:
                    await m.aclose()


def blocking_group(endpoint: str, topic: str) -> dict:
    import fluvial.sync

    out = {}
    with fluvial.sync.connect(endpoint=endpoint) as fl:
        with fl.producer(topic) as p:
            for i in range(4):
                p.send(b"s%d" % i)
        with fl.consumer(topic, group="g-sync", commit="manual", **FAST) as c:
            out["first"] = [next(c).value for _ in range(2)]
            c.commit()  # what was handed out: two records
            out["partitions"] = c.partitions
        with fl.consumer(topic, group="g-sync", commit="manual", **FAST) as c:
            out["resumed"] = next(c).value
    return out


async def test_the_blocking_facade_joins_commits_and_resumes(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=1)
        out = await trio.to_thread.run_sync(blocking_group, fl.cluster.endpoint, topic)
    assert out == {"first": [b"s0", b"s1"], "partitions": [0], "resumed": b"s2"}


def test_records_of_an_earlier_tenure_are_never_marked_consumed():
    """A list handed out before its partition was revoked (and perhaps granted back, from a
    later committed offset) must not move the partition's commit position."""
    from types import SimpleNamespace

    from fluvial.client.group import GroupConsumer, _Reader
    from fluvial.client.types import Record

    m = GroupConsumer(SimpleNamespace(client_id="t"), "t", group="g")
    old = _Reader(0, object(), trio.CancelScope(), trio.Event())
    m._readers = {0: old}
    m._buf, m._buf_reader = [Record((0, 5, None, b"a", -1)), Record((0, 6, None, b"b", -1))], old
    m._note(1)
    assert m._consumed == {0: 6}
    m._readers = {0: _Reader(0, object(), trio.CancelScope(), trio.Event())}  # revoked, granted back
    m._consumed = {0: 40}  # the new tenure starts at the group's later commit
    m._note(2)
    assert m._consumed == {0: 40}
