"""The idempotent producer end to end: acknowledgements lost on the way back (the request was
stored, the answer dropped, the client retries), with and without a leader failover in between.
The log must hold every record exactly once, at the offsets the producer reported."""

from __future__ import annotations

import pytest
import trio

import fluvial
from fluvial.errors import ConnectionLost
from fluvial.protocol.spu_api import ProduceRequest

from .conftest import TEST_TIMEOUT


class _LosingConnection:
    """A client connection whose produce answers ``lose(n)`` says to drop: the request reaches
    the SPU and is handled, then the caller sees a lost connection instead of the answer."""

    def __init__(self, conn, lose):
        self._conn = conn
        self._lose = lose

    def __getattr__(self, name):
        return getattr(self._conn, name)

    async def call(self, req, *args, **kw):
        resp = await self._conn.call(req, *args, **kw)
        if isinstance(req, ProduceRequest) and await self._lose():
            raise ConnectionLost(detail="test: the produce answer was lost")
        return resp


def lose_answers(fl, lose) -> None:
    """Route every SPU connection of ``fl`` through ``_LosingConnection``."""
    real = fl.spu_connection

    async def spu_connection(spu_id):
        return _LosingConnection(await real(spu_id), lose)

    fl.spu_connection = spu_connection


def every_other():
    n = 0

    async def lose():
        nonlocal n
        n += 1
        return n % 2 == 1

    return lose


async def stored(fl, topic) -> list[bytes]:
    async with fl.consumer(topic, partition=0, continuous=False) as c:
        return [r.value async for r in c]


async def produce_all(p, values):
    """Each record on its own request (one at a time), its offset."""
    return [(await (await p.send(v))).offset for v in values]


async def test_lost_answers_make_an_ordinary_producer_store_records_twice(fl, new_topic):
    """The control: the fault really causes duplicates when idempotence is off."""
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        lose_answers(fl, every_other())
        values = [b"r-%d" % i for i in range(20)]
        async with fl.producer(topic, idempotent=False, retry_backoff=0.001, partitioner=0) as p:
            assert not p.idempotent
            await produce_all(p, values)
        log = await stored(fl, topic)
        assert len(log) > len(values)
        assert list(dict.fromkeys(log)) == values


@pytest.mark.parametrize("idempotent", [True, None])
async def test_lost_answers_never_store_a_record_twice(fl, new_topic, idempotent):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        lose_answers(fl, every_other())
        values = [b"r-%d" % i for i in range(30)]
        async with fl.producer(topic, idempotent=idempotent, retry_backoff=0.001,
                               partitioner=0) as p:
            offsets = await produce_all(p, values)
            assert p.idempotent and p.statistics().retries >= 10
        assert await stored(fl, topic) == values
        assert offsets == list(range(len(values)))


async def test_many_records_per_request_with_lost_answers(fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        lose_answers(fl, every_other())
        values = [b"v-%05d" % i for i in range(3000)]
        async with fl.producer(topic, idempotent=True, retry_backoff=0.001, batch_size=2000,
                               partitioner=0) as p:
            futures = await p.send_many(values)
            await p.flush()
            offsets = [(await f).offset for f in futures]
        assert await stored(fl, topic) == values
        assert offsets == list(range(len(values)))


async def test_producer_ids_are_fresh_and_survive_an_sc_restart(cluster, fl, new_topic):
    with trio.fail_after(TEST_TIMEOUT):
        topic = await new_topic()
        ids = []
        for _ in range(2):
            async with fl.producer(topic) as p:
                await p.send(b"x")
                ids.append(p.producer_id)
        await cluster.stop_sc()
        await cluster.start_sc()
        async with fluvial.connect(endpoint=cluster.endpoint) as fl2:
            async with fl2.producer(topic) as p:
                await p.send(b"y")
                ids.append(p.producer_id)
        assert len(set(ids)) == 3 and min(ids) >= 0


async def test_a_retry_after_a_leader_failover_is_recognised_by_the_new_leader(cluster3):
    """The answer to a committed batch is lost and its leader killed: the retry goes to the new
    leader, which knows the batch from its replicated log and does not store it again."""
    with trio.fail_after(TEST_TIMEOUT):
        async with fluvial.connect(endpoint=cluster3.endpoint) as fl:
            await fl.admin.create_topic("idem", partitions=1, replication=3)
            old = fl.metadata.leader_of("idem", 0)
            killed = False

            async def lose():
                nonlocal killed
                if killed:
                    return False
                killed = True
                await cluster3.stop_spu(old)
                return True

            async with fl.producer("idem", idempotent=True, isolation="read_committed",
                                   retry_backoff=0.01, partitioner=0) as p:
                first = await produce_all(p, [b"a-%d" % i for i in range(5)])
                lose_answers(fl, lose)
                second = await produce_all(p, [b"b-%d" % i for i in range(5)])
                third = await produce_all(p, [b"c-%d" % i for i in range(5)])
            assert killed and fl.metadata.leader_of("idem", 0) != old
            expected = [b"%s-%d" % (c, i) for c in (b"a", b"b", b"c") for i in range(5)]
            assert await stored(fl, "idem") == expected
            assert first + second + third == list(range(15))
