"""Producer and consumer against an in-process cluster."""

from __future__ import annotations

import time

import pytest
import trio

import fluvial
from fluvial import Offset
from fluvial.client.partitioner import partition_for_key
from fluvial.errors import ErrorCode, FluvialError

from .conftest import TEST_TIMEOUT


async def consume_all(fl, topic, **kw):
    out = []
    async with fl.consumer(topic, **kw) as c:
        async for r in c:
            out.append(r)
    return out


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_round_trip_with_every_codec_keyed_and_unkeyed(fl, new_topic, compression):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(3)
        sent = []
        async with fl.producer(topic, compression=compression) as p:
            futures = []
            for i in range(60):
                key = None if i % 3 == 0 else b"key-%d" % (i % 7)
                value = b"value-%d-" % i + bytes(i)
                futures.append((key, value, await p.send(value, key=key)))
            for key, value, f in futures:
                meta = await f
                sent.append((meta.partition, meta.offset, key, value))
        got = await consume_all(fl, topic, continuous=False)
        assert sorted((r.partition, r.offset, r.key, r.value) for r in got) == sorted(sent)
        for partition, _, key, _ in sent:
            if key is not None:
                assert partition == partition_for_key(key, 3)
        now_ms = time.time() * 1000
        assert all(now_ms - 60_000 < r.timestamp <= now_ms + 1000 for r in got)


async def test_unkeyed_records_go_round_robin_and_offsets_are_consecutive(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(2)
        async with fl.producer(topic) as p:
            metas = [await (await p.send(b"%d" % i)) for i in range(6)]
        assert [m.partition for m in metas] == [0, 1, 0, 1, 0, 1]
        assert [m.offset for m in metas] == [0, 0, 1, 1, 2, 2]


async def test_send_many_and_flush(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(2)
        p = fl.producer(topic, batch_size=500)
        futures = await p.send_many([b"plain-%d" % i for i in range(100)] + [(b"k", b"keyed")])
        await p.flush()
        assert all(f.done() for f in futures)
        metas = [f.result() for f in futures]
        assert metas[-1].partition == partition_for_key(b"k", 2)
        per_partition = {}
        for m in metas:
            per_partition.setdefault(m.partition, []).append(m.offset)
        assert all(offsets == list(range(len(offsets))) for offsets in per_partition.values())
        await p.aclose()
        with pytest.raises(fluvial.ProducerClosedError):
            await p.send(b"late")


async def test_send_many_deals_unkeyed_values_round_robin_like_send(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(3)
        async with fl.producer(topic) as p:
            first = await p.send(b"v0")  # the round robin goes on from here
            many = await p.send_many([b"v%d" % i for i in range(1, 8)])
            last = await p.send(b"v8")
        metas = [f.result() for f in [first, *many, last]]
        assert [m.partition for m in metas] == [i % 3 for i in range(9)]
        assert [m.offset for m in metas] == [i // 3 for i in range(9)]
        got = await consume_all(fl, topic, continuous=False)
        assert sorted((r.partition, r.offset, r.value) for r in got) == sorted(
            (i % 3, i // 3, b"v%d" % i) for i in range(9))


async def test_str_values_and_keys_are_sent_as_utf8(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            await p.send("héllo", key="ключ")
        (r,) = await consume_all(fl, topic, continuous=False)
        assert (r.key_string(), r.value_string()) == ("ключ", "héllo")


async def test_linger_batches_records_and_a_specific_partitioner(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(3)
        async with fl.producer(topic, linger=0.05, partitioner=2) as p:
            futures = [await p.send(b"%d" % i, key=b"any") for i in range(20)]
        metas = [f.result() for f in futures]
        assert {m.partition for m in metas} == {2}
        assert [m.offset for m in metas] == list(range(20))


@pytest.mark.parametrize("offset, expected", [
    (Offset.beginning(), list(range(10))),
    (Offset.from_beginning(3), list(range(3, 10))),
    (Offset.absolute(7), [7, 8, 9]),
    (Offset.from_end(2), [8, 9]),
    (Offset.end(), []),
    (Offset.from_beginning(50), []),
    (Offset.from_end(50), list(range(10))),
])
async def test_every_offset_kind(fl, new_topic, offset, expected):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            await p.send_many([b"%d" % i for i in range(10)])
        got = await consume_all(fl, topic, offset=offset, continuous=False)
        assert [r.offset for r in got] == expected
        assert [r.value for r in got] == [b"%d" % i for i in expected]


async def test_end_is_inclusive_and_waits_for_records_to_arrive(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            await p.send_many([b"a", b"b"])
            got = []
            async with fl.consumer(topic, end=4) as c:
                async for r in c:
                    got.append(r.offset)
                    if r.offset == 1:
                        await p.send_many([b"c", b"d", b"e", b"f"])
                        await p.flush()
        assert got == [0, 1, 2, 3, 4]
        assert [r.offset for r in await consume_all(fl, topic, offset=Offset.absolute(2), end=3)] == [2, 3]


async def test_continuous_false_stops_at_the_end_seen_when_opening(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(2)
        async with fl.producer(topic) as p:
            await p.send_many([b"%d" % i for i in range(8)])
            await p.flush()
            got = []
            async with fl.consumer(topic, continuous=False) as c:
                async for r in c:
                    got.append(r)
                    if len(got) == 1:
                        await p.send_many([b"late"] * 4)
                        await p.flush()
        assert len(got) == 8 and b"late" not in {r.value for r in got}
        assert await consume_all(fl, await new_topic(), continuous=False) == []


async def test_live_tail_receives_records_produced_after_it_started(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.consumer(topic, offset=Offset.end()) as c, fl.producer(topic) as p:
            for i in range(5):
                await (await p.send(b"live-%d" % i))
                r = await c.__anext__()
                assert (r.offset, r.value) == (i, b"live-%d" % i)


async def test_small_max_bytes_still_delivers_everything_in_order(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic, batch_size=200) as p:
            await p.send_many([bytes([i]) * 50 for i in range(40)])
        got = await consume_all(fl, topic, continuous=False, max_bytes=120)
        assert [r.offset for r in got] == list(range(40))
        assert [r.value for r in got] == [bytes([i]) * 50 for i in range(40)]


async def test_a_single_partition_and_a_list_of_partitions(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(3)
        async with fl.producer(topic) as p:
            await p.send_many([b"%d" % i for i in range(9)])
        only1 = await consume_all(fl, topic, partition=1, continuous=False)
        assert {r.partition for r in only1} == {1} and len(only1) == 3
        two = await consume_all(fl, topic, partition=[0, 2], continuous=False)
        assert {r.partition for r in two} == {0, 2} and len(two) == 6


async def test_receive_many_returns_lists_and_an_empty_one_at_the_end(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            await p.send_many([b"x"] * 300)
        seen = 0
        async with fl.consumer(topic, continuous=False) as c:
            while batch := await c.receive_many():
                assert [r.offset for r in batch] == list(range(seen, seen + len(batch)))
                seen += len(batch)
            assert await c.receive_many() == []
        assert seen == 300


async def test_read_committed_producer_and_consumer(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic, isolation="read_committed") as p:
            metas = [await f for f in await p.send_many([b"a", b"b"])]
        assert [m.offset for m in metas] == [0, 1]
        got = await consume_all(fl, topic, isolation="read_committed", continuous=False)
        assert [r.value for r in got] == [b"a", b"b"]


async def test_at_most_once_delivers_in_the_normal_case(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic, delivery="at_most_once") as p:
            futures = await p.send_many([b"%d" % i for i in range(50)])
        assert [f.result().offset for f in futures] == list(range(50))


async def test_in_flight_limits(fl, new_topic):
    topic = await new_topic()
    with pytest.raises(ValueError, match="max_in_flight must be 1"):
        fl.producer(topic, max_in_flight=3)
    with pytest.raises(ValueError):
        fl.producer(topic, delivery="at_most_once", max_in_flight=0)
    assert fl.producer(topic, delivery="at_most_once").max_in_flight == 5
    assert fl.producer(topic).max_in_flight == 1


async def test_producer_errors_are_typed(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        with pytest.raises(fluvial.errors.TopicNotFoundError):
            async with fl.producer("no-such-topic"):
                pass
        topic = await new_topic(compression="gzip")
        with pytest.raises(fluvial.errors.CompressionError, match="does not match"):
            await fl.producer(topic, compression="lz4").send(b"x")
        async with fl.producer(topic) as p:  # the topic's codec is used
            assert p.compression == fluvial.Compression.Gzip
            await p.send(b"gz")
        p = fl.producer(topic, max_request_size=100)
        with pytest.raises(fluvial.errors.MessageTooLargeError):
            await p.send(bytes(200))
        await p.aclose()
        with pytest.raises(TypeError):
            await fl.producer(topic).send(12345)


async def test_a_topic_deleted_under_a_producer_fails_its_records(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        p = fl.producer(topic, delivery_timeout=2)
        await (await p.send(b"before"))
        await fl.admin.delete_topic(topic)
        f = await p.send(b"after")
        with pytest.raises(FluvialError) as e:
            await f
        assert e.value.code in (ErrorCode.TopicNotFound, ErrorCode.NotLeaderForPartition)
        await p.aclose()  # the failure was reported to the future's owner; nothing is pending


async def test_consumer_errors_are_typed(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        with pytest.raises(fluvial.errors.TopicNotFoundError):
            await consume_all(fl, "missing-topic")
        topic = await new_topic()
        with pytest.raises(fluvial.errors.OtherError, match="greater than leo"):
            await consume_all(fl, topic, offset=Offset.absolute(5))
        with pytest.raises(fluvial.errors.OffsetManagementDisabledError):
            fl.consumer(topic).commit()


async def test_a_topic_deleted_under_a_consumer_ends_it_with_an_error(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.consumer(topic, reconnect_timeout=2) as c:
            await fl.admin.delete_topic(topic)
            with pytest.raises(FluvialError):
                async for _ in c:
                    pass


async def test_producer_and_consumer_share_one_connection_per_spu(fl, new_topic, cluster):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(2)
        async with fl.producer(topic) as p, fl.consumer(topic, offset=Offset.end()) as c:
            await (await p.send(b"x"))
            assert (await c.__anext__()).value == b"x"
            assert list(fl._spu_conns) == [5001]


async def test_leaving_connect_flushes_producers_that_were_not_closed(cluster, new_topic, fl):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fluvial.connect(endpoint=cluster.endpoint) as other:
            p = other.producer(topic, linger=30)
            futures = await p.send_many([b"a", b"b"])
        assert [f.result().offset for f in futures] == [0, 1]
        assert [r.value for r in await consume_all(fl, topic, continuous=False)] == [b"a", b"b"]


async def test_many_consumers_one_after_another_on_one_connection(fl, new_topic):
    """A closed consumer ends its stream on the SPU (CloseStreams): a long-lived connection
    that opened and closed more consumers than the SPU's in-flight requests per connection (128)
    still gets answers (each parked stream used to keep a request slot for ever)."""
    with trio.fail_after(TEST_TIMEOUT * 2):
        topic = await new_topic()
        async with fl.producer(topic) as p:
            await (await p.send(b"x")).wait()
        for _ in range(150):
            async with fl.consumer(topic, continuous=False) as c:
                assert [r.value async for r in c] == [b"x"]


async def test_a_response_is_acknowledged_once_its_records_are_taken(fl, new_topic, monkeypatch):
    """UpdateOffsets for a stream response goes when the application asks for more, not when
    the response arrives: the SPU sends ahead only what the application takes (a consumer that
    stops reading stops the stream after its window), and the write is off the way from a
    record's arrival to the application."""
    from fluvial.client import consumer as consumer_module

    acks: list[int] = []
    real_ack = consumer_module._PartitionReader._ack

    async def spy(self, conn, offset, stream_id):
        acks.append(offset)
        await real_ack(self, conn, offset, stream_id)

    monkeypatch.setattr(consumer_module._PartitionReader, "_ack", spy)
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(1)
        async with fl.producer(topic) as p, fl.consumer(topic, offset=Offset.beginning()) as c:
            it = c.__aiter__()
            await (await p.send(b"first"))
            assert (await it.__anext__()).value == b"first"
            assert acks == []  # handed out, not yet acknowledged
            await (await p.send(b"second"))
            assert (await it.__anext__()).value == b"second"
            assert acks == [1]  # the first response, acknowledged when the second was asked for
