"""Leadership take-over on one SPU (issue 19): how long the SPU's event loop stalls, and how long
applying the push takes, when N partitions move to it at once.

In process: one ``SpuContext`` (no SC, no network) in a temporary data directory; a push making
it the leader of N new partitions at epoch 1, then one moving all N to epoch 2 (the failover
case: every existing replica flushes its log and makes its new epoch durable before it leads).
A ticker task measures the longest gap between its 5 ms sleeps: what the event loop could not do
meanwhile (answer requests, heartbeat the SC).

With ``--peer PYTHON`` (the interpreter of another install, e.g. an older commit's virtualenv)
the same measurement runs there too, in the same run, and the ratios are printed.

Usage: python bench/take_over.py [--partitions 2000] [--peer PYTHON]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from fluvial.protocol import internal_api as ia
from fluvial.spu.context import SpuContext
from fluvial.spu.server import SpuConfig

SPU = 5001


def push(n: int, epoch: int) -> ia.WatchReplicasResponse:
    return ia.WatchReplicasResponse(epoch, [
        ia.ReplicaAssignment("t", p, SPU, epoch, [SPU], [SPU], ia.ReplicaSettings(), 1, 0)
        for p in range(n)], [], -1)


async def measure(n: int, data_dir: Path) -> dict[str, float]:
    stall = 0.0

    async def ticker():
        nonlocal stall
        while True:
            t = time.monotonic()
            await trio.sleep(0.005)
            stall = max(stall, time.monotonic() - t - 0.005)

    out = {}
    async with trio.open_nursery() as nursery:
        ctx = SpuContext(SpuConfig(SPU, data_dir), nursery)
        nursery.start_soon(ticker)
        for name, epoch in (("create", 1), ("failover", 2)):
            stall = 0.0
            t0 = time.monotonic()
            await ctx.apply_push(push(n, epoch))
            while not all(r.is_leader and r.leader_epoch == epoch for r in ctx.replicas.values()):
                await trio.sleep(0.01)
            out[f"{name}_s"] = time.monotonic() - t0
            await trio.sleep(0.05)  # the ticker's wake-up after a stall records it
            out[f"{name}_stall_s"] = stall
        ctx.close()
        nursery.cancel_scope.cancel()
    return out


def run_here(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="fluvial-take-over-") as d:
        return trio.run(measure, n, Path(d))


def row(label: str, m: dict[str, float]) -> str:
    return (f"| {label} | {m['create_s']:.2f} s | {m['create_stall_s'] * 1000:.0f} ms "
            f"| {m['failover_s']:.2f} s | {m['failover_stall_s'] * 1000:.0f} ms |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--peer", help="another install's python: measured too, in the same run")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the peer's output
    args = parser.parse_args()
    if args.json:
        print(json.dumps(run_here(args.partitions)))
        return 0
    print(f"{args.partitions} leaderships moved to one SPU at once")
    print("| install | create: apply | longest loop stall | failover: apply | longest loop stall |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    peer = None
    if args.peer:
        proc = subprocess.run([args.peer, __file__, "--json", "--partitions", str(args.partitions)],
                              capture_output=True, text=True, check=True)
        peer = json.loads(proc.stdout.strip().splitlines()[-1])
        print(row("peer", peer), flush=True)
    here = run_here(args.partitions)
    print(row("this tree", here), flush=True)
    if peer:
        print("stall ratio (peer / this tree): create "
              f"{peer['create_stall_s'] / max(here['create_stall_s'], 1e-3):.1f}x, failover "
              f"{peer['failover_stall_s'] / max(here['failover_stall_s'], 1e-3):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
