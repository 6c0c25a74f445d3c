"""Disk full, I/O errors and failed fsyncs: typed errors, nothing half-written visible, reads go on."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import pytest

from fluvial.errors import ErrorCode
from fluvial.storage import DiskFull, Replica, ReplicaConfig, ShortCircuited, StorageIOError

from .conftest import make_batch, read_all, segment_files, tails_are_clean, values


class FakeDisk:
    """Patches os.pwrite and os.pwritev (the data path): after ``budget`` more bytes, writes fail
    with ``err`` (a write that crosses the budget is partial, as on a real full disk).
    ``budget = None`` means unlimited: space freed."""

    def __init__(self, monkeypatch, budget: int | None = None, err: int = errno.ENOSPC):
        self.budget = budget
        self.err = err
        real = os.pwrite

        def pwrite(fd, data, position):
            if self.budget is None:
                return real(fd, data, position)
            if self.budget <= 0:
                raise OSError(self.err, os.strerror(self.err))
            n = real(fd, memoryview(data)[: self.budget], position)
            self.budget -= n
            return n

        def pwritev(fd, buffers, position):
            return pwrite(fd, b"".join(buffers), position)

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "pwritev", pwritev)


def _state(r):
    return r.leo, r.size_bytes(), [s.base_offset for s in r.segments], segment_files(r)


@pytest.mark.parametrize("preallocate_bytes", [0, 1 << 20])
@pytest.mark.parametrize("budget", [0, 1, 30, 68])  # the batch is 69 bytes
def test_enospc_mid_append_leaves_nothing_visible(open_replica, monkeypatch, budget, preallocate_bytes):
    r = open_replica(preallocate_bytes=preallocate_bytes)
    r.append(make_batch(2, b"a"), leader_epoch=0)
    before, data = _state(r), read_all(r)
    disk = FakeDisk(monkeypatch, budget)
    with pytest.raises(DiskFull) as info:
        r.append(make_batch(1, b"b"), leader_epoch=0)
    assert info.value.errno == errno.ENOSPC and info.value.code == ErrorCode.PartitionFull
    assert _state(r) == before and tails_are_clean(r)
    assert read_all(r) == data
    disk.budget = None  # space frees
    res = r.append(make_batch(1, b"c"), leader_epoch=0)
    assert res.base_offset == 2
    assert values(read_all(r)) == [(0, b"a"), (1, b"a"), (2, b"c")]


@pytest.mark.parametrize("preallocate_bytes", [0, 1 << 20])
def test_enospc_in_an_append_that_rolls_removes_the_new_segments(open_replica, monkeypatch, preallocate_bytes):
    r = open_replica(segment_max_bytes=100, preallocate_bytes=preallocate_bytes)
    r.append(make_batch(1, b"a"), leader_epoch=0)
    before, data = _state(r), read_all(r)
    disk = FakeDisk(monkeypatch, 70 + 40)  # the second batch of three is cut short
    with pytest.raises(DiskFull):
        r.append(b"".join(make_batch(1, b"%d" % i) for i in range(3)), leader_epoch=0)
    assert _state(r) == before and tails_are_clean(r)
    assert read_all(r) == data
    disk.budget = None
    r.append(b"".join(make_batch(1, b"%d" % i) for i in range(3)), leader_epoch=0)
    assert [s.base_offset for s in r.segments] == [0, 1, 2, 3]
    assert [o for o, _ in values(read_all(r))] == [0, 1, 2, 3]


def test_eio_is_a_storage_io_error_not_disk_full(open_replica, monkeypatch):
    r = open_replica()
    FakeDisk(monkeypatch, 10, errno.EIO)
    with pytest.raises(StorageIOError) as info:
        r.append(make_batch(1), leader_epoch=0)
    assert not isinstance(info.value, DiskFull) and info.value.errno == errno.EIO
    assert _state(r)[:2] == (0, 0) and tails_are_clean(r)


def test_enospc_creating_a_segment(open_replica, monkeypatch):
    r = open_replica(segment_max_bytes=100)
    r.append(make_batch(1), leader_epoch=0)
    before = _state(r)
    real_open = os.open

    def full_open(path, flags, *args):
        if flags & os.O_CREAT and str(path).endswith(".log"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", full_open)
    with pytest.raises(DiskFull):
        r.append(make_batch(1), leader_epoch=0)
    assert _state(r) == before
    monkeypatch.setattr(os, "open", real_open)
    assert r.append(make_batch(1), leader_epoch=0).base_offset == 1


def test_enospc_writing_the_epoch_checkpoint_undoes_the_append(open_replica, monkeypatch):
    r = open_replica()
    r.append(make_batch(1), leader_epoch=1)
    before, epochs = _state(r), r.epochs

    def full_write(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_write)
    with pytest.raises(DiskFull):
        r.append(make_batch(1), leader_epoch=2)  # a new epoch: the checkpoint is rewritten
    assert _state(r) == before and r.epochs == epochs and tails_are_clean(r)
    monkeypatch.undo()
    r.append(make_batch(1), leader_epoch=2)
    assert r.epochs == [(1, 0), (2, 1)]


def test_a_failed_undo_short_circuits_the_replica(open_replica, monkeypatch, tmp_path):
    r = open_replica()
    r.append(make_batch(1, b"kept"), leader_epoch=0)
    r.flush()
    data = read_all(r)
    FakeDisk(monkeypatch, 20)

    def broken_ftruncate(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", broken_ftruncate)
    with pytest.raises(DiskFull):
        r.append(make_batch(1, b"lost"), leader_epoch=0)
    assert r.short_circuited and "undo" in r.short_circuited
    assert read_all(r) == data  # the 20 stray bytes past the end are never served
    with pytest.raises(ShortCircuited) as info:
        r.append(make_batch(1), leader_epoch=0)
    assert info.value.code == ErrorCode.PartitionShortCircuited
    with pytest.raises(ShortCircuited):
        r.flush()
    monkeypatch.undo()
    with contextlib.suppress(ShortCircuited):
        r.close()
    reopened = Replica.open(tmp_path, "t", 0, ReplicaConfig())
    try:
        assert reopened.recovery.truncated_bytes == 20
        assert read_all(reopened) == data
        assert reopened.append(make_batch(1), leader_epoch=0).base_offset == 1
    finally:
        reopened.close()


def test_a_failed_fsync_short_circuits_the_replica(open_replica, monkeypatch):
    r = open_replica()
    r.append(make_batch(1), leader_epoch=0)
    r.flush()
    r.append(make_batch(1), leader_epoch=0)

    def broken_sync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken_sync)
    with pytest.raises(ShortCircuited):
        r.flush()
    assert r.durable_leo == 1
    with pytest.raises(ShortCircuited):
        r.append(make_batch(1), leader_epoch=0)
    assert [o for o, _ in values(read_all(r))] == [0, 1]  # reads go on


# --- a real, small tmpfs ------------------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted under tmp_path; needs root and mount permission."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_real_disk_full_on_tmpfs(tiny_tmpfs):
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\x00" * 64 * 1024)
    cfg = ReplicaConfig(segment_max_bytes=64 * 1024)
    r = Replica.open(tiny_tmpfs, "t", 0, cfg)
    try:
        batch = make_batch(8, b"x" * 1000)  # about 8 KiB
        with pytest.raises(DiskFull):
            for _ in range(100):
                r.append(batch, leader_epoch=0)
        leo, data = r.leo, read_all(r)
        assert leo > 0 and tails_are_clean(r)
        assert [o for o, _ in values(data)] == list(range(leo))
        with pytest.raises(DiskFull):  # still full
            r.append(batch, leader_epoch=0)
        assert r.leo == leo and read_all(r) == data
        filler.unlink()  # space frees
        assert r.append(batch, leader_epoch=0).base_offset == leo
        assert r.flush() == leo + 8
    finally:
        r.close()
    r = Replica.open(tiny_tmpfs, "t", 0, cfg)
    try:
        assert r.recovery.truncated_bytes == 0 and r.leo == leo + 8
        assert [o for o, _ in values(read_all(r))] == list(range(leo + 8))
    finally:
        r.close()


def test_enospc_preallocating_leaves_nothing_visible(open_replica, monkeypatch):
    r = open_replica(segment_max_bytes=1 << 20)
    r.append(make_batch(1, b"a"), leader_epoch=0)
    r.close()  # trimmed: the next append must preallocate again
    r = open_replica(segment_max_bytes=1 << 20)
    before, data = _state(r), read_all(r)

    def full_fallocate(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full_fallocate)
    with pytest.raises(DiskFull):
        r.append(make_batch(1, b"b"), leader_epoch=0)
    assert _state(r) == before and tails_are_clean(r) and read_all(r) == data
    monkeypatch.undo()
    assert r.append(make_batch(1, b"c"), leader_epoch=0).base_offset == 1
