"""The chaos harness's disk-side tools, without a running cluster: ``cut_segment_tail`` and the
power cut ``ProcessCluster`` applies to a killed SPU in power-loss mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluvial.protocol.record import encode_batch
from fluvial.storage.replica import Replica
from harness.disklogs import cut_segment_tail, read_replica_log
from harness.processes import ProcessCluster

TOPIC = "t"


def _replica_with_batches(data_dir: Path, batches: int, per_batch: int = 3) -> None:
    r = Replica.open(data_dir, TOPIC, 0)
    try:
        for b in range(batches):
            r.append(encode_batch([b"b%d-%d" % (b, i) for i in range(per_batch)]), leader_epoch=1)
        r.flush()
    finally:
        r.close()


def test_cut_segment_tail_drops_whole_batches_from_the_end(tmp_path):
    _replica_with_batches(tmp_path, batches=5)
    assert cut_segment_tail(tmp_path, TOPIC, 0, 2) == 9
    log = read_replica_log(tmp_path, TOPIC, 0)
    assert [o for o, _ in log] == list(range(9))
    assert log[-1][1] == b"b2-2"


def test_cut_segment_tail_refuses_more_batches_than_the_segment_holds(tmp_path):
    _replica_with_batches(tmp_path, batches=2)
    with pytest.raises(ValueError, match="holds 2 batches"):
        cut_segment_tail(tmp_path, TOPIC, 0, 3)
    assert len(read_replica_log(tmp_path, TOPIC, 0)) == 6  # untouched


def _stopped_cluster(home: Path, *, seed: int = 0) -> ProcessCluster:
    """A power-loss ProcessCluster whose cluster.json lists one stopped SPU."""
    home.mkdir(parents=True, exist_ok=True)
    data = home / "data" / "spu-5001"
    (home / "cluster.json").write_text(json.dumps({"members": [
        {"kind": "sc", "id": 0, "pid": None},
        {"kind": "spu", "id": 5001, "pid": None, "data_dir": str(data)}]}))
    return ProcessCluster(home, spus=1, power_loss=True, seed=seed)


def test_a_power_cut_keeps_only_what_the_journal_says_was_fsynced(tmp_path):
    cluster = _stopped_cluster(tmp_path / "home")
    data = cluster.data_dir(5001)
    _replica_with_batches(data, batches=4)
    segment = next((data / f"{TOPIC}-0").glob("*.log"))
    # the segment holds the batches byte for byte: the first two were fsynced
    fsynced = sum(len(encode_batch([b"b%d-%d" % (b, i) for i in range(3)])) for b in range(2))
    cluster.journal.write_text(f"{segment.resolve()}\t{fsynced}\n")

    cluster.lose_power("spu-5001")

    assert [o for o, _ in read_replica_log(data, TOPIC, 0)] == list(range(6))
    assert cluster.power_cuts == [("spu-5001", "cut", cluster.power_cuts[0][2])]


def test_power_cut_seeds_replay_by_cluster_seed(tmp_path):
    def seeds(home, seed):
        c = _stopped_cluster(home, seed=seed)
        c.journal.write_text("")
        for _ in range(3):
            c.lose_power("spu-5001", "torn")
        return [s for _, _, s in c.power_cuts]

    assert seeds(tmp_path / "a", 7) == seeds(tmp_path / "b", 7)
    assert seeds(tmp_path / "c", 7) != seeds(tmp_path / "d", 8)


def test_power_loss_needs_the_mode_and_a_stopped_spu(tmp_path):
    with pytest.raises(ValueError, match="power_loss_mode"):
        ProcessCluster(tmp_path, power_loss=True, power_loss_mode="flood")
    plain = ProcessCluster(tmp_path / "plain")
    assert plain.journal is None
    with pytest.raises(RuntimeError, match="not in power-loss mode"):
        plain.lose_power("spu-5001")
