"""The idempotent producer's cost (issue 16): produce 100 B records with idempotence on vs off,
in one run, against the same cluster.

Starts a local 1-SPU cluster (``fluvial cluster start --no-tls``, OS-chosen ports, fsync before
every acknowledgement) in a temporary FLUVIAL_HOME, and for each repetition produces ``--records``
records of ``--value-bytes`` to a fresh topic, once with ``idempotent=False`` and once with
``idempotent=True`` (the order alternates per repetition so that drifting load on a shared
machine affects both alike). Two shapes: ``send_many`` in chunks of 1,000 (throughput; big
batches), and one ``await (await send())`` per record (a request per record: the per-batch cost
shows most). The best run of each counts; the ratio on/off is printed. Goal: within 5 %.

Usage: python bench/idempotence.py [--records 200000] [--single 3000] [--value-bytes 100]
       [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio

import fluvial

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from harness.processes import ProcessCluster, temporary_home

CHUNK = 1000
GOAL = 0.95


async def produce_bulk(fl, topic: str, n: int, size: int, idempotent: bool) -> float:
    value = b"x" * size
    async with fl.producer(topic, isolation="read_committed", batch_size=256 * 1024,
                           idempotent=idempotent) as p:
        start = time.perf_counter()
        chunk = [value] * CHUNK
        for i in range(0, n, CHUNK):
            await p.send_many(chunk if n - i >= CHUNK else chunk[:n - i])
        await p.flush()
        elapsed = time.perf_counter() - start
        assert p.idempotent == idempotent
    return n / elapsed


async def produce_single(fl, topic: str, n: int, size: int, idempotent: bool) -> float:
    value = b"x" * size
    async with fl.producer(topic, isolation="read_committed", idempotent=idempotent) as p:
        start = time.perf_counter()
        for _ in range(n):
            await (await p.send(value))
        elapsed = time.perf_counter() - start
    return n / elapsed


async def run(cluster: ProcessCluster, args) -> dict:
    host, port = cluster.sc_address
    best: dict[tuple[str, bool], float] = {}
    async with fluvial.connect(endpoint=f"{host}:{port}") as fl:
        k = 0
        for rep in range(args.repeat):
            for idem in ((False, True) if rep % 2 == 0 else (True, False)):
                for shape, fn, n in (("bulk", produce_bulk, args.records),
                                     ("single", produce_single, args.single)):
                    k += 1
                    topic = f"idem-{k}"
                    await fl.admin.create_topic(topic, 1, 1)
                    rate = await fn(fl, topic, n, args.value_bytes, idem)
                    best[shape, idem] = max(best.get((shape, idem), 0.0), rate)
                    await fl.admin.delete_topic(topic)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with temporary_home("fluvial-bench-idempotence-") as home:
        with ProcessCluster(home, spus=1, tls=False) as cluster:
            cluster.start()
            best = trio.run(run, cluster, args)
    print(f"produce {args.value_bytes} B, read_committed, 1 SPU, best of {args.repeat}")
    print(f"{'shape':8} {'off rec/s':>12} {'on rec/s':>12} {'on/off':>8}")
    for shape in ("bulk", "single"):
        off, on = best[shape, False], best[shape, True]
        ratio = on / off
        mark = "" if ratio >= GOAL else f"  (below the {GOAL:.2f} goal)"
        print(f"{shape:8} {off:12,.0f} {on:12,.0f} {on / off:8.3f}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
