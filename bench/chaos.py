"""Soak test F1 (issue core-4): kill -9 the partition leader under ReadCommitted produce, N rounds.

Starts its own 3-SPU cluster in a temporary FLUVIAL_HOME (``fluvial cluster start``, OS-chosen
ports, 2 s heartbeat timeout and replica lag time), creates an RF=3 topic and runs the workload of
``harness.workload`` (writers retrying unacknowledged sends, a ReadCommitted consumer). Each
round lets some batches through, SIGKILLs the leader, times the failover (kill -> first
acknowledgement by another SPU), restarts the killed SPU and waits until it has caught up. At the
end it heals the cluster, reads every replica from disk and runs ``check_history``.

With ``--power-loss MODE`` (issue safe-1) the cluster runs in power-loss mode: every killed
leader also loses what it had not fsynced (``cut``), keeps a torn prefix of it (``torn``) or
keeps later pages without earlier ones (``reorder``); see ``harness.processes``. The cuts
are seeded (``--seed``).

Prints: rounds, acknowledged, lost, divergent offsets, duplicates, failover time p50/p99.
Exit status 1 if any rule of the promise was broken (the cluster home is then kept).
The goal: 50 rounds, 0 lost, 0 divergent, in every mode.

Usage: python bench/chaos.py [--rounds 50] [--power-loss cut|torn|reorder] [--seed 0]
                             [--partitions 1] [--batch-records 5] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from harness.client import wait_leader
from harness.processes import POWER_LOSS_MODES, ProcessCluster
from harness.scenarios import heal_and_collect, kill_leader_round
from harness.stats import percentile
from harness.workload import WorkloadConfig, open_workload

TOPIC = "chaos"


async def soak(cluster: ProcessCluster, args) -> int:
    admin = cluster.admin()
    await admin.create_topic(TOPIC, partitions=args.partitions, replication=3)
    for p in range(args.partitions):
        await wait_leader(admin, TOPIC, p, 60)
    config = WorkloadConfig(TOPIC, partitions=args.partitions, writers_per_partition=args.writers,
                            batch_records=args.batch_records, value_bytes=args.value_bytes,
                            produce_timeout_ms=args.produce_timeout_ms)
    failovers: list[float] = []
    t0 = time.monotonic()
    async with open_workload(admin, config) as w:
        for i in range(args.rounds):
            partition = i % args.partitions
            stats = await kill_leader_round(cluster, admin, w, partition,
                                            acks_before=args.acks_per_round,
                                            acks_after=args.acks_per_round, timeout=120)
            failovers.append(stats.failover_seconds)
            print(f"round {i + 1}/{args.rounds}: killed spu {stats.killed} (partition {partition}), "
                  f"failover {stats.failover_seconds * 1000:.0f} ms, acknowledged "
                  f"{len(w.history.acked)}", flush=True)
        await w.stop()
    result = await heal_and_collect(cluster, admin, w, timeout=120)
    elapsed = time.monotonic() - t0
    print()
    mode = f"power loss ({args.power_loss}, seed {args.seed})" if args.power_loss else "kill -9"
    print(f"mode:                 {mode}")
    print(f"rounds:               {args.rounds}")
    print(f"acknowledged:         {result.acknowledged} records "
          f"({result.attempted} sent, {elapsed:.0f} s)")
    print(f"lost:                 {len(result.lost)}")
    print(f"divergent offsets:    {len(result.inconsistent_offsets)}")
    print(f"duplicates:           {result.duplicates}")
    print(f"failover time:        p50 {percentile(failovers, 50) * 1000:.0f} ms, "
          f"p99 {percentile(failovers, 99) * 1000:.0f} ms, max {max(failovers) * 1000:.0f} ms")
    print(f"send errors:          {dict(w.history.errors)}")
    if cluster.power_loss:
        print(f"power cuts:           {len(cluster.power_cuts)} (mode, seed of each in order: "
              f"{[(mode, seed) for _, mode, seed in cluster.power_cuts][:5]}...)")
    if not result.ok:
        print("\nPROMISE BROKEN:\n" + result.summary(limit=20), file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=1,
                        help="the rounds kill the leader of each partition in turn")
    parser.add_argument("--writers", type=int, default=2, help="writers per partition")
    parser.add_argument("--batch-records", type=int, default=5)
    parser.add_argument("--value-bytes", type=int, default=0)
    parser.add_argument("--acks-per-round", type=int, default=20,
                        help="acknowledged batches before and after each kill")
    parser.add_argument("--produce-timeout-ms", type=int, default=3000)
    parser.add_argument("--power-loss", choices=POWER_LOSS_MODES, default=None,
                        help="killed SPUs also lose their unsynced data, this way")
    parser.add_argument("--seed", type=int, default=0, help="seeds the torn and reordered pages")
    parser.add_argument("--keep", action="store_true", help="keep the cluster home afterwards")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="fluvial-chaos-bench-"))
    failed = True
    cluster = ProcessCluster(home, spus=3, heartbeat_timeout=2.0, replica_lag_time_max=2.0,
                             power_loss=args.power_loss is not None,
                             power_loss_mode=args.power_loss or "cut", seed=args.seed)
    try:
        cluster.start()
        failed = trio.run(soak, cluster, args) != 0
    finally:
        cluster.close()
        if failed or args.keep:
            print(f"cluster home kept: {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
