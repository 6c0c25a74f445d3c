"""Record-batch codec speed: µs per record to encode and decode, and MB/s of header+CRC checks.

Run: ``python bench/codec.py`` (about half a minute). Records are 100-byte values with no key,
1000 per batch; each figure is the best of several repeats.
"""

from __future__ import annotations

import os
import random
import sys
import time

from fluvial.protocol.batch import iter_batches
from fluvial.protocol.record import Compression, ProducerRecord, decode_batch, encode_batch

RECORDS_PER_BATCH = 1000
VALUE_BYTES = 100
VALIDATION_BYTES = 64 * 1024 * 1024
TIMESTAMP_MS = 1_700_000_000_000
REPEATS = 25


def best_seconds(fn, *, repeat: int, number: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def text_values(n: int, rng: random.Random) -> list[bytes]:
    """Compressible but not trivial values: words from a small vocabulary."""
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(500)]
    out = []
    for _ in range(n):
        v = b" ".join(rng.choice(words) for _ in range(30))
        out.append(v[:VALUE_BYTES].ljust(VALUE_BYTES, b"."))
    return out


def main() -> None:
    rng = random.Random(0)
    values = text_values(RECORDS_PER_BATCH, rng)
    keyed = [(b"key-%d" % i, v) for i, v in enumerate(values)]
    records = [ProducerRecord(v, None, i // 100) for i, v in enumerate(values)]
    n = RECORDS_PER_BATCH
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {n} records of "
          f"{VALUE_BYTES} B per batch; µs per record (best of {REPEATS} runs)")
    print(f"{'codec':<8} {'input':<14} {'batch B':>8} {'encode':>8} {'decode':>8}")
    cases = [(Compression.None_, "bytes", values), (Compression.None_, "(key, value)", keyed),
             (Compression.None_, "ProducerRecord", records)]
    cases += [(c, "bytes", values) for c in list(Compression)[1:]]
    for codec, label, recs in cases:
        number = 10
        batch = encode_batch(recs, first_timestamp=TIMESTAMP_MS, compression=codec)
        assert [r.value for r in decode_batch(batch).records] == values
        enc = best_seconds(lambda: encode_batch(recs, first_timestamp=TIMESTAMP_MS, compression=codec),
                           repeat=REPEATS, number=number)
        dec = best_seconds(lambda: decode_batch(batch), repeat=REPEATS, number=number)
        print(f"{codec.name:<8} {label:<14} {len(batch):>8} {enc / n * 1e6:>8.3f} {dec / n * 1e6:>8.3f}")

    one = encode_batch(values, first_timestamp=TIMESTAMP_MS)
    copies = VALIDATION_BYTES // len(one)
    record_set = one * copies

    def validate() -> int:
        count = 0
        for _pos, _h in iter_batches(record_set):
            count += 1
        return count

    assert validate() == copies
    for verify, label in ((True, "with CRC"), (False, "no CRC")):
        if verify:
            secs = best_seconds(validate, repeat=3, number=1)
        else:
            secs = best_seconds(lambda: sum(1 for _ in iter_batches(record_set, verify_crc=False)),
                                repeat=3, number=1)
        print(f"iter_batches {label}: {len(record_set) / secs / 1e6:,.0f} MB/s "
              f"({copies} batches, {len(record_set) / 2**20:.0f} MiB, {secs * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
