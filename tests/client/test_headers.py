"""Record headers: a round trip through fluvial's client, and what a client that did not enable
them gets (the same records without headers, as the official client must see them)."""

from __future__ import annotations

import pytest
import trio

from fluvial import Offset
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import spu_api as api
from fluvial.protocol.headers_api import EnableRecordHeadersRequest
from fluvial.protocol.record import decode_record_set
from fluvial.protocol.record import frame_batch
from fluvial.protocol.record_headers import (
    ATTR_HEADERS, encode_header_records, encode_headers_batch, has_headers, set_attributes,
)

from .conftest import TEST_TIMEOUT


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
async def test_headers_round_trip_through_fluvials_client(fl, new_topic, compression):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic, compression=compression, linger=0.05) as p:
            await p.send(b"plain")
            await p.send(b"one", key=b"k", headers={"trace": b"t-1", "kind": "text"})
            await p.send(b"two", headers=[("dup", b"a"), ("dup", b"b")])
            await p.send(b"three")
        async with fl.consumer(topic, partition=0, offset=Offset.beginning(),
                               continuous=False) as c:
            got = [r async for r in c]
        assert [r.value for r in got] == [b"plain", b"one", b"two", b"three"]
        assert [r.headers for r in got] == [
            (), (("trace", b"t-1"), ("kind", b"text")), (("dup", b"a"), ("dup", b"b")), ()]
        assert got[1].key == b"k" and [r.offset for r in got] == [0, 1, 2, 3]


async def test_a_client_that_did_not_enable_headers_gets_them_stripped(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        async with fl.producer(topic, linger=0.05) as p:
            for i in range(5):
                await p.send(b"v%d" % i, headers={"i": str(i)} if i % 2 else None)
        spu = await fl.metadata.spu(fl.metadata.leader_of(topic, 0))
        host, port = spu.spec.public_endpoint.host(), spu.spec.public_endpoint.port

        async def fetch(enable: bool) -> bytes:
            """The first StreamFetch answer's record set, as a client of each kind gets it."""
            async with open_connection(host, port) as conn:
                await conn.handshake()
                if enable:
                    await conn.call(EnableRecordHeadersRequest())
                async with conn.open_stream(api.StreamFetchRequest(topic, 0, 0)) as stream:
                    async for msg in stream:
                        return msg.partition.records

        plain = await fetch(False)
        assert not has_headers(plain)
        assert [(r.offset, r.value) for r in decode_record_set(plain)] == [
            (i, b"v%d" % i) for i in range(5)]
        assert has_headers(await fetch(True))


async def test_a_malformed_headers_batch_is_refused_and_the_topic_stays_readable(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        good = encode_headers_batch([(None, b"ok", (("h", b"1"),))], first_timestamp=1)
        section, _ = encode_header_records([(None, b"v", (("k", b"val"),))])
        bad = bytearray(section)
        bad[-7] = 0x7E  # a header count of 63 in a record that holds one: a valid CRC all the same
        bad_batch = set_attributes(frame_batch(bytes(bad), count=1, compression=0, first_timestamp=1,
                                               max_time_stamp=1), ATTR_HEADERS)
        _, conn = await fl.leader_connection(topic, 0)
        for batch, ok in ((bad_batch, False), (good, True)):
            req = api.ProduceRequest(None, api.Isolation.ReadUncommitted, 1000, [
                api.TopicProduceData(topic, [api.PartitionProduceData(0, batch)])], [])
            resp = await conn.call(req)
            assert resp.responses[0].partitions[0].error_code.ok is ok
        async with fl.consumer(topic, partition=0, continuous=False) as c:
            assert [(r.value, r.headers) for r in [r async for r in c]] == [(b"ok", (("h", b"1"),))]
