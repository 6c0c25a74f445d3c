"""Consumer offsets: commit, flush, resume, and the admin calls that list and delete them."""

from __future__ import annotations

import time

import pytest
import trio

import fluvial
from fluvial import Offset

from .conftest import TEST_TIMEOUT


async def produce(fl, topic, n, partitions=None):
    async with fl.producer(topic) as p:
        await p.send_many([b"%d" % i for i in range(n)])


async def take(consumer, n):
    out = []
    async for r in consumer:
        out.append(r)
        if len(out) == n:
            break
    return out


async def test_manual_commit_flush_and_resume_at_the_next_record(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        await produce(fl, topic, 10)
        async with fl.consumer(topic, consumer_id="c1", commit="manual") as c:
            got = await take(c, 4)
            assert [r.offset for r in got] == [0, 1, 2, 3]
            c.commit()
            await c.flush()
            await take(c, 2)  # read but not committed
        stored = await fl.admin.list_consumer_offsets()
        assert [(o.consumer_id, o.topic, o.partition, o.offset) for o in stored] == [("c1", topic, 0, 3)]
        assert abs(stored[0].modified_time - time.time()) < 120
        async with fl.consumer(topic, consumer_id="c1", commit="manual", continuous=False) as c:
            assert [r.offset for r in await take(c, 100)] == list(range(4, 10))
        # a relative offset counts from the stored one; absolute ignores it
        async with fl.consumer(topic, consumer_id="c1", offset=Offset.from_beginning(2),
                               continuous=False) as c:
            assert (await c.__anext__()).offset == 6
        async with fl.consumer(topic, consumer_id="c1", offset=Offset.absolute(1), end=1) as c:
            assert [r.offset for r in await take(c, 5)] == [1]


async def test_flush_without_commit_stores_nothing_and_commit_counts_only_what_was_read(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        await produce(fl, topic, 5)
        async with fl.consumer(topic, consumer_id="c2", commit="manual") as c:
            await c.flush()
            assert await fl.admin.list_consumer_offsets() == []
            await take(c, 1)
            c.commit()
            await c.flush()
        (o,) = await fl.admin.list_consumer_offsets()
        assert o.offset == 0


async def test_auto_commit_flushes_on_close(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(2)
        await produce(fl, topic, 10)
        async with fl.consumer(topic, consumer_id="auto") as c:
            got = await take(c, 10)
        last = {}
        for r in got:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        stored = {o.partition: o.offset for o in await fl.admin.list_consumer_offsets()}
        assert stored == last
        async with fl.consumer(topic, consumer_id="auto", continuous=False) as c:
            assert [r async for r in c] == []


async def test_auto_commit_flushes_periodically(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        await produce(fl, topic, 3)
        async with fl.producer(topic) as p:
            async with fl.consumer(topic, consumer_id="tick", flush_interval=0.05) as c:
                await take(c, 3)
                while not await fl.admin.list_consumer_offsets():
                    await (await p.send(b"more"))  # refills make the consumer check the timer
                    await c.__anext__()
        assert (await fl.admin.list_consumer_offsets())[0].offset >= 2


async def test_delete_consumer_offset(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        await produce(fl, topic, 3)
        async with fl.consumer(topic, consumer_id="gone", continuous=False) as c:
            assert len([r async for r in c]) == 3
        assert len(await fl.admin.list_consumer_offsets()) == 1
        await fl.admin.delete_consumer_offset("gone", topic, 0)
        assert await fl.admin.list_consumer_offsets() == []
        async with fl.consumer(topic, consumer_id="gone", continuous=False) as c:
            assert len([r async for r in c]) == 3


async def test_offset_calls_without_a_consumer_id_fail(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.consumer(topic, continuous=False) as c:
            with pytest.raises(fluvial.errors.OffsetManagementDisabledError):
                c.commit()
            with pytest.raises(fluvial.errors.OffsetManagementDisabledError):
                await c.flush()
        with pytest.raises(ValueError):
            fl.consumer(topic, commit="sometimes")


async def test_an_evicted_start_offset_continues_at_the_first_stored_record(tmp_path):
    from harness.cluster import open_test_cluster

    with trio.fail_after(TEST_TIMEOUT):
        async with open_test_cluster(tmp_path / "c", spus=1) as c:
            cfg = c.spus[5001].config
            cfg.checkpoint_seconds = 0.05
            cfg.retention_check_seconds = 0.0
            await c.stop_spu(5001)
            await c.start_spu(5001)
            async with fluvial.connect(endpoint=c.endpoint) as fl:
                await fl.admin.create_topic("short", segment_size=1024, max_partition_size=4096)
                async with fl.producer("short", batch_size=1) as p:
                    for i in range(20):
                        await (await p.send(bytes([i]) * 500))
                while not (start := (await fl.admin.list_partitions("short"))[0].base_offset):
                    await trio.sleep(0.02)  # poll: retention runs in the background
                async with fl.consumer("short", offset=Offset.absolute(0), continuous=False) as cons:
                    got = [r.offset async for r in cons]
                assert got and got[0] >= start and got == list(range(got[0], 20))
