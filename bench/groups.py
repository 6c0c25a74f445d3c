"""Consumer groups (issue 21): rebalance time on join and on kill -9; a group of 3 vs 1 consumer.

Starts its own 1-SPU cluster in a temporary FLUVIAL_HOME (``fluvial cluster start --no-tls``,
OS-chosen ports), a six-partition topic, and measures:

* rebalance on join: 3 members run (each its own process); a 4th member (in this process)
  joins; the clock runs from its JoinGroup until the coordinator shows 4 members owning all six
  partitions, balanced (``describe``): the revocations, commits and grants of a cooperative
  rebalance. The 4th then leaves (closes) and the next round starts. p50/p99 over rounds;
* rebalance on kill -9: a member process is SIGKILLed; the clock runs until the others own all
  six partitions. It is dominated by the session timeout (``--session``): nothing tells the
  coordinator a killed member is gone but its silence;
* consume throughput: ``--records`` records of ``--value-bytes`` on the six partitions, read
  to the end by a group of one process, then by a group of three processes (fresh groups,
  from the beginning); records/s and the ratio. With 2 cores the three members share them.

Usage: python bench/groups.py [--rounds 10] [--kills 5] [--session 2] [--records 300000]
       [--value-bytes 100]
       python bench/groups.py --member ENDPOINT TOPIC GROUP SESSION   (one member; internal)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

import fluvial
from fluvial.client.group import describe_groups

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from harness.processes import ProcessCluster, temporary_home
from harness.stats import percentile

PARTITIONS = 6


async def member(endpoint: str, topic: str, group: str, session: float) -> None:
    """One member: reads and prints, per list of records, its size (auto commit)."""
    async with fluvial.connect(endpoint=endpoint) as fl:
        async with fl.consumer(topic, group=group, session_timeout=session,
                               heartbeat_interval=min(1.0, session / 4), start="beginning") as c:
            out = sys.stdout
            while True:
                records = await c.receive_many()
                out.write(f"{len(records)}\n")
                out.flush()


def spawn(endpoint: str, topic: str, group: str, session: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--member", endpoint, topic, group, str(session)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def converged(fl, group: str, members: int, timeout: float = 60.0) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                [info] = await describe_groups(fl, group)
                owned = sorted(p for m in info.members for p in m.assigned)
                sizes = [len(m.assigned) for m in info.members]
                if (len(info.members) == members and owned == list(range(PARTITIONS))
                        and max(sizes) - min(sizes) <= 1):
                    return
            except fluvial.FluvialError:
                pass
            await trio.sleep(0.005)


async def rebalances(fl, endpoint: str, topic: str, args) -> None:
    group = "bench-rebalance"
    base = [spawn(endpoint, topic, group, args.session) for _ in range(3)]
    try:
        await converged(fl, group, 3)
        joins = []
        for _ in range(args.rounds):
            extra = fl.consumer(topic, group=group, session_timeout=args.session,
                                heartbeat_interval=min(1.0, args.session / 4))
            t = time.perf_counter()
            await extra._ensure_started()
            await converged(fl, group, 4)
            joins.append(time.perf_counter() - t)
            await extra.aclose()
            await converged(fl, group, 3)
        print(f"rebalance on join (join -> 4 members own 6 partitions), {len(joins)} rounds: "
              f"p50 {percentile(joins, 50) * 1000:.0f} ms, p99 {percentile(joins, 99) * 1000:.0f} ms")
        kills = []
        for _ in range(args.kills):
            victim = spawn(endpoint, topic, group, args.session)
            await converged(fl, group, 4)
            t = time.perf_counter()
            victim.kill()
            victim.wait()
            await converged(fl, group, 3)
            kills.append(time.perf_counter() - t)
        print(f"rebalance on kill -9 (kill -> the others own its partitions), session {args.session:g} s, "
              f"{len(kills)} rounds: p50 {percentile(kills, 50) * 1000:.0f} ms, "
              f"p99 {percentile(kills, 99) * 1000:.0f} ms")
    finally:
        await trio.to_thread.run_sync(stop, base)


def _count(procs: list[subprocess.Popen], total: int) -> float:
    """Read the members' counts until they add up to ``total``; returns the time it took."""
    import selectors

    sel = selectors.DefaultSelector()
    for p in procs:
        sel.register(p.stdout, selectors.EVENT_READ)
    seen = 0
    start = None
    bufs = {p.stdout: b"" for p in procs}
    while seen < total:
        for key, _ in sel.select(timeout=60):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                raise RuntimeError("a member exited")
            if start is None:
                start = time.perf_counter()
            data = bufs[key.fileobj] + chunk
            *lines, bufs[key.fileobj] = data.split(b"\n")
            seen += sum(int(x) for x in lines)
    return time.perf_counter() - (start or time.perf_counter())


async def throughput(fl, endpoint: str, topic: str, args) -> None:
    async with fl.producer(topic, batch_size=64 * 1024) as p:
        value = b"x" * args.value_bytes
        for i in range(0, args.records, 1000):
            await p.send_many([(str(j).encode(), value) for j in range(i, min(i + 1000, args.records))])
    rates = {}
    for n in (1, 3):
        procs = [spawn(endpoint, topic, f"bench-tp-{n}", args.session) for _ in range(n)]
        try:
            seconds = await trio.to_thread.run_sync(_count, procs, args.records)
        finally:
            await trio.to_thread.run_sync(stop, procs)
        rates[n] = args.records / seconds
        print(f"group of {n}: {args.records} records of {args.value_bytes} B in {seconds:.2f} s: "
              f"{rates[n]:,.0f} records/s", flush=True)
    print(f"group of 3 / group of 1: {rates[3] / rates[1]:.2f}x")


async def run(cluster: ProcessCluster, args) -> None:
    host, port = cluster.sc_address
    endpoint = f"{host}:{port}"
    async with fluvial.connect(endpoint=endpoint) as fl:
        await fl.admin.create_topic("bench-groups", PARTITIONS, 1)
        await fl.admin.create_topic("bench-groups-tp", PARTITIONS, 1)
        await rebalances(fl, endpoint, "bench-groups", args)
        await throughput(fl, endpoint, "bench-groups-tp", args)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--member":
        endpoint, topic, group, session = sys.argv[2:6]
        try:
            trio.run(member, endpoint, topic, group, float(session))
        except KeyboardInterrupt:
            pass
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="joins measured")
    parser.add_argument("--kills", type=int, default=5, help="kill -9 rounds measured")
    parser.add_argument("--session", type=float, default=2.0, help="members' session timeout, s")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    with temporary_home("fluvial-bench-groups-") as home:
        with ProcessCluster(home, spus=1, tls=False) as cluster:
            cluster.start()
            trio.run(run, cluster, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
