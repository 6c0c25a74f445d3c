"""Processors (issue 17): records/s through a request-reply identity processor, and input-to-output
latency p50/p99 at a fixed input rate with count-1 windows; each next to a peer in the same run:
a plain pipe (a consumer feeding an idempotent producer, at least once, no window bookkeeping).

Starts a local 1-SPU cluster (``fluvial cluster start --no-tls``, OS-chosen ports, fsync before
every acknowledgement) in a temporary FLUVIAL_HOME. The processor runs as ``fluvial run
processor`` in its own process, as a user runs it.

* throughput: ``--records`` values of ``--value-bytes`` are loaded first; the identity processor
  (``--window-count`` records per window) then drains them; records/s is counted from its first
  output to its last (the runtime's start-up excluded).
* latency: ``--latency-records`` records at ``--rate`` per second, each carrying its send time;
  count-1 windows; a consumer of the output takes now - send time.

* ``--against DIR``: the processor rows again with the runtime of another source tree (DIR,
  e.g. an export of the previous commit: ``git archive HEAD~1 | tar -x -C /tmp/before``) in the
  same cluster, rounds interleaved (``--rounds``), so the machine's noise hits both alike.

Usage: python bench/processors.py [--records 20000] [--window-count 1000] [--rate 1000]
       [--latency-records 3000] [--against DIR --rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

import fluvial

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from harness.processes import ProcessCluster, fluvial_command, temporary_home

from fluvial import Offset
from fluvial.client.consumer import fetch_partition_offsets
from fluvial.processor.spec import processor_spec
from fluvial.processor.supervisor import stop_process

FUNCTIONS = "def identity(value):\n    return value\n"


async def hw(fl, topic: str) -> int:
    return (await fetch_partition_offsets(fl, topic, 0)).last_stable_offset


async def load(fl, topic: str, n: int, size: int) -> None:
    async with fl.producer(topic, batch_size=256 * 1024) as p:
        value = b"x" * size
        for i in range(0, n, 1000):
            await p.send_many([value] * min(1000, n - i))
        await p.flush()


async def drain_rate(fl, topic: str, n: int) -> float:
    """records/s from the first output record to the n-th."""
    while (first := await hw(fl, topic)) == 0:
        await trio.sleep(0.005)
    t0 = time.perf_counter()
    while (last := await hw(fl, topic)) < n:
        await trio.sleep(0.005)
    return (last - first) / (time.perf_counter() - t0)


async def pipe(fl, src: str, dst: str, n: int, stop: trio.Event | None = None) -> None:
    """The peer: consume src, produce each value to dst (what a hand-written service does)."""
    async with fl.producer(dst, linger=0) as p, \
            fl.consumer(src, partition=0, offset=Offset.beginning()) as c:
        k = 0
        async for rec in c:
            await p.send(rec.value)
            k += 1
            if k >= n:
                break
        await p.flush()


async def latencies(fl, src: str, dst: str, n: int, rate: float) -> list[float]:
    out: list[float] = []

    async def feed():
        async with fl.producer(src, linger=0) as p:
            start = time.perf_counter()
            for i in range(n):
                await trio.sleep_until(trio.current_time() + max(0.0, start + i / rate - time.perf_counter()))
                await p.send(b"%.9f" % time.time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        async with fl.consumer(dst, partition=0, offset=Offset.beginning()) as c:
            async for rec in c:
                out.append(time.time() - float(rec.value))
                if len(out) >= n:
                    break
    return out


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


class Runtime:
    """``fluvial run processor NAME`` in its own process."""

    def __init__(self, endpoint: str, name: str, tree: str | None = None):
        env = dict(os.environ)
        if tree:  # that tree's fluvial package first on the runtime's import path
            env["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen([*fluvial_command(), "-c", endpoint, "run", "processor", name,
                                      "--log-level", "warning"], env=env)

    def stop(self) -> None:
        stop_process(self.proc)


async def processor_rows(fl, endpoint: str, args, fn_dir: str, tag: str, tree: str | None) -> dict:
    """The processor's throughput and latency with the runtime of ``tree`` (None: this one)."""
    res = {}
    tin, tout, lin, lout = (f"{t}-{tag}" for t in ("tin", "tout", "lin", "lout"))
    for t in (tin, tout, lin, lout):
        await fl.admin.create_topic(t, 1, 1)
    await load(fl, tin, args.records, args.value_bytes)
    await fl.admin.create_processor(f"tput-{tag}", processor_spec(
        "benchfns:identity", [tin], [tout], window_count=args.window_count, path=fn_dir))
    note(f"throughput: processor ({tag})")
    rt = Runtime(endpoint, f"tput-{tag}", tree)
    try:
        res["proc_rate"] = await drain_rate(fl, tout, args.records)
    finally:
        rt.stop()
    await fl.admin.create_processor(f"lat-{tag}", processor_spec(
        "benchfns:identity", [lin], [lout], window_count=1, path=fn_dir))
    note(f"latency: processor ({tag})")
    rt = Runtime(endpoint, f"lat-{tag}", tree)
    try:
        while (await fl.admin.describe_processor(f"lat-{tag}")).status.state != "Running":
            await trio.sleep(0.05)
        res["proc_lat"] = await latencies(fl, lin, lout, args.latency_records, args.rate)
    finally:
        rt.stop()
    return res


async def run(cluster: ProcessCluster, args, fn_dir: str) -> dict:
    host, port = cluster.sc_address
    endpoint = f"{host}:{port}"
    res = {}
    async with fluvial.connect(endpoint=endpoint) as fl:
        trees = [("this", None)] + ([("against", args.against)] if args.against else [])
        for r in range(args.rounds if args.against else 1):
            for label, tree in trees:
                got = await processor_rows(fl, endpoint, args, fn_dir, f"{label}{r}", tree)
                res.setdefault(label, []).append(got)
        for t in ("pin", "pout", "qin", "qout"):
            await fl.admin.create_topic(t, 1, 1)
        note("throughput: plain pipe")
        await load(fl, "pin", args.records, args.value_bytes)
        async with trio.open_nursery() as n:
            n.start_soon(pipe, fl, "pin", "pout", args.records)
            res["pipe_rate"] = await drain_rate(fl, "pout", args.records)
        note("latency: plain pipe")
        async with trio.open_nursery() as n:
            n.start_soon(pipe, fl, "qin", "qout", args.latency_records)
            res["pipe_lat"] = await latencies(fl, "qin", "qout", args.latency_records, args.rate)
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--window-count", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--latency-records", type=int, default=3000)
    parser.add_argument("--against", default=None, help="another source tree's runtime, for the same rows")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: interleaved rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as fn_dir, temporary_home("fluvial-bench-processors-") as home:
        Path(fn_dir, "benchfns.py").write_text(FUNCTIONS)
        with ProcessCluster(home, spus=1, tls=False) as cluster:
            cluster.start()
            r = trio.run(run, cluster, args, fn_dir)
    print(f"identity, request-reply, {args.value_bytes} B, 1 SPU, fsync per ack")
    print(f"plain pipe: throughput {r['pipe_rate']:,.0f} rec/s; latency at {args.rate:,.0f} rec/s "
          f"p50 {pct(r['pipe_lat'], 0.5):.1f} ms, p99 {pct(r['pipe_lat'], 0.99):.1f} ms")
    for label in ("this", "against"):
        for i, got in enumerate(r.get(label, [])):
            name = "processor" if label == "this" else f"processor of {args.against}"
            print(f"{name} (round {i + 1}): throughput (windows of {args.window_count}) "
                  f"{got['proc_rate']:,.0f} rec/s ({got['proc_rate'] / r['pipe_rate']:.2f} of the pipe); "
                  f"latency at {args.rate:,.0f} rec/s, count-1 windows: p50 {pct(got['proc_lat'], 0.5):.1f} ms, "
                  f"p99 {pct(got['proc_lat'], 0.99):.1f} ms")
    if args.against:
        mine = sorted(g["proc_rate"] for g in r["this"])[len(r["this"]) // 2]
        theirs = sorted(g["proc_rate"] for g in r["against"])[len(r["against"]) // 2]
        p50 = [sorted(pct(g["proc_lat"], 0.5) for g in r[k])[len(r[k]) // 2] for k in ("this", "against")]
        print(f"ratio this / against (median round): throughput {mine / theirs:.2f}, "
              f"latency p50 {p50[0] / p50[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
