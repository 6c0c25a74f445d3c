"""Produce and consume records/s against a local fluvial cluster (RF=1, fsync before ack).

Starts its own cluster in a temp FLUVIAL_HOME (ports chosen by the OS) and measures:
  * the official fluvio client: send_string x N then flush; consume from the beginning;
  * fluvial's protocol layer directly: ProduceRequests of 1,000-record batches (several in
    flight), and a StreamFetch that reads everything back.

Usage: python bench/cluster.py [--records 200000] [--size 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from fluvial.net.multiplexer import open_connection
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol import spu_api as api
from fluvial.protocol.batch import iter_batches
from fluvial.protocol.record import encode_batch


def cli(home: Path, *args: str) -> str:
    env = dict(os.environ, FLUVIAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "fluvial.cli.main", *args], env=env, check=True,
                          capture_output=True, text=True).stdout


async def create(endpoint: str, name: str) -> int:
    host, port = endpoint.split(":")
    async with open_connection(host, int(port)) as sc:
        await sc.handshake()
        st = await sc.call(sa.ObjectApiCreateRequest.of(name, so.TopicSpec.computed(1, 1)), timeout=60)
        assert st.error_code.ok, st
        spus = await sc.call(sa.ObjectApiListRequest.of(so.SpuSpec))
        parts = await sc.call(sa.ObjectApiListRequest.of(so.PartitionSpec))
        leader = next(p.spec.leader for p in parts.items if p.name == f"{name}-0")
        return next(s.spec.public_endpoint.port for s in spus.items if s.spec.id == leader)


async def protocol_layer(endpoint: str, n: int, size: int) -> tuple[float, float]:
    port = await create(endpoint, "bench-proto")
    value = b"x" * size
    batch = encode_batch([value] * 1000)
    batches = n // 1000
    async with open_connection("127.0.0.1", port) as spu:
        await spu.handshake()
        start = time.perf_counter()
        sem = trio.Semaphore(8)

        async def one():
            async with sem:
                req = api.ProduceRequest(None, api.Isolation.ReadUncommitted, 30000, [
                    api.TopicProduceData("bench-proto", [api.PartitionProduceData(0, batch)])])
                resp = await spu.call(req, timeout=60)
                assert resp.responses[0].partitions[0].error_code.ok

        async with trio.open_nursery() as nursery:
            for _ in range(batches):
                nursery.start_soon(one)
        produce = batches * 1000 / (time.perf_counter() - start)

        start = time.perf_counter()
        got = 0
        async with spu.open_stream(api.StreamFetchRequest("bench-proto", 0, 0, max_bytes=4 << 20)) as s:
            async for msg in s:
                recs = msg.partition.records
                last = 0
                for _, h in iter_batches(recs, verify_crc=False):
                    got += h.record_count
                    last = h.next_offset
                if got >= batches * 1000:
                    break
                await spu.call(api.UpdateOffsetsRequest([api.OffsetUpdate(last, msg.stream_id)]))
        consume = got / (time.perf_counter() - start)
    return produce, consume


def official_client(config: Path, n: int, size: int) -> tuple[float, float]:
    code = f"""
import time, json
from fluvio import Fluvio, FluvioAdmin, Offset, ConsumerConfigExtBuilder
FluvioAdmin.connect().create_topic("bench-official")
f = Fluvio.connect()
p = f.topic_producer("bench-official")
v = "x" * {size}
t = time.perf_counter()
for _ in range({n}):
    p.send_string(v)
p.flush()
produce = {n} / (time.perf_counter() - t)
b = ConsumerConfigExtBuilder("bench-official"); b.offset_start(Offset.beginning()); b.disable_continuous(True)
t = time.perf_counter(); c = sum(1 for _ in f.consumer_with_config(b.build()))
print(json.dumps([produce, c / (time.perf_counter() - t)]))
"""
    env = dict(os.environ, FLV_PROFILE_PATH=str(config))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        home = Path(tmp)
        cli(home, "cluster", "start", "--spus", "1", "--sc-port", "0", "--no-tls")
        try:
            endpoint = next(line.split('"')[1] for line in (home / "config").read_text().splitlines()
                            if line.startswith("endpoint"))
            p1, c1 = official_client(home / "config", args.records, args.size)
            p2, c2 = trio.run(protocol_layer, endpoint, args.records, args.size)
        finally:
            cli(home, "cluster", "shutdown")
    print(f"records: {args.records} x {args.size} B, RF=1, fsync before ack (group commit), plaintext")
    print(f"{'client':<28}{'produce rec/s':>16}{'consume rec/s':>16}")
    print(f"{'official fluvio 0.21.0':<28}{p1:>16,.0f}{c1:>16,.0f}")
    print(f"{'fluvial protocol layer':<28}{p2:>16,.0f}{c2:>16,.0f}")


if __name__ == "__main__":
    main()
