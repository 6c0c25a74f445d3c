"""An idempotent producer with several requests in flight per partition (``max_in_flight`` up
to 5): lost answers, lost requests, a batch refused after a gap, a leader failover. Every record
must be stored once, in send order, at the offsets the producer reported."""

from __future__ import annotations

import pytest
import trio

import fluvial
from fluvial.client.accumulator import RecordAccumulator
from fluvial.errors import ConnectionLost
from fluvial.protocol.spu_api import ProduceRequest

from .conftest import TEST_TIMEOUT
from .test_idempotence import every_other, lose_answers, stored


class _FaultyProduces:
    """A client connection whose produce calls go through ``fault(n, call)``: ``n`` counts the
    produce requests (from 1), ``call()`` sends the request and returns the answer."""

    def __init__(self, conn, fault):
        self._conn = conn
        self._fault = fault

    def __getattr__(self, name):
        return getattr(self._conn, name)

    async def call(self, req, *args, **kw):
        if not isinstance(req, ProduceRequest):
            return await self._conn.call(req, *args, **kw)
        return await self._fault(lambda: self._conn.call(req, *args, **kw))


def route_produces(fl, fault) -> None:
    real = fl.spu_connection
    count = 0

    async def numbered(call):
        nonlocal count
        count += 1
        return await fault(count, call)

    async def spu_connection(spu_id):
        return _FaultyProduces(await real(spu_id), numbered)

    fl.spu_connection = spu_connection


async def send_unawaited(p, values):
    """One record per request while the partition has room in flight: send without waiting for
    acks (each send finds the previous records still in flight). The producer needs
    ``batch_size=1``: each record then closes the batch before it, and closed batches go while
    others are in flight (an open one waits: Nagle's rule)."""
    futures = []
    for v in values:
        futures.append(await p.send(v))
        await trio.lowlevel.checkpoint()  # the dispatched request gets going
    await p.flush()
    return [(await f).offset for f in futures]


def test_retries_are_requeued_in_creation_order_whatever_order_they_fail_in():
    acc = RecordAccumulator(clock=lambda: 0.0, wall_clock_ms=lambda: 0)
    batches = []
    for i in range(4):
        acc.append(0, b"v%d" % i)
        batches += acc.drain(0.0)[0]
        batches[-1].attempts = 1
    acc.append(0, b"new")  # not sent yet
    for b in (batches[2], batches[0], batches[3], batches[1]):  # answers out of order
        acc.reenqueue([b])
    assert acc.retry_waiting(0)
    assert [b.values for b in acc.drain(0.0)[0]] == [[b"v0"], [b"v1"], [b"v2"], [b"v3"]]
    assert [b.values for b in acc.drain(0.0)[0]] == [[b"new"]]
    assert not acc.retry_waiting(0)


@pytest.mark.parametrize("in_flight", [1, 5])
async def test_lost_answers_with_several_in_flight_store_every_record_once(fl, new_topic, in_flight):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        lose_answers(fl, every_other())
        values = [b"r-%d" % i for i in range(60)]
        async with fl.producer(topic, retry_backoff=0.001, partitioner=0, idempotent=True,
                               max_in_flight=in_flight, batch_size=1) as p:
            assert p.idempotent and p.max_in_flight == in_flight
            offsets = await send_unawaited(p, values)
            assert p.statistics().retries >= 2
        assert await stored(fl, topic) == values
        assert offsets == list(range(len(values)))


async def test_lost_requests_are_resent_in_send_order(fl, new_topic):
    """Requests 3 and 4 never reach the SPU and fail in that order, while later ones are in
    flight (and refused: they follow a gap). The resends must go 3, 4, ... or the leader refuses
    them for ever."""
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()

        async def fault(n, call):
            if n in (3, 4):
                await trio.lowlevel.checkpoint()
                raise ConnectionLost(detail="test: the produce request was lost")
            return await call()

        route_produces(fl, fault)
        values = [b"r-%d" % i for i in range(30)]
        async with fl.producer(topic, retry_backoff=0.001, partitioner=0, max_in_flight=5,
                               idempotent=True, delivery_timeout=20, batch_size=1) as p:
            offsets = await send_unawaited(p, values)
        assert await stored(fl, topic) == values
        assert offsets == list(range(len(values)))


async def test_a_batch_refused_after_a_gap_is_resent_after_the_missing_one(fl, new_topic):
    """Request 3 is held until request 4 has been answered (refused: its sequence follows a gap),
    then lost. Request 4's refusal is the gap's doing: it is retried after 3, not failed."""
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        fourth_answered = trio.Event()
        refusals = []

        async def fault(n, call):
            if n == 3:
                await fourth_answered.wait()
                raise ConnectionLost(detail="test: the produce request was lost")
            resp = await call()
            if n == 4:
                refusals.extend(p.error_code for t in resp.responses for p in t.partitions
                                if not p.error_code.ok)
                fourth_answered.set()
            return resp

        route_produces(fl, fault)
        values = [b"r-%d" % i for i in range(12)]
        async with fl.producer(topic, retry_backoff=0.001, partitioner=0, max_in_flight=5,
                               idempotent=True, delivery_timeout=20, batch_size=1) as p:
            offsets = await send_unawaited(p, values)
        assert refusals and all("OutOfOrderSequence" in str(e.args) for e in refusals)
        assert await stored(fl, topic) == values
        assert offsets == list(range(len(values)))


async def test_a_leader_failover_with_five_in_flight_keeps_every_record_once_in_order(cluster3):
    with trio.fail_after(TEST_TIMEOUT):
        async with fluvial.connect(endpoint=cluster3.endpoint) as fl:
            await fl.admin.create_topic("inflight", partitions=2, replication=3)
            old = fl.metadata.leader_of("inflight", 0)
            sent: dict[int, list[bytes]] = {0: [], 1: []}
            async with fl.producer("inflight", isolation="read_committed", retry_backoff=0.01,
                                   max_in_flight=5, idempotent=True, batch_size=1) as p:
                futures = []
                for i in range(200):
                    if i == 80:
                        await cluster3.stop_spu(old)
                    v = b"v-%d" % i
                    f = await p.send(v)
                    sent[f._batch.partition].append(v)
                    futures.append(f)
                    await trio.lowlevel.checkpoint()
                await p.flush()
                metas = [await f for f in futures]
            for part in (0, 1):
                async with fl.consumer("inflight", partition=part, continuous=False) as c:
                    log = [r.value async for r in c]
                assert log == sent[part]
                offsets = [m.offset for m in metas if m.partition == part]
                assert offsets == list(range(len(sent[part])))


async def test_requests_reach_the_connection_in_send_order_whatever_task_gets_there_first(fl, new_topic):
    """The first request's task gets its connection only after the second's has: the second
    still waits for its turn, so the leader never sees a sequence gap (a refusal and a retry)."""
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        real = fl.spu_connection
        asked = 0
        second_asked = trio.Event()

        async def spu_connection(spu_id):
            nonlocal asked
            asked += 1
            if asked == 1:
                await second_asked.wait()
            else:
                second_asked.set()
            return await real(spu_id)

        fl.spu_connection = spu_connection
        values = [b"r-%d" % i for i in range(6)]
        # batch_size=1: each record closes the batch before it, which may go at once
        async with fl.producer(topic, partitioner=0, batch_size=1) as p:
            futures = []
            for v in values:
                futures.append(await p.send(v))
                await trio.sleep(0)
            offsets = [(await f).offset for f in futures]
            assert p.statistics().retries == 0
        assert asked >= 2
        assert await stored(fl, topic) == values
        assert offsets == list(range(len(values)))


async def test_sequences_are_taken_in_drain_order_when_requests_are_planned():
    """An idempotent batch takes its sequence when its request is planned, in drain order, not
    when the request's task runs: the tasks started in one scheduler round may run in any order
    (the producer's dispatch today starts one per round for a partition; this keeps the order
    whatever the dispatch does)."""
    from fluvial.client.producer import Producer
    from fluvial.protocol.batch import read_header

    class _Metadata:
        topics = {"t"}

        def leader_of(self, topic, partition):
            return 5001

    class _Client:
        metadata = _Metadata()

    p = Producer(_Client(), "t", max_in_flight=5, idempotent=True)
    p.producer_id, p._producer_epoch = 7, 0
    planned = []
    for i in range(3):
        for v in (b"a", b"b")[: i + 1]:
            p._acc.append(0, v + b"%d" % i)
        planned += p._plan(p._acc.drain(0.0, flush=True), 0.0)
    headers = [read_header(b.encoded, 0) for _, entries, _ in planned for _, bs in entries for b in bs]
    assert [(h.producer_id, h.first_sequence) for h in headers] == [(7, 0), (7, 1), (7, 3)]


def test_max_in_flight_is_bounded_by_what_the_leader_remembers():
    from fluvial.client.producer import Producer

    with pytest.raises(ValueError):
        Producer(None, "t", max_in_flight=6, idempotent=True)
    with pytest.raises(ValueError):  # several in flight only with idempotence asked for
        Producer(None, "t", max_in_flight=2)
    with pytest.raises(ValueError):
        Producer(None, "t", max_in_flight=2, idempotent=False)
    assert Producer(None, "t", max_in_flight=5, idempotent=True).max_in_flight == 5


async def test_many_batches_in_flight_are_stored_in_send_order(fl, new_topic):
    """Many batches dispatched at once, five at a time: their sequences and their requests
    follow the send order, whatever order trio starts the request tasks in (it reverses a
    batch of runnable tasks at random, hence several rounds)."""
    with trio.fail_after(TEST_TIMEOUT):
        for _ in range(8):
            topic = await new_topic()
            values = [b"v-%05d" % i for i in range(1000)]
            async with fl.producer(topic, partitioner=0, batch_size=300, max_in_flight=5,
                                   idempotent=True) as p:
                futures = []
                for i in range(0, len(values), 100):  # sends that never pause, and send_many
                    for v in values[i:i + 50]:
                        futures.append(await p.send(v))
                    futures += await p.send_many(values[i + 50:i + 100])
                await p.flush()
                offsets = [(await f).offset for f in futures]
                # no request overtook another on the wire: none was refused and retried
                assert p.statistics().retries == 0
            assert await stored(fl, topic) == values
            assert offsets == list(range(len(values)))


async def test_an_idempotent_producer_keeps_five_in_flight_by_default(fl, new_topic):
    topic = await new_topic()
    async with fl.producer(topic) as p:
        assert p.idempotent and p.max_in_flight == 5
    async with fl.producer(topic, idempotent=False) as p:
        assert p.max_in_flight == 1


def count_requests(p) -> list[int]:
    """The records of each produce request ``p`` sends, in send order."""
    sizes: list[int] = []
    real = p._send_in_turn

    async def counting(leader, entries, turn):
        sizes.append(sum(len(b) for _, batches in entries for b in batches))
        await real(leader, entries, turn)

    p._send_in_turn = counting
    return sizes


def hold_first_request(fl) -> trio.Event:
    """The answer to the first produce request waits until the returned event is set (the
    request itself is stored: the requests after it are not refused as out of order)."""
    release = trio.Event()

    async def fault(n, call):
        resp = await call()
        if n == 1:
            await release.wait()
        return resp

    route_produces(fl, fault)
    return release


async def test_records_sent_one_at_a_time_wait_for_the_request_in_flight_and_go_together(fl, new_topic):
    """Nagle's rule: while a partition's request is in flight, a batch that is not full stays
    in the accumulator and takes the records sent meanwhile: one request for them, not one
    each."""
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        release = hold_first_request(fl)
        async with fl.producer(topic, partitioner=0) as p:
            assert p.max_in_flight == 5
            sizes = count_requests(p)
            futures = [await p.send(b"first")]
            while not sizes:  # the first request is on its way (and held)
                await trio.sleep(0)
            for i in range(10):
                futures.append(await p.send(b"r-%d" % i))
                await trio.sleep(0)  # the sender and the request tasks get to run
            assert sizes == [1]  # the first is held; the ten wait in one open batch
            release.set()
            offsets = [(await f).offset for f in futures]
        assert sizes == [1, 10]
        assert offsets == list(range(11))


async def test_full_batches_go_while_a_request_is_in_flight_up_to_the_limit(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        release = hold_first_request(fl)
        # batch_size=1: each record closes the batch before it
        async with fl.producer(topic, partitioner=0, batch_size=1) as p:
            sizes = count_requests(p)
            futures = []
            for i in range(8):
                futures.append(await p.send(b"r-%d" % i))
                await trio.sleep(0)
            assert sizes == [1] * 5  # the held one and four more: the limit
            release.set()
            offsets = [(await f).offset for f in futures]
        assert sum(sizes) == 8 and offsets == list(range(8))  # no retry: each record sent once
