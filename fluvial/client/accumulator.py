"""The producer's batching: records grouped into per-partition batches.

Theory of operation
-------------------
Pure: no trio, no sockets, no clock of its own (the caller injects one). The producer's trio
layer (``producer.py``) calls ``append`` for each record and ``drain`` when it can send, and hands
back what failed with ``reenqueue``.

* **Per-partition queues.** Each partition has a FIFO of batches. Only the last one is *open*
  (takes new records); every other one is *closed*. A record goes into the open batch unless that
  batch already holds records and the record would take its estimated size past ``batch_size``:
  then the batch is closed and a new one opened (Fluvio's ``batch_size`` rule, spu.md §9.1). A
  single record larger than ``max_request_size`` is refused (``MessageTooLargeError``).
* **Ready.** A closed batch is ready at once; the open batch is ready once it is ``linger``
  seconds old, or at once with ``flush=True``. With ``linger = 0`` an open batch is ready at once
  unless full batches of its partition go out in the same drain (then it keeps filling while they
  travel), so records batch up while the sender is busy, which is what makes throughput adapt.
* **drain(now)** takes ready batches from the front of each partition's queue, oldest first, up to
  ``max_request_size`` bytes per partition (always at least one batch), skipping *muted*
  partitions (the caller mutes a partition that has as many requests in flight as it allows,
  which keeps the partition's records in order across retries) and partitions in *backoff*.
  From a *busy* partition (a request of it in flight, but not muted) only closed batches go:
  Nagle's rule, so full batches pipeline while a trickle of records fills one batch behind the
  request in flight rather than a request each (``flush`` overrides it). A drained open
  batch is closed. Retried batches are drained apart from new ones, and one at a time with
  ``retry_one_at_a_time``.
* **reenqueue(batches)** puts batches that must be retried back at the front, in the order they
  were created (``ProducerBatch.order``), whatever order their failures arrive in: with several
  requests in flight per partition, the answers to a later request may come first, and an
  idempotent producer's retries must reach the leader in sequence order (a batch resent ahead of
  its predecessor is refused as out of order).

Record size estimate: value bytes + key bytes + ``RECORD_OVERHEAD`` (the varints and flags of the
record framing, a little generous). A batch is encoded once, by
``fluvial.protocol.record_fast.encode_producer_batch``, and the bytes kept for retries.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Container, Iterable
from itertools import accumulate, repeat
from typing import Any

from fluvial.errors import Error, ErrorCode, MessageTooLargeError
from fluvial.protocol.record import Compression
from fluvial.protocol.record_fast import encode_producer_batch
from fluvial.protocol.record_headers import encode_headers_batch

__all__ = [
    "DEFAULT_BATCH_QUEUE_SIZE", "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_REQUEST_SIZE",
    "RECORD_OVERHEAD", "ProducerBatch", "RecordAccumulator",
]

DEFAULT_BATCH_SIZE = 16384  # Fluvio's defaults (producer/config.rs)
DEFAULT_MAX_REQUEST_SIZE = 1048576
DEFAULT_BATCH_QUEUE_SIZE = 100
RECORD_OVERHEAD = 12  # length, attributes, timestamp delta, offset delta, key tag, lengths, headers


class ProducerBatch:
    """Records bound for one partition, sent (and acknowledged) together.

    Attributes:
        partition: where the batch goes.
        values: the values, in order.
        keys: the keys (None for a record without one), or None while no record has a key.
        size: the estimated encoded size in bytes.
        created_at: the caller's clock when the batch was opened (seconds).
        first_timestamp: wall-clock milliseconds stamped on the batch.
        deltas: per-record timestamp deltas in milliseconds, or None when all are 0.
        closed: no more records go in.
        base_offset: the offset the server gave the first record, once acknowledged.
        error: the exception the batch failed with, once it failed.
        waiter: anything the caller wants to hang on the batch (the producer's trio.Event).
        attempts: how many times the batch was sent.
        order: increases with every batch the accumulator creates: the partition's order.
    """

    __slots__ = ("partition", "values", "keys", "size", "created_at", "first_timestamp", "deltas",
                 "closed", "encoded", "base_offset", "error", "waiter", "attempts", "headers",
                 "order")

    def __init__(self, partition: int, created_at: float, first_timestamp: int,
                 with_deltas: bool = False, order: int = 0):
        self.partition = partition
        self.order = order
        self.values: list[bytes] = []
        self.keys: list[bytes | None] | None = None
        self.size = 0
        self.created_at = created_at
        self.first_timestamp = first_timestamp
        self.deltas: list[int] | None = [] if with_deltas else None
        self.closed = False
        self.encoded: bytes | None = None
        self.base_offset: int | None = None
        self.error: BaseException | None = None
        self.waiter: Any = None
        self.attempts = 0
        self.headers: list | None = None  # per record (() for none), or None while none has any

    def __repr__(self) -> str:
        state = ("failed" if self.error is not None else "acked" if self.base_offset is not None
                 else "closed" if self.closed else "open")
        return f"<ProducerBatch partition={self.partition} records={len(self.values)} {state}>"

    def __len__(self) -> int:
        return len(self.values)

    @property
    def done(self) -> bool:
        return self.base_offset is not None or self.error is not None

    def records(self) -> list:
        """The records in ``encode_batch``'s input form: bytes, or ``(key, value)`` tuples."""
        if self.keys is None:
            return self.values
        return list(zip(self.keys, self.values))

    def encode(self, compression: int = Compression.None_,
               producer: tuple[int, int, int] | None = None) -> bytes:
        """The batch bytes (computed once, then kept for retries); ``producer``: an idempotent
        producer's ``(id, epoch, first sequence)`` for the header, used by the first call."""
        if self.encoded is None and self.headers is not None:
            keys = self.keys or [None] * len(self.values)
            self.encoded = encode_headers_batch(list(zip(keys, self.values, self.headers)),
                                                first_timestamp=self.first_timestamp,
                                                compression=compression,
                                                timestamp_deltas=self.deltas,
                                                producer=producer)
        if self.encoded is None:
            self.encoded = encode_producer_batch(self.values, self.keys, compression=compression,
                                                 first_timestamp=self.first_timestamp,
                                                 deltas=self.deltas, producer=producer)
        return self.encoded

    def complete(self, base_offset: int) -> None:
        self.base_offset = base_offset

    def fail(self, error: BaseException) -> None:
        self.error = error


class RecordAccumulator:
    """Per-partition batch queues (see the module docstring).

    Args:
        batch_size: the estimated bytes after which a batch takes no more records.
        max_request_size: the largest record accepted, and the bytes ``drain`` takes from one
            partition at a time.
        linger: seconds an open batch waits for more records before it is ready.
        clock: the caller's monotonic clock, in seconds (trio.current_time in the producer).
        wall_clock_ms: milliseconds since the Unix epoch, for batch timestamps.
    """

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, linger: float = 0.0,
                 clock: Callable[[], float], wall_clock_ms: Callable[[], int]):
        if batch_size < 1 or max_request_size < 1:
            raise ValueError("batch_size and max_request_size must be positive")
        if linger < 0:
            raise ValueError(f"linger must not be negative, not {linger}")
        self.batch_size = batch_size
        self.max_request_size = max_request_size
        self.linger = linger
        self._clock = clock
        self._wall_ms = wall_clock_ms
        self._queues: dict[int, deque[ProducerBatch]] = {}
        self._open: dict[int, ProducerBatch] = {}
        self._backoff: dict[int, float] = {}
        self._created = 0
        # Resend retried batches one per drain. With several requests in flight, the batches
        # that failed were sent in different requests, and the leader may have stored some of
        # them (lost answers) apart from one another: it answers a duplicate record set only
        # when its batches were stored together, so each goes alone.
        self.retry_one_at_a_time = False

    # ----------------------------------------------------------------------------- appending

    def _new_batch(self, partition: int) -> ProducerBatch:
        old = self._open.get(partition)
        if old is not None:
            old.closed = True
        self._created += 1
        b = ProducerBatch(partition, self._clock(), self._wall_ms(), self.linger > 0, self._created)
        q = self._queues.get(partition)
        if q is None:
            q = self._queues[partition] = deque()
        q.append(b)
        self._open[partition] = b
        return b

    def _too_large(self, size: int) -> MessageTooLargeError:
        return MessageTooLargeError(Error(ErrorCode.MessageTooLarge),
                                    f"a record of about {size} bytes is larger than "
                                    f"max_request_size ({self.max_request_size} bytes)")

    def append(self, partition: int, value: bytes, key: bytes | None = None,
               headers: tuple = ()) -> ProducerBatch:
        """Add one record; returns the batch it went into (it is the batch's last record).
        ``headers`` are ``(str, bytes)`` pairs (``record_headers.normalize_headers``).

        Raises:
            MessageTooLargeError: the record alone is larger than ``max_request_size``.
        """
        size = len(value) + RECORD_OVERHEAD if key is None else len(value) + len(key) + RECORD_OVERHEAD
        if headers:
            size += sum(len(k) + len(v) + 4 for k, v in headers)
        b = self._open.get(partition)
        if b is None or (b.size + size > self.batch_size and b.values):
            if size > self.max_request_size:
                raise self._too_large(size)
            b = self._new_batch(partition)
        if key is not None:
            if b.keys is None:
                b.keys = [None] * len(b.values)
            b.keys.append(key)
        elif b.keys is not None:
            b.keys.append(None)
        if headers:
            if b.headers is None:
                b.headers = [()] * len(b.values)
            b.headers.append(headers)
        elif b.headers is not None:
            b.headers.append(())
        b.values.append(value)
        b.size += size
        if b.deltas is not None:
            b.deltas.append(int((self._clock() - b.created_at) * 1000))
        return b

    def append_many(self, partition: int, values: list[bytes],
                    keys: list[bytes | None] | None = None) -> list[tuple[ProducerBatch, int, int]]:
        """Add records in order; returns ``(batch, first index, count)`` per batch they went into.

        ``keys`` is None (no record has a key) or a list as long as ``values``.

        Raises:
            MessageTooLargeError: some record is too large; none of the records was added.
        """
        if keys is not None and len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        if keys is None:
            sizes = [n + RECORD_OVERHEAD for n in map(len, values)]
        else:
            sizes = [len(v) + (0 if k is None else len(k)) + RECORD_OVERHEAD
                     for k, v in zip(keys, values)]
        if sizes and max(sizes) > self.max_request_size:
            raise self._too_large(max(sizes))
        out: list[tuple[ProducerBatch, int, int]] = []
        i, n = 0, len(values)
        ends = list(accumulate(sizes))  # ends[j]: the bytes of records 0..j
        while i < n:
            b = self._open.get(partition)
            if b is None or (b.values and b.size + sizes[i] > self.batch_size):
                b = self._new_batch(partition)
            # take records while they fit, and always at least one: j is the first record after
            # i that would take the batch past batch_size (sizes are positive, ends increase)
            before = ends[i - 1] if i else 0
            j = bisect_right(ends, self.batch_size - b.size + before, i + 1, n)
            size = b.size + ends[j - 1] - before
            start = len(b.values)
            if keys is not None:
                if b.keys is None:
                    b.keys = [None] * start
                b.keys.extend(keys[i:j])
            elif b.keys is not None:
                b.keys.extend(repeat(None, j - i))
            if b.headers is not None:
                b.headers.extend(repeat((), j - i))
            b.values.extend(values[i:j])
            b.size = size
            if b.deltas is not None:
                b.deltas.extend(repeat(int((self._clock() - b.created_at) * 1000), j - i))
            out.append((b, start, j - i))
            i = j
        return out

    # ------------------------------------------------------------------------------ draining

    def ready_at(self, muted: Iterable[int] = (), busy: Container[int] = ()) -> float | None:
        """When the next batch outside ``muted`` becomes ready: the earliest of the open batches'
        ``created_at + linger`` (not those of ``busy`` partitions, which wait for their request in
        flight) and of the partitions' backoff ends; ``-inf`` when a closed batch is waiting; None
        when nothing outside ``muted`` is queued."""
        best = None
        for p, q in self._queues.items():
            if not q or p in muted:
                continue
            if q[0].closed:
                t = -math.inf
            elif p in busy:
                continue
            else:
                t = q[0].created_at + self.linger
            b = self._backoff.get(p)
            if b is not None and b > t:
                t = b
            if best is None or t < best:
                best = t
        return best

    def drain(self, now: float, *, flush: bool = False, muted: Iterable[int] = (),
              busy: Container[int] = (), only: int | None = None) -> dict[int, list[ProducerBatch]]:
        """Take the ready batches: ``{partition: [batches, oldest first]}``.

        Args:
            now: the caller's clock.
            flush: treat every open batch as ready.
            muted: partitions to leave alone.
            busy: partitions with a request in flight: closed batches only (unless ``flush``).
            only: look at this partition only.
        """
        out: dict[int, list[ProducerBatch]] = {}
        linger = self.linger
        limit = self.max_request_size
        queues = self._queues.items() if only is None else [(only, self._queues.get(only))]
        for p, q in queues:
            if not q or p in muted:
                continue
            b = self._backoff.get(p)
            if b is not None:
                if b > now:
                    continue
                del self._backoff[p]
            taken: list[ProducerBatch] = []
            total = 0
            while q:
                head = q[0]
                if not head.closed and not flush:
                    if p in busy or head.created_at + linger > now:
                        break
                    if taken and not linger:
                        break  # full batches are going: let this one fill while they travel
                est = head.size if head.encoded is None else len(head.encoded)
                if taken and total + est > limit:
                    break
                if taken and (head.attempts > 0) != (taken[0].attempts > 0):
                    break  # retried batches go on their own (an idempotent retry is all resent)
                if taken and head.attempts > 0 and self.retry_one_at_a_time:
                    break
                q.popleft()
                if not head.closed:
                    head.closed = True
                    if self._open.get(p) is head:
                        del self._open[p]
                taken.append(head)
                total += est
            if taken:
                out[p] = taken
        return out

    def reenqueue(self, batches: list[ProducerBatch]) -> None:
        """Put batches back at the front of their partitions' queues, each before every batch
        created after it (so that retries go out in creation order, also when the failures of
        several requests come back out of order)."""
        for b in batches:
            q = self._queues.get(b.partition)
            if q is None:
                q = self._queues[b.partition] = deque()
            b.closed = True
            i = 0
            while i < len(q) and q[i].order < b.order:  # only earlier retries are passed
                i += 1
            q.insert(i, b)

    def retry_waiting(self, partition: int) -> bool:
        """Whether the partition's next batch is a retry (it has been sent before)."""
        q = self._queues.get(partition)
        return bool(q) and q[0].attempts > 0

    def set_backoff(self, partition: int, until: float) -> None:
        """Keep ``partition`` out of ``drain`` until the clock reaches ``until``."""
        self._backoff[partition] = until

    def queued_batches(self, partition: int) -> int:
        q = self._queues.get(partition)
        return 0 if q is None else len(q)

    def queued_records(self) -> int:
        return sum(len(b.values) for q in self._queues.values() for b in q)

    def is_empty(self) -> bool:
        return not any(self._queues.values())

    def take_all(self) -> list[ProducerBatch]:
        """Remove and return every queued batch (to fail them when the producer closes)."""
        out = [b for q in self._queues.values() for b in q]
        self._queues.clear()
        self._open.clear()
        self._backoff.clear()
        return out
