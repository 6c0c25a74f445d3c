"""Corruption in sealed segments (bit rot): found by a read or by ``verify_sealed``, never served,
reported as ``corrupt_offset``, and cut away with ``truncate_to(corrupt_offset)``."""

from __future__ import annotations

import pytest

from fluvial.storage import CorruptLog, Replica, ReplicaConfig

from .conftest import make_batch, read_all, values

CFG = ReplicaConfig(segment_max_bytes=720, index_max_interval_bytes=100)
BATCH = 71  # one 1-record batch of make_batch(1, b"vNN")


def _log(tmp_path, batches: int = 21) -> list[str]:
    """A closed replica: sealed segments 0 and 10 (ten 71-byte batches each), active 20."""
    r = Replica.open(tmp_path, "t", 0, CFG)
    for i in range(batches):
        r.append(make_batch(1, b"v%02d" % i), leader_epoch=0)
    r.set_hw(r.leo)
    r.checkpoint_hw()
    r.close()
    assert [s.base_offset for s in r.segments] == [0, 10, 20]
    assert all(s.size_bytes == 10 * BATCH for s in r.segments[:2])
    return [s.path for s in r.segments]


def _damage(path: str, position: int, mask: int = 0x01) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ mask]))


def _open(tmp_path) -> Replica:
    return Replica.open(tmp_path, "t", 0, CFG)


def _verify_until_found(r: Replica, max_bytes: int, limit: int = 100) -> tuple[int | None, int]:
    """Call verify_sealed until it reports something or the cursor stops moving; returns
    (corrupt_offset, calls)."""
    for calls in range(1, limit + 1):
        found = r.verify_sealed(max_bytes)
        if found is not None:
            return found, calls
    return None, limit


@pytest.fixture
def replicas():
    opened: list[Replica] = []
    yield opened
    for r in opened:
        r.close()


def test_verify_sealed_finds_a_flipped_bit_a_bounded_step_at_a_time(tmp_path, replicas):
    paths = _log(tmp_path)
    _damage(paths[1], 5 * BATCH + 60)  # offset 15, inside the CRC-covered part
    r = _open(tmp_path)
    replicas.append(r)
    assert r.corrupt_offset is None  # sealed segments are not scanned at open
    assert r.verify_sealed(3 * BATCH) is None  # offsets 0..2 checked
    found, calls = _verify_until_found(r, 3 * BATCH)
    assert found == r.corrupt_offset == 15
    assert calls == 5  # 3..5, 6..8, 9 (end of segment 0), 10..12, 13..15
    with pytest.raises(CorruptLog):
        r.read(15, 10_000)
    assert r.read(10, 10_000).next_offset == 15  # the batches before it are still served


def test_a_step_smaller_than_a_batch_still_checks_one(tmp_path, replicas):
    paths = _log(tmp_path)
    _damage(paths[0], BATCH + 60)
    r = _open(tmp_path)
    replicas.append(r)
    assert r.verify_sealed(1) is None  # batch 0
    assert r.verify_sealed(1) == 1


def test_a_clean_log_verifies_once_then_only_newly_sealed_segments(tmp_path, replicas):
    _log(tmp_path)
    r = _open(tmp_path)
    replicas.append(r)
    assert _verify_until_found(r, 1 << 20, limit=3) == (None, 3)
    for i in range(10):  # seals segment 20
        r.append(make_batch(1, b"w%02d" % i), leader_epoch=0)
    assert [s.base_offset for s in r.segments] == [0, 10, 20, 30]
    _damage(r.segments[2].path, 2 * BATCH + 60)  # bit rot after sealing: offset 22
    assert r.verify_sealed(1 << 20) == 22


def test_the_active_segment_is_never_scanned(tmp_path, replicas):
    paths = _log(tmp_path)
    r = _open(tmp_path)
    replicas.append(r)
    for i in range(3):
        r.append(make_batch(1, b"x%02d" % i), leader_epoch=0)
    _damage(paths[2], 60)  # the active segment, after recovery checked it
    assert _verify_until_found(r, 1 << 20, limit=3) == (None, 3)


def test_truncate_to_a_corrupt_batch_with_a_garbage_header(tmp_path, replicas):
    """The batch's length field is damaged, so no header walk can reach past it: the cut is
    made by position."""
    paths = _log(tmp_path)
    _damage(paths[1], 3 * BATCH + 10, 0x10)  # offset 13's batch_length
    r = _open(tmp_path)
    replicas.append(r)
    assert _verify_until_found(r, 1 << 20)[0] == 13
    assert r.truncate_to(r.corrupt_offset) == 13
    assert r.corrupt_offset is None and r.leo == 13
    assert [s.base_offset for s in r.segments] == [0, 10]
    assert [v for _, v in values(read_all(r))] == [b"v%02d" % i for i in range(13)]
    r.append(make_batch(1, b"again"), leader_epoch=1)  # the follower refetches from here
    assert [v for _, v in values(r.read(13, 1000).read_bytes())] == [b"again"]


def test_truncate_to_an_offset_past_a_corrupt_batch_cuts_at_the_corrupt_batch(tmp_path, replicas):
    paths = _log(tmp_path)
    _damage(paths[0], 4 * BATCH + 10, 0x10)
    r = _open(tmp_path)
    replicas.append(r)
    with pytest.raises(CorruptLog):
        r.read(4, 1000)
    assert r.corrupt_offset == 4  # found by the read, not only by verify_sealed
    assert r.truncate_to(7) == 4  # the new LEO is never above the offset asked for
    assert r.corrupt_offset is None


def test_a_sealed_segment_that_ends_early_is_reported_where_it_ends(tmp_path, replicas):
    paths = _log(tmp_path)
    with open(paths[0], "r+b") as f:
        f.truncate(9 * BATCH)  # offset 9 is gone: segment 0 ends before segment 10 starts
    r = _open(tmp_path)
    replicas.append(r)
    assert _verify_until_found(r, 1 << 20)[0] == 9
    assert r.truncate_to(9) == 9
    assert r.corrupt_offset is None
    assert [o for o, _ in values(read_all(r))] == list(range(9))


def test_verification_starts_over_after_a_truncation(tmp_path, replicas):
    _log(tmp_path)
    r = _open(tmp_path)
    replicas.append(r)
    assert _verify_until_found(r, 1 << 20, limit=3) == (None, 3)
    r.truncate_to(5)
    for i in range(30):
        r.append(make_batch(1, b"y%02d" % i), leader_epoch=1)
    assert len(r.segments) >= 3
    _damage(r.segments[0].path, 6 * BATCH + 60)  # offset 6: written after the truncation
    assert _verify_until_found(r, 1 << 20)[0] == 6


def test_retention_moves_the_verification_on(tmp_path, replicas):
    paths = _log(tmp_path)
    _damage(paths[1], 2 * BATCH + 60)
    r = Replica.open(tmp_path, "t", 0, ReplicaConfig(segment_max_bytes=720, retention_seconds=0,
                                                      index_max_interval_bytes=100))
    replicas.append(r)
    assert r.verify_sealed(BATCH) is None  # cursor in segment 0
    r.set_hw(r.leo)
    assert [d.base_offset for d in r.enforce_retention(now=10**10)] == [0, 10]
    assert _verify_until_found(r, 1 << 20, limit=3) == (None, 3)
