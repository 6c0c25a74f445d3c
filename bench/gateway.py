"""The streams gateway against Redis pub/sub (what iii's Redis adapter uses), in one run.

What it starts (and stops, by PID): a local fluvial cluster with its gateway (``fluvial cluster
start --spus 1 --no-tls --gateway``: RF=1, every write fsynced before it is acknowledged, the
gateway tails the stream's topic) and a ``redis-server``; data in one temporary directory.

Subscribers: ``--subscribers`` (100) connections spread over ``--workers`` (4) processes, each a
plain socket loop (no framework) that finds the ``"t":<ns>`` stamp of every change in the bytes
it receives. fluvial: WebSocket clients joined to one group (iii's protocol); Redis: clients
SUBSCRIBEd to one channel.

What it measures:

* set -> subscriber latency at ``--rate`` (1,000) updates/s for ``--seconds`` (5): the writer
  stamps each update with ``time.time_ns()``; each subscriber takes its receive time minus the
  stamp. fluvial: ``fl.streams()``-style records (``encode_set``) sent through a read-committed
  producer, paced, not awaited one by one (each is acknowledged once durable); Redis: PUBLISH
  per update. p50/p99/max over every delivery.
* fan-out throughput: ``--burst`` (2,000) updates as fast as the writer goes (fluvial: the
  producer batches; Redis: pipelines of 100 PUBLISH); deliveries/s = updates x subscribers /
  (last delivery - first send).

What differs: a fluvial update is on disk (fsynced) before any subscriber sees it and every
gateway sees it in the same order; a Redis PUBLISH is delivered from memory, at most once, and
is lost for a subscriber that is not connected at that moment.

Usage: python bench/gateway.py [--subscribers 100] [--workers 4] [--rate 1000] [--seconds 5]
       [--burst 2000] [--no-redis]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client import RedisServer, fluvial_cli, percentile, redis_missing  # noqa: E402  (bench/client.py)

STAMP = re.compile(rb'"t":(\d+),')
GROUP = "g"


# ------------------------------------------------------------------------------- subscribers


def _ws_connect(port: int, stream: str) -> socket.socket:
    import wsproto
    from wsproto.events import AcceptConnection, Request, TextMessage

    s = socket.create_connection(("127.0.0.1", port))
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    s.sendall(ws.send(Request(host="127.0.0.1", target="/")))
    while not any(isinstance(e, AcceptConnection) for e in ws.events()):
        ws.receive_data(s.recv(65536))
    join = {"type": "join", "data": {"subscriptionId": "b", "streamName": stream, "groupId": GROUP}}
    s.sendall(ws.send(TextMessage(data=json.dumps(join))))
    synced = b""
    while b'"sync"' not in synced:  # the join's sync frame (an empty group: no stamps in it)
        synced += s.recv(65536)
    return s


def _redis_connect(port: int, channel: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"SUBSCRIBE {channel}\r\n".encode())
    got = b""
    while b"subscribe" not in got:
        got += s.recv(65536)
    return s


def worker(mode: str, port: int, n: int, name: str, expected: int, timeout: float) -> None:
    """Open ``n`` subscribers, print "ready", then receive until each has ``expected`` stamps;
    print one JSON line with the latencies (ms) and the last receive time."""
    connect = _ws_connect if mode == "ws" else _redis_connect
    socks = [connect(port, name) for _ in range(n)]
    sel = selectors.DefaultSelector()
    state = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = [b"", 0]
    print("ready", flush=True)
    lat: list[float] = []
    last = 0
    pending = n
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            data = s.recv(1 << 20)
            now = time.time_ns()
            st = state[s]
            buf = st[0] + data
            end = 0
            for m in STAMP.finditer(buf):
                lat.append((now - int(m.group(1))) / 1e6)
                end = m.end()
                st[1] += 1
            st[0] = buf[end:] if end else buf[-64:]
            last = now
            if st[1] >= expected:
                sel.unregister(s)
                pending -= 1
    print(json.dumps({"lat": lat, "last": last, "count": sum(v[1] for v in state.values())}), flush=True)
    for s in socks:
        s.close()


def start_workers(args, mode: str, port: int, name: str, expected: int) -> list[subprocess.Popen]:
    per = [args.subscribers // args.workers + (1 if i < args.subscribers % args.workers else 0)
           for i in range(args.workers)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", mode, str(port), str(k), name,
                               str(expected)], stdout=subprocess.PIPE, text=True)
             for k in per if k]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("a subscriber worker did not start")
    return procs


def collect(procs: list[subprocess.Popen]) -> tuple[list[float], int, int]:
    lat, last, count = [], 0, 0
    for p in procs:
        out = json.loads(p.stdout.readline())
        p.wait(timeout=30)
        lat += out["lat"]
        last = max(last, out["last"])
        count += out["count"]
    return lat, last, count


# ----------------------------------------------------------------------------------- writers


def paced(rate: float, n: int):
    """Yield 0..n-1 at ``rate`` per second (sleeping between, catching up when late)."""
    start = time.perf_counter()
    for k in range(n):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield k


def fluvial_writes(config: Path, stream: str, n: int, rate: float | None) -> int:
    """Send ``n`` updates (paced at ``rate``, or as fast as possible); the first send's time."""
    import trio

    import fluvial
    from fluvial.client.streams import ensure_stream_topic
    from fluvial.gateway.model import GroupPartitioner, encode_set, topic_for_stream

    async def main() -> int:
        async with fluvial.connect(config_path=config) as fl:
            await ensure_stream_topic(fl, stream)
            async with fl.producer(topic_for_stream(stream), partitioner=GroupPartitioner(),
                                   isolation="read_committed") as p:
                t0 = time.time_ns()
                start = time.perf_counter()
                for k in range(n):
                    if rate:
                        delay = start + k / rate - time.perf_counter()
                        if delay > 0:
                            await trio.sleep(delay)
                    key, value = encode_set(GROUP, f"i{k % 50}", {"t": time.time_ns(), "k": k})
                    await p.send(value, key=key)
                await p.flush()
                return t0

    return trio.run(main)


def redis_writes(server: RedisServer, channel: str, n: int, rate: float | None) -> int:
    """PUBLISH each update (paced), or, as fast as possible, in pipelines of 100 (as fluvial's
    producer batches what is queued)."""
    r = server.client()
    t0 = time.time_ns()
    if rate:
        for k in paced(rate, n):
            r.publish(channel, json.dumps({"t": time.time_ns(), "k": k}, separators=(",", ":")))
        return t0
    for lo in range(0, n, 100):
        pipe = r.pipeline(transaction=False)
        for k in range(lo, min(n, lo + 100)):
            pipe.publish(channel, json.dumps({"t": time.time_ns(), "k": k}, separators=(",", ":")))
        pipe.execute()
    return t0


# -------------------------------------------------------------------------------------- main


def run_system(args, label: str, mode: str, port: int, write, prepare=None) -> dict:
    out = {}
    n = int(args.rate * args.seconds)
    name = f"lat-{mode}-{os.getpid()}"
    if prepare:
        prepare(name)
    procs = start_workers(args, mode, port, name, n)
    write(name, n, args.rate)
    lat, _, count = collect(procs)
    out["p50"], out["p99"], out["max"] = percentile(lat, 0.5), percentile(lat, 0.99), max(lat)
    out["lost"] = n * args.subscribers - count
    name = f"burst-{mode}-{os.getpid()}"
    if prepare:
        prepare(name)
    procs = start_workers(args, mode, port, name, args.burst)
    t0 = write(name, args.burst, None)
    lat, last, count = collect(procs)
    out["fanout"] = count / ((last - t0) / 1e9)
    out["burst_lost"] = args.burst * args.subscribers - count
    print(f"  {label}: done", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4, help="subscriber processes")
    ap.add_argument("--rate", type=int, default=1000, help="updates/s for the latency test")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--burst", type=int, default=2000, help="updates for the fan-out test")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a subscriber waits")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mode, port, n, name, expected = args.worker
        worker(mode, int(port), int(n), name, int(expected), args.timeout)
        return 0

    missing = None if args.no_redis else redis_missing()
    if missing:
        print(f"redis skipped: missing {missing}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="fluvial-bench-gw-") as tmp:
        base = Path(tmp)
        home = base / "fluvial"
        fluvial_cli(home, "cluster", "start", "--spus", "1", "--sc-port", "0", "--no-tls",
                    "--gateway", "--gateway-port", "0")
        try:
            state = json.loads((home / "cluster.json").read_text())
            gw_port = next(m["public_port"] for m in state["members"] if m["kind"] == "gateway")
            config = home / "config"

            def prepare(name):  # the topic exists before anyone joins
                fluvial_writes(config, name, 0, None)

            results["fluvial gateway (RF=1, fsync)"] = run_system(
                args, "fluvial", "ws", gw_port,
                lambda name, n, rate: fluvial_writes(config, name, n, rate), prepare)
        finally:
            fluvial_cli(home, "cluster", "shutdown")
        if not missing and not args.no_redis:
            redis = RedisServer(base / "redis")
            try:
                results["Redis pub/sub"] = run_system(
                    args, "redis", "redis", redis.port,
                    lambda name, n, rate: redis_writes(redis, name, n, rate))
            finally:
                redis.stop()

    print(f"\nstreams gateway bench: {args.subscribers} subscribers in {args.workers} processes; "
          f"latency at {args.rate}/s for {args.seconds:g}s; fan-out burst of {args.burst}\n")
    cols = ["p50 ms", "p99 ms", "max ms", "lost", "fan-out/s"]
    print(f"{'system':<32}" + "".join(f"{c:>12}" for c in cols))
    for label, r in results.items():
        print(f"{label:<32}{r['p50']:>12.1f}{r['p99']:>12.1f}{r['max']:>12.1f}"
              f"{r['lost'] + r['burst_lost']:>12,}{r['fanout']:>12,.0f}")
    if len(results) == 2:
        f, r = results.values()
        print(f"\nratios fluvial/Redis: p50 {f['p50'] / r['p50']:.1f}x, p99 {f['p99'] / r['p99']:.1f}x, "
              f"fan-out {f['fanout'] / r['fanout']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
