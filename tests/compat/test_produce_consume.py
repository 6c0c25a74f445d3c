"""Producing and consuming with the official ``fluvio`` client against a 1-SPU cluster (SPU data plane)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest

import fluvio
from fluvio import Offset

from .conftest import (
    DEFAULT_TEST_TIMEOUT_S,
    Cluster,
    consume,
    error_text,
    finish_producer_proc,
    produce_strings,
    record_tuple,
    start_producer_proc,
    take,
    unique_name,
    watchdog,
)

pytestmark = pytest.mark.compat


def _value(i: int) -> bytes:
    # Compressible but not constant, so a codec that mangles data shows up.
    return f"value-{i:06d}|".encode() + b"abcdefgh" * (i % 7 + 3)


# ---------------------------------------------------------------------------------------------------------------
# producers


def test_send_string_offsets_are_contiguous_from_zero(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-strings")
    admin.create_topic(topic)
    values = [f"hello-{i}" for i in range(1000)]
    assert produce_strings(client, topic, values) == [(0, i) for i in range(1000)]

    records = list(consume(client, topic, Offset.beginning()))
    assert [(r.offset(), r.value_string()) for r in records] == list(enumerate(values))
    # send_string sends an empty key (Some(b"")), never None.
    assert {bytes(r.key()) for r in records} == {b""}


@pytest.mark.parametrize(
    "compression",
    [None, fluvio.Compression.None_, fluvio.Compression.Gzip, fluvio.Compression.Snappy,
     fluvio.Compression.Lz4, fluvio.Compression.Zstd],
    ids=["default", "none", "gzip", "snappy", "lz4", "zstd"],
)
def test_keyed_produce_and_consume_back(cluster: Cluster, compression: fluvio.Compression | None) -> None:
    """2000 keyed records per codec (12k in all): offsets from ``wait()`` and the records read back agree."""
    count = 2000
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-codec")
    admin.create_topic(topic)
    if compression is None:
        producer = client.topic_producer(topic)
    else:
        config = fluvio.TopicProducerConfigBuilder().compression(compression).build()
        producer = client.topic_producer_with_config(topic, config)
    outputs = [producer.send(f"key-{i % 17}".encode(), _value(i)) for i in range(count)]
    producer.flush()
    metas = [o.wait() for o in outputs]
    assert [(m.partition_id(), m.offset()) for m in metas] == [(0, i) for i in range(count)]
    assert outputs[0].wait() is None  # a second wait() gives nothing

    records = [record_tuple(r) for r in consume(client, topic, Offset.beginning())]
    expected = [(i, f"key-{i % 17}".encode(), _value(i)) for i in range(count)]
    assert len(records) == count
    assert records == expected


def test_send_all_and_flush_on_idle_producer(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-sendall")
    admin.create_topic(topic)
    producer = client.topic_producer(topic)
    producer.flush()  # nothing queued: must still succeed
    outputs = producer.send_all([(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)])
    producer.flush()
    assert [o.wait().offset() for o in outputs] == list(range(50))
    outputs = producer.send_all([(b"k", f"w{i}".encode()) for i in range(5)])
    producer.flush()
    producer.flush()
    assert [o.wait().offset() for o in outputs] == list(range(50, 55))


def test_record_fields_key_value_timestamp(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-fields")
    admin.create_topic(topic)
    before_ms = int(time.time() * 1000)
    producer = client.topic_producer(topic)
    out = producer.send(b"the-key", b"\x00\x01binary\xff")
    producer.flush()
    assert out.wait().offset() == 0
    after_ms = int(time.time() * 1000)

    (record,) = list(consume(client, topic, Offset.beginning()))
    assert record.offset() == 0
    assert bytes(record.key()) == b"the-key"
    assert record.key_string() == "the-key"
    assert bytes(record.value()) == b"\x00\x01binary\xff"
    assert before_ms - 1000 <= record.timestamp() <= after_ms + 1000


def test_large_record(cluster: Cluster) -> None:
    """A 512 KiB record (over the 16 KiB batch size, under the 1 MiB request limit) round-trips."""
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-large")
    admin.create_topic(topic)
    payload = bytes(range(256)) * 2048
    producer = client.topic_producer(topic)
    first = producer.send(b"big", payload)
    second = producer.send_string("after")
    producer.flush()
    assert (first.wait().offset(), second.wait().offset()) == (0, 1)
    records = list(consume(client, topic, Offset.beginning()))
    assert [bytes(r.value()) for r in records] == [payload, b"after"]
    # A batch larger than max_bytes must still be delivered whole (spu.md §3.3 "always send at least one batch").
    records = list(consume(client, topic, Offset.beginning(), max_bytes=4096))
    assert [bytes(r.value()) for r in records] == [payload, b"after"]


def test_produce_to_missing_topic_fails(cluster: Cluster) -> None:
    client = cluster.connect()
    missing = unique_name("pc-missing")
    with pytest.raises(Exception) as info:
        client.topic_producer(missing)
    assert "Topic not found" in error_text(info.value)


def test_consume_missing_topic_fails(cluster: Cluster) -> None:
    client = cluster.connect()
    with pytest.raises(Exception) as info:
        consume(client, unique_name("pc-missing"), Offset.beginning())
    assert "Topic not found" in error_text(info.value)


def test_read_committed_producer(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-committed")
    admin.create_topic(topic)
    config = (fluvio.TopicProducerConfigBuilder().isolation(fluvio.Isolation.ReadCommitted)
              .timeout(5000).build())
    producer = client.topic_producer_with_config(topic, config)
    outputs = [producer.send_string(f"c{i}") for i in range(100)]
    producer.flush()
    assert [o.wait().offset() for o in outputs] == list(range(100))


def test_at_most_once_producer(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-atmost")
    admin.create_topic(topic)
    config = fluvio.TopicProducerConfigBuilder().delivery_semantic(fluvio.DeliverySemantic.AtMostOnce).build()
    producer = client.topic_producer_with_config(topic, config)
    outputs = [producer.send_string(f"m{i}") for i in range(20)]
    producer.flush()
    assert [o.wait().offset() for o in outputs] == list(range(20))
    assert [r.value_string() for r in consume(client, topic, Offset.beginning())] == [f"m{i}" for i in range(20)]


def test_concurrent_producers_from_two_processes(cluster: Cluster) -> None:
    """Two processes appending to one partition at once: every record gets its own offset, none is lost."""
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-concurrent")
    admin.create_topic(topic)
    procs = [start_producer_proc(cluster, topic, 500, prefix=name, flush_every=25) for name in ("left", "right")]
    reports = [finish_producer_proc(p) for p in procs]
    offsets = [r["offset"] for report in reports for r in report]
    assert sorted(offsets) == list(range(1000))
    for report in reports:
        mine = [r["offset"] for r in report]
        assert mine == sorted(mine)

    records = list(consume(client, topic, Offset.beginning()))
    assert [r.offset() for r in records] == list(range(1000))
    by_offset = {r.offset(): r.value_string() for r in records}
    for name, report in zip(("left", "right"), reports, strict=True):
        assert [by_offset[r["offset"]] for r in report] == [f"{name}-{i}" for i in range(500)]


def test_past_end_offset_errors_on_deprecated_stream(cluster: Cluster, twenty: str) -> None:
    """A start beyond the LEO is an error on the stream; the deprecated, retry-less iterator surfaces it
    (``OffsetOutOfRange`` ends it quietly, anything else raises). It must neither hang nor yield records."""
    client = cluster.connect()
    stream = client.partition_consumer(twenty, 0).stream(Offset.absolute(30))
    with pytest.raises((Exception, StopIteration)):
        next(stream)


# ---------------------------------------------------------------------------------------------------------------
# consumers: start offsets


@pytest.fixture(scope="module")
def twenty(cluster: Cluster) -> str:
    """A topic holding offsets 0..19 (values ``r0``..``r19``) in at least two batches."""
    topic = unique_name("pc-twenty")
    with watchdog(DEFAULT_TEST_TIMEOUT_S, "filling the shared 20-record topic"):
        cluster.admin().create_topic(topic)
        client = cluster.connect()
        assert produce_strings(client, topic, [f"r{i}" for i in range(10)]) == [(0, i) for i in range(10)]
        assert produce_strings(client, topic, [f"r{i}" for i in range(10, 20)]) == [(0, i) for i in range(10, 20)]
    return topic


OFFSET_CASES: list[tuple[str, Callable[[], Offset], list[int]]] = [
    ("beginning", Offset.beginning, list(range(20))),
    ("absolute-0", lambda: Offset.absolute(0), list(range(20))),
    ("absolute-13", lambda: Offset.absolute(13), list(range(13, 20))),
    ("absolute-19", lambda: Offset.absolute(19), [19]),
    ("absolute-past-end", lambda: Offset.absolute(25), []),
    ("from-beginning-5", lambda: Offset.from_beginning(5), list(range(5, 20))),
    ("from-beginning-past-end", lambda: Offset.from_beginning(50), []),
    ("from-end-1", lambda: Offset.from_end(1), [19]),
    ("from-end-4", lambda: Offset.from_end(4), list(range(16, 20))),
    ("from-end-past-start", lambda: Offset.from_end(50), list(range(20))),
    ("end", Offset.end, []),
]


@pytest.mark.parametrize(("offset", "expected"), [c[1:] for c in OFFSET_CASES], ids=[c[0] for c in OFFSET_CASES])
def test_disable_continuous_start_offsets(cluster: Cluster, twenty: str, offset: Callable[[], Offset],
                                          expected: list[int]) -> None:
    client = cluster.connect()
    records = list(consume(client, twenty, offset()))
    assert [r.offset() for r in records] == expected
    assert [r.value_string() for r in records] == [f"r{i}" for i in expected]


@pytest.mark.parametrize(("offset", "expected"), [c[1:] for c in OFFSET_CASES if c[2]],
                         ids=[c[0] for c in OFFSET_CASES if c[2]])
def test_continuous_start_offsets(cluster: Cluster, twenty: str, offset: Callable[[], Offset],
                                  expected: list[int]) -> None:
    client = cluster.connect()
    stream = consume(client, twenty, offset(), disable_continuous=False)
    assert [r.offset() for r in take(stream, len(expected))] == expected


def test_absolute_offset_past_end_yields_nothing(cluster: Cluster, twenty: str) -> None:
    """``absolute(hw)`` with disable_continuous: record count 0, the iterator ends at once."""
    client = cluster.connect()
    assert list(consume(client, twenty, Offset.absolute(20))) == []


def test_small_max_bytes_delivers_everything_in_order(cluster: Cluster) -> None:
    """Many small batches read with ``max_bytes`` far below the total: the SPU must page through them."""
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-maxbytes")
    admin.create_topic(topic)
    config = fluvio.TopicProducerConfigBuilder().batch_size(512).build()
    producer = client.topic_producer_with_config(topic, config)
    outputs = []
    for i in range(300):
        outputs.append(producer.send(b"", _value(i)))
        if i % 10 == 9:
            producer.flush()
    producer.flush()
    assert [o.wait().offset() for o in outputs] == list(range(300))

    records = list(consume(client, topic, Offset.beginning(), max_bytes=2048))
    assert [(r.offset(), bytes(r.value())) for r in records] == [(i, _value(i)) for i in range(300)]

    live = consume(client, topic, Offset.beginning(), max_bytes=2048, disable_continuous=False)
    assert [r.offset() for r in take(live, 300)] == list(range(300))


def test_deprecated_partition_consumer(cluster: Cluster, twenty: str) -> None:
    client = cluster.connect()
    stream = client.partition_consumer(twenty, 0).stream(Offset.absolute(5))
    assert [r.offset() for r in take(stream, 15)] == list(range(5, 20))

    config = fluvio.ConsumerConfig()
    config.disable_continuous()
    records = list(client.partition_consumer(twenty, 0).stream_with_config(Offset.beginning(), config))
    assert [r.value_string() for r in records] == [f"r{i}" for i in range(20)]


# ---------------------------------------------------------------------------------------------------------------
# live tail


def test_live_tail_from_end_while_another_process_produces(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-tail")
    admin.create_topic(topic)
    assert produce_strings(client, topic, ["old-0", "old-1", "old-2"]) == [(0, 0), (0, 1), (0, 2)]

    stream = consume(client, topic, Offset.end(), disable_continuous=False)  # start resolved to hw = 3 here
    proc = start_producer_proc(cluster, topic, 60, prefix="live", flush_every=7)
    records = take(stream, 60)
    report = finish_producer_proc(proc)

    assert [(r.offset(), r.value_string()) for r in records] == [(3 + i, f"live-{i}") for i in range(60)]
    assert report == [{"partition": 0, "offset": 3 + i} for i in range(60)]


def test_live_tail_two_consumers_same_topic(cluster: Cluster) -> None:
    """Two open streams (one caught up at ``end()``, one from ``beginning()``) both see the new records."""
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-tail2")
    admin.create_topic(topic)
    from_end = consume(client, topic, Offset.end(), disable_continuous=False)
    other = cluster.connect()
    from_start = consume(other, topic, Offset.beginning(), disable_continuous=False)
    proc = start_producer_proc(cluster, topic, 25, prefix="both", key="k")
    first = [(r.offset(), r.value_string()) for r in take(from_end, 25)]
    second = [(r.offset(), r.value_string()) for r in take(from_start, 25)]
    finish_producer_proc(proc)
    expected = [(i, f"both-{i}") for i in range(25)]
    assert first == expected
    assert second == expected


# ---------------------------------------------------------------------------------------------------------------
# consumer offsets


def _offsets_for(client: fluvio.Fluvio, consumer_id: str, topic: str) -> list[tuple[str, str, int, int]]:
    return sorted((c.consumer_id, c.topic, c.partition, c.offset)
                  for c in client.consumer_offsets() if c.topic == topic and c.consumer_id == consumer_id)


def _offset_consumer(client: fluvio.Fluvio, topic: str, consumer_id: str) -> fluvio.ConsumerIterator:
    builder = fluvio.ConsumerConfigExtBuilder(topic)
    builder.offset_start(Offset.beginning())
    builder.offset_consumer(consumer_id)
    builder.offset_strategy(fluvio.OffsetManagementStrategy.MANUAL)
    return client.consumer_with_config(builder.build())


def test_manual_consumer_offsets_commit_flush_resume_delete(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-offsets")
    admin.create_topic(topic)
    produce_strings(client, topic, [f"o{i}" for i in range(10)])
    consumer_id = "c1"

    stream = _offset_consumer(client, topic, consumer_id)
    assert [r.offset() for r in take(stream, 4)] == [0, 1, 2, 3]
    stream.offset_commit()
    stream.offset_flush()
    del stream
    gc.collect()
    assert _offsets_for(client, consumer_id, topic) == [(consumer_id, topic, 0, 3)]
    (entry,) = [c for c in client.consumer_offsets() if c.topic == topic]
    assert entry.modified_time > 0

    # Reopen: resumes at stored + 1.
    stream = _offset_consumer(client, topic, consumer_id)
    assert [r.offset() for r in take(stream, 6)] == [4, 5, 6, 7, 8, 9]
    stream.offset_commit()
    stream.offset_flush()
    del stream
    gc.collect()
    assert _offsets_for(client, consumer_id, topic) == [(consumer_id, topic, 0, 9)]

    # Another consumer id on the same topic is independent.
    other = _offset_consumer(client, topic, "c2")
    assert next(other).offset() == 0
    other.offset_commit()
    other.offset_flush()
    del other
    gc.collect()
    assert _offsets_for(client, "c2", topic) == [("c2", topic, 0, 0)]
    assert _offsets_for(client, consumer_id, topic) == [(consumer_id, topic, 0, 9)]

    client.delete_consumer_offset(consumer_id, topic, 0)
    assert _offsets_for(client, consumer_id, topic) == []
    assert _offsets_for(client, "c2", topic) == [("c2", topic, 0, 0)]

    # Without a stored offset the consumer starts from its offset_start again.
    stream = _offset_consumer(client, topic, consumer_id)
    assert next(stream).offset() == 0


def test_stored_consumer_offset_is_the_base_for_relative_offsets(cluster: Cluster) -> None:
    """With a stored offset S, ``from_beginning(n)`` starts at S+1+n and ``from_end(n)`` at S+1-n (spu.md §9.2)."""
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-offbase")
    admin.create_topic(topic)
    produce_strings(client, topic, [f"b{i}" for i in range(10)])
    stream = _offset_consumer(client, topic, "c-base")
    assert [r.offset() for r in take(stream, 4)] == [0, 1, 2, 3]
    stream.offset_commit()
    stream.offset_flush()
    del stream

    for offset, first in ((Offset.from_beginning(2), 6), (Offset.from_end(1), 3), (Offset.absolute(8), 8)):
        builder = fluvio.ConsumerConfigExtBuilder(topic)
        builder.offset_start(offset)
        builder.offset_consumer("c-base")
        builder.offset_strategy(fluvio.OffsetManagementStrategy.MANUAL)
        assert next(client.consumer_with_config(builder.build())).offset() == first


def test_offset_flush_without_new_commit_is_harmless(cluster: Cluster) -> None:
    admin, client = cluster.admin(), cluster.connect()
    topic = unique_name("pc-offsets2")
    admin.create_topic(topic)
    produce_strings(client, topic, ["x", "y"])
    stream = _offset_consumer(client, topic, "c-idle")
    assert next(stream).offset() == 0
    stream.offset_flush()  # nothing committed yet
    stream.offset_commit()
    stream.offset_flush()
    stream.offset_flush()  # already flushed
    assert _offsets_for(client, "c-idle", topic) == [("c-idle", topic, 0, 0)]
