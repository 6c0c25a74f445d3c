"""A stopped replica's log on disk: read it back for the checker, or cut whole batches off its tail."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from fluvial.protocol.batch import BatchError, check_batch
from fluvial.protocol.record import decode_record_set
from harness.processes import ProcessCluster


def read_replica_log(spu_data_dir: str | os.PathLike, topic: str, partition: int) -> list[tuple[int, bytes]]:
    """Every record of one replica's log on disk, as (offset, value).

    Open only a replica no process is using (shut the cluster down first). Opening runs the
    storage recovery (which may cut a torn tail, as the SPU would on its next start); nothing is
    appended. A replica directory that does not exist reads as empty and is not created.
    """
    from fluvial.storage.replica import Replica  # storage is sync file I/O; imported on use

    if not (Path(spu_data_dir) / f"{topic}-{partition}").is_dir():
        return []
    replica = Replica.open(spu_data_dir, topic, partition)
    out: list[tuple[int, bytes]] = []
    try:
        offset = replica.log_start_offset
        while offset < replica.leo:
            chunk = replica.read(offset, 1 << 20, replica.leo)
            data = chunk.read_bytes()
            if not data:
                break
            out += [(r.offset, r.value) for r in decode_record_set(data) if r.offset >= offset]
            offset = chunk.next_offset
    finally:
        replica.close()
    return out


def cut_segment_tail(spu_data_dir: str | os.PathLike, topic: str, partition: int,
                     batches: int) -> int:
    """Cut the last ``batches`` whole batches off a stopped replica's active segment, as a power
    cut does to batches written after the last fsync; returns the offset the log now ends at.

    Deterministic, unlike ``apply_power_loss``: for a test that needs the replica to lose
    exactly these batches (they must not have been acknowledged by it, or the test models a
    broken promise of its own).

    Raises:
        ValueError: the active segment holds fewer than ``batches`` batches.
    """
    directory = Path(spu_data_dir) / f"{topic}-{partition}"
    active = max(directory.glob("*.log"), key=lambda p: int(p.stem))
    data = active.read_bytes()
    starts: list[tuple[int, int]] = []  # (position, base offset) of each whole valid batch
    pos = 0
    while pos < len(data):
        try:
            h = check_batch(data, pos)
        except BatchError:
            break  # the preallocated zeros after the last batch, or a torn tail
        starts.append((pos, h.base_offset))
        pos += h.size
    if not 1 <= batches <= len(starts):
        raise ValueError(f"{active} holds {len(starts)} batches; cannot cut {batches}")
    position, end_offset = starts[-batches]
    os.truncate(active, position)
    return end_offset


def read_cluster_logs(cluster: ProcessCluster, topic: str, partitions: int,
                      replicas: Mapping[int, Sequence[int]] | None = None) -> dict[int, dict[str, list]]:
    """partition -> "spu-<id>" -> records, for every SPU of a (shut down) cluster, or only for
    the SPUs ``replicas`` (partition -> SPU ids) assigns the partition to."""
    return {p: {f"spu-{s}": read_replica_log(cluster.data_dir(s), topic, p)
                for s in (cluster.spu_ids if replicas is None else replicas[p])}
            for p in range(partitions)}
