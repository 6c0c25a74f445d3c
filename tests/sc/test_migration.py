"""Metadata written before typed replication records (partition ``{"epoch", "isr"}`` and topic
``{"min_isr", "unclean_leader_election"}`` as JSON extras) loads into typed records. Its topics keep
NO_TOPIC_ID (they predate incarnations): the SPUs then keep their replica directories, which carry
no incarnation marker either, instead of taking them for a deleted topic's leftovers."""

from __future__ import annotations

import json

from crc32c import crc32c

from fluvial.protocol import sc_objects as so
from fluvial.protocol.codec import Vec
from fluvial.sc import backend as be
from fluvial.protocol import internal_api as ia
from fluvial.protocol.internal_api import NO_TOPIC_ID
from fluvial.sc import controller as ctl
from fluvial.sc.state import ScState


def write_old_file(directory, label, objects):
    """The FLVMETA1 layout with fluvial's old ``extra`` dicts."""
    records = [be._Record(name, epoch, spec.encode(be.STORE_VERSION), status.encode(be.STORE_VERSION),
                          json.dumps(extra, sort_keys=True) if extra else "")
               for name, epoch, spec, status, extra in objects]
    w = bytearray()
    Vec(be._Record).encode(w, records, 0)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{label}.meta").write_bytes(be._HEAD.pack(be._MAGIC, crc32c(w), len(w)) + bytes(w))


def old_cluster(directory):
    spec = so.TopicSpec.computed(2, 2)
    status = so.TopicStatus(so.TopicResolution.Provisioned, {0: [1, 2], 1: [2, 1]}, {}, "")
    write_old_file(directory, "Topic", [("old", 3, spec, status, {"min_isr": 2, "unclean_leader_election": True}),
                                        ("plain", 4, so.TopicSpec.computed(1, 1), status, {})])
    parts = []
    for name, replicas, extra in (("old-0", [1, 2], {"epoch": 7, "isr": [1]}),
                                  ("old-1", [2, 1], {"epoch": 2, "isr": [2, 1]}),
                                  ("plain-0", [1], {})):
        pspec = so.PartitionSpec.from_replicas(replicas, spec)
        pstatus = so.PartitionStatus(so.PartitionResolution.Online, so.ReplicaStatus(replicas[0], 0, 0),
                                     0, [], 0, False, 0)
        parts.append((name, 5, pspec, pstatus, extra))
    write_old_file(directory, "Partition", parts)


def test_old_extras_become_typed_records(tmp_path):
    old_cluster(tmp_path / "m")
    state = ScState(be.FileBackend(tmp_path / "m"))
    state.load()
    old, plain = state.topics.get("old").meta, state.topics.get("plain").meta
    assert (old.min_isr, old.unclean_leader_election) == (2, True)
    assert (plain.min_isr, plain.unclean_leader_election) == (1, False)
    assert old.topic_id == plain.topic_id == NO_TOPIC_ID
    p0, p1, q0 = (state.partitions.get(n).meta for n in ("old-0", "old-1", "plain-0"))
    assert (p0.epoch, p0.isr, p0.isr_version, p0.topic_id) == (7, (1,), 0, NO_TOPIC_ID)
    assert (p1.epoch, p1.isr, p1.topic_id) == (2, (2, 1), NO_TOPIC_ID)
    assert (q0.epoch, q0.isr, q0.topic_id) == (1, (1,), NO_TOPIC_ID)


def test_a_topic_recreated_after_the_upgrade_gets_an_incarnation(tmp_path):
    old_cluster(tmp_path / "m")
    state = ScState(be.FileBackend(tmp_path / "m"))
    state.load()
    state.handle(ctl.SpuRegistered(ia.RegisterSpuRequest(1, "127.0.0.1", 9001, "127.0.0.1", 9101, None), True))
    state.handle(ctl.TopicDeleted("plain"))
    state.handle(ctl.TopicCreated("plain", so.TopicSpec.computed(1, 1)))
    assert state.topics.get("plain").meta.topic_id != NO_TOPIC_ID


def test_the_migration_is_saved_at_load(tmp_path):
    old_cluster(tmp_path / "m")
    first = ScState(be.FileBackend(tmp_path / "m"))
    first.load()
    again = ScState(be.FileBackend(tmp_path / "m"))
    again.load()
    for name in ("old", "plain"):
        assert again.topics.get(name).meta == first.topics.get(name).meta
    assert again.partitions.get("old-0").meta == first.partitions.get("old-0").meta
