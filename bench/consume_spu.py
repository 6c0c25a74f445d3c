"""What serving a consumer costs the SPU: this tree's servers against another tree's, one run.

Starts two one-SPU plaintext clusters side by side (``fluvial cluster start --spus 1 --no-tls``),
one running this tree's fluvial and one the tree given with ``--against`` (a directory holding a
``fluvial`` package, e.g. a ``git worktree`` of main), produces ``--large`` records of 1 KiB to
each once, then consumes them back from the first offset (``compare.py``'s consume workload,
this tree's client for both) ``--rounds`` times, alternating the clusters, with Redis-always's
consume of the same records in each round as the peer compare.py reports against. Reported
per cluster: MB/s of record values, the CPU time the SPU + SC spent per MB (steadier than the
wall clock on a shared machine) and the bench process's (the client's).

Usage: python bench/consume_spu.py --against DIR [--rounds 4] [--large 200000] [--no-redis]
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


async def run(clusters: dict, redis, args) -> dict[str, dict[str, list[float]]]:
    import fluvial

    out: dict[str, dict[str, list[float]]] = {name: {} for name in clusters}
    value = os.urandom(systems.LARGE_BYTES)
    mb = args.large * systems.LARGE_BYTES / 1e6
    for name, cluster in clusters.items():
        async with fluvial.connect(**cluster.connect_args) as fl:
            await fl.admin.create_topic("consume", partitions=1, replication=1)
            await systems.fluvial_wait_ready(fl, "consume", 1)
            await systems.fluvial_produce(fl, "consume", args.large, value)
    if redis is not None:
        r = redis.client()
        systems.redis_produce(r, "consume", args.large, value)
        out["redis always"] = {}
    for k in range(args.rounds):
        order = list(clusters.items())
        if k % 2:
            order.reverse()
        for name, cluster in order:
            async with fluvial.connect(**cluster.connect_args) as fl:
                gc.collect()
                client0, server0 = time.process_time(), cpu_seconds(cluster.pids)
                seconds = await systems.fluvial_consume(fl, "consume", args.large, len(value))
                client = time.process_time() - client0
                server = cpu_seconds(cluster.pids) - server0
            res = out[name]
            res.setdefault("MB/s", []).append(mb / seconds)
            res.setdefault("SPU+SC CPU us/MB", []).append(server / mb * 1e6)
            res.setdefault("client CPU us/MB", []).append(client / mb * 1e6)
        if redis is not None:
            gc.collect()
            seconds = systems.redis_consume(r, "consume", args.large, len(value))
            out["redis always"].setdefault("MB/s", []).append(mb / seconds)
        print(f"round {k + 1}/{args.rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="a directory holding another fluvial package")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--large", type=int, default=200_000, help="records of 1 KiB")
    ap.add_argument("--no-redis", action="store_true")
    args = ap.parse_args()
    here = str(Path(__file__).resolve().parent.parent)
    against = str(Path(args.against).resolve())
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="fluvial-consume-spu-") as tmp:
        clusters: dict = {}
        redis = None
        saved = os.environ.get("PYTHONPATH")
        try:
            for name, tree in (("this tree", here), ("--against", against)):
                os.environ["PYTHONPATH"] = tree  # what the cluster's processes import
                clusters[name] = systems.FluvialCluster(Path(tmp) / name.strip("-").replace(" ", "-"),
                                                        spus=1)
            if saved is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = saved
            if not args.no_redis:
                redis = systems.RedisServer(Path(tmp) / "redis", "always")
            results = trio.run(run, clusters, redis, args)
        finally:
            for cluster in clusters.values():
                cluster.stop()
            if redis is not None:
                redis.stop()
    print(f"\nmedians (min-max) of {args.rounds} rounds, {args.large:,} records of 1 KiB; "
          f"load average at end: {os.getloadavg()}\n")
    metrics = ["MB/s", "SPU+SC CPU us/MB", "client CPU us/MB"]
    print("| cluster | " + " | ".join(metrics) + " |")
    print("| --- |" + " ---: |" * len(metrics))
    for name, res in results.items():
        cells = []
        for m in metrics:
            v = res.get(m)
            cells.append(f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})" if v else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
