"""The systems the benches drive, and the machine they run on: helpers to start and stop
servers by PID, the machine's limits (loopback TCP, sequential write + fsync, fdatasync), and for
each system (fluvial, Redis Streams, NATS JetStream) the server, a check for what is missing, and
the three workloads (produce, consume, send -> receive latency). ``compare.py`` runs them all and
writes RESULTS.md; ``latency_breakdown.py``, ``consume_spu.py`` and ``tls_cost.py`` use them too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import trio

from fluvial.pids import pid_alive

CHUNK = 1000  # records per send_many / pipeline / XRANGE / fetch
SMALL_BYTES = 100
LARGE_BYTES = 1024


# ------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def paced_sends(n: int, rate: int, send: Callable[[int], Any]) -> None:
    """``await send(t)`` ``n`` times, one every ``1 / rate`` s; ``t`` is the send time
    (``perf_counter_ns``), which the record carries for its receiver to subtract."""
    start = trio.current_time()
    for i in range(n):
        await trio.sleep_until(start + i / rate)
        await send(time.perf_counter_ns())


def median_range(values: list[float], unit: str = " us") -> str:
    """``values`` over a bench's rounds as its table cell: the median, then [min-max]."""
    return (f"{statistics.median(values):,.0f}{unit} "
            f"[{min(values):,.0f}-{max(values):,.0f}]")


def latency_summary(latencies_us: list[float], expected: int) -> dict[str, float]:
    if len(latencies_us) < expected:
        raise RuntimeError(f"latency run received {len(latencies_us)} of {expected} records")
    s = sorted(latencies_us)
    return {"lat-p50": percentile(s, 0.50), "lat-p99": percentile(s, 0.99), "lat-max": s[-1]}


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes ``pids`` have used so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once ``pid`` has gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_popen(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen | None = None,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout:g}s")
        time.sleep(0.05)


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def command_output(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ----------------------------------------------------------------------------- machine limits


def loopback_mb_s(seconds: float = 1.0) -> float:
    """One TCP connection over 127.0.0.1, 1 MiB sendall calls, a thread draining it."""
    chunk = 1 << 20
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        received = [0]

        def sink() -> None:
            conn, _ = listener.accept()
            buf = bytearray(chunk)
            with conn:
                while n := conn.recv_into(buf):
                    received[0] += n

        t = threading.Thread(target=sink)
        t.start()
        with socket.create_connection(listener.getsockname()) as out:
            data = bytes(chunk)
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                out.sendall(data)
            out.shutdown(socket.SHUT_WR)
            t.join()
            elapsed = time.perf_counter() - start
    return received[0] / elapsed / 1e6


def disk_limits(directory: Path) -> dict[str, float]:
    """Sequential write + fsync MB/s and fdatasync latency (us) in ``directory``."""
    path = directory / "disk-probe"
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(256):
            os.write(fd, block)
        os.fsync(fd)
        write_mb_s = 256 * len(block) / (time.perf_counter() - start) / 1e6
    finally:
        os.close(fd)
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    lat = []
    try:
        record = b"r" * SMALL_BYTES
        for _ in range(500):
            os.write(fd, record)
            t = time.perf_counter_ns()
            os.fdatasync(fd)
            lat.append((time.perf_counter_ns() - t) / 1000)
    finally:
        os.close(fd)
    path.unlink()
    lat.sort()
    return {"write_fsync_mb_s": write_mb_s, "fdatasync_p50_us": percentile(lat, 0.5),
            "fdatasync_p99_us": percentile(lat, 0.99), "fdatasync_max_us": lat[-1]}


def machine_limits(directory: Path) -> dict[str, float]:
    print("machine limits ...", flush=True)
    limits = {"loopback_mb_s": loopback_mb_s(), **disk_limits(directory)}
    print(f"  loopback {limits['loopback_mb_s']:,.0f} MB/s, write+fsync "
          f"{limits['write_fsync_mb_s']:,.0f} MB/s, fdatasync p50 "
          f"{limits['fdatasync_p50_us']:,.0f} us p99 {limits['fdatasync_p99_us']:,.0f} us",
          flush=True)
    return limits


# ------------------------------------------------------------------------------------ fluvial


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def fluvial_missing() -> str | None:
    if not importable("fluvial"):
        return "the fluvial package (pip install -e . in the repository)"
    return None


class FluvialCluster:
    """``fluvial cluster start --spus N --sc-port 0 [--no-tls]`` in its own FLUVIAL_HOME.

    ``connect_args`` are what ``fluvial.connect`` takes to reach it: the endpoint in plaintext,
    the ``local`` profile the start wrote (certificates included) with TLS.
    """

    def __init__(self, home: Path, spus: int = 3, tls: bool = False):
        self.home = home
        self.env = dict(os.environ, FLUVIAL_HOME=str(home))
        self.env.pop("FLUVIAL_CONFIG", None)
        self.pids: list[int] = []
        self._cli("cluster", "start", "--spus", str(spus), "--sc-port", "0",
                  "--tls" if tls else "--no-tls")
        state = json.loads((home / "cluster.json").read_text())
        self.pids = [m["pid"] for m in state["members"] if m.get("pid")]
        sc = next(m for m in state["members"] if m["kind"] == "sc")
        self.endpoint = f"127.0.0.1:{sc['public_port']}"
        self.connect_args: dict = (
            {"profile": "local", "config_path": str(home / "config")} if tls
            else {"endpoint": self.endpoint})

    def _cli(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "fluvial.cli.main", *args], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"fluvial {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def stop(self) -> None:
        try:
            self._cli("cluster", "shutdown")
        finally:
            for pid in self.pids:  # whatever the shutdown left, by PID
                if pid_alive(pid):
                    stop_pid(pid)


async def fluvial_wait_ready(fl, topic: str, replication: int) -> None:
    with trio.fail_after(60):
        while True:
            parts = await fl.admin.list_partitions(topic)
            if parts and all(p.leader >= 0 and len(p.isr) >= replication for p in parts):
                return
            await trio.sleep(0.05)


async def fluvial_produce(fl, topic: str, n: int, value: bytes) -> float:
    """Seconds until ``n`` records are acknowledged (read_committed: durable on the ISR)."""
    chunk = [value] * CHUNK
    async with fl.producer(topic, isolation="read_committed", batch_size=64 * 1024) as p:
        start = time.perf_counter()
        for i in range(0, n, CHUNK):
            await p.send_many(chunk if n - i >= CHUNK else chunk[:n - i])
        await p.flush()
        return time.perf_counter() - start


async def fluvial_consume(fl, topic: str, n: int, size: int) -> float:
    got = 0
    last = b""
    async with fl.consumer(topic, continuous=False) as c:
        start = time.perf_counter()
        while records := await c.receive_many():
            got += len(records)
            last = records[-1].value
        elapsed = time.perf_counter() - start
    if got != n or len(last) != size:
        raise RuntimeError(f"fluvial returned {got} of {n} records (last of {len(last)} bytes)")
    return elapsed


async def fluvial_latency(fl, topic: str, seconds: float, rate: int, *,
                         producer_options: dict | None = None,
                         on_record: Callable[[Any, int], None] | None = None,
                         acks: list[float] | None = None) -> dict[str, float]:
    """Send -> consumer latency (us) of ``seconds * rate`` records sent at ``rate``, each value
    its send time, read back by a live ``read_committed`` consumer from the end. ``on_record(r,
    now_ns)`` sees each delivered record; ``acks`` (when given) gets each send -> ack in us."""
    from fluvial import Offset

    n = int(seconds * rate)
    latencies: list[float] = []
    done = trio.Event()

    async def acked(future, sent: int) -> None:
        await future.wait()
        acks.append((time.perf_counter_ns() - sent) / 1000)

    async with fl.producer(topic, isolation="read_committed", **(producer_options or {})) as p, \
            fl.consumer(topic, offset=Offset.end(), isolation="read_committed") as c:
        async def consume() -> None:
            async for r in c:
                now = time.perf_counter_ns()
                latencies.append((now - int(r.value)) / 1000)
                if on_record is not None:
                    on_record(r, now)
                if len(latencies) == n:
                    done.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)

            async def send(sent: int) -> None:
                future = await p.send(b"%d" % sent)
                if acks is not None:
                    nursery.start_soon(acked, future, sent)

            await paced_sends(n, rate, send)
            await p.flush()
            with trio.move_on_after(30):
                await done.wait()
            nursery.cancel_scope.cancel()
    return latency_summary(latencies, n)


# -------------------------------------------------------------------------------------- redis


def redis_missing() -> str | None:
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server (apt-get install redis-server)")
    if not importable("redis"):
        missing.append("the redis Python package (pip install redis hiredis)")
    elif not importable("hiredis"):
        missing.append("hiredis, redis-py's C reply parser (pip install hiredis)")
    return ", ".join(missing) or None


class RedisServer:
    def __init__(self, data_dir: Path, appendfsync: str):
        import redis

        data_dir.mkdir(parents=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data_dir),
             "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
             "--protected-mode", "no", "--logfile", str(data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready() -> bool:
            try:
                return bool(redis.Redis(port=self.port).ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until("redis-server", ready, self.proc)
        except BaseException:
            self.stop()
            raise

    def client(self):
        import redis

        return redis.Redis(port=self.port)

    def stop(self) -> None:
        stop_popen(self.proc)


def redis_produce(r, stream: str, n: int, value: bytes) -> float:
    start = time.perf_counter()
    for i in range(0, n, CHUNK):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(CHUNK, n - i)):
            pipe.xadd(stream, {"v": value})
        pipe.execute()
    return time.perf_counter() - start


def redis_consume(r, stream: str, n: int, size: int) -> float:
    start = time.perf_counter()
    got = 0
    low: str | bytes = "-"
    last = b""
    while entries := r.xrange(stream, min=low, max="+", count=CHUNK):
        got += len(entries)
        entry_id, fields = entries[-1]
        last = fields[b"v"]
        low = b"(" + entry_id  # exclusive: after the last one read
    elapsed = time.perf_counter() - start
    if got != n or len(last) != size:
        raise RuntimeError(f"redis returned {got} of {n} entries (last of {len(last)} bytes)")
    return elapsed


def redis_latency(server: RedisServer, stream: str, seconds: float, rate: int) -> dict[str, float]:
    n = int(seconds * rate)
    latencies: list[float] = []
    reader_conn = server.client()
    reader_conn.ping()

    def reader() -> None:
        last = "0-0"
        deadline = time.monotonic() + seconds + 30
        while len(latencies) < n and time.monotonic() < deadline:
            resp = reader_conn.xread({stream: last}, block=1000, count=CHUNK)
            now = time.perf_counter_ns()
            for entry_id, fields in (resp[0][1] if resp else ()):
                latencies.append((now - int(fields[b"t"])) / 1000)
                last = entry_id

    t = threading.Thread(target=reader)
    t.start()
    w = server.client()
    start = time.perf_counter()
    for i in range(n):
        while (delay := start + i / rate - time.perf_counter()) > 0:
            time.sleep(delay)
        w.xadd(stream, {"t": str(time.perf_counter_ns())})
    t.join()
    return latency_summary(latencies, n)


# --------------------------------------------------------------------------------------- nats


def nats_missing() -> str | None:
    missing = []
    if shutil.which("nats-server") is None:
        missing.append("nats-server (apt-get install nats-server)")
    if not importable("nats"):
        missing.append("the nats-py Python package (pip install nats-py)")
    return ", ".join(missing) or None


class NatsServer:
    """``nats-server -js`` on a port the OS picks (``-p -1``), read back from its log."""

    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True)
        self.log = data_dir / "nats.log"
        self.proc = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(data_dir),
             "-l", str(self.log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = 0

        def ready() -> bool:
            if not self.log.exists():
                return False
            text = self.log.read_text()
            marker = "Listening for client connections on "
            if marker not in text or "Server is ready" not in text:
                return False
            self.port = int(text.split(marker, 1)[1].split()[0].rsplit(":", 1)[1])
            return True

        try:
            wait_until("nats-server", ready, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_popen(self.proc)


async def nats_produce(js, subject: str, n: int, value: bytes) -> float:
    start = time.perf_counter()
    futures = [await js.publish_async(subject, value) for _ in range(n)]
    await js.publish_async_completed()
    elapsed = time.perf_counter() - start
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        raise RuntimeError(f"nats: {len(failed)} publishes failed, e.g. {failed[0]!r}")
    return elapsed


async def nats_consume(js, subject: str, n: int, size: int) -> float:
    """A push consumer without acks (``AckPolicy.NONE``), delivering from the first message to
    a callback: the fastest of nats-py's ways to read a stream back that we tried (a pull
    consumer's ``fetch`` of 1,000 was ~5x slower, an ordered consumer ~1.5x slower)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    got = 0
    last = b""
    done = asyncio.Event()

    async def on_message(msg) -> None:
        nonlocal got, last
        got += 1
        if got == n:
            last = msg.data
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(subject, cb=on_message, manual_ack=True, config=ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL))
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        raise RuntimeError(f"nats delivered {got} of {n} messages") from None
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    if len(last) != size:
        raise RuntimeError(f"nats returned a record of {len(last)} bytes, not {size}")
    return elapsed


async def nats_latency(js, subject: str, seconds: float, rate: int) -> dict[str, float]:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    n = int(seconds * rate)
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_message(msg) -> None:
        latencies.append((time.perf_counter_ns() - int(msg.data)) / 1000)
        if len(latencies) == n:
            done.set()

    sub = await js.subscribe(subject, cb=on_message, manual_ack=True, config=ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await js.publish_async(subject, b"%d" % time.perf_counter_ns())
    await js.publish_async_completed()
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        pass
    await sub.unsubscribe()
    return latency_summary(latencies, n)
