"""Retention by time (segment max timestamp) and by partition size; whole segments only."""

from __future__ import annotations

import os

import pytest

from fluvial.storage import OffsetOutOfRange

from .conftest import TS, make_batch, read_all, segment_files, values

HOUR_MS = 3600 * 1000


def _fill(r, timestamps_ms):
    """One 73-byte batch per timestamp: one batch per 100-byte segment."""
    for ts in timestamps_ms:
        r.append(make_batch(1, ts=ts), leader_epoch=0)
    r.set_hw(r.leo)


def test_time_retention_deletes_segments_whose_newest_record_is_too_old(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=3600)
    _fill(r, [TS, TS + 1, TS + HOUR_MS, TS + 2 * HOUR_MS])
    now = (TS + HOUR_MS + 10) / 1000  # the first two are older than one hour
    deleted = r.enforce_retention(now)
    assert [(d.base_offset, d.next_offset, d.size_bytes, d.reason) for d in deleted] == [
        (0, 1, 73, "time"), (1, 2, 73, "time")]
    assert r.log_start_offset == 2
    assert segment_files(r) == ["00000000000000000002.log", "00000000000000000003.log"]
    assert segment_files(r, ".index") == ["00000000000000000002.index"]
    assert [o for o, _ in values(read_all(r))] == [2, 3]
    with pytest.raises(OffsetOutOfRange) as info:
        r.read(1, 100)
    assert info.value.evicted and info.value.log_start_offset == 2
    assert r.enforce_retention(now) == []


def test_time_retention_stops_at_the_first_young_segment(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=3600)
    _fill(r, [TS, TS + 5 * HOUR_MS, TS, TS + 5 * HOUR_MS])
    deleted = r.enforce_retention((TS + 2 * HOUR_MS) / 1000)
    assert [d.base_offset for d in deleted] == [0]


def test_the_active_segment_is_never_deleted(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=1, max_partition_bytes=0)
    _fill(r, [TS, TS, TS])
    deleted = r.enforce_retention(TS / 1000 + 10 * 3600)
    assert [d.base_offset for d in deleted] == [0, 1]
    assert [s.base_offset for s in r.segments] == [2]
    assert r.enforce_retention(TS / 1000 + 10 * 3600) == []
    assert values(read_all(r)) == [(2, b"hello")]


def test_retention_none_keeps_everything(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=None)
    _fill(r, [TS, TS, TS])
    assert r.enforce_retention(TS / 1000 + 10**9) == []


def test_size_retention_deletes_oldest_until_under_the_limit(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=None, max_partition_bytes=200)
    _fill(r, [TS] * 5)  # 5 x 73 = 365 bytes
    deleted = r.enforce_retention(TS / 1000)
    assert [(d.base_offset, d.reason) for d in deleted] == [(0, "size"), (1, "size"), (2, "size")]
    assert r.size_bytes() == 2 * 73
    assert r.log_start_offset == 3


def test_retention_never_deletes_records_at_or_above_the_hw(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=1)
    _fill(r, [TS] * 4)
    r.set_hw(1)  # only segment 0 ([0]) is fully committed
    assert [d.base_offset for d in r.enforce_retention(TS / 1000 + 3600)] == [0]
    assert r.log_start_offset == 1
    r.set_hw(4)
    assert [d.base_offset for d in r.enforce_retention(TS / 1000 + 3600)] == [1, 2]


def test_segments_without_timestamps_age_by_file_mtime(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=3600)
    _fill(r, [-1, -1, -1])
    old = 1_000_000_000  # 2001
    os.utime(r.segments[0].path, (old, old))
    deleted = r.enforce_retention(old + 2 * 3600)
    assert [d.base_offset for d in deleted] == [0]


def test_retention_trims_epochs_and_survives_reload(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=3600)
    for epoch in (1, 1, 2, 3):
        r.append(make_batch(1, ts=TS), leader_epoch=epoch)
    r.set_hw(4)
    r.checkpoint_hw()
    r.enforce_retention(TS / 1000 + 2 * 3600)
    assert r.log_start_offset == 3
    assert r.epochs == [(3, 3)]
    r.close()
    r2 = open_replica(segment_max_bytes=100, retention_seconds=3600)
    assert (r2.log_start_offset, r2.leo, r2.hw, r2.epochs) == (3, 4, 4, [(3, 3)])


def test_retention_on_reopened_log_reads_sealed_segment_timestamps(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=3600)
    _fill(r, [TS, TS + 3 * HOUR_MS, TS + 3 * HOUR_MS])
    r.checkpoint_hw()
    r.close()
    r2 = open_replica(segment_max_bytes=100, retention_seconds=3600)
    assert [d.base_offset for d in r2.enforce_retention((TS + 2 * HOUR_MS) / 1000)] == [0]


def test_a_read_planned_before_retention_still_reads_or_reports_eviction(open_replica):
    r = open_replica(segment_max_bytes=100, retention_seconds=1)
    _fill(r, [TS] * 3)
    res = r.read(0, 1 << 20)
    r.enforce_retention(TS / 1000 + 3600)
    with pytest.raises(OffsetOutOfRange) as info:
        res.read_bytes()
    assert info.value.evicted
