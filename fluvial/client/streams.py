"""Real-time streams on the log (iii's streams), from Python: ``fl.streams()``.

    async with fluvial.connect() as fl:
        streams = fl.streams()
        await streams.set("chat", "room-1", "m1", {"text": "hi"})   # durable when it returns
        await streams.get("chat", "room-1", "m1")                   # {"text": "hi", "id": "m1"}
        await streams.list("chat", "room-1")                        # [{...}]
        await streams.send("chat", "room-1", "typing", {"user": "ann"})
        await streams.delete("chat", "room-1", "m1")

A stream is a topic (``fluvial.gateway.model`` has the data model); its topic is created on the
first write (``ensure_stream_topic``). ``get`` and ``list`` rebuild the state by reading the topic
from its beginning, which is what a compacted topic keeps small. Gateways (``fluvial gateway``)
tail the same topics and push every change to their WebSocket subscribers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from fluvial.errors import TopicAlreadyExistsError, TopicNotFoundError
from fluvial.gateway.model import (
    GroupPartitioner, PartitionState, check_name, encode_delete, encode_event, encode_set,
    partition_for_group, stored_item, topic_for_stream,
)


async def ensure_stream_topic(fl: Any, stream: str, *, partitions: int = 1, replication: int = 1,
                              topic_options: Mapping[str, Any] | None = None) -> str:
    """Create the topic of ``stream`` unless it exists; its name.

    Stream topics are compacted (cleanup policy ``compact``, docs/storage.md): the last record
    per key (an item's state) is kept and tombstones (deletes) go after the default tombstone
    retention, so that state is rebuilt on restart without replaying unbounded history.
    ``topic_options``: more ``create_topic`` arguments (segment size, tombstone retention, ...).
    """
    topic = topic_for_stream(stream)
    if topic in fl.metadata.topics:
        return topic
    try:
        await fl.admin.create_topic(topic, partitions=partitions, replication=replication,
                                    **{"cleanup_policy": "compact", **(topic_options or {})})
    except TopicAlreadyExistsError:
        pass
    return topic


async def topic_exists(fl: Any, topic: str) -> bool:
    try:
        await fl.metadata.topic(topic)
        return True
    except TopicNotFoundError:
        return False


async def read_partition(fl: Any, topic: str, partition: int,
                         state: PartitionState | None = None) -> PartitionState:
    """Fold partition ``partition`` of ``topic`` from its start to its end as of now (the
    committed records only) into ``state`` (a new one by default)."""
    state = state if state is not None else PartitionState()
    async with fl.consumer(topic, partition=partition, continuous=False,
                           isolation="read_committed") as consumer:
        while records := await consumer.receive_many():
            for r in records:
                state.apply(r.offset, r.key, r.value, r.timestamp)
    return state


class Streams:
    """Stream operations over one connection; get it with ``fl.streams()``.

    Args:
        partitions, replication: the layout of a stream topic created on first write.
        isolation: when a write is acknowledged: "read_committed" (default: once it is on every
            in-sync replica) or "read_uncommitted" (once it is durable on the leader).
        topic_options: more ``create_topic`` arguments for a new stream topic (it is compacted
            unless they say otherwise).
    """

    def __init__(self, fl: Any, *, partitions: int = 1, replication: int = 1,
                 isolation: str = "read_committed", topic_options: Mapping[str, Any] | None = None):
        self._fl = fl
        self.topic_options = topic_options
        self.partitions = partitions
        self.replication = replication
        self.isolation = isolation
        self._producers: dict[str, Any] = {}
        self._lock = trio.Lock()

    async def _producer(self, stream: str):
        topic = topic_for_stream(stream)
        p = self._producers.get(topic)
        if p is None:
            async with self._lock:
                p = self._producers.get(topic)
                if p is None:
                    await ensure_stream_topic(self._fl, stream, partitions=self.partitions,
                                              replication=self.replication,
                                              topic_options=self.topic_options)
                    p = self._fl.producer(topic, partitioner=GroupPartitioner(),
                                          isolation=self.isolation)
                    self._producers[topic] = p
        return p

    async def _write(self, stream: str, key: bytes, value: bytes) -> int:
        producer = await self._producer(stream)
        future = await producer.send(value, key=key)
        return (await future).offset

    async def set(self, stream: str, group: str, item_id: str, data: Any) -> Any:
        """Create or update the item; returns it as stored, once durable on the log."""
        check_name("group", group)
        check_name("id", item_id)
        await self._write(stream, *encode_set(group, item_id, data))
        return stored_item(item_id, data)

    async def delete(self, stream: str, group: str, item_id: str) -> None:
        """Delete the item (a tombstone on the log), once durable."""
        check_name("group", group)
        check_name("id", item_id)
        await self._write(stream, *encode_delete(group, item_id))

    async def send(self, stream: str, group: str, event_type: str, data: Any = None,
                   item_id: str | None = None) -> None:
        """Send a custom event to the group's subscribers (or to one item's), once durable."""
        check_name("group", group)
        if item_id is not None:
            check_name("id", item_id)
        await self._write(stream, *encode_event(group, item_id, event_type, data))

    async def _group_state(self, stream: str, group: str) -> PartitionState | None:
        topic = topic_for_stream(stream)
        if not await topic_exists(self._fl, topic):
            return None
        count = self._fl.metadata.partition_count(topic)
        return await read_partition(self._fl, topic, partition_for_group(group, count))

    async def get(self, stream: str, group: str, item_id: str) -> Any:
        """The item, or None."""
        check_name("group", group)
        state = await self._group_state(stream, group)
        return None if state is None else state.get(group, item_id)

    async def list(self, stream: str, group: str) -> list:
        """The group's items (iii's getGroup), in the order of their last change."""
        check_name("group", group)
        state = await self._group_state(stream, group)
        return [] if state is None else state.list(group)
