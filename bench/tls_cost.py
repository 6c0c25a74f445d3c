"""What TLS costs fluvial, in CPU time as well as wall time: plaintext vs TLS, one run.

Starts two one-SPU clusters side by side (``fluvial cluster start --spus 1``, one ``--no-tls``, one
with TLS as a new user gets it: mutual TLS, the ``local`` profile), and alternates the same
workloads on both, ``--rounds`` times: produce 1 KiB and 100 B records (``read_committed``,
64 KiB batches), consume the 1 KiB records back, and send -> consume latency at ``--rate``
records/s (compare.py's workloads). Besides records/s it reports the CPU time the bench process
(the client) and the SC + SPU processes spent per MB of record values: on a shared, noisy machine
the wall-clock ratio swings from run to run, the CPU cost per MB much less.

The clusters run the fluvial found on PYTHONPATH, as the bench process does; to compare two trees
run this once per tree (``PYTHONPATH=OLD_TREE python bench/tls_cost.py``).

Usage: python bench/tls_cost.py [--rounds 3] [--large 50000] [--small 200000]
       [--latency-seconds 3] [--rate 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import systems  # noqa: E402  (the workloads and the cluster runner)
from systems import cpu_seconds  # noqa: E402


async def measured(cluster, megabytes: float, work) -> dict[str, float]:
    gc.collect()
    client0, server0 = time.process_time(), cpu_seconds(cluster.pids)
    seconds = await work()
    client, server = time.process_time() - client0, cpu_seconds(cluster.pids) - server0
    return {"MB/s": megabytes / seconds, "client us/MB": client / megabytes * 1e6,
            "server us/MB": server / megabytes * 1e6}


async def rounds(clusters: dict, args) -> dict[str, dict[str, list[float]]]:
    import fluvial

    out: dict[str, dict[str, list[float]]] = {name: {} for name in clusters}
    large, small = os.urandom(systems.LARGE_BYTES), os.urandom(systems.SMALL_BYTES)
    large_mb = args.large * systems.LARGE_BYTES / 1e6
    small_mb = args.small * systems.SMALL_BYTES / 1e6
    for r in range(args.rounds):
        for name, cluster in clusters.items():
            res = out[name]
            async with fluvial.connect(**cluster.connect_args) as fl:
                for topic in (f"large-{r}", f"small-{r}", f"lat-{r}"):
                    await fl.admin.create_topic(topic, partitions=1, replication=1)
                    await systems.fluvial_wait_ready(fl, topic, 1)
                cases = {
                    "produce 1 KiB": (large_mb, lambda: systems.fluvial_produce(
                        fl, f"large-{r}", args.large, large)),
                    "consume 1 KiB": (large_mb, lambda: systems.fluvial_consume(
                        fl, f"large-{r}", args.large, len(large))),
                    "produce 100 B": (small_mb, lambda: systems.fluvial_produce(
                        fl, f"small-{r}", args.small, small)),
                }
                for case, (mb, work) in cases.items():
                    for metric, value in (await measured(cluster, mb, work)).items():
                        res.setdefault(f"{case} {metric}", []).append(value)
                gc.collect()
                lat = await systems.fluvial_latency(fl, f"lat-{r}", args.latency_seconds,
                                                    args.rate)
                res.setdefault("latency p50 us", []).append(lat["lat-p50"])
                res.setdefault("latency p99 us", []).append(lat["lat-p99"])
                for topic in (f"large-{r}", f"small-{r}", f"lat-{r}"):
                    await fl.admin.delete_topic(topic)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large", type=int, default=50_000, help="records of 1 KiB")
    ap.add_argument("--small", type=int, default=200_000, help="records of 100 B")
    ap.add_argument("--latency-seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluvial-tls-cost-") as tmp:
        clusters: dict = {}
        try:
            clusters["plaintext"] = systems.FluvialCluster(Path(tmp) / "plain", spus=1)
            clusters["TLS"] = systems.FluvialCluster(Path(tmp) / "tls", spus=1, tls=True)
            results = trio.run(rounds, clusters, args)
        finally:
            for cluster in clusters.values():
                cluster.stop()
    import fluvial

    print(f"\nfluvial from {Path(fluvial.__file__).parent.parent}; medians of {args.rounds} "
          f"rounds; TLS / plaintext in brackets (CPU: lower is cheaper)\n")
    print("| measure | plaintext | TLS | TLS / plaintext |")
    print("| --- | ---: | ---: | ---: |")
    for metric in results["plaintext"]:
        p = statistics.median(results["plaintext"][metric])
        t = statistics.median(results["TLS"][metric])
        ratio = f"{t / p:.2f}" if p else "n/a"  # a tiny run can measure no CPU time at all
        print(f"| {metric} | {p:,.0f} | {t:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
