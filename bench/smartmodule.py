"""SmartModules: records/s through a map and a filter module vs plain consume, in one run, and the
compile cache's effect.

What it starts (and stops): a local fluvial cluster (``fluvial cluster start --spus 1 --no-tls``)
in a temporary directory. The modules are the WAT test modules (tests/smartmodule/modules),
compiled with wasmtime here and sent AdHoc (gzipped) with each consume.

What it measures:

* consume N records of ~100 B from the beginning (``continuous=False``, ``receive_many``): plain,
  through ``map`` (upper-cases every value: every record goes into wasm and back out), through
  ``filter`` (keeps the eighth whose value contains "a"). Best of ``--repeat``; the ratio to plain.
* the compile cache: in this process, ``Engine.module`` of the map module cold (compiled) and
  again (found by its SHA-256); and on the cluster, the time to the first record of a stream
  whose module the SPU has never seen vs one it has compiled before.

Usage: python bench/smartmodule.py [--records 200000] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio
import wasmtime

import fluvial
from fluvial.client.smartmodule import SmartModule
from fluvial.smartmodule.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from client import fluvial_cli  # noqa: E402  (bench/client.py: the CLI in a subprocess)


def _test_modules():
    """tests/smartmodule/modules (this script's own name shadows the ``smartmodule`` package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sm_test_modules", ROOT / "tests" / "smartmodule" / "modules" / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_MODULES = _test_modules()
wasm, wat = _MODULES.wasm, _MODULES.wat


async def consume(fl, topic: str, chain: list) -> tuple[float, int]:
    start = time.perf_counter()
    n = 0
    async with fl.consumer(topic, continuous=False, smartmodules=chain) as c:
        while batch := await c.receive_many():
            n += len(batch)
    return time.perf_counter() - start, n


async def first_record(fl, topic: str, chain: list) -> float:
    """Open a stream with a small max_bytes (one batch per response) and wait for its first
    records: mostly the module's compile (if new to the SPU) and instantiation."""
    start = time.perf_counter()
    async with fl.consumer(topic, continuous=False, smartmodules=chain, max_bytes=1) as c:
        await c.receive_many()
        return time.perf_counter() - start


async def run(endpoint: str, args) -> None:
    async with fluvial.connect(endpoint=endpoint, request_timeout=60) as fl:
        topic = "sm-bench"
        await fl.admin.create_topic(topic)
        async with fl.producer(topic) as p:
            for i in range(0, args.records, 1000):
                await p.send_many([b"record-%08d-%s" % (j, b"abcdefgh"[j % 8:j % 8 + 1] * 80)
                                   for j in range(i, min(i + 1000, args.records))])
        rows = {}
        chains = {"plain": [], "map": [SmartModule(wasm=wasm("map"))],
                  "filter": [SmartModule(wasm=wasm("filter"))]}
        for _ in range(args.repeat):
            for name, chain in chains.items():
                seconds, n = await consume(fl, topic, chain)
                if name not in rows or seconds < rows[name][0]:
                    rows[name] = (seconds, n)
        plain = args.records / rows["plain"][0]
        print(f"\nconsume {args.records:,} records of ~100 B (best of {args.repeat}), one SPU, no TLS")
        print(f"{'chain':8} {'records in/s':>14} {'records out':>12} {'vs plain':>9}")
        for name, (seconds, n) in rows.items():
            rate = args.records / seconds
            print(f"{name:8} {rate:14,.0f} {n:12,} {rate / plain:9.2f}")

        # the compile cache on the cluster: a module the SPU has not seen (a WAT variant with a
        # different name section compiles to other bytes) vs the same module again
        fresh = SmartModule(wasm=bytes(wasmtime.wat2wasm(
            wat("map").replace("(module", "(module $bench_%d" % os.getpid(), 1))))
        cold = await first_record(fl, topic, [fresh])
        warm = min([await first_record(fl, topic, [fresh]) for _ in range(3)])
        plain_open = min([await first_record(fl, topic, []) for _ in range(3)])
        print(f"\ntime to the first records of a stream: module new to the SPU {cold * 1000:.1f} ms, "
              f"compiled before {warm * 1000:.1f} ms, no module {plain_open * 1000:.1f} ms")


def local_cache() -> None:
    eng = Engine()
    payload = wasm("map")
    t = time.perf_counter()
    eng.module(payload)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(100):
        eng.module(payload)
    warm = (time.perf_counter() - t) / 100
    print(f"Engine.module(map, {len(payload)} B): compile {cold * 1e3:.2f} ms, cached {warm * 1e6:.1f} us "
          f"({cold / warm:.0f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    local_cache()
    home = Path(tempfile.mkdtemp(prefix="fluvial-sm-bench-", dir=args.dir))
    try:
        out = fluvial_cli(home, "cluster", "start", "--spus", "1", "--sc-port", "0", "--spu-port", "0",
                          "--no-tls")
        endpoint = out.split("SC at ", 1)[1].split(",", 1)[0]
        try:
            trio.run(run, endpoint, args)
        finally:
            fluvial_cli(home, "cluster", "shutdown")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
