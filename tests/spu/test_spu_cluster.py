"""Topic incarnations end to end: an in-process SC and SPU on 127.0.0.1 (ports 0).

A topic deleted and re-created under the same name while its SPU was down must start empty on
that SPU: the old records coming back would be a resurrection, and, since the new topic may be
readable by other principals than the old one, a data leak.
"""

from __future__ import annotations

import trio

from fluvial.errors import ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.record import decode_record_set, encode_batch
from harness.cluster import open_test_cluster

SPU = 5001


async def sc_call(cluster, req):
    host, port = cluster.endpoint.split(":")
    async with open_connection(host, int(port)) as sc:
        await sc.handshake()
        return await sc.call(req, timeout=30)


async def create_on_spu(cluster, name, spu_up=True):
    """``name`` with one partition whose only replica is SPU 5001. With the SPU down the SC
    creates the topic and answers that it is not provisioned yet (after a short wait)."""
    spec = so.TopicSpec(so.AssignedReplicas([so.PartitionMap(0, [SPU])]))
    status = await sc_call(cluster, sa.ObjectApiCreateRequest.of(name, spec, timeout_ms=None if spu_up else 100))
    expected = ErrorCode.None_ if spu_up else ErrorCode.TopicNotProvisioned
    assert status.error_code.code == expected, status


async def spu_call(cluster, req):
    async with open_connection("127.0.0.1", cluster.spus[SPU].config.public_port) as c:
        await c.handshake()
        return await c.call(req, timeout=30)


async def produce(cluster, topic, value) -> api.PartitionProduceResponse:
    """Produce once the partition has its leader (right after a create or a restart it may not)."""
    while True:
        resp = await spu_call(cluster, api.ProduceRequest(None, api.Isolation.ReadCommitted, 10_000, [
            api.TopicProduceData(topic, [api.PartitionProduceData(0, encode_batch([value]))])]))
        part = resp.responses[0].partitions[0]
        if part.error_code.ok:
            return part
        await trio.sleep(0.05)


async def read_all(cluster, topic) -> list[bytes]:
    while True:
        o = await spu_call(cluster, api.FetchOffsetsRequest([api.FetchOffsetTopic(topic, [api.FetchOffsetPartition(0)])]))
        p = o.topics[0].partitions[0]
        if p.error_code.ok:
            break
        await trio.sleep(0.05)
    out: list[bytes] = []
    if p.last_stable_offset == p.start_offset:
        return out
    async with open_connection("127.0.0.1", cluster.spus[SPU].config.public_port) as c:
        await c.handshake()
        async with c.open_stream(api.StreamFetchRequest(topic, 0, p.start_offset)) as stream:
            async for msg in stream:
                out += [r.value for r in decode_record_set(msg.partition.records)]
                if len(out) >= p.last_stable_offset - p.start_offset:
                    return out


async def test_a_topic_re_created_while_its_spu_was_down_does_not_get_the_old_records(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            await create_on_spu(cluster, "t")
            await produce(cluster, "t", b"old secret")
            await cluster.stop_spu(SPU)
            status = await sc_call(cluster, sa.ObjectApiDeleteRequest.of(so.TopicSpec, "t"))
            assert status.error_code.ok, status
            await create_on_spu(cluster, "t", spu_up=False)
            await cluster.start_spu(SPU)
            part = await produce(cluster, "t", b"new")
            assert part.base_offset == 0
            assert await read_all(cluster, "t") == [b"new"]


async def test_a_topic_deleted_while_its_spu_was_down_leaves_no_directory(tmp_path):
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=1) as cluster:
            await create_on_spu(cluster, "gone")
            await produce(cluster, "gone", b"v")
            await cluster.stop_spu(SPU)
            status = await sc_call(cluster, sa.ObjectApiDeleteRequest.of(so.TopicSpec, "gone"))
            assert status.error_code.ok, status
            await cluster.start_spu(SPU)  # returns once the first push is applied
            assert not (tmp_path / f"spu-{SPU}" / "gone-0").exists()
