"""The producer: records in, batches out to each partition's leader, results back to the caller.

Theory of operation
-------------------
``send`` chooses the partition (the official client's SipHash-2-4 of the key, round robin
without a key; ``partitioner.py``), appends the record to the partition's open batch in the
``RecordAccumulator`` (``accumulator.py``, pure) and returns a ``ProduceFuture``. It does not wait
for the network, and it yields to the scheduler only when a batch has filled up (so that the
sender gets to run) or when the partition's queue is full (backpressure): a loop of ``send`` calls
is cheap.

One *sender* task per producer, running in the connection's nursery, sleeps until a batch is
ready (full, ``linger`` elapsed, or a flush), drains the ready batches, groups them by the
partition's leader (from the live metadata cache) and sends one ``ProduceRequest`` per leader,
each partition's batches concatenated into one record set (the SPU gives them consecutive
offsets). It then waits again; each request is sent and answered in a task of its own, which,
once the answer is in, sends whatever became ready meanwhile itself. With ``linger = 0``, a
record that finds its partition idle (nothing queued, nothing in flight) is dispatched by
``send`` itself. Both save a pass through the sender task on the way to the wire.

Nagle's rule: whatever the limit, a batch that is still open (not full) goes only when its
partition has no request in flight (or on ``flush``); full batches go up to the limit. So a
stream of records pipelines full batches, while records sent one at a time gather behind the
request in flight into one batch instead of a request each (the measured choice: at RF=3 on a
busy machine a request per record cost more than the wait, docs/performance.md).

Delivery (``delivery``):

* ``at_least_once`` (default): a partition has at most ``max_in_flight`` requests in flight;
  at the limit it is *muted* (no further request for it). Without idempotence the limit is 1,
  so that a retry cannot overtake later records. An idempotent producer may have up to
  ``MAX_REMEMBERED`` (5, Kafka's limit with idempotence) in flight, and has by default: the
  leader appends a batch
  only when its sequence follows the last one it stored, and refuses one after a gap as out of
  order, so records cannot land out of order; the producer resends in order (below). A retriable failure (a
  ``fluvial.errors.Retriable``: ``NotLeaderForPartition``, ``RequestTimedOut``, a lost or refused
  connection, ``SpuOffline``...) puts the batches back at the front of the queue after an
  exponential backoff (``retry_backoff`` doubling up to ``retry_backoff_max``); by then the SC's
  watch has usually told the metadata cache about the new leader, and the next attempt goes
  there. A batch is failed once ``delivery_timeout`` has passed since it was created, or at once
  on an error that is not retriable. A retry may store records twice, unless the producer is
  idempotent (below).

  Resending in order (several in flight): failed batches go back to the queue in creation order
  (``RecordAccumulator.reenqueue``), and a partition whose next batch is a retry is muted until
  none of its requests is in flight, so every answer is in before the resend and no new batch
  overtakes a retried one; retried batches then go one per request, one request at a time
  (``retry_one_at_a_time``: the leader answers a resent record set as a duplicate only if its
  batches were stored together, which batches of different requests need not be). A batch refused as out of order while an earlier batch of its
  partition is unsettled (failed and waiting for its retry, or still in flight) was refused
  because of that batch's gap: it is retried after it, like any retriable failure. Refused with
  every earlier batch settled, the gap is real (a batch given up) and the batch fails.
* ``at_most_once``: each batch is sent once, with up to ``max_in_flight`` (5) requests per
  partition awaiting their answers; a failure fails the batch.

Idempotence (``idempotent``, on by default with at-least-once delivery): the producer gets a
producer id from the SC (``fluvial.protocol.producer_api``) and stamps each batch, when it is
first encoded, with that id, epoch 0 and the partition's next sequence number; a retry resends
the same bytes, and the leader answers a batch it already holds with the original offsets instead
of storing it again (``fluvial.spu.producer_state``), also after a failover. A batch given up
leaves a gap in the sequence, so the partition's later batches are refused as out of order (as in
Kafka before KIP-360): the producer must be recreated.

A failed batch raises, from every ``ProduceFuture`` of its records, the typed exception of the
server's ``ErrorCode`` (``TopicNotFoundError``, ``MessageTooLargeError``...) with the server's
message; ``flush()`` raises the first such failure among the batches it waited for.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from dataclasses import dataclass
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import trio

from fluvial import trace
from fluvial.client.accumulator import (
    DEFAULT_BATCH_QUEUE_SIZE, DEFAULT_BATCH_SIZE, DEFAULT_MAX_REQUEST_SIZE, ProducerBatch,
    RecordAccumulator,
)
from fluvial.client.partitioner import (
    RoundRobinPartitioner, SiphashRoundRobinPartitioner, SpecificPartitioner, key_hash,
)
from fluvial.client.types import (
    TOPIC_TO_BATCH_COMPRESSION, Compression, DeliverySemantic, RecordMetadata, compression_from,
    isolation_from,
)
from fluvial.errors import (
    CompressionError, Error, ErrorCode, FluvialError, NotLeaderForPartitionError, Retriable,
    TopicNotFoundError,
)
from fluvial.protocol.codec import DecodeError, EncodeError
from fluvial.protocol.content_type import check_value
from fluvial.protocol.producer_api import (
    MAX_REMEMBERED, OUT_OF_ORDER, AllocateProducerIdRequest, next_sequence,
)
from fluvial.protocol.topic_settings_api import TopicSettingsRequest
from fluvial.protocol.record_headers import normalize_headers
from fluvial.protocol.sc_objects import CompressionAlgorithm
from fluvial.protocol.spu_api import (
    Isolation, PartitionProduceData, ProduceRequest, TopicProduceData,
)

log = logging.getLogger("fluvial.client")

__all__ = ["ProduceFuture", "Producer", "ProducerClosedError", "ProducerStatistics"]

_ONLY_BYTES = {bytes}
# send_many's records for one partition: their indexes in the call, values, keys (or None)
_Group = tuple[list[int] | range, list[bytes], list[bytes | None] | None]
_RESPONSE_MARGIN = 5.0  # seconds a produce response may take beyond the server-side timeout


@dataclass(frozen=True)
class ProducerStatistics:
    """A snapshot of a producer's state (``Producer.statistics()``).

    Attributes:
        queued_records: records waiting in batches that have not been sent yet.
        pending_batches: batches not yet acknowledged or failed (queued or in flight).
        requests_sent: produce requests sent so far.
        retries: batches put back for another attempt after a retriable failure.
        failed_batches: batches given up (their futures raise).
    """

    queued_records: int
    pending_batches: int
    requests_sent: int
    retries: int
    failed_batches: int


class ProducerClosedError(FluvialError):
    """The producer was closed before the record could be sent."""


class ProduceFuture:
    """The outcome of one ``send``: ``await future`` (or ``await future.wait()``) gives the
    record's ``RecordMetadata(partition, offset)`` once the SPU has acknowledged it, or raises
    the error that failed its batch."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: ProducerBatch, index: int):
        self._batch = batch
        self._index = index

    def __repr__(self) -> str:
        return f"<ProduceFuture partition={self._batch.partition} {'done' if self.done() else 'pending'}>"

    def done(self) -> bool:
        return self._batch.done

    def result(self) -> RecordMetadata:
        """The metadata, without waiting.

        Raises:
            RuntimeError: not acknowledged yet.
            FluvialError: the batch failed.
        """
        b = self._batch
        if b.error is not None:
            raise b.error
        if b.base_offset is None:
            raise RuntimeError("the record is not acknowledged yet")
        return RecordMetadata(b.partition, b.base_offset + self._index)

    async def wait(self) -> RecordMetadata:
        b = self._batch
        if not b.done:
            if b.waiter is None:
                b.waiter = trio.Event()
            await b.waiter.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self.result()

    def __await__(self):
        return self.wait().__await__()


class Producer:
    """Sends records to one topic. Get one with ``fl.producer(topic, ...)``.

    Args:
        topic: the topic to produce to.
        batch_size: bytes (estimated, uncompressed) after which a batch takes no more records.
        linger: seconds a batch waits for more records before it is sent (0: send as soon as
            the sender is free; records batch up while it is busy).
        compression: "none", "gzip", "snappy", "lz4", "zstd" (or a ``Compression``); None
            uses the topic's setting ("none" for a topic that accepts any).
        partitioner: None for the official client's (SipHash of the key, round robin without a
            key); an int to send everything to that partition; or any object with a
            ``partition(key, partition_count) -> int`` method.
        delivery: "at_least_once" (retry retriable failures) or "at_most_once".
        isolation: "read_uncommitted" (the leader has written the records) or
            "read_committed" (they are committed to the in-sync replicas; the durable choice).
        timeout: seconds the SPU may take to commit a batch (the request's ``timeout_ms``).
        max_request_size: the largest record, and the most bytes sent to one partition at once.
        batch_queue_size: batches a partition may have queued before ``send`` waits.
        delivery_timeout: seconds after which a batch that keeps failing is given up.
        retry_backoff, retry_backoff_max: the first and the largest wait between retries.
        max_in_flight: requests per partition awaiting their answer (batches that are not
            full go only when none is: Nagle's rule, above). At-most-once: 5 by default.
            At-least-once: 5 by default when the producer is idempotent, else 1; an explicit
            value above 1 needs ``idempotent=True`` (the sequences then keep the order; without
            a producer id the producer does not start).
        idempotent: stamp batches with a producer id and sequences so that retries never store
            a record twice (needs at-least-once delivery). None (default): on with at-least-once
            delivery when the SC hands out producer ids, off otherwise.

    Raises (from the first ``send``, ``flush`` or ``async with``):
        TopicNotFoundError: no such topic.
        CompressionError: ``compression`` differs from the topic's fixed compression.
    """

    def __init__(self, fl: Any, topic: str, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 linger: float = 0.0, compression: str | Compression | None = None,
                 partitioner: Any = None, delivery: str | DeliverySemantic = "at_least_once",
                 isolation: str | Isolation | None = None, timeout: float = 1.5,
                 max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
                 batch_queue_size: int = DEFAULT_BATCH_QUEUE_SIZE,
                 delivery_timeout: float = 60.0, retry_backoff: float = 0.02,
                 retry_backoff_max: float = 1.0, max_in_flight: int | None = None,
                 idempotent: bool | None = None):
        self._fl = fl
        self.topic = topic
        self.delivery = DeliverySemantic(delivery)
        self.isolation = isolation_from(isolation)
        self._requested_compression = compression_from(compression)
        self.compression: Compression = Compression.None_
        if not 0 < timeout * 1000 <= 0x7FFFFFFF:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.timeout = timeout
        self.delivery_timeout = delivery_timeout
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.batch_queue_size = max(1, batch_queue_size)
        if self.delivery is DeliverySemantic.AT_LEAST_ONCE:
            if max_in_flight not in (None, 1) and idempotent is not True:
                raise ValueError("at_least_once keeps one request in flight per partition unless "
                                 "the producer is idempotent (a retry could reorder records); "
                                 "max_in_flight must be 1, or pass idempotent=True")
            if max_in_flight is not None and not 1 <= max_in_flight <= MAX_REMEMBERED:
                raise ValueError(f"max_in_flight must be 1 to {MAX_REMEMBERED} with at_least_once "
                                 f"(the leader remembers the last {MAX_REMEMBERED} batches of a "
                                 f"producer), not {max_in_flight}")
            # None: 5 once the SC gives a producer id (``_ensure_started``), else 1
            self.max_in_flight = 1 if max_in_flight is None else max_in_flight
        else:
            self.max_in_flight = 5 if max_in_flight is None else max_in_flight
            if self.max_in_flight < 1:
                raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if idempotent and self.delivery is not DeliverySemantic.AT_LEAST_ONCE:
            raise ValueError("an idempotent producer needs at_least_once delivery")
        self._want_idempotence = (self.delivery is DeliverySemantic.AT_LEAST_ONCE
                                  if idempotent is None else idempotent)
        self._idempotence_required = bool(idempotent)
        self._in_flight_by_idempotence = (self.delivery is DeliverySemantic.AT_LEAST_ONCE
                                          and max_in_flight is None)
        self.producer_id = -1  # set when idempotent, once started
        self.content_type = ""  # the topic's (fluvial.protocol.content_type), once started
        self._producer_epoch = -1
        self._next_sequence: dict[int, int] = {}  # partition -> sequence of its next batch
        if partitioner is None or isinstance(partitioner, SiphashRoundRobinPartitioner):
            self._partitioner = None  # the default, inlined in send
        elif isinstance(partitioner, int) and not isinstance(partitioner, bool):
            self._partitioner = SpecificPartitioner(partitioner)
        elif callable(getattr(partitioner, "partition", None)):
            self._partitioner = partitioner
        else:
            raise TypeError(f"partitioner must be None, an int or have a partition() method, "
                            f"not {partitioner!r}")
        self._rr = RoundRobinPartitioner()
        self._acc = RecordAccumulator(batch_size=batch_size, max_request_size=max_request_size,
                                      linger=linger, clock=trio.current_time,
                                      wall_clock_ms=lambda: time.time_ns() // 1_000_000)
        self._partition_count = 0
        self._meta_version = -1
        self._started = False
        self._closed = False
        self._start_lock = trio.Lock()
        self._sender_scope: trio.CancelScope | None = None
        self._sender_done = trio.Event()
        self._wake = trio.Event()
        self._space = trio.Event()
        self._inflight: dict[int, int] = {}  # partition -> requests in flight
        self._turns = _Turns()
        self._requests: trio.Nursery | None = None
        self._pending: set[ProducerBatch] = set()
        self._flushing = 0
        self._requests_sent = 0
        self._retries = 0
        self._failed_batches = 0

    def __repr__(self) -> str:
        return f"<Producer topic={self.topic!r}{' closed' if self._closed else ''}>"

    def statistics(self) -> ProducerStatistics:
        return ProducerStatistics(self._acc.queued_records(), len(self._pending),
                                  self._requests_sent, self._retries, self._failed_batches)

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> Producer:
        await self._ensure_started()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            await self._abort(ProducerClosedError(detail="the producer was closed by an error "
                                                         "before the record was sent"))

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self._closed:
            raise ProducerClosedError(detail="the producer is closed")
        async with self._start_lock:
            if self._started:
                return
            meta = await self._fl.metadata.topic(self.topic)
            await self._fl.metadata.partition(self.topic, 0)
            self.compression = self._choose_compression(meta.spec.compression_type)
            await self._get_content_type()
            if self._want_idempotence:
                await self._get_producer_id()
            self._refresh_partition_count()
            if self._in_flight_by_idempotence and self.producer_id >= 0:
                self.max_in_flight = MAX_REMEMBERED
            self._acc.retry_one_at_a_time = self.max_in_flight > 1
            self._fl.nursery.start_soon(self._sender)
            self._fl._producers.add(self)
            self._started = True

    @property
    def idempotent(self) -> bool:
        """Whether this producer's batches carry a producer id (known once started)."""
        return self.producer_id >= 0

    async def _get_content_type(self) -> None:
        """The topic's content type ("": none, also from an SC that has no such setting)."""
        try:
            resp = await self._fl.sc_call(TopicSettingsRequest(self.topic))
        except (DecodeError, FluvialError) as e:
            log.debug("no content type for %r: %s", self.topic, e)
            return
        if resp.error_code.ok:
            self.content_type = resp.content_type

    async def _get_producer_id(self) -> None:
        """Ask the SC for a producer id. An SC without them (another implementation) leaves
        the producer non-idempotent, unless ``idempotent=True`` was asked for.

        Raises:
            FluvialError: the SC refused, with ``idempotent=True``.
        """
        try:
            resp = await self._fl.sc_call(AllocateProducerIdRequest())
            error = None if resp.error_code.ok else resp.error_code.exception()
        except (DecodeError, FluvialError) as e:
            error = e
        if error is None:
            self.producer_id, self._producer_epoch = resp.producer_id, resp.producer_epoch
            return
        if self._idempotence_required:
            raise FluvialError(detail=f"the SC gave no producer id for an idempotent producer: "
                                      f"{error}")
        log.info("producer for %r is not idempotent: the SC gave no producer id (%s)",
                 self.topic, error)

    def _encode(self, b: ProducerBatch) -> bytes:
        """The batch's bytes, encoded once (then kept for retries); an idempotent producer's
        carry its id, epoch and the partition's next sequence, taken at that first encoding."""
        if b.encoded is None and self.producer_id >= 0:
            seq = self._next_sequence.get(b.partition, 0)
            b.encode(self.compression, (self.producer_id, self._producer_epoch, seq))
            self._next_sequence[b.partition] = next_sequence(seq, len(b.values))
        return b.encode(self.compression)

    def _choose_compression(self, topic_compression: CompressionAlgorithm) -> Compression:
        mine = self._requested_compression
        if topic_compression == CompressionAlgorithm.Any:
            return Compression.None_ if mine is None else mine
        theirs = TOPIC_TO_BATCH_COMPRESSION[topic_compression]
        if mine is not None and mine != theirs:
            raise CompressionError(detail=(
                f"Compression in the producer ({mine.name.rstrip('_').lower()}) does not match "
                f"with topic level compression ({theirs.name.rstrip('_').lower()})"))
        return theirs

    def _refresh_partition_count(self) -> None:
        md = self._fl.metadata
        self._meta_version = md.version
        n = md.partition_count(self.topic)
        if n:
            self._partition_count = n

    async def aclose(self) -> None:
        """Flush, then stop. Later sends raise ``ProducerClosedError``.

        Raises:
            FluvialError: as ``flush``.
        """
        if self._closed:
            return
        try:
            if self._started:
                await self.flush()
        finally:
            await self._abort(ProducerClosedError(detail="the producer is closed"))

    async def _abort(self, error: FluvialError) -> None:
        self._closed = True
        self._fl._producers.discard(self)
        if self._sender_scope is not None:
            self._sender_scope.cancel()
        for b in self._acc.take_all():
            self._finish(b, error=error)
        if self._started:
            await self._sender_done.wait()
        for b in list(self._pending):
            self._finish(b, error=error)
        await trio.lowlevel.checkpoint()

    # -- sending -------------------------------------------------------------------------------

    def _partition(self, key: bytes | None) -> int:
        if self._fl.metadata.version != self._meta_version:
            self._refresh_partition_count()
        n = self._partition_count
        if self._partitioner is not None:
            return self._partitioner.partition(key, n)
        if key is None:
            return self._rr.partition(None, n)
        return key_hash(key) % n

    async def send(self, value: bytes | str, key: bytes | str | None = None,
                   headers: Any = None) -> ProduceFuture:
        """Queue one record; returns its ``ProduceFuture`` (await it for the offset).

        ``value`` and ``key`` are bytes (a ``str`` is sent as UTF-8). ``headers``: a mapping or
        ``(key, value)`` pairs, keys str, values bytes or str (``Record.headers`` gives them
        back; clients that do not ask for headers, such as the official one, get the record
        without them). Waits only when the partition's queue is full.

        Raises:
            MessageTooLargeError: the record is larger than ``max_request_size``.
            ContentTypeError: the value does not fit its ``content-type`` header or the
                topic's content type (nothing queued).
            ProducerClosedError: the producer is closed.
        """
        if not self._started:
            await self._ensure_started()
        if self._closed:
            raise ProducerClosedError(detail="the producer is closed")
        if type(value) is not bytes:
            value = _to_bytes(value, "value")
        if key is not None and type(key) is not bytes:
            key = _to_bytes(key, "key")
        hs = normalize_headers(headers) if headers else ()
        if self.content_type or hs:
            check_value(self.content_type, value, hs)
        p = self._partition(key)
        b = self._acc.append(p, value, key, hs)
        n = len(b.values)
        if n == 1:  # a new batch: the previous one (if any) is full, or the partition was idle
            self._pending.add(b)
            if self._acc.queued_batches(p) > 1:
                self._wake.set()
                await self._after_full_batch(p)
            elif not self._acc.linger and p not in self._inflight and self._requests is not None:
                # nothing to wait for: send it now rather than through the sender task (one
                # scheduler round less on the way to the wire)
                self._dispatch(self._acc.drain(trio.current_time(), only=p), self._requests,
                               trio.current_time())
            else:
                self._wake.set()
        return ProduceFuture(b, n - 1)

    async def send_many(self, records: Iterable[bytes | str | tuple[Any, Any]]) -> list[ProduceFuture]:
        """Queue many records at once: values, or ``(key, value)`` pairs. Cheaper than a
        ``send`` per record. Returns one ``ProduceFuture`` per record, in order."""
        if not self._started:
            await self._ensure_started()
        if self._closed:
            raise ProducerClosedError(detail="the producer is closed")
        if type(records) is not list:
            records = list(records)
        if self.content_type:
            for i, r in enumerate(records):
                v = r[1] if type(r) is tuple else r
                check_value(self.content_type, v if type(v) is bytes else _to_bytes(v, "value"),
                            (), f"record {i}")
        count = len(records)
        by_partition = None
        if self._partitioner is None and count and set(map(type, records)) == _ONLY_BYTES:
            by_partition = self._round_robin_groups(records)
        if by_partition is None:
            by_partition = self._partition_groups(records)
        out: list[ProduceFuture | None] = [None] * count
        for p, (indexes, values, keys) in by_partition.items():
            pieces = self._acc.append_many(p, values, keys)
            k = 0
            for b, start, n in pieces:
                if start == 0:
                    self._pending.add(b)
                futures = _futures(b, start, n)
                if type(indexes) is range:
                    r = indexes[k:k + n]
                    out[r.start:r.stop:r.step] = futures
                else:
                    for i, f in zip(indexes[k:k + n], futures):
                        out[i] = f
                k += n
            self._wake.set()
            if self._acc.queued_batches(p) > 1:
                await self._after_full_batch(p)
        if count == 0:
            await trio.lowlevel.checkpoint()
        return out  # type: ignore[return-value]

    def _round_robin_groups(self, records: list[bytes]) -> dict[int, _Group] | None:
        """``send_many``'s fast path for values without keys under the default partitioner:
        the records are dealt out round robin, as ``count`` calls of ``_partition(None)`` would
        deal them, with slices instead of a Python step per record. None if the partition count
        is not known (the general path then raises what ``_partition`` raises)."""
        if self._fl.metadata.version != self._meta_version:
            self._refresh_partition_count()
        n = self._partition_count
        if n < 1:
            return None
        count = len(records)
        first = self._rr.take_turns(count, n)
        if n == 1:
            return {0: (range(count), records, None)}
        return {(first + k) % n: (range(k, count, n), records[k::n], None)
                for k in range(min(n, count))}

    def _partition_groups(self, records: list) -> dict[int, _Group]:
        """``{partition: (indexes in records, values, keys or None)}``, one record at a time."""
        by_partition: dict[int, _Group] = {}
        for i, r in enumerate(records):
            if type(r) is tuple:
                key, value = r
                if key is not None and type(key) is not bytes:
                    key = _to_bytes(key, "key")
            else:
                key, value = None, r
            if type(value) is not bytes:
                value = _to_bytes(value, "value")
            p = self._partition(key)
            slot = by_partition.get(p)
            if slot is None:
                slot = by_partition[p] = ([], [], None)
            if key is not None and slot[2] is None:
                slot = by_partition[p] = (slot[0], slot[1], [None] * len(slot[1]))
            slot[0].append(i)
            slot[1].append(value)
            if slot[2] is not None:
                slot[2].append(key)
        return by_partition

    async def _after_full_batch(self, partition: int) -> None:
        """Let the sender run; wait while the partition's queue is over its bound."""
        await trio.lowlevel.checkpoint()
        while self._acc.queued_batches(partition) > self.batch_queue_size and not self._closed:
            if self._space.is_set():
                self._space = trio.Event()
            await self._space.wait()

    async def flush(self) -> None:
        """Send everything queued and wait until every record sent so far is acknowledged.

        Raises:
            FluvialError: the first failure among those records' batches.
        """
        if not self._started:
            await self._ensure_started()
        waiting = list(self._pending)
        if not waiting:
            await trio.lowlevel.checkpoint()
            return
        self._flushing += 1
        self._wake.set()
        try:
            for b in waiting:
                if not b.done:
                    if b.waiter is None:
                        b.waiter = trio.Event()
                    await b.waiter.wait()
        finally:
            self._flushing -= 1
        for b in waiting:
            if b.error is not None:
                raise b.error

    # -- the sender ----------------------------------------------------------------------------

    def _finish(self, b: ProducerBatch, base_offset: int | None = None,
                error: BaseException | None = None) -> None:
        if b.done:
            return
        if error is not None:
            b.fail(error)
            self._failed_batches += 1
        else:
            b.complete(base_offset)
        self._pending.discard(b)
        if b.waiter is not None:
            b.waiter.set()

    async def _sender(self) -> None:
        try:
            with trio.CancelScope() as scope:
                self._sender_scope = scope
                if self._closed:
                    scope.cancel()
                async with trio.open_nursery() as requests:
                    self._requests = requests
                    while True:
                        now = trio.current_time()
                        ready = self._drain(now)
                        if ready:
                            self._dispatch(ready, requests, now)
                            if not self._space.is_set():
                                self._space.set()
                            await trio.lowlevel.checkpoint()
                            continue
                        if self._wake.is_set():
                            self._wake = trio.Event()
                            continue  # something changed between drain and here: look again
                        at = self._acc.ready_at(self._muted(), self._inflight)
                        timeout = math.inf if at is None else max(0.0, at - now)
                        with trio.move_on_after(timeout):
                            await self._wake.wait()
                        self._wake = trio.Event()
        except Exception as e:  # never take the connection's nursery down
            log.exception("producer for %r failed", self.topic)
            for b in self._acc.take_all() + list(self._pending):
                self._finish(b, error=FluvialError(detail=f"the producer failed: {e!r}"))
        finally:
            self._requests = None
            self._sender_done.set()

    def _drain(self, now: float) -> dict[int, list[ProducerBatch]]:
        """The batches that may go now: not of muted partitions, only full ones of partitions
        with a request in flight (Nagle's rule), every one while flushing."""
        return self._acc.drain(now, flush=self._flushing > 0, muted=self._muted(),
                               busy=self._inflight)

    def _muted(self) -> Iterable[int]:
        """Partitions the sender must leave alone: those with ``max_in_flight`` requests in
        flight, and those with a retry waiting while any of their requests is in flight (the
        retry goes once every answer is in and every failed batch is back in order)."""
        if self.max_in_flight == 1:
            return self._inflight
        return [p for p, n in self._inflight.items()
                if n >= self.max_in_flight or self._acc.retry_waiting(p)]

    def _unsettled_before(self, batch: ProducerBatch) -> bool:
        """Whether an earlier batch of ``batch``'s partition is neither acknowledged nor
        failed: a refusal of ``batch`` as out of order is then that batch's gap."""
        p, order = batch.partition, batch.order
        return any(b.partition == p and b.order < order and not b.done for b in self._pending)

    def _plan(self, ready: dict[int, list[ProducerBatch]], now: float
              ) -> list[tuple[int, list[tuple[int, list[ProducerBatch]]], int]]:
        """Group drained batches by their partition's leader (counting them as in flight):
        ``(leader, entries, turn)`` per request; batches without a leader are retried or failed
        here. With several requests in flight, an idempotent producer's batches take their
        sequences here, in drain order, and each request a turn (``_Turns``): the requests'
        tasks may start in any order (trio does not keep the order of ``start_soon``)."""
        by_leader: dict[int, list[tuple[int, list[ProducerBatch]]]] = {}
        md = self._fl.metadata
        for p, batches in ready.items():
            leader = md.leader_of(self.topic, p)
            if leader is None and self.topic not in md.topics:
                error = TopicNotFoundError(detail=f"Topic not found: {self.topic} (deleted)")
                for b in batches:
                    self._finish(b, error=error)
                continue
            if leader is None:
                self._retry_or_fail(p, batches, NotLeaderForPartitionError(
                    Error(ErrorCode.NotLeaderForPartition),
                    f"partition {self.topic}-{p} has no leader in the metadata"), now)
                continue
            by_leader.setdefault(leader, []).append((p, batches))
            self._inflight[p] = self._inflight.get(p, 0) + 1
            if self.max_in_flight > 1 and self.producer_id >= 0:
                for b in batches:
                    try:
                        self._encode(b)
                    except EncodeError:
                        pass  # _send_once fails the batch
        if self.max_in_flight == 1:
            return [(leader, entries, -1) for leader, entries in by_leader.items()]
        return [(leader, entries, self._turns.take(leader)) for leader, entries in by_leader.items()]

    def _dispatch(self, ready: dict[int, list[ProducerBatch]], requests: trio.Nursery,
                  now: float) -> None:
        for leader, entries, turn in self._plan(ready, now):
            requests.start_soon(self._send_request, leader, entries, turn)

    async def _send_request(self, leader: int, entries: list[tuple[int, list[ProducerBatch]]],
                            turn: int) -> None:
        """Send one request and settle its batches; then, while batches are ready (typically
        those that waited for this request), send the next one from this same task: the answer
        to one request leads to the next without passing through the sender task."""
        while True:
            try:
                await self._send_once(leader, entries, turn)
            finally:
                for p, _ in entries:
                    left = self._inflight[p] - 1
                    if left:
                        self._inflight[p] = left
                    else:
                        del self._inflight[p]
                self._wake.set()
            if self._closed or self._requests is None:
                return
            now = trio.current_time()
            ready = self._drain(now)
            if not ready:
                return
            if not self._space.is_set():
                self._space.set()
            groups = iter(self._plan(ready, now))
            first = next(groups, None)
            if first is None:
                return
            for other in groups:
                self._requests.start_soon(self._send_request, *other)
            leader, entries, turn = first

    async def _send_once(self, leader: int, entries: list[tuple[int, list[ProducerBatch]]],
                         turn: int = -1) -> None:
        try:
            await self._send_in_turn(leader, entries, turn)
        finally:
            if turn >= 0:
                self._turns.done(leader, turn)  # if not done at the submission already

    async def _send_in_turn(self, leader: int, entries: list[tuple[int, list[ProducerBatch]]],
                            turn: int) -> None:
        try:
            parts = []
            for p, batches in entries:
                data = [self._encode(b) for b in batches]  # not joined: one writev sends them
                for b in batches:
                    b.attempts += 1
                parts.append(PartitionProduceData(p, data))
        except EncodeError as e:
            for p, batches in entries:
                for b in batches:
                    self._finish(b, error=FluvialError(detail=f"cannot encode the batch: {e}"))
            return
        req = ProduceRequest(None, self.isolation, int(self.timeout * 1000),
                             [TopicProduceData(self.topic, parts)], [])
        try:
            conn = await self._fl.spu_connection(leader)
            if turn >= 0:
                # the requests before this one are handed to the connection first; it queues
                # (or writes) the frame before its first pause, so the wire keeps this order
                await self._turns.wait(leader, turn)
                self._turns.done(leader, turn)
            self._requests_sent += 1
            sent_at = trace.now()
            resp = await conn.call(req, timeout=self.timeout + _RESPONSE_MARGIN)
        except (DecodeError, FluvialError) as e:  # FluvialError: lost connections, timeouts too
            now = trio.current_time()
            for p, batches in entries:
                self._retry_or_fail(p, batches, e, now)
            return
        results = [r for t in resp.responses for r in t.partitions]
        now = trio.current_time()
        if len(results) != len(entries):
            err = FluvialError(detail=f"the SPU answered {len(results)} partitions for a "
                                      f"request of {len(entries)}")
            for p, batches in entries:
                self._retry_or_fail(p, batches, err, now)
            return
        for (p, batches), r in zip(entries, results):
            if r.error_code.ok:
                base = r.base_offset
                if trace.enabled():
                    last = base + sum(len(b.values) for b in batches) - 1
                    trace.mark("client.produce_sent", self.topic, p, base, last, at=sent_at)
                    trace.mark("client.acked", self.topic, p, base, last)
                for b in batches:
                    self._finish(b, base)
                    base += len(b.values)
            else:
                error = r.error_code.exception()
                if _out_of_order(r.error_code) and self._unsettled_before(batches[0]):
                    error = _OutOfOrderAfterGap(r.error_code)
                self._retry_or_fail(p, batches, error, now)

    def _retry_or_fail(self, partition: int, batches: list[ProducerBatch], error: BaseException,
                       now: float) -> None:
        if (isinstance(error, Retriable) and self.delivery is DeliverySemantic.AT_LEAST_ONCE and not self._closed
                and now < batches[0].created_at + self.delivery_timeout):
            attempts = max(b.attempts for b in batches)
            delay = min(self.retry_backoff * 2 ** min(max(0, attempts - 1), 30), self.retry_backoff_max)
            log.debug("produce to %s-%d failed (%s); retry %d in %.3fs", self.topic, partition,
                      error, attempts, delay)
            self._retries += len(batches)
            self._acc.reenqueue(batches)
            self._acc.set_backoff(partition, now + delay)
            self._wake.set()
            return
        for b in batches:
            self._finish(b, error=error)


class _Turns:
    """The order in which requests to each leader are handed to its connection: the order
    ``take`` gave out their turns. A request waits for every earlier turn to be ``done``
    (submitted, or given up before it was sent); ``done`` may be called more than once."""

    def __init__(self):
        self._next: dict[int, int] = {}  # leader -> the next turn to give out
        self._serving: dict[int, int] = {}  # leader -> the first turn not done
        self._finished: dict[int, set[int]] = {}  # leader -> done turns after _serving
        self._lot = trio.lowlevel.ParkingLot()

    def take(self, leader: int) -> int:
        turn = self._next.get(leader, 0)
        self._next[leader] = turn + 1
        return turn

    async def wait(self, leader: int, turn: int) -> None:
        while self._serving.get(leader, 0) != turn:
            await self._lot.park()

    def done(self, leader: int, turn: int) -> None:
        serving = self._serving.get(leader, 0)
        if turn < serving:
            return
        finished = self._finished.setdefault(leader, set())
        finished.add(turn)
        while serving in finished:
            finished.discard(serving)
            serving += 1
        self._serving[leader] = serving
        self._lot.unpark_all()


class _OutOfOrderAfterGap(Retriable):
    """A batch refused as out of order because an earlier batch of its partition has not been
    stored yet (it failed and waits for its retry): retriable, after that batch."""


def _out_of_order(error: Error) -> bool:
    """Whether the leader refused a batch for its sequence (``fluvial.spu.producer_state``)."""
    return (error.code == ErrorCode.Other and bool(error.args)
            and str(error.args[0]).startswith(OUT_OF_ORDER))


def _futures(batch: ProducerBatch, start: int, count: int) -> list[ProduceFuture]:
    """The futures of records ``start .. start + count - 1`` of ``batch``. Built in C with the
    garbage collector paused: they cannot form reference cycles, and the collections their
    allocations would trigger rescan the young futures again and again (measured: more than half
    the cost of building them); ``decode_record_set`` in consumer.py does the same."""
    if not gc.isenabled():
        return list(map(ProduceFuture, repeat(batch, count), range(start, start + count)))
    gc.disable()
    try:
        return list(map(ProduceFuture, repeat(batch, count), range(start, start + count)))
    finally:
        gc.enable()


def _to_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bytes):  # a bytes subclass
        return bytes(value)
    raise TypeError(f"the record {what} must be bytes or str, not {type(value).__name__}")
