"""The producer's pure batching (``RecordAccumulator``)."""

from __future__ import annotations

import pytest

from fluvial.client.accumulator import RECORD_OVERHEAD, RecordAccumulator
from fluvial.errors import ErrorCode, FluvialError
from fluvial.protocol.record import Compression, decode_batch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**kw):
    clock = Clock()
    kw.setdefault("batch_size", 1000)
    acc = RecordAccumulator(clock=clock, wall_clock_ms=lambda: 1_700_000_000_000, **kw)
    return acc, clock


def test_records_share_a_batch_until_it_would_pass_batch_size():
    acc, _ = make(batch_size=3 * (100 + RECORD_OVERHEAD))
    batches = [acc.append(0, bytes(100)) for _ in range(7)]
    assert [len(b) for b in dict.fromkeys(batches)] == [3, 3, 1]
    assert batches[0] is batches[2] and batches[3] is not batches[2]
    assert batches[0].closed and not batches[-1].closed
    assert acc.queued_batches(0) == 3


def test_a_record_bigger_than_batch_size_gets_a_batch_of_its_own():
    acc, _ = make(batch_size=50)
    a = acc.append(0, bytes(10))
    big = acc.append(0, bytes(500))
    c = acc.append(0, bytes(10))
    assert a is not big and big is not c and len(big) == 1


def test_a_record_bigger_than_max_request_size_is_refused():
    acc, _ = make(max_request_size=100)
    with pytest.raises(FluvialError) as e:
        acc.append(0, bytes(200))
    assert e.value.code == ErrorCode.MessageTooLarge
    assert acc.is_empty()
    with pytest.raises(FluvialError):
        acc.append_many(0, [b"ok", bytes(200)])
    assert acc.is_empty()  # nothing of a refused append_many is queued


def test_partitions_have_separate_batches():
    acc, _ = make()
    a, b = acc.append(0, b"x"), acc.append(1, b"y")
    assert a is not b and (a.partition, b.partition) == (0, 1)


def test_linger_zero_makes_an_open_batch_ready_at_once():
    acc, clock = make(linger=0)
    b = acc.append(0, b"x")
    assert acc.ready_at() == clock.now
    assert acc.drain(clock.now) == {0: [b]}
    assert b.closed and acc.is_empty()
    assert acc.append(0, b"y") is not b  # a drained batch takes no more records


def test_linger_holds_an_open_batch_until_it_is_old_enough():
    acc, clock = make(linger=0.5)
    b = acc.append(0, b"x")
    assert acc.drain(clock.now) == {}
    assert acc.ready_at() == pytest.approx(clock.now + 0.5)
    clock.now += 0.25
    assert acc.drain(clock.now) == {}
    assert acc.drain(clock.now, flush=True) == {0: [b]}


def test_full_batches_are_ready_regardless_of_linger():
    acc, clock = make(linger=10, batch_size=2 * (1 + RECORD_OVERHEAD))
    for v in (b"a", b"b", b"c"):
        acc.append(0, v)
    ready = acc.drain(clock.now)
    assert [len(b) for b in ready[0]] == [2]
    assert acc.queued_batches(0) == 1


def test_with_linger_zero_an_open_batch_keeps_filling_behind_full_ones():
    acc, clock = make(linger=0, batch_size=2 * (1 + RECORD_OVERHEAD))
    for v in (b"a", b"b", b"c"):
        acc.append(0, v)
    assert [len(b) for b in acc.drain(clock.now)[0]] == [2]
    acc.append(0, b"d")
    assert [len(b) for b in acc.drain(clock.now)[0]] == [2]  # c and d went together


def test_drain_skips_muted_partitions_and_partitions_in_backoff():
    acc, clock = make()
    a, b, c = acc.append(0, b"a"), acc.append(1, b"b"), acc.append(2, b"c")
    acc.set_backoff(2, clock.now + 1)
    assert acc.drain(clock.now, muted={0}) == {1: [b]}
    assert acc.ready_at(muted={0}) == pytest.approx(clock.now + 1)
    clock.now += 1
    assert acc.drain(clock.now, muted={0}) == {2: [c]}
    assert acc.drain(clock.now) == {0: [a]}
    assert acc.ready_at() is None


def test_a_busy_partition_sends_closed_batches_and_keeps_its_open_one_filling():
    """Nagle's rule: with a request in flight, full batches go and the open one waits (also
    past its linger), unless flushed; an idle partition's open batch goes as before."""
    acc, clock = make(linger=0.5, batch_size=2 * (1 + RECORD_OVERHEAD))
    for v in (b"a", b"b", b"c"):
        acc.append(0, v)
    acc.append(1, b"x")
    clock.now += 1  # every open batch is past its linger
    assert acc.ready_at(busy={0, 1}) == -float("inf")  # a closed batch waits
    out = acc.drain(clock.now, busy={0, 1})
    assert [b.values for b in out[0]] == [[b"a", b"b"]] and 1 not in out
    assert acc.ready_at(busy={0, 1}) is None  # only open batches of busy partitions are left
    assert acc.ready_at(busy={0}) == pytest.approx(clock.now - 0.5)
    acc.append(0, b"d")  # still the open batch: it keeps filling
    out = acc.drain(clock.now, busy={0})  # partition 1 is idle now
    assert list(out) == [1] and [b.values for b in out[1]] == [[b"x"]]
    assert [b.values for b in acc.drain(clock.now, busy={0}, flush=True)[0]] == [[b"c", b"d"]]


def test_drain_takes_at_most_max_request_size_per_partition_but_always_one_batch():
    acc, clock = make(batch_size=100, max_request_size=250)
    for _ in range(10):
        acc.append(0, bytes(100 - RECORD_OVERHEAD))
    first = acc.drain(clock.now)[0]
    assert len(first) == 2 and acc.queued_batches(0) == 8


def test_reenqueued_batches_go_back_in_front_in_order():
    acc, clock = make(batch_size=1 + RECORD_OVERHEAD)
    batches = [acc.append(0, bytes([i])) for i in range(4)]
    taken = acc.drain(clock.now)[0]
    assert taken == batches[:3]  # the last one stays open behind full ones
    acc.reenqueue(taken)
    again = acc.drain(clock.now, flush=True)[0]
    assert again == batches


def test_append_many_splits_into_batches_and_reports_positions():
    acc, _ = make(batch_size=3 * (10 + RECORD_OVERHEAD))
    acc.append(0, bytes(10))
    pieces = acc.append_many(0, [bytes(10)] * 6, [b""] + [None] * 5)
    assert [(len(b), start, n) for b, start, n in pieces] == [(3, 1, 2), (3, 0, 3), (1, 0, 1)]
    first = pieces[0][0]
    assert first.keys == [None, b"", None]
    assert pieces[1][0].keys == [None, None, None]


def test_timestamp_deltas_only_with_linger():
    acc, clock = make(linger=1)
    b = acc.append(0, b"a")
    clock.now += 0.25
    acc.append(0, b"b")
    assert b.deltas == [0, 250]
    acc2, _ = make(linger=0)
    assert acc2.append(0, b"a").deltas is None


def test_take_all_empties_every_queue():
    acc, _ = make()
    acc.append(0, b"a")
    acc.append(3, b"b")
    assert len(acc.take_all()) == 2 and acc.is_empty()


def test_a_batch_encodes_once_and_keeps_the_bytes_for_retries():
    acc, _ = make()
    b = acc.append(0, b"v", b"k")
    data = b.encode(Compression.Gzip)
    assert b.encode(Compression.Gzip) is data
    assert [(r.key, r.value) for r in decode_batch(data).records] == [(b"k", b"v")]
