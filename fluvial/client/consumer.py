"""The consumer: one StreamFetch per partition, merged into one async iterator of ``Record``.

Theory of operation
-------------------
Opening (spu.md §9.2, as the official client does it, per partition):

1. with a ``consumer_id``: FetchConsumerOffsets to the leader of ``consumer-offset``-0; the first
   entry's offset + 1 becomes the base of ``from_beginning``/``from_end``;
2. FetchOffsets to the partition's leader gives ``start`` (log start) and ``hw``;
3. ``Offset.resolve(start, hw, consumer_offset)`` gives the first offset (``types.py``);
4. the partition stops at ``end`` (inclusive) and, with ``continuous=False``, before the ``hw``
   seen in step 2 (the log's end when the consumer opened);
5. StreamFetch (v24) with that offset, the ``max_bytes``, the isolation and the consumer id.

A *reader* task per partition receives the stream's responses, reads their batch headers,
acknowledges each response at once with UpdateOffsets (the SPU then prepares the next while this
one is consumed) and puts its record set into a channel shared by all partitions. The consumer's
own task decodes a record set when it gets to it (so only the records being read are alive, which
keeps the garbage collector's work small) and hands the records out one by one. The channel's
small bound stops readers (and so the SPU) from running ahead of the consumer.

Failures: a lost connection, ``NotLeaderForPartition`` and the other retriable errors make the
reader wait (backoff, or until the metadata changes) and reopen the stream at the next offset it
has not delivered, on the partition's current leader; ``OffsetEvicted`` continues at the first
offset still stored. It gives up after ``reconnect_timeout`` seconds without progress. Other
errors (``TopicDeleted``, an offset past the end...) are raised from ``__anext__`` as the typed
exception of their ``ErrorCode``, with the server's message.

Consumer offsets (with a ``consumer_id``): ``commit()`` marks the last record handed out of each
partition; ``flush()`` stores the marks with UpdateConsumerOffset on each partition's stream (the
stored value is the last consumed offset; the next session starts one after it). With
``commit="auto"`` every record handed out counts as committed, and a flush happens every
``flush_interval`` seconds while reading and when the consumer closes.

Decoding is the hot path (``fluvial.protocol.record_fast.decode_fetched_batches``): batches
whose records all have the same shape are cut apart with ``struct`` (one call per 512 records)
instead of a Python loop per record, and ``Record`` is a tuple subclass that C code can build
without calling Python.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from fluvial import trace
from fluvial.client.smartmodule import decode_smartmodule_chunk
from fluvial.client.smartmodule import invocations as smartmodule_invocations
from fluvial.client.types import Offset, Record, isolation_from
from fluvial.errors import (
    RETRIABLE, ConnectionLost, Error, ErrorCode, FluvialError,
    OffsetFlushRequestError, OffsetManagementDisabledError,
)
from fluvial.net.errors import RequestTimeout
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.stream_api import CloseStreamsRequest
from fluvial.protocol.record_fast import decode_fetched_batches, scan_record_set
from fluvial.protocol.spu_api import (
    CLIENT_MAX_FETCH_BYTES, FetchConsumerOffsetsRequest, FetchOffsetPartition, FetchOffsetsRequest,
    FetchOffsetTopic, FilterOpts, Isolation, OffsetUpdate, ReplicaKey, StreamFetchRequest,
    UpdateConsumerOffsetRequest, UpdateOffsetsRequest, parse_stream_fetch_response,
)

log = logging.getLogger("fluvial.client")

__all__ = ["Consumer", "RecordStream"]

_DECODE_RECORDS = 2048  # records the consumer decodes at a time



@dataclass(eq=False)
class _PartitionState:
    partition: int
    next_offset: int  # the next offset to hand out (and to fetch from after a reconnect)
    limit: int | None  # stop before this offset (end + 1, or the hw for continuous=False)
    conn: Any = None
    stream_id: int | None = None
    last_yielded: int | None = None
    committed: int | None = None
    flushed: int | None = None
    done: bool = False


class _RawChunk(NamedTuple):
    """A response's record set, not decoded yet (records are built just before they are read,
    so that few of them are alive at once: cheaper for the garbage collector)."""

    partition: int
    buf: bytes
    pos: int
    end: int
    min_offset: int
    limit: int | None


class _PartitionDone:
    __slots__ = ("partition",)

    def __init__(self, partition: int):
        self.partition = partition


class _PartitionReader:
    """Reads one partition's stream: ``next_item()`` returns the next ``_RawChunk`` with wanted
    records, a ``_PartitionDone`` once the partition is finished, or the exception that ended
    it. It reconnects on retriable failures (see the module docstring) and keeps its stream
    open after the end, for consumer offset flushes.

    ``next_item`` may be cancelled at any await and called again: the stream, the position and
    the retry state live on the object.

    A response is acknowledged (UpdateOffsets: the SPU keeps a few responses unacknowledged
    per stream and sends more as acknowledgements come) when the next item is asked for, after
    its records were handed out: the write is not on the way from a record's arrival to the
    application, and the SPU sends ahead only what the application takes. A SmartModule stream,
    which the SPU serves one response at a time, is acknowledged at once.
    """

    def __init__(self, consumer: Consumer, state: _PartitionState, nursery: trio.Nursery):
        self._c = consumer
        self._s = state
        self._nursery = nursery  # for acknowledgements
        self._stream: Any = None
        self._version = 0
        self._delay = consumer.retry_backoff
        self._deadline = trio.current_time() + consumer.reconnect_timeout
        self._finished = False
        self._after_records: Error | None = None  # a SmartModule error, raised after its records
        self._unacked: int | None = None  # the offset to acknowledge on this stream, when asked for more

    async def aclose(self) -> None:
        self._unacked = None  # the stream it was for ends
        if self._stream is not None:
            stream, self._stream = self._stream, None
            conn, stream_id = self._s.conn, self._s.stream_id
            await stream.aclose()
            if conn is not None and stream_id is not None:
                await _close_on_spu(conn, stream_id, self._c._fl.request_timeout)

    async def _reopen_later(self, error: BaseException | None) -> BaseException | None:
        """Drop the stream and wait before the next attempt; the error to give up with, if
        ``reconnect_timeout`` has passed."""
        s, c = self._s, self._c
        await self.aclose()
        s.conn = s.stream_id = None
        if trio.current_time() > self._deadline:
            return error or FluvialError(detail=f"{c.topic}-{s.partition}: no working stream "
                                                f"for {c.reconnect_timeout}s")
        log.debug("stream %s-%d: %s; reopening in %.3fs", c.topic, s.partition, error, self._delay)
        await c._fl.metadata.wait_changed(timeout=self._delay)
        self._delay = min(self._delay * 2, c.retry_backoff_max)
        return None

    async def next_item(self) -> Any:
        s, c = self._s, self._c
        while True:
            if self._after_records is not None:  # the records that came with it are handed out
                error, self._after_records = self._after_records, None
                await self.aclose()
                self._finished = True
                return error.exception()
            if self._finished or s.done:
                self._finished = True
                return _PartitionDone(s.partition)
            try:
                if self._stream is None:
                    _, conn = await c._fl.leader_connection(c.topic, s.partition)
                    req = StreamFetchRequest(c.topic, s.partition, s.next_offset, c.max_bytes,
                                             c.isolation, smartmodules=c.smartmodules,
                                             consumer_id=c.consumer_id)
                    stream = conn.open_stream(req)
                    await stream.__aenter__()
                    self._stream, self._version = stream, stream.version
                    s.conn, s.stream_id = conn, None
                if self._unacked is not None:  # the stream is the one it was for (aclose drops it)
                    offset, self._unacked = self._unacked, None
                    await self._ack(s.conn, offset, s.stream_id)
                payload = await self._stream.receive_payload()
                received = trace.now()
                chunk = parse_stream_fetch_response(payload, self._version)
                if (chunk.error.code == ErrorCode.SmartModuleRuntimeError
                        and chunk.records_end > chunk.records_pos):
                    # a module's partial result: its records first, its error next
                    self._after_records = chunk.error
                elif not chunk.error.ok:
                    if self._on_stream_error(chunk.error):
                        await self.aclose()  # reopen at once, at the new position
                    else:
                        failure = await self._reopen_later(chunk.error.exception())
                        if failure is not None:
                            self._finished = True
                            return failure
                    continue
                if s.stream_id is None:
                    s.stream_id = chunk.stream_id
                start = s.next_offset
                after, wanted = scan_record_set(chunk.records, chunk.records_pos, chunk.records_end,
                                                start, s.limit)
                if chunk.next_filter_offset > 0:
                    after = chunk.next_filter_offset
                if after is not None and after > start and trace.enabled():
                    trace.mark("client.stream_recv", c.topic, s.partition, start, after - 1, at=received)
                if after is not None:
                    if c.smartmodules:
                        await self._ack(s.conn, after, s.stream_id)
                    else:
                        self._unacked = after
                    if after > s.next_offset:
                        s.next_offset = after
                self._delay = c.retry_backoff
                self._deadline = trio.current_time() + c.reconnect_timeout
                if s.limit is not None and s.next_offset >= s.limit:
                    s.done = True
                if wanted:
                    return _RawChunk(s.partition, chunk.records, chunk.records_pos,
                                     chunk.records_end, start, s.limit)
            except trio.ClosedResourceError:  # the consumer was closed under us
                self._finished = True
                return _PartitionDone(s.partition)
            except (ConnectionLost, RequestTimeout, FluvialError, DecodeError) as e:
                if not _is_retriable(e):
                    await self.aclose()
                    self._finished = True
                    return e
                failure = await self._reopen_later(e)
                if failure is not None:
                    self._finished = True
                    return failure

    def _on_stream_error(self, error: Error) -> bool:
        """An error response on a stream. True: reopen at once (an eviction moved the position);
        False: back off (retriable). Anything else is raised."""
        s, c = self._s, self._c
        if error.code == ErrorCode.OffsetEvicted:
            next_available = error.args[1] if len(error.args) > 1 else s.next_offset
            log.info("%s-%d: offset %d evicted; continuing at %d", c.topic, s.partition,
                     s.next_offset, next_available)
            s.next_offset = max(s.next_offset, next_available)
            return True
        exc = error.exception()
        if not _is_retriable(exc):
            raise exc
        return False

    async def _ack(self, conn: Any, offset: int, stream_id: int) -> None:
        """Acknowledge a response (the SPU sends the next only then), without waiting for the
        answer, which says nothing the consumer acts on: no task and no wait per response. A
        lost connection shows on the stream itself."""
        try:
            await conn.notify(UpdateOffsetsRequest([OffsetUpdate(offset, stream_id)]))
        except ConnectionLost as e:
            log.debug("UpdateOffsets for stream %d failed: %s", stream_id, e)


async def _close_on_spu(conn: Any, stream_id: int, timeout: float) -> None:
    """Tell the SPU that stream ``stream_id`` of ``conn`` is done (``CloseStreamsRequest``), so
    that it ends the stream and frees its request slot; best effort (a closed connection ended
    its streams already)."""
    if conn.lookup_version(CloseStreamsRequest) is None:
        return  # an SPU without it ends streams only with the connection
    with trio.move_on_after(min(timeout, 5.0)) as scope:
        scope.shield = True
        try:
            await conn.call(CloseStreamsRequest([stream_id]), timeout=min(timeout, 5.0))
        except (ConnectionLost, RequestTimeout, DecodeError, FluvialError) as e:
            log.debug("CloseStreams for stream %d failed: %s", stream_id, e)


class RecordStream:
    """What every consumer shares: ``async with`` (start, then close), ``async for`` and
    ``receive_many`` over the lists ``_refill`` puts in ``_buf`` (``_i``: how many of the
    current list were handed out)."""

    _buf: list[Record]
    _i: int

    _started: bool
    _closed: bool
    _start_lock: trio.Lock

    async def __aenter__(self):
        await self._ensure_started()
        return self

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self._closed:
            raise FluvialError(detail="the consumer is closed")
        async with self._start_lock:
            if not self._started:
                await self._start()

    async def _start(self) -> None:
        raise NotImplementedError

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.aclose()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Record:
        i = self._i
        buf = self._buf
        if i < len(buf):
            self._i = i + 1
            return buf[i]
        if not await self._refill():
            raise StopAsyncIteration
        self._i = 1
        return self._buf[0]

    async def receive_many(self) -> list[Record]:
        """The records available now, at least one (waiting for them); ``[]`` once the consumer
        has reached its end. Cheaper than ``async for`` when records come in bulk."""
        i = self._i
        buf = self._buf
        if i < len(buf):
            self._i = len(buf)
            return buf[i:] if i else buf
        if not await self._refill():
            return []
        self._i = len(self._buf)
        return self._buf


class Consumer(RecordStream):
    """Reads a topic: ``async for record in consumer``. Get one with ``fl.consumer(topic, ...)``.

    Args:
        topic: the topic.
        partition: None for every partition of the topic, an int, or a list of ints.
        offset: where to start (``Offset``); default ``Offset.beginning()``.
        isolation: "read_uncommitted" (default: everything the leader has) or
            "read_committed" (only what is committed to the in-sync replicas).
        max_bytes: the most record bytes per StreamFetch response.
        end: the last offset to read (inclusive), in every partition.
        continuous: False stops each partition at the log's end as of opening.
        consumer_id: store consumer offsets under this id (resume where it left off).
        commit: "auto" (every record read counts as committed; flushed periodically and on
            close) or "manual" (``commit()`` and ``flush()``).
        flush_interval: seconds between automatic flushes.
        reconnect_timeout: seconds a partition may go without a working stream before the
            consumer gives up with the last error.
        buffer: responses buffered ahead of the reader (per consumer).
        markers: also hand out stream markers (control records, ``Record.is_control``), for
            ``fluvial.client.stream``; by default they are skipped.
        smartmodules: a chain the SPU runs over the records before sending them: each a
            ``SmartModule``, a name (``str``, created with ``fl.admin.create_smartmodule``) or a
            ``pathlib.Path`` of a wasm file (docs/smartmodules.md). A SmartModule error ends
            the partition's stream with ``SmartModule*Error``, raised after the records the
            module produced before it.
    """

    def __init__(self, fl: Any, topic: str, *, partition: int | list[int] | None = None,
                 offset: Offset | None = None, isolation: str | Isolation | None = None,
                 max_bytes: int = CLIENT_MAX_FETCH_BYTES, end: int | None = None,
                 continuous: bool = True, consumer_id: str | None = None,
                 commit: str = "auto", flush_interval: float = 10.0,
                 reconnect_timeout: float = 60.0, retry_backoff: float = 0.05,
                 retry_backoff_max: float = 1.0, buffer: int = 4, markers: bool = False,
                 smartmodules: list | None = None):
        if commit not in ("auto", "manual"):
            raise ValueError(f"commit must be 'auto' or 'manual', not {commit!r}")
        if end is not None and end < 0:
            raise ValueError(f"end must be >= 0, not {end}")
        if not 0 < max_bytes <= 0x7FFFFFFF:
            raise ValueError(f"max_bytes must be a positive i32, not {max_bytes}")
        self._fl = fl
        self.topic = topic
        if partition is None or isinstance(partition, int):
            self._wanted = partition
        else:
            self._wanted = list(partition)
        self.offset = offset if offset is not None else Offset.beginning()
        if not isinstance(self.offset, Offset):
            raise TypeError(f"offset must be an Offset, not {offset!r}")
        self.isolation = isolation_from(isolation)
        self.max_bytes = max_bytes
        self.end = end
        self.continuous = continuous
        self.consumer_id = consumer_id
        self.smartmodules = smartmodule_invocations(smartmodules)
        self.commit_mode = commit
        self.flush_interval = flush_interval
        self.reconnect_timeout = reconnect_timeout
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self._markers = markers
        self._send, self._receive = trio.open_memory_channel[Any](max(1, buffer))
        self._partitions: dict[int, _PartitionState] = {}
        self._buf: list[Record] = []
        self._i = 0
        self._raw: _RawChunk | None = None
        self._raw_pos = 0
        self._inline: _PartitionReader | None = None
        self._active = 0
        self._started = False
        self._closed = False
        self._start_lock = trio.Lock()
        self._readers_scope: trio.CancelScope | None = None
        self._readers_done = trio.Event()
        self._next_flush = math.inf
        self._flush_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"<Consumer topic={self.topic!r}{' closed' if self._closed else ''}>"

    @property
    def partitions(self) -> list[int]:
        """The partitions being read (known once started)."""
        return sorted(self._partitions)

    # -- lifetime ------------------------------------------------------------------------------

    async def _start(self) -> None:
        md = self._fl.metadata
        topic = await md.topic(self.topic)
        if self._wanted is None:
            wanted = list(range(topic.spec.partition_count()))
        elif isinstance(self._wanted, int):
            wanted = [self._wanted]
        else:
            wanted = self._wanted
        states = [await self._open_position(p) for p in wanted]
        self._partitions = {s.partition: s for s in states}
        self._active = len(states)
        self._started = True
        if self.consumer_id is not None and self.commit_mode == "auto":
            self._next_flush = trio.current_time() + self.flush_interval
        self._fl._consumers.add(self)
        await self._fl.nursery.start(self._run_readers, states)

    async def _consumer_offset(self, partition: int) -> int | None:
        """The stored offset of ``consumer_id`` for ``partition``, plus one, or None."""
        conn = await self._fl.offsets_connection()
        req = FetchConsumerOffsetsRequest(FilterOpts(ReplicaKey(self.topic, partition), self.consumer_id))
        resp = await conn.call(req, timeout=self._fl.request_timeout)
        if not resp.error_code.ok:
            raise resp.error_code.exception()
        for c in resp.consumers:
            if (c.consumer_id == self.consumer_id and c.replica_id.topic == self.topic
                    and c.replica_id.partition == partition):
                return c.offset + 1
        return None

    async def _open_position(self, partition: int) -> _PartitionState:
        """Steps 1-4 of the module docstring for one partition."""
        consumer_offset = None
        if self.consumer_id is not None:
            consumer_offset = await self._consumer_offset(partition)
        entry = await fetch_partition_offsets(self._fl, self.topic, partition)
        start = self.offset.resolve(entry.start_offset, entry.last_stable_offset, consumer_offset)
        limit = None if self.end is None else self.end + 1
        if not self.continuous:
            limit = entry.last_stable_offset if limit is None else min(limit, entry.last_stable_offset)
        state = _PartitionState(partition, start, limit)
        if limit is not None and start >= limit:
            state.done = True
        return state

    async def aclose(self) -> None:
        """Stop reading; with ``commit="auto"`` and a consumer id, flush the offsets first.

        Raises:
            FluvialError: the final automatic flush failed (the consumer is closed anyway).
        """
        if self._closed:
            return
        try:
            if self._started and self.consumer_id is not None and self.commit_mode == "auto":
                self._note_position()
                self._commit_all()
                await self.flush()
        finally:
            self._closed = True
            self._fl._consumers.discard(self)
            if self._readers_scope is not None:
                self._readers_scope.cancel()
                await self._readers_done.wait()
            self._receive.close()

    # -- readers -------------------------------------------------------------------------------

    async def _run_readers(self, states: list[_PartitionState], *,
                           task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the readers: with one partition the consumer's task calls its reader directly
        (one scheduler hop less per response); with several, a task per partition feeds the
        channel. Either way acknowledgements run as tasks in this nursery."""
        try:
            with trio.CancelScope() as scope:
                self._readers_scope = scope
                async with self._send, trio.open_nursery() as nursery:
                    readers = [_PartitionReader(self, s, nursery) for s in states]
                    if len(readers) == 1:
                        self._inline = readers[0]
                    task_status.started()
                    if self._inline is None:
                        for r in readers:
                            nursery.start_soon(self._feed, r)
                    try:
                        await trio.sleep_forever()
                    finally:
                        with trio.CancelScope(shield=True):
                            for r in readers:
                                await r.aclose()
        finally:
            self._readers_done.set()

    async def _feed(self, reader: _PartitionReader) -> None:
        while True:
            item = await reader.next_item()
            try:
                await self._send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the consumer was closed
            if type(item) is not _RawChunk:
                return  # done (its stream stays open for offset flushes) or failed

    # -- iteration -----------------------------------------------------------------------------

    def _note_position(self) -> None:
        """Record the last record handed out of the current list."""
        if self._i:
            last = self._buf[self._i - 1]
            s = self._partitions.get(last.partition)
            if s is not None:
                s.last_yielded = last.offset

    async def _refill(self) -> bool:
        if not self._started:
            await self._ensure_started()
        if self._closed:
            return False
        self._note_position()
        if self.commit_mode == "auto" and self.consumer_id is not None:
            self._commit_all()
            if trio.current_time() >= self._next_flush:
                self._next_flush = trio.current_time() + self.flush_interval
                self._fl.nursery.start_soon(self._background_flush)
        self._buf = []
        self._i = 0
        if self._raw is not None and self._decode_raw():
            return True
        while self._active > 0:
            if self._inline is not None:
                item = await self._inline.next_item()
            else:
                try:
                    item = await self._receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return False
            if type(item) is _RawChunk:
                self._raw, self._raw_pos = item, item.pos
                if self._decode_raw():
                    return True
                continue
            if isinstance(item, _PartitionDone):
                self._active -= 1
                continue
            raise item
        return False

    def _decode_raw(self) -> bool:
        """Decode the next few batches of the current record set into ``self._buf``; False
        when it holds no more records. A few thousand records at a time: they are dropped
        before the next are made, so the garbage collector never has many to look at."""
        raw = self._raw
        if raw is not None and self.smartmodules:
            self._raw = None
            self._buf = decode_smartmodule_chunk(raw.buf, raw.pos, raw.end, raw.partition,
                                                 raw.min_offset, raw.limit)
            return bool(self._buf)
        while raw is not None and self._raw_pos < raw.end:
            try:
                records, pos, _ = decode_fetched_batches(
                    raw.buf, self._raw_pos, raw.end, raw.partition, raw.min_offset, raw.limit,
                    max_records=_DECODE_RECORDS, row=Record, control=self._markers)
            except DecodeError:
                self._raw = None  # the rest of this record set is lost; the error says where
                raise
            if pos == self._raw_pos:
                break  # only a cut-off batch is left
            self._raw_pos = pos
            if records:
                self._buf = records
                return True
        self._raw = None
        return False

    # -- consumer offsets ----------------------------------------------------------------------

    def _check_offsets_enabled(self) -> None:
        if self.consumer_id is None:
            raise OffsetManagementDisabledError(
                detail="offset management is disabled: the consumer has no consumer_id")

    def _commit_all(self) -> None:
        for s in self._partitions.values():
            if s.last_yielded is not None:
                s.committed = s.last_yielded

    def commit(self) -> None:
        """Mark the last record handed out of each partition as consumed (stored on ``flush``).

        Raises:
            OffsetManagementDisabledError: the consumer has no ``consumer_id``.
        """
        self._check_offsets_enabled()
        self._note_position()
        self._commit_all()

    async def flush(self) -> None:
        """Store the committed offsets (UpdateConsumerOffset on each partition's stream).

        Raises:
            OffsetManagementDisabledError: the consumer has no ``consumer_id``.
            OffsetFlushRequestError: a partition's stream is not open right now (reconnecting).
            FluvialError: the SPU refused (its ``ErrorCode``'s exception).
        """
        self._check_offsets_enabled()
        async with self._flush_lock:
            for s in list(self._partitions.values()):
                if s.committed is None or s.committed == s.flushed:
                    continue
                conn, stream_id = s.conn, s.stream_id
                if conn is None or stream_id is None:
                    raise OffsetFlushRequestError(
                        Error(ErrorCode.OffsetFlushRequestError,
                              (f"the stream of {self.topic}-{s.partition} is not open",)))
                offset = s.committed
                resp = await conn.call(UpdateConsumerOffsetRequest(offset, stream_id),
                                       timeout=self._fl.request_timeout)
                if not resp.error_code.ok:
                    raise resp.error_code.exception()
                s.flushed = offset
            await trio.lowlevel.checkpoint()

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except (FluvialError, ConnectionLost, RequestTimeout, DecodeError) as e:
            log.warning("automatic offset flush for %r failed: %s", self.consumer_id, e)


async def fetch_partition_offsets(fl: Any, topic: str, partition: int) -> Any:
    """FetchOffsets to the partition's leader: its ``start_offset`` (log start) and
    ``last_stable_offset`` (the HW).

    Raises:
        FluvialError: no answer for the partition, or the error it carries.
    """
    _, conn = await fl.leader_connection(topic, partition)
    req = FetchOffsetsRequest([FetchOffsetTopic(topic, [FetchOffsetPartition(partition)])])
    resp = await conn.call(req, timeout=fl.request_timeout)
    entry = next((p for t in resp.topics if t.name == topic for p in t.partitions
                  if p.partition_index == partition), None)
    if entry is None:
        raise FluvialError(detail=f"no replica offset for {topic}-{partition}")
    if not entry.error_code.ok:
        raise entry.error_code.exception()
    return entry


def _is_retriable(error: BaseException) -> bool:
    if isinstance(error, (ConnectionLost, RequestTimeout)):
        return True
    code = getattr(error, "code", None)
    return code in RETRIABLE or code == ErrorCode.SpuNotFound
