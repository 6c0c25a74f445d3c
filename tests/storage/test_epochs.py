"""Leader-epoch cache (KIP-101/279 semantics) and both checkpoint files."""

from __future__ import annotations

import os

import pytest

from fluvial.storage import EpochEndOffset, LeaderEpochCache, ReplicaConfig
from fluvial.storage.checkpoint import (
    EPOCH_CHECKPOINT,
    HW_CHECKPOINT,
    decode_epochs,
    decode_hw,
    encode_epochs,
    encode_hw,
    write_atomic,
)

from .conftest import make_batch


@pytest.fixture
def cache():
    """The worked example of fluvial.storage.epochs: epochs 1, 3, 4 starting at 0, 150, 200."""
    return LeaderEpochCache([(1, 0), (3, 150), (4, 200)])


@pytest.mark.parametrize("epoch, expected", [
    (4, (4, 260)),  # the latest epoch ends at the LEO
    (3, (3, 200)),  # ends where epoch 4 starts
    (2, (1, 150)),  # never led: the largest epoch <= 2 is 1, which ended where 3 started
    (1, (1, 150)),
    (0, (0, 0)),  # older than anything known: the first known epoch's start
    (5, (-1, -1)),  # newer than anything known
    (-1, (-1, -1)),
])
def test_end_offset_for_epoch_worked_examples(cache, epoch, expected):
    assert cache.end_offset_for(epoch, leo=260) == EpochEndOffset(*expected)


def test_empty_cache_knows_no_epoch():
    assert LeaderEpochCache().end_offset_for(0, leo=10) == (-1, -1)
    assert LeaderEpochCache().latest_epoch == -1


def test_assign_same_epoch_later_offset_changes_nothing(cache):
    assert not cache.assign(4, 230)
    assert cache.entries[-1] == (4, 200)


def test_assign_newer_epoch_appends(cache):
    assert cache.assign(6, 260)
    assert cache.entries[-1] == (6, 260)


def test_assign_drops_entries_the_data_contradicts(cache):
    # an older epoch, or a start at or before existing starts, rewrites the tail
    assert cache.assign(2, 100)
    assert cache.entries == [(1, 0), (2, 100)]
    assert cache.assign(5, 0)
    assert cache.entries == [(5, 0)]


def test_assign_rejects_negative_values(cache):
    with pytest.raises(ValueError):
        cache.assign(-1, 0)


def test_truncate_from_end_drops_epochs_starting_at_or_after(cache):
    assert cache.truncate_from_end(200)
    assert cache.entries == [(1, 0), (3, 150)]
    assert not cache.truncate_from_end(300)
    assert cache.truncate_from_end(0)
    assert cache.entries == []


def test_truncate_from_start_moves_the_covering_epoch_up(cache):
    assert cache.truncate_from_start(170)
    assert cache.entries == [(3, 170), (4, 200)]
    assert not cache.truncate_from_start(170)
    assert cache.truncate_from_start(200)
    assert cache.entries == [(4, 200)]


def test_epoch_checkpoint_round_trip_and_format(cache):
    data = encode_epochs(cache)
    assert data == b"0\n3\n1 0\n3 150\n4 200\n"
    assert decode_epochs(data) == cache
    assert decode_epochs(encode_epochs(LeaderEpochCache())) == LeaderEpochCache()


@pytest.mark.parametrize("data", [
    b"", b"1\n0\n", b"0\n2\n1 0\n", b"0\n1\n1\n", b"0\nx\n", b"0\n2\n3 0\n1 5\n", b"0\n1\n-2 0\n",
    b"\xff\xfe", b"0\n1\n1 0 0\n",
])
def test_malformed_epoch_checkpoint_is_refused(data):
    assert decode_epochs(data) is None


def test_hw_checkpoint_is_an_i64_big_endian():
    assert encode_hw(258) == b"\x00\x00\x00\x00\x00\x00\x01\x02"
    assert decode_hw(encode_hw(258)) == 258
    assert decode_hw(b"\x00" * 7) is None
    assert decode_hw(b"\xff" * 8) is None


def test_write_atomic_replaces_whole_file(tmp_path):
    path = str(tmp_path / "x.chk")
    write_atomic(path, b"one")
    write_atomic(path, b"two!")
    with open(path, "rb") as f:
        assert f.read() == b"two!"
    assert os.listdir(tmp_path) == ["x.chk"]


# --- on a replica ------------------------------------------------------------------------------

def test_new_epochs_are_checkpointed_as_they_start(open_replica):
    r = open_replica()
    r.append(make_batch(2), leader_epoch=1)
    r.append(make_batch(2), leader_epoch=1)
    r.append(make_batch(3), leader_epoch=3)
    assert r.epochs == [(1, 0), (3, 4)]
    assert r.latest_epoch == 3
    with open(os.path.join(r.path, EPOCH_CHECKPOINT), "rb") as f:
        assert f.read() == b"0\n2\n1 0\n3 4\n"
    assert r.end_offset_for_epoch(3) == (3, 7)
    assert r.end_offset_for_epoch(2) == (1, 4)
    assert r.end_offset_for_epoch(1) == (1, 4)
    assert r.end_offset_for_epoch(0) == (0, 0)
    assert r.end_offset_for_epoch(9) == (-1, -1)


def test_assign_epoch_at_election_then_end_offset_is_the_leo(open_replica):
    r = open_replica()
    r.append(make_batch(2), leader_epoch=1)
    assert r.assign_epoch(2)
    assert not r.assign_epoch(2)
    assert r.epochs == [(1, 0), (2, 2)]
    assert r.end_offset_for_epoch(1) == (1, 2)
    assert r.end_offset_for_epoch(2) == (2, 2)
    r.append(make_batch(1), leader_epoch=2)
    assert r.epochs == [(1, 0), (2, 2)]


def test_follower_epochs_follow_the_leader_batches(open_replica, tmp_path):
    from fluvial.storage import Replica
    leader = open_replica()
    for epoch in (1, 1, 2, 5):
        leader.append(make_batch(1), leader_epoch=epoch)
    follower = Replica.open(tmp_path, "t", 1, ReplicaConfig())
    try:
        follower.append_replica(leader.read(0, 1 << 20).read_bytes())
        assert follower.epochs == leader.epochs == [(1, 0), (2, 2), (5, 3)]
    finally:
        follower.close()


def test_epochs_and_hw_survive_reload(open_replica):
    r = open_replica()
    r.append(make_batch(2), leader_epoch=1)
    r.append(make_batch(2), leader_epoch=2)
    r.set_hw(3)
    assert r.checkpoint_hw() == 3
    with open(os.path.join(r.path, HW_CHECKPOINT), "rb") as f:
        assert f.read() == encode_hw(3)
    r.close()
    r2 = open_replica()
    assert (r2.epochs, r2.hw) == ([(1, 0), (2, 2)], 3)


def test_set_hw_clamps_to_log_start_and_leo(open_replica):
    r = open_replica()
    r.append(make_batch(4), leader_epoch=0)
    assert r.set_hw(10) == 4
    assert r.set_hw(-3) == 0
    assert r.set_hw(2) == r.hw == 2
