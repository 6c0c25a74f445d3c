"""A stream's topic is compacted: old versions of an item go, deletes go after the tombstone
retention, and the state read back from the log is the same as before compaction."""

from __future__ import annotations

import trio

import fluvial
from fluvial.client.streams import topic_for_stream
from harness.client import wait_until
from harness.cluster import open_test_cluster

from .conftest import stream_name


async def _offsets(fl, topic: str) -> list[int]:
    async with fl.consumer(topic, continuous=False) as c:
        return [r.offset async for r in c]


async def test_stream_state_survives_compaction_of_its_topic(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            for m in cluster.spus.values():  # fast housekeeping
                m.config.checkpoint_seconds = 0.1
                m.config.compaction_check_seconds = 0.1
            async with fluvial.connect(endpoint=cluster.endpoint) as fl:
                streams = fl.streams(topic_options={"segment_size": 1024, "tombstone_retention": 0,
                                                    "min_cleanable_dirty_ratio": 0})
                stream = stream_name("compact")
                for i in range(60):
                    await streams.set(stream, "g", "counter", {"id": "counter", "n": i})
                await streams.set(stream, "g", "gone", {"id": "gone"})
                await streams.delete(stream, "g", "gone")
                await streams.set(stream, "g", "other", {"id": "other", "n": -1})
                for i in range(60, 80):  # seal the segments holding the old versions
                    await streams.set(stream, "g", "counter", {"id": "counter", "n": i})
                writes = 83
                topic = topic_for_stream(stream)

                async def compacted():
                    return len(await _offsets(fl, topic)) < writes // 2
                await wait_until(compacted, "the stream topic compacted", 30)

                items = {it["id"]: it for it in await fl.streams().list(stream, "g")}
                assert items == {"counter": {"id": "counter", "n": 79}, "other": {"id": "other", "n": -1}}
                assert await fl.streams().get(stream, "g", "gone") is None
