"""The floor of a durable record's latency through Python and trio, beside Redis-always.

fluvial's latency row (`compare.py`, `latency_breakdown.py`) is one record every millisecond from
a producer to a live consumer in the bench's process, each acknowledged after an fdatasync. This
script runs the same messages with nothing else in them: a leader process (trio) that takes a
length-prefixed record, writes it to a file and fdatasyncs it on its event loop, pushes it to the
subscriber and answers the producer; the subscriber acknowledges each push and gets an answer,
as a fluvial consumer does (five messages per record, as in fluvial). At RF=3 the leader also
sends each record to two follower processes (trio), which write, fdatasync and answer, before it
pushes and answers: the leader's own fdatasync runs while the followers work. No batches, no
protocol but the frames (``FrameDecoder``), no tasks beyond one per connection, the cheapest trio
I/O (non-blocking sockets and
``trio.lowlevel.wait_readable``): what any server in this stack pays at least.

    python bench/latency_floor.py                  # RF=1 and RF=3, then Redis-always, 3 rounds
    python bench/latency_floor.py --rounds 5 --seconds 10

It prints the medians over the rounds (rounds alternate with Redis: this machine's swings are
large) and the floor's p50 / Redis-always's p50, which is the most any trio server here can
reach of issue 20's goals.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from systems import (RedisServer, latency_summary, median_range, paced_sends,  # noqa: E402
                     redis_latency, redis_missing, stop_popen)

from fluvial.protocol.frame import FrameDecoder  # noqa: E402

LENGTH = struct.Struct(">i")


class Conn:
    """A connected non-blocking socket carrying length-prefixed frames."""

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.decoder = FrameDecoder()
        self.frames: collections.deque[bytes] = collections.deque()

    async def read(self) -> bytes:
        while not self.frames:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if not data:
                raise EOFError("the peer closed the connection")
            self.frames.extend(self.decoder.feed(data))
        return self.frames.popleft()

    async def send(self, payload: bytes) -> None:
        view = memoryview(LENGTH.pack(len(payload)) + payload)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)


async def serve(data: Path, followers: list[int]) -> None:
    """A leader (with ``followers``' ports) or a follower (without): print the port, then serve."""
    fd = os.open(data, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    subscribers: list[Conn] = []
    peers = []
    for port in followers:
        peers.append(Conn(socket.create_connection(("127.0.0.1", port))))
        await peers[-1].send(b"replicate")

    async def handle(stream: trio.SocketStream) -> None:
        # a plain socket of its own: no trio stream wrappers
        conn = Conn(socket.socket(fileno=os.dup(stream.socket.fileno())))
        try:
            await serve_connection(conn)
        except (EOFError, ConnectionError):
            pass  # the bench is over: it stops the leader, then the followers
        finally:
            conn.sock.close()

    async def serve_connection(conn: Conn) -> None:
        kind = await conn.read()
        if kind == b"subscribe":
            subscribers.append(conn)
            await conn.send(b"ok")  # subscribed: records from now on reach it
            while True:
                await conn.read()  # the consumer's acknowledgement of a push
                await conn.send(b"ok")
        while True:  # the producer (or, on a follower, the leader)
            record = await conn.read()
            os.write(fd, record)
            for peer in peers:
                await peer.send(record)
            os.fdatasync(fd)
            for peer in peers:
                await peer.read()
            for sub in subscribers:
                await sub.send(record)
            await conn.send(b"ack")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(handle, listeners)


async def measure(port: int, seconds: float, rate: int) -> dict[str, float]:
    """Send -> subscriber latency (us) of ``seconds * rate`` records, each value its send time."""
    n = int(seconds * rate)
    latencies: list[float] = []
    producer = Conn(socket.create_connection(("127.0.0.1", port)))
    consumer = Conn(socket.create_connection(("127.0.0.1", port)))
    await producer.send(b"produce")
    await consumer.send(b"subscribe")
    done, subscribed = trio.Event(), trio.Event()

    async def consume() -> None:
        while True:
            frame = await consumer.read()
            if frame == b"ok":  # the subscription, or the answer to an acknowledgement
                subscribed.set()
                continue
            latencies.append((time.perf_counter_ns() - int(frame)) / 1000)
            await consumer.send(b"next")
            if len(latencies) == n:
                done.set()

    async def answers() -> None:
        while True:
            await producer.read()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        nursery.start_soon(answers)
        await subscribed.wait()
        await paced_sends(n, rate, lambda sent: producer.send(b"%d" % sent))
        with trio.move_on_after(30):
            await done.wait()
        nursery.cancel_scope.cancel()
    return latency_summary(latencies, n)


def start_server(data: Path, followers: list[int]) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, __file__, "--serve", str(data)]
    if followers:
        cmd += ["--followers", ",".join(map(str, followers))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        stop_popen(proc)
        raise RuntimeError(f"the floor's server did not start: {line!r}")
    return proc, int(line)


def run_floor(base: Path, rf: int, seconds: float, rate: int) -> dict[str, float]:
    procs = []
    try:
        followers = []
        for i in range(rf - 1):
            proc, port = start_server(base / f"follower-{i}.log", [])
            procs.append(proc)
            followers.append(port)
        proc, port = start_server(base / "leader.log", followers)
        procs.append(proc)
        return trio.run(measure, port, seconds, rate)
    finally:
        for proc in reversed(procs):
            stop_popen(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rf", default="1,3", help="replication factors (comma-separated)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--followers", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        followers = [int(p) for p in args.followers.split(",") if p]
        try:
            trio.run(serve, Path(args.serve), followers)
        except KeyboardInterrupt:
            pass
        return 0
    rfs = [int(x) for x in args.rf.split(",")]
    missing = redis_missing()
    if missing:
        print(f"Redis rows skipped: missing {missing}")
    results: dict[str, list[dict[str, float]]] = {}
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.seconds:g} s "
          f"at {args.rate} records/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="fluvial-floor-") as tmp:
        for r in range(args.rounds):
            for rf in rfs:
                base = Path(tmp) / f"floor-{r}-{rf}"
                base.mkdir()
                results.setdefault(f"floor RF={rf}", []).append(run_floor(base, rf, args.seconds, args.rate))
            if not missing:
                server = RedisServer(Path(tmp) / f"redis-{r}", "always")
                try:
                    results.setdefault("Redis appendfsync always", []).append(
                        redis_latency(server, f"floor-{r}", args.seconds, args.rate))
                finally:
                    server.stop()
    print("\n| target | send -> consumer p50 | p99 |\n| --- | ---: | ---: |")
    medians = {}
    for name, runs in results.items():
        p50s = [x["lat-p50"] for x in runs]
        medians[name] = statistics.median(p50s)
        print(f"| {name} | {median_range(p50s)} | {median_range([x['lat-p99'] for x in runs])} |")
    redis = medians.get("Redis appendfsync always")
    if redis:
        print()
        for rf in rfs:
            print(f"floor RF={rf} p50 / Redis-always p50: {medians[f'floor RF={rf}'] / redis:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
