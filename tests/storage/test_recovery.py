"""Recovery on open: torn tails, garbage, bit flips, lost or corrupt indexes and checkpoints."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluvial.storage import CorruptLog, Replica, ReplicaConfig
from fluvial.storage import segment as segment_module
from fluvial.storage.checkpoint import EPOCH_CHECKPOINT, HW_CHECKPOINT

from .conftest import headers, make_batch, read_all, segment_files, values

CFG = ReplicaConfig(segment_max_bytes=300, index_max_interval_bytes=100)


def _build(path, sizes_and_epochs, cfg=CFG):
    """A closed replica under ``path`` with one batch per (record count, epoch)."""
    r = Replica.open(path, "t", 0, cfg)
    for i, (count, epoch) in enumerate(sizes_and_epochs):
        r.append(make_batch(count, b"v%d" % i), leader_epoch=epoch)
    r.set_hw(r.leo)
    r.checkpoint_hw()
    r.close()
    return r


def _active(r):
    return r.segments[-1].path


def _batch_bounds(data):
    """[(start, end, base_offset)] of each batch in a segment's bytes."""
    out, pos = [], 0
    for h in headers(data):
        out.append((pos, pos + h.size, h.base_offset))
        pos += h.size
    return out


def _rewrite(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


# --- crash points ------------------------------------------------------------------------------

def _snapshot(path):
    d = os.path.join(path, "t-0")
    return {name: _read(os.path.join(d, name)) for name in os.listdir(d)}


def _restore(path, snapshot):
    d = os.path.join(path, "t-0")
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    for name, data in snapshot.items():
        _rewrite(os.path.join(d, name), data)


@pytest.mark.parametrize("window", [segment_module.RECOVERY_WINDOW_BYTES, 150, 1])
def test_cut_at_every_byte_recovers_exactly_the_valid_prefix(tmp_path, monkeypatch, window):
    monkeypatch.setattr(segment_module, "RECOVERY_WINDOW_BYTES", window)
    # sealed segment 0: [0] [1..2] [3..5]; active segment 6: [6..7] [8] [9..11] (epoch 2)
    built = _build(tmp_path, [(1, 1), (2, 1), (3, 1), (2, 1), (1, 1), (3, 2)])
    assert [s.base_offset for s in built.segments] == [0, 6]
    path = _active(built)
    full = _read(path)
    snapshot = _snapshot(tmp_path)
    sealed_bytes = read_all_closed(tmp_path, upto=6)
    bounds = _batch_bounds(full)
    for cut in range(len(full) + 1):
        _restore(tmp_path, snapshot)
        _rewrite(path, full[:cut])
        kept = [b for b in bounds if b[1] <= cut]
        valid_end = kept[-1][1] if kept else 0
        leo = 6 + sum(h.record_count for h in headers(full[:valid_end]))
        r = Replica.open(tmp_path, "t", 0, CFG)
        try:
            assert (r.leo, r.durable_leo, r.hw) == (leo, leo, leo), f"cut at {cut}"
            assert r.recovery.truncated_bytes == len(full[valid_end:cut].rstrip(b"\0"))
            assert os.path.getsize(path) == valid_end
            assert read_all(r) == sealed_bytes + full[:valid_end]
            assert r.epochs == ([(1, 0), (2, 9)] if leo == 12 else [(1, 0)])
            res = r.append(make_batch(1, b"again"), leader_epoch=3)
            assert res.base_offset == leo
            assert values(r.read(leo, 1000).read_bytes()) == [(leo, b"again")]
        finally:
            r.close()


def read_all_closed(path, upto):
    r = Replica.open(path, "t", 0, CFG)
    try:
        return read_all(r, 0, upto)
    finally:
        r.close()


@pytest.mark.parametrize("tail", [b"\x00" * 100, b"\xff" * 13, bytes(range(256)) * 3, b"x"])
def test_garbage_after_the_last_batch_is_truncated(tmp_path, tail):
    built = _build(tmp_path, [(1, 0), (2, 0)])
    path = _active(built)
    good = _read(path)
    _rewrite(path, good + tail)
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert r.leo == 3 and r.recovery.truncated_bytes == len(tail.rstrip(b"\0"))
        assert _read(path) == good
    finally:
        r.close()


def test_a_segment_of_pure_garbage_is_emptied(tmp_path):
    built = _build(tmp_path, [(1, 0)] * 6)  # 70-byte batches: segments at 0 and 4
    path = _active(built)
    _rewrite(path, random.Random(0).randbytes(500))
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert r.leo == r.segments[-1].base_offset == 4
        assert r.segments[-1].size_bytes == 0
    finally:
        r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(counts=st.lists(st.integers(1, 6), min_size=1, max_size=8), cut_fraction=st.floats(0, 1))
def test_property_recovery_yields_a_prefix_of_whole_batches(tmp_path_factory, counts, cut_fraction):
    path = tmp_path_factory.mktemp("prop")
    cfg = ReplicaConfig(segment_max_bytes=10_000, index_max_interval_bytes=64)
    built = _build(path, [(c, 0) for c in counts], cfg)
    seg = _active(built)
    full = _read(seg)
    cut = int(len(full) * cut_fraction)
    _rewrite(seg, full[:cut])
    r = Replica.open(path, "t", 0, cfg)
    try:
        got = read_all(r)
        assert full.startswith(got)
        assert len(got) <= cut < len(got) + (headers(full[len(got):])[0].size if len(got) < len(full) else 1)
        assert r.leo == sum(h.record_count for h in headers(got))
    finally:
        r.close()


# --- bit flips ----------------------------------------------------------------------------------

EPOCH_FIELD = range(12, 16)  # partition_leader_epoch: outside the CRC, so a flip there is not seen


def test_a_bit_flip_in_the_last_batch_truncates_it(tmp_path):
    built = _build(tmp_path, [(1, 0), (2, 0), (3, 0)])
    path = _active(built)
    full = _read(path)
    start, end, base = _batch_bounds(full)[-1]
    rng = random.Random(1)
    snapshot = _snapshot(tmp_path)
    for pos in range(start, end):
        if pos - start in EPOCH_FIELD:
            continue
        _restore(tmp_path, snapshot)
        flipped = bytearray(full)
        flipped[pos] ^= 1 << rng.randrange(8)
        _rewrite(path, bytes(flipped))
        r = Replica.open(tmp_path, "t", 0, CFG)
        try:
            assert r.leo == base, f"flip at byte {pos - start} of the last batch"
            assert _read(path) == full[:start]
        finally:
            r.close()


def test_a_bad_batch_in_the_middle_of_the_active_segment_cuts_the_segment_there(tmp_path, caplog):
    """Pages reach the disk out of order after a power cut: a valid batch after a bad one was
    never acknowledged as durable, so neither is kept nor counted."""
    cfg = ReplicaConfig(segment_max_bytes=10_000)
    built = _build(tmp_path, [(1, 0), (2, 0), (3, 0), (1, 0)], cfg)
    path = _active(built)
    full = bytearray(_read(path))
    start, end, base = _batch_bounds(bytes(full))[1]  # offsets 1..2
    full[end - 3] ^= 0x40  # inside a record: only the CRC can tell
    _rewrite(path, bytes(full))
    with caplog.at_level("WARNING", logger="fluvial.storage"):
        r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        assert (r.leo, r.durable_leo) == (1, 1)
        assert r.recovery.truncated_bytes == len(full[start:].rstrip(b"\0"))  # trailing zeros are not counted
        assert r.corrupt_offset is None
        assert _read(path) == full[:start]
        assert [o for o, _ in values(read_all(r))] == [0]
        assert any(f"position {start} (offset 1)" in m and "CRC" in m for m in caplog.messages), caplog.messages
        r.append(make_batch(1), leader_epoch=0)  # the log goes on from the cut
        assert r.leo == 2
    finally:
        r.close()


def _two_segment_log(tmp_path):
    """Sealed segment 0 with ten 70-byte 1-record batches (index entries at batches 2, 4, 6
    and 8), active segment 10 with one batch."""
    cfg = ReplicaConfig(segment_max_bytes=730, index_max_interval_bytes=100)
    built = _build(tmp_path, [(1, 0)] * 11, cfg)
    assert [s.base_offset for s in built.segments] == [0, 10]
    return cfg, built.segments[0].path


def test_a_bit_flip_in_an_older_segment_raises_corrupt_log_when_read(tmp_path):
    cfg, path = _two_segment_log(tmp_path)
    data = bytearray(_read(path))
    data[5 * 70 + 60] ^= 0x01  # batch 5, inside the CRC-covered part
    _rewrite(path, bytes(data))
    r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        assert r.leo == 11 and r.corrupt_offset is None  # sealed segments are checked when read
        with pytest.raises(CorruptLog) as info:
            r.read(5, 10_000)
        assert (info.value.path, info.value.position, info.value.offset) == (path, 5 * 70, 5)
        assert "CRC mismatch" in str(info.value) and path in str(info.value)
        assert r.read(2, 10_000).next_offset == 5  # batches before it are served
        with pytest.raises(CorruptLog):  # and it stays unservable
            r.read(5, 1)
        assert [o for o, _ in values(r.read(6, 10_000).read_bytes())] == list(range(6, 11))
    finally:
        r.close()


def test_a_broken_length_in_an_older_segment_is_reported_not_served(tmp_path):
    cfg, path = _two_segment_log(tmp_path)
    data = bytearray(_read(path))
    data[3 * 70 + 10] ^= 0x10  # batch 3's batch_length
    _rewrite(path, bytes(data))
    r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        assert r.read(0, 10_000).next_offset == 3
        with pytest.raises(CorruptLog):
            r.read(3, 10_000)
    finally:
        r.close()


def test_a_wrong_base_offset_in_an_older_segment_is_reported_not_served(tmp_path):
    cfg, path = _two_segment_log(tmp_path)
    data = bytearray(_read(path))
    data[4 * 70 + 7] ^= 0x02  # batch 4's base offset (outside the CRC)
    _rewrite(path, bytes(data))
    r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        with pytest.raises(CorruptLog, match="base offset 6, expected 4"):
            r.read(4, 10_000)
    finally:
        r.close()


# --- indexes -----------------------------------------------------------------------------------

def test_a_deleted_index_is_rebuilt_on_open(tmp_path):
    cfg, path = _two_segment_log(tmp_path)
    index_path = path[:-4] + ".index"
    original = _read(index_path)
    assert original  # entries at batches 2, 4, 6, 8 (every >= 100 bytes)
    os.unlink(index_path)
    r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        assert r.recovery.rebuilt_indexes == [0]
        assert _read(index_path) == original
        assert [o for o, _ in values(read_all(r))] == list(range(11))
    finally:
        r.close()


@pytest.mark.parametrize("garbage", [b"\x00" * 7, b"\x00" * 16, b"\xff" * 8, b"\x00\x00\x00\x05\x00\x00\x00\x10" * 2])
def test_a_malformed_index_is_rebuilt_on_open(tmp_path, garbage):
    cfg, path = _two_segment_log(tmp_path)
    index_path = path[:-4] + ".index"
    original = _read(index_path)
    _rewrite(index_path, garbage)
    r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        assert r.recovery.rebuilt_indexes == [0]
        assert _read(index_path) == original
    finally:
        r.close()


def test_a_plausible_but_wrong_index_is_detected_and_rebuilt_on_lookup(tmp_path):
    cfg, path = _two_segment_log(tmp_path)
    index_path = path[:-4] + ".index"
    original = _read(index_path)
    # (relative offset 3, position 100): increasing, inside the file, but not a batch start
    _rewrite(index_path, (3).to_bytes(4, "big") + (100).to_bytes(4, "big"))
    r = Replica.open(tmp_path, "t", 0, cfg)
    try:
        assert r.recovery.rebuilt_indexes == []
        assert values(r.read(5, 1).read_bytes()) == [(5, b"v5")]
        assert _read(index_path) == original
    finally:
        r.close()


def test_orphan_index_and_leftover_temp_files_are_removed(tmp_path):
    _build(tmp_path, [(1, 0)])
    d = os.path.join(tmp_path, "t-0")
    _rewrite(os.path.join(d, "00000000000000000777.index"), b"")
    _rewrite(os.path.join(d, HW_CHECKPOINT + ".tmp"), b"junk")
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert sorted(r.recovery.removed_files) == ["00000000000000000777.index", "replication.chk.tmp"]
        assert segment_files(r, ".index") == ["00000000000000000000.index"]
        assert segment_files(r, ".tmp") == []
    finally:
        r.close()


# --- checkpoints --------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_a_lost_epoch_checkpoint_is_rebuilt_from_batch_headers(tmp_path, damage):
    built = _build(tmp_path, [(1, 1), (1, 1), (2, 3), (1, 3), (1, 4), (1, 4)])
    epochs = built.epochs
    assert epochs == [(1, 0), (3, 2), (4, 5)] and len(built.segments) > 1
    chk = os.path.join(tmp_path, "t-0", EPOCH_CHECKPOINT)
    if damage == "delete":
        os.unlink(chk)
    else:
        _rewrite(chk, b"0\n9\nnonsense")
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert r.recovery.epochs_rebuilt
        assert r.epochs == epochs
        assert _read(chk) == b"0\n3\n1 0\n3 2\n4 5\n"
    finally:
        r.close()


def test_an_epoch_lost_with_a_crash_is_recovered_from_the_active_segment(tmp_path):
    built = _build(tmp_path, [(1, 1), (1, 2)])
    _rewrite(os.path.join(tmp_path, "t-0", EPOCH_CHECKPOINT), b"0\n1\n1 0\n")  # (2, 1) not yet written
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert r.epochs == built.epochs == [(1, 0), (2, 1)]
    finally:
        r.close()


def test_a_malformed_hw_checkpoint_resets_the_hw_to_the_log_start(tmp_path):
    _build(tmp_path, [(1, 0), (1, 0)])
    _rewrite(os.path.join(tmp_path, "t-0", HW_CHECKPOINT), b"\x00\x01")
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert (r.hw, r.recovery.hw_reset) == (0, True)
    finally:
        r.close()


def test_an_hw_beyond_the_recovered_leo_is_clamped(tmp_path):
    built = _build(tmp_path, [(1, 0), (1, 0), (1, 0)])
    path = _active(built)
    data = _read(path)
    _rewrite(path, data[:-1])
    r = Replica.open(tmp_path, "t", 0, CFG)
    try:
        assert (r.leo, r.hw) == (2, 2)
    finally:
        r.close()
