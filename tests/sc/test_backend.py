"""The SC's FileBackend: snapshots plus a journal of changed objects (fluvial.sc.backend)."""

from __future__ import annotations

import os

import pytest

from fluvial.metadata.store import StoredObject
from fluvial.protocol import sc_objects as so
from fluvial.sc.backend import JOURNAL, CorruptMetadata, FileBackend
from fluvial import durable
from harness.powerloss import apply_power_loss


def topic(name: str, partitions: int = 1, epoch: int = 1) -> StoredObject:
    return StoredObject(name, so.TopicSpec.computed(partitions, 1), so.TopicSpec.Status(), epoch)


def load(directory) -> dict[str, int]:
    """name -> partitions of every stored topic, as a fresh backend (a restarted SC) reads them."""
    return {o.name: o.spec.replicas.partitions
            for o in FileBackend(directory).load("Topic", so.TopicSpec, so.TopicSpec.Status)}


def save_all(be: FileBackend, objects: dict[str, StoredObject], *changed: str) -> None:
    be.save({"Topic": list(objects.values())}, {"Topic": set(changed)})


def test_a_change_appends_only_the_changed_objects(tmp_path):
    be = FileBackend(tmp_path)
    objects = {f"t{i}": topic(f"t{i}") for i in range(1000)}
    be.save({"Topic": list(objects.values())})  # no ``changed``: a snapshot of everything
    snapshot = (tmp_path / "Topic.meta").stat()
    journal_before = (tmp_path / JOURNAL).stat().st_size
    objects["t7"] = topic("t7", partitions=9)
    save_all(be, objects, "t7")
    grew = (tmp_path / JOURNAL).stat().st_size - journal_before
    assert 0 < grew < snapshot.st_size / 100  # one object, not a thousand
    assert (tmp_path / "Topic.meta").stat().st_mtime_ns == snapshot.st_mtime_ns
    assert load(tmp_path) == {name: (9 if name == "t7" else 1) for name in objects}


def test_writes_and_deletes_replay_in_order(tmp_path):
    be = FileBackend(tmp_path)
    objects = {"a": topic("a"), "b": topic("b")}
    save_all(be, objects, "a", "b")
    del objects["a"]
    save_all(be, objects, "a")
    objects["a"] = topic("a", partitions=3)
    objects["c"] = topic("c", partitions=4)
    save_all(be, objects, "a", "c")
    assert load(tmp_path) == {"a": 3, "b": 1, "c": 4}
    # a restarted backend appends after what is there
    be2 = FileBackend(tmp_path)
    del objects["b"]
    save_all(be2, objects, "b")
    assert load(tmp_path) == {"a": 3, "c": 4}


def test_a_torn_last_entry_is_ignored_and_cut_off(tmp_path):
    be = FileBackend(tmp_path)
    objects = {"a": topic("a")}
    save_all(be, objects, "a")
    whole = (tmp_path / JOURNAL).stat().st_size
    objects["b"] = topic("b")
    save_all(be, objects, "b")
    with open(tmp_path / JOURNAL, "r+b") as f:  # the second append never finished
        f.truncate((tmp_path / JOURNAL).stat().st_size - 3)
    assert load(tmp_path) == {"a": 1}
    assert (tmp_path / JOURNAL).stat().st_size == whole
    be2 = FileBackend(tmp_path)
    objects["c"] = topic("c")
    be2.load("Topic", so.TopicSpec, so.TopicSpec.Status)
    save_all(be2, objects, "c")
    assert load(tmp_path) == {"a": 1, "c": 1}


def test_a_corrupt_journal_is_reported(tmp_path):
    (tmp_path / JOURNAL).write_bytes(b"NOTAJRNL" + bytes(20))
    with pytest.raises(CorruptMetadata):
        load(tmp_path)


def test_compaction_rewrites_the_snapshots_and_empties_the_journal(tmp_path):
    be = FileBackend(tmp_path, compact_bytes=2000)
    objects = {}
    for i in range(60):
        objects[f"t{i}"] = topic(f"t{i}", partitions=i + 1)
        save_all(be, objects, f"t{i}")
        assert (tmp_path / JOURNAL).stat().st_size <= 2000 + 200
    assert (tmp_path / "Topic.meta").exists()
    assert load(tmp_path) == {f"t{i}": i + 1 for i in range(60)}


def test_an_old_journal_replayed_over_newer_snapshots_changes_nothing(tmp_path):
    """A crash after a compaction renamed its snapshots but before it emptied the journal."""
    be = FileBackend(tmp_path)
    objects = {"a": topic("a"), "b": topic("b")}
    save_all(be, objects, "a", "b")
    objects["a"] = topic("a", partitions=5)
    del objects["b"]
    save_all(be, objects, "a", "b")
    old_journal = (tmp_path / JOURNAL).read_bytes()
    be._compact({})
    assert (tmp_path / JOURNAL).stat().st_size == 0
    (tmp_path / JOURNAL).write_bytes(old_journal)
    assert load(tmp_path) == {"a": 5}


def test_every_saved_change_survives_a_power_cut(tmp_path):
    """``save`` returns only once its journal entry is fsynced: a power cut (every .log file
    cut back to what was fsynced, harness.powerloss) loses none of them."""
    sync = tmp_path / "sync-journal"
    durable.use_journal(str(sync))
    try:
        be = FileBackend(tmp_path / "meta")
        objects = {}
        for i in range(5):
            objects[f"t{i}"] = topic(f"t{i}")
            save_all(be, objects, f"t{i}")
    finally:
        durable.use_journal(None)
    apply_power_loss(sync, tmp_path / "meta")
    assert load(tmp_path / "meta") == {f"t{i}": 1 for i in range(5)}


def test_a_failed_append_leaves_no_half_entry(tmp_path, monkeypatch):
    be = FileBackend(tmp_path)
    objects = {"a": topic("a")}
    save_all(be, objects, "a")
    size = (tmp_path / JOURNAL).stat().st_size
    def failing(fd):
        raise OSError(5, "EIO")

    monkeypatch.setattr("fluvial.sc.backend.os.fdatasync", failing)
    objects["b"] = topic("b")
    with pytest.raises(OSError):
        save_all(be, objects, "b")
    assert (tmp_path / JOURNAL).stat().st_size == size
    monkeypatch.undo()
    objects["c"] = topic("c")
    del objects["b"]
    save_all(be, objects, "c")
    assert load(tmp_path) == {"a": 1, "c": 1}
    assert os.path.exists(tmp_path / JOURNAL)
