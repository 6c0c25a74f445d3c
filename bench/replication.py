"""Replication cost and failover time (issue core-4): produce records/s at RF=3 vs RF=1.

Starts its own 3-SPU cluster in a temporary FLUVIAL_HOME (``fluvial cluster start``, OS-chosen
ports, fsync before every acknowledgement), creates a 1-partition topic at RF=1 and one at RF=3,
and measures:

* produce throughput of several concurrent writers (one request in flight each, pre-encoded
  batches, so the client costs little) at ReadCommitted (acks once the HW covers the batch) and
  ReadUncommitted (acks once the leader has it on disk), RF=3 against RF=1, interleaved and
  repeated; the median run counts. Goal: RF=3 at >= 50 % of RF=1;
* failover time: SIGKILL the RF=3 leader under ReadCommitted produce and time kill -> first
  acknowledgement by another SPU (``harness.scenarios.kill_leader_round``), several rounds.

Usage: python bench/replication.py [--seconds 5] [--writers 32] [--batch-records 100]
       [--value-bytes 100] [--repeats 3] [--failovers 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import trio

from fluvial.protocol import spu_api as api
from fluvial.protocol.record import encode_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from harness.client import ScAdmin, wait_leader, wait_partitions_in_sync
from harness.processes import ProcessCluster, temporary_home
from harness.scenarios import kill_leader_round
from harness.stats import percentile
from harness.workload import WorkloadConfig, open_workload


async def produce_rate(admin: ScAdmin, topic: str, isolation: api.Isolation, args) -> tuple[float, float]:
    """(records/s, mean seconds per request) over ``args.seconds`` after a 1 s warm-up."""
    leader = await wait_leader(admin, topic, 0, 60)
    host, port = (await admin.spu_endpoints())[leader]
    batch = encode_batch([b"v" * args.value_bytes] * args.batch_records)
    req = api.ProduceRequest(None, isolation, 10_000, [api.TopicProduceData(
        topic, [api.PartitionProduceData(0, batch)])], [])
    counting = False
    acked = 0
    latencies: list[float] = []

    async def writer():
        nonlocal acked
        async with admin.connect(host, port, "bench-replication") as conn:
            while True:
                t = time.perf_counter()
                resp = await conn.call(req, timeout=30)
                error = resp.responses[0].partitions[0].error_code
                if not error.ok:
                    raise RuntimeError(f"produce to {topic} failed: {error.message}")
                if counting:
                    acked += args.batch_records
                    latencies.append(time.perf_counter() - t)

    async with trio.open_nursery() as nursery:
        for _ in range(args.writers):
            nursery.start_soon(writer)
        await trio.sleep(1.0)  # warm-up: connections open, caches hot
        counting = True
        t0 = time.perf_counter()
        await trio.sleep(args.seconds)  # the measurement window
        counting = False
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return acked / elapsed, statistics.fmean(latencies) if latencies else float("nan")


async def run(cluster: ProcessCluster, args) -> None:
    admin = cluster.admin()
    await admin.create_topic("rf1", partitions=1, replication=1)
    await admin.create_topic("rf3", partitions=1, replication=3)
    await wait_partitions_in_sync(admin, "rf3", 1, 3, 60)
    rates: dict[tuple[str, str], list[tuple[float, float]]] = {}
    isolations = [("ReadCommitted", api.Isolation.ReadCommitted),
                  ("ReadUncommitted", api.Isolation.ReadUncommitted)]
    record_bytes = args.value_bytes
    print(f"{args.writers} writers, {args.batch_records} records of {record_bytes} bytes per "
          f"request, {args.seconds:.0f} s per run, {args.repeats} runs each (median shown)\n")
    for _ in range(args.repeats):
        for iname, isolation in isolations:
            for topic in ("rf1", "rf3"):
                rate = await produce_rate(admin, topic, isolation, args)
                rates.setdefault((iname, topic), []).append(rate)
                print(f"  {iname:15} {topic}: {rate[0]:9.0f} records/s "
                      f"({rate[1] * 1000:.1f} ms per request)", flush=True)
    print()
    print(f"{'isolation':15} {'RF=1 rec/s':>11} {'RF=3 rec/s':>11} {'RF=3/RF=1':>10} "
          f"{'RF=1 ms':>8} {'RF=3 ms':>8}")
    for iname, _ in isolations:
        r1 = statistics.median(r for r, _ in rates[(iname, "rf1")])
        r3 = statistics.median(r for r, _ in rates[(iname, "rf3")])
        l1 = statistics.median(lat for _, lat in rates[(iname, "rf1")])
        l3 = statistics.median(lat for _, lat in rates[(iname, "rf3")])
        print(f"{iname:15} {r1:11.0f} {r3:11.0f} {r3 / r1:9.0%} {l1 * 1000:8.1f} {l3 * 1000:8.1f}")

    if args.failovers:
        failovers = []
        async with open_workload(admin, WorkloadConfig("rf3", consumers=False)) as w:
            for _ in range(args.failovers):
                stats = await kill_leader_round(cluster, admin, w, 0, acks_before=10,
                                                acks_after=10, timeout=120)
                failovers.append(stats.failover_seconds)
            await w.stop()
        print(f"\nfailover (kill -9 leader -> first ack by another SPU), {len(failovers)} rounds: "
              f"p50 {percentile(failovers, 50) * 1000:.0f} ms, "
              f"p99 {percentile(failovers, 99) * 1000:.0f} ms, max {max(failovers) * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per run")
    parser.add_argument("--writers", type=int, default=32, help="concurrent requests in flight")
    parser.add_argument("--batch-records", type=int, default=100)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=5, help="leader kills (0: skip)")
    args = parser.parse_args()
    with temporary_home("fluvial-bench-replication-") as home:
        with ProcessCluster(home, spus=3, heartbeat_timeout=2.0, replica_lag_time_max=2.0) as cluster:
            cluster.start()
            trio.run(run, cluster, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
