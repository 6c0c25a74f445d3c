"""Part 2 of bench/fuzz.py: fuzz a live cluster's ports while a normal client keeps working.

``fluvial cluster start`` in a temporary FLUVIAL_HOME (1 SPU, ports chosen by the OS), a normal
client producing and consuming on one topic through ``fluvial.net.multiplexer`` (its latency is
measured before and during the attack), and fuzzers throwing mutated and garbage frames (from
bench/fuzz.py's corpus and mutator) at the SC and SPU public and private ports. ``run_live``
reports server processes that died or stopped answering, the servers' peak RSS (``VmHWM``), the
client's p50/p99, and internal errors the servers logged (a handler that raised). Run it through
``python bench/fuzz.py --skip-inproc``.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fluvial.errors import ErrorCode
from fluvial.pids import pid_alive
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as spa
from fluvial.protocol.batch import iter_batches
from fluvial.protocol.record import encode_batch

from fuzz import REGISTRIES, amplifying_frames, build_corpus, mutate


def _cli(home: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "fluvial.cli.main", *args], env=env, check=check,
                          capture_output=True, text=True, timeout=timeout)


def _proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass
class LiveReport:
    frames_sent: dict[str, int] = field(default_factory=Counter)
    connections: int = 0
    connect_failures: int = 0
    died: list[str] = field(default_factory=list)
    unresponsive: list[str] = field(default_factory=list)
    rss_kib: dict[str, int] = field(default_factory=dict)
    baseline_ms: list[float] = field(default_factory=list)
    attack_ms: list[float] = field(default_factory=list)
    consume_baseline_ms: list[float] = field(default_factory=list)
    consume_attack_ms: list[float] = field(default_factory=list)
    client_errors: list[str] = field(default_factory=list)
    produced: int = 0
    consumed: int = 0
    log_errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    attack_seconds: float = 0.0
    inventory: dict[str, int] = field(default_factory=dict)
    big_frame: tuple[int, float] | None = None  # (payload bytes, seconds until answered)
    spus: dict[int, str] = field(default_factory=dict)


class _LiveRun:
    """The live part; see ``run_live``."""

    def __init__(self, home: Path, members: list[dict], frames: int, seed: int, tls: dict | None):
        self.home, self.members, self.frames, self.tls = home, members, frames, tls
        self.rnd = random.Random(seed)
        self.report = LiveReport()
        corpus = build_corpus(random.Random(seed), per_class=4)
        self.seeds = {t: [s for s in corpus if s.target == t] for t in REGISTRIES}
        self.attack = None  # trio.Event set while the fuzzers run
        self.stop = None

    # -------------------------------------------------------------------------------- ports

    def ports(self) -> dict[str, tuple[int, str]]:
        sc = next(m for m in self.members if m["kind"] == "sc")
        spu = next(m for m in self.members if m["kind"] == "spu")
        return {"sc": (sc["public_port"], "sc"), "sc-private": (sc["private_port"], "sc-private"),
                "spu": (spu["public_port"], "spu"), "spu-private": (spu["private_port"], "spu-private")}

    def _ssl(self, target: str, member: bool):
        if self.tls is None:
            return None, None
        from fluvial.net.tls import client_ssl_context

        d = Path(self.tls["dir"])
        if member:
            ctx = client_ssl_context(d / "ca.crt", cert_file=d / "sc.crt", key_file=d / "sc.key")
        else:
            ctx = client_ssl_context(d / "ca.crt", cert_file=d / "client-admin.crt",
                                     key_file=d / "client-admin.key")
        return ctx, self.tls["domain"]

    async def open_raw(self, port: int, target: str):
        import trio

        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        ctx, name = self._ssl(target, target.endswith("private"))
        if ctx is None or self.rnd.random() < 0.05:  # sometimes plaintext to a TLS port
            return tcp
        tls = trio.SSLStream(tcp, ctx, server_hostname=name)
        await tls.do_handshake()
        return tls

    # -------------------------------------------------------------------------------- client

    async def setup_topic(self) -> int:
        from fluvial.net.multiplexer import open_connection

        port = self.ports()["sc"][0]
        ctx, name = self._ssl("sc", False)
        async with open_connection("127.0.0.1", port, ssl_context=ctx, server_hostname=name) as sc:
            await sc.handshake(timeout=30)
            st = await sc.call(sa.ObjectApiCreateRequest.of("bench-fuzz-clean", so.TopicSpec.computed(1, 1)),
                               timeout=60)
            if not st.error_code.ok and st.error_code.code != ErrorCode.TopicAlreadyExists:
                raise RuntimeError(f"cannot create the client's topic: {st}")
        return self.ports()["spu"][0]

    async def client(self, spu_port: int) -> None:
        """Produce one record at a time (acks 1) and consume them on a stream; record latencies."""
        import trio

        from fluvial.net.multiplexer import open_connection
        from fluvial.protocol.batch import iter_batches
        from fluvial.protocol.record import decode_batch

        ctx, name = self._ssl("spu", False)
        topic = "bench-fuzz-clean"
        rep = self.report
        async with open_connection("127.0.0.1", spu_port, ssl_context=ctx, server_hostname=name) as spu:
            await spu.handshake(timeout=30)
            deadline = trio.current_time() + 30
            while True:  # the partition may need a moment to become leader
                resp = await spu.call(spa.ProduceRequest(None, spa.Isolation.ReadUncommitted, 5000, [
                    spa.TopicProduceData(topic, [spa.PartitionProduceData(
                        0, encode_batch([struct.pack(">d", time.time())]))])]), timeout=30)
                if resp.responses[0].partitions[0].error_code.ok:
                    break
                if trio.current_time() > deadline:
                    raise RuntimeError(f"the client's topic never became writable: {resp}")
                await trio.sleep(0.1)

            async def consume() -> None:
                req = spa.StreamFetchRequest(topic, 0, 0, max_bytes=1 << 20)
                async with spu.open_stream(req) as stream:
                    async for msg in stream:
                        now = time.time()
                        records = msg.partition.records
                        next_offset = None
                        for pos, h in iter_batches(records, verify_crc=False):
                            rep.consumed += h.record_count
                            next_offset = h.next_offset
                            for r in decode_batch(records, pos, verify_crc=False).records:
                                sent = struct.unpack(">d", r.value)[0]
                                (rep.consume_attack_ms if self.attack.is_set()
                                 else rep.consume_baseline_ms).append((now - sent) * 1000)
                        if next_offset is not None:  # acknowledge, so the SPU sends more
                            await spu.call(spa.UpdateOffsetsRequest(
                                [spa.OffsetUpdate(next_offset, msg.stream_id)]), timeout=10)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    batch = encode_batch([struct.pack(">d", time.time())])
                    try:
                        resp = await spu.call(spa.ProduceRequest(None, spa.Isolation.ReadUncommitted, 5000, [
                            spa.TopicProduceData(topic, [spa.PartitionProduceData(0, batch)])]), timeout=10)
                        err = resp.responses[0].partitions[0].error_code
                        if not err.ok:
                            rep.client_errors.append(f"produce: {err.message}")
                    except Exception as e:  # noqa: BLE001 - reported
                        rep.client_errors.append(f"produce: {type(e).__name__}: {e}")
                        break
                    ms = (time.perf_counter() - t0) * 1000
                    (rep.attack_ms if self.attack.is_set() else rep.baseline_ms).append(ms)
                    rep.produced += 1
                    await trio.sleep(0.005)
                # let the consumer catch up with the last records, then stop it
                with trio.move_on_after(5):
                    while rep.consumed < rep.produced:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

    # -------------------------------------------------------------------------------- fuzzers

    def malformed_frames(self, target: str) -> list[bytes]:
        """1..12 frames for one connection: mutated valid requests for ``target``'s API, and now
        and then raw garbage, a negative or huge size prefix, or a frame cut short."""
        rnd = self.rnd
        pool = self.seeds[target]
        out = []
        for _ in range(rnd.randint(1, 12)):
            roll = rnd.random()
            if roll < 0.03:
                out.append(rnd.randbytes(rnd.randint(1, 64)))
            elif roll < 0.05:
                out.append(struct.pack(">i", rnd.choice((-1, -(2**31), 2**31 - 1, 1 << 27))))
            else:
                s = rnd.choice(pool)
                data = mutate(s.data, rnd, keep=s.keep, splice=lambda: rnd.choice(pool).data)
                prefix = len(data)
                if rnd.random() < 0.03:
                    prefix += rnd.choice((1, 100))  # the frame never completes
                out.append(struct.pack(">i", prefix) + data)
        return out

    async def fuzzer(self, target: str, port: int, quota: int) -> None:
        import trio

        rep = self.report
        while rep.frames_sent[target] < quota and not self.stop.is_set():
            frames = self.malformed_frames(target)
            try:
                stream = await self.open_raw(port, target)
            except (OSError, trio.BrokenResourceError) as e:
                rep.connect_failures += 1
                if rep.connect_failures < 5:
                    print(f"  connect to {target} failed: {e!r}")
                await trio.sleep(0.05)
                continue
            rep.connections += 1
            try:
                for f in frames:
                    await stream.send_all(f)
                    rep.frames_sent[target] += 1
                with trio.move_on_after(0.02):  # read a little of what comes back
                    while await stream.receive_some(65536):
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the server closed a connection that sent garbage: expected
            finally:
                await trio.aclose_forcefully(stream)

    async def big_frame(self, kib: int) -> None:
        """One valid, amplifying FetchOffsets frame of ``kib`` KiB at the SPU's public port; how
        long until it is answered is reported (meanwhile the client's latency shows the stall)."""
        import trio

        _target, payload = amplifying_frames(kib * 1024)["SPU FetchOffsets, empty topics"]
        stream = await self.open_raw(self.ports()["spu"][0], "spu")
        t0 = time.perf_counter()
        try:
            await stream.send_all(struct.pack(">i", len(payload)) + payload)
            with trio.move_on_after(300):
                got = 0
                while got < 4:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    got += len(data)
            self.report.big_frame = (len(payload), time.perf_counter() - t0)
        finally:
            await trio.aclose_forcefully(stream)

    async def health(self) -> None:
        """Every 0.5 s: are the processes alive, and does every port answer ApiVersions?"""
        import trio

        from fluvial.net.multiplexer import open_connection

        rep = self.report
        while not self.stop.is_set():
            for m in self.members:
                name = "sc" if m["kind"] == "sc" else f"spu-{m['id']}"
                if not pid_alive(m["pid"]) and name not in rep.died:
                    rep.died.append(name)
            for target, (port, _) in self.ports().items():
                ctx, hostname = self._ssl(target, target.endswith("private"))
                try:
                    with trio.fail_after(5):
                        async with open_connection("127.0.0.1", port, ssl_context=ctx,
                                                   server_hostname=hostname) as c:
                            await c.handshake()
                except Exception as e:  # noqa: BLE001 - reported
                    msg = f"{target}: {type(e).__name__}: {e}"
                    if msg not in rep.unresponsive:
                        rep.unresponsive.append(msg)
            with trio.move_on_after(0.5):
                await self.stop.wait()

    async def inventory(self) -> None:
        """What the attack left in the SC's store: objects per kind, and the SPUs' states."""
        from fluvial.net.multiplexer import open_connection

        ctx, name = self._ssl("sc", False)
        async with open_connection("127.0.0.1", self.ports()["sc"][0], ssl_context=ctx,
                                   server_hostname=name) as sc:
            await sc.handshake(timeout=10)
            for spec in (so.TopicSpec, so.PartitionSpec, so.SpuSpec, so.CustomSpuSpec,
                         so.SmartModuleSpec, so.TableFormatSpec, so.SpuGroupSpec):
                resp = await sc.call(sa.ObjectApiListRequest.of(spec), timeout=30)
                self.report.inventory[spec.LABEL] = len(resp.items)
                if spec is so.SpuSpec:
                    self.report.spus = {m.spec.id: m.status.resolution.name for m in resp.items}

    async def main(self, baseline_seconds: float, concurrency: int, big_frame_kib: int = 0) -> None:
        import trio

        self.attack, self.stop = trio.Event(), trio.Event()
        spu_port = await self.setup_topic()
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.client, spu_port)
            nursery.start_soon(self.health)
            await trio.sleep(baseline_seconds)
            self.attack.set()
            attack_started = time.perf_counter()
            ports = self.ports()
            share = math.ceil(self.frames / len(ports))
            async with trio.open_nursery() as fuzzers:
                if big_frame_kib:
                    fuzzers.start_soon(self.big_frame, big_frame_kib)
                for target, (port, _) in ports.items():
                    for _ in range(concurrency):
                        fuzzers.start_soon(self.fuzzer, target, port, share)
            self.report.attack_seconds = time.perf_counter() - attack_started
            self.stop.set()
        self.report.seconds = time.perf_counter() - started
        try:
            await self.inventory()
        except Exception as e:  # noqa: BLE001 - reported
            self.report.unresponsive.append(f"sc inventory after the attack: {type(e).__name__}: {e}")


def run_live(frames: int, seed: int, *, tls: bool, concurrency: int = 4,
             baseline_seconds: float = 3.0, keep_home: bool = False,
             big_frame_kib: int = 0) -> LiveReport:
    """Start a 1-SPU cluster in a temp FLUVIAL_HOME, attack it, shut it down; see the docstring."""
    import trio

    home = Path(tempfile.mkdtemp(prefix="fluvial-fuzz-"))
    args = ["cluster", "start", "--sc-port", "0", "--spus", "1"]
    help_text = _cli(home, "cluster", "start", "--help").stdout
    if "--no-tls" in help_text:
        args.append("--tls" if tls else "--no-tls")
    elif tls:
        raise SystemExit("this `fluvial cluster start` has no --tls option")
    try:
        out = _cli(home, *args)
        print(f"  {out.stdout.strip()}")
        state = json.loads((home / "cluster.json").read_text())
        members = state["members"]
        tls_info = state.get("tls")
        if tls and not tls_info:
            raise SystemExit("cluster.json says the cluster runs without TLS")
        run = _LiveRun(home, members, frames, seed, tls_info)
        trio.run(run.main, baseline_seconds, concurrency, big_frame_kib)
        rep = run.report
        for m in members:
            name = "sc" if m["kind"] == "sc" else f"spu-{m['id']}"
            hwm = _proc_status_kib(m["pid"], "VmHWM")
            if hwm is not None:
                rep.rss_kib[name] = hwm
            if not pid_alive(m["pid"]) and name not in rep.died:
                rep.died.append(name)
        for log in sorted((home / "logs").glob("*.log")):
            rep.log_errors.update(log_errors(log.stem, log.read_text(errors="replace")))
        return rep
    finally:
        _cli(home, "cluster", "shutdown", check=False)
        if keep_home:
            print(f"  cluster home kept at {home}")
        else:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) ", re.M)
_ADDRESS = re.compile(r"\(?'?127\.0\.0\.1'?(?:, |:)\d+\)?|\[Errno \d+\]")


def log_errors(member: str, text: str) -> Counter:
    """ERROR records of one server log, keyed by message (addresses removed) and the last line
    of their traceback: what a handler raised."""
    out: Counter = Counter()
    starts = [m for m in _RECORD_START.finditer(text)]
    for m, nxt in zip(starts, starts[1:] + [None]):
        if m.group(1) not in ("ERROR", "CRITICAL"):
            continue
        record = text[m.end():nxt.start() if nxt else len(text)].rstrip().splitlines()
        message = _ADDRESS.sub("*", record[0])
        last = record[-1].strip() if len(record) > 1 else ""
        out[f"{member}: {message} | {_ADDRESS.sub('*', last)[:200]}"] += 1
    return out


def print_live(rep: LiveReport) -> None:
    total = sum(rep.frames_sent.values())
    print(f"\n== live: {total:,} malformed frames over {rep.connections:,} connections in "
          f"{rep.attack_seconds:.1f}s ({', '.join(f'{k} {v:,}' for k, v in sorted(rep.frames_sent.items()))})")
    print(f"  processes died: {rep.died or 'none'}; ports that stopped answering: "
          f"{rep.unresponsive or 'none'}; failed connects: {rep.connect_failures}")
    print(f"  peak RSS (VmHWM): {', '.join(f'{k} {v / 1024:.1f} MiB' for k, v in rep.rss_kib.items())}")
    for label, base, attack in (("produce RTT", rep.baseline_ms, rep.attack_ms),
                                ("end-to-end ", rep.consume_baseline_ms, rep.consume_attack_ms)):
        print(f"  client {label}: baseline p50 {_percentile(base, .5):.2f} ms p99 "
              f"{_percentile(base, .99):.2f} ms (n={len(base)}); under attack p50 "
              f"{_percentile(attack, .5):.2f} ms p99 {_percentile(attack, .99):.2f} ms (n={len(attack)})")
    print(f"  client: {rep.produced} produced, {rep.consumed} consumed, "
          f"{len(rep.client_errors)} errors {rep.client_errors[:5]}")
    if rep.big_frame:
        size, seconds = rep.big_frame
        print(f"  one valid {size / 1024:.0f} KiB FetchOffsets frame (empty topics) was answered "
              f"after {seconds:.2f}s")
    print(f"  left in the SC after the attack: {rep.inventory}; SPUs {rep.spus}")
    print(f"  server log errors: {sum(rep.log_errors.values())} ({len(rep.log_errors)} distinct)")
    for line, n in rep.log_errors.most_common(25):
        print(f"    x{n} {line}")
