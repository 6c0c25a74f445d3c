"""Calling a processor (``fl.call``, issue 17): the round-trip latency of a one-record call and
the records/s through one large call, each next to a peer in the same run: the same exchange
by hand over plain topics (a request record produced, a responder task consuming it and
producing the answer, the caller consuming that; at least once, no bookkeeping).

Starts a local 1-SPU cluster (``fluvial cluster start --no-tls``, OS-chosen ports, fsync before
every acknowledgement) in a temporary FLUVIAL_HOME. The processor (request-reply identity)
runs as ``fluvial run processor`` in its own process, as a user runs it; the peer's responder
runs in the bench's process.

* latency: ``--calls`` calls one after another, each of one ``--value-bytes`` record: from
  entering ``fl.call`` to the end of its reply (EOS).
* throughput: one call of ``--records`` records: from entering ``fl.call`` to the reply's EOS.

Usage: python bench/calls.py [--calls 200] [--records 20000] [--value-bytes 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

import fluvial

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from harness.processes import ProcessCluster, temporary_home
from processors import FUNCTIONS, Runtime, note, pct

from fluvial import Offset
from fluvial.processor.spec import processor_spec


async def one_call(fl, values: list[bytes]) -> int:
    async with fl.call("echo") as (sink, source):
        for v in values:
            await sink.send(v)
        await sink.aclose()
        return sum([1 async for _ in source])


async def responder(fl, n: int) -> None:
    """The peer's responder: every request on ``req`` answered on ``rep``, at least once."""
    async with fl.producer("rep", linger=0) as p, \
            fl.consumer("req", partition=0, offset=Offset.beginning()) as c:
        k = 0
        async for rec in c:
            await p.send(rec.value, key=rec.key)
            k += 1
            if k >= n:
                break
        await p.flush()


async def by_hand(fl, values: list[bytes], replies) -> None:
    """The peer's caller: the values produced to ``req``, their answers read from ``rep``."""
    async with fl.producer("req", linger=0) as p:
        for v in values:
            await p.send(v)
        await p.flush()
    for _ in values:
        await replies.__anext__()


async def run(cluster: ProcessCluster, args, fn_dir: str) -> dict:
    host, port = cluster.sc_address
    endpoint = f"{host}:{port}"
    res: dict = {"call_lat": [], "hand_lat": []}
    value = b"x" * args.value_bytes
    async with fluvial.connect(endpoint=endpoint) as fl:
        for t in ("in", "out", "req", "rep"):
            await fl.admin.create_topic(t, 1, 1)
        await fl.admin.create_processor("echo", processor_spec(
            "benchfns:identity", ["in"], ["out"], window_count=1, path=fn_dir))
        rt = Runtime(endpoint, "echo")
        try:
            note("warming up: the first call waits for the runtime")
            await one_call(fl, [value])
            async with trio.open_nursery() as n, \
                    fl.consumer("rep", partition=0, offset=Offset.beginning()) as replies:
                n.start_soon(responder, fl, 2 * args.calls + args.records)
                for i in range(args.calls):  # interleaved, A/B
                    t0 = time.perf_counter()
                    assert await one_call(fl, [value]) == 1
                    res["call_lat"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await by_hand(fl, [value], replies)
                    res["hand_lat"].append(time.perf_counter() - t0)
                note("throughput: one call")
                t0 = time.perf_counter()
                assert await one_call(fl, [value] * args.records) == args.records
                res["call_rate"] = args.records / (time.perf_counter() - t0)
                note("throughput: by hand")
                t0 = time.perf_counter()
                await by_hand(fl, [value] * args.records, replies)
                res["hand_rate"] = args.records / (time.perf_counter() - t0)
                n.cancel_scope.cancel()
        finally:
            rt.stop()
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as fn_dir, temporary_home("fluvial-bench-calls-") as home:
        Path(fn_dir, "benchfns.py").write_text(FUNCTIONS)
        with ProcessCluster(home, spus=1, tls=False) as cluster:
            cluster.start()
            r = trio.run(run, cluster, args, fn_dir)
    print(f"fl.call of an identity request-reply processor, {args.value_bytes} B, 1 SPU, fsync per ack")
    for what, key in (("fl.call", "call_lat"), ("by hand", "hand_lat")):
        xs = r[key]
        print(f"one-record round trip, {what}: p50 {pct(xs, 0.5):.1f} ms, p99 {pct(xs, 0.99):.1f} ms")
    print(f"ratio of p50s {pct(r['call_lat'], 0.5) / pct(r['hand_lat'], 0.5):.2f}")
    print(f"one call of {args.records:,} records: fl.call {r['call_rate']:,.0f} rec/s, by hand "
          f"{r['hand_rate']:,.0f} rec/s, ratio {r['call_rate'] / r['hand_rate']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
