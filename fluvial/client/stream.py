"""Bounded streams over a topic: a sink sends, the matching source receives, an end-of-stream
(EOS) marks the stream complete. See docs/streams.md.

    async with fl.sink("jobs", stream="run-42") as sink:
        await sink.send(b"part 1", headers={"n": "1"})
    # leaving the block: every record acknowledged, then EOS

    async for rec in fl.source("jobs", stream="run-42"):
        ...  # ends exactly at EOS; raises StreamIncomplete on an abort or a lost stream

Theory of operation
-------------------
A stream lives in one partition of its topic (``stream_partition``: SipHash of the id, as the
producer hashes a key), so its records and markers are totally ordered. The sink is an
*idempotent* producer (a retry after a lost acknowledgement or a failover never stores a record
twice), acks once the records are committed to the in-sync replicas (``read_committed``); its
markers (``fluvial.protocol.markers``) are control batches sent with their own Produce requests.
The source is a ``read_committed`` consumer of that partition that also receives markers; the
pure ``SourceState`` decides per record. Across a leader failover the consumer reopens its
stream at the next offset it has not handed out, on the new leader: it resumes from a durable
position (committed records never move), so every record comes once and the stream still ends
at EOS. ``offset=`` gives where a source starts reading (default: the log's beginning; a resumed
source passes the last offset it received + 1).

Sessions: the sink's BEGIN marker carries its session timeout (``session_timeout``, default
30 s, at most 60 s) and it sends a keep-alive to the leader every third of it; a leader that
hears nothing for that long appends the ABORT marker itself (``fluvial.spu.stream_sessions``).

Back-pressure: ``send`` waits while the sink's unacknowledged bytes exceed
``max_unacked_bytes`` (default 1 MiB). A slow source holds at most one unacknowledged
StreamFetch response per partition on the SPU plus the consumer's small buffer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import trio

from fluvial.client.partitioner import key_hash
from fluvial.client.stream_state import (
    DEFAULT_MAX_UNACKED_BYTES, DEFAULT_SESSION_TIMEOUT, Action, SinkClosed, SinkState, SourceState,
)
from fluvial.client.types import Offset, Record
from fluvial.errors import Error, FluvialError, Retriable
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.markers import (
    MAX_SESSION_MS, STREAM_HEADER, MarkerKind, encode_marker, stream_id_bytes, user_headers,
)
from fluvial.protocol.record_headers import normalize_headers
from fluvial.protocol.spu_api import (
    Isolation, PartitionProduceData, ProduceRequest, TopicProduceData,
)
from fluvial.protocol.stream_api import StreamKeepAliveRequest

log = logging.getLogger("fluvial.client")

__all__ = ["Sink", "SinkClosed", "Source", "StreamIncomplete", "send_batch", "stream_partition"]


class StreamIncomplete(FluvialError):
    """A stream ended without its EOS: its sink aborted (or was declared aborted after its
    session timeout), or the source could not read on. ``last_offset`` is the offset of the last
    record the source read (None: none); records up to it were handed out, and whether more
    were sent is not known."""

    def __init__(self, detail: str, last_offset: int | None):
        super().__init__(Error.other(detail), f"{detail} (last offset received: {last_offset})")
        self.last_offset = last_offset


def stream_partition(stream: str | int, partitions: int) -> int:
    """The partition a stream lives in: SipHash of its id, like a record key's."""
    return key_hash(stream_id_bytes(stream)) % partitions


async def send_batch(fl: Any, topic: str, partition: int, batch: bytes, *,
                     max_delay: float = 0.5) -> None:
    """Write one ready-made batch (a marker, or a batch stamped with a producer id and its
    sequence) to the partition's leader, ReadCommitted, retrying retriable failures until
    acknowledged (bound it with a cancel scope). Also fluvial.processor's output writes.

    Raises:
        FluvialError: a failure that is not retriable.
    """
    req = ProduceRequest(None, Isolation.ReadCommitted, 5000,
                         [TopicProduceData(topic, [PartitionProduceData(partition, batch)])], [])
    delay = 0.01
    while True:
        try:
            _, conn = await fl.leader_connection(topic, partition)
            resp = await conn.call(req, timeout=10.0)
            error = resp.responses[0].partitions[0].error_code
            if error.ok:
                return
            exc = error.exception()
        except Retriable as e:
            exc = e
        if not isinstance(exc, Retriable):
            raise exc
        log.debug("produce to %s-%d: %s; retrying", topic, partition, exc)
        await trio.sleep(delay)
        delay = min(delay * 2, max_delay)


async def _partition_of(fl, topic: str, stream: str | int) -> int:
    await fl.metadata.topic(topic)
    await fl.metadata.partition(topic, 0)
    return stream_partition(stream, fl.metadata.partition_count(topic))


class Sink:
    """Sends one stream; get one with ``fl.sink(topic, stream=ID)`` (see the module docstring).

    Args:
        max_unacked_bytes: the back-pressure budget (bytes sent and not yet acknowledged).
        session_timeout: seconds of silence after which the leader aborts the stream.
        marker_timeout: seconds a marker may take (retries included) before the sink fails.
        producer options (``batch_size``, ``linger``, ``timeout``...) are passed on.
    """

    def __init__(self, fl: Any, topic: str, stream: str | int, *,
                 max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES,
                 session_timeout: float = DEFAULT_SESSION_TIMEOUT, marker_timeout: float = 60.0,
                 **producer_options: Any):
        self._fl = fl
        self.topic = topic
        self.stream = str(stream)
        self._sid = stream_id_bytes(stream)
        self._state = SinkState(max_unacked_bytes)
        self.session_ms = min(max(1, int(session_timeout * 1000)), MAX_SESSION_MS)
        self.marker_timeout = marker_timeout
        self._producer_options = producer_options
        self._producer = None
        self.partition: int | None = None
        self._pending: deque = deque()  # (future, size), oldest first
        self._keepalive: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<Sink {self.topic!r} stream={self.stream!r} {self._state.state}>"

    async def __aenter__(self) -> Sink:
        self.partition = await _partition_of(self._fl, self.topic, self.stream)
        opts = dict(self._producer_options)
        opts.setdefault("isolation", "read_committed")
        self._producer = self._fl.producer(self.topic, idempotent=True, partitioner=self.partition,
                                           **opts)
        await self._producer.__aenter__()
        await self._marker(MarkerKind.BEGIN)
        self._keepalive = trio.CancelScope()
        self._fl.nursery.start_soon(self._keep_alive, self._keepalive)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if self._state.state == "open":
                await self.aclose()
            return
        await self._abort()

    async def send(self, value: bytes | str, key: bytes | str | None = None,
                   headers: Any = None) -> Any:
        """Queue a record of the stream; returns its ``ProduceFuture``. Waits while the
        unacknowledged bytes are over budget.

        Raises:
            SinkClosed: the sink is closing, closed or aborted.
            FluvialError: a record before this one failed.
        """
        self._state.check_send()
        if self._producer is None:
            raise SinkClosed("the sink is not open: use it as `async with fl.sink(...)`")
        hs = normalize_headers(headers) + ((STREAM_HEADER, self._sid),)
        fut = await self._producer.send(value, key, hs)
        size = len(value) + (len(key) if key else 0)
        self._state.sent(size)
        self._pending.append((fut, size))
        while self._pending and (self._pending[0][0].done() or self._state.over_budget()):
            f, n = self._pending.popleft()
            try:
                await f
            finally:
                self._state.acked(n)
        return fut

    async def aclose(self) -> None:
        """Wait until every record is acknowledged, then write EOS.

        Raises:
            SinkClosed: closed already.
            FluvialError: a record failed (the stream is then aborted, not ended).
        """
        self._state.start_close()
        try:
            await self._producer.flush()
            self._stop_keepalive()
            await self._marker(MarkerKind.EOS)
        except BaseException:
            await self._abort()
            raise
        self._state.closed()
        await self._producer.aclose()

    async def _abort(self) -> None:
        """Never EOS: write the ABORT marker if still possible (shielded, bounded)."""
        self._stop_keepalive()
        if not self._state.abort():
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(min(self.marker_timeout, 5.0)):
                try:
                    await self._marker(MarkerKind.ABORT)
                except FluvialError as e:
                    log.warning("stream %r: cannot write its abort marker: %s", self.stream, e)
            if self._producer is not None:
                await self._producer._abort(SinkClosed("the stream was aborted"))

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()

    async def _marker(self, kind: MarkerKind) -> None:
        """Write one marker to the partition's leader, retrying retriable failures."""
        batch = encode_marker(kind, self.stream, first_timestamp=time.time_ns() // 1_000_000,
                              session_ms=self.session_ms if kind is MarkerKind.BEGIN else None,
                              compression=self._producer.compression)
        with trio.fail_after(self.marker_timeout):
            await send_batch(self._fl, self.topic, self.partition, batch)

    async def _keep_alive(self, scope: trio.CancelScope) -> None:
        req = StreamKeepAliveRequest(self.topic, self.partition, self.stream, self.session_ms)
        with scope:
            while True:
                await trio.sleep(self.session_ms / 3000)
                try:
                    _, conn = await self._fl.leader_connection(self.topic, self.partition)
                    await conn.call(req, timeout=self.session_ms / 3000)
                except FluvialError as e:
                    log.debug("stream %r: keep-alive failed: %s", self.stream, e)


class Source:
    """Receives one stream: ``async for rec in fl.source(topic, stream=ID)``; see the module
    docstring. Records come without the stream's own header.

    Args:
        offset: where to start reading the stream's partition (default: the beginning).
        reconnect_timeout: seconds the source may fail to read before ``StreamIncomplete``.
        consumer options (``max_bytes``...) are passed on.

    Raises (from the iteration):
        StreamIncomplete: an abort marker, or a failure that outlasted ``reconnect_timeout``.
    """

    def __init__(self, fl: Any, topic: str, stream: str | int, *, offset: Offset | None = None,
                 reconnect_timeout: float = 60.0, **consumer_options: Any):
        self._fl = fl
        self.topic = topic
        self.stream = str(stream)
        self._state = SourceState(stream)
        self.offset = offset
        self.reconnect_timeout = reconnect_timeout
        self._consumer_options = consumer_options
        self._consumer = None
        self.partition: int | None = None

    @property
    def last_offset(self) -> int | None:
        """The offset of the last record read from the partition (data or not)."""
        return self._state.last_offset

    @property
    def complete(self) -> bool:
        return self._state.done is Action.END

    async def __aenter__(self) -> Source:
        await self._open()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._consumer is not None:
            c, self._consumer = self._consumer, None
            await c.aclose()

    async def _open(self) -> None:
        if self._consumer is not None:
            return
        self.partition = await _partition_of(self._fl, self.topic, self.stream)
        opts = dict(self._consumer_options)
        opts.setdefault("isolation", "read_committed")
        self._consumer = self._fl.consumer(
            self.topic, partition=self.partition, offset=self.offset or Offset.beginning(),
            reconnect_timeout=self.reconnect_timeout, markers=True, **opts)
        await self._consumer.__aenter__()

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> Record:
        if self._state.done is Action.END:
            raise StopAsyncIteration
        if self._state.done is Action.ABORTED:
            raise self._aborted()
        if self._consumer is None:
            await self._open()
        while True:
            try:
                rec = await self._consumer.__anext__()
            except StopAsyncIteration:
                await self.aclose()
                raise StreamIncomplete(f"stream {self.stream!r}: the partition ended before its "
                                       f"EOS", self._state.last_offset) from None
            except (FluvialError, DecodeError) as e:
                await self.aclose()
                raise StreamIncomplete(f"stream {self.stream!r}: reading failed: {e}",
                                       self._state.last_offset) from e
            action = self._state.feed(rec)
            if action is Action.DELIVER:
                return Record((rec.partition, rec.offset, rec.key, rec.value, rec.timestamp,
                               user_headers(rec.headers)))
            if action is Action.END:
                await self.aclose()
                raise StopAsyncIteration
            if action is Action.ABORTED:
                await self.aclose()
                raise self._aborted()

    def _aborted(self) -> StreamIncomplete:
        return StreamIncomplete(f"stream {self.stream!r} was aborted", self._state.last_offset)
