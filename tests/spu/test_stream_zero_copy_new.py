"""StreamFetch served with sendfile, and the stream's window of unacknowledged responses.

The handler runs against one PartitionReplica (no cluster), on a ServerConnection over a real
loopback TCP connection (sendfile) or over trio's in-memory streams (every byte copied); the
test plays the consumer: it decodes every frame with the generic StreamFetchResponse decoder
and acknowledges each response as Fluvio's client does (UpdateOffsets with the offset after its
last batch).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from fluvial.net.server import FileRegion, ServerConnection
from fluvial.protocol import spu_api as api
from fluvial.protocol.api import RequestHeader, decode_response
from fluvial.protocol.batch import iter_batches
from fluvial.protocol.frame import FrameDecoder
from fluvial.protocol.record import encode_batch
from fluvial.protocol.record_headers import encode_headers_batch, strip_record_set
from fluvial.protocol import internal_api as ia
from fluvial.spu import public
from fluvial.spu.partition import PartitionReplica
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.replica import Replica

VERSION = 24  # what the official client sends at


class Ctx:
    """The slice of SpuContext the stream handler reads."""

    def __init__(self, replica: PartitionReplica, max_fetch_bytes: int = 8 << 20):
        self.replicas = {(replica.topic, replica.partition): replica}
        self.policy = None
        self.max_fetch_bytes = max_fetch_bytes


def leader(tmp_path, segment_max_bytes: int = 1 << 30) -> PartitionReplica:
    a = ia.ReplicaAssignment("t", 0, 1, 1, [1], [1], ia.ReplicaSettings(min_isr=1))
    storage = Replica.open(tmp_path, "t", 0, ReplicaConfig(segment_max_bytes=segment_max_bytes))
    return PartitionReplica(storage, a, 1)


def commit(r: PartitionReplica) -> None:
    """Make everything appended durable and covered by the HW (RF=1), as the flusher does."""
    r.storage.flush()
    r._flushed()


def batch_of(value_bytes: int, n: int = 1, seed: int = 0) -> bytes:
    return encode_batch([bytes([(seed + i) % 251]) * value_bytes for i in range(n)])


async def tcp_pair():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    for listener in listeners:
        await listener.aclose()
    return server, client


class Consumer:
    """The client end of one stream: frames decoded as they arrive, acknowledged on demand."""

    def __init__(self, ctx, conn, stream):
        self.ctx, self.conn, self.stream = ctx, conn, stream
        self.messages: list[api.StreamFetchResponse] = []
        self.arrived = trio.Event()

    async def read_frames(self):
        decoder = FrameDecoder(64 << 20)
        while True:
            data = await self.stream.receive_some(1 << 20)
            if not data:
                return
            for payload in decoder.feed(data):
                corr, msg = decode_response(payload, api.StreamFetchResponse, VERSION)
                assert corr == 7
                self.messages.append(msg)
                self.arrived.set()
                self.arrived = trio.Event()

    async def wait_for(self, count: int):
        while len(self.messages) < count:
            await self.arrived.wait()

    async def ack(self, msg: api.StreamFetchResponse):
        end = next_offset(msg.partition.records)
        resp = await public.handle_update_offsets(
            self.ctx, self.conn, RequestHeader(api.SpuApiKey.UpdateOffsets, 0, 8),
            api.UpdateOffsetsRequest([api.OffsetUpdate(end, msg.stream_id)]))
        assert resp.status[0].error.ok


def next_offset(records: bytes) -> int:
    *_, (_, last) = iter_batches(records)
    return last.next_offset


def record_bytes(messages) -> bytes:
    return b"".join(m.partition.records for m in messages)


class SpiedConnection(ServerConnection):
    """Counts the frames that carried file pieces (sent with sendfile on TCP)."""

    file_frames = 0

    async def send_regions(self, parts, intact=None):
        if any(isinstance(p, FileRegion) for p in parts):
            self.file_frames += 1
        await super().send_regions(parts, intact)


async def stream_everything(r: PartitionReplica, *, tcp: bool, max_bytes: int, end: int,
                            committed: bool = True, record_headers: bool = False,
                            during=None) -> tuple[list, SpiedConnection]:
    """Open a stream at 0, acknowledge every response as it arrives, until offset ``end`` is
    delivered; ``during(consumer)`` runs alongside (appending more, say)."""
    ctx = Ctx(r)
    server, client = await tcp_pair() if tcp else trio.testing.memory_stream_pair()
    conn = SpiedConnection(server, peer=("test", 0))
    if record_headers:
        conn.state["record_headers"] = True
    consumer = Consumer(ctx, conn, client)
    req = api.StreamFetchRequest("t", 0, 0, max_bytes=max_bytes,
                                 isolation=api.Isolation.ReadCommitted if committed
                                 else api.Isolation.ReadUncommitted)
    async with trio.open_nursery() as n:
        n.start_soon(public.handle_stream_fetch, ctx, conn,
                     RequestHeader(api.SpuApiKey.StreamFetch, VERSION, 7), req)
        n.start_soon(consumer.read_frames)
        if during is not None:
            n.start_soon(during, consumer)
        acked = 0
        while True:
            await consumer.wait_for(acked + 1)
            msg = consumer.messages[acked]
            assert msg.partition.error_code.ok, msg
            acked += 1
            if next_offset(msg.partition.records) >= end:
                break
            await consumer.ack(msg)
        n.cancel_scope.cancel()
    await server.aclose()
    await client.aclose()
    return consumer.messages, conn


def check_response_shapes(messages, max_bytes: int) -> None:
    """Whole batches only, contiguous, each response within max_bytes unless it is one batch."""
    expected = 0
    for m in messages:
        batches = list(iter_batches(m.partition.records))
        assert batches, "a response without batches"
        assert len(m.partition.records) == sum(h.size for _, h in batches)
        assert len(batches) == 1 or len(m.partition.records) <= max_bytes
        assert batches[0][1].base_offset == expected
        expected = batches[-1][1].next_offset


SIZES = [  # value bytes per record, records per batch, batches
    (1000, 16, 70),  # 16 KiB batches: reads of 64 KiB gather several
    (65_400, 1, 12),  # one batch just under 64 KiB
    (65_536 - 61 - 10, 1, 12),  # one batch of about 64 KiB
    (70_000, 1, 12),  # just over
    (300_000, 1, 5),  # one batch larger than some max_bytes
]
MAX_BYTES = [1, 65_535, 65_536, 65_537, 200_000, 1_048_576]


@pytest.mark.parametrize("value, per_batch, batches", SIZES)
@pytest.mark.parametrize("max_bytes", MAX_BYTES)
async def test_sendfile_and_copy_deliver_the_same_batches(tmp_path, value, per_batch, batches,
                                                          max_bytes):
    """Over sizes around the 64 KiB threshold and max_bytes, with segments rolling every few
    hundred KiB (reads spanning segments): the bytes a consumer gets through sendfile (TCP) are
    those of the copying path, which are the log's, in whole batches within max_bytes."""
    with trio.fail_after(60):
        r = leader(tmp_path / "log", segment_max_bytes=400_000)
        for i in range(batches):
            r.append_nowait(batch_of(value, per_batch, seed=i))
        commit(r)
        stored = r.storage.read(0, 1 << 30).read_bytes()
        got = {}
        for tcp in (True, False):
            messages, conn = await stream_everything(r, tcp=tcp, max_bytes=max_bytes, end=r.hw)
            check_response_shapes(messages, max_bytes)
            got[tcp] = record_bytes(messages)
            large = sum(len(m.partition.records) >= public.SENDFILE_MIN_BYTES for m in messages)
            assert conn.file_frames == (large if tcp else 0)
        assert got[True] == got[False] == stored
        r.storage.close()


async def test_a_read_committed_stream_never_passes_the_hw(tmp_path):
    """Appended but not yet durable (HW below the LEO): a ReadCommitted consumer gets exactly
    the batches below the HW, then the rest once they are committed. A ReadUncommitted one gets
    them at once, but what lies above the HW is copied, never sent from the file (a follower's
    truncation may cut and refill it)."""
    with trio.fail_after(60):
        r = leader(tmp_path / "log")
        for i in range(3):
            r.append_nowait(batch_of(100_000, seed=i))
        commit(r)
        hw = r.hw
        for i in range(3, 5):
            r.append_nowait(batch_of(100_000, seed=i))
        assert r.hw == hw < r.leo

        async def commit_later(consumer):
            # every response sent so far ends at the HW or below; then the rest is committed
            await consumer.wait_for(1)
            while next_offset(consumer.messages[-1].partition.records) < hw:
                await consumer.wait_for(len(consumer.messages) + 1)
            assert next_offset(consumer.messages[-1].partition.records) == hw
            commit(r)

        messages, conn = await stream_everything(r, tcp=True, max_bytes=1 << 20, end=r.leo,
                                                 during=commit_later)
        assert record_bytes(messages) == r.storage.read(0, 1 << 30).read_bytes()
        assert all(m.partition.high_watermark >= next_offset(m.partition.records) for m in messages)
        assert conn.file_frames == len(messages)

        for i in range(5, 7):
            r.append_nowait(batch_of(100_000, seed=i))
        assert r.hw < r.leo
        messages, conn = await stream_everything(r, tcp=True, max_bytes=1 << 20, end=r.leo,
                                                 committed=False)
        assert record_bytes(messages) == r.storage.read(0, 1 << 30).read_bytes()
        above = [m for m in messages if next_offset(m.partition.records) > r.hw]
        assert above and conn.file_frames <= len(messages) - len(above)
        r.storage.close()


@pytest.mark.parametrize("record_headers", [False, True])
async def test_headers_batches_reach_a_client_as_it_asked(tmp_path, record_headers):
    """A client that did not enable record headers gets headers batches stripped, also for
    reads large enough for sendfile; one that did gets them as stored."""
    with trio.fail_after(60):
        r = leader(tmp_path / "log")
        for i in range(4):
            r.append_nowait(encode_headers_batch(
                [(None, bytes([i]) * 40_000, [("h", b"v%d" % i)])], first_timestamp=1))
            r.append_nowait(batch_of(40_000, seed=i))
        commit(r)
        stored = r.storage.read(0, 1 << 30).read_bytes()
        messages, _ = await stream_everything(r, tcp=True, max_bytes=1 << 20, end=r.hw,
                                              record_headers=record_headers)
        got = record_bytes(messages)
        assert got == (stored if record_headers else strip_record_set(stored))
        assert record_headers or got != stored
        r.storage.close()


async def test_a_tailing_consumer_follows_appends_across_segment_rolls(tmp_path):
    """A consumer at the tail while 60 batches of 50 KiB arrive and the log rolls every two:
    it gets every batch, once, in order, byte for byte, whatever path each response took."""
    with trio.fail_after(60):
        r = leader(tmp_path / "log", segment_max_bytes=120_000)
        end = 60

        async def produce(consumer):
            for i in range(end):
                r.append_nowait(batch_of(50_000, seed=i))
                if i % 3 == 2 or i == end - 1:
                    commit(r)
                await trio.lowlevel.checkpoint()

        messages, conn = await stream_everything(r, tcp=True, max_bytes=300_000, end=end,
                                                 during=produce)
        assert len(r.storage.segments) > 20
        check_response_shapes(messages, 300_000)
        assert record_bytes(messages) == r.storage.read(0, 1 << 30).read_bytes()
        r.storage.close()


async def open_tail_stream(r, max_bytes):
    """A ReadCommitted stream at the log's end on in-memory streams; (consumer, nursery-bound
    runner) for tests that count what arrives while every task is blocked."""
    ctx = Ctx(r)
    server, client = trio.testing.memory_stream_pair()
    conn = ServerConnection(server, peer=("test", 0))
    consumer = Consumer(ctx, conn, client)
    req = api.StreamFetchRequest("t", 0, r.hw, max_bytes=max_bytes,
                                 isolation=api.Isolation.ReadCommitted)
    return ctx, conn, consumer, req


@pytest.mark.parametrize("value, max_bytes, window", [
    (100, 1 << 20, public.MAX_UNACKED_RESPONSES),  # small records: the count bounds it
    (100_000, 150_000, 2),  # large ones: 2 x max_bytes bounds it
])
async def test_a_caught_up_stream_pushes_without_waiting_for_acknowledgements(
        tmp_path, value, max_bytes, window):
    """Each batch committed at the tail is pushed at once, acknowledged or not, up to the
    window; then the stream waits for acknowledgements, and resumes with the next one."""
    with trio.fail_after(30):
        r = leader(tmp_path / "log")
        ctx, conn, consumer, req = await open_tail_stream(r, max_bytes)
        async with trio.open_nursery() as n:
            n.start_soon(public.handle_stream_fetch, ctx, conn,
                         RequestHeader(api.SpuApiKey.StreamFetch, VERSION, 7), req)
            n.start_soon(consumer.read_frames)
            for i in range(window + 2):
                r.append_nowait(batch_of(value, seed=i))
                commit(r)
                await trio.testing.wait_all_tasks_blocked()
                assert len(consumer.messages) == min(i + 1, window)
            await consumer.ack(consumer.messages[0])  # one acknowledged: one more goes
            await consumer.wait_for(window + 1)
            await trio.testing.wait_all_tasks_blocked()
            assert len(consumer.messages) == window + 1
            acked = 1
            while next_offset(consumer.messages[-1].partition.records) < window + 2:
                await consumer.ack(consumer.messages[acked])
                acked += 1
                await consumer.wait_for(acked + 1)
            n.cancel_scope.cancel()
        assert record_bytes(consumer.messages) == r.storage.read(0, 1 << 30).read_bytes()
        r.storage.close()


async def test_an_acknowledgement_behind_the_stream_resends_from_there(tmp_path):
    """Once everything sent is acknowledged, an acknowledgement below the offset reached means
    the consumer is behind: the stream sends again from that offset (spu.md §3.3)."""
    with trio.fail_after(30):
        r = leader(tmp_path / "log")
        for i in range(3):
            r.append_nowait(batch_of(100, seed=i))
        commit(r)
        ctx = Ctx(r)
        server, client = trio.testing.memory_stream_pair()
        conn = ServerConnection(server, peer=("test", 0))
        consumer = Consumer(ctx, conn, client)
        req = api.StreamFetchRequest("t", 0, 0, max_bytes=1 << 20)
        async with trio.open_nursery() as n:
            n.start_soon(public.handle_stream_fetch, ctx, conn,
                         RequestHeader(api.SpuApiKey.StreamFetch, VERSION, 7), req)
            n.start_soon(consumer.read_frames)
            await consumer.wait_for(1)
            first = consumer.messages[0]
            assert next_offset(first.partition.records) == 3
            await public.handle_update_offsets(
                ctx, conn, RequestHeader(api.SpuApiKey.UpdateOffsets, 0, 8),
                api.UpdateOffsetsRequest([api.OffsetUpdate(1, first.stream_id)]))
            await consumer.wait_for(2)
            again = list(iter_batches(consumer.messages[1].partition.records))
            assert [h.base_offset for _, h in again] == [1, 2]
            n.cancel_scope.cancel()
        r.storage.close()
