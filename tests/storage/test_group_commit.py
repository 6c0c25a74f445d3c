"""flush(), durable LEO and group commit: one fsync covers every append that came before it."""

from __future__ import annotations

import os
import threading

import pytest

from fluvial.storage import GroupCommit, ShortCircuited
from fluvial.storage import replica as replica_module

from .conftest import make_batch, read_all, values

TIMEOUT = 10  # seconds; only reached when something is broken


# --- the pure bookkeeping --------------------------------------------------------------------

def test_group_commit_starts_one_flush_and_releases_covered_waiters_in_order():
    gc = GroupCommit(durable_leo=5)
    assert gc.covered(5) and not gc.covered(6)
    assert gc.add_waiter(8, "c") is True  # nobody flushing: the caller starts one
    assert gc.add_waiter(6, "a") is False
    assert gc.add_waiter(7, "b") is False
    assert gc.flushing and len(gc) == 3
    released, again = gc.flush_done(7)
    assert (released, again) == (["a", "b"], True)
    assert gc.flushing and gc.durable_leo == 7
    assert gc.add_waiter(9, "d") is False  # a flush is (still) due
    released, again = gc.flush_done(9)
    assert (released, again) == (["c", "d"], False)
    assert not gc.flushing and len(gc) == 0


def test_group_commit_flush_failure_fails_every_waiter():
    gc = GroupCommit()
    gc.add_waiter(3, "x")
    gc.add_waiter(1, "y")
    assert gc.flush_failed() == ["y", "x"]
    assert not gc.flushing and len(gc) == 0
    assert gc.add_waiter(4, "z") is True


def test_reset_hands_back_every_waiter_and_lowers_the_durable_leo():
    """A truncation: waiters are failed, and no LEO above the new durable one counts as covered."""
    gc = GroupCommit(durable_leo=10)
    assert gc.add_waiter(15, "a") is True
    assert gc.add_waiter(12, "b") is False
    assert gc.reset(6) == ["b", "a"]
    assert len(gc) == 0 and gc.flushing  # the flush under way still reports back
    assert not gc.covered(8)
    assert gc.add_waiter(8, "c") is False  # covered by the flush under way or the next one
    assert gc.flush_done(6) == ([], True)
    assert gc.flush_done(8) == (["c"], False)


def test_waiters_with_equal_leo_are_all_released():
    gc = GroupCommit()
    for w in "abc":
        gc.add_waiter(2, w)
    assert gc.flush_done(2) == (["a", "b", "c"], False)


# --- Replica.flush ---------------------------------------------------------------------------

@pytest.fixture
def synced(monkeypatch):
    """Records the inode of every fdatasync'd file and every directory fsync."""
    calls = {"files": [], "dirs": 0}
    real = os.fdatasync
    real_dir = replica_module.fsync_dir

    def fdatasync(fd):
        calls["files"].append(os.fstat(fd).st_ino)
        real(fd)

    def fsync_dir(path):
        calls["dirs"] += 1
        real_dir(path)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(replica_module, "fsync_dir", fsync_dir)
    return calls


def test_one_flush_covers_every_append_before_it(open_replica, synced):
    r = open_replica()
    synced["dirs"] = 0  # opening syncs the directory
    for _ in range(5):
        r.append(make_batch(2), leader_epoch=0)
    assert (r.durable_leo, r.needs_flush) == (0, True)
    assert r.flush() == r.durable_leo == 10
    assert len(synced["files"]) == 1 and synced["dirs"] == 0
    assert not r.needs_flush
    assert r.flush() == 10  # nothing new: no fsync
    assert len(synced["files"]) == 1


def test_flush_after_a_roll_syncs_every_written_segment_and_the_directory(open_replica, synced):
    r = open_replica(segment_max_bytes=100)
    r.append(make_batch(1), leader_epoch=0)
    r.flush()
    synced["files"].clear()
    synced["dirs"] = 0
    r.append(b"".join(make_batch(1) for _ in range(3)), leader_epoch=0)  # fills 1, 2, 3
    assert r.flush() == 4
    inodes = {os.stat(s.path).st_ino for s in r.segments[1:]}
    assert set(synced["files"]) == inodes and synced["dirs"] == 1


def _blocking_sync(monkeypatch):
    """fdatasync that, on its first call, signals ``entered`` and waits for ``release``."""
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync
    first = [True]

    def fdatasync(fd):
        if first[0]:
            first[0] = False
            entered.set()
            assert release.wait(TIMEOUT)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return entered, release


def _flush_in_thread(r):
    result = {}

    def run():
        try:
            result["durable"] = r.flush()
        except Exception as exc:  # pragma: no cover - reported by the assertions
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, result


def test_an_append_during_an_fsync_is_left_for_the_next_flush(open_replica, monkeypatch):
    r = open_replica()
    r.append(make_batch(2), leader_epoch=0)
    entered, release = _blocking_sync(monkeypatch)
    t, result = _flush_in_thread(r)
    assert entered.wait(TIMEOUT)
    r.append(make_batch(1), leader_epoch=0)  # lands while the fsync runs
    release.set()
    t.join(TIMEOUT)
    assert result == {"durable": 2}
    assert (r.durable_leo, r.leo, r.needs_flush) == (2, 3, True)
    assert r.flush() == 3


def test_a_truncation_during_an_fsync_is_not_claimed_durable(open_replica, monkeypatch):
    r = open_replica()
    r.append(make_batch(2, b"old"), leader_epoch=0)
    r.append(make_batch(2, b"old"), leader_epoch=0)
    r.flush()
    r.append(make_batch(2, b"old"), leader_epoch=0)  # 4..5, not yet durable
    entered, release = _blocking_sync(monkeypatch)
    t, result = _flush_in_thread(r)
    assert entered.wait(TIMEOUT)
    r.truncate_to(2)
    r.append(make_batch(4, b"new"), leader_epoch=1)  # 2..5 again, different records
    release.set()
    t.join(TIMEOUT)
    assert result == {"durable": 2}  # the pre-truncation snapshot (leo 6) is not published
    assert r.durable_leo == 2
    assert r.flush() == 6
    assert values(read_all(r))[2:] == [(o, b"new") for o in range(2, 6)]


def test_concurrent_writers_share_fsyncs(open_replica, monkeypatch):
    """8 writer threads, appends serialised as on an event loop, each waiting until a flush
    covers its append: everyone is acknowledged only when durable, with fewer fsyncs than
    appends."""
    r = open_replica(segment_max_bytes=20_000)
    gc = GroupCommit(r.durable_leo)
    loop = threading.Lock()  # stands for the event-loop thread
    fsyncs = []
    real = os.fdatasync
    all_waiting = threading.Event()  # every writer has an append waiting for a flush

    def fdatasync(fd):
        if not fsyncs:  # hold the first fsync until all 8 wait: the next one must cover 7
            all_waiting.wait(TIMEOUT)
        fsyncs.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    flushers: list[threading.Thread] = []
    errors: list[str] = []

    def run_flushes():
        while True:
            durable = r.flush()
            with loop:
                released, again = gc.flush_done(durable)
            for event in released:
                event.set()
            if not again:
                return

    def writer(i):
        for k in range(25):
            event = threading.Event()
            with loop:
                leo = r.append(make_batch(1, b"w%d-%d" % (i, k)), leader_epoch=0).leo
                start = gc.add_waiter(leo, event)
                if len(gc) == 8:
                    all_waiting.set()
                if start:
                    flushers.append(threading.Thread(target=run_flushes))
                    flushers[-1].start()
            if not event.wait(TIMEOUT):
                errors.append(f"writer {i} append {k} never acknowledged")
                return
            if r.durable_leo < leo:
                errors.append(f"writer {i} acknowledged at durable {r.durable_leo} < {leo}")

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(TIMEOUT * 2)
    for t in list(flushers):
        t.join(TIMEOUT)
    assert errors == []
    assert r.leo == r.durable_leo == 200
    assert len(fsyncs) <= 200 - 6
    assert len(values(read_all(r))) == 200


def test_flush_on_a_short_circuited_replica_raises(open_replica):
    r = open_replica()
    r._short_circuit("test")
    with pytest.raises(ShortCircuited):
        r.flush()


# --- where a flush runs ----------------------------------------------------------------------

def test_a_flush_runs_on_the_loop_only_when_nothing_waits_little_is_unflushed_and_the_disk_is_fast():
    from fluvial.storage.group_commit import FlushPlacement

    p = FlushPlacement(max_bytes=1000, max_seconds=0.002)
    assert p.inline(runnable_tasks=0, unflushed_bytes=1000)
    assert not p.inline(runnable_tasks=1, unflushed_bytes=10)  # others are ready: keep serving them
    assert not p.inline(runnable_tasks=0, unflushed_bytes=1001)  # a long fsync: a worker thread
    p.took(0.0021)  # the disk stalled once
    assert not p.inline(runnable_tasks=0, unflushed_bytes=10)
    p.took(0.0005)  # ... until a flush is fast again
    assert p.inline(runnable_tasks=0, unflushed_bytes=10)
