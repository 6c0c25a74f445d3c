"""Log compaction throughput, measured in one run on one disk.

    python bench/compaction.py [--mib 32] [--keys 10000] [--record-bytes 100] [--variable-keys]
                               [--records-per-batch 16] [--compression none] [--rounds 3] [--dir PATH]

Builds a compacted-topic replica of ``--mib`` MiB of keyed records (keys drawn uniformly from
``--keys``, so most records are superseded), sealed in 1 MiB segments, then measures in turns:

* fluvial: one whole ``Replica.compact`` pass (decode, decide, re-encode, write and fsync the
  cleaned copies, swap them in), on a fresh copy of the replica each round;
* raw copy: read every sealed segment and write it to a new file with one fsync per file (the
  I/O floor of any cleaner that rewrites the log).

Prints MB/s of log cleaned (input bytes per second) for both, the ratio, and how much the log
shrank. Each figure is the median over the rounds. The scratch directory is created next to
this file (the repository's disk), never in a tmpfs, and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

from fluvial.durable import write_synced
from fluvial.protocol.record import Compression, ProducerRecord, encode_batch
from fluvial.storage import Replica, ReplicaConfig

MIB = 1024 * 1024


def config() -> ReplicaConfig:
    return ReplicaConfig(segment_max_bytes=MIB, preallocate_bytes=0, cleanup_policy="compact",
                         min_cleanable_dirty_ratio=0.0, flush="none")


def build(directory: str, mib: int, keys: int, record_bytes: int, per_batch: int, codec: int,
          variable_keys: bool = False) -> None:
    rng = random.Random(7)
    r = Replica.open(directory, "bench", 0, config())
    ts = int(time.time() * 1000) - 60_000
    while r.size_bytes() < mib * MIB:
        records = [ProducerRecord(rng.randbytes(record_bytes // 2).hex().encode()[:record_bytes],
                                  (f"key-{rng.randrange(keys)}" if variable_keys else
                                   f"key-{rng.randrange(keys):08d}").encode()) for _ in range(per_batch)]
        r.append(encode_batch(records, first_timestamp=ts, compression=codec), leader_epoch=0)
    r.set_hw(r.leo)
    r.checkpoint_hw()
    r.close()


def run_fluvial(src: str, scratch: str) -> tuple[float, int, int]:
    work = os.path.join(scratch, "fluvial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    r = Replica.open(work, "bench", 0, config())
    started = time.perf_counter()
    plan = r.compact()
    seconds = time.perf_counter() - started
    r.close()
    return seconds, plan.bytes_in, plan.bytes_out


def run_raw(src: str, scratch: str) -> tuple[float, int]:
    work = os.path.join(scratch, "raw")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    part = os.path.join(src, "bench-0")
    names = sorted(n for n in os.listdir(part) if n.endswith(".log"))[:-1]  # sealed only
    started = time.perf_counter()
    total = 0
    for n in names:
        with open(os.path.join(part, n), "rb") as f:
            data = f.read()
        write_synced(os.path.join(work, n), data)
        total += len(data)
    return time.perf_counter() - started, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--records-per-batch", type=int, default=16)
    ap.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    ap.add_argument("--variable-keys", action="store_true",
                    help="keys of varying length (key-7, key-1234): the decoder's slow path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    codec = {"none": Compression.None_, "gzip": Compression.Gzip, "snappy": Compression.Snappy,
             "lz4": Compression.Lz4, "zstd": Compression.Zstd}[args.compression]
    scratch = tempfile.mkdtemp(prefix="compaction-bench-", dir=args.dir)
    try:
        src = os.path.join(scratch, "src")
        build(src, args.mib, args.keys, args.record_bytes, args.records_per_batch, codec, args.variable_keys)
        fl, raw = [], []
        for _ in range(args.rounds):
            fl.append(run_fluvial(src, scratch))
            raw.append(run_raw(src, scratch))
        f_sec = statistics.median(s for s, _, _ in fl)
        bytes_in, bytes_out = fl[0][1], fl[0][2]
        r_sec = statistics.median(s for s, _ in raw)
        f_rate, r_rate = bytes_in / f_sec / 1e6, raw[0][1] / r_sec / 1e6
        print(f"log: {bytes_in / MIB:.1f} MiB sealed, {args.keys} {'variable' if args.variable_keys else 'fixed'}"
              f"-length keys, {args.record_bytes}-byte records, "
              f"{args.records_per_batch} per batch, compression {args.compression}")
        print(f"fluvial compaction: {f_rate:8.1f} MB/s cleaned  ({f_sec:.2f} s; log {bytes_in / MIB:.1f} -> "
              f"{bytes_out / MIB:.1f} MiB, {bytes_out / bytes_in:.1%} kept)")
        print(f"raw copy + fsync:   {r_rate:8.1f} MB/s           ({r_sec:.2f} s)")
        print(f"ratio fluvial/raw:  {f_rate / r_rate:8.1%}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
