"""Many partitions (issue 19): create time, idle CPU and RSS per process, failover of every
partition after kill -9 of one SPU, and produce throughput spread over all partitions.

For each size it starts a fresh cluster in a temporary FLUVIAL_HOME, as a new user would
(``fluvial cluster start --no-tls --spus 3``, the CLI's default heartbeat timeout and replica lag
time of 10 s, OS-chosen ports), creates one topic of N partitions and then measures:

* create: from the create request until every partition is led by a live SPU and Online;
* idle CPU: each process's CPU time (``/proc/<pid>/stat``) over ``--idle-seconds`` of no traffic,
  as a percentage of one core; RSS from ``/proc/<pid>/status``;
* produce: ``--produce-seconds`` of ReadCommitted produce requests, each carrying one batch of
  10 x 100 B records for every partition its SPU leads (4 in flight per SPU), in records/s;
* failover: SIGKILL of the SPU ``spu-5001`` (RF=3 runs only), until every partition again has
  a live leader that reports it Online.

Rows: 30, 300, 1,000 and 3,000 partitions at RF=3 on 3 SPUs, and 10,000 at RF=1 on 1 SPU.

With ``--peer PATH/TO/fluvial`` (the ``fluvial`` command of another install, e.g. a virtualenv
of an older commit) every row is measured twice in the same run, the peer first, and a last
column gives this tree's produce throughput as a ratio of the peer's.

Usage: python bench/scale.py [--sizes 30,300,1000] [--with-3000] [--with-10000]
                             [--idle-seconds 10] [--produce-seconds 5] [--peer FLUVIAL]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness
from fluvial.errors import TopicNotProvisionedError  # noqa: E402
from fluvial.protocol import sc_objects as so  # noqa: E402
from fluvial.protocol import spu_api as api  # noqa: E402
from fluvial.protocol.record import encode_batch  # noqa: E402
from harness import processes  # noqa: E402
from harness.client import ScAdmin  # noqa: E402
from harness.processes import ProcessCluster  # noqa: E402
from systems import cpu_seconds  # noqa: E402  (bench/, this script's directory)

TOPIC = "scale"


@dataclass
class Row:
    partitions: int
    rf: int
    spus: int
    create_s: float = 0.0
    idle_cpu: dict[str, float] = field(default_factory=dict)  # member -> % of one core
    rss_mb: dict[str, float] = field(default_factory=dict)
    produce_rps: float = 0.0
    failover_s: float | None = None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_all_led(admin: ScAdmin, partitions: int, alive: set[int], timeout: float) -> float:
    """Seconds until every partition has a leader in ``alive`` reporting it Online."""
    start = time.monotonic()
    deadline = start + timeout
    missing = partitions
    while time.monotonic() < deadline:
        try:
            ps = await admin.partitions(TOPIC)
        except Exception:  # noqa: BLE001 - the SC may be busy: ask again
            await trio.sleep(0.1)
            continue
        missing = partitions - sum(1 for m in ps.values() if m.spec.leader in alive
                                   and m.status.resolution == so.PartitionResolution.Online)
        if missing == 0:
            return time.monotonic() - start
        await trio.sleep(0.05)
    raise TimeoutError(f"{missing} of {partitions} partitions without an online leader after {timeout:.0f}s")


def members(cluster: ProcessCluster) -> dict[str, int]:
    return {("sc" if m["kind"] == "sc" else f"spu-{m['id']}"): m["pid"] for m in cluster.members()}


async def idle_cpu(cluster: ProcessCluster, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    pids = members(cluster)
    before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
    t0 = time.monotonic()
    await trio.sleep(seconds)
    dt = time.monotonic() - t0
    cpu = {name: 100 * (cpu_seconds([pid]) - before[name]) / dt for name, pid in pids.items()}
    return cpu, {name: rss_mb(pid) for name, pid in pids.items()}


async def produce(admin: ScAdmin, seconds: float) -> float:
    """ReadCommitted produce over every partition for ``seconds``; acknowledged records/s."""
    parts = await admin.partitions(TOPIC)
    endpoints = await admin.spu_endpoints()
    by_leader: dict[int, list[int]] = {}
    for idx, m in parts.items():
        by_leader.setdefault(m.spec.leader, []).append(idx)
    batch = encode_batch([b"x" * 100] * 10)
    acked = 0
    end = time.monotonic() + seconds

    async def writer(conn, idxs):
        nonlocal acked
        req = api.ProduceRequest(None, api.Isolation.ReadCommitted, 10_000, [api.TopicProduceData(
            TOPIC, [api.PartitionProduceData(i, batch) for i in idxs])])
        while time.monotonic() < end:
            resp = await conn.call(req, timeout=30)
            acked += 10 * sum(1 for p in resp.responses[0].partitions if p.error_code.ok)

    async def spu(leader, idxs):
        host, port = endpoints[leader]
        async with admin.connect(host, port) as conn:
            async with trio.open_nursery() as n:
                for _ in range(4):
                    n.start_soon(writer, conn, idxs)

    t0 = time.monotonic()
    async with trio.open_nursery() as n:
        for leader, idxs in by_leader.items():
            n.start_soon(spu, leader, idxs)
    return acked / (time.monotonic() - t0)


async def measure(cluster: ProcessCluster, row: Row, args) -> None:
    admin = cluster.admin(timeout=120)
    t0 = time.monotonic()
    try:
        await admin.create_topic(TOPIC, row.partitions, row.rf)
    except TopicNotProvisionedError:  # not all online within the request's 30 s: wait on
        pass
    await wait_all_led(admin, row.partitions, set(cluster.spu_ids), timeout=600)
    row.create_s = time.monotonic() - t0
    await trio.sleep(2)  # the first reports and checkpoints after the create
    row.idle_cpu, row.rss_mb = await idle_cpu(cluster, args.idle_seconds)
    row.produce_rps = await produce(admin, args.produce_seconds)
    if row.rf > 1:
        await trio.sleep(2)
        killed_at = cluster.kill("spu-5001")  # time.monotonic() just before the signal
        alive = set(cluster.spu_ids) - {5001}
        try:
            await wait_all_led(admin, row.partitions, alive, timeout=180)
            row.failover_s = time.monotonic() - killed_at
        except TimeoutError as e:
            print(f"  failover: {e}", file=sys.stderr)


def run_row(partitions: int, rf: int, spus: int, args, command: list[str] | None = None) -> Row:
    """One row on a fresh cluster, run with ``command`` (the ``fluvial`` argv prefix; default:
    this interpreter's)."""
    row = Row(partitions, rf, spus)
    own = processes.fluvial_command
    if command is not None:
        processes.fluvial_command = lambda: list(command)
    home = Path(tempfile.mkdtemp(prefix="fluvial-scale-bench-"))
    cluster = ProcessCluster(home, spus=spus, heartbeat_timeout=10.0, replica_lag_time_max=10.0, tls=False)
    try:
        cluster.start()
        trio.run(measure, cluster, row, args)
    finally:
        cluster.close()
        processes.fluvial_command = own
        shutil.rmtree(home, ignore_errors=True)
    return row


HEADER = ("| partitions | SPUs x RF | create | idle CPU per SPU | idle CPU SC | RSS per SPU | RSS SC "
          "| produce (records/s) | all led and Online after kill -9 of one SPU |\n"
          "| ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def table_row(r: Row, label: str = "") -> str:
    spu_cpu = [v for k, v in r.idle_cpu.items() if k.startswith("spu")] or [0.0]
    spu_rss = [v for k, v in r.rss_mb.items() if k.startswith("spu")] or [0.0]
    fo = "n/a (RF=1)" if r.rf == 1 else ("not within 180 s" if r.failover_s is None else f"{r.failover_s:.1f} s")
    return (f"| {r.partitions:,}{label} | {r.spus} x {r.rf} | {r.create_s:.1f} s "
            f"| {min(spu_cpu):.1f}-{max(spu_cpu):.1f} % | {r.idle_cpu.get('sc', 0):.1f} % "
            f"| {min(spu_rss):.0f}-{max(spu_rss):.0f} MB | {r.rss_mb.get('sc', 0):.0f} MB "
            f"| {r.produce_rps:,.0f} | {fo} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="30,300,1000", help="partition counts at RF=3 on 3 SPUs")
    parser.add_argument("--with-3000", action="store_true", help="add the 3,000-partition row (slow)")
    parser.add_argument("--with-10000", action="store_true", help="add 10,000 partitions at RF=1 on 1 SPU (slow)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--produce-seconds", type=float, default=5.0)
    parser.add_argument("--peer", help="the fluvial command of another install: each row measured with both")
    args = parser.parse_args()
    plan = [(int(s), 3, 3) for s in args.sizes.split(",") if s]
    if args.with_3000:
        plan.append((3000, 3, 3))
    if args.with_10000:
        plan.append((10000, 1, 1))
    print(HEADER, flush=True)
    failed = 0
    for partitions, rf, spus in plan:  # each row printed as soon as it is measured
        print(f"# {partitions} partitions, RF={rf}, {spus} SPU(s) ...", file=sys.stderr, flush=True)
        try:
            if args.peer:
                peer = run_row(partitions, rf, spus, args, [args.peer])
                print(table_row(peer, " (peer)"), flush=True)
            row = run_row(partitions, rf, spus, args)
            ratio = ""
            if args.peer and peer.produce_rps:
                ratio = f" {row.produce_rps / peer.produce_rps:.2f}x the peer's produce |"
            print(table_row(row) + ratio, flush=True)
        except Exception as e:  # noqa: BLE001 - the other rows are still measured
            failed += 1
            print(f"| {partitions:,} | {spus} x {rf} | failed: {type(e).__name__}: {e} |||||||", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
