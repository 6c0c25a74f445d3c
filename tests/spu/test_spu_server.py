"""The SPU's public API against an in-process cluster (SC + SPUs on 127.0.0.1, ports 0)."""

from __future__ import annotations

import struct

import pytest
import trio

from fluvial.errors import Error, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.record import decode_record_set, encode_batch
from fluvial.spu.partition import Lease
from fluvial.testing.cluster import open_test_cluster


async def create_topic(cluster, name, partitions=1, replication=1, **kw):
    host, port = cluster.endpoint.split(":")
    async with open_connection(host, int(port)) as sc:
        await sc.handshake()
        status = await sc.call(sa.ObjectApiCreateRequest.of(name, so.TopicSpec.computed(partitions, replication, **kw)), timeout=30)
        assert status.error_code.ok, status


def leader_port(cluster, spu_id=5001):
    return cluster.spus[spu_id].config.public_port


def produce_req(topic, batches, partition=0, committed=False, timeout_ms=5000):
    return api.ProduceRequest(None, api.Isolation.ReadCommitted if committed else api.Isolation.ReadUncommitted,
                              timeout_ms, [api.TopicProduceData(topic, [
                                  api.PartitionProduceData(partition, b) for b in batches])])


@pytest.fixture
async def cluster(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as c:
            yield c


async def test_produce_assigns_offsets_and_stream_fetch_returns_the_stored_bytes(cluster):
    with trio.fail_after(30):
        await create_topic(cluster, "t1")
        async with open_connection("127.0.0.1", leader_port(cluster)) as spu:
            await spu.handshake()
            b1 = encode_batch([b"a", b"b"], base_offset=1)
            b2 = encode_batch([(b"k", b"c")])
            resp = await spu.call(produce_req("t1", [b1, b2]))
            parts = resp.responses[0].partitions
            assert [(p.error_code.ok, p.base_offset) for p in parts] == [(True, 0), (True, 2)]
            offsets = await spu.call(api.FetchOffsetsRequest([api.FetchOffsetTopic("t1", [api.FetchOffsetPartition(0)])]))
            p = offsets.topics[0].partitions[0]
            assert (p.start_offset, p.last_stable_offset) == (0, 3)
            async with spu.open_stream(api.StreamFetchRequest("t1", 0, 1)) as stream:
                async for msg in stream:
                    recs = decode_record_set(msg.partition.records)
                    assert [(r.offset, r.key, r.value) for r in recs] == [(0, None, b"a"), (1, None, b"b"), (2, b"k", b"c")]
                    assert msg.stream_id == 1 and msg.partition.high_watermark == 3
                    # stored bytes equal produced bytes apart from base offset and leader epoch
                    stored = msg.partition.records
                    assert stored[8:12] == b1[8:12] and stored[16:len(b1)] == b1[16:]
                    assert struct.unpack(">i", stored[12:16])[0] == 1  # the leader's epoch
                    break


async def test_live_stream_pushes_new_data_after_acknowledgement(cluster):
    with trio.fail_after(30):
        await create_topic(cluster, "live")
        async with open_connection("127.0.0.1", leader_port(cluster)) as spu:
            await spu.handshake()
            async with spu.open_stream(api.StreamFetchRequest("live", 0, 0)) as stream:
                for i in range(3):
                    await spu.call(produce_req("live", [encode_batch([b"v%d" % i])]))
                    msg = await stream.__anext__()
                    recs = decode_record_set(msg.partition.records)
                    assert recs[-1].value == b"v%d" % i
                    ack = api.UpdateOffsetsRequest([api.OffsetUpdate(recs[-1].offset + 1, msg.stream_id)])
                    st = await spu.call(ack)
                    assert st.status[0].error.ok


async def test_max_bytes_sends_whole_batches_and_resumes_on_ack(cluster):
    with trio.fail_after(30):
        await create_topic(cluster, "mb")
        async with open_connection("127.0.0.1", leader_port(cluster)) as spu:
            await spu.handshake()
            batches = [encode_batch([bytes(100)]) for _ in range(5)]
            await spu.call(produce_req("mb", batches))
            seen = []
            async with spu.open_stream(api.StreamFetchRequest("mb", 0, 0, max_bytes=10)) as stream:
                async for msg in stream:
                    recs = decode_record_set(msg.partition.records)
                    assert len(recs) == 1  # one whole batch although it exceeds max_bytes
                    seen.append(recs[0].offset)
                    if len(seen) == 5:
                        break
                    await spu.call(api.UpdateOffsetsRequest([api.OffsetUpdate(recs[0].offset + 1, msg.stream_id)]))
            assert seen == [0, 1, 2, 3, 4]


async def test_produce_errors(cluster):
    with trio.fail_after(30):
        await create_topic(cluster, "errs")
        async with open_connection("127.0.0.1", leader_port(cluster)) as spu:
            await spu.handshake()
            resp = await spu.call(produce_req("nope", [encode_batch([b"x"])]))
            assert resp.responses[0].partitions[0].error_code.code == ErrorCode.TopicNotFound
            resp = await spu.call(produce_req("errs", [encode_batch([b"x"])], partition=7))
            assert resp.responses[0].partitions[0].error_code.code == ErrorCode.NotLeaderForPartition
            bad = bytearray(encode_batch([b"payload"]))
            bad[-3] ^= 0x01  # flip a bit under the CRC
            resp = await spu.call(produce_req("errs", [bytes(bad)]))
            err = resp.responses[0].partitions[0].error_code
            assert err.code == ErrorCode.Other and "CRC" in err.args[0]
            offsets = await spu.call(api.FetchOffsetsRequest([api.FetchOffsetTopic("errs", [api.FetchOffsetPartition(0)])]))
            assert offsets.topics[0].partitions[0].last_stable_offset == 0  # nothing was written


async def test_stream_fetch_beyond_leo_and_not_leader(cluster):
    with trio.fail_after(30):
        await create_topic(cluster, "beyond")
        async with open_connection("127.0.0.1", leader_port(cluster)) as spu:
            await spu.handshake()
            async with spu.open_stream(api.StreamFetchRequest("beyond", 0, 10)) as stream:
                msg = await stream.__anext__()
                assert msg.partition.error_code.code == ErrorCode.Other
                assert "greater than leo" in msg.partition.error_code.args[0]
            async with spu.open_stream(api.StreamFetchRequest("beyond", 3, 0)) as stream:
                msg = await stream.__anext__()
                assert msg.stream_id == 0
                assert msg.partition.error_code.code == ErrorCode.NotLeaderForPartition


async def test_unknown_api_key_gets_an_error_and_garbage_closes_only_that_connection(cluster):
    with trio.fail_after(30):
        port = leader_port(cluster)
        s = await trio.open_tcp_stream("127.0.0.1", port)
        async with s:
            await _unknown_key_then_garbage(s)
        # others are still served
        async with open_connection("127.0.0.1", port) as spu:
            versions = await spu.handshake()
            assert any(k.api_key == api.SpuApiKey.StreamFetch for k in versions.api_keys)


async def _unknown_key_then_garbage(s):
    payload = struct.pack(">Hhi", 4242, 0, 9) + b"\x00\x00"
    await s.send_all(struct.pack(">i", len(payload)) + payload)
    data = b""
    while len(data) < 10:
        data += await s.receive_some()
    size, corr, code = struct.unpack(">iih", data[:10])
    assert corr == 9 and code == ErrorCode.Other
    # an oversized frame closes this connection ...
    await s.send_all(struct.pack(">i", 0x7FFFFFFF))
    assert await s.receive_some() == b""


async def test_consumer_offsets_round_trip(cluster):
    with trio.fail_after(30):
        await create_topic(cluster, "co")
        async with open_connection("127.0.0.1", leader_port(cluster)) as spu:
            await spu.handshake()
            await spu.call(produce_req("co", [encode_batch([b"a", b"b", b"c"])]))
            async with spu.open_stream(api.StreamFetchRequest("co", 0, 0, consumer_id="c1")) as stream:
                msg = await stream.__anext__()
                r = await spu.call(api.UpdateConsumerOffsetRequest(2, msg.stream_id))
                assert r.error_code.ok and r.offset == 2
            got = await spu.call(api.FetchConsumerOffsetsRequest(api.FilterOpts(api.ReplicaKey("co", 0), "c1")))
            assert [(c.consumer_id, c.offset) for c in got.consumers] == [("c1", 2)]
            d = await spu.call(api.DeleteConsumerOffsetRequest(api.ReplicaKey("co", 0), "c1"))
            assert d.error_code.ok
            got = await spu.call(api.FetchConsumerOffsetsRequest(None))
            assert got.consumers == []


async def test_retention_runs_in_the_background_and_evicted_offsets_are_reported(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as c:
            spu_cfg = c.spus[5001].config
            spu_cfg.checkpoint_seconds = 0.05
            spu_cfg.retention_check_seconds = 0.0
            await c.stop_spu(5001)
            await c.start_spu(5001)
            spec = so.TopicSpec.computed(
                1, 1, storage=so.TopicStorageConfig(1024, 4096))
            await create_topic_spec(c, "ret", spec)
            async with open_connection("127.0.0.1", leader_port(c)) as spu:
                await spu.handshake()
                for _ in range(20):
                    await spu.call(produce_req("ret", [encode_batch([bytes(500)])]))

                async def start_offset():
                    o = await spu.call(api.FetchOffsetsRequest([api.FetchOffsetTopic("ret", [api.FetchOffsetPartition(0)])]))
                    return o.topics[0].partitions[0].start_offset

                while (start := await start_offset()) == 0:
                    await trio.sleep(0.02)
                assert start > 0
                async with spu.open_stream(api.StreamFetchRequest("ret", 0, 0)) as stream:
                    msg = await stream.__anext__()
                    assert msg.partition.error_code.code == ErrorCode.OffsetEvicted
                    assert msg.partition.error_code.args == (0, start)


async def create_topic_spec(cluster, name, spec):
    host, port = cluster.endpoint.split(":")
    async with open_connection(host, int(port)) as sc:
        await sc.handshake()
        status = await sc.call(sa.ObjectApiCreateRequest.of(name, spec), timeout=30)
        assert status.error_code.ok, status


# ------------------------------------------------------------------------------------ lease


def test_lease_counts_from_the_sent_time_and_never_moves_backwards():
    lease = Lease(2.0)
    assert not lease.valid(0.0)  # never renewed
    lease.renew(10.0)
    assert lease.expires_at == 12.0
    assert lease.valid(11.9) and not lease.valid(12.0)
    lease.renew(5.0)  # an answer to an older report arrives late
    assert lease.expires_at == 12.0


def test_a_zero_lease_is_always_valid():
    assert Lease(0).valid(0.0) and Lease(-1).valid(1e9)
