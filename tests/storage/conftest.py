"""Storage test fixtures: tiny limits and a batch builder (compare Fluvio's
crates/fluvio-storage/src/fixture.rs: segment_max_bytes 100, BatchProducer)."""

from __future__ import annotations

import os

import pytest

from fluvial.protocol.batch import iter_batches
from fluvial.protocol.record import decode_batches, encode_batch
from fluvial.storage import Replica, ReplicaConfig

TS = 1_700_000_000_000  # ms; the records.md worked examples' timestamp


def make_batch(count: int = 1, value: bytes = b"hello", *, ts: int = TS) -> bytes:
    """One batch of ``count`` records as a producer sends it (base offset n-1, epoch -1).
    One record with a 5-byte value is 73 bytes (records.md §10.1)."""
    return encode_batch([value] * count, base_offset=count - 1, first_timestamp=ts)


def headers(data: bytes) -> list:
    return [h for _, h in iter_batches(data)]


def values(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in a record set's batches."""
    return [(r.offset, r.value) for b in decode_batches(data) for r in b.records]


def read_all(replica: Replica, start: int | None = None, upper: int | None = None) -> bytes:
    """Every batch from ``start`` (default: the log start) to ``upper`` (default: LEO)."""
    out = []
    offset = replica.log_start_offset if start is None else start
    bound = replica.leo if upper is None else upper
    while offset < bound:
        result = replica.read(offset, 1 << 20, bound)
        if not result.size:
            break
        out.append(result.read_bytes())
        offset = result.next_offset
    return b"".join(out)


def tails_are_clean(replica: Replica) -> bool:
    """Each segment file holds its logical size of batches, then nothing but zeros (the
    active segment's preallocated space): no bytes of a failed write are left."""
    for seg in replica.segments:
        with open(seg.path, "rb") as f:
            f.seek(seg.size_bytes)
            if f.read().strip(b"\0"):
                return False
    return True


def segment_files(replica: Replica, suffix: str = ".log") -> list[str]:
    return sorted(n for n in os.listdir(replica.path) if n.endswith(suffix))


@pytest.fixture
def open_replica(tmp_path):
    """``open_replica(**config)`` opens topic "t" partition 0 under tmp_path; every replica
    opened is closed at teardown."""
    opened: list[Replica] = []

    def _open(config: ReplicaConfig | None = None, **kwargs) -> Replica:
        replica = Replica.open(tmp_path, "t", 0, config or ReplicaConfig(**kwargs))
        opened.append(replica)
        return replica

    yield _open
    for replica in opened:
        if replica.short_circuited is None:
            replica.close()
        else:
            replica.delete()
