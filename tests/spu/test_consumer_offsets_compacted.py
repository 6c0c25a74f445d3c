"""The consumer-offset topic is compacted: its leader's replay of a compacted log rebuilds the
same table as the replay of the whole history."""

from __future__ import annotations

import json
from types import SimpleNamespace

from fluvial.protocol.record import encode_batch
from fluvial.spu.consumer_offsets import ConsumerOffsetStore
from fluvial.storage import Replica, ReplicaConfig


def test_replaying_a_compacted_offsets_log_gives_the_same_table(tmp_path):
    cfg = ReplicaConfig(segment_max_bytes=600, preallocate_bytes=0, cleanup_policy="compact",
                        min_cleanable_dirty_ratio=0)
    r = Replica.open(tmp_path, "consumer-offset", 0, cfg)
    for i in range(60):
        key = json.dumps([f"c{i % 4}", "orders", i % 3], separators=(",", ":")).encode()
        value = b"" if i in (50, 55) else json.dumps({"offset": i, "time": 1}).encode()
        r.append(encode_batch([(key, value)]), leader_epoch=0)
    r.set_hw(r.leo)

    def table():
        store = ConsumerOffsetStore(SimpleNamespace(storage=r))
        store.load()
        return store.offsets

    before = table()
    size = r.size_bytes()
    assert r.compact() is not None and r.size_bytes() < size / 2
    assert table() == before and len(before) == 10  # 12 keys, 2 deleted
