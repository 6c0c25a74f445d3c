"""The sync journal and power-loss replay: after a power cut every record below the flushed
durable LEO survives, and nothing that was never fsynced is counted durable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from fluvial.storage import Replica, ReplicaConfig, ShortCircuited, StorageIOError, journal
from harness.powerloss import MODES, apply_power_loss, read_journal, unsynced_plan

from .conftest import make_batch, read_all, values

# Small segments so that the first phase rolls (seals are fsynced and journaled), no
# preallocation so that file sizes are the data.
CFG = ReplicaConfig(segment_max_bytes=1000, index_max_interval_bytes=100, preallocate_bytes=0)


@pytest.fixture
def journal_file(tmp_path):
    """Journal every segment fsync of this process to a file for the test's duration."""
    path = tmp_path / "sync.journal"
    journal.use_journal(str(path))
    yield str(path)
    journal.use_journal(None)


def _abandon(replica: Replica) -> None:
    """What kill -9 leaves: the files as written (in the page cache), nothing flushed, trimmed
    or indexed."""
    replica._close_files()
    replica._closed = True


def _write(replica: Replica, count: int, tag: str) -> list[bytes]:
    written = []
    for i in range(count):
        value = f"{tag}-{i}".encode()
        replica.append(make_batch(1 + i % 3, value), leader_epoch=0)
        written += [value] * (1 + i % 3)
    return written


def _reopen(path) -> Replica:
    return Replica.open(path, "t", 0, CFG)


def test_the_journal_records_every_segment_fsync_with_the_size_it_covered(tmp_path, journal_file):
    r = Replica.open(tmp_path / "data", "t", 0, CFG)
    active = r.segments[-1].path
    assert read_journal(journal_file) == {os.path.realpath(active): 0}  # recovery at open
    _write(r, 3, "a")
    size = r.segments[-1].size_bytes
    assert read_journal(journal_file)[os.path.realpath(active)] == 0  # appends do not fsync
    r.flush()
    assert read_journal(journal_file)[os.path.realpath(active)] == size
    _write(r, 40, "b")  # rolls: each sealed segment is journaled whole
    sealed = r.segments[:-1]
    assert len(sealed) >= 2
    journaled = read_journal(journal_file)
    for seg in sealed:
        assert journaled[os.path.realpath(seg.path)] == seg.size_bytes
    assert journaled.get(os.path.realpath(r.segments[-1].path), 0) == 0
    r.close()


def test_a_truncation_journals_the_cut(tmp_path, journal_file):
    r = Replica.open(tmp_path / "data", "t", 0, CFG)
    _write(r, 40, "a")
    r.flush()
    segments = r.segments
    r.truncate_to(3)
    journaled = read_journal(journal_file)
    assert journaled[os.path.realpath(segments[0].path)] == r.segments[0].size_bytes
    for seg in segments[1:]:  # deleted: a file created there later starts with nothing durable
        assert journaled[os.path.realpath(seg.path)] == 0
    r.close()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", MODES)
def test_flushed_records_survive_a_power_cut_and_unsynced_ones_are_not_counted(tmp_path, journal_file,
                                                                               mode, seed):
    data = tmp_path / "data"
    r = Replica.open(data, "t", 0, CFG)
    written = _write(r, 22, "durable")  # two sealed segments, 190 bytes in the active one
    durable = r.flush()
    assert durable == r.leo == len(written)
    segments = r.segments
    written += _write(r, 6, "unsynced")
    assert [s.path for s in r.segments] == [s.path for s in segments]  # no roll: only the active one
    _abandon(r)

    report = apply_power_loss(journal_file, data, mode=mode, seed=seed)
    assert set(report.files_changed) <= {os.path.realpath(segments[-1].path)}

    r = _reopen(data)
    try:
        got = [v for _, v in values(read_all(r))]
        assert got[:durable] == written[:durable]  # every flushed record survived
        assert got == written[:len(got)]  # whatever else survived is whole and in order
        assert r.durable_leo == r.leo == len(got)
        if mode == "cut":
            assert r.leo == durable  # nothing unsynced survived a plain cut
    finally:
        r.close()


def test_a_plain_cut_loses_everything_since_the_last_flush(tmp_path, journal_file):
    data = tmp_path / "data"
    r = Replica.open(data, "t", 0, CFG)
    written = _write(r, 4, "a")
    r.flush()
    _write(r, 4, "b")
    _abandon(r)
    report = apply_power_loss(journal_file, data)
    assert report.total_bytes_dropped > 0
    r = _reopen(data)
    try:
        assert [v for _, v in values(read_all(r))] == written
    finally:
        r.close()


def test_never_journaled_segments_are_emptied_and_shorter_files_left_alone(tmp_path):
    data = tmp_path / "d"
    (data / "t-0").mkdir(parents=True)
    never = data / "t-0" / "00000000000000000000.log"
    never.write_bytes(b"x" * 5000)
    shorter = data / "t-0" / "00000000000000000010.log"
    shorter.write_bytes(b"y" * 100)
    other = data / "t-0" / "replication.chk"
    other.write_bytes(b"z" * 8)
    log = tmp_path / "j"
    log.write_text(f"{os.path.realpath(shorter)}\t300\n")
    report = apply_power_loss(log, data)
    assert report.bytes_dropped == {os.path.realpath(never): 5000}
    assert never.read_bytes() == b"" and shorter.read_bytes() == b"y" * 100
    assert other.read_bytes() == b"z" * 8  # only .log files


def test_the_journal_itself_is_never_cut(tmp_path):
    log = tmp_path / "sync.log"  # a journal named like a segment, inside the data directory
    log.write_text(f"{os.path.realpath(tmp_path / 'other.log')}\t0\n")
    before = log.read_bytes()
    apply_power_loss(log, tmp_path)
    assert log.read_bytes() == before


def test_unsynced_plans():
    rng = random.Random(0)
    assert unsynced_plan(5000, 5000, "cut", rng) == []
    assert unsynced_plan(5000, 4000, "torn", rng) == []
    assert unsynced_plan(5000, 13000, "cut", rng) == [(5000, 13000)]
    for _ in range(50):
        [(start, end)] = unsynced_plan(5000, 13000, "torn", rng)
        assert 5000 <= start < end == 13000
    pages = set()
    for _ in range(50):
        ranges = unsynced_plan(5000, 13000, "reorder", rng)
        assert set(ranges) <= {(5000, 8192), (8192, 12288), (12288, 13000)}
        pages.update(ranges)
    assert len(pages) == 3
    with pytest.raises(ValueError):
        unsynced_plan(0, 10, "melt", rng)


def test_the_same_seed_replays_the_same_cut(tmp_path):
    results = []
    for run in range(2):
        d = tmp_path / f"run{run}"
        d.mkdir()
        (d / "a.log").write_bytes(bytes(range(256)) * 64)
        log = tmp_path / "j"
        log.write_text("")
        apply_power_loss(log, d, mode="reorder", seed=3)
        results.append((d / "a.log").read_bytes())
    assert results[0] == results[1]
    assert results[0] != bytes(range(256)) * 64


def test_a_killed_process_journals_through_the_environment_variable(tmp_path):
    """A real kill -9: the writer reads FLUVIAL_SYNC_JOURNAL itself; after the replay, the
    records it flushed are there and the unsynced ones are not."""
    data, log = tmp_path / "data", tmp_path / "sync.journal"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from fluvial.storage import Replica, ReplicaConfig
        from fluvial.protocol.record import encode_batch
        r = Replica.open({str(data)!r}, "t", 0, ReplicaConfig(segment_max_bytes=1000))
        for i in range(20):
            r.append(encode_batch([b"flushed"], base_offset=0), leader_epoch=0)
        print(r.flush(), flush=True)
        for i in range(5):
            r.append(encode_batch([b"lost"], base_offset=0), leader_epoch=0)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, FLUVIAL_SYNC_JOURNAL=str(log))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert int(proc.stdout) == 20
    apply_power_loss(log, data)
    r = Replica.open(data, "t", 0, ReplicaConfig(segment_max_bytes=1000))
    try:
        assert [v for _, v in values(read_all(r))] == [b"flushed"] * 20
    finally:
        r.close()


def test_a_failed_fsync_journals_nothing(tmp_path, journal_file, monkeypatch):
    r = Replica.open(tmp_path / "data", "t", 0, CFG)
    _write(r, 3, "a")
    before = read_journal(journal_file)

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(ShortCircuited):
        r.flush()
    assert read_journal(journal_file) == before and r.durable_leo == 0
    r.delete()


def test_a_failed_fsync_at_seal_journals_nothing(tmp_path, journal_file, monkeypatch):
    r = Replica.open(tmp_path / "data", "t", 0, CFG)
    batch = make_batch(3, b"a")
    while r.segments[-1].size_bytes + len(batch) <= CFG.segment_max_bytes:
        r.append(batch, leader_epoch=0)
    assert len(r.segments) == 1  # the next batch rolls
    before = read_journal(journal_file)
    real_fsync = os.fsync

    def broken(fd):  # the index is written; the segment's fsync fails
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".log"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StorageIOError):
        r.append(batch, leader_epoch=0)
    assert read_journal(journal_file) == before
    r.delete()


def test_a_flush_overtaken_by_a_truncation_journals_nothing(tmp_path, journal_file, monkeypatch):
    """The flush's fsync covered bytes the truncation then cut; journaling them afterwards
    would let the replay keep unsynced data written later at the same place."""
    r = Replica.open(tmp_path / "data", "t", 0, CFG)
    _write(r, 2, "a")
    r.flush()
    _write(r, 2, "b")
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def blocking(fd):
        entered.set()
        release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", blocking)
    flusher = threading.Thread(target=r.flush)
    flusher.start()
    assert entered.wait(30)
    r.truncate_to(1)
    cut = read_journal(journal_file)[os.path.realpath(r.segments[-1].path)]
    release.set()
    flusher.join(30)
    assert read_journal(journal_file)[os.path.realpath(r.segments[-1].path)] == cut == r.segments[-1].size_bytes
    r.close()
