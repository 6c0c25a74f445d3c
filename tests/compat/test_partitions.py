"""Multi-partition topics on a 3-SPU cluster with the official ``fluvio`` client."""

from __future__ import annotations

from collections import defaultdict

import pytest

import fluvio
from fluvio import Offset

from .conftest import (
    DEFAULT_TEST_TIMEOUT_S,
    Cluster,
    consume,
    create_topic,
    finish_producer_proc,
    member_is_up,
    members_of,
    record_tuple,
    start_producer_proc,
    take,
    unique_name,
    watchdog,
)

pytestmark = pytest.mark.compat

#: SipHash-2-4 (zero keys) partition of each key for a 3-partition topic: spu.md §9.1.
SIPHASH_PARTITION_OF_3 = {b"": 2, b"k": 1, b"key": 2, b"hello": 2, b"a": 1, b"b": 0}
PER_KEY = 40


def test_status_lists_one_sc_and_three_spus(cluster3: Cluster) -> None:
    members = members_of(cluster3.status())
    kinds = sorted(str(m["kind"]).lower() for m in members)
    assert kinds == ["sc", "spu", "spu", "spu"], members
    assert all(member_is_up(m) for m in members), members
    assert len({m["pid"] for m in members}) == 4, members


@pytest.fixture(scope="module")
def keyed(cluster3: Cluster) -> tuple[str, dict[int, list[tuple[int, bytes, bytes]]]]:
    """A 3-partition topic with ``PER_KEY`` records per key of the SipHash table, sent interleaved.

    Returns:
        the topic, and per partition the expected ``(offset, key, value)`` list in offset order.
    """
    with watchdog(DEFAULT_TEST_TIMEOUT_S, "filling the shared keyed topic"):
        return _fill_keyed(cluster3)


def _fill_keyed(cluster3: Cluster) -> tuple[str, dict[int, list[tuple[int, bytes, bytes]]]]:
    topic = unique_name("part-keyed")
    create_topic(cluster3.admin(), topic, partitions=3)
    producer = cluster3.connect().topic_producer(topic)
    sent = []
    for i in range(PER_KEY):
        for key in SIPHASH_PARTITION_OF_3:
            value = f"{key.decode() or '<empty>'}-{i}".encode()
            sent.append((key, value, producer.send(key, value)))
    producer.flush()
    expected: dict[int, list[tuple[int, bytes, bytes]]] = defaultdict(list)
    for key, value, output in sent:
        meta = output.wait()
        assert meta.partition_id() == SIPHASH_PARTITION_OF_3[key], key
        expected[meta.partition_id()].append((meta.offset(), key, value))
    for p, rows in expected.items():
        assert [o for o, _, _ in rows] == list(range(len(rows))), f"partition {p} offsets not contiguous"
    assert set(expected) == {0, 1, 2}
    return topic, dict(expected)


def test_keyed_records_land_on_siphash_partition(cluster3: Cluster, keyed) -> None:
    topic, expected = keyed
    client = cluster3.connect()
    for p in range(3):
        records = [record_tuple(r) for r in consume(client, topic, Offset.beginning(), partitions=[p])]
        assert records == expected[p], f"partition {p}"


def test_multi_partition_consumer_reads_all_partitions(cluster3: Cluster, keyed) -> None:
    topic, expected = keyed
    total = sum(len(rows) for rows in expected.values())
    client = cluster3.connect()
    records = [record_tuple(r) for r in consume(client, topic, Offset.beginning())]
    assert len(records) == total
    assert sorted(records) == sorted(row for rows in expected.values() for row in rows)
    # Order is kept within each partition (and so within each key).
    by_key = defaultdict(list)
    for _, key, value in records:
        by_key[key].append(value)
    for key, values in by_key.items():
        assert values == [f"{key.decode() or '<empty>'}-{i}".encode() for i in range(PER_KEY)]


def test_multi_partition_consumer_from_end_offsets(cluster3: Cluster, keyed) -> None:
    """``from_end(2)`` applies per partition: the last two records of each."""
    topic, expected = keyed
    client = cluster3.connect()
    records = sorted(record_tuple(r) for r in consume(client, topic, Offset.from_end(2)))
    assert records == sorted(row for rows in expected.values() for row in rows[-2:])


def test_deprecated_multi_partition_consumer(cluster3: Cluster, keyed) -> None:
    topic, expected = keyed
    total = sum(len(rows) for rows in expected.values())
    client = cluster3.connect()
    stream = client.multi_partition_consumer(topic).stream(Offset.beginning())
    records = sorted(record_tuple(r) for r in take(stream, total))
    assert records == sorted(row for rows in expected.values() for row in rows)


def test_specific_partitioner_reaches_every_leader(cluster3: Cluster) -> None:
    admin, client = cluster3.admin(), cluster3.connect()
    topic = unique_name("part-specific")
    create_topic(admin, topic, partitions=6)
    for p in range(6):
        config = fluvio.TopicProducerConfigBuilder().set_specific_partitioner(p).build()
        producer = client.topic_producer_with_config(topic, config)
        outputs = [producer.send_string(f"p{p}-{i}") for i in range(5)]
        producer.flush()
        assert [o.wait().partition_id() for o in outputs] == [p] * 5
    for p in range(6):
        values = [r.value_string() for r in consume(client, topic, Offset.beginning(), partitions=[p])]
        assert values == [f"p{p}-{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("replication", "compression"),
    [(2, fluvio.Compression.None_), (3, fluvio.Compression.Zstd)],
    ids=["r2-plain", "r3-zstd"],
)
def test_replicated_topic_read_committed(cluster3: Cluster, replication: int,
                                         compression: fluvio.Compression) -> None:
    """With ReadCommitted the SPU answers only once the followers have the records (HW moved)."""
    admin, client = cluster3.admin(), cluster3.connect()
    topic = unique_name(f"part-repl{replication}")
    create_topic(admin, topic, partitions=3, replication=replication)
    config = (fluvio.TopicProducerConfigBuilder().isolation(fluvio.Isolation.ReadCommitted)
              .compression(compression).timeout(10_000).build())
    producer = client.topic_producer_with_config(topic, config)
    keys = [b"a", b"b", b"key"]  # partitions 1, 0, 2
    outputs = [(k, i, producer.send(k, f"{k.decode()}{i}".encode())) for i in range(100) for k in keys]
    producer.flush()
    by_partition = defaultdict(list)
    for key, i, output in outputs:
        meta = output.wait()
        by_partition[meta.partition_id()].append((meta.offset(), key, f"{key.decode()}{i}".encode()))
    assert sorted(by_partition) == [0, 1, 2]
    for p, rows in by_partition.items():
        assert [o for o, _, _ in rows] == list(range(100))
        assert [record_tuple(r) for r in consume(client, topic, Offset.beginning(), partitions=[p])] == rows


def test_live_tail_all_partitions(cluster3: Cluster) -> None:
    admin, client = cluster3.admin(), cluster3.connect()
    topic = unique_name("part-tail")
    create_topic(admin, topic, partitions=3)
    stream = consume(client, topic, Offset.end(), disable_continuous=False)
    got = []
    for key in ("b", "a", "key"):  # partitions 0, 1, 2
        proc = start_producer_proc(cluster3, topic, 15, prefix=f"t{key}", key=key, flush_every=4)
        got += [record_tuple(r) for r in take(stream, 15)]
        report = finish_producer_proc(proc)
        assert {r["partition"] for r in report} == {SIPHASH_PARTITION_OF_3[key.encode()]}
    expected = [(i, key.encode(), f"t{key}-{i}".encode()) for key in ("b", "a", "key") for i in range(15)]
    assert got == expected


def test_consumer_offsets_for_every_partition(cluster3: Cluster, keyed) -> None:
    """Commits for partitions led by any SPU reach the ``consumer-offset`` leader."""
    topic, expected = keyed
    client = cluster3.connect()
    consumer_id = unique_name("cp")

    def open_stream(p: int) -> fluvio.ConsumerIterator:
        builder = fluvio.ConsumerConfigExtBuilder(topic)
        builder.partition(p)
        builder.offset_start(Offset.beginning())
        builder.offset_consumer(consumer_id)
        builder.offset_strategy(fluvio.OffsetManagementStrategy.MANUAL)
        return client.consumer_with_config(builder.build())

    for p in range(3):
        stream = open_stream(p)
        assert [record_tuple(r) for r in take(stream, 2)] == expected[p][:2]
        stream.offset_commit()
        stream.offset_flush()
        del stream

    stored = sorted((c.partition, c.offset) for c in client.consumer_offsets()
                    if c.consumer_id == consumer_id and c.topic == topic)
    assert stored == [(0, 1), (1, 1), (2, 1)]
    for p in range(3):
        assert record_tuple(next(open_stream(p))) == expected[p][2]
    for p in range(3):
        client.delete_consumer_offset(consumer_id, topic, p)
    assert [c for c in client.consumer_offsets() if c.consumer_id == consumer_id] == []


def test_assigned_replicas_topic(cluster3: Cluster) -> None:
    """A topic with explicit replica maps (partition 0 led by SPU 5002, partition 1 by 5003)."""
    from fluvio._fluvio_python import PartitionMap  # the wrapper class is not accepted by build() in 0.21.0

    admin, client = cluster3.admin(), cluster3.connect()
    topic = unique_name("part-assigned")
    uneven = fluvio.TopicSpec.create().with_assignment([PartitionMap.new(0, [5002]),
                                                       PartitionMap.new(1, [5003, 5001])]).build()
    with pytest.raises(Exception):  # every map must list the same number of SPUs
        admin.create_topic(topic, uneven)
    spec = fluvio.TopicSpec.create().with_assignment([PartitionMap.new(0, [5002, 5001]),
                                                     PartitionMap.new(1, [5003, 5001])]).build()
    admin.create_topic(topic, spec)
    assert {f"{topic}-0", f"{topic}-1"} <= {p.name() for p in admin.list_partitions([])}
    for p in range(2):
        # ReadCommitted: wait() returns once the follower has the records, so the HW the consumer's
        # disable_continuous count is based on includes them.
        config = (fluvio.TopicProducerConfigBuilder().set_specific_partitioner(p)
                  .isolation(fluvio.Isolation.ReadCommitted).timeout(10_000).build())
        producer = client.topic_producer_with_config(topic, config)
        outputs = [producer.send_string(f"a{p}-{i}") for i in range(10)]
        producer.flush()
        assert [(o.wait().partition_id()) for o in outputs] == [p] * 10
        values = [r.value_string() for r in consume(client, topic, Offset.beginning(), partitions=[p])]
        assert values == [f"a{p}-{i}" for i in range(10)]
