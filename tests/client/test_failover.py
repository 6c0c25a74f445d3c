"""Delivery across a leader failover: the producer retries on the new leader, the consumer
reopens its stream there, and nothing acknowledged is lost."""

from __future__ import annotations

import pytest
import trio

import fluvial
from fluvial import Offset

from .conftest import TEST_TIMEOUT


async def wait_for_leader_change(fl, topic, old):
    while fl.metadata.leader_of(topic, 0) in (old, None):
        await fl.metadata.wait_changed(timeout=0.5)
    return fl.metadata.leader_of(topic, 0)


@pytest.mark.parametrize("partitions", [1, 2])
async def test_producer_and_consumer_survive_a_leader_failover(cluster3, partitions):
    with trio.fail_after(TEST_TIMEOUT):
        async with fluvial.connect(endpoint=cluster3.endpoint) as fl:
            await fl.admin.create_topic("ha", partitions=partitions, replication=3)
            old = fl.metadata.leader_of("ha", 0)
            received: list[bytes] = []
            got_all = trio.Event()

            async def consume():
                async with fl.consumer("ha", offset=Offset.beginning(), isolation="read_committed") as c:
                    async for r in c:
                        received.append(r.value)
                        if len(set(received)) == 40:
                            got_all.set()
                            return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                async with fl.producer("ha", isolation="read_committed", retry_backoff=0.01,
                                       partitioner=0) as p:
                    before = [await (await p.send(b"before-%d" % i)) for i in range(20)]
                    await cluster3.stop_spu(old)
                    after = [await p.send(b"after-%d" % i) for i in range(20)]
                    metas = [await f for f in after]
                new = await wait_for_leader_change(fl, "ha", old)
                assert new != old
                await got_all.wait()
            assert [m.offset for m in before] == list(range(20))
            # at least once: every record is there, in order, possibly with retried duplicates
            assert metas[-1].offset >= 39
            expected = [b"before-%d" % i for i in range(20)] + [b"after-%d" % i for i in range(20)]
            assert list(dict.fromkeys(received)) == expected
            async with fl.consumer("ha", partition=0, continuous=False) as c:
                stored = [r.value async for r in c]
            assert list(dict.fromkeys(stored)) == expected


async def test_the_producer_retries_while_the_leader_is_down_and_delivers_when_it_returns(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        p = fl.producer(topic, retry_backoff=0.01, retry_backoff_max=0.05)
        assert (await (await p.send(b"first"))).offset == 0
        await cluster.stop_spu(5001)
        pending = await p.send(b"second")
        while p.statistics().retries < 2:  # refused connections, retried
            await trio.sleep(0.01)
        assert not pending.done()
        await cluster.start_spu(5001)
        assert (await pending).offset == 1
        stats = p.statistics()
        assert stats.pending_batches == 0 and stats.failed_batches == 0
        await p.aclose()


async def test_at_most_once_does_not_retry(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        p = fl.producer(topic, delivery="at_most_once")
        await (await p.send(b"first"))
        await cluster.stop_spu(5001)
        f = await p.send(b"lost")
        try:
            await f
        except fluvial.ConnectionLost:
            pass
        assert p.statistics().retries == 0 and p.statistics().failed_batches == 1
        await p.aclose()


async def test_delivery_timeout_gives_up(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        p = fl.producer(topic, delivery_timeout=0.3, retry_backoff=0.01)
        await (await p.send(b"first"))
        await cluster.stop_spu(5001)
        f = await p.send(b"never")
        try:
            await f
            raise AssertionError("the record was acknowledged by a stopped SPU")
        except fluvial.ConnectionLost:
            pass
        assert p.statistics().retries >= 1
        await p.aclose()
