"""Highly available SC (docs/ha.md): controller failover time, and topic create latency file vs etcd.

Starts its own clusters in temp FLUVIAL_HOMEs (ports chosen by the OS, no TLS):
  * create: ``fluvial cluster start --spus 1`` (metadata in files) and ``--spus 1 --sc 3 --etcd``;
    N topic creates (1 partition, RF 1) one after the other through the first SC; p50/p99 each
    and the ratio etcd/file;
  * failover: the ``--sc 3 --etcd`` cluster; K times: kill -9 the SC holding the controller
    key, then time (a) until another SC holds it and (b) until a topic create through a
    surviving SC succeeds (the SPU has moved to the new controller); then ``cluster resume``.

Usage: python bench/ha.py [--creates 50] [--kills 20] [--lease 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.sc.election import election_key
from fluvial.sc.etcd import DEFAULT_PREFIX, EtcdClient, EtcdError


def cli(home: Path, *args: str) -> str:
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "fluvial.cli.main", *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def members(home: Path) -> list[dict]:
    return json.loads((home / "cluster.json").read_text())["members"]


def scs(home: Path) -> list[dict]:
    return [m for m in members(home) if m["kind"] == "sc"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def create(port: int, name: str, timeout: float = 30.0) -> bool:
    try:
        async with open_connection("127.0.0.1", port) as sc:
            await sc.handshake(timeout=timeout)
            st = await sc.call(sa.ObjectApiCreateRequest.of(name, so.TopicSpec.computed(1, 1),
                                                            timeout_ms=int(timeout * 1000)), timeout=timeout + 5)
            return st.error_code.ok
    except Exception:  # noqa: BLE001 - an unreachable SC is a failed attempt
        return False


async def create_latencies(port: int, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        assert await create(port, f"{tag}-{i}"), f"create {tag}-{i} failed"
        out.append(time.perf_counter() - t)
    return out


def controller(home: Path) -> dict | None:
    etcd = [("127.0.0.1", m["public_port"]) for m in members(home) if m["kind"] == "etcd"]
    try:
        kv = EtcdClient(etcd, timeout=1.0).get(election_key(DEFAULT_PREFIX))
    except EtcdError:
        return None
    if kv is None:
        return None
    port = int(kv.value.decode().rpartition(":")[2])
    return next((m for m in scs(home) if m["public_port"] == port), None)


async def failovers(home: Path, kills: int) -> tuple[list[float], list[float]]:
    elected, usable = [], []
    for k in range(kills):
        old = None
        while old is None:
            old = controller(home)
            await trio.sleep(0.05)
        os.kill(old["pid"], signal.SIGKILL)
        t0 = time.perf_counter()
        while True:
            now = controller(home)
            if now is not None and now["pid"] != old["pid"]:
                break
            await trio.sleep(0.01)
        elected.append(time.perf_counter() - t0)
        survivor = next(m for m in scs(home) if m["pid"] != old["pid"])
        while not await create(survivor["public_port"], f"after-kill-{k}", timeout=5):
            await trio.sleep(0.01)
        usable.append(time.perf_counter() - t0)
        await trio.to_thread.run_sync(cli, home, "cluster", "resume")
        print(f"  kill {k + 1}: elected {elected[-1]:.2f} s, topic create works {usable[-1]:.2f} s", flush=True)
    return elected, usable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--creates", type=int, default=50)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--lease", type=float, default=3.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluvial-bench-ha-") as tmp:
        file_home, etcd_home = Path(tmp) / "file", Path(tmp) / "etcd"
        try:
            cli(file_home, "cluster", "start", "--spus", "1", "--no-tls", "--sc-port", "0")
            cli(etcd_home, "cluster", "start", "--spus", "1", "--no-tls", "--sc-port", "0", "--sc", "3",
                "--etcd", "--controller-lease", str(args.lease))
            f = trio.run(create_latencies, scs(file_home)[0]["public_port"], args.creates, "file")
            e = trio.run(create_latencies, scs(etcd_home)[0]["public_port"], args.creates, "etcd")
            print(f"topic create, {args.creates} one after the other (1 partition, RF 1):")
            for name, xs in (("file", f), ("etcd, 3 SCs", e)):
                print(f"  {name:12} p50 {pct(xs, .5) * 1000:7.1f} ms  p99 {pct(xs, .99) * 1000:7.1f} ms")
            print(f"  etcd/file    p50 x{pct(e, .5) / pct(f, .5):.2f}  p99 x{pct(e, .99) / pct(f, .99):.2f}")
            print(f"controller failover, {args.kills} kill -9 of the controller SC (lease {args.lease:g} s):")
            elected, usable = trio.run(failovers, etcd_home, args.kills)
            print(f"  new controller elected   p50 {pct(elected, .5):.2f} s  p99 {pct(elected, .99):.2f} s"
                  f"  (mean {statistics.mean(elected):.2f} s)")
            print(f"  topic create works again p50 {pct(usable, .5):.2f} s  p99 {pct(usable, .99):.2f} s"
                  f"  (mean {statistics.mean(usable):.2f} s)")
        finally:
            for home in (file_home, etcd_home):
                if (home / "cluster.json").exists():
                    subprocess.run([sys.executable, "-m", "fluvial.cli.main", "cluster", "shutdown"],
                                   env=dict(os.environ, FLUVIAL_HOME=str(home)), capture_output=True)


if __name__ == "__main__":
    main()
