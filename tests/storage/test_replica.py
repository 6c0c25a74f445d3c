"""Append, read, roll and reload (plain pytest, tiny limits)."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from fluvial.protocol.batch import HEADER_BYTES, set_base_offset
from fluvial.storage import (
    BatchTooLarge,
    Replica,
    InvalidBatch,
    OffsetOutOfRange,
    ReplicaClosed,
    ReplicaConfig,
    StaleLeaderEpoch,
)
from fluvial.errors import ErrorCode

from .conftest import TS, headers, make_batch, read_all, segment_files, tails_are_clean, values


def test_new_replica_is_empty_at_offset_zero(open_replica, tmp_path):
    r = open_replica()
    assert (r.log_start_offset, r.hw, r.leo, r.durable_leo) == (0, 0, 0, 0)
    assert r.path == os.path.join(tmp_path, "t-0")
    assert segment_files(r) == ["00000000000000000000.log"]
    assert r.read(0, 1000).size == 0
    assert r.epochs == [] and r.latest_epoch == -1


def test_append_stamps_base_offsets_and_epoch_in_place(open_replica):
    r = open_replica()
    res = r.append(make_batch(3, b"a") + make_batch(2, b"b"), leader_epoch=7)
    assert (res.base_offset, res.last_offset, res.leo, res.batch_count) == (0, 4, 5, 2)
    res = r.append(make_batch(1, b"c"), leader_epoch=7)
    assert (res.base_offset, res.last_offset, res.leo) == (5, 5, 6)
    data = read_all(r)
    assert [(h.base_offset, h.partition_leader_epoch) for h in headers(data)] == [(0, 7), (3, 7), (5, 7)]
    assert values(data) == [(0, b"a"), (1, b"a"), (2, b"a"), (3, b"b"), (4, b"b"), (5, b"c")]
    assert res.end_position == r.size_bytes() == len(data)


def test_stored_bytes_equal_produced_bytes_apart_from_offset_and_epoch(open_replica):
    r = open_replica()
    produced = make_batch(4, b"payload")
    r.append(make_batch(1), leader_epoch=0)
    r.append(produced, leader_epoch=3)
    stored = r.read(1, 1000).read_bytes()
    assert stored[8:12] == produced[8:12]  # batch_length
    assert stored[16:] == produced[16:]  # magic, crc, everything the CRC covers
    assert stored[:8] == (1).to_bytes(8, "big") and stored[12:16] == (3).to_bytes(4, "big")


def test_segments_roll_at_segment_max_bytes(open_replica):
    r = open_replica(segment_max_bytes=100)
    for i in range(5):
        r.append(make_batch(1), leader_epoch=0)  # 73 bytes: one per segment
    assert segment_files(r) == [f"{i:020d}.log" for i in range(5)]
    assert [s.size_bytes for s in r.segments] == [73] * 5
    assert values(read_all(r)) == [(i, b"hello") for i in range(5)]


def test_small_batches_share_a_segment_until_the_next_would_overflow(open_replica):
    r = open_replica(segment_max_bytes=150)
    for _ in range(5):
        r.append(make_batch(1), leader_epoch=0)
    assert [s.base_offset for s in r.segments] == [0, 2, 4]
    assert [s.size_bytes for s in r.segments] == [146, 146, 73]


def test_a_batch_larger_than_a_segment_gets_one_of_its_own(open_replica):
    r = open_replica(segment_max_bytes=100)
    r.append(make_batch(1), leader_epoch=0)
    big = make_batch(10, b"x" * 50)
    r.append(big, leader_epoch=0)
    r.append(make_batch(1), leader_epoch=0)
    assert [s.base_offset for s in r.segments] == [0, 1, 11]
    assert r.segments[1].size_bytes == len(big) > 100


def test_one_append_can_span_several_new_segments(open_replica):
    r = open_replica(segment_max_bytes=100)
    res = r.append(b"".join(make_batch(1, b"v%d" % i) for i in range(4)), leader_epoch=0)
    assert (res.base_offset, res.leo) == (0, 4)
    assert [s.base_offset for s in r.segments] == [0, 1, 2, 3]
    assert values(read_all(r)) == [(i, b"v%d" % i) for i in range(4)]


def test_reload_restores_offsets_data_epochs_and_hw(open_replica):
    cfg = ReplicaConfig(segment_max_bytes=200, index_max_interval_bytes=80)
    r = open_replica(cfg)
    for i in range(12):
        r.append(make_batch(i % 3 + 1, b"r%d" % i), leader_epoch=1 if i < 6 else 4)
    r.set_hw(9)
    r.checkpoint_hw()
    before = read_all(r)
    segments = r.segments
    r.close()
    r2 = open_replica(cfg)
    assert (r2.leo, r2.hw, r2.log_start_offset, r2.durable_leo) == (r.leo, 9, 0, r.leo)
    assert r2.segments == segments
    assert r2.epochs == [(1, 0), (4, 12)]
    assert read_all(r2) == before
    assert r2.recovery.truncated_bytes == 0 and not r2.recovery.rebuilt_indexes
    for offset in range(r2.leo):  # every offset is found through the index
        first = headers(r2.read(offset, 1).read_bytes())[0]
        assert first.base_offset <= offset < first.next_offset
    r2.append(make_batch(1, b"after"), leader_epoch=4)
    assert values(read_all(r2))[-1] == (r.leo, b"after")


def test_sealed_segments_get_an_index_file_with_sparse_entries(open_replica):
    r = open_replica(segment_max_bytes=1000, index_max_interval_bytes=150)
    for _ in range(20):
        r.append(make_batch(1), leader_epoch=0)
    first = r.segments[0]
    with open(first.path[:-4] + ".index", "rb") as f:
        data = f.read()
    # 13 batches of 73 bytes in segment 0; an entry whenever >= 150 bytes past the last one
    entries = [(int.from_bytes(data[i:i + 4], "big"), int.from_bytes(data[i + 4:i + 8], "big"))
               for i in range(0, len(data), 8)]
    assert entries == [(k, 73 * k) for k in (3, 6, 9, 12)]


# --- read semantics --------------------------------------------------------------------------

@pytest.fixture
def three_batches(open_replica):
    """Batches [0..2] [3..4] [5..9] in one segment."""
    r = open_replica()
    r.append(make_batch(3, b"a"), leader_epoch=0)
    r.append(make_batch(2, b"b"), leader_epoch=0)
    r.append(make_batch(5, b"c"), leader_epoch=0)
    r.set_hw(10)
    return r


def test_read_starts_with_the_batch_holding_the_offset(three_batches):
    res = three_batches.read(4, 10_000)
    assert (res.first_offset, res.next_offset) == (3, 10)
    assert [h.base_offset for h in headers(res.read_bytes())] == [3, 5]


def test_read_stops_before_exceeding_max_bytes_but_returns_at_least_one_batch(three_batches):
    sizes = [h.size for h in headers(read_all(three_batches))]
    res = three_batches.read(0, sizes[0] + sizes[1])
    assert (res.first_offset, res.next_offset, res.size) == (0, 5, sizes[0] + sizes[1])
    res = three_batches.read(0, sizes[0] + sizes[1] - 1)
    assert res.next_offset == 3
    res = three_batches.read(3, 1)
    assert (res.first_offset, res.next_offset, res.size) == (3, 5, sizes[1])


def test_read_stops_before_the_upper_bound(three_batches):
    assert three_batches.read(0, 10_000, 5).next_offset == 5
    assert three_batches.read(0, 10_000, 4).next_offset == 3  # batch 3..4 reaches past 4
    res = three_batches.read(3, 10_000, 4)  # the batch holding 3 ends past the bound
    assert (res.size, res.first_offset, res.next_offset, res.slices) == (0, 3, 3, [])
    assert three_batches.read(5, 10_000, 5).size == 0
    assert three_batches.read(0, 10_000, 99).next_offset == 10  # capped at the LEO


def test_read_result_carries_hw_leo_and_log_start(three_batches):
    three_batches.set_hw(5)
    res = three_batches.read(0, 10_000, three_batches.hw)
    assert (res.hw, res.leo, res.log_start_offset) == (5, 10, 0)


def test_read_at_leo_is_empty_and_past_leo_is_out_of_range(three_batches):
    assert three_batches.read(10, 100).size == 0
    with pytest.raises(OffsetOutOfRange) as info:
        three_batches.read(11, 100)
    assert not info.value.evicted and info.value.code == ErrorCode.OffsetOutOfRange
    assert (info.value.offset, info.value.log_start_offset, info.value.leo) == (11, 0, 10)
    with pytest.raises(OffsetOutOfRange):
        three_batches.read(-1, 100)


def test_read_crosses_segments_into_one_result(open_replica):
    r = open_replica(segment_max_bytes=100)
    for i in range(4):
        r.append(make_batch(1, b"v%d" % i), leader_epoch=0)
    res = r.read(1, 10_000)
    assert [(s.path.rsplit("/", 1)[1], s.position, s.length) for s in res.slices] == [
        ("00000000000000000001.log", 0, 70), ("00000000000000000002.log", 0, 70),
        ("00000000000000000003.log", 0, 70)]
    assert values(res.read_bytes()) == [(1, b"v1"), (2, b"v2"), (3, b"v3")]
    assert res.bytes == res.read_bytes()


def test_slices_are_ready_for_sendfile(open_replica):
    r = open_replica(segment_max_bytes=100)
    for i in range(3):
        r.append(make_batch(1, b"v%d" % i), leader_epoch=0)
    res = r.read(0, 10_000)
    a, b = socket.socketpair()
    with a, b:
        for s in res.slices:
            fd = os.open(s.path, os.O_RDONLY)
            try:
                sent = 0
                while sent < s.length:
                    sent += os.sendfile(a.fileno(), fd, s.position + sent, s.length - sent)
            finally:
                os.close(fd)
        received = b""
        while len(received) < res.size:
            received += b.recv(65536)
    assert received == res.read_bytes()


def test_read_many_small_batches_through_the_index(open_replica):
    r = open_replica(segment_max_bytes=5000, index_max_interval_bytes=200)
    for i in range(300):
        r.append(make_batch(i % 4 + 1, b"%d" % i), leader_epoch=0)
    expected = values(read_all(r))
    assert [o for o, _ in expected] == list(range(r.leo))
    for offset in range(0, r.leo, 7):
        res = r.read(offset, 300)
        got = values(res.read_bytes())
        assert got[0][0] <= offset <= got[-1][0]
        assert got == expected[got[0][0]:got[-1][0] + 1]


# --- bad input -------------------------------------------------------------------------------

def _assert_nothing_written(r, leo, size):
    assert (r.leo, r.size_bytes()) == (leo, size)
    assert tails_are_clean(r)


@pytest.mark.parametrize("damage", ["crc", "short", "long", "trailing", "magic", "empty-batch"])
def test_a_bad_batch_rejects_the_whole_append_before_it_touches_disk(open_replica, damage):
    r = open_replica()
    r.append(make_batch(1), leader_epoch=0)
    good = make_batch(2)
    bad = bytearray(make_batch(3))
    if damage == "crc":
        bad[-1] ^= 1
    elif damage == "short":
        bad = bad[:-1]
    elif damage == "long":
        bad[8:12] = (int.from_bytes(bad[8:12], "big") + 1).to_bytes(4, "big")
    elif damage == "trailing":
        bad += b"\x00" * (HEADER_BYTES - 1)
    elif damage == "magic":
        bad[16] = 1
    elif damage == "empty-batch":
        bad[23:27] = (-1).to_bytes(4, "big", signed=True)
    with pytest.raises(InvalidBatch):
        r.append(good + bytes(bad), leader_epoch=0)
    _assert_nothing_written(r, 1, 73)


def test_empty_record_set_is_rejected(open_replica):
    r = open_replica()
    with pytest.raises(InvalidBatch):
        r.append(b"", leader_epoch=0)


def test_batch_larger_than_max_batch_bytes_is_rejected(open_replica):
    r = open_replica(max_batch_bytes=100)
    with pytest.raises(BatchTooLarge) as info:
        r.append(make_batch(5), leader_epoch=0)
    assert info.value.code == ErrorCode.MessageTooLarge
    _assert_nothing_written(r, 0, 0)


def test_append_with_an_older_epoch_is_refused(open_replica):
    r = open_replica()
    r.append(make_batch(1), leader_epoch=5)
    with pytest.raises(StaleLeaderEpoch):
        r.append(make_batch(1), leader_epoch=4)
    _assert_nothing_written(r, 1, 73)


# --- follower appends ------------------------------------------------------------------------

def test_append_replica_writes_leader_batches_byte_for_byte(open_replica, tmp_path):
    leader = open_replica()
    leader.append(make_batch(2, b"a"), leader_epoch=1)
    leader.append(make_batch(3, b"b"), leader_epoch=2)
    fetched = leader.read(0, 10_000).read_bytes()
    follower = Replica.open(tmp_path, "t", 1, ReplicaConfig())
    try:
        res = follower.append_replica(fetched)
        assert (res.base_offset, res.leo) == (0, 5)
        assert follower.read(0, 10_000).read_bytes() == fetched
        assert follower.epochs == [(1, 0), (2, 2)]
        with pytest.raises(InvalidBatch, match="expected 5"):
            follower.append_replica(fetched)  # base offset 0 does not continue the log
        gap = bytearray(make_batch(1))
        set_base_offset(gap, 0, 6)
        with pytest.raises(InvalidBatch, match="expected 5"):
            follower.append_replica(bytes(gap))
        assert follower.leo == 5
    finally:
        follower.close()


def test_closed_replica_refuses_everything(open_replica):
    r = open_replica()
    r.append(make_batch(1), leader_epoch=0)
    r.close()
    r.close()  # idempotent
    with pytest.raises(ReplicaClosed):
        r.append(make_batch(1), leader_epoch=0)
    with pytest.raises(ReplicaClosed):
        r.read(0, 100)
    with pytest.raises(ReplicaClosed):
        r.flush()


def test_delete_removes_the_directory(open_replica):
    r = open_replica()
    r.append(make_batch(1), leader_epoch=0)
    r.delete()
    assert not os.path.exists(r.path)


def test_timestamps_pass_through_untouched(open_replica):
    r = open_replica()
    r.append(make_batch(2, ts=TS + 5), leader_epoch=0)
    (h,) = headers(read_all(r))
    assert h.first_timestamp == TS + 5


# --- preallocation ---------------------------------------------------------------------------

def test_the_active_segment_is_preallocated_and_trimmed_on_close(open_replica):
    r = open_replica(segment_max_bytes=1 << 20)
    r.append(make_batch(1), leader_epoch=0)
    path = r.segments[-1].path
    assert os.path.getsize(path) == 73 + 64 * 1024  # a 64 KiB step ahead of the data
    assert r.size_bytes() == 73 and tails_are_clean(r)
    r.close()
    assert os.path.getsize(path) == 73
    r2 = open_replica(segment_max_bytes=1 << 20)
    assert (r2.leo, r2.recovery.truncated_bytes) == (1, 0)


def test_preallocation_steps_grow_with_the_data_up_to_the_limit(open_replica):
    r = open_replica(segment_max_bytes=1 << 30, preallocate_bytes=256 * 1024)
    big = make_batch(100, b"x" * 1000)  # about 100 KB
    r.append(big, leader_epoch=0)
    path = r.segments[-1].path
    assert os.path.getsize(path) == 2 * len(big)  # a step as large as the data so far
    for _ in range(5):
        r.append(big, leader_epoch=0)
    assert os.path.getsize(path) - r.size_bytes() <= 256 * 1024


def test_preallocation_never_goes_past_the_segment_size(open_replica):
    r = open_replica(segment_max_bytes=1000)
    r.append(make_batch(1), leader_epoch=0)
    assert os.path.getsize(r.segments[-1].path) == 1000


def test_a_roll_trims_the_sealed_segment_to_its_data(open_replica):
    r = open_replica(segment_max_bytes=100)
    for _ in range(3):
        r.append(make_batch(1), leader_epoch=0)
    assert [os.path.getsize(s.path) for s in r.segments[:-1]] == [73, 73]


def test_preallocation_can_be_turned_off(open_replica):
    r = open_replica(preallocate_bytes=0)
    r.append(make_batch(1), leader_epoch=0)
    assert os.path.getsize(r.segments[-1].path) == 73


def test_a_crash_with_preallocated_space_recovers_without_loss(open_replica, tmp_path):
    r = open_replica()
    for i in range(3):
        r.append(make_batch(2, b"%d" % i), leader_epoch=0)
    r.flush()
    crashed = tmp_path / "crashed"
    shutil.copytree(r.path, crashed / "t-0")  # the files as a power cut would leave them
    assert os.path.getsize(crashed / "t-0" / "00000000000000000000.log") > r.size_bytes()
    again = Replica.open(crashed, "t", 0, ReplicaConfig())
    try:
        assert (again.leo, again.recovery.truncated_bytes) == (6, 0)
        assert read_all(again) == read_all(r)
        assert os.path.getsize(crashed / "t-0" / "00000000000000000000.log") == r.size_bytes()
    finally:
        again.close()


# --- config ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"segment_max_bytes": 0}, {"segment_max_bytes": 2**32}, {"index_max_interval_bytes": 0},
    {"retention_seconds": -1}, {"max_partition_bytes": -1}, {"flush": "always"},
    {"flush_interval_ms": 0}, {"max_batch_bytes": 10}, {"preallocate_bytes": -1},
])
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        ReplicaConfig(**kwargs)


def test_config_defaults():
    cfg = ReplicaConfig()
    assert (cfg.segment_max_bytes, cfg.index_max_interval_bytes, cfg.retention_seconds,
            cfg.max_partition_bytes, cfg.flush, cfg.max_batch_bytes) == (
        1 << 30, 4096, 7 * 24 * 3600, None, "sync", 2 * 1024 * 1024)
