"""The SPU's public API: produce, stream fetch, offsets (../shared/fluvio-protocol/spu.md).

One ``handle_<api>(ctx, conn, header, request)`` per api key, served by
``fluvial.net.dispatch.serve_api`` (``public_api``): a handler returns its response, except a
stream fetch, which keeps sending on its correlation id until the connection closes.

Produce, per partition entry (``_append_one`` then ``_await_ack``):

1. Refused before anything is written: no local replica (``TopicNotFound`` /
   ``NotLeaderForPartition``), a system topic (``PermissionDenied``, whatever the policy grants:
   only the SPU's own ConsumerOffsetStore writes ``consumer-offset``), not the leader or no valid
   lease (``NotLeaderForPartition``), ReadCommitted below the topic's min ISR (Kafka's
   NOT_ENOUGH_REPLICAS, answered ``RequestTimedOut``: see ``_NOT_ENOUGH_REPLICAS``), a codec the
   topic does not allow (``CompressionError``). Storage checks every batch (CRC, size) once,
   in ``Replica.append``.
2. Appended at once, in arrival order, then acknowledged once durable on the leader (and, for
   ReadCommitted, covered by the HW with the ISR at min ISR), and only while the leadership the
   append was made under still holds and the lease is valid; otherwise ``NotLeaderForPartition``
   (retriable; the record may or may not survive) or, past the timeout, ``RequestTimedOut``.
3. Batches of an idempotent producer (producer id >= 0) are checked against the leader's
   ``replica.producers`` first (``fluvial.spu.producer_state.plan_append``): a retry of stored
   batches is answered with their offsets once they may be acknowledged, and nothing is appended
   again; an out-of-order or fenced batch is refused (``Other``, starting ``OUT_OF_ORDER``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from fluvial.errors import OK, Error, ErrorCode
from fluvial.access import allowed
from fluvial.protocol.batch import BatchError, iter_batches
from fluvial.net.dispatch import ApiRegistry, RequestLimits, serve_api
from fluvial.net.server import FileRegion, Handler
from fluvial.protocol import headers_api as ha
from fluvial.protocol import spu_api as api
from fluvial.protocol.group_api import GROUP_REQUESTS
from fluvial.protocol import stream_api as sta
from fluvial.protocol.codec import DecodeError
from fluvial.protocol.record_headers import ATTR_HEADERS, check_header_batches, has_headers, strip_record_set
from fluvial.protocol.sc_objects import CONSUMER_OFFSET_TOPIC
from fluvial.spu.group_coordinator import GROUP_HANDLERS
from fluvial.spu.partition import NotLeader, PartitionReplica, Waiter
from fluvial.spu.stream_sessions import handle_stream_keep_alive, note_markers
from fluvial.spu.producer_state import (
    OUT_OF_ORDER, has_producer_ids, plan_append, record_appended,
)
from fluvial.smartmodule.chain import Chain
from fluvial.smartmodule.engine import SmartModuleFailure
from fluvial.spu.smartmodules import open_chain, run_chain, transform_produce
from fluvial.storage import errors as serr
from fluvial.storage.replica import ReadResult
from fluvial import trace

log = logging.getLogger("fluvial.spu")

# topic CompressionAlgorithm -> the batch codec it allows (Any = 4 allows all)
_TOPIC_CODEC = {0: 0, 1: 1, 2: 2, 3: 3, 5: 4}

# Kafka refuses an acks=all produce below min ISR with NOT_ENOUGH_REPLICAS (retriable, nothing
# written). Fluvio has no such code; its own SPU answers RequestTimedOut when a ReadCommitted
# produce does not get its replicas, the official client shows that as a produce that did not
# complete, and fluvial's client retries it (fluvial.errors.RETRIABLE). NotLeaderForPartition
# would send clients looking for another leader that does not exist.
_NOT_ENOUGH_REPLICAS = ErrorCode.RequestTimedOut


MAX_CONTROL_REQUEST_BYTES = 1 << 20  # every request but Produce is small; decode no more
MAX_STREAM_FETCH_REQUEST_BYTES = 16 << 20  # a StreamFetch may carry AdHoc SmartModules (gzipped wasm)


def public_api(ctx) -> Handler:
    """The ``serve_tcp`` handler of the SPU's public port. Produce carries records and may fill a
    frame (``ctx.max_request_bytes``); a StreamFetch may carry SmartModules (16 MiB); every other
    request is small."""
    limits = RequestLimits(MAX_CONTROL_REQUEST_BYTES, {api.SpuApiKey.Produce: ctx.max_request_bytes,
                                                       api.SpuApiKey.StreamFetch: MAX_STREAM_FETCH_REQUEST_BYTES})
    # fluvial's own keys are decoded here too; the consumer-group keys are not advertised (the
    # official client sees Fluvio's keys only): fluvial.spu.group_coordinator
    registry = ApiRegistry({**api.SPU_REQUESTS, **GROUP_REQUESTS,
                            ha.ENABLE_RECORD_HEADERS_KEY: ha.EnableRecordHeadersRequest,
                            sta.STREAM_KEEP_ALIVE_KEY: sta.StreamKeepAliveRequest,
                            sta.CLOSE_STREAMS_KEY: sta.CloseStreamsRequest},
                           (*api.SPU_API_VERSIONS, ha.HEADERS_API_VERSION, sta.STREAM_API_VERSION,
                            sta.CLOSE_STREAMS_API_VERSION))
    # a consumer's acknowledgement only wakes its stream: answered by the reader, no task each
    return serve_api(registry, {**HANDLERS, **GROUP_HANDLERS}, limits, ctx,
                     inline=frozenset({api.SpuApiKey.UpdateOffsets}))


def _storage_error(e: serr.StorageError, topic: str, partition: int) -> Error:
    """The answer to a storage failure: the ErrorCode it carries, with the payload that code
    needs (PartitionFull names the partition, Other says what was invalid)."""
    if e.code == ErrorCode.PartitionFull:
        return Error(e.code, ((topic, partition),))
    if e.code == ErrorCode.Other:
        return Error.other(f"invalid batch: {e}")
    return Error(e.code)


def _append_one(ctx, topic: str, part: api.PartitionProduceData, smartmodules: bool,
                committed: bool, timeout_ms: int):
    """Check and append one partition entry, synchronously, so the entries of successive
    requests reach the log in arrival order. Returns (response, pending) where pending is
    (replica, leo, leadership) when there is something to wait for."""
    p = part.partition_index
    resp = api.PartitionProduceResponse(p, OK, 0)
    replica = ctx.replicas.get((topic, p))
    if topic == CONSUMER_OFFSET_TOPIC or (replica is not None and replica.assignment.settings.system):
        resp.error_code = Error(ErrorCode.PermissionDenied)
        return resp, None
    if replica is None or not replica.is_leader or not replica.lease_valid():
        resp.error_code = Error(ErrorCode.NotLeaderForPartition if replica or ctx.knows_topic(topic)
                                else ErrorCode.TopicNotFound)
        return resp, None
    if smartmodules:  # the caller transforms entries first (``_transform_entry``)
        resp.error_code = Error(ErrorCode.SmartModuleChainInitError, ("entry not transformed",))
        return resp, None
    records = part.records
    if not records:
        return resp, None
    if committed and replica.under_min_isr():
        resp.error_code = Error(_NOT_ENOUGH_REPLICAS, (timeout_ms, 0))
        return resp, None
    allowed_codec = _TOPIC_CODEC.get(replica.assignment.settings.compression)
    if allowed_codec is not None:
        try:  # headers only: storage checks every batch, CRC included, when it appends
            if any(h.compression != allowed_codec for _, h in iter_batches(records, verify_crc=False)):
                resp.error_code = Error(ErrorCode.CompressionError)
                return resp, None
        except BatchError as e:
            resp.error_code = Error.other(f"rejected: {e}")
            return resp, None
    if has_headers(records):
        try:  # a headers batch must decode: the SPU strips it for other clients later
            check_header_batches(records)
        except DecodeError as e:
            resp.error_code = Error.other(f"invalid batch: {e}")
            return resp, None
    leadership = replica.leader_state
    plan = batches = None
    table = replica.producers
    if table is not None and has_producer_ids(records):
        try:
            batches = list(iter_batches(records, verify_crc=False))
        except BatchError as e:
            resp.error_code = Error.other(f"rejected: {e}")
            return resp, None
        plan = plan_append(table, batches, replica.leo)
        if plan.refused is not None:
            resp.error_code = Error.other(f"{OUT_OF_ORDER}: {plan.refused}")
            return resp, None
        resp.log_start_offset = replica.log_start_offset
        if plan.duplicate is not None:
            resp.base_offset = plan.duplicate[0]
            if plan.skip == len(records):  # a retry of stored batches: acknowledge them again
                return resp, (replica, plan.duplicate[1] + 1, leadership)
            records = records[plan.skip:]
    try:
        result = replica.append_nowait(records)
    except NotLeader:
        resp.error_code = Error(ErrorCode.NotLeaderForPartition)
        return resp, None
    except serr.StorageError as e:
        resp.error_code = _storage_error(e, topic, p)
        return resp, None
    note_markers(ctx, topic, p, records)
    if plan is not None:
        record_appended(table, batches, plan.skip, result.base_offset)
        if plan.duplicate is not None:
            return resp, (replica, result.leo, leadership)
    resp.base_offset = result.base_offset
    resp.log_start_offset = replica.log_start_offset
    return resp, (replica, result.leo, leadership)


async def _await_ack(resp: api.PartitionProduceResponse, replica: PartitionReplica, leo: int,
                     leadership, topic: str, committed: bool, timeout_ms: int) -> None:
    """Wait until the entry may be acknowledged: durable on the leader; with ReadCommitted also
    covered by the HW while the ISR meets min_isr; in both cases under the leadership it was
    appended under, with a valid lease. Otherwise set the error."""
    try:
        with trio.fail_after(max(timeout_ms, 1) / 1000):
            await replica.wait_durable(leo)
            trace.mark("spu.durable", topic, resp.partition_index, leo - 1)
            if committed:
                while ((replica.hw < leo or replica.under_min_isr())
                       and replica.leader_state is leadership):
                    await replica.wait_change()
                trace.mark("spu.hw", topic, resp.partition_index, leo - 1)
        if not replica.may_ack(leadership):
            # Demoted (this log may since have been truncated under the batch and refilled from
            # the new leader), or cut off from the SC past the lease: nothing here vouches for it.
            resp.error_code = Error(ErrorCode.NotLeaderForPartition)
    except trio.TooSlowError:
        # not acknowledged; it may still be stored (and committed later): retriable
        resp.error_code = Error(ErrorCode.RequestTimedOut, (timeout_ms, 0))
    except serr.StorageError as e:
        resp.error_code = _storage_error(e, topic, resp.partition_index)


async def _transform_entry(ctx, header, req: api.ProduceRequest, topic: str,
                           part: api.PartitionProduceData
                           ) -> tuple[api.PartitionProduceData, api.PartitionProduceResponse | None]:
    """A produce entry through the request's SmartModule chain (only on the partition's leader;
    anything else is left for ``_append_one`` to refuse). Returns the entry to append, or the
    response that refuses it (the chain failed). An entry the chain empties is answered OK with
    nothing stored."""
    replica = ctx.replicas.get((topic, part.partition_index))
    if replica is None or not replica.is_leader or not part.records:
        return part, None
    batch, error = await transform_produce(ctx, req.smartmodules, header.api_version, part.records)
    if error is not None:
        return part, api.PartitionProduceResponse(part.partition_index, error, 0)
    return api.PartitionProduceData(part.partition_index, batch), None


async def handle_produce(ctx, conn, header, req: api.ProduceRequest) -> api.ProduceResponse:
    received = trace.now() if trace.enabled() else None
    committed = req.isolation == api.Isolation.ReadCommitted
    out = api.ProduceResponse([], 0)
    waits = []
    for t in req.topics:
        tr = api.TopicProduceResponse(t.name, [])
        out.responses.append(tr)
        if not allowed(ctx.policy, conn, "produce", "topic", t.name):
            tr.partitions = [api.PartitionProduceResponse(p.partition_index, Error(ErrorCode.PermissionDenied), 0)
                             for p in t.partitions]
            continue
        for part in t.partitions:
            if req.smartmodules:  # produce-side SmartModules: transform, then append the result
                part, refused = await _transform_entry(ctx, header, req, t.name, part)
                if refused is not None:
                    tr.partitions.append(refused)
                    continue
            resp, pending = _append_one(ctx, t.name, part, False, committed, req.timeout_ms)
            tr.partitions.append(resp)
            if pending is not None:
                waits.append((resp, *pending, t.name))
                if received is not None:
                    trace.mark("spu.recv", t.name, part.partition_index, resp.base_offset, pending[1] - 1, at=received)
                    trace.mark("spu.appended", t.name, part.partition_index, resp.base_offset, pending[1] - 1)
    if len(waits) == 1:  # one partition (the usual request): no task to start, no nursery to join
        resp, replica, leo, leadership, topic = waits[0]
        await _await_ack(resp, replica, leo, leadership, topic, committed, req.timeout_ms)
    elif waits:
        async with trio.open_nursery() as n:
            for resp, replica, leo, leadership, topic in waits:
                n.start_soon(_await_ack, resp, replica, leo, leadership, topic, committed, req.timeout_ms)
    for resp, replica, leo, leadership, topic in waits:
        trace.mark("spu.ack", topic, resp.partition_index, resp.base_offset, leo - 1)
    return out


# ----------------------------------------------------------------------------- stream fetch


# A stream keeps sending while at most this many responses, and at most 2 x max_bytes, wait for
# the consumer's UpdateOffsets: a consumer at the tail gets each new record as soon as the read
# limit moves, not one round trip after its acknowledgement of the response before; a consumer
# behind gets the next response while it decodes one. Fluvio's SPU keeps one in flight; its
# client takes any number and acknowledges each one (spu.md §3.3).
MAX_UNACKED_RESPONSES = 4

# A response of committed batches at least this large leaves with os.sendfile on a plain TCP
# connection (``ServerConnection.send_regions``); smaller ones cost less as one copied write.
SENDFILE_MIN_BYTES = 64 * 1024


@dataclass
class FetchStream:
    stream_id: int
    topic: str
    partition: int
    consumer_id: str | None
    waiter: Waiter = field(default_factory=Waiter)
    ack_pending: list[int] = field(default_factory=list)
    closed: bool = False  # the client is done with it (CloseStreams): the handler ends


@dataclass
class StreamWindow:
    """The responses of a stream that its consumer has not acknowledged, and where the next one
    starts (``next``): right after the last one sent, or where an acknowledgement says the
    consumer is when nothing is in flight (spu.md §3.3: an acknowledgement below the offset
    reached means the consumer is behind, and the stream resends from there)."""

    next: int
    limit: int  # responses in flight at most
    max_bytes: int  # what one response holds at most (but one batch)
    in_flight: list[tuple[int, int]] = field(default_factory=list)  # (end offset, bytes), in order

    def open(self) -> bool:
        """Whether another response may go: fewer than ``limit`` in flight, and less than
        ``max_bytes`` in them (so at most 2 x ``max_bytes`` with the next one, unless a single
        batch is larger)."""
        return (len(self.in_flight) < self.limit
                and sum(n for _, n in self.in_flight) < self.max_bytes)

    def sent(self, end: int, size: int) -> None:
        self.in_flight.append((end, size))
        self.next = end

    def acknowledged(self, offset: int) -> None:
        """The consumer took the oldest response in flight and is at ``offset`` (a consumer
        acknowledges each response, in order): it, and any later one ending at ``offset`` or
        before, are done."""
        if self.in_flight:
            self.in_flight.pop(0)
        while self.in_flight and self.in_flight[0][0] <= offset:
            self.in_flight.pop(0)
        if not self.in_flight:
            self.next = offset


def _streams(conn) -> dict[int, FetchStream]:
    return conn.state.setdefault("streams", {})


def zero_copy_read(conn, chunk: ReadResult, hw: int) -> bool:
    """Whether ``chunk`` may leave with sendfile: a plain TCP connection, a read large enough
    to gain from it, only committed batches, and served byte for byte as stored
    (``served_records`` would change nothing). Committed: below ``hw``. The kernel sends from
    the page cache until the consumer has the bytes, so they must never be rewritten in place;
    a log is cut (and refilled) only above its HW, while compaction and retention replace or
    delete whole files, which the send's duplicated descriptors keep open."""
    return (conn.zero_copy and chunk.size >= SENDFILE_MIN_BYTES and chunk.next_offset <= hw
            and served_as_stored(conn, chunk.attributes))


async def _send_fetch(ctx, conn, header, stream: FetchStream, replica: PartitionReplica,
                      start: int, max_bytes: int, committed: bool) -> tuple[int, int]:
    """Send the whole batches from ``start`` up to the read limit, at most ``max_bytes`` of them
    (at least one batch); returns (the offset reached, the record bytes sent), (start, 0) when
    there was nothing to send."""
    limit = replica.limit(committed)
    chunk = replica.storage.read(start, max_bytes, limit)
    if not chunk.size:  # a response without batches gets no acknowledgement: send none
        return start, 0
    hw = replica.hw
    trace.mark("spu.stream_send", stream.topic, stream.partition, start, chunk.next_offset - 1)
    if zero_copy_read(conn, chunk, hw):
        prefix = api.encode_stream_fetch_response_prefix(
            header.correlation_id, header.api_version, stream.topic, stream.stream_id,
            stream.partition, chunk.size, high_watermark=hw,
            log_start_offset=replica.log_start_offset)
        with chunk.opened() as pieces:  # no await since the read: the descriptors are its files
            await conn.send_regions([prefix, *(p if isinstance(p, bytes) else FileRegion(*p)
                                               for p in pieces)], chunk.intact)
        return chunk.next_offset, chunk.size
    data = served_records(conn, chunk.read_bytes())
    prefix = api.encode_stream_fetch_response_prefix(
        header.correlation_id, header.api_version, stream.topic, stream.stream_id, stream.partition,
        len(data), high_watermark=hw, log_start_offset=replica.log_start_offset)
    await conn.send_parts([prefix, data])
    return chunk.next_offset, len(data)


async def _send_chain_fetch(ctx, conn, header, stream: FetchStream, replica: PartitionReplica,
                            chain: Chain, start: int, max_bytes: int, committed: bool,
                            span_from: int) -> tuple[int, int | None, bool]:
    """Read from ``start`` like ``_send_fetch``, run the batches through the SmartModule chain
    and send what comes out, with ``next_filter_offset`` = the input offset reached. When the
    chain kept nothing, nothing is sent (as Fluvio's SPU does) unless this read reached the end
    of what may be read: then a response with no records tells the consumer where it is (so a
    consumer that stops at the end learns that it got there). The batches sent account for
    every offset from ``span_from`` (where the reads that sent nothing began) to the offset
    reached. Returns (offset reached, record bytes sent or None when nothing was sent, failed):
    a failed chain has sent its error, and the stream ends."""
    limit = replica.limit(committed)
    data = replica.storage.read(start, max_bytes, limit).read_bytes()
    if not data:
        return start, None, False
    # a module reads records as Fluvio writes them: fluvial's record headers never reach it
    result = await run_chain(chain, strip_record_set(data), start, span_from)
    if not result.count and result.error is None and result.next_offset < limit:
        return result.next_offset, None, False
    records = result.record_set()
    prefix = api.encode_stream_fetch_response_prefix(
        header.correlation_id, header.api_version, stream.topic, stream.stream_id, stream.partition,
        len(records), error=result.error or OK, high_watermark=replica.hw,
        next_filter_offset=result.next_offset, log_start_offset=replica.log_start_offset)
    await conn.send_parts([prefix, records])
    if result.error is not None:
        log.info("%s-%d stream %d: SmartModule failed: %s", stream.topic, stream.partition,
                 stream.stream_id, result.error.message)
    return result.next_offset, len(records), result.error is not None


async def _send_stream_error(conn, header, topic, stream_id, partition, error: Error) -> None:
    prefix = api.encode_stream_fetch_response_prefix(
        header.correlation_id, header.api_version, topic, stream_id, partition, 0, error=error)
    await conn.send(prefix)


async def handle_stream_fetch(ctx, conn, header, req: api.StreamFetchRequest) -> None:
    if not allowed(ctx.policy, conn, "consume", "topic", req.topic):
        await _send_stream_error(conn, header, req.topic, 0, req.partition, Error(ErrorCode.PermissionDenied))
        return
    replica = ctx.replicas.get((req.topic, req.partition))
    if replica is None or not replica.is_leader:
        await _send_stream_error(conn, header, req.topic, 0, req.partition,
                                 Error(ErrorCode.NotLeaderForPartition))
        return
    seq = conn.state.get("stream_seq", 0) + 1
    conn.state["stream_seq"] = seq
    stream = FetchStream(seq, req.topic, req.partition, req.consumer_id)
    try:
        chain = await open_chain(ctx, req, header.api_version)
    except SmartModuleFailure as e:
        await _send_stream_error(conn, header, req.topic, seq, req.partition, e.error)
        return
    committed = req.isolation == api.Isolation.ReadCommitted
    max_bytes = min(max(req.max_bytes, 1), ctx.max_fetch_bytes)  # bounded, whatever was asked
    streams = _streams(conn)
    streams[seq] = stream
    replica.waiters.add(stream.waiter)
    # a SmartModule stream keeps one response in flight: what it sends depends on what it read
    window = StreamWindow(req.fetch_offset, 1 if chain is not None else MAX_UNACKED_RESPONSES,
                          max_bytes)
    try:
        unsent_from = None  # SmartModules: where the reads that sent nothing began
        checked = None  # the start offset last checked against the log's bounds
        while not stream.closed:
            if replica.closed or not replica.is_leader:
                await _send_stream_error(conn, header, req.topic, seq, req.partition,
                                         Error(ErrorCode.NotLeaderForPartition))
                return
            stream.waiter.reset()
            while stream.ack_pending:
                window.acknowledged(stream.ack_pending.pop(0))
            pos = window.next
            if pos != checked:
                if pos < replica.log_start_offset:
                    await _send_stream_error(conn, header, req.topic, seq, req.partition, Error(
                        ErrorCode.OffsetEvicted, (pos, replica.log_start_offset)))
                    return
                if pos > replica.leo:
                    await _send_stream_error(conn, header, req.topic, seq, req.partition, Error.other(
                        f"start offset: {pos} is greater than leo: {replica.leo}"))
                    return
                checked = pos
            if pos < replica.limit(committed) and window.open():
                if chain is not None:
                    reached, size, failed = await _send_chain_fetch(
                        ctx, conn, header, stream, replica, chain, pos, max_bytes, committed,
                        pos if unsent_from is None else unsent_from)
                    if failed:
                        return
                    if size is None:  # the chain kept nothing: read on
                        unsent_from = pos if unsent_from is None else unsent_from
                        window.next = reached
                    else:
                        unsent_from = None
                        window.sent(reached, size)
                else:
                    reached, size = await _send_fetch(ctx, conn, header, stream, replica, pos,
                                                      max_bytes, committed)
                    if size:
                        window.sent(reached, size)
                if reached != pos:
                    continue
            # caught up, the window is full or nothing could be read: wait for records or an
            # acknowledgement
            if stream.ack_pending or stream.closed:
                continue
            await stream.waiter.wake.wait()
            trace.mark("spu.stream_woken", stream.topic, stream.partition, replica.limit(committed) - 1)
    finally:
        replica.waiters.discard(stream.waiter)
        streams.pop(seq, None)


async def handle_update_offsets(ctx, conn, header, req: api.UpdateOffsetsRequest) -> api.UpdateOffsetsResponse:
    out = api.UpdateOffsetsResponse([])
    streams = _streams(conn)
    for u in req.offsets:
        s = streams.get(u.session_id)
        if s is None:
            out.status.append(api.OffsetUpdateStatus(u.session_id, Error(ErrorCode.FetchSessionNotFoud)))
            continue
        s.ack_pending.append(u.offset)
        s.waiter.wake.set()
        trace.mark("spu.consumer_acked", s.topic, s.partition, u.offset)
        out.status.append(api.OffsetUpdateStatus(u.session_id, OK))
    return out


async def handle_close_streams(ctx, conn, header, req: sta.CloseStreamsRequest) -> sta.CloseStreamsResponse:
    """End this connection's streams ``req.stream_ids`` (their handlers return, freeing their
    request slots); ids of streams that already ended are ignored."""
    streams = _streams(conn)
    for sid in req.stream_ids:
        s = streams.get(sid)
        if s is not None:
            s.closed = True
            s.waiter.wake.set()
    return sta.CloseStreamsResponse(OK)


async def handle_fetch_offsets(ctx, conn, header, req: api.FetchOffsetsRequest) -> api.FetchOffsetsResponse:
    out = api.FetchOffsetsResponse([])
    for t in req.topics:
        tr = api.FetchOffsetTopicResponse(t.name, [])
        for p in t.partitions:
            replica = ctx.replicas.get((t.name, p.partition_index))
            if not allowed(ctx.policy, conn, "consume", "topic", t.name):
                tr.partitions.append(api.FetchOffsetPartitionResponse(
                    Error(ErrorCode.PermissionDenied), p.partition_index, 0, 0))
            elif replica is None or not replica.is_leader:
                tr.partitions.append(api.FetchOffsetPartitionResponse(
                    Error(ErrorCode.PartitionNotLeader), p.partition_index, 0, 0))
            else:
                tr.partitions.append(api.FetchOffsetPartitionResponse(
                    OK, p.partition_index, replica.log_start_offset, replica.hw))
        out.topics.append(tr)
    return out


async def handle_fetch(ctx, conn, header, req: api.FetchRequest) -> api.FetchResponse:
    """Classic Fetch: one read per partition, no waiting."""
    out = api.FetchResponse(0, OK, 0, [])
    committed = req.isolation_level == api.Isolation.ReadCommitted
    for t in req.topics:
        tr = api.FetchableTopicResponse(t.name, [])
        for p in t.fetch_partitions:
            replica = ctx.replicas.get((t.name, p.partition_index))
            r = api.FetchablePartitionResponse(p.partition_index, OK, 0, 0, 0, None, b"")
            if not allowed(ctx.policy, conn, "consume", "topic", t.name):
                r.error_code = Error(ErrorCode.PermissionDenied)
            elif replica is None or not replica.is_leader:
                r.error_code = Error(ErrorCode.NotLeaderForPartition)
            elif p.fetch_offset < replica.log_start_offset:
                r.error_code = Error(ErrorCode.OffsetEvicted, (p.fetch_offset, replica.log_start_offset))
            elif p.fetch_offset > replica.leo:
                r.error_code = Error.other(f"start offset: {p.fetch_offset} is greater than leo: {replica.leo}")
            else:
                limit = replica.limit(committed)
                if p.fetch_offset < limit:
                    r.records = served_records(conn, replica.storage.read(
                        p.fetch_offset, min(max(p.max_bytes, 1), ctx.max_fetch_bytes), limit).read_bytes())
                r.high_watermark, r.log_start_offset = replica.hw, replica.log_start_offset
            tr.partitions.append(r)
        out.topics.append(tr)
    return out


# --------------------------------------------------------------------------- consumer offsets


async def handle_update_consumer_offset(ctx, conn, header, req: api.UpdateConsumerOffsetRequest
                                        ) -> api.UpdateConsumerOffsetResponse:
    s = _streams(conn).get(req.session_id)
    if s is None:
        err = Error(ErrorCode.FetchSessionNotFoud)
    elif not s.consumer_id:
        err = Error.other("stream without consumer id")
    else:
        err = await ctx.store_consumer_offset(s.consumer_id, s.topic, s.partition, req.offset, False)
    return api.UpdateConsumerOffsetResponse(req.offset if err.ok else 0, err)


async def handle_delete_consumer_offset(ctx, conn, header, req: api.DeleteConsumerOffsetRequest
                                        ) -> api.DeleteConsumerOffsetResponse:
    store = ctx.offset_store()
    if not allowed(ctx.policy, conn, "consume", "topic", req.replica_id.topic):
        err = Error(ErrorCode.PermissionDenied)
    elif store is None:
        err = Error(ErrorCode.PartitionNotLeader)
    else:
        try:
            await store.delete((req.consumer_id, req.replica_id.topic, req.replica_id.partition))
            err = OK
        except serr.StorageError as e:
            err = _storage_error(e, CONSUMER_OFFSET_TOPIC, 0)
    return api.DeleteConsumerOffsetResponse(err)


async def handle_fetch_consumer_offsets(ctx, conn, header, req: api.FetchConsumerOffsetsRequest
                                        ) -> api.FetchConsumerOffsetsResponse:
    store = ctx.offset_store()
    if store is None:
        return api.FetchConsumerOffsetsResponse(Error(ErrorCode.PartitionNotLeader), [])
    f = req.filter_opts
    topic = partition = consumer = None
    if f is not None:
        if f.replica_id is not None:
            topic, partition = f.replica_id.topic, f.replica_id.partition
        consumer = f.consumer_id
    out = []
    for (cid, t, p), offset, mtime in store.list(topic, partition, consumer):
        if not allowed(ctx.policy, conn, "consume", "topic", t):
            continue
        out.append(api.ConsumerOffset(cid, api.ReplicaKey(t, p), offset, mtime))
    return api.FetchConsumerOffsetsResponse(OK, out)


def served_records(conn, data: bytes) -> bytes:
    """Stored batches as this connection may see them: as stored for a client that enabled
    record headers, else with every headers batch stripped (``record_headers``)."""
    if conn.state.get("record_headers"):
        return data
    return strip_record_set(data)


def served_as_stored(conn, attributes: int) -> bool:
    """Whether batches whose attributes or together to ``attributes`` reach this connection
    byte for byte as stored (``served_records`` changes nothing): it enabled record headers,
    or none of them carries any."""
    return bool(conn.state.get("record_headers")) or not attributes & ATTR_HEADERS


async def handle_enable_record_headers(ctx, conn, header, req) -> ha.EnableRecordHeadersResponse:
    conn.state["record_headers"] = True
    return ha.EnableRecordHeadersResponse(OK)


HANDLERS = {
    ha.ENABLE_RECORD_HEADERS_KEY: handle_enable_record_headers,
    sta.STREAM_KEEP_ALIVE_KEY: handle_stream_keep_alive,
    sta.CLOSE_STREAMS_KEY: handle_close_streams,
    api.SpuApiKey.Produce: handle_produce,
    api.SpuApiKey.Fetch: handle_fetch,
    api.SpuApiKey.FetchOffsets: handle_fetch_offsets,
    api.SpuApiKey.StreamFetch: handle_stream_fetch,
    api.SpuApiKey.UpdateOffsets: handle_update_offsets,
    api.SpuApiKey.UpdateConsumerOffset: handle_update_consumer_offset,
    api.SpuApiKey.DeleteConsumerOffset: handle_delete_consumer_offset,
    api.SpuApiKey.FetchConsumerOffsets: handle_fetch_consumer_offsets,
}
