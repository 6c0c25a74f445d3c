"""Checkpoints batched over an SPU's replicas (issue 19, ``fluvial.spu.checkpoints``): one shared
HW file written only when a HW changed, read back on open (clamped to the durable LEO, falling
back to ``replication.chk``), and take-overs whose epoch files are made durable in one worker
thread hop before the replica leads."""

from __future__ import annotations

import os

import pytest
import trio

from fluvial.durable import TMP_SUFFIX
from fluvial.protocol import internal_api as ia
from fluvial.protocol.record import encode_batch
from fluvial.spu.checkpoints import HwCheckpoint, prepare_epochs
from fluvial.spu.context import SpuContext
from fluvial.spu.partition import NotLeader, PartitionReplica
from fluvial.spu.server import SpuConfig
from fluvial.storage.checkpoint import (
    EPOCH_CHECKPOINT,
    SHARED_HW_CHECKPOINT,
    decode_epochs,
    decode_shared_hws,
    encode_hw,
    encode_shared_hws,
)
from fluvial.storage.config import ReplicaConfig
from fluvial.storage.replica import Replica

SPU = 5001
TOPIC_ID = 77


def assignment(partition: int, epoch: int = 1, leader: int = SPU, topic: str = "t",
               topic_id: int = TOPIC_ID) -> ia.ReplicaAssignment:
    return ia.ReplicaAssignment(topic, partition, leader, epoch, [SPU], [SPU], ia.ReplicaSettings(),
                                topic_id, 0)


def push(assignments) -> ia.WatchReplicasResponse:
    return ia.WatchReplicasResponse(1, list(assignments), [], -1)


def epochs_on_disk(storage: Replica) -> list:
    with open(os.path.join(storage.path, EPOCH_CHECKPOINT), "rb") as f:
        return [tuple(e) for e in decode_epochs(f.read()).entries]


# ------------------------------------------------------------------------------ the codec

def test_shared_file_round_trips_and_rejects_every_torn_or_corrupt_form():
    entries = {("t", 0): (TOPIC_ID, 5), ("t", 1): (TOPIC_ID, 0), ("ü-topic", 3): (ia.NO_TOPIC_ID, 1 << 40)}
    data = encode_shared_hws(entries)
    assert decode_shared_hws(data) == entries
    assert decode_shared_hws(encode_shared_hws({})) == {}
    for cut in range(len(data)):  # every torn write
        assert decode_shared_hws(data[:cut]) is None
    for i in range(len(data)):  # every flipped byte
        assert decode_shared_hws(data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]) is None
    assert decode_shared_hws(data + b"\0") is None


# ------------------------------------------------------------------- restoring on open

def make_replica(tmp_path, partition: int, records: int, hw: int | None = None) -> None:
    """A replica directory holding ``records`` durable records (and ``hw`` in replication.chk)."""
    r = Replica.open(tmp_path, "t", partition, ReplicaConfig())
    for i in range(records):
        r.append(encode_batch([b"v%d" % i]), leader_epoch=1)
    r.flush()
    if hw is not None:
        r.set_hw(hw)
        r.checkpoint_hw()
    r.close()


def test_hw_comes_from_the_shared_file_clamped_to_the_leo_else_from_replication_chk(tmp_path):
    for p in range(4):
        make_replica(tmp_path, p, records=5, hw=2)
    HwCheckpoint(tmp_path).write({("t", 0): (TOPIC_ID, 4), ("t", 1): (TOPIC_ID, 100),
                                  ("t", 2): (TOPIC_ID + 1, 4)})
    hws = HwCheckpoint(tmp_path)
    got = {}
    for p in range(4):
        r = Replica.open(tmp_path, "t", p, ReplicaConfig())
        used = hws.restore(r, TOPIC_ID)
        got[p] = (used, r.hw)
        r.close()
    assert got == {0: (True, 4),    # the shared file's entry
                   1: (True, 5),    # beyond the durable LEO: clamped to it
                   2: (False, 2),   # another incarnation's entry: replication.chk's
                   3: (False, 2)}   # no entry: replication.chk's (the upgrade path)


def test_a_corrupt_shared_file_counts_as_absent(tmp_path):
    make_replica(tmp_path, 0, records=5, hw=3)
    data = encode_shared_hws({("t", 0): (TOPIC_ID, 5)})
    with open(os.path.join(tmp_path, SHARED_HW_CHECKPOINT), "wb") as f:
        f.write(data[:-1] + bytes([data[-1] ^ 1]))
    r = Replica.open(tmp_path, "t", 0, ReplicaConfig())
    assert not HwCheckpoint(tmp_path).restore(r, TOPIC_ID)
    assert r.hw == 3
    r.close()


def test_the_shared_file_is_fsynced_before_its_rename_and_the_directory_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("replace", a, b)), real_replace(a, b)))
    hws = HwCheckpoint(tmp_path)
    hws.write({("t", 0): (TOPIC_ID, 1)})
    tmp = hws.path + TMP_SUFFIX
    assert calls == [("fsync", tmp), ("replace", tmp, hws.path), ("fsync", os.fspath(tmp_path))]
    with open(hws.path, "rb") as f:
        assert decode_shared_hws(f.read()) == {("t", 0): (TOPIC_ID, 1)}


# ---------------------------------------------------------- the SPU: one write per interval

@pytest.fixture
async def spu(tmp_path, nursery):
    ctx = SpuContext(SpuConfig(SPU, tmp_path / "data"), nursery)
    yield ctx
    ctx.close()


async def wait_leading(ctx: SpuContext, keys) -> None:
    with trio.fail_after(10):
        while not all(ctx.replicas[k].is_leader for k in keys):
            await trio.sleep(0.01)


async def test_the_spu_writes_one_shared_file_only_when_a_hw_changed_and_restores_it(tmp_path, nursery, monkeypatch):
    data_dir = tmp_path / "data"
    ctx = SpuContext(SpuConfig(SPU, data_dir), nursery)
    keys = [("t", p) for p in range(20)]
    await ctx.apply_push(push(assignment(p) for p in range(20)))
    await wait_leading(ctx, keys)
    writes = []
    real_write = HwCheckpoint.write
    monkeypatch.setattr(HwCheckpoint, "write", lambda self, entries: (writes.append(dict(entries)),
                                                                     real_write(self, entries)))
    assert not await ctx.checkpoint_hws()  # nothing changed: nothing written
    for p in (3, 7):
        await ctx.replicas[("t", p)].append(encode_batch([b"a", b"b"]))
    assert all(ctx.replicas[("t", p)].hw == 2 for p in (3, 7))
    assert await ctx.checkpoint_hws()
    assert not await ctx.checkpoint_hws()
    assert len(writes) == 1 and len(writes[0]) == 20
    assert {k: v for k, v in writes[0].items() if v[1]} == {("t", 3): (TOPIC_ID, 2), ("t", 7): (TOPIC_ID, 2)}
    assert not any(os.path.exists(data_dir / f"t-{p}" / "replication.chk") for p in range(20))
    await ctx.replicas[("t", 3)].append(encode_batch([b"c"]))
    ctx.close()  # a HW changed since: written once more
    assert len(writes) == 2

    again = SpuContext(SpuConfig(SPU, data_dir), nursery)
    again.close()  # nothing opened, nothing changed: the file is left alone
    assert len(writes) == 2
    again = SpuContext(SpuConfig(SPU, data_dir), nursery)
    await again.apply_push(push(assignment(p, epoch=2) for p in range(20)))
    await wait_leading(again, keys)
    assert {k: r.hw for k, r in again.replicas.items() if r.hw} == {("t", 3): 3, ("t", 7): 2}
    again.close()


# ------------------------------------------------------------------------ take-overs

async def test_a_take_over_waits_until_its_epoch_is_durable(tmp_path):
    storage = Replica.open(tmp_path, "t", 0, ReplicaConfig())
    storage.append(encode_batch([b"x"]), leader_epoch=1)
    storage.assign_epoch(1, 0)
    queued = []
    r = PartitionReplica(storage, assignment(0, epoch=3), SPU, epoch_writer=queued.append)
    assert queued == [r] and r.pending_epoch == 3
    assert not r.is_leader and epochs_on_disk(storage) == [(1, 0)]
    with pytest.raises(NotLeader):
        r.append_nowait(encode_batch([b"y"]))

    [prepared] = prepare_epochs([(storage, 3)])
    assert epochs_on_disk(storage) == [(1, 0), (3, 1)]  # durable before it leads
    assert storage.durable_leo == 1
    assert r.take_over_prepared(3, prepared)
    assert r.is_leader and storage.latest_epoch == 3
    assert r.append_nowait(encode_batch([b"y"])).base_offset == 1
    storage.close()


async def test_a_take_over_overtaken_by_a_newer_assignment_does_not_lead(tmp_path):
    storage = Replica.open(tmp_path, "t", 0, ReplicaConfig())
    queued = []
    r = PartitionReplica(storage, assignment(0, epoch=3), SPU, epoch_writer=queued.append)
    [prepared] = prepare_epochs([(storage, 3)])
    r.reassign(assignment(0, epoch=4, leader=SPU + 1))  # moved elsewhere meanwhile
    assert not r.take_over_prepared(3, prepared) and not r.is_leader
    storage.close()


async def test_the_spu_takes_over_many_partitions_in_one_thread_hop(spu, monkeypatch):
    hops = []
    real = prepare_epochs

    def counting(batch):
        hops.append(len(batch))
        return real(batch)

    monkeypatch.setattr("fluvial.spu.context.prepare_epochs", counting)
    keys = [("t", p) for p in range(50)]
    await spu.apply_push(push(assignment(p) for p in range(50)))
    await wait_leading(spu, keys)
    assert hops == [50]
    assert all(epochs_on_disk(spu.replicas[k].storage) == [(1, 0)] for k in keys)
    await spu.apply_push(push(assignment(p, epoch=2) for p in range(50)))
    await wait_leading(spu, keys)
    assert all(spu.replicas[k].leader_epoch == 2 for k in keys)
    assert hops == [50, 50]


async def test_a_log_changed_during_the_hop_is_flushed_and_given_its_epoch_on_the_loop(tmp_path):
    storage = Replica.open(tmp_path, "t", 0, ReplicaConfig())
    storage.append(encode_batch([b"x"]), leader_epoch=1)
    storage.assign_epoch(1, 0)
    r = PartitionReplica(storage, assignment(0, epoch=3), SPU, epoch_writer=lambda _: None)
    [prepared] = prepare_epochs([(storage, 3)])
    storage.truncate_fully_and_start_at(5)  # e.g. the log moved meanwhile: the prepared cache is stale
    assert not storage.install_epochs(prepared)
    assert r.take_over_prepared(3, prepared)
    assert r.is_leader and epochs_on_disk(storage) == [(3, 5)] and storage.durable_leo == 5
    storage.close()
