"""What the leader spends building one FetchReplicas answer (issue 20, RF=3 throughput): the
answer encoded into one buffer (``encode_response``, the records copied in) against the answer in
pieces (``internal_api.encode_fetch_replicas_response_parts``, the records as read), for answers
of one and of eight partitions. A leader builds one answer per follower per round, so RF=3 pays
it twice for every byte produced.

Prints microseconds per answer and the ratio, in one run; then what the follower spends on the
same one-partition answer (frame reassembly from 64 KiB reads, decode, the batch walk of
``append_replica``, the pwrite and the fdatasync of a temporary file): where RF=3's time per byte
goes besides the disk.

Usage: python bench/fetch_answer.py [--mib 1] [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from fluvial.errors import OK
from fluvial.protocol import internal_api as ia
from fluvial.protocol.api import decode_response, encode_response
from fluvial.protocol.batch import iter_batches
from fluvial.protocol.frame import FrameDecoder
from fluvial.protocol.record import encode_batch


def per_call_us(fn, repeats: int) -> float:
    """Median of 5 timings of ``repeats`` calls, in us per call."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        runs.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=1.0, help="record bytes per answer")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    batch = encode_batch([b"x" * 1024] * 60)  # ~60 KiB, as the producer's 64 KiB batches
    print("| answer | one buffer | in pieces | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for partitions in (1, 8):
        per = int(args.mib * (1 << 20) / partitions / len(batch)) or 1
        records = batch * per
        resp = ia.FetchReplicasResponse(OK, [ia.FetchedPartition("t", i, OK, 1, 0, 0, 0, records)
                                             for i in range(partitions)])
        assert b"".join(ia.encode_fetch_replicas_response_parts(resp, 1, 0)) == encode_response(resp, 1, 0)
        whole = per_call_us(lambda: encode_response(resp, 1, 0), args.repeats)
        parts = per_call_us(lambda: ia.encode_fetch_replicas_response_parts(resp, 1, 0), args.repeats)
        size = partitions * len(records) / (1 << 20)
        print(f"| {partitions} partition(s), {size:.2f} MiB | {whole:,.0f} us | {parts:,.0f} us | {whole / parts:,.0f}x |")
        if partitions == 1:
            one = (resp, records)
    follower(*one, args.repeats)


def follower(resp, records: bytes, repeats: int) -> None:
    frame = encode_response(resp, 1, 0)

    def reassemble() -> None:
        d = FrameDecoder()
        for i in range(0, len(frame), 64 * 1024):
            d.feed(frame[i:i + 64 * 1024])

    print()
    print("| follower, one answer | us |")
    print("| --- | ---: |")
    rows = [("frame reassembly (64 KiB reads)", reassemble, repeats),
            ("decode_response", lambda: decode_response(frame[4:], ia.FetchReplicasResponse, 0), repeats),
            ("batch walk (iter_batches)", lambda: list(iter_batches(records)), repeats)]
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(os.path.join(d, "log"), os.O_RDWR | os.O_CREAT)
        try:
            pos = [0]

            def write() -> None:
                os.pwrite(fd, records, pos[0])
                pos[0] += len(records)

            rows += [("pwrite", write, 10), ("fdatasync", lambda: (write(), os.fdatasync(fd)), 5)]
            for name, fn, n in rows:
                print(f"| {name} | {per_call_us(fn, n):,.0f} |")
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
