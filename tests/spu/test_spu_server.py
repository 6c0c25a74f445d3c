"""The SPU's public API against an in-process cluster (SC + SPUs on 127.0.0.1, ports 0)."""

from __future__ import annotations

import struct
import threading

import pytest
import trio
import trio.testing

from fluvial.auth import Policy
from fluvial.errors import RETRIABLE, Error, ErrorCode
from fluvial.net.multiplexer import open_connection
from fluvial.protocol import internal_api as ia
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.batch import set_leader_epoch
from fluvial.protocol.record import decode_record_set, encode_batch
from fluvial.spu import public
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from fluvial.spu.partition import Lease, PartitionReplica
from fluvial.storage import errors as serr
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.group_commit import FlushPlacement
from fluvial.storage.replica import Replica
from harness.cluster import open_test_cluster


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


# ------------------------------------------------------------ system topics, min ISR


async def test_no_client_may_produce_to_the_consumer_offset_topic(tmp_path):
    """Only the SPU's own ConsumerOffsetStore writes the system topic, whatever a policy grants."""
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path, spus=1) as c:
            # the SPU (only) enforces a policy under which anyone may produce to any topic
            await c.stop_spu(5001)
            c.spus[5001].config.policy = Policy.from_dict({"allow_anonymous": True, "principals": {
                "anonymous": {"permissions": [{"action": "produce", "topics": "*"},
                                              {"action": "consume", "topics": "*"}]}}})
            await c.start_spu(5001)
            async with open_connection("127.0.0.1", leader_port(c)) as spu:
                await spu.handshake()

                async def system_topic_led():
                    r = await spu.call(api.FetchOffsetsRequest([api.FetchOffsetTopic(
                        CONSUMER_OFFSET_TOPIC, [api.FetchOffsetPartition(0)])]))
                    return r.topics[0].partitions[0].error_code.ok

                await poll(system_topic_led)
                resp = await spu.call(produce_req(CONSUMER_OFFSET_TOPIC, [encode_batch([b"forged"])]))
                assert resp.responses[0].partitions[0].error_code.code == ErrorCode.PermissionDenied
                # the store itself still writes it
                await create_topic(c, "co2")
                async with spu.open_stream(api.StreamFetchRequest("co2", 0, 0, consumer_id="c")) as s:
                    await spu.call(produce_req("co2", [encode_batch([b"x"])]))
                    msg = await s.__anext__()
                    r = await spu.call(api.UpdateConsumerOffsetRequest(1, msg.stream_id))
                    assert r.error_code.ok
                offsets = await spu.call(api.FetchOffsetsRequest([api.FetchOffsetTopic(
                    CONSUMER_OFFSET_TOPIC, [api.FetchOffsetPartition(0)])]))
                assert offsets.topics[0].partitions[0].last_stable_offset == 1  # the store's record only


async def test_committed_produce_below_min_isr_is_refused_before_appending(tmp_path):
    """Kafka's NOT_ENOUGH_REPLICAS: retriable, and the batch takes no offset."""
    with trio.fail_after(60):
        async with open_test_cluster(tmp_path, spus=3, heartbeat_timeout=1) as c:
            await create_topic(c, "few", 1, 3)  # min_isr 2
            host, port = c.endpoint.split(":")
            async with open_connection(host, int(port)) as sc:
                await sc.handshake()

                async def part():
                    r = await sc.call(sa.ObjectApiListRequest.of(so.PartitionSpec))
                    return next(m for m in r.items if m.name == "few-0")

                p = await part()
                for f in p.spec.replicas:
                    if f != p.spec.leader:
                        await c.stop_spu(f)

            async with open_connection("127.0.0.1", leader_port(c, p.spec.leader)) as spu:
                await spu.handshake()
                await spu.call(produce_req("few", [encode_batch([b"alone"])]))

                async def followers_out_of_the_isr():  # the leader alone commits at once
                    o = await spu.call(api.FetchOffsetsRequest([api.FetchOffsetTopic(
                        "few", [api.FetchOffsetPartition(0)])]))
                    return o.topics[0].partitions[0].last_stable_offset == 1

                await poll(followers_out_of_the_isr)
                resp = await spu.call(produce_req("few", [encode_batch([b"refused"])], committed=True))
                err = resp.responses[0].partitions[0].error_code
                assert err.code == ErrorCode.RequestTimedOut and err.code in RETRIABLE
                resp = await spu.call(produce_req("few", [encode_batch([b"next"])]))
                part0 = resp.responses[0].partitions[0]
                assert part0.error_code.ok and part0.base_offset == 1  # nothing was written


async def poll(pred, timeout=20):
    """Poll ``pred`` until it is truthy (a deadline, not a fixed sleep)."""
    with trio.fail_after(timeout):
        while not await pred():
            await trio.sleep(0.05)


# ------------------------------------------------ one replica, driven directly (no sockets)


def assignment(leader=1, epoch=1, replicas=(1,), isr=None, min_isr=1, topic="t"):
    return ia.ReplicaAssignment(topic, 0, leader, epoch, list(replicas),
                                list(replicas if isr is None else isr),
                                ia.ReplicaSettings(min_isr=min_isr))


class OneReplica:
    """The slice of SpuContext that public.py's produce path reads."""

    def __init__(self, replica: PartitionReplica):
        self.replicas = {(replica.topic, replica.partition): replica}

    def knows_topic(self, topic):
        return True


def open_replica(tmp_path, a, lease=None, spu_id=1):
    storage = Replica.open(tmp_path, a.topic, a.partition, ReplicaConfig())
    return PartitionReplica(storage, a, spu_id, lease)


class GatedFlush:
    """Holds the replica's next fsync (in a worker thread, never on the loop) until ``open()``."""

    def __init__(self, replica):
        replica.flushes = FlushPlacement(max_bytes=-1)  # every flush in a worker thread
        storage = replica.storage
        self.real, self.gate, self.entered = storage.flush, threading.Event(), trio.Event()
        self.token = trio.lowlevel.current_trio_token()
        storage.flush = self

    def __call__(self):
        if self.gate.is_set():
            return self.real()
        trio.from_thread.run_sync(self.entered.set, trio_token=self.token)
        self.gate.wait()
        return self.real()

    def open(self):
        self.gate.set()


async def produce_one(ctx, topic, value, committed=False, timeout_ms=10_000):
    """public.py's produce path for one entry, without a connection."""
    part = api.PartitionProduceData(0, encode_batch([value]))
    resp, pending = public._append_one(ctx, topic, part, False, committed, timeout_ms)
    if pending is not None:
        await public._await_ack(resp, *pending, topic, committed, timeout_ms)
    return resp


async def test_an_uncommitted_ack_after_demotion_and_truncation_is_refused(tmp_path):
    """The batch's offset now holds another leader's record: the producer must not get OK."""
    with trio.fail_after(30):
        r = open_replica(tmp_path, assignment(replicas=(1, 2)))
        ctx = OneReplica(r)
        async with trio.open_nursery() as n:
            n.start_soon(r.run_flusher)
            gate = GatedFlush(r)
            done = trio.Event()
            answer = {}

            async def produce():
                answer["resp"] = await produce_one(ctx, "t", b"mine")
                done.set()

            n.start_soon(produce)
            await gate.entered.wait()  # appended, its fsync under way
            r.reassign(assignment(leader=2, epoch=2, replicas=(1, 2)))  # demoted
            r.storage.truncate_to(0)  # the new leader never had it
            r.storage.append_replica(leader_batch(b"theirs", epoch=2))
            gate.open()
            await done.wait()
            resp = answer["resp"]
            assert resp.error_code.code == ErrorCode.NotLeaderForPartition, resp
            r.closed = True
            n.cancel_scope.cancel()
        r.storage.close()


def leader_batch(value, epoch, base_offset=0):
    b = bytearray(encode_batch([value], base_offset=base_offset))
    set_leader_epoch(b, 0, epoch)
    return bytes(b)


@pytest.mark.parametrize("committed", [False, True])
async def test_a_one_partition_produce_is_answered_only_after_its_fsync(tmp_path, committed):
    """handle_produce waits for a single entry in its own task (no nursery): the answer still
    comes only once the batch is durable (and, ReadCommitted, under the HW)."""
    with trio.fail_after(30):
        r = open_replica(tmp_path, assignment())
        ctx = OneReplica(r)
        ctx.policy = None
        conn = type("Conn", (), {"state": {}})()
        async with trio.open_nursery() as n:
            n.start_soon(r.run_flusher)
            gate = GatedFlush(r)
            answer = {}
            answered = trio.Event()

            async def produce():
                answer["resp"] = await public.handle_produce(
                    ctx, conn, None, produce_req("t", [encode_batch([b"v"])], committed=committed))
                answered.set()

            n.start_soon(produce)
            await gate.entered.wait()  # appended, its fsync held
            await trio.testing.wait_all_tasks_blocked()
            assert "resp" not in answer and r.storage.durable_leo == 0
            gate.open()
            await answered.wait()
            part = answer["resp"].responses[0].partitions[0]
            assert part.error_code.ok and part.base_offset == 0 and r.storage.durable_leo == 1
            r.closed = True
            n.cancel_scope.cancel()
        r.storage.close()


async def test_without_a_valid_lease_nothing_is_appended(tmp_path):
    with trio.fail_after(30):
        lease = Lease(5.0)  # never renewed: the SC has not answered yet
        r = open_replica(tmp_path, assignment(), lease)
        resp = await produce_one(OneReplica(r), "t", b"x")
        assert resp.error_code.code == ErrorCode.NotLeaderForPartition
        assert r.leo == 0
        lease.renew(trio.current_time())
        resp = await produce_one(OneReplica(r), "t", b"x")
        assert r.leo == 1  # appended; its ack waits for a flusher nobody runs here
        r.storage.close()


async def test_a_lease_that_runs_out_before_the_ack_refuses_it(tmp_path):
    """A leader cut off from the SC stops acknowledging within the lease (RU and RC alike)."""
    for committed in (False, True):
        with trio.fail_after(30):
            lease = Lease(0.2)
            r = open_replica(tmp_path / str(committed), assignment(), lease)
            async with trio.open_nursery() as n:
                n.start_soon(r.run_flusher)
                gate = GatedFlush(r)
                lease.renew(trio.current_time())
                answer = {}
                done = trio.Event()

                async def produce():
                    answer["resp"] = await produce_one(OneReplica(r), "t", b"x", committed)
                    done.set()

                n.start_soon(produce)
                await gate.entered.wait()
                await trio.sleep_until(lease.expires_at)  # the lease runs out while the fsync runs
                gate.open()
                await done.wait()
                assert answer["resp"].error_code.code == ErrorCode.NotLeaderForPartition
                r.closed = True
                n.cancel_scope.cancel()
            r.storage.close()


async def test_leadership_at_an_epoch_already_in_the_log_is_refused(tmp_path):
    """Defence in depth against epoch reuse: new writes never share an epoch with old ones."""
    with trio.fail_after(30):
        r = open_replica(tmp_path, assignment(epoch=3))
        r.storage.append(encode_batch([b"old"]), leader_epoch=3)
        r.storage.flush()
        r.storage.close()
        r = open_replica(tmp_path, assignment(epoch=3))  # a restart; the SC did not bump the epoch
        assert not r.is_leader
        resp = await produce_one(OneReplica(r), "t", b"new")
        assert resp.error_code.code == ErrorCode.NotLeaderForPartition and r.leo == 1
        r.reassign(assignment(epoch=4))
        assert r.is_leader
        r.reassign(assignment(epoch=4, replicas=(1, 2), isr=(1,)))  # same epoch, led here: kept
        assert r.is_leader
        r.storage.close()


async def test_the_isr_bookkeeping_counts_only_the_leaders_durable_records(tmp_path):
    with trio.fail_after(30):
        r = open_replica(tmp_path, assignment())
        r.append_nowait(encode_batch([b"x"]))
        st = r.leader_state
        assert (st.leo, st.hw, r.hw) == (0, 0, 0)  # written, not yet fsynced
        async with trio.open_nursery() as n:
            n.start_soon(r.run_flusher)
            await r.wait_durable(1)
            assert (st.leo, st.hw, r.hw) == (1, 1, 1)
            assert [(o.leo, o.hw) for o in st.replica_offsets()] == [(1, 1)]
            r.closed = True
            n.cancel_scope.cancel()
        r.storage.close()


# ------------------------------------------------------------------- storage errors on the wire


@pytest.mark.parametrize("exc, want", [
    (serr.BatchTooLarge("batch of 9 bytes over 8"), Error(ErrorCode.MessageTooLarge)),
    (serr.ShortCircuited("fsync failed"), Error(ErrorCode.PartitionShortCircuited)),
    (serr.StaleLeaderEpoch("leader epoch 1 is older than 2"), Error(ErrorCode.NotLeaderForPartition)),
    (serr.DiskFull("no space"), Error(ErrorCode.PartitionFull, (("t", 3),))),
    (serr.InvalidBatch("bad crc"), Error.other("invalid batch: bad crc")),
    (serr.ReplicaClosed("closed"), Error(ErrorCode.StorageError)),
])
def test_a_storage_error_is_answered_with_the_code_it_carries(exc, want):
    assert public._storage_error(exc, "t", 3) == want
