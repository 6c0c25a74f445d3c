"""Where the SPU's fsyncs run (``partition.flush_placed``): on the event-loop thread while that
costs nobody anything, in a worker thread otherwise, with the same results and errors."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from fluvial.protocol import internal_api as ia
from fluvial.protocol.record import encode_batch
from fluvial.spu.partition import PartitionReplica, flush_placed
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.group_commit import FlushPlacement
from fluvial.storage.replica import Replica


def replica(path, flushes: FlushPlacement) -> PartitionReplica:
    a = ia.ReplicaAssignment("t", 0, 1, 1, [1], [1], ia.ReplicaSettings())
    return PartitionReplica(Replica.open(path, "t", 0, ReplicaConfig()), a, 1, flushes=flushes)


def flushing_thread(r: PartitionReplica, order: list[str] | None = None) -> list[int]:
    """Record the thread of every ``storage.flush`` of ``r`` (and "fsync" in ``order``)."""
    seen: list[int] = []
    flush = r.storage.flush

    def spy() -> int:
        seen.append(threading.get_ident())
        if order is not None:
            order.append("fsync")
        return flush()

    r.storage.flush = spy
    return seen


async def test_an_idle_spu_fsyncs_on_its_loop_and_a_slow_disk_moves_the_fsync_to_a_thread(tmp_path):
    flushes = FlushPlacement()
    r = replica(tmp_path, flushes)
    seen = flushing_thread(r)
    loop = threading.get_ident()
    r.storage.append(encode_batch([b"a"]), leader_epoch=1)
    assert r.storage.unflushed_bytes > 0
    assert await flush_placed(flushes, r.storage.flush, lambda: r.storage.unflushed_bytes) == 1
    assert seen == [loop] and r.storage.durable_leo == 1 and r.storage.unflushed_bytes == 0

    flushes.took(1.0)  # the disk stalled: the next fsync must not hold the loop
    r.storage.append(encode_batch([b"b"]), leader_epoch=1)
    assert await flush_placed(flushes, r.storage.flush, lambda: r.storage.unflushed_bytes) == 2
    assert seen[1] != loop and r.storage.durable_leo == 2
    assert flushes.last_seconds < 1.0  # measured again, in the thread: the loop may come back
    r.storage.close()


async def test_a_long_fsync_runs_in_a_thread(tmp_path):
    """The bytes appended since the last flush are counted: more than the placement's limit
    go to a worker thread, however idle the loop."""
    flushes = FlushPlacement(max_bytes=4096)
    r = replica(tmp_path, flushes)
    seen = flushing_thread(r)
    r.storage.append(encode_batch([bytes(5000)]), leader_epoch=1)
    assert r.storage.unflushed_bytes > 5000
    assert await flush_placed(flushes, r.storage.flush, lambda: r.storage.unflushed_bytes) == 1
    assert seen and seen[0] != threading.get_ident()
    assert r.storage.unflushed_bytes == 0
    r.storage.close()


async def test_a_busy_spu_fsyncs_in_a_thread(tmp_path):
    flushes = FlushPlacement()
    r = replica(tmp_path, flushes)
    seen = flushing_thread(r)
    r.storage.append(encode_batch([b"a"]), leader_epoch=1)
    release = trio.Event()
    async with trio.open_nursery() as n:
        n.start_soon(release.wait)  # another task ...
        n.start_soon(release.wait)  # ... and another, both ready to run now
        assert await flush_placed(flushes, r.storage.flush, lambda: r.storage.unflushed_bytes) == 1
        release.set()
    assert seen and seen[0] != threading.get_ident()
    r.storage.close()


async def test_a_leader_s_followers_fetches_go_before_its_fsync_which_then_stays_on_the_loop(tmp_path):
    """One append wakes a leader's waiting follower fetches (parked in ``waiters``) and its
    flusher, in one batch of trio's scheduler and in either order (trio reverses a batch at
    random: 20 rounds). The fetches run first, so that the followers' copies and fsyncs overlap
    the leader's; the fsync then runs on the idle loop, not in a worker thread."""
    flushes = FlushPlacement()
    a = ia.ReplicaAssignment("t", 0, 1, 1, [1, 2, 3], [1, 2, 3], ia.ReplicaSettings())
    r = PartitionReplica(Replica.open(tmp_path, "t", 0, ReplicaConfig()), a, 1, flushes=flushes)
    assert r.is_leader
    loop = threading.get_ident()
    order: list[str] = []
    threads = flushing_thread(r, order)

    async def fetch() -> None:  # a follower's long poll, parked in ``waiters`` until a change
        await r.wait_change()
        order.append("served")

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(r.run_flusher)
            for i in range(20):
                async with trio.open_nursery() as fetches:
                    fetches.start_soon(fetch)
                    fetches.start_soon(fetch)
                    await trio.testing.wait_all_tasks_blocked()
                    leo = r.storage.append(encode_batch([b"%d" % i]), leader_epoch=1).leo
                    r.notify()  # as append_nowait does
                    await r.wait_durable(leo)
                assert order[-3:] == ["served", "served", "fsync"], (i, order[-3:])
            n.cancel_scope.cancel()
    assert threads == [loop] * 20 and r.storage.durable_leo == 20
    r.storage.close()


@pytest.mark.parametrize("slow", [False, True], ids=["on the loop", "in a thread"])
async def test_a_failed_fsync_raises_the_same_either_way(tmp_path, slow):
    flushes = FlushPlacement()
    if slow:
        flushes.took(1.0)
    r = replica(tmp_path, flushes)  # an SPU's loop, as above

    def broken() -> int:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        await flush_placed(flushes, broken, lambda: 10)
    r.storage.close()


@pytest.mark.parametrize("slow", [False, True], ids=["on the loop", "in a thread"])
async def test_an_append_waits_for_its_fsync_and_a_failed_fsync_fails_it(tmp_path, slow):
    """``wait_durable`` with the flusher's fsync on the loop or in a thread: the wait ends only
    once the records are durable, and a failed fsync fails the wait and the replica."""
    flushes = FlushPlacement(max_bytes=-1 if slow else 1 << 20)
    r = replica(tmp_path, flushes)
    seen = flushing_thread(r)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(r.run_flusher)
            leo = r.storage.append(encode_batch([b"a"]), leader_epoch=1).leo
            await r.wait_durable(leo)
            assert r.storage.durable_leo == leo and len(seen) == 1
            assert (seen[0] == threading.get_ident()) is not slow

            def broken() -> int:
                raise OSError(5, "Input/output error")

            r.storage.flush = broken
            leo = r.storage.append(encode_batch([b"b"]), leader_epoch=1).leo
            with pytest.raises(OSError, match="Input/output"):
                await r.wait_durable(leo)
            assert r.failed is not None and r.storage.durable_leo == leo - 1
            r.closed = True
            n.cancel_scope.cancel()
    del r.storage.flush  # the real one again, for close()
    r.storage.close()
