"""fluvial's Python client against Redis streams, on the same machine and disk, in one run.

What it starts (and stops): a Redis server (``appendonly yes``, ``appendfsync always``: every
write is fsynced before the reply) and a local fluvial cluster (``fluvial cluster start --spus 1
--no-tls``: RF=1, the SPU fsyncs before it acknowledges; plaintext, like Redis here), both with
their data in one temporary directory.

What it measures:

* produce 200k x 100 B and 50k x 1 KB with durable acks. fluvial: a producer with
  ``isolation="read_committed"``, records given ``send_many`` in chunks of 1,000 (and, as a second
  row, one ``await send`` per record); the time runs until ``flush()`` returns, i.e. until every
  record is acknowledged. Redis: redis-py pipelines of 1,000 ``XADD``.
* consume them back. fluvial: a consumer from the beginning, ``continuous=False``, read with
  ``receive_many`` (and, second row, ``async for``). Redis: ``XRANGE`` 1,000 entries at a time.
* send -> receive latency at 1,000 records/s: a producer and a live consumer in one process;
  each value carries its send time (``time.perf_counter_ns``); once with an at-least-once,
  read-committed producer, once with an at-most-once one. Redis: ``XADD`` in one thread,
  ``XREAD BLOCK`` in another.

Redis needs ``redis-server`` on the PATH and the ``redis`` (with ``hiredis``) Python package; if
either is missing the bench says so and measures fluvial alone.

Each throughput figure is the best of ``--repeat`` runs (5) for both systems; the two systems
take turns (Redis, then fluvial, per repetition) so that load drifting on a shared machine
affects both alike.

Usage: python bench/client.py [--small 200000] [--large 50000] [--latency-seconds 5]
       [--rate 1000] [--repeat 5] [--dir DIR] [--no-redis]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

import fluvial
from fluvial import Offset

CHUNK = 1000
GOALS = {"produce": 5.0, "consume": 2.5, "latency_p50_us": 400.0}


# ----------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def fluvial_cli(home: Path, *args: str) -> str:
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    proc = subprocess.run([sys.executable, "-c", "from fluvial.cli.main import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"fluvial {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# ------------------------------------------------------------------------------------- redis


def redis_missing() -> str | None:
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server (apt-get install redis-server)")
    if importlib.util.find_spec("redis") is None:
        missing.append("the redis Python package (pip install redis hiredis)")
    elif importlib.util.find_spec("hiredis") is None:
        missing.append("hiredis (pip install hiredis), redis-py's fast reply parser")
    return ", ".join(missing) or None


class RedisServer:
    def __init__(self, data_dir: Path):
        import redis

        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data_dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no",
             "--logfile", str(data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def client(self):
        import redis

        return redis.Redis(port=self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def redis_produce(server: RedisServer, stream: str, n: int, size: int) -> float:
    r = server.client()
    value = b"x" * size
    start = time.perf_counter()
    for i in range(0, n, CHUNK):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(CHUNK, n - i)):
            pipe.xadd(stream, {"v": value})
        pipe.execute()
    return n / (time.perf_counter() - start)


def redis_consume(server: RedisServer, stream: str, n: int) -> float:
    r = server.client()
    start = time.perf_counter()
    got = 0
    last = "-"
    while got < n:
        entries = r.xrange(stream, min=last, max="+", count=CHUNK + (last != "-"))
        if last != "-":
            entries = entries[1:]
        if not entries:
            break
        got += len(entries)
        last = entries[-1][0]
    assert got == n, f"redis returned {got} of {n} entries"
    return got / (time.perf_counter() - start)


def redis_latency(server: RedisServer, seconds: float, rate: int) -> list[float]:
    stream = "latency"
    n = int(seconds * rate)
    latencies: list[float] = []
    ready = threading.Event()

    def reader():
        r = server.client()
        last = "$"
        ready.set()
        while len(latencies) < n:
            resp = r.xread({stream: last}, block=5000, count=100)
            now = time.perf_counter_ns()
            if not resp:
                break
            for entry_id, fields in resp[0][1]:
                latencies.append((now - int(fields[b"t"])) / 1000)
                last = entry_id

    t = threading.Thread(target=reader)
    t.start()
    ready.wait()
    time.sleep(0.2)  # let the XREAD BLOCK reach the server
    w = server.client()
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        while (delay := target - time.perf_counter()) > 0:
            time.sleep(delay)
        w.xadd(stream, {"t": str(time.perf_counter_ns())})
    t.join(timeout=30)
    return latencies


# ----------------------------------------------------------------------------------- fluvial


async def fluvial_produce(fl, topic: str, n: int, size: int, per_record: bool) -> float:
    value = b"x" * size
    async with fl.producer(topic, isolation="read_committed", batch_size=256 * 1024) as p:
        start = time.perf_counter()
        if per_record:
            send = p.send
            for _ in range(n):
                await send(value)
        else:
            chunk = [value] * CHUNK
            for i in range(0, n, CHUNK):
                await p.send_many(chunk if n - i >= CHUNK else chunk[:n - i])
        await p.flush()
        elapsed = time.perf_counter() - start
    return n / elapsed


async def fluvial_consume(fl, topic: str, n: int, bulk: bool) -> float:
    got = 0
    async with fl.consumer(topic, offset=Offset.beginning(), continuous=False,
                           max_bytes=4 * 1024 * 1024) as c:
        start = time.perf_counter()
        if bulk:
            while batch := await c.receive_many():
                got += len(batch)
        else:
            async for _ in c:
                got += 1
        elapsed = time.perf_counter() - start
    assert got == n, f"fluvial returned {got} of {n} records"
    return got / elapsed


async def fluvial_latency(fl, topic: str, seconds: float, rate: int, **producer) -> list[float]:
    n = int(seconds * rate)
    latencies: list[float] = []
    async with fl.producer(topic, **producer) as p, fl.consumer(topic, offset=Offset.end()) as c:
        async def consume():
            async for r in c:
                latencies.append((time.perf_counter_ns() - int(r.value)) / 1000)
                if len(latencies) == n:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            start = trio.current_time()
            for i in range(n):
                await trio.sleep_until(start + i / rate)
                await p.send(b"%d" % time.perf_counter_ns())
            with trio.fail_after(30):
                await p.flush()
                while len(latencies) < n:
                    await trio.sleep(0.01)
    return latencies


async def run_all(config: Path, redis: RedisServer | None, args) -> tuple[dict, dict | None]:
    """Both systems, one repetition after the other, so that each pair of runs is close in time
    (the machine may be shared; the load drifts)."""
    fl_out: dict = {}
    redis_out: dict | None = None if redis is None else {}
    async with fluvial.connect(config_path=config) as fl:
        for rep in range(args.repeat):
            for name, n, size in (("100B", args.small, 100), ("1KB", args.large, 1024)):
                if redis is not None:
                    best(redis_out, ("produce", name), redis_produce(redis, f"s-{name}-{rep}", n, size))
                    best(redis_out, ("consume", name), redis_consume(redis, f"s-{name}-{rep}", n))
                for per_record in (False, True):
                    topic = f"bench-{name.lower()}-{'send' if per_record else 'many'}-{rep}"
                    await fl.admin.create_topic(topic)
                    best(fl_out, ("produce", name, per_record),
                         await fluvial_produce(fl, topic, n, size, per_record))
                    best(fl_out, ("consume", name, per_record),
                         await fluvial_consume(fl, topic, n, not per_record))
        if redis is not None:
            redis_out["latency"] = await trio.to_thread.run_sync(
                redis_latency, redis, args.latency_seconds, args.rate)
        for delivery in ("at_least_once", "at_most_once"):
            await fl.admin.create_topic(f"bench-latency-{delivery.replace('_', '-')}")
            fl_out[("latency", delivery)] = await fluvial_latency(
                fl, f"bench-latency-{delivery.replace('_', '-')}", args.latency_seconds, args.rate,
                delivery=delivery, isolation="read_committed" if delivery == "at_least_once" else None)
    return fl_out, redis_out


def best(out: dict, key, value: float) -> None:
    """Keep the best of the repetitions: on a shared machine the others measure the neighbours."""
    out[key] = max(out.get(key, 0.0), value)


# -------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=200_000, help="records of 100 B")
    ap.add_argument("--large", type=int, default=50_000, help="records of 1 KB")
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000, help="records/s for the latency test")
    ap.add_argument("--dir", type=Path, default=None, help="where data goes (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each throughput test; the best counts")
    ap.add_argument("--no-redis", action="store_true")
    args = ap.parse_args()

    missing = None if args.no_redis else redis_missing()
    if missing:
        print(f"redis skipped: missing {missing}")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fluvial-bench-") as tmp:
        base = Path(tmp)
        redis = None if args.no_redis or missing else RedisServer(base / "redis")
        home = base / "fluvial"
        try:
            # plaintext, as Redis is here; the client reads the `local` profile the command writes
            fluvial_cli(home, "cluster", "start", "--spus", "1", "--sc-port", "0", "--no-tls")
            try:
                fl_out, redis_out = trio.run(run_all, home / "config", redis, args)
            finally:
                fluvial_cli(home, "cluster", "shutdown")
        finally:
            if redis is not None:
                redis.stop()

    print(f"\nfluvial client bench: {args.small:,} x 100 B, {args.large:,} x 1 KB, durable acks, RF=1, "
          f"best of {args.repeat}; latency at {args.rate}/s for {args.latency_seconds:g}s\n")
    cols = ["produce 100B", "produce 1KB", "consume 100B", "consume 1KB", "lat p50 us", "lat p99 us"]
    print(f"{'system':<34}" + "".join(f"{c:>14}" for c in cols))

    def row(label, vals):
        print(f"{label:<34}" + "".join(f"{v:>14,.0f}" if v is not None else f"{'-':>14}" for v in vals))

    fl_lat = fl_out[("latency", "at_least_once")]
    fl_p50, fl_p99 = percentile(fl_lat, 0.5), percentile(fl_lat, 0.99)
    amo = fl_out[("latency", "at_most_once")]
    amo_p50, amo_p99 = percentile(amo, 0.5), percentile(amo, 0.99)
    if redis_out:
        rl = redis_out["latency"]
        row("redis (AOF fsync always)", [redis_out[("produce", "100B")], redis_out[("produce", "1KB")],
                                         redis_out[("consume", "100B")], redis_out[("consume", "1KB")],
                                         percentile(rl, 0.5) if rl else None,
                                         percentile(rl, 0.99) if rl else None])
    row("fluvial (send_many/receive_many)", [fl_out[("produce", "100B", False)], fl_out[("produce", "1KB", False)],
                                             fl_out[("consume", "100B", False)], fl_out[("consume", "1KB", False)],
                                             fl_p50, fl_p99])
    row("fluvial (send/async for)", [fl_out[("produce", "100B", True)], fl_out[("produce", "1KB", True)],
                                     fl_out[("consume", "100B", True)], fl_out[("consume", "1KB", True)],
                                     amo_p50, amo_p99])
    print(f"\nfluvial latency: the first row's producer is at-least-once with read_committed acks "
          f"(one request in flight per partition, each waiting for the SPU's fsync): mean "
          f"{statistics.mean(fl_lat):,.0f} us; the second's is at-most-once: mean "
          f"{statistics.mean(amo):,.0f} us; {len(fl_lat)} records each")
    if redis_out:
        print("\nratios fluvial/redis (goal: produce >= 5x, consume >= 2.5x at 100 B; p50 <= 400 us):")
        for what, goal in (("produce", GOALS["produce"]), ("consume", GOALS["consume"])):
            for size in ("100B", "1KB"):
                bulk = fl_out[(what, size, False)] / redis_out[(what, size)]
                single = fl_out[(what, size, True)] / redis_out[(what, size)]
                mark = "ok" if size == "1KB" or bulk >= goal else "BELOW GOAL"
                print(f"  {what} {size:<5} bulk {bulk:6.2f}x   per-record {single:6.2f}x   {mark}")
    for label, p50 in (("at-least-once", fl_p50), ("at-most-once", amo_p50)):
        print(f"  latency p50 {label} {p50:,.0f} us: "
              f"{'ok' if p50 <= GOALS['latency_p50_us'] else 'ABOVE GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
