"""Consumer offsets, kept as records in the system topic ``consumer-offset``, partition 0.

Like Kafka's ``__consumer_offsets``: each update appends one record whose key names
(consumer id, topic, partition) and whose value holds the offset and the time; a delete appends
an empty value (a tombstone). The leader of ``consumer-offset``/0 rebuilds its table by replaying
the log when it takes the partition, so offsets survive restarts and, once replicated, failovers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fluvial.protocol.record import decode_record_set, encode_batch
from fluvial.spu.partition import PartitionReplica

Key = tuple[str, str, int]  # consumer_id, topic, partition


def replay(replica: PartitionReplica) -> Iterator[tuple[bytes | None, bytes]]:
    """Every record of the replica's log, oldest first, as (key, value): what a new leader of
    ``consumer-offset``-0 replays to rebuild its tables (consumer offsets, consumer groups)."""
    storage = replica.storage
    pos = storage.log_start_offset
    while pos < storage.leo:
        chunk = storage.read(pos, 1 << 20, storage.leo)
        for rec in decode_record_set(chunk.read_bytes()):
            yield rec.key, rec.value
        if chunk.next_offset <= pos:
            break
        pos = chunk.next_offset


def _key_bytes(key: Key) -> bytes:
    return json.dumps(list(key), separators=(",", ":")).encode()


class ConsumerOffsetStore:
    def __init__(self, replica: PartitionReplica):
        self.replica = replica
        self.offsets: dict[Key, tuple[int, int]] = {}  # -> (offset, modified_time seconds)

    def load(self) -> None:
        for key, value in replay(self.replica):
            self._apply(key, value)

    def _apply(self, key: bytes | None, value: bytes) -> None:
        if not key:
            return
        try:
            consumer_id, topic, partition = json.loads(key)
            k = (str(consumer_id), str(topic), int(partition))
            if value:
                v = json.loads(value)
                self.offsets[k] = (int(v["offset"]), int(v["time"]))
            else:
                self.offsets.pop(k, None)
        except (ValueError, KeyError, TypeError):
            return  # not ours; never fail a load over one odd record

    async def put(self, key: Key, offset: int) -> None:
        now = int(time.time())
        value = json.dumps({"offset": offset, "time": now}, separators=(",", ":")).encode()
        await self.replica.append(encode_batch([(_key_bytes(key), value)]))
        self.offsets[key] = (offset, now)

    async def delete(self, key: Key) -> None:
        if key not in self.offsets:
            return
        await self.replica.append(encode_batch([(_key_bytes(key), b"")]))
        self.offsets.pop(key, None)

    def list(self, topic: str | None = None, partition: int | None = None,
             consumer_id: str | None = None) -> list[tuple[Key, int, int]]:
        out = []
        for k, (offset, t) in sorted(self.offsets.items()):
            if consumer_id is not None and k[0] != consumer_id:
                continue
            if topic is not None and (k[1], k[2]) != (topic, partition):
                continue
            out.append((k, offset, t))
        return out
