"""Where one record's send -> consumer latency goes, at RF=1 and RF=3, next to Redis-always.

The workload of ``bench/compare.py``'s latency rows (one producer and one live ``read_committed``
consumer in this process, ``--rate`` records/s, each value carrying its send time), with
``FLUVIAL_TRACE`` set for the cluster and for this process: every process appends
``<perf_counter_ns> <event> <topic/partition/offset>`` lines (``fluvial/trace.py``; CLOCK_MONOTONIC,
one clock for all of them). The lines are joined by record and each event is printed as the time
since the record's send: p50 and p99 of that, and the p50 of the step from the event before.

Events, in path order (``leader.*`` and ``follower.*`` only at RF=3; ``N`` is a follower's SPU id):

  client.send           the bench calls ``Producer.send`` (the value's timestamp)
  client.produce_sent   the producer hands the ProduceRequest to its connection
  spu.recv              the leader's produce handler starts
  spu.appended          the batch is in the leader's log (write(), not yet durable)
  leader.serve_N        the leader answers follower N's waiting FetchReplicas with the record
  follower.appended     a follower appended it
  follower.durable      a follower's fsync covering it returned
  leader.fetch_from_N   follower N's next fetch (its LEO now past the record) reached the leader
  spu.durable           the leader's own fsync covering it returned (group commit)
  spu.hw                the HW covers it (read_committed: durable on every ISR member)
  spu.ack               the produce response is handed to the connection
  client.acked          the producer decoded the response
  spu.consumer_acked    the consumer acknowledged everything before it (UpdateOffsets): the
                        stream sends a response only once the one before it is acknowledged
  spu.stream_send       the leader sends it on the consumer's stream
  client.stream_recv    the consumer's connection delivered the stream response
  client.deliver        the bench's ``async for`` got the record

Usage: python bench/latency_breakdown.py [--seconds 5] [--rate 1000] [--no-redis] [--no-trace]
       [--rf 1,3] [--tls] [--whole] [--in-flight 1,5] [--throughput 300000]
       [--against DIR --rounds 3]

``--whole``: end-to-end figures only (send -> consumer, send -> ack; no marks, no trace
instrument, no breakdown), in interleaved rounds (``--rounds``) of every variant: this tree at
each ``--in-flight`` value (the producer's ``max_in_flight``; omitted: the producer's default)
and, with ``--against DIR``, the fluvial package in DIR (a directory holding ``fluvial/``, e.g.
``git worktree add DIR main``). Each variant runs in a process of its own with ``PYTHONPATH``
at its tree, so its client and its cluster's servers are that tree's (a client-side change
shows). ``--throughput N`` adds, per variant and RF, the seconds to produce N records of 100 B
(``send_many``, read_committed, as bench/compare.py's produce row) as records/s. Medians and
ranges over the rounds are printed with the load average. Every run also gives the CPU time per
record of the latency run: the cluster's processes together (``/proc/<pid>/stat``) and this one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ORDER = ["client.send", "client.produce_sent", "spu.recv", "spu.appended", "leader.serve",
         "follower.appended", "follower.durable", "leader.fetch_from", "spu.durable", "spu.hw",
         "spu.ack", "client.acked", "spu.stream_send", "client.stream_recv", "client.deliver"]


SLOW: dict[str, list[int]] = defaultdict(list)  # task name -> us of its steps over 200 us


def load(prefix: str) -> dict[str, dict[str, list[int]]]:
    """key -> event -> the timestamps of every time it was marked (earliest first)."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    d = Path(prefix).parent
    for f in d.glob(Path(prefix).name + ".*"):
        for line in f.read_text().splitlines():
            fields = line.split(" ")
            if len(fields) == 3:
                out[fields[2]][fields[1]].append(int(fields[0]))
            elif fields[1] == "slow_step":  # trace.instruments(): a task held the loop
                SLOW[" ".join(fields[2:-1])].append(int(fields[-1]))
    return out


def breakdown(events: dict[str, dict[str, list[int]]], topic: str) -> list[tuple[str, float, float, int]]:
    """(event, p50 us since send, p99 us since send, samples) in path order; follower events
    (the first of two followers, and the second) are summarised as ``...#1`` and ``...#2``."""
    rows: dict[str, list[float]] = defaultdict(list)
    for key, ev in events.items():
        if not key.startswith(topic + "/") or "client.send" not in ev:
            continue
        t0 = ev["client.send"][0]
        per_name: dict[str, list[int]] = defaultdict(list)
        for name, ts in ev.items():
            base = name.rsplit("_", 1)[0] if name.startswith("leader.") else name
            if name.startswith("leader.") or name.startswith("follower."):
                per_name[base].append(min(ts))
            else:
                per_name[base] = [min(ts)]
        for base, ts in per_name.items():
            for i, t in enumerate(sorted(ts)):
                label = base if len(ts) == 1 and not base.startswith(("leader.", "follower.")) else f"{base}#{i + 1}"
                rows[label].append((t - t0) / 1000)

    def rank(label: str) -> tuple[float, str]:
        return (statistics.median(rows[label]), label)

    out = []
    for label in sorted(rows, key=rank):
        s = sorted(rows[label])
        out.append((label, s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))], len(s)))
    return out


async def traced_latency(fl, topic: str, seconds: float, rate: int,
                         in_flight: int | None = None) -> dict[str, float]:
    """``systems.fluvial_latency``, each delivered record marked for the breakdown."""
    from systems import fluvial_latency

    try:
        from fluvial import trace
    except ImportError:  # a fluvial without fluvial/trace.py (the "before" of a comparison)
        trace = None

    def mark(r, now: int) -> None:
        trace.mark("client.send", topic, r.partition, r.offset, at=int(r.value))
        trace.mark("client.deliver", topic, r.partition, r.offset, at=now)

    acks: list[float] = []
    res = await fluvial_latency(fl, topic, seconds, rate, producer_options=producer_options(in_flight),
                                on_record=mark if trace is not None else None, acks=acks)
    a = sorted(acks)
    return {"p50": res["lat-p50"], "p99": res["lat-p99"], "n": int(seconds * rate),
            "ack-p50": a[len(a) // 2] if a else float("nan")}


async def fluvial_part(connect_args: dict, args, pids: list[int]) -> dict[int, dict[str, float]]:
    import fluvial
    from systems import cpu_seconds, fluvial_wait_ready

    out = {}
    async with fluvial.connect(**connect_args) as fl:
        for rf in args.rfs:
            topic = f"breakdown-rf{rf}"
            await fl.admin.create_topic(topic, partitions=1, replication=rf)
            await fluvial_wait_ready(fl, topic, rf)
            client0, servers0 = time.process_time(), cpu_seconds(pids)
            out[rf] = await traced_latency(fl, topic, args.seconds, args.rate, args.in_flight_one)
            n = out[rf]["n"] / 1e6  # CPU per record, in us
            out[rf]["servers-cpu"] = (cpu_seconds(pids) - servers0) / n
            out[rf]["client-cpu"] = (time.process_time() - client0) / n
            if args.throughput:
                await fl.admin.create_topic(topic + "-tp", partitions=1, replication=rf)
                await fluvial_wait_ready(fl, topic + "-tp", rf)
                out[rf]["rec/s"] = await produce_rate(fl, topic + "-tp", args.throughput,
                                                      args.in_flight_one)
    return out


async def produce_rate(fl, topic: str, n: int, in_flight: int | None) -> float:
    """Records/s for ``n`` records of 100 B (bench/compare.py's produce row)."""
    chunk_size = 1000
    chunk = [b"x" * 100] * chunk_size
    async with fl.producer(topic, isolation="read_committed", batch_size=64 * 1024,
                           **producer_options(in_flight)) as p:
        start = time.perf_counter()
        for i in range(0, n, chunk_size):
            await p.send_many(chunk if n - i >= chunk_size else chunk[:n - i])
        await p.flush()
        return n / (time.perf_counter() - start)


def producer_options(in_flight: int | None) -> dict:
    """More than one in flight needs an explicitly idempotent producer."""
    if in_flight is None:
        return {}
    return {"max_in_flight": in_flight, **({"idempotent": True} if in_flight > 1 else {})}


def run_cluster(base: Path, args, pythonpath: str | None) -> dict[int, dict[str, float]]:
    """One cluster (its servers from ``pythonpath`` when given), the latency run at each RF."""
    import trio

    from systems import FluvialCluster

    saved = os.environ.get("PYTHONPATH")
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath  # the cluster's processes only: fluvial is imported
    try:
        cluster = FluvialCluster(base, spus=3, tls=args.tls)
    finally:
        if pythonpath:
            if saved is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = saved
    try:
        return trio.run(fluvial_part, cluster.connect_args, args, cluster.pids)
    finally:
        cluster.stop()


def run_redis(base: Path, args) -> dict[str, float] | None:
    from systems import RedisServer, redis_latency, redis_missing

    if args.no_redis or redis_missing():
        return None
    server = RedisServer(base, "always")
    try:
        return redis_latency(server, "breakdown", args.seconds, args.rate)
    finally:
        server.stop()


def compare_rounds(base: Path, args) -> None:
    """``--against DIR``: rounds of [this tree, DIR, Redis], interleaved so that the machine's
    load falls on each alike; medians over the rounds (the client is this tree's: only the
    servers differ)."""
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for i in range(args.rounds):
        pair = [("after", None), ("before", args.against)]
        for label, path in (pair if i % 2 == 0 else pair[::-1]):  # neither always goes first
            res = run_cluster(base / f"{label}-{i}", args, path)
            for rf in args.rfs:
                r = res[rf]
                rows[f"fluvial RF={rf} ({label})"].append((r["p50"], r["p99"], r["ack-p50"]))
                print(f"round {i + 1} {label} RF={rf}: p50 {r['p50']:,.0f} p99 {r['p99']:,.0f} "
                      f"ack p50 {r['ack-p50']:,.0f} us", flush=True)
        red = run_redis(base / f"redis-{i}", args)
        if red:
            rows["Redis appendfsync always"].append((red["lat-p50"], red["lat-p99"], float("nan")))
    print(f"\nmedians over {args.rounds} rounds, {args.rate} records/s for {args.seconds:g} s "
          f"(load average now {os.getloadavg()[0]:.1f})")
    print("| target | send -> consumer p50 | p99 | send -> ack p50 |")
    print("| --- | ---: | ---: | ---: |")
    for name in sorted(rows, key=lambda n: (n.startswith("fluvial"), n)):
        cols = [statistics.median(c) for c in zip(*rows[name])]
        print(f"| {name} | " + " | ".join("" if c != c else f"{c:,.0f} us" for c in cols) + " |")


def run_variant(base: Path, args, label: str, tree: str, in_flight: int | None) -> dict:
    """One variant in a process of its own (its client from ``tree``): ``{rf: figures}``."""
    out = base / f"{label}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one-run", str(out),
           "--seconds", str(args.seconds), "--rate", str(args.rate), "--rf", args.rf,
           "--throughput", str(args.throughput)]
    if in_flight is not None:
        cmd += ["--in-flight", str(in_flight)]
    if args.tls:
        cmd.append("--tls")
    env = {k: v for k, v in os.environ.items() if k != "FLUVIAL_TRACE"}
    env["PYTHONPATH"] = tree
    subprocess.run(cmd, env=env, cwd=base, check=True)
    return {int(k): v for k, v in json.loads(out.read_text()).items()}


def whole_rounds(base: Path, args) -> None:
    """``--whole``: interleaved rounds of every variant, medians and ranges."""
    from systems import median_range
    here = str(Path(__file__).resolve().parent.parent)
    variants = [(f"this tree, in flight {f}" if f is not None else "this tree", here, f)
                for f in (args.in_flights or [None])]
    if args.against:
        variants.append((f"{args.against}", str(Path(args.against).resolve()), None))
    rows: dict[str, list[dict]] = defaultdict(list)
    loads = []
    for i in range(args.rounds):
        order = variants if i % 2 == 0 else variants[::-1]  # none always goes first
        for k, (label, tree, in_flight) in enumerate(order):
            loads.append(os.getloadavg()[0])
            res = run_variant(base, args, f"r{i}-{k}", tree, in_flight)
            for rf in args.rfs:
                r = res[rf]
                rows[f"{label} RF={rf}"].append(r)
                tp = f", produce {r['rec/s']:,.0f} rec/s" if "rec/s" in r else ""
                print(f"round {i + 1} {label} RF={rf}: p50 {r['p50']:,.0f} p99 {r['p99']:,.0f} "
                      f"ack p50 {r['ack-p50']:,.0f} us{tp} (load {loads[-1]:.1f})", flush=True)
        red = run_redis(base / f"redis-{i}", args)
        if red:
            rows["Redis appendfsync always"].append(
                {"p50": red["lat-p50"], "p99": red["lat-p99"]})
    print(f"\nmedians [ranges] over {args.rounds} rounds, {args.rate} records/s for "
          f"{args.seconds:g} s; load average {min(loads):.1f} to {max(loads):.1f} during the run")
    cols = ["p50", "p99", "ack-p50", "servers-cpu", "client-cpu"] + (["rec/s"] if args.throughput else [])
    print("| target | send -> consumer p50 | p99 | send -> ack p50 | servers' CPU per record "
          "| client's CPU per record |" + (" produce 100 B (records/s) |" if args.throughput else ""))
    print("| --- |" + " ---: |" * len(cols))
    for name in rows:
        cells = []
        for c in cols:
            v = [r[c] for r in rows[name] if c in r]
            cells.append(median_range(v, "" if c == "rec/s" else " us") if v else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--no-trace", action="store_true",
                    help="latencies only: no FLUVIAL_TRACE marks (they cost a little)")
    ap.add_argument("--tls", action="store_true",
                    help="the cluster with TLS, as `fluvial cluster start` gives a new user")
    ap.add_argument("--rf", default="1,3", help="replication factors to run (comma-separated)")
    ap.add_argument("--against", default=None,
                    help="a directory holding another fluvial package: interleaved rounds of both "
                         "(implies --no-trace)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--whole", action="store_true",
                    help="end-to-end figures only, each variant in its own process (see above)")
    ap.add_argument("--in-flight", default="",
                    help="producer max_in_flight values to compare (comma-separated)")
    ap.add_argument("--throughput", type=int, default=0,
                    help="also produce this many 100 B records per variant and RF")
    ap.add_argument("--one-run", default=None, help=argparse.SUPPRESS)  # a --whole variant
    args = ap.parse_args()
    args.rfs = [int(x) for x in args.rf.split(",") if x.strip()]
    args.in_flights = [int(x) for x in args.in_flight.split(",") if x.strip()]
    args.in_flight_one = args.in_flights[0] if len(args.in_flights) == 1 else None
    if args.one_run:
        with tempfile.TemporaryDirectory(prefix="fluvial-breakdown-") as tmp:
            res = run_cluster(Path(tmp), args, None)
        Path(args.one_run).write_text(json.dumps(res))
        return 0
    with tempfile.TemporaryDirectory(prefix="fluvial-breakdown-") as tmp:
        base = Path(tmp)
        if args.whole:
            whole_rounds(base, args)
            return 0
        if args.against:
            compare_rounds(base, args)
            return 0
        prefix = str(base / "trace" / "t")
        (base / "trace").mkdir()
        if not args.no_trace:
            os.environ["FLUVIAL_TRACE"] = prefix  # before fluvial is imported: this process traces too
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
        summary = run_cluster(base / "fluvial", args, None)
        redis = run_redis(base / "redis", args)
        events = load(prefix)
        for rf in args.rfs:
            s = summary[rf]
            print(f"\nfluvial RF={rf}: send -> consumer p50 {s['p50']:,.0f} us, p99 {s['p99']:,.0f} us, "
                  f"send -> ack p50 {s['ack-p50']:,.0f} us ({s['n']} records); CPU per record: "
                  f"servers {s['servers-cpu']:,.0f} us, this process {s['client-cpu']:,.0f} us")
            if not events:
                continue
            print(f"  {'event':<22} {'p50 since send':>15} {'p99':>8} {'step p50':>9}")
            prev = 0.0
            for label, p50, p99, _ in breakdown(events, f"breakdown-rf{rf}"):
                print(f"  {label:<22} {p50:>12,.0f} us {p99:>8,.0f} {p50 - prev:>9,.0f}")
                prev = p50
        if SLOW:
            print("\nSPU task steps over 200 us (the event loop held): task, count, p50 us, max us")
            for name, us in sorted(SLOW.items(), key=lambda kv: -sum(kv[1]))[:8]:
                print(f"  {name[-70:]:<70} {len(us):>6} {statistics.median(us):>7,.0f} {max(us):>7,}")
        if redis:
            print(f"\nRedis appendfsync always: send -> reader p50 {redis['lat-p50']:,.0f} us, "
                  f"p99 {redis['lat-p99']:,.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
