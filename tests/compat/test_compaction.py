"""A compacted topic (created with ``fluvial topic create --cleanup-policy compact``) read by the
official client: batches split by the cleaner and gaps between offsets decode, offsets are the
produced ones, and the topic list still decodes."""

from __future__ import annotations

import time

import pytest
from fluvio import Offset

from .conftest import Cluster, consume, record_tuple, topic_names, unique_name, wait_until

pytestmark = pytest.mark.compat

KEYS = 6
ROUNDS = 30


@pytest.mark.compat(timeout=120)
def test_official_client_reads_a_compacted_topic(cluster: Cluster) -> None:
    topic = unique_name("compacted")
    cluster.cli("topic", "create", topic, "--cleanup-policy", "compact", "--segment-size", "1024",
                "--tombstone-retention", "1h", "--min-cleanable-dirty-ratio", "0")
    client = cluster.connect()
    assert topic in topic_names(cluster.admin())  # the topic spec still decodes
    producer = client.topic_producer(topic)
    sent = []
    for r in range(ROUNDS):
        for k in range(KEYS):
            key, value = f"k{k}".encode(), f"v{r}-{k}".encode() * 3
            sent.append((key, value, producer.send(key, value)))
        producer.flush()  # a batch per round: segments of 1 KiB roll, the sealed ones get compacted
    sent.append((b"k0", b"", producer.send(b"k0", b"")))  # delete k0
    producer.flush()
    produced = [(out.wait().offset(), key, value) for key, value, out in sent]
    assert [o for o, _, _ in produced] == list(range(len(produced)))
    expected = {k: (o, v) for o, k, v in produced}

    def read_to_end() -> list[tuple[int, bytes, bytes]]:
        # continuous: Fluvio's disable_continuous counts (end - start) records, and compaction
        # removed some of them, so it would wait for them forever (see docs/storage.md)
        got = []
        for r in consume(client, topic, Offset.beginning(), disable_continuous=False):
            got.append(record_tuple(r))
            if got[-1][0] == len(produced) - 1:
                return got

    def compacted():
        got = read_to_end()
        return got if len(got) < len(produced) else None

    got = wait_until(compacted, 60, "the SPU's log cleaner to compact the topic", interval_s=0.5)
    assert {k: (o, v) for o, k, v in got} == expected
    assert set(got) <= set(produced)
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(offsets)
    # a consumer starting inside a gap gets the next surviving record
    gap = next(o for o in range(offsets[0], offsets[-1]) if o not in offsets)
    first = next(iter(consume(client, topic, Offset.absolute(gap), disable_continuous=False)))
    assert first.offset() == min(o for o in offsets if o > gap)
    started = time.monotonic()
    out = client.topic_producer(topic)
    meta = out.send(b"k1", b"after").wait()
    assert meta.offset() == len(produced) and time.monotonic() - started < 30
