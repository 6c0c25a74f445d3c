"""Failure scenarios shared by the chaos tests and the bench: a leader-kill round, heal and check."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from harness.checker import CheckResult, check_history
from harness.client import ScAdmin, wait_leader, wait_partitions_in_sync, wait_replica_caught_up
from harness.disklogs import read_cluster_logs
from harness.processes import ProcessCluster
from harness.workload import Workload

@dataclass
class RoundStats:
    killed: int
    failover_seconds: float


async def kill_leader_round(cluster: ProcessCluster, admin: ScAdmin, workload: Workload,
                            partition: int = 0, *, acks_before: int = 20, acks_after: int = 20,
                            replication: int = 3, timeout: float = 60.0) -> RoundStats:
    """One F1 round: let ``acks_before`` batches through, SIGKILL the partition's leader, measure
    the failover (kill -> first acknowledgement by another SPU), let ``acks_after`` through,
    restart the killed SPU and wait until it has caught up with what was acknowledged."""
    topic = workload.config.topic
    await workload.wait_acks(acks_before, timeout, partition)
    leader = await wait_leader(admin, topic, partition, timeout)
    killed_at = await trio.to_thread.run_sync(cluster.kill, cluster.spu_name(leader))
    failover = await workload.wait_failover(partition, killed_at, leader, timeout)
    await workload.wait_acks(acks_after, timeout, partition)
    await trio.to_thread.run_sync(cluster.resume)
    target = 1 + max((o for p, o in workload.history.acked.values() if p == partition), default=-1)
    await wait_replica_caught_up(admin, topic, partition, leader, target, timeout)
    return RoundStats(leader, failover)


async def heal_and_collect(cluster: ProcessCluster, admin: ScAdmin, workload: Workload, *,
                           replication: int = 3, timeout: float = 60.0) -> CheckResult:
    """After the workload stopped: restart what is down, wait until every replica is in sync,
    read everything back at ReadCommitted, shut the cluster down, read every replica from disk and
    check the history."""
    cfg = workload.config
    await trio.to_thread.run_sync(cluster.resume)
    synced = await wait_partitions_in_sync(admin, cfg.topic, cfg.partitions, replication, timeout)
    reference = {}
    for p in range(cfg.partitions):
        await workload.read_all(p)
        reference[p] = "read-back"
    await trio.to_thread.run_sync(cluster.shutdown)
    assigned = {p: list(m.spec.replicas) for p, m in synced.items()}
    logs = await trio.to_thread.run_sync(read_cluster_logs, cluster, cfg.topic, cfg.partitions,
                                         assigned)
    for p in range(cfg.partitions):
        logs[p]["read-back"] = workload.read_back[p]
        leader = f"spu-{synced[p].spec.leader}"
        reference[p] = leader if leader in logs[p] else "read-back"
    return check_history(workload.history, logs, reference)
