"""truncate_to and truncate_fully_and_start_at, as a follower uses them (core-4)."""

from __future__ import annotations

import pytest

from fluvial.storage import OffsetOutOfRange

from .conftest import headers, make_batch, read_all, segment_files, values


@pytest.fixture
def log(open_replica):
    """Batches [0..2] [3..4] [5..9] [10] (85, 77, 101 and 69 bytes) with epochs 1, 1, 2, 3, in
    165-byte segments based at 0 ([0..2] [3..4]), 5 and 10."""
    r = open_replica(segment_max_bytes=165)
    r.append(make_batch(3, b"a"), leader_epoch=1)
    r.append(make_batch(2, b"b"), leader_epoch=1)
    r.append(make_batch(5, b"c"), leader_epoch=2)
    r.append(make_batch(1, b"d"), leader_epoch=3)
    r.set_hw(11)
    r.flush()
    return r


def test_fixture_layout(log):
    assert [s.base_offset for s in log.segments] == [0, 5, 10]
    assert log.epochs == [(1, 0), (2, 5), (3, 10)]


def test_truncate_at_a_batch_boundary_inside_a_segment(log):
    assert log.truncate_to(3) == 3
    assert (log.leo, log.hw, log.durable_leo) == (3, 3, 3)
    assert [s.base_offset for s in log.segments] == [0]
    assert segment_files(log) == ["00000000000000000000.log"]
    assert log.epochs == [(1, 0)]
    assert [o for o, _ in values(read_all(log))] == [0, 1, 2]
    with pytest.raises(OffsetOutOfRange):
        log.read(4, 100)


def test_truncate_inside_a_batch_drops_the_whole_batch(log):
    assert log.truncate_to(7) == 5
    assert log.leo == 5
    assert [s.base_offset for s in log.segments] == [0, 5]
    assert log.segments[-1].size_bytes == 0
    assert log.epochs == [(1, 0)]


def test_truncate_at_a_segment_base_keeps_an_empty_active_segment(log):
    assert log.truncate_to(10) == 10
    assert [s.base_offset for s in log.segments] == [0, 5, 10]
    assert log.segments[-1].size_bytes == 0
    assert log.epochs == [(1, 0), (2, 5)]


def test_truncate_at_or_past_leo_does_nothing(log):
    before = read_all(log)
    assert log.truncate_to(11) == 11
    assert log.truncate_to(50) == 11
    assert read_all(log) == before


def test_append_after_truncate_continues_from_the_cut(log):
    log.truncate_to(3)
    res = log.append(make_batch(2, b"new"), leader_epoch=4)
    assert (res.base_offset, res.leo) == (3, 5)
    assert log.epochs == [(1, 0), (4, 3)]
    assert values(read_all(log)) == [(0, b"a"), (1, b"a"), (2, b"a"), (3, b"new"), (4, b"new")]
    # and it rolls normally again
    for _ in range(3):
        log.append(make_batch(1), leader_epoch=4)
    assert [h.base_offset for h in headers(read_all(log))] == [0, 3, 5, 6, 7]


def test_truncation_survives_reload(log, open_replica):
    log.truncate_to(5)
    log.append(make_batch(1, b"z"), leader_epoch=4)
    log.flush()
    expected = read_all(log)
    log.close()
    r = open_replica(segment_max_bytes=165)
    assert (r.leo, r.epochs) == (6, [(1, 0), (4, 5)])
    assert read_all(r) == expected
    assert r.recovery.truncated_bytes == 0


def test_truncate_clamps_hw_and_durable_leo(log):
    log.set_hw(8)
    log.truncate_to(10)
    assert (log.hw, log.durable_leo) == (8, 10)
    log.truncate_to(5)
    assert (log.hw, log.durable_leo) == (5, 5)


def test_truncate_to_log_start_empties_the_log(log):
    log.truncate_to(0)
    assert (log.log_start_offset, log.leo, log.hw) == (0, 0, 0)
    assert log.epochs == []
    assert segment_files(log) == ["00000000000000000000.log"]
    assert log.read(0, 100).size == 0


def test_truncate_fully_and_start_at_a_later_offset(log, open_replica):
    log.truncate_fully_and_start_at(100)
    assert (log.log_start_offset, log.leo, log.hw, log.durable_leo) == (100, 100, 100, 100)
    assert segment_files(log) == ["00000000000000000100.log"]
    with pytest.raises(OffsetOutOfRange) as info:
        log.read(5, 100)
    assert info.value.evicted
    log.append(make_batch(1), leader_epoch=7)
    log.close()
    r = open_replica()
    assert (r.log_start_offset, r.leo, r.epochs) == (100, 101, [(7, 100)])


def test_a_read_taken_before_a_truncation_is_not_served_after_it(log):
    res = log.read(0, 1 << 20)
    log.truncate_to(3)
    with pytest.raises(OffsetOutOfRange):
        res.read_bytes()
