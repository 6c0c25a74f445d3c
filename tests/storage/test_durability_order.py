"""The order of fsyncs that a power cut relies on: what recovery trusts must have been made
durable first (an index before its segment counts as sealed, a directory entry before the
files in it, each deletion before the next)."""

from __future__ import annotations

import os

import pytest

from fluvial.storage import Replica, ReplicaConfig

from .conftest import make_batch


class Events(list):
    """(what, path) of the file system calls a test cares about, in order."""

    def index_of(self, event: tuple[str, str]) -> int:
        assert event in self, f"{event} not in {self}"
        return self.index(event)

    def between(self, start: int, end: int) -> list[tuple[str, str]]:
        return self[start:end]


@pytest.fixture
def events(monkeypatch):
    """Record fsync/fdatasync (by the path of the descriptor), creations, renames, unlinks and
    ftruncates."""
    recorded = Events()
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "open", "replace", "unlink",
                                                  "ftruncate", "mkdir")}

    def path_of(fd):
        return os.readlink(f"/proc/self/fd/{fd}")

    def sync(name):
        def wrapper(fd):
            recorded.append(("fsync", path_of(fd)))
            return real[name](fd)
        return wrapper

    def open_(path, flags, *args, **kwargs):
        fd = real["open"](path, flags, *args, **kwargs)
        if flags & os.O_CREAT:
            recorded.append(("create", os.path.abspath(path)))
        return fd

    def replace(src, dst):
        recorded.append(("rename", os.path.abspath(dst)))
        return real["replace"](src, dst)

    def unlink(path):
        recorded.append(("unlink", os.path.abspath(path)))
        return real["unlink"](path)

    def ftruncate(fd, size):
        recorded.append(("ftruncate", path_of(fd)))
        return real["ftruncate"](fd, size)

    def mkdir(path, *args, **kwargs):
        recorded.append(("mkdir", os.path.abspath(path)))
        return real["mkdir"](path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", sync("fsync"))
    monkeypatch.setattr(os, "fdatasync", sync("fdatasync"))
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return recorded


CFG = ReplicaConfig(segment_max_bytes=300, preallocate_bytes=0, index_max_interval_bytes=50)


def test_a_sealed_segments_index_is_durable_before_the_next_segment_exists(tmp_path, events):
    """Otherwise a power cut can leave an old but well-formed index next to a sealed segment."""
    r = Replica.open(tmp_path, "t", 0, CFG)
    first = r.segments[0].path
    index = first[:-len(".log")] + ".index"
    while len(r.segments) < 2:
        r.append(make_batch(2), leader_epoch=0)
    successor = events.index_of(("create", r.segments[1].path))
    renamed = events.index_of(("rename", index))
    assert ("fsync", index + ".tmp") in events.between(0, renamed)
    assert ("fsync", r.path) in events.between(renamed, successor)
    assert ("fsync", first) in events.between(renamed, successor)  # the sealed data too
    r.close()


def test_a_new_replica_directory_is_durable_in_its_parent(tmp_path, events):
    base = tmp_path / "data"
    r = Replica.open(base, "t", 0, CFG)
    made = events.index_of(("mkdir", r.path))
    assert ("fsync", str(base)) in events[made:]  # the entry of t-0 in data/
    assert ("fsync", str(tmp_path)) in events  # the entry of data/ in its parent
    r.close()


def test_each_deletion_of_a_truncation_is_durable_before_the_next_step(tmp_path, events):
    """Deletions reach the disk in any order unless each is fsynced: a power cut must never
    leave a gap (a later segment without the one before it)."""
    r = Replica.open(tmp_path, "t", 0, CFG)
    while len(r.segments) < 4:
        r.append(make_batch(2), leader_epoch=0)
    r.flush()
    paths = [s.path for s in r.segments]
    del events[:]
    r.truncate_to(r.segments[1].base_offset + 1)
    steps = [events.index_of(("unlink", paths[3])), events.index_of(("unlink", paths[2])),
             events.index_of(("ftruncate", paths[1]))]
    for before, after in zip(steps, steps[1:]):
        assert ("fsync", r.path) in events.between(before, after), events
    r.close()


def test_emptying_the_log_deletes_durably_before_it_starts_over(tmp_path, events):
    r = Replica.open(tmp_path, "t", 0, CFG)
    while len(r.segments) < 3:
        r.append(make_batch(2), leader_epoch=0)
    r.flush()
    paths = [s.path for s in r.segments]
    del events[:]
    r.truncate_fully_and_start_at(500)
    steps = [events.index_of(("unlink", p)) for p in reversed(paths)]
    steps.append(events.index_of(("create", r.segments[0].path)))
    for before, after in zip(steps, steps[1:]):
        assert ("fsync", r.path) in events.between(before, after), events
    assert ("fsync", r.path) in events[steps[-1]:]
    r.close()
