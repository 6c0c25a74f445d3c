"""Compaction of a replica on disk: the pass, reopening, followers, and crashes during the swap."""

from __future__ import annotations

import os

import pytest

from fluvial.protocol.record import ProducerRecord, encode_batch
from fluvial.storage import Replica, ReplicaConfig
from fluvial.storage import cleaner

from .conftest import TS, read_all, segment_files

NOW = TS / 1000 + 10  # seconds: every record is 10 s old


def cfg(**kw) -> ReplicaConfig:
    base = dict(segment_max_bytes=400, preallocate_bytes=0, cleanup_policy="compact",
                tombstone_retention_seconds=3600, min_cleanable_dirty_ratio=0.0)
    base.update(kw)
    return ReplicaConfig(**base)


def put(replica: Replica, *pairs: tuple[bytes, bytes], epoch: int = 0) -> None:
    replica.append(encode_batch([ProducerRecord(v, k) for k, v in pairs], first_timestamp=TS),
                   leader_epoch=epoch)


def fill(replica: Replica, rounds: int = 6) -> dict[bytes, tuple[int, bytes]]:
    """Keys k0..k4 written ``rounds`` times, one record per batch; returns key -> (offset, value)."""
    latest = {}
    for r in range(rounds):
        for k in range(5):
            key, value = f"k{k}".encode(), f"v{r}".encode()
            latest[key] = (replica.leo, value)
            put(replica, (key, value))
    replica.set_hw(replica.leo)
    return latest


def state(replica: Replica, upper: int | None = None) -> list[tuple[int, bytes | None, bytes]]:
    from fluvial.protocol.record import decode_record_set
    return [(r.offset, r.key, r.value) for r in decode_record_set(read_all(replica, upper=upper))]


def latest_of(records) -> dict:
    out = {}
    for off, k, v in records:
        out[k] = (off, v)
    return out


@pytest.mark.parametrize("reuse", [cleaner.REUSE_DECODED_BYTES, 500, 0], ids=["all-reused", "some", "none"])
def test_pass_keeps_latest_per_key_offsets_and_survives_reopen(tmp_path, monkeypatch, reuse):
    monkeypatch.setattr(cleaner, "REUSE_DECODED_BYTES", reuse)  # pass 2 re-reads the rest
    r = Replica.open(tmp_path, "t", 0, cfg())
    latest = fill(r)
    assert len(r.segments) > 3
    before = state(r)
    plan = r.compact(NOW)
    assert plan is not None and plan.rewritten
    after = state(r)
    assert len(after) < len(before)
    assert latest_of(after) == latest_of(before) == latest
    assert set(after) <= set(before)  # same offsets, keys and values
    active_base = r.segments[-1].base_offset
    assert [x for x in after if x[0] >= active_base] == [x for x in before if x[0] >= active_base]
    size = r.size_bytes()
    r.close()
    r = Replica.open(tmp_path, "t", 0, cfg())
    assert state(r) == after and r.size_bytes() == size
    assert r.verify_sealed(1 << 20) is None  # every cleaned batch checks out
    put(r, (b"k0", b"new"))  # the log goes on where it ended
    assert latest_of(state(r))[b"k0"][1] == b"new"
    r.close()


def test_reads_from_inside_a_gap_start_at_the_next_record(tmp_path):
    r = Replica.open(tmp_path, "t", 0, cfg())
    fill(r)
    r.compact(NOW)
    offsets = [x[0] for x in state(r)]
    gap = next(o for o in range(offsets[-1]) if o not in offsets)
    res = r.read(gap, 1 << 20, r.hw)
    assert res.first_offset > gap and res.first_offset == min(o for o in offsets if o > gap)
    r.close()


def test_a_follower_copies_a_compacted_log_with_gaps_and_reopens(tmp_path):
    leader = Replica.open(tmp_path / "l", "t", 0, cfg())
    fill(leader)
    leader.compact(NOW)
    follower = Replica.open(tmp_path / "f", "t", 0, cfg(segment_max_bytes=250))
    offset = 0
    while offset < leader.leo:
        chunk = leader.read(offset, 300, leader.leo)
        follower.append_replica(chunk.read_bytes())
        offset = chunk.next_offset
    assert follower.leo == leader.leo
    follower.set_hw(follower.leo)
    expected = state(leader)
    assert state(follower) == expected
    follower.close()
    follower = Replica.open(tmp_path / "f", "t", 0, cfg(segment_max_bytes=250))
    assert state(follower) == expected and follower.recovery.truncated_bytes == 0
    # it compacts on its own and keeps the same latest values
    follower.compact(NOW, force=True)
    assert latest_of(state(follower)) == latest_of(expected)
    follower.close()
    leader.close()


def test_truncate_inside_a_gap_ends_the_log_at_the_record_before(tmp_path):
    r = Replica.open(tmp_path, "t", 0, cfg(segment_max_bytes=10_000))
    put(r, (b"solo", b"1"))  # survives at offset 0, before the gap of superseded k0..k4
    fill(r)
    put(r, (b"x", b"1"))
    r.set_hw(r.leo - 1)
    r.close()
    r = Replica.open(tmp_path, "t", 0, cfg(segment_max_bytes=200))
    put(r, (b"y", b"1"))  # rolls: the old segment is sealed
    r.set_hw(r.leo)
    r.compact(NOW)
    offsets = [x[0] for x in state(r)]
    gap = next(o for o in range(offsets[0], offsets[-1]) if o not in offsets)
    before = max(o for o in offsets if o < gap)
    assert r.truncate_to(gap) == before + 1 == r.leo
    assert [x[0] for x in state(r)] == [o for o in offsets if o < gap]
    r.close()


def test_nothing_above_the_hw_nor_the_active_segment_and_retention_deletes_nothing(tmp_path):
    r = Replica.open(tmp_path, "t", 0, cfg(retention_seconds=0))
    fill(r)
    r.set_hw(0)
    assert r.compact(NOW) is None
    r.set_hw(r.leo)
    assert r.enforce_retention(now=NOW + 10**6) == []
    assert r.compact(NOW, force=True) is not None
    r.close()


def test_delete_policy_never_compacts(tmp_path):
    r = Replica.open(tmp_path, "t", 0, cfg(cleanup_policy="delete"))
    fill(r)
    assert r.compact(NOW, force=True) is None
    r.close()


def test_a_plan_for_a_segment_that_changed_is_discarded(tmp_path):
    r = Replica.open(tmp_path, "t", 0, cfg())
    fill(r)
    plan = r.run_prepared(r.prepare_compaction(NOW), NOW)
    assert plan.rewritten
    r.truncate_to(3)  # the cleaned segments are gone
    before = state(r)
    assert r.install_cleaned(plan) is False
    assert not [n for n in os.listdir(r.path) if n.endswith(cleaner.CLEANED_SUFFIX)]
    assert state(r) == before
    r.close()


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", range(17))
def test_a_crash_at_any_step_of_the_swap_leaves_old_or_new(tmp_path, monkeypatch, step):
    """Steps: fsync dir, marker write, its rename, the renames of .cleaned files, dir fsyncs,
    the marker's removal. A crash is an exception at that step; the replica is abandoned
    without closing and reopened."""
    r = Replica.open(tmp_path, "t", 0, cfg())
    fill(r)
    old = state(r)
    twin = Replica.open(tmp_path / "twin", "t", 0, cfg())  # the same log, compacted undisturbed
    fill(twin)
    twin.compact(NOW)
    new = state(twin)
    twin.close()
    plan = r.run_prepared(r.prepare_compaction(NOW), NOW)
    assert len(plan.rewritten) >= 2
    calls = {"n": 0, "marker": False}  # marker: it existed at some step (the swap is decided)

    def crashing(fn):
        def wrapper(*a, **kw):
            calls["n"] += 1
            calls["marker"] |= os.path.exists(os.path.join(r.path, cleaner.SWAP_MARKER))
            if calls["n"] > step:
                raise Crash(f"crash at step {step}")
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(cleaner, "fsync_dir", crashing(cleaner.fsync_dir))
    monkeypatch.setattr(cleaner, "replace_durably", crashing(cleaner.replace_durably))
    monkeypatch.setattr(cleaner.os, "replace", crashing(os.replace))
    monkeypatch.setattr(cleaner.os, "unlink", crashing(os.unlink))
    try:
        r.install_cleaned(plan)
        crashed = False
    except Crash:
        crashed = True
    monkeypatch.undo()
    r._close_files()  # abandoned: no flush, no index writes
    r = Replica.open(tmp_path, "t", 0, cfg())
    got = state(r)
    assert latest_of(got) == latest_of(old)
    assert not [n for n in os.listdir(r.path) if n.endswith(cleaner.CLEANED_SUFFIX) or n == cleaner.SWAP_MARKER]
    if not crashed or calls["marker"]:  # the marker was written: the swap completed at open
        assert got == new and len(got) < len(old)
    else:
        assert got == old
    r.close()


def test_cleaned_copies_are_fsynced_before_they_are_renamed_in(tmp_path, monkeypatch):
    r = Replica.open(tmp_path, "t", 0, cfg())
    fill(r)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        try:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            events.append(("fsync", "?"))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.realpath(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    plan = r.compact(NOW)
    monkeypatch.undo()
    assert plan is not None and plan.rewritten
    renamed = [p for kind, p in events if kind == "replace" and p.endswith(cleaner.CLEANED_SUFFIX)]
    assert len(renamed) == 2 * len(plan.rewritten)
    for path in renamed:
        synced_at = [i for i, e in enumerate(events) if e == ("fsync", path)]
        assert synced_at and synced_at[0] < events.index(("replace", path)), path
    # the directory is fsynced after the last rename, before the swap counts as done
    last_rename = max(events.index(("replace", p)) for p in renamed)
    assert ("fsync", os.path.realpath(r.path)) in events[last_rename:]
    assert segment_files(r) == sorted(segment_files(r))
    r.close()
