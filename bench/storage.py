"""Storage throughput, measured in one run on one disk.

    python bench/storage.py [--mib 128] [--records-per-batch 16,64,256] [--record-bytes 1024]
                            [--writers 8] [--rounds 3] [--dir PATH]

Prints, for batches of ``records-per-batch`` records of ``record-bytes`` bytes (by default 16 KiB
batches, Fluvio's default batch size, and 64 KiB and 256 KiB ones):

* raw: sequential os.write of chunks the size of one batch, one fsync at the end (the disk's
  ceiling), and the same with an fsync every 8 chunks (what a perfect 8-writer group commit
  could reach);
* fluvial (a): Replica.append of the same batches, no per-append fsync, one flush at the end;
* fluvial (b): fsync before ack: 8 trio tasks each append a batch and wait until a flush
  (Replica.flush in a worker thread, batched with GroupCommit) covers it;
* read: Replica.read + read_bytes of everything, 1 MiB per read, first after a reopen (every
  sealed batch gets its CRC checked on this first read) and again (already verified). Reads
  come from the page cache.

Goals (issue core-2): (a) >= 70 % of raw, (b) >= 50 % of raw. The scratch directory is created
next to this file (the repository's disk), never in a tmpfs, and removed afterwards. The
measurements take turns, round after round, and each figure is the median over the rounds, so
that a busy neighbour on a shared disk slows raw and fluvial alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import trio

from fluvial.protocol.record import encode_batch
from fluvial.storage import GroupCommit, Replica, ReplicaConfig

MIB = 1024 * 1024
RUNS = 3


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts; "?" elsewhere)."""
    path = os.path.realpath(path)
    best, fstype = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                mount = fields[1].replace("\\040", " ")
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, fstype = mount, fields[2]
    except OSError:
        pass
    return fstype


def raw_write(directory: str, chunk: bytes, count: int, fsync_every: int | None) -> float:
    """MB/s of writing ``count`` chunks sequentially, fsyncing every ``fsync_every`` chunks and
    at the end."""
    path = os.path.join(directory, "raw")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for i in range(1, count + 1):
            os.write(fd, chunk)
            if fsync_every and i % fsync_every == 0:
                os.fdatasync(fd)
        os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return len(chunk) * count / elapsed / 1e6


def open_replica(directory: str, name: str) -> Replica:
    return Replica.open(directory, name, 0, ReplicaConfig(segment_max_bytes=128 * MIB))


def append_no_fsync(directory: str, batch: bytes, count: int) -> float:
    """MB/s of appending ``count`` batches, then one flush."""
    replica = open_replica(directory, "a")
    try:
        start = time.perf_counter()
        for _ in range(count):
            replica.append(batch, leader_epoch=0)
        replica.flush()
        elapsed = time.perf_counter() - start
    finally:
        replica.delete()
    return len(batch) * count / elapsed / 1e6


def append_group_commit(directory: str, batch: bytes, count: int, writers: int) -> tuple[float, float, list[float]]:
    """MB/s of ``writers`` trio tasks appending ``count`` batches in all, each acknowledged
    only once durable; also the mean appends per fsync and the ack latencies (s)."""
    replica = open_replica(directory, "b")
    gc = GroupCommit(replica.durable_leo)
    flushes = 0
    latencies: list[float] = []

    async def run_flushes() -> None:
        nonlocal flushes
        while True:
            durable = await trio.to_thread.run_sync(replica.flush)
            flushes += 1
            released, again = gc.flush_done(durable)
            for event in released:
                event.set()
            if not again:
                return

    async def writer(nursery: trio.Nursery, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            leo = replica.append(batch, leader_epoch=0).leo
            if not gc.covered(leo):
                event = trio.Event()
                if gc.add_waiter(leo, event):
                    nursery.start_soon(run_flushes)
                await event.wait()
            latencies.append(time.perf_counter() - t0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            per_writer = count // writers
            for _ in range(writers):
                nursery.start_soon(writer, nursery, per_writer)

    try:
        start = time.perf_counter()
        trio.run(main)
        elapsed = time.perf_counter() - start
        assert replica.durable_leo == replica.leo
        total = len(batch) * (count // writers) * writers
    finally:
        replica.delete()
    return total / elapsed / 1e6, (count // writers) * writers / max(flushes, 1), latencies


def read_all(directory: str, batch: bytes, count: int) -> tuple[float, float]:
    """MB/s of reading a log of ``count`` batches: first after a reopen, then again."""
    replica = open_replica(directory, "r")
    for _ in range(count):
        replica.append(batch, leader_epoch=0)
    replica.close()
    replica = open_replica(directory, "r")
    try:
        rates = []
        for _ in range(2):
            start = time.perf_counter()
            offset, total = 0, 0
            while offset < replica.leo:
                result = replica.read(offset, MIB)
                total += len(result.read_bytes())
                offset = result.next_offset
            rates.append(total / (time.perf_counter() - start) / 1e6)
    finally:
        replica.delete()
    return rates[0], rates[1]


def measure(scratch: str, batch: bytes, count: int, writers: int, rounds: int) -> dict:
    """Every figure for one batch size; the measurements take turns, round after round, so that
    a busy neighbour on the disk slows them alike; each figure is the median over the rounds."""
    runs: dict[str, list] = {"raw": [], "raw_group": [], "a": [], "b": [], "read": []}
    for _ in range(rounds):
        runs["raw"].append(raw_write(scratch, batch, count, None))
        runs["raw_group"].append(raw_write(scratch, batch, count, writers))
        runs["a"].append(append_no_fsync(scratch, batch, count))
        runs["b"].append(append_group_commit(scratch, batch, count, writers))
        runs["read"].append(read_all(scratch, batch, count))
    med = statistics.median
    latencies = sorted(x for r in runs["b"] for x in r[2])
    return {
        "raw": med(runs["raw"]),
        "raw_group": med(runs["raw_group"]),
        "a": med(runs["a"]),
        "b": med(r[0] for r in runs["b"]),
        "per_fsync": med(r[1] for r in runs["b"]),
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "read_first": med(r[0] for r in runs["read"]),
        "read_again": med(r[1] for r in runs["read"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=128, help="data written per measurement")
    parser.add_argument("--records-per-batch", default="16,64,256",
                        help="comma-separated; one set of figures each (16 KiB is Fluvio's default batch size)")
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=RUNS)
    parser.add_argument("--dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="where to create the scratch directory (default: next to this file)")
    args = parser.parse_args()

    fstype = filesystem_type(args.dir)
    if fstype == "tmpfs":
        print(f"{args.dir} is a tmpfs: pass --dir on a real disk", file=sys.stderr)
        return 2
    scratch = tempfile.mkdtemp(prefix="fluvial-bench-", dir=args.dir)
    print(f"scratch dir {scratch} ({fstype}); {args.mib} MiB per measurement; "
          f"median of {args.rounds} interleaved rounds; {args.writers} writers for (b)")
    w = args.writers
    try:
        for per_batch in (int(n) for n in args.records_per_batch.split(",")):
            batch = encode_batch([os.urandom(args.record_bytes) for _ in range(per_batch)])
            count = args.mib * MIB // len(batch)
            f = measure(scratch, batch, count, w, args.rounds)
            raw = f["raw"]
            print(f"\nbatches of {per_batch} x {args.record_bytes} B records ({len(batch)} bytes), {count} batches")
            print(f"  raw sequential write, one fsync at the end  {raw:8.1f} MB/s")
            print(f"  raw sequential write, fsync every {w} writes  {f['raw_group']:8.1f} MB/s")
            print(f"  (a) append, no per-append fsync             {f['a']:8.1f} MB/s  {f['a'] / raw:6.1%} of raw "
                  "(goal >= 70 %)")
            print(f"  (b) fsync before ack, {w} writers            {f['b']:8.1f} MB/s  {f['b'] / raw:6.1%} of raw "
                  f"(goal >= 50 %), {f['b'] / f['raw_group']:6.1%} of raw with fsync every {w}")
            print(f"      {f['per_fsync']:.1f} appends per fsync; ack latency p50 {f['p50_ms']:.2f} ms, "
                  f"p99 {f['p99_ms']:.2f} ms")
            print(f"  read, first after a reopen (CRC-checked)    {f['read_first']:8.1f} MB/s")
            print(f"  read, again                                 {f['read_again']:8.1f} MB/s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
