"""Consumer groups under a real kill -9 of the coordinator's SPU (issue 21), in the middle of a
rebalance: the group converges on a new coordinator, with its committed offsets."""

from __future__ import annotations

import trio

import fluvial
from fluvial.client.group import describe_groups
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from harness.client import partition_in_sync, wait_partitions_in_sync

TOPIC = "groups-chaos"
PARTITIONS = 4


def _spread(members) -> bool:
    owned = sorted(p for m in members for p in m.partitions)
    return owned == list(range(PARTITIONS)) and all(m.partitions for m in members)


async def _wait(predicate, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_coordinator_spu_killed_mid_rebalance_the_group_converges(cluster):
    with trio.fail_after(150):
        admin = cluster.admin()
        await admin.create_topic(TOPIC, partitions=PARTITIONS, replication=3)
        await wait_partitions_in_sync(admin, TOPIC, PARTITIONS, 3, 60)
        # the profile `fluvial cluster start` wrote (TLS, as users run it)
        async with fluvial.connect(config_path=cluster.home / "config", request_timeout=5) as fl:
            with trio.fail_after(60):  # the group's records will be on three replicas
                while not partition_in_sync(await fl.metadata.partition(CONSUMER_OFFSET_TOPIC, 0), 3):
                    await fl.metadata.wait_changed(timeout=0.5)
            opts = dict(group="chaos", session_timeout=8.0, heartbeat_interval=0.5,
                        auto_commit_interval=0.2, commit="manual")
            got: list = []

            async def drain(m):
                async for r in m:
                    got.append((r.partition, r.offset))

            members = [fl.consumer(TOPIC, **opts) for _ in range(2)]
            async with trio.open_nursery() as n:
                for m in members:
                    await m._ensure_started()
                    n.start_soon(drain, m)
                await _wait(lambda: _spread(members), 30, "two members to share the partitions")
                async with fl.producer(TOPIC, isolation="read_committed") as p:
                    for i in range(40):
                        await p.send(b"before-%d" % i, key=b"%d" % i)
                await _wait(lambda: len(set(got)) >= 40, 30, "the first records")
                for m in members:
                    await m.commit()
                [before] = await describe_groups(fl, "chaos")

                coordinator = (await fl.metadata.partition(CONSUMER_OFFSET_TOPIC, 0)).spec.leader
                third = fl.consumer(TOPIC, **opts)
                await third._ensure_started()  # a rebalance starts...
                members.append(third)
                n.start_soon(drain, third)
                await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(coordinator))  # ...and dies

                await _wait(lambda: _spread(members), 60, "the group to converge on a new coordinator")
                [after] = await describe_groups(fl, "chaos")
                assert after.generation >= before.generation + 1
                kept = {o.partition: o.offset for o in after.offsets}
                assert all(kept.get(o.partition, -1) >= o.offset for o in before.offsets), (before, after)
                owned = [p for m in after.members for p in m.assigned]
                assert len(owned) == len(set(owned))

                async with fl.producer(TOPIC, isolation="read_committed") as p:
                    for i in range(20):
                        await p.send(b"after-%d" % i, key=b"%d" % i)
                await _wait(lambda: len(set(got)) >= 60, 60, "records after the failover")
                n.cancel_scope.cancel()
            for m in members:
                await m.aclose()
