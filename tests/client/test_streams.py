"""Bounded streams (fluvial.client.stream) against an in-process cluster: EOS after every
record, abort on failure or cancellation, session timeouts, several streams in one topic,
back-pressure, and markers invisible to plain consumers."""

from __future__ import annotations

import pytest
import trio

import fluvial
import fluvial.sync
from fluvial import Offset, SinkClosed, StreamIncomplete

from .conftest import TEST_TIMEOUT


async def read_all(fl, topic, stream, **kw):
    return [r async for r in fl.source(topic, stream=stream, **kw)]


async def test_a_stream_ends_exactly_at_its_eos(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(partitions=2)
        async with fl.sink(topic, stream="s1") as sink:
            for i in range(50):
                await sink.send(b"v%d" % i, headers={"i": str(i)})
        got = await read_all(fl, topic, "s1")
        assert [r.value for r in got] == [b"v%d" % i for i in range(50)]
        assert [r.headers for r in got[:2]] == [(("i", b"0"),), (("i", b"1"),)]
        # markers are no data for a plain consumer; the stream's records are
        async with fl.consumer(topic, continuous=False) as c:
            plain = [r async for r in c]
        assert sorted(r.value for r in plain) == sorted(b"v%d" % i for i in range(50))


async def test_a_source_opened_first_waits_for_the_stream(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        got = []
        async with trio.open_nursery() as n:
            async def read():
                got.extend(await read_all(fl, topic, "late"))
            n.start_soon(read)
            async with fl.sink(topic, stream="other") as other:
                await other.send(b"not mine")
            async with fl.sink(topic, stream="late") as sink:
                await sink.send(b"a")
                await sink.send(b"b")
        assert [r.value for r in got] == [b"a", b"b"]


async def test_streams_sharing_a_partition_are_read_apart(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.sink(topic, stream="x") as x, fl.sink(topic, stream="y") as y:
            for i in range(10):
                await x.send(b"x%d" % i)
                await y.send(b"y%d" % i)
        assert [r.value for r in await read_all(fl, topic, "x")] == [b"x%d" % i for i in range(10)]
        assert [r.value for r in await read_all(fl, topic, "y")] == [b"y%d" % i for i in range(10)]


async def test_a_sink_whose_block_raised_writes_an_abort(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        with pytest.raises(ValueError):
            async with fl.sink(topic, stream="bad") as sink:
                await sink.send(b"1")
                raise ValueError("boom")
        with pytest.raises(StreamIncomplete) as e:
            await read_all(fl, topic, "bad")
        assert e.value.last_offset is not None


async def test_a_cancelled_sink_task_makes_its_sources_raise(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        sent = trio.Event()
        async with trio.open_nursery() as n:
            async def produce():
                async with fl.sink(topic, stream="c") as sink:
                    for i in range(5):
                        await (await sink.send(b"%d" % i))
                    sent.set()
                    await trio.sleep_forever()
            n.start_soon(produce)
            await sent.wait()
            n.cancel_scope.cancel()
        got = []
        with pytest.raises(StreamIncomplete):
            async for r in fl.source(topic, stream="c"):
                got.append(r.value)
        assert got == [b"%d" % i for i in range(5)]


async def test_send_after_close_and_a_second_close_are_errors(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        sink = fl.sink(topic, stream="twice")
        async with sink:
            await sink.send(b"only")
            await sink.aclose()
            with pytest.raises(SinkClosed):
                await sink.send(b"late")
            with pytest.raises(SinkClosed):
                await sink.aclose()
        assert [r.value for r in await read_all(fl, topic, "twice")] == [b"only"]


async def test_a_silent_sink_is_aborted_by_the_leader_after_its_session_timeout(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        sink = fl.sink(topic, stream="ghost", session_timeout=0.5)
        await sink.__aenter__()
        await (await sink.send(b"one"))
        sink._stop_keepalive()  # the sink's process "dies": no keep-alive, no marker
        with pytest.raises(StreamIncomplete):
            await read_all(fl, topic, "ghost")
        await sink._producer.aclose()


async def test_keep_alives_hold_a_slow_sinks_stream_open(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.sink(topic, stream="slow", session_timeout=0.3) as sink:
            await sink.send(b"a")
            await trio.sleep(1.0)  # several session timeouts: keep-alives keep it open
            await sink.send(b"b")
        assert [r.value for r in await read_all(fl, topic, "slow")] == [b"a", b"b"]


async def test_back_pressure_bounds_unacknowledged_bytes(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.sink(topic, stream="bp", max_unacked_bytes=1000) as sink:
            peak = 0
            for i in range(200):
                await sink.send(b"x" * 100)
                peak = max(peak, sink._state.unacked_bytes)
            assert peak <= 1000
        assert len(await read_all(fl, topic, "bp")) == 200


def blocking_streams(endpoint: str) -> dict:
    out: dict = {}
    with fluvial.sync.connect(endpoint=endpoint) as fl:
        fl.admin.create_topic("sync-streams")
        with fl.sink("sync-streams", stream="ok") as sink:
            for i in range(10):
                sink.send(b"%d" % i, headers={"n": str(i)})
        out["ok"] = [(r.value, r.headers) for r in fl.source("sync-streams", stream="ok")]
        with pytest.raises(RuntimeError):
            with fl.sink("sync-streams", stream="broken") as sink:
                sink.send(b"x")
                raise RuntimeError("stop")
        try:
            list(fl.source("sync-streams", stream="broken"))
        except StreamIncomplete as e:
            out["broken"] = e.last_offset
    return out


async def test_the_blocking_sink_and_source(cluster):
    with trio.fail_after(TEST_TIMEOUT):
        out = await trio.to_thread.run_sync(blocking_streams, cluster.endpoint)
    assert out["ok"] == [(b"%d" % i, (("n", b"%d" % i),)) for i in range(10)]
    assert out["broken"] is not None


async def test_a_source_that_cannot_read_on_raises_stream_incomplete(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        sink = fl.sink(topic, stream="cut")
        await sink.__aenter__()
        await (await sink.send(b"first"))
        source = fl.source(topic, stream="cut", reconnect_timeout=0.5)
        assert (await source.__anext__()).value == b"first"
        await cluster.stop_spu(5001)
        with pytest.raises(StreamIncomplete) as e:
            await source.__anext__()
        assert e.value.last_offset == 1  # BEGIN at 0, "first" at 1
        await sink._abort()


async def test_a_stream_on_a_topic_with_fixed_compression(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic(compression="gzip")
        async with fl.sink(topic, stream="z") as sink:
            await sink.send(b"zipped")
        assert [r.value for r in await read_all(fl, topic, "z")] == [b"zipped"]


async def test_a_source_resumes_from_the_offset_after_the_last_record_it_got(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.sink(topic, stream="r") as sink:
            for i in range(10):
                await sink.send(b"%d" % i)
        first = []
        async with fl.source(topic, stream="r") as source:
            async for rec in source:
                first.append(rec)
                if len(first) == 4:
                    break
        resume_at = first[-1].offset + 1  # what a source would keep durably
        rest = await read_all(fl, topic, "r", offset=Offset.absolute(resume_at))
        assert [r.value for r in first + rest] == [b"%d" % i for i in range(10)]
